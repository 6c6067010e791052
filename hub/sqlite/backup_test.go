//go:build unix

package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestBackupIsTheOwnersAlone: a backup is readable by its owner alone from the moment it exists,
// whatever the process's umask: it is made empty with mode 0600 and the copy written into it.
// Before, VACUUM INTO made it with the default mode (0644 here), and it was changed only once
// the whole copy was written, so another user could open it meanwhile and keep reading.
func TestBackupIsTheOwnersAlone(t *testing.T) {
	s := openStore(t)
	old := syscall.Umask(0) // the widest default mode a file gets
	defer syscall.Umask(old)
	to := filepath.Join(t.TempDir(), "backup.db")
	if err := s.Backup(context.Background(), to); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(to)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() == 0 {
		t.Fatalf("the backup: %v, %v; want a copy with mode 0600", fi, err)
	}
	if err := s.Backup(context.Background(), to); err == nil {
		t.Error("a backup over a file that exists was written")
	}
	if fi2, err := os.Stat(to); err != nil || fi2.Size() != fi.Size() {
		t.Errorf("the first backup after a second one to the same path was refused: %v, %v", fi2, err)
	}
}
