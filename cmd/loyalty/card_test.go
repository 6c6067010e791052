package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestCLI_CardLink: loyalty member card-link prints a link with the base URL, as JSON with its
// expiry, revokes, and refuses bad hours, a bad base URL and an unknown member.
func TestCLI_CardLink(t *testing.T) {
	db := initHubDB(t)
	mustRun(t, "member", "add", "--id", "m1", "--name", "Ann", "--database", db)

	out, _ := mustRun(t, "member", "card-link", "m1", "--base-url", "https://loyalty.example.com/", "--database", db)
	if !strings.HasPrefix(out, "https://loyalty.example.com/m/") || strings.Count(out, "//") != 1 {
		t.Errorf("card-link printed %q", out)
	}
	out, _ = mustRun(t, "member", "card-link", "m1", "--hours", "2", "--json", "--database", db)
	var l struct {
		MemberID  string    `json:"member_id"`
		URLPath   string    `json:"url_path"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil || l.MemberID != "m1" || !strings.HasPrefix(l.URLPath, "/m/") ||
		l.ExpiresAt.Before(time.Now().Add(time.Hour)) || l.ExpiresAt.After(time.Now().Add(3*time.Hour)) {
		t.Errorf("card-link --json = %s (%v)", out, err)
	}
	_, errOut := mustRun(t, "member", "card-link", "m1", "--revoke", "--database", db)
	if !strings.Contains(errOut, "revoked") {
		t.Errorf("card-link --revoke said %q", errOut)
	}
	for _, args := range [][]string{
		{"m1", "--hours", "0"}, {"m1", "--hours", "9000"}, {"m1", "--base-url", "javascript:alert(1)"}, {"nobody"},
	} {
		if _, _, err := run(t, append(append([]string{"member", "card-link"}, args...), "--database", db)...); err == nil {
			t.Errorf("card-link %v succeeded", args)
		}
	}
}
