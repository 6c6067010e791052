package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty/hub"
	hubpostgres "github.com/loyalty-edge-sync/loyalty/hub/postgres"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
)

// The hub's database setting (database, --database, LOYALTY_DATABASE) is either a SQLite file
// path or the URL of a PostgreSQL database, postgres://user:password@host:port/dbname?…, which
// opens hub/postgres. A URL's password is never shown: messages and logs name the database with
// databaseName, and errors that may quote the URL go through redactErr.

// isPostgresURL reports whether a hub database setting is a PostgreSQL URL (postgres:// or
// postgresql://, as pgx reads them) rather than a SQLite file path.
func isPostgresURL(database string) bool {
	return strings.HasPrefix(database, "postgres://") || strings.HasPrefix(database, "postgresql://")
}

// openHubStore opens the hub's database: hub/postgres for a PostgreSQL URL (the database must
// exist on the server; its tables are created or migrated), else the SQLite file at that path
// (created if new). Callers check the setting first (checkHubDatabase).
func openHubStore(ctx context.Context, database string) (hub.Store, error) {
	if isPostgresURL(database) {
		s, err := hubpostgres.Open(ctx, database)
		if err != nil {
			return nil, redactErr(err, database)
		}
		return s, nil
	}
	s, err := hubsqlite.Open(ctx, database)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// keywordConnString matches a libpq connection string of keywords ("host=db user=loyalty
// password=…"), which the hub would otherwise take for a SQLite file's name: a new empty database
// under that name, and the password in the logs.
var keywordConnString = regexp.MustCompile(`(^|\s)(host|hostaddr|port|dbname|user|password|passfile|sslmode|service)\s*=`)

// checkDatabaseForm checks the form of a hub database setting, without opening anything: a
// SQLite file path, or a PostgreSQL URL that pgx can read. Any other URL is refused, rather than
// taken for a file path.
func checkDatabaseForm(database string) error {
	switch {
	case database == "":
		return fmt.Errorf("database is required: a SQLite file path, such as hub.db, or a PostgreSQL URL, such as postgres://loyalty@db.example.com:5432/loyalty")
	case isPostgresURL(database):
		if _, err := pgxpool.ParseConfig(database); err != nil {
			return redactErr(fmt.Errorf("database %s is not a PostgreSQL URL pgx can read: %w", databaseName(database), err), database)
		}
		return nil
	}
	if keywordConnString.MatchString(database) {
		// Not quoted: it may hold a password, and it is no file path anyone meant.
		return fmt.Errorf("database: the setting looks like a PostgreSQL connection string of keywords (host=… dbname=…), which the hub does not take: " +
			"write it as a URL, postgres://user:password@host:5432/dbname?sslmode=require")
	}
	if scheme, _, ok := strings.Cut(database, "://"); ok && !strings.ContainsAny(scheme, `/\`) {
		return fmt.Errorf("database %s: the only URLs the hub takes are postgres:// and postgresql:// (in lower case); anything else is a SQLite file path",
			databaseName(database))
	}
	return nil
}

// errNoDatabase is wrapped by checkHubDatabase when the hub's database does not exist.
var errNoDatabase = errors.New("no hub database")

// checkHubDatabase checks that the hub's database is where the configuration says, before
// anything creates one, and reports whether it holds a hub already. Admin commands pass
// create=false, so a wrong --database (or running from another directory) is an error instead
// of a new, empty hub that a store token or an API key is then added to; only `loyalty init` and
// `loyalty hub` make a new database.
//
// For a SQLite file, its folder must exist and, unless create, the file too. For a PostgreSQL
// URL, the database must exist on the server (the hub creates tables, not databases) and, unless
// create, hold the hub's tables.
func checkHubDatabase(ctx context.Context, database string, create bool) (exists bool, err error) {
	if err := checkDatabaseForm(database); err != nil {
		return false, err
	}
	if isPostgresURL(database) {
		return checkPostgresHub(ctx, database, create)
	}
	if err := sqlitedb.CheckFolder(database); err != nil {
		return false, err
	}
	fi, err := os.Stat(database)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !create:
		abs, _ := filepath.Abs(database)
		return false, fmt.Errorf("%w at %s: check --database (database in the config file, LOYALTY_DATABASE) and the folder you run from; "+
			"to start a new hub there, run `loyalty init --database %s`", errNoDatabase, abs, database)
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case fi.IsDir():
		return false, fmt.Errorf("the hub database %s is a folder: give the path of a file in it, such as %s", database, filepath.Join(database, "hub.db"))
	}
	return true, nil
}

// connectPostgres opens one connection to the PostgreSQL database at the URL database. The URL
// is read as hub/postgres reads it, so pool settings (pool_max_conns, …) are taken, not sent to
// the server as unknown parameters.
func connectPostgres(ctx context.Context, database string) (*pgx.Conn, error) {
	cfg, err := pgxpool.ParseConfig(database)
	if err != nil {
		return nil, redactErr(fmt.Errorf("database %s is not a PostgreSQL URL pgx can read: %w", databaseName(database), err), database)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	return conn, redactErr(err, database)
}

// checkPostgresHub is checkHubDatabase for a PostgreSQL URL: it connects once and looks for the
// table the hub's migrations keep (schema_migrations).
func checkPostgresHub(ctx context.Context, database string, create bool) (bool, error) {
	conn, err := connectPostgres(ctx, database)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "3D000" { // invalid_catalog_name
			return false, fmt.Errorf("%w: the PostgreSQL database %s does not exist on the server: create it (CREATE DATABASE, or createdb), "+
				"then run `loyalty init` with this --database", errNoDatabase, databaseName(database))
		}
		return false, redactErr(fmt.Errorf("connect to the hub's PostgreSQL database %s: %w", databaseName(database), err), database)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return false, redactErr(fmt.Errorf("look for the hub's tables in %s: %w", databaseName(database), err), database)
	}
	if !exists && !create {
		return false, fmt.Errorf("%w in the PostgreSQL database %s (it has no hub tables): check --database (database in the config file, LOYALTY_DATABASE); "+
			"to start a new hub there, run `loyalty init` with this --database", errNoDatabase, databaseName(database))
	}
	return exists, nil
}

// databaseName is a hub database setting as messages and logs show it: a SQLite path as it is,
// a PostgreSQL URL with its password (in the user part, or a password parameter) masked.
func databaseName(database string) string {
	if keywordConnString.MatchString(database) {
		return "(a PostgreSQL connection string of keywords, not shown: it may hold a password)"
	}
	return redact(database, databaseSecrets(database))
}

// redactErr masks the password of the PostgreSQL URL database wherever err's message quotes it
// (pgx's own messages are redacted only on a best-effort basis), keeping err's chain.
func redactErr(err error, database string) error {
	secrets := databaseSecrets(database)
	if err == nil || len(secrets) == 0 {
		return err
	}
	return redactedError{err: err, secrets: secrets}
}

type redactedError struct {
	err     error
	secrets []string
}

func (e redactedError) Error() string { return redact(e.err.Error(), e.secrets) }
func (e redactedError) Unwrap() error { return e.err }

// redact replaces every secret in s with xxxxx.
func redact(s string, secrets []string) string {
	for _, x := range secrets {
		s = strings.ReplaceAll(s, x, "xxxxx")
	}
	return s
}

// databaseSecrets returns the password a PostgreSQL URL holds, as written and decoded: in its
// user part (postgres://user:password@host/db) or its password parameter. A URL that does not
// parse is read by hand: everything between the user name and the last @ counts as the password.
func databaseSecrets(database string) []string {
	if !isPostgresURL(database) {
		return nil
	}
	var out []string
	add := func(s string) {
		if s != "" && s != "xxxxx" {
			out = append(out, s)
		}
	}
	if u, err := url.Parse(database); err == nil {
		if pw, ok := u.User.Password(); ok {
			add(pw)
			add(url.PathEscape(pw))
			add(url.QueryEscape(pw))
		}
		for _, pw := range u.Query()["password"] {
			add(pw)
			add(url.QueryEscape(pw))
		}
	}
	_, rest, _ := strings.Cut(database, "://")
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if _, pw, ok := strings.Cut(rest[:at], ":"); ok {
			add(pw)
			if dec, err := url.PathUnescape(pw); err == nil {
				add(dec)
			}
		}
	}
	if i := strings.Index(rest, "password="); i >= 0 {
		pw, _, _ := strings.Cut(rest[i+len("password="):], "&")
		add(pw)
	}
	// Longest first, so that a password holding another's form is masked whole.
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
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
on its first start.

With a PostgreSQL URL (--database postgres://…), the database must exist on the server (create
it with CREATE DATABASE or createdb); init creates the hub's tables in it. There is no file
beside a PostgreSQL database for the key-encryption key: set keys.kek_file or keys.kek.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var cfg HubConfig
			if err := loadConfig(cmd, DefaultHubConfig(), &cfg); err != nil {
				return err
			}
			ctx := hub.WithActor(cmd.Context(), hub.CLIActor)
			exists, err := checkHubDatabase(ctx, cfg.Database, true)
			if err != nil {
				return err
			}
			if exists {
				return fmt.Errorf("a hub database already exists at %s: nothing to do (the admin commands work on it as it is)", databaseName(cfg.Database))
			}
			if err := cfg.checkKEK(); err != nil {
				return err
			}
			s, err := openHubStore(ctx, cfg.Database)
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
			tell(cmd, "created a new hub database at %s; start the hub with `loyalty hub`, and register stores with `loyalty store add`", databaseName(cfg.Database))
			return nil
		},
	}
	hubFlags(cmd)
	return cmd
}

// openHub opens the hub's existing database for an admin command (see withHub).
func openHub(ctx context.Context, cfg HubConfig) (hub.Store, error) {
	if _, err := checkHubDatabase(ctx, cfg.Database, false); err != nil {
		return nil, err
	}
	return openHubStore(ctx, cfg.Database)
}
