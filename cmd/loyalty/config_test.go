package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/testca"
	"github.com/loyalty-edge-sync/loyalty/sync/ws"
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
	if a.Token != "secret" || a.StoreID != "store-1" || a.Sync.PushDelay != 10*time.Millisecond {
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
	a.HubURL, a.Log.Level = "wss://hub", "loud"
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "log.level") {
		t.Errorf("bad log level: %v", err)
	}
	a.Log.Level = "info"
	for _, d := range []time.Duration{-time.Millisecond, 2 * time.Minute} {
		a.Sync.PushDelay = d
		if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "sync.push_delay") {
			t.Errorf("sync.push_delay %s: %v, want it refused", d, err)
		}
	}
	a.Sync.PushDelay = 0
	if err := a.Validate(); err != nil {
		t.Errorf("sync.push_delay 0 (push every sale at once): %v", err)
	}
	// "Local" is this machine's zone, which the hub would read as its own.
	for _, tz := range []string{"Local", "Mars/Olympus"} {
		a.TimeZone = tz
		if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "timezone") {
			t.Errorf("timezone %q: %v, want it refused", tz, err)
		}
	}
	a.TimeZone = "Europe/Berlin"
	if err := a.Validate(); err != nil {
		t.Errorf("timezone Europe/Berlin: %v", err)
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
		{"0.0.0.0:8081", "pos-secret-0123456789", false, true},
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

// TestConfig_HubURLList: hub_url may name several hubs serving one database, comma-separated;
// each is checked as one hub_url is, and they are dialed in the order given.
func TestConfig_HubURLList(t *testing.T) {
	c := DefaultAgentConfig()
	c.StoreID, c.Token = "s1", "t"
	c.HubURL = " wss://hub-a.example.com/v1/sync, wss://hub-b.example.com/v1/sync ,"
	if err := c.Validate(); err != nil {
		t.Fatalf("two wss:// hubs: %v", err)
	}
	if got, want := c.HubURLs(), []string{"wss://hub-a.example.com/v1/sync", "wss://hub-b.example.com/v1/sync"}; !slices.Equal(got, want) {
		t.Errorf("HubURLs %q, want %q", got, want)
	}
	for _, bad := range []string{
		"wss://hub-a.example.com/v1/sync,https://hub-b.example.com/v1/sync", // not a websocket URL
		"wss://hub-a.example.com/v1/sync,ws://hub-b.example.com/v1/sync",    // plain ws:// across the network
		" , ",
	} {
		c.HubURL = bad
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "hub_url") {
			t.Errorf("hub_url %q: %v, want it refused, naming hub_url", bad, err)
		}
	}
}

