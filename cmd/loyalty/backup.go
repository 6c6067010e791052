package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	hubpostgres "github.com/loyalty-edge-sync/loyalty/hub/postgres"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
)

// backupCommands are `loyalty backup` and `loyalty restore` (README, "Backup and restore").
func backupCommands() []*cobra.Command {
	backup := &cobra.Command{
		Use:   "backup",
		Short: "Write a consistent copy of the hub's database to a new file, while the hub runs",
		Long: `Write a consistent copy of the hub's SQLite database to a new file, while the hub runs.
A hub on PostgreSQL is refused: back it up with PostgreSQL's tools (pg_dump -Fc, or
pg_basebackup and WAL archiving), restore it with pg_restore into a new database, and mark that
one restored with loyalty restore --database <it> --replaced <the old one>.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			to, _ := cmd.Flags().GetString("to")
			var cfg HubConfig
			if err := loadConfig(cmd, DefaultHubConfig(), &cfg); err != nil {
				return err
			}
			if isPostgresURL(cfg.Database) {
				return errPostgresBackup(cfg.Database)
			}
			if _, err := os.Stat(to); err == nil {
				return loyalty.Errorf(loyalty.EDUPLICATE, "%s exists: a backup goes to a new file", to)
			}
			if dir := filepath.Dir(to); dir != "" {
				if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
					return loyalty.Errorf(loyalty.EINVALID, "the folder %s of the backup does not exist: create it (mkdir -p %s), or name a file in a folder that does", dir, dir)
				}
			}
			return withHubConfig(cmd, cfg, func(ctx context.Context, h *hub.Hub) error {
				s, ok := h.Store.(*hubsqlite.Store)
				if !ok {
					return errPostgresBackup(cfg.Database)
				}
				if err := s.Backup(ctx, to); err != nil { // a file for its owner alone: it holds members' personal data
					return fmt.Errorf("backup to %s: %w", to, err)
				}
				tell(cmd, "backed up to %s. It holds no key that can sign QR codes: keep the key-encryption key (keys.kek_file) backed up apart from it", to)
				return nil
			})
		},
	}
	backup.Flags().String("to", "", "the new file to write")
	backup.MarkFlagRequired("to")
	hubFlags(backup)

	restore := &cobra.Command{
		Use:   "restore",
		Short: "Put a backup in place of the hub's database, or mark a PostgreSQL database restored; agents then send again what it lost",
		Long: `SQLite: replace the hub's database with a backup written by loyalty backup (--from; the hub
must be stopped).

PostgreSQL: restore the dump with pg_restore into a new database first (or promote a standby),
then run loyalty restore on it (--database, with every hub process on it stopped), naming with
--replaced the database it replaces if that one still opens, to carry over the credentials
revoked since the backup.

Either way the restored database gets a new epoch: each agent sends again what the hub lost
when it next connects.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			from, _ := cmd.Flags().GetString("from")
			replaced, _ := cmd.Flags().GetString("replaced")
			var cfg HubConfig
			if err := loadConfig(cmd, DefaultHubConfig(), &cfg); err != nil {
				return err
			}
			var epoch int64
			var carried []string
			var err error
			if isPostgresURL(cfg.Database) {
				if from != "" {
					return errPostgresBackup(cfg.Database)
				}
				epoch, carried, err = restorePostgres(cmd.Context(), cfg, replaced)
			} else {
				if from == "" || replaced != "" {
					return loyalty.Errorf(loyalty.EINVALID, "a SQLite hub is restored from a backup file: loyalty restore --from <the file loyalty backup wrote> (--replaced is for PostgreSQL: the replaced SQLite database is the one at --database)")
				}
				epoch, carried, err = restoreHub(cmd.Context(), cfg, from)
			}
			if err != nil {
				return err
			}
			if from != "" {
				tell(cmd, "restored %s from %s; new epoch %d.", cfg.Database, from, epoch)
			} else {
				tell(cmd, "%s marked restored; new epoch %d.", databaseName(cfg.Database), epoch)
			}
			for _, line := range carried {
				tell(cmd, "  %s", line)
			}
			tell(cmd, "Start the hub: each agent sends again what the hub lost when it next connects.\n"+
				"Online channels: send again every call made since the backup was taken (each is applied once).\n"+
				"Redo the admin changes made since the backup (programs, stores, new API keys).")
			return nil
		},
	}
	restore.Flags().String("from", "", "SQLite: the backup file, as loyalty backup wrote it")
	restore.Flags().String("replaced", "", "PostgreSQL: the database the restored one replaces (a URL, or a SQLite file), to carry over what it knew of revoked credentials")
	hubFlags(restore)
	return []*cobra.Command{backup, restore}
}

// errPostgresBackup refuses `loyalty backup`, and `loyalty restore --from`, on a PostgreSQL
// database: they copy a SQLite file; PostgreSQL has its own tools.
func errPostgresBackup(database string) error {
	return loyalty.Errorf(loyalty.EINVALID, "loyalty backup and loyalty restore --from copy a SQLite file, and the hub's database is on PostgreSQL (%s): "+
		"back it up with PostgreSQL's tools (pg_dump -Fc, or pg_basebackup and WAL archiving), restore it with pg_restore into a new database, "+
		"then mark that one restored: loyalty restore --database <it> --replaced <the database it replaces>; README.md, \"Backup and restore\"", databaseName(database))
}

