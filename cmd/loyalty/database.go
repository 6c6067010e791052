package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty/hub"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
)

// errNoDatabase is wrapped by checkHubDatabase when the hub's database file does not exist.
var errNoDatabase = errors.New("no hub database")

// checkHubDatabase checks that the hub's database is where the configuration says, before
// anything creates a file: its folder must exist and, unless create, the database too. Admin
// commands pass create=false, so a wrong --database (or running from another directory) is an
// error instead of a new, empty hub that a store token or an API key is then added to; only
// `loyalty init` and `loyalty hub` make a new database.
func checkHubDatabase(path string, create bool) error {
	if err := sqlitedb.CheckFolder(path); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !create:
		abs, _ := filepath.Abs(path)
		return fmt.Errorf("%w at %s: check --database (database in the config file, LOYALTY_DATABASE) and the folder you run from; "+
			"to start a new hub there, run `loyalty init --database %s`", errNoDatabase, abs, path)
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("the hub database %s is a folder: give the path of a file in it, such as %s", path, filepath.Join(path, "hub.db"))
	}
	return nil
}

// initCommand is `loyalty init`: create a new hub database and its key-encryption key.
func initCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a new, empty hub database (and the key that seals its QR signing keys)",
		Long: `Create a new, empty hub database with its schema, its first QR signing key and the
key-encryption key file that seals it (keys.kek_file, default beside the database). The admin
commands (loyalty store, member, program, …) refuse a database that does not exist, so a
mistyped --database never becomes a second, empty hub; loyalty hub also creates the database
on its first start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var cfg HubConfig
			if err := loadConfig(cmd, DefaultHubConfig(), &cfg); err != nil {
				return err
			}
			if err := checkHubDatabase(cfg.Database, true); err != nil {
				return err
			}
			if _, err := os.Stat(cfg.Database); err == nil {
				return fmt.Errorf("a hub database already exists at %s: nothing to do (the admin commands work on it as it is)", cfg.Database)
			}
			ctx := hub.WithActor(cmd.Context(), hub.CLIActor)
			s, err := hubsqlite.Open(ctx, cfg.Database)
			if err != nil {
				return err
			}
			defer s.Close()
			h := hub.New(s)
			if h.KEK, err = openKEK(ctx, cfg, s, nil); err != nil {
				return err
			}
			if err := h.Init(ctx); err != nil {
				return err
			}
			tell(cmd, "created a new hub database at %s; start the hub with `loyalty hub`, and register stores with `loyalty store add`", s.Path())
			return nil
		},
	}
	hubFlags(cmd)
	return cmd
}

// openHub opens the hub's existing database for an admin command (see withHub).
func openHub(ctx context.Context, cfg HubConfig) (*hubsqlite.Store, error) {
	if err := checkHubDatabase(cfg.Database, false); err != nil {
		return nil, err
	}
	return hubsqlite.Open(ctx, cfg.Database)
}