// TestConfig_HubURLTransport: plain ws:// is accepted only to loopback, unless allow_insecure_ws;
// tls.ca_file needs wss://. Validate (so --check-config) and AgentMain.Open both refuse, the
// latter before it creates anything.
func TestConfig_HubURLTransport(t *testing.T) {
	base := DefaultAgentConfig()
	base.StoreID, base.Token = "s1", "t"
	for _, tt := range []struct {
		url      string
		insecure bool
		caFile   string
		ok       bool
	}{
		{"ws://127.0.0.1:8080/v1/sync", false, "", true},
		{"ws://127.9.8.7:8080/v1/sync", false, "", true},
		{"ws://localhost:8080/v1/sync", false, "", true},
		{"ws://LOCALHOST/v1/sync", false, "", true},
		{"ws://[::1]:8080/v1/sync", false, "", true},
		{"wss://hub.example.com/v1/sync", false, "", true},
		{"wss://hub.example.com/v1/sync", false, "ca.pem", true},
		{"ws://hub.example.com/v1/sync", false, "", false},
		{"ws://10.0.0.5:8080/v1/sync", false, "", false},
		{"ws://0.0.0.0:8080/v1/sync", false, "", false},
		{"ws://[2001:db8::1]:8080/v1/sync", false, "", false},
		{"ws://localhost.example.com/v1/sync", false, "", false},
		{"ws://hub.example.com/v1/sync", true, "", true},
		{"ws://127.0.0.1:8080/v1/sync", false, "ca.pem", false},
		{"ws:///v1/sync", false, "", false},
	} {
		c := base
		c.HubURL, c.AllowInsecureWS, c.TLS.CAFile = tt.url, tt.insecure, tt.caFile
		err := c.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("hub_url %s, allow_insecure_ws %v, tls.ca_file %q: %v, want ok %v", tt.url, tt.insecure, tt.caFile, err, tt.ok)
		}
		if err != nil && tt.caFile == "" && strings.Contains(tt.url, "example") {
			for _, want := range []string{"wss://", "tls.ca_file", "allow_insecure_ws", "LOYALTY_ALLOW_INSECURE_WS"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("hub_url %s: error %q does not mention %s", tt.url, err, want)
				}
			}
		}
	}

	// The key loads from the environment and the flag.
	t.Setenv("LOYALTY_HUB_URL", "ws://hub.example.com/v1/sync")
	t.Setenv("LOYALTY_ALLOW_INSECURE_WS", "true")
	t.Setenv("LOYALTY_TLS_CA_FILE", "/etc/loyalty/ca.pem")
	var a AgentConfig
	if err := loadConfig(cmdWith(t, agentCommand), DefaultAgentConfig(), &a); err != nil {
		t.Fatal(err)
	}
	if !a.AllowInsecureWS || a.TLS.CAFile != "/etc/loyalty/ca.pem" {
		t.Errorf("from the environment: allow_insecure_ws %v, tls.ca_file %q", a.AllowInsecureWS, a.TLS.CAFile)
	}
	t.Setenv("LOYALTY_ALLOW_INSECURE_WS", "")
	a = AgentConfig{}
	if err := loadConfig(cmdWith(t, agentCommand, "--allow-insecure-ws"), DefaultAgentConfig(), &a); err != nil || !a.AllowInsecureWS {
		t.Errorf("--allow-insecure-ws: %v, %v", a.AllowInsecureWS, err)
	}

	// AgentMain refuses before it opens anything: a ws:// hub off loopback, an unreadable or
	// empty CA file.
	caGarbage := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caGarbage, []byte("not a certificate\n"), 0o644)
	for _, tt := range []struct {
		name, url, caFile, want string
	}{
		{"ws off loopback", "ws://hub.example.com/v1/sync", "", "allow_insecure_ws"},
		{"no CA file", "wss://hub.example.com/v1/sync", filepath.Join(t.TempDir(), "missing.pem"), "tls.ca_file"},
		{"CA file without a certificate", "wss://hub.example.com/v1/sync", caGarbage, "holds no PEM certificate"},
	} {
		c := base
		c.HubURL, c.TLS.CAFile, c.Database = tt.url, tt.caFile, filepath.Join(t.TempDir(), "agent.db")
		c.Listen = "127.0.0.1:0"
		m := &AgentMain{Config: c, Logger: slog.New(slog.DiscardHandler)}
		if err := m.Open(context.Background()); err == nil {
			m.Close()
			t.Errorf("%s: AgentMain.Open succeeded", tt.name)
		} else if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: AgentMain.Open: %v, want it to mention %q", tt.name, err, tt.want)
		}
		if _, err := os.Stat(c.Database); !os.IsNotExist(err) {
			t.Errorf("%s: the replica was created (%v) though the agent refused to start", tt.name, err)
		}
	}
}