// restoreHub puts a copy of the backup at the database's path, with the hub stopped (it takes
// the database's lock exclusively). The copy must open with the hub's key-encryption key; it gets
// a new epoch, and what the replaced database knew of revoked credentials (carryOver). The
// replaced database and its WAL are kept beside it, renamed with the time of the restore. It
// returns the new epoch and what was carried over.
func restoreHub(ctx context.Context, cfg HubConfig, from string) (int64, []string, error) {
	if _, err := os.Stat(from); err != nil {
		return 0, nil, fmt.Errorf("backup: %w", err)
	}
	if err := sqlitedb.CheckFolder(cfg.Database); err != nil {
		return 0, nil, err
	}
	unlock, err := lockDatabase(cfg.Database, true)
	if err != nil {
		return 0, nil, err
	}
	defer unlock()
	tmp := cfg.Database + ".restoring"
	os.Remove(tmp)
	if err := copyFile(from, tmp); err != nil {
		return 0, nil, fmt.Errorf("copy the backup: %w", err)
	}
	defer os.Remove(tmp)
	s, err := hubsqlite.Open(ctx, tmp)
	if err != nil {
		return 0, nil, fmt.Errorf("%s is not a hub database: %w", from, err)
	}
	h := hub.New(s)
	h.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if h.KEK, err = openKEK(ctx, cfg, s, nil); err == nil {
		err = h.Init(ctx)
	}
	var epoch int64
	var carried []string
	if err == nil {
		epoch, err = h.Restored(ctx)
	}
	if err == nil {
		carried, err = carryOver(ctx, cfg, h)
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, nil, err
	}
	// The replaced database is kept, not deleted: it may hold what the backup lacks.
	if _, err := os.Stat(cfg.Database); err == nil {
		old := fmt.Sprintf("%s.before-restore-%s", cfg.Database, time.Now().UTC().Format("20060102T150405Z"))
		if _, err := os.Stat(old); err == nil {
			return 0, nil, fmt.Errorf("%s exists: restore again in a second", old)
		}
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if err := os.Rename(cfg.Database+suffix, old+suffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return 0, nil, err
			}
		}
		carried = append(carried, "the replaced database is kept as "+old)
	}
	if err := os.Rename(tmp, cfg.Database); err != nil {
		return 0, nil, err
	}
	return epoch, carried, syncDir(filepath.Dir(cfg.Database))
}

// restorePostgres marks the PostgreSQL database at cfg.Database, restored with pg_restore or a
// promoted standby, restored: it gets a new epoch (hub.Restored), and what the database replaced
// knew of revoked credentials (hub.CarryOver), if replaced names it and it opens. No hub process
// may serve on either meanwhile: it takes each one's serving lock exclusively
// (hubpostgres.Store.Hold), before it changes anything.
func restorePostgres(ctx context.Context, cfg HubConfig, replaced string) (int64, []string, error) {
	if replaced == cfg.Database {
		return 0, nil, loyalty.Errorf(loyalty.EINVALID, "--replaced names the database being marked restored: name the one it replaces, or leave --replaced out")
	}
	if _, err := checkHubDatabase(ctx, cfg.Database, false); err != nil {
		return 0, nil, err // not a hub's database: pg_restore failed, or the URL is wrong
	}
	s, release, err := holdPostgres(ctx, cfg.Database)
	if err != nil {
		return 0, nil, err
	}
	defer s.Close()
	defer release()
	// The replaced database is opened, and held, before anything changes: a --replaced that
	// does not open would otherwise leave credentials revoked since the backup alive.
	var old hub.Store
	var carried []string
	if replaced != "" {
		if old, err = openReplaced(ctx, replaced); err != nil {
			return 0, nil, fmt.Errorf("--replaced %s does not open (%w): nothing was changed; name a database that opens, or leave --replaced out and then %s",
				databaseName(replaced), err, carryByHand)
		}
		defer old.Close()
		if ps, ok := old.(*hubpostgres.Store); ok {
			release, err := ps.Hold(ctx, true) // the same database under another URL is held already: refused
			if err != nil {
				return 0, nil, servingErr(err, replaced)
			}
			defer release()
		}
	} else {
		carried = append(carried, "no --replaced database: nothing carried over; "+carryByHand)
	}
	h := hub.New(s)
	h.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if h.KEK, err = openKEK(ctx, cfg, s, nil); err != nil {
		return 0, nil, err
	}
	if err := h.Init(ctx); err != nil {
		return 0, nil, err
	}
	epoch, err := h.Restored(ctx)
	if err != nil || old == nil {
		return epoch, carried, err
	}
	oldHub := hub.New(old)
	more, err := h.CarryOver(ctx, oldHub)
	if err != nil {
		return epoch, nil, fmt.Errorf("marked restored (new epoch %d), but carrying over from %s failed: %w; %s", epoch, databaseName(replaced), err, carryByHand)
	}
	// The replaced database is marked, so that a hub (or an admin command) still pointed at it
	// does not take stores' changes the restored one never sees.
	if err := oldHub.MarkReplaced(ctx); err != nil {
		return epoch, nil, fmt.Errorf("marked restored (new epoch %d), but marking %s replaced failed: %w; make sure no hub starts on it",
			epoch, databaseName(replaced), err)
	}
	more = append(more, fmt.Sprintf("%s is marked replaced: a hub refuses to start on it; point every hub process at %s",
		databaseName(replaced), databaseName(cfg.Database)))
	return epoch, append(carried, more...), nil
}

