package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
)

func cmdWith(t *testing.T, mk func() *cobra.Command, args ...string) *cobra.Command {
	t.Helper()
	c := mk()
	if err := c.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfig_ExampleFilesLoad(t *testing.T) {
	t.Setenv("LOYALTY_ADMIN_API_KEY", "0123456789abcdef")
	var h HubConfig
	if err := loadConfig(cmdWith(t, hubCommand, "--config", "../../configs/hub.yaml"), DefaultHubConfig(), &h); err != nil {
		t.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		t.Fatalf("configs/hub.yaml with an admin key: %v", err)
	}
	if h.QR.MemberTTL != 17520*time.Hour || h.Sync.MaxBatch != 500 {
		t.Errorf("hub.yaml values not read: %+v", h)
	}
	t.Setenv("LOYALTY_TOKEN", "secret")
	var a AgentConfig
	if err := loadConfig(cmdWith(t, agentCommand, "--config", "../../configs/agent.yaml"), DefaultAgentConfig(), &a); err != nil {
		t.Fatal(err)
	}
	if err := a.Validate(); err != nil {
		t.Fatalf("configs/agent.yaml with a token: %v", err)
	}
	if a.Token != "secret" || a.StoreID != "store-1" {
		t.Errorf("agent.yaml + env: %+v", a)
	}
	p, err := readProgram("../../configs/program.yaml")
	if err != nil {
		t.Fatalf("configs/program.yaml: %v", err)
	}
	if p.Earn.UnitMinor != 100 || len(p.Rewards) != 3 || p.Rewards[1].Value != 500 {
		t.Errorf("program.yaml: %+v", p)
	}
}

// TestConfig_Priority: flags beat the environment, which beats the file, which beats defaults.
func TestConfig_Priority(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(file, []byte("store_id: from-file\nlisten: 127.0.0.1:1111\ndatabase: file.db\nsync:\n  max_backoff: 7s\n"), 0o644)
	t.Setenv("LOYALTY_LISTEN", "127.0.0.1:2222")
	t.Setenv("LOYALTY_DATABASE", "env.db")
	t.Setenv("LOYALTY_SYNC_MIN_BACKOFF", "3s")
	var a AgentConfig
	if err := loadConfig(cmdWith(t, agentCommand, "--config", file, "--database", "flag.db"), DefaultAgentConfig(), &a); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"store_id (file)", a.StoreID, "from-file"},
		{"listen (env over file)", a.Listen, "127.0.0.1:2222"},
		{"database (flag over env)", a.Database, "flag.db"},
		{"hub_url (default)", a.HubURL, DefaultAgentConfig().HubURL},
		{"sync.min_backoff (nested env)", a.Sync.MinBackoff.String(), "3s"},
		{"sync.max_backoff (nested file)", a.Sync.MaxBackoff.String(), "7s"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestConfig_Rejects(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hub.yaml")
	os.WriteFile(file, []byte("listen: 127.0.0.1:1\nlisen_typo: 1\n"), 0o644)
	var h HubConfig
	if err := loadConfig(cmdWith(t, hubCommand, "--config", file), DefaultHubConfig(), &h); err == nil || !strings.Contains(err.Error(), "lisen_typo") {
		t.Errorf("unknown key: %v, want an error naming it", err)
	}
	h = DefaultHubConfig()
	if err := h.Validate(); err == nil || !strings.Contains(err.Error(), "admin_api_key") {
		t.Errorf("missing admin key: %v", err)
	}
	a := DefaultAgentConfig()
	a.StoreID, a.Token, a.HubURL = "s", "t", "http://hub"
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "ws://") {
		t.Errorf("http hub_url: %v", err)
	}
	a.HubURL, a.Log.Level = "ws://hub", "loud"
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Errorf("bad log level: %v", err)
	}
}