// TestConfig_HubHTTPAndTLS: the http.* limits and tls.* files load from the environment and the
// file, their defaults are valid, and bad values are refused with a message naming the key.
func TestConfig_HubHTTPAndTLS(t *testing.T) {
	h := DefaultHubConfig()
	h.AdminAPIKey = "0123456789abcdef"
	if err := h.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if h.HTTP.Limits() != hub.DefaultLimits() {
		t.Errorf("default http.* %+v, want hub.DefaultLimits %+v", h.HTTP.Limits(), hub.DefaultLimits())
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "hub.yaml")
	crt, key := filepath.Join(dir, "hub.crt"), filepath.Join(dir, "hub.key")
	os.WriteFile(file, []byte("http:\n  read_timeout: 45s\n  max_connections: 300\ntls:\n  cert_file: "+crt+"\n"), 0o644)
	t.Setenv("LOYALTY_ADMIN_API_KEY", "0123456789abcdef")
	t.Setenv("LOYALTY_HTTP_MAX_SYNC_SESSIONS", "200")
	t.Setenv("LOYALTY_HTTP_WRITE_TIMEOUT", "2m")
	t.Setenv("LOYALTY_TLS_KEY_FILE", key)
	if err := loadConfig(cmdWith(t, hubCommand, "--config", file), DefaultHubConfig(), &h); err != nil {
		t.Fatal(err)
	}
	want := HubHTTPConfig{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 45 * time.Second, WriteTimeout: 2 * time.Minute,
		IdleTimeout: 120 * time.Second, MaxHeaderBytes: 65536, MaxConnections: 300, MaxSyncSessions: 200}
	if h.HTTP != want || h.TLS.CertFile != crt || h.TLS.KeyFile != key {
		t.Errorf("loaded http %+v tls %+v, want http %+v and both files", h.HTTP, h.TLS, want)
	}
	// Files that are not there are refused with the configuration, before the hub opens its
	// database.
	if err := h.Validate(); err == nil || !strings.Contains(err.Error(), "tls.") {
		t.Errorf("TLS files that do not exist: %v, want an error naming the setting", err)
	}
	for _, f := range []string{crt, key} {
		os.WriteFile(f, []byte("PEM"), 0o600)
	}
	if err := h.Validate(); err != nil {
		t.Errorf("loaded: %v", err)
	}

	for _, tt := range []struct {
		name string
		edit func(*HubConfig)
		want string
	}{
		{"cert without key", func(c *HubConfig) { c.TLS.KeyFile = "" }, "tls.key_file"},
		{"key without cert", func(c *HubConfig) { c.TLS.CertFile = "" }, "tls.cert_file"},
		{"header timeout", func(c *HubConfig) { c.HTTP.ReadHeaderTimeout = 0 }, "http.read_header_timeout"},
		{"read below header", func(c *HubConfig) { c.HTTP.ReadTimeout = 5 * time.Second }, "http.read_timeout"},
		{"write timeout", func(c *HubConfig) { c.HTTP.WriteTimeout = time.Millisecond }, "http.write_timeout"},
		{"idle timeout", func(c *HubConfig) { c.HTTP.IdleTimeout = 0 }, "http.idle_timeout"},
		{"header bytes", func(c *HubConfig) { c.HTTP.MaxHeaderBytes = 100 }, "http.max_header_bytes"},
		{"no sessions", func(c *HubConfig) { c.HTTP.MaxSyncSessions = 0 }, "http.max_sync_sessions"},
		{"sessions fill connections", func(c *HubConfig) { c.HTTP.MaxConnections = c.HTTP.MaxSyncSessions }, "http.max_connections"},
	} {
		c := h
		tt.edit(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error naming %s", tt.name, err, tt.want)
		}
	}
}

// TestConfig_SecretsMasked: --check-config never prints a secret.
func TestConfig_SecretsMasked(t *testing.T) {
	h := DefaultHubConfig()
	h.AdminAPIKey, h.Keys.KEK, h.TLS.KeyFile = "admin-secret-0123456789", "a2VrLXNlY3JldA==", "/etc/hub.key"
	a := DefaultAgentConfig()
	a.Token, a.POSToken = "store-secret", "pos-secret-0123456789"
	var b strings.Builder
	printConfig(&b, h)
	printConfig(&b, a)
	out := b.String()
	for _, secret := range []string{"admin-secret-0123456789", "a2VrLXNlY3JldA==", "store-secret", "pos-secret"} {
		if strings.Contains(out, secret) {
			t.Errorf("--check-config printed the secret %q", secret)
		}
	}
	for _, line := range []string{"keys.kek: ***", "admin_api_key: ***", "tls.key_file: /etc/hub.key", "http.max_sync_sessions: 5000", "allow_insecure_ws: false"} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("--check-config output lacks %q:\n%s", line, out)
		}
	}
}