// carryByHand is what an operator does when a restore cannot carry over what the replaced
// database knew.
const carryByHand = "revoke again any API key, retire again any signing key, rotate again any store token, erase again any member and revoke again any card links revoked or erased since the backup (the replaced database's audit trail lists them)"

// holdPostgres opens the PostgreSQL hub database at the URL database and takes its serving lock
// exclusively.
func holdPostgres(ctx context.Context, database string) (*hubpostgres.Store, func(), error) {
	s, err := openHubStore(ctx, database)
	if err != nil {
		return nil, nil, err
	}
	ps := s.(*hubpostgres.Store)
	release, err := ps.Hold(ctx, true)
	if err != nil {
		s.Close()
		return nil, nil, servingErr(err, database)
	}
	return ps, release, nil
}

// servingErr says why the serving lock of database could not be taken exclusively.
func servingErr(err error, database string) error {
	if errors.Is(err, hubpostgres.ErrServing) {
		return fmt.Errorf("a hub serves on %s, or another loyalty restore runs on it: stop every hub process on it first", databaseName(database))
	}
	return err
}

// openReplaced opens the hub database a restored one replaces, if it holds a hub's tables:
// it creates nothing.
func openReplaced(ctx context.Context, database string) (hub.Store, error) {
	if _, err := checkHubDatabase(ctx, database, false); err != nil {
		return nil, err
	}
	return openHubStore(ctx, database)
}

// carryOver opens the database being replaced, if it still opens, and brings into the restored
// one what it knew of revoked credentials (hub.CarryOver).
func carryOver(ctx context.Context, cfg HubConfig, restored *hub.Hub) ([]string, error) {
	if _, err := os.Stat(cfg.Database); err != nil {
		return []string{"no database to replace: nothing carried over"}, nil
	}
	s, err := hubsqlite.Open(ctx, cfg.Database)
	if err != nil {
		return []string{fmt.Sprintf("the replaced database does not open (%v): %s", err, carryByHand)}, nil
	}
	defer s.Close()
	old := hub.New(s)
	return restored.CarryOver(ctx, old)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// kekCommands are `loyalty keys kek` and `loyalty keys rekey`.
func kekCommands() []*cobra.Command {
	kek := &cobra.Command{
		Use:   "kek",
		Short: "Print a new random key-encryption key (base64), for keys.kek or a keys.kek_file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return say(cmd, seal.Generate(), "a new key-encryption key (base64 of 32 random bytes): save it to a file for keys.kek_file (chmod 600), or give it as keys.kek (LOYALTY_KEYS_KEK)")
		},
	}
	rekey := &cobra.Command{
		Use:   "rekey",
		Short: "Seal the signing keys under a new key-encryption key (stop the hub first; then point keys.kek_file at the new file)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path, _ := cmd.Flags().GetString("new-kek-file")
			next, err := seal.LoadFile(path)
			if err != nil {
				return fmt.Errorf("--new-kek-file: %w (make one with `loyalty keys kek > FILE`)", err)
			}
			var cfg HubConfig
			if err := loadConfig(cmd, DefaultHubConfig(), &cfg); err != nil {
				return err
			}
			// No hub may serve meanwhile: one would seal a key it makes (a rotation, a webhook's
			// secret) under the old key after the rekey, and then neither key would open the
			// database. The lock restore takes, exclusively.
			if isPostgresURL(cfg.Database) {
				s, release, err := holdPostgres(cmd.Context(), cfg.Database)
				if err != nil {
					return err
				}
				defer s.Close()
				defer release()
			} else {
				unlock, err := lockDatabase(cfg.Database, true)
				if err != nil {
					return err
				}
				defer unlock()
			}
			return withHubLocked(cmd, cfg, func(ctx context.Context, h *hub.Hub) error {
				n, err := h.Rekey(ctx, next)
				if err != nil {
					return err
				}
				tell(cmd, "%d signing keys sealed under the key-encryption key %s (fingerprint %s). Set keys.kek_file to it before the hub starts again; keep the old one until every backup sealed under it is gone",
					n, path, next.Fingerprint())
				return nil
			})
		},
	}
	rekey.Flags().String("new-kek-file", "", "file holding the new key-encryption key")
	rekey.MarkFlagRequired("new-kek-file")
	hubFlags(rekey)
	return []*cobra.Command{kek, rekey}
}
