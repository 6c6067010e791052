package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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

// TestConfig_POSExposure: a POS API beyond loopback needs a pos_token or the explicit
// pos_insecure_lan override, in Validate (so --check-config says so too) and in AgentMain.Open.
func TestConfig_POSExposure(t *testing.T) {
	base := DefaultAgentConfig()
	base.StoreID, base.Token = "s1", "t"
	for _, tt := range []struct {
		listen, posToken string
		insecure         bool
		ok               bool
	}{
		{"127.0.0.1:8081", "", false, true},
		{"localhost:8081", "", false, true},
		{"[::1]:8081", "", false, true},
		{"0.0.0.0:8081", "", false, false},
		{":8081", "", false, false},
		{"192.168.1.5:8081", "", false, false},
		{"storepc.lan:8081", "", false, false},
		{"0.0.0.0:8081", "pos-secret", false, true},
		{"0.0.0.0:8081", "", true, true},
	} {
		c := base
		c.Listen, c.POSToken, c.POSInsecureLAN = tt.listen, tt.posToken, tt.insecure
		err := c.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("listen %s, pos_token %q, pos_insecure_lan %v: %v, want ok %v", tt.listen, tt.posToken, tt.insecure, err, tt.ok)
		}
		if err != nil && (!strings.Contains(err.Error(), "LOYALTY_POS_TOKEN") || !strings.Contains(err.Error(), "--pos-insecure-lan")) {
			t.Errorf("error %q does not say how to fix it", err)
		}
	}

	// AgentMain refuses before it opens anything.
	c := base
	c.Listen, c.Database = "0.0.0.0:0", filepath.Join(t.TempDir(), "agent.db")
	m := &AgentMain{Config: c, Logger: slog.New(slog.DiscardHandler)}
	if err := m.Open(context.Background()); err == nil {
		m.Close()
		t.Fatal("AgentMain.Open on 0.0.0.0 without a POS token succeeded")
	} else if !strings.Contains(err.Error(), "pos_token") {
		t.Errorf("AgentMain.Open: %v, want the exposure refusal", err)
	}
	if _, err := os.Stat(c.Database); !os.IsNotExist(err) {
		t.Errorf("the replica was created (%v) though the agent refused to start", err)
	}
}

// TestConfig_POSKeys: pos_allowed_hosts and pos_insecure_lan load from the file and the
// environment (a comma-separated list), and bad entries are refused.
func TestConfig_POSKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(file, []byte("store_id: s1\ntoken: t\nlisten: 0.0.0.0:8081\npos_insecure_lan: true\npos_allowed_hosts: [storepc.lan, 10.0.0.5]\n"), 0o644)
	var a AgentConfig
	if err := loadConfig(cmdWith(t, agentCommand, "--config", file), DefaultAgentConfig(), &a); err != nil {
		t.Fatal(err)
	}
	if !a.POSInsecureLAN || !slices.Equal(a.POSAllowedHosts, []string{"storepc.lan", "10.0.0.5"}) {
		t.Errorf("from the file: pos_insecure_lan %v, pos_allowed_hosts %q", a.POSInsecureLAN, a.POSAllowedHosts)
	}
	if err := a.Validate(); err != nil {
		t.Errorf("with pos_insecure_lan: %v", err)
	}

	t.Setenv("LOYALTY_POS_INSECURE_LAN", "false")
	t.Setenv("LOYALTY_POS_ALLOWED_HOSTS", "till-pc, till-pc.store.lan")
	a = AgentConfig{}
	if err := loadConfig(cmdWith(t, agentCommand, "--config", file), DefaultAgentConfig(), &a); err != nil {
		t.Fatal(err)
	}
	if a.POSInsecureLAN || !slices.Equal(a.POSAllowedHosts, []string{"till-pc", " till-pc.store.lan"}) {
		t.Errorf("from the environment: pos_insecure_lan %v, pos_allowed_hosts %q", a.POSInsecureLAN, a.POSAllowedHosts)
	}
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "pos_insecure_lan") {
		t.Errorf("LOYALTY_POS_INSECURE_LAN=false over the file: %v, want the exposure refusal", err)
	}

	a = DefaultAgentConfig()
	a.StoreID, a.Token = "s1", "t"
	for _, bad := range []string{"", " ", "*.lan", "http://storepc", "store pc"} {
		a.POSAllowedHosts = []string{"ok.lan", bad}
		if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "pos_allowed_hosts") {
			t.Errorf("pos_allowed_hosts entry %q: %v, want an error naming the key", bad, err)
		}
	}
}

// TestConfig_POSFlags: the flags, once main.go's agentCommand defines them, bind like the others.
func TestConfig_POSFlags(t *testing.T) {
	if agentCommand().Flags().Lookup("pos-insecure-lan") == nil {
		t.Skip("agentCommand (main.go) does not define --pos-insecure-lan yet")
	}
	var a AgentConfig
	args := []string{"--listen", "0.0.0.0:8081", "--pos-insecure-lan"}
	if agentCommand().Flags().Lookup("pos-allowed-hosts") != nil {
		args = append(args, "--pos-allowed-hosts", "storepc.lan,10.0.0.5")
	}
	if err := loadConfig(cmdWith(t, agentCommand, args...), DefaultAgentConfig(), &a); err != nil {
		t.Fatal(err)
	}
	if !a.POSInsecureLAN || a.Listen != "0.0.0.0:8081" {
		t.Errorf("--pos-insecure-lan: %+v", a)
	}
	if len(args) > 3 && !slices.Equal(a.POSAllowedHosts, []string{"storepc.lan", "10.0.0.5"}) {
		t.Errorf("--pos-allowed-hosts: %q", a.POSAllowedHosts)
	}
}