// TestHubAndAgentOverTLS: HubMain serves wss:// from tls.cert_file and tls.key_file; an agent
// trusting the CA in tls.ca_file syncs; one trusting another CA never connects and reports
// why, with what to do, in its status.
func TestHubAndAgentOverTLS(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ca := testca.MustNew(t, "loyalty test CA")
	hc := DefaultHubConfig()
	hc.Listen, hc.Database, hc.AdminAPIKey = "127.0.0.1:0", filepath.Join(dir, "hub.db"), "0123456789abcdef"
	hc.TLS.CertFile, hc.TLS.KeyFile = filepath.Join(dir, "hub.crt"), filepath.Join(dir, "hub.key")
	if err := ca.MustIssue(t, "127.0.0.1").Write(hc.TLS.CertFile, hc.TLS.KeyFile); err != nil {
		t.Fatal(err)
	}
	if err := hc.Validate(); err != nil {
		t.Fatal(err)
	}
	hm := &HubMain{Config: hc, Logger: slog.New(slog.DiscardHandler)}
	if err := hm.Open(ctx); err != nil {
		t.Fatalf("hub: %v", err)
	}
	t.Cleanup(func() { hm.Close() })
	if !strings.HasPrefix(hm.HTTP.SyncURL(), "wss://") {
		t.Fatalf("hub SyncURL %s, want wss://", hm.HTTP.SyncURL())
	}

	agentWith := func(id string, caPEM []byte) *AgentMain {
		t.Helper()
		_, token, err := hm.Hub.CreateStore(ctx, id, id)
		if err != nil {
			t.Fatal(err)
		}
		ac := DefaultAgentConfig()
		ac.StoreID, ac.Token, ac.HubURL, ac.Listen = id, token, hm.HTTP.SyncURL(), "127.0.0.1:0"
		ac.Database, ac.TLS.CAFile = filepath.Join(dir, id+".db"), filepath.Join(dir, id+"-ca.pem")
		ac.Sync.MinBackoff, ac.Sync.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
		os.WriteFile(ac.TLS.CAFile, caPEM, 0o644)
		if err := ac.Validate(); err != nil {
			t.Fatal(err)
		}
		am := &AgentMain{Config: ac, Logger: slog.New(slog.DiscardHandler)}
		if err := am.Open(ctx); err != nil {
			t.Fatalf("agent %s: %v", id, err)
		}
		t.Cleanup(func() { am.Close() })
		return am
	}
	waitFor := func(what string, cond func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			ok, why := cond()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %s", what, why)
			}
			<-time.After(10 * time.Millisecond) // paces the polling; nothing waits for time itself
		}
	}

	good := agentWith("good", ca.CertPEM)
	waitFor("the agent trusting the CA online", func() (bool, string) {
		st := good.Client.Status()
		return st.Online, "last error: " + st.LastError
	})

	// The wrong scheme either way says which to use.
	plainURL := "ws://" + hm.HTTP.ListenAddr() + "/v1/sync"
	_, err := hintDialer{Dialer: &ws.Dialer{}}.Dial(ctx, plainURL)
	if err == nil || !strings.Contains(err.Error(), "use a wss:// hub_url") {
		t.Errorf("ws:// to the TLS hub: %v, want the advice to use wss://", err)
	}
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	_, err = hintDialer{Dialer: &ws.Dialer{}}.Dial(ctx, "wss://"+plain.Listener.Addr().String()+"/v1/sync")
	if err == nil || !strings.Contains(err.Error(), "does not serve TLS") {
		t.Errorf("wss:// to a plain HTTP server: %v, want the advice that it does not serve TLS", err)
	}

	bad := agentWith("bad", testca.MustNew(t, "another CA").CertPEM)
	waitFor("the agent trusting another CA to report the certificate error", func() (bool, string) {
		st := bad.Client.Status()
		return strings.Contains(st.LastError, "certificate signed by unknown authority") && strings.Contains(st.LastError, "tls.ca_file"),
			"last error: " + st.LastError
	})
	if st := bad.Client.Status(); st.Online || st.Sessions != 0 {
		t.Errorf("the agent trusting another CA: online %v after %d sessions; want never connected", st.Online, st.Sessions)
	}
}
