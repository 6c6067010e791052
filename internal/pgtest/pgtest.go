// Package pgtest gives a test a PostgreSQL database of its own, on the server named by the
// environment variable LOYALTY_TEST_POSTGRES, dropped when the test ends. Tests that need one
// skip without the variable, saying how to run them.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Env names the environment variable that holds the URL of a PostgreSQL server on which tests
// may create databases, such as postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable.
const Env = "LOYALTY_TEST_POSTGRES"

// Server returns the URL in Env ("" without one).
func Server() string { return os.Getenv(Env) }

// Skip skips tb unless Env is set, saying how to run it: run is the go test command line after
// the variable, such as "go test ./e2e/ -run Postgres".
func Skip(tb testing.TB, run string) {
	tb.Helper()
	if Server() == "" {
		tb.Skipf("SKIPPED: needs a PostgreSQL server: %s='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable' %s", Env, run)
	}
}

// Database creates a database named prefix and a random suffix on the server in Env, as a copy of
// the database template ("" for an empty one), drops it when tb ends (also while connections to
// it are open), and returns its URL. Call Skip first, or check Server.
func Database(tb testing.TB, prefix, template string) string {
	tb.Helper()
	server := Server()
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("%s must be a postgres:// URL: %q", Env, server)
	}
	var b [6]byte
	rand.Read(b[:])
	name := prefix + hex.EncodeToString(b[:])
	q := `CREATE DATABASE ` + pgx.Identifier{name}.Sanitize()
	if template != "" {
		q += ` TEMPLATE ` + pgx.Identifier{template}.Sanitize()
	}
	exec(tb, server, q, tb.Fatalf)
	tb.Cleanup(func() {
		exec(tb, server, `DROP DATABASE IF EXISTS `+pgx.Identifier{name}.Sanitize()+` WITH (FORCE)`, tb.Errorf)
	})
	u.Path = "/" + name
	return u.String()
}

// Name returns the name of the database at the URL where.
func Name(tb testing.TB, where string) string {
	tb.Helper()
	u, err := url.Parse(where)
	if err != nil {
		tb.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

// exec runs one statement on the server, reporting a failure with fail.
func exec(tb testing.TB, server, q string, fail func(string, ...any)) {
	tb.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, server)
	if err != nil {
		fail("%s: %v", Env, err)
		return
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, q); err != nil {
		fail("%s: %v", q, err)
	}
}
