//go:build fakeclock

package clock

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFakeClockFollowsTheFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "clock")
	t.Setenv(Env, f)
	before := Now()
	if err := os.WriteFile(f, []byte("8h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := Now().Sub(before); got < 8*time.Hour || got > 9*time.Hour {
		t.Fatalf("after moving the clock 8h: advanced %s", got)
	}
	if Now() == Now().Round(0) {
		t.Fatal("the fake clock lost the monotonic reading")
	}
}
