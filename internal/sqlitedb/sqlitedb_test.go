package sqlitedb_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
)

// TestPathsWithURICharacters: a database path holding '#', '?', '%' or a space opens that very
// file. Unescaped in the file: URI, "/tmp/run#2/hub.db" opened "/tmp/run", silently: another
// hub's database.
func TestPathsWithURICharacters(t *testing.T) {
	dir := t.TempDir()
	schema := fstest.MapFS{"0001_init.sql": {Data: []byte("CREATE TABLE t (x TEXT);")}}
	for _, name := range []string{"run#2", "what?", "100%41", "two words"} {
		p := filepath.Join(dir, name, "hub.db")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		db, err := sqlitedb.Open(context.Background(), p, schema)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := db.W.Exec(`INSERT INTO t (x) VALUES (?)`, name); err != nil {
			t.Fatal(err)
		}
		db.Close()
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: the database is not where its path says: %v", name, err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files beside the four directories: %v", names)
	}
}

// TestMigrationWithTrigger: a trigger's statements, each ended by a semicolon at the end of a
// line, stay in the CREATE TRIGGER statement, up to the line that holds only END;.
func TestMigrationWithTrigger(t *testing.T) {
	schema := fstest.MapFS{"0001_init.sql": {Data: []byte(`CREATE TABLE t (x INTEGER);
CREATE TABLE n (total INTEGER);
INSERT INTO n VALUES (0);
-- Keeps n.total the sum of t.x.
CREATE TRIGGER t_sum AFTER INSERT ON t
BEGIN
	UPDATE n SET total = total + CASE WHEN NEW.x > 0 THEN NEW.x ELSE 0 END;
	UPDATE n SET total = total + CASE WHEN NEW.x < 0 THEN NEW.x ELSE 0
	END;
END;
INSERT INTO t VALUES (2), (-5);
`)}}
	db, err := sqlitedb.Open(context.Background(), filepath.Join(t.TempDir(), "db"), schema)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var total int
	if err := db.W.QueryRow(`SELECT total FROM n`).Scan(&total); err != nil || total != -3 {
		t.Fatalf("total %d, %v; want -3", total, err)
	}
}

// TestReadersStayOpen: read transactions running side by side, as many as there are readers, leave
// every reader open for the next ones. Closed after use, a reader would open the file, read the
// schema and prepare its statements again for each transaction under load.
func TestReadersStayOpen(t *testing.T) {
	ctx := context.Background()
	schema := fstest.MapFS{"0001_init.sql": {Data: []byte("CREATE TABLE t (x TEXT);")}}
	db, err := sqlitedb.Open(ctx, filepath.Join(t.TempDir(), "r.db"), schema)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	readers := db.R.Stats().MaxOpenConnections
	for round := range 3 {
		var inside, wg sync.WaitGroup
		inside.Add(readers)
		for range readers {
			wg.Go(func() {
				err := db.View(ctx, func(tx *sqlitedb.Tx) error {
					var n int
					err := tx.QueryRowContext(ctx, `SELECT count(*) FROM t`).Scan(&n)
					inside.Done()
					inside.Wait() // every reader is in a transaction at once
					return err
				})
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if s := db.R.Stats(); s.MaxIdleClosed != 0 || s.OpenConnections != readers {
			t.Fatalf("round %d: %d of %d readers open, %d closed after use; want all open", round, s.OpenConnections, readers, s.MaxIdleClosed)
		}
	}
}

// TestCheckpointPages: the WAL holds up to Options.CheckpointPages pages before a commit copies
// them into the database; without it, SQLite's 1,000. The same commits, some 2,000 pages of
// them, leave the whole of them in the WAL with room for 4,000, and fewer than 1,500 without (a
// checkpoint at 1,000 pages; the WAL starts over at the write after it).
func TestCheckpointPages(t *testing.T) {
	ctx := context.Background()
	schema := fstest.MapFS{"0001_init.sql": {Data: []byte("CREATE TABLE t (x BLOB);")}}
	inWAL := func(opts sqlitedb.Options) int {
		opts.NoSync = true
		db, err := sqlitedb.OpenWith(ctx, filepath.Join(t.TempDir(), "c.db"), schema, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for range 600 { // a row of a page and more each: two or three pages a commit
			if _, err := db.W.ExecContext(ctx, `INSERT INTO t (x) VALUES (zeroblob(5000))`); err != nil {
				t.Fatal(err)
			}
		}
		var busy, log, done int
		if err := db.W.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &log, &done); err != nil {
			t.Fatal(err)
		}
		return log
	}
	if n := inWAL(sqlitedb.Options{CheckpointPages: 4000}); n < 1800 {
		t.Errorf("with room for 4,000 pages the WAL holds %d after some 2,000 were written; a checkpoint ran", n)
	}
	if n := inWAL(sqlitedb.Options{}); n >= 1500 {
		t.Errorf("with SQLite's default the WAL holds %d pages; want fewer than 1,500", n)
	}
}

// TestNewDatabaseIsItsOwners: a new database and its WAL are readable by their owner alone: they
// hold members' personal data, as backups do. One that exists keeps its mode.
func TestNewDatabaseIsItsOwners(t *testing.T) {
	ctx := context.Background()
	schema := fstest.MapFS{"0001_init.sql": {Data: []byte("CREATE TABLE t (x TEXT);")}}
	path := filepath.Join(t.TempDir(), "new.db")
	db, err := sqlitedb.Open(ctx, path, schema)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(ctx, func(tx *sqlitedb.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO t VALUES ('a')`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal"} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", filepath.Base(p), fi, err)
		}
	}
	db.Close()
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	db, err = sqlitedb.Open(ctx, path, schema)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("an existing database's mode changed: %v, %v", fi, err)
	}
}
