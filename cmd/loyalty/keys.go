package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
)

// kekFile returns where the key-encryption key file is: keys.kek_file, or beside a SQLite
// database (its path with .kek for .db). A PostgreSQL database has nothing beside it: "".
func (c HubConfig) kekFile() string {
	switch {
	case c.Keys.KEKFile != "":
		return c.Keys.KEKFile
	case isPostgresURL(c.Database):
		return ""
	}
	return strings.TrimSuffix(c.Database, ".db") + ".kek"
}

// checkKEK refuses a configuration that leaves the key-encryption key nowhere: a PostgreSQL
// database with neither keys.kek nor keys.kek_file. The hub and `loyalty init` need the key.
func (c HubConfig) checkKEK() error {
	if c.Keys.KEK == "" && c.kekFile() == "" {
		return errKEKRequired(c.Database)
	}
	if c.Keys.KEK != "" {
		if _, err := seal.Parse(c.Keys.KEK); err != nil {
			return fmt.Errorf("keys.kek: %w", err)
		}
	}
	return nil
}

// errKEKRequired says that a hub on PostgreSQL needs its key-encryption key named.
func errKEKRequired(database string) *loyalty.Error {
	return loyalty.Errorf(loyalty.EINVALID, "the hub's database is on PostgreSQL (%s), so there is no default key-encryption key file beside it: "+
		"set keys.kek_file (LOYALTY_KEYS_KEK_FILE) to a file holding the key (created with a new key if the database has no signing keys yet), "+
		"or keys.kek (LOYALTY_KEYS_KEK) to the key itself; `loyalty keys kek` prints a new one", databaseName(database))
}

// openKEK returns the key-encryption key that seals the hub's QR signing keys: keys.kek, else the
// file keys.kek_file. The file is created, with a new random key, only for a database that holds
// no sealed key yet (a new hub, or one upgraded from before sealing); otherwise a missing file is
// an error naming the key the database needs.
//
// log nil is an admin command: it says when it creates the file, and leaves the warnings about
// where the file is to the hub.
func openKEK(ctx context.Context, c HubConfig, s hub.Store, log *slog.Logger) (*seal.Box, error) {
	advise := log != nil
	if log == nil {
		log = slog.Default()
	}
	if c.Keys.KEK != "" {
		b, err := seal.Parse(c.Keys.KEK)
		if err != nil {
			return nil, fmt.Errorf("keys.kek: %w", err)
		}
		return b, nil
	}
	path := c.kekFile()
	if path == "" {
		// PostgreSQL without keys.kek or keys.kek_file. The hub refuses; an admin command goes on
		// when the database has its keys already, as with a missing file below.
		need, err := sealedUnder(ctx, s)
		switch {
		case err != nil:
			return nil, err
		case advise || need == "":
			return nil, errKEKRequired(c.Database)
		}
		log.Warn(fmt.Sprintf("no key-encryption key is set (keys.kek_file or keys.kek: a hub on PostgreSQL has no default file); "+
			"this database's signing keys are sealed under the key with fingerprint %s; commands that sign QR codes will fail", need))
		return nil, nil
	}
	b, err := seal.LoadFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		if err == nil && advise {
			warnKEKFile(path, c.Database, log)
		}
		return b, err
	}
	need, err := sealedUnder(ctx, s)
	if err != nil {
		return nil, err
	}
	if need != "" {
		err := fmt.Errorf("the key-encryption key file %s is missing: this database's signing keys are sealed under the key with fingerprint %s; "+
			"set keys.kek_file (LOYALTY_KEYS_KEK_FILE) to that file, or keys.kek (LOYALTY_KEYS_KEK) to its contents", path, need)
		if advise {
			return nil, err // the hub signs QR codes: it does not start without the key
		}
		// An admin command goes on (revoking a leaked API key must not wait for the key); the
		// ones that sign fail with this.
		log.Warn(err.Error() + "; commands that sign QR codes will fail")
		return nil, nil
	}
	if b, err = seal.CreateFile(path); err != nil {
		return nil, fmt.Errorf("create the key-encryption key file: %w", err)
	}
	log.Warn("created a new key-encryption key for the QR signing keys; back it up apart from the database: a database backup cannot sign without it, and the hub cannot start without it",
		slog.String("file", path), slog.String("fingerprint", b.Fingerprint()))
	if advise {
		warnKEKFile(path, c.Database, log)
	}
	return b, nil
}

// sealedUnder returns the fingerprint of the key-encryption key the database's signing keys are
// sealed under, or "" when it holds no sealed key (a new database).
func sealedUnder(ctx context.Context, s hub.Store) (string, error) {
	var need string
	err := s.View(ctx, func(tx hub.Tx) error {
		keys, err := tx.Keys(ctx)
		for _, k := range keys {
			if fp, ok := seal.FingerprintOf(k.Sealed); ok {
				need = fp
			}
		}
		return err
	})
	return need, err
}

// warnKEKFile warns when the key-encryption key file is readable by others, or sits in a SQLite
// database's directory, where a copy of the directory (a snapshot, a stolen disk) takes both.
func warnKEKFile(path, database string, log *slog.Logger) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the key-encryption key file is readable by other users: chmod 600 it", slog.String("file", path))
	}
	if isPostgresURL(database) {
		return
	}
	kd, _ := filepath.Abs(filepath.Dir(path))
	dd, _ := filepath.Abs(filepath.Dir(database))
	if kd == dd {
		log.Warn("the key-encryption key file is in the database's directory: a copy of that directory can sign QR codes. "+
			"In production keep it elsewhere (keys.kek_file) or give it as keys.kek (LOYALTY_KEYS_KEK)", slog.String("file", path))
	}
}
