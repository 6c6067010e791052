package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/clock"
	"github.com/loyalty-edge-sync/loyalty/internal/sqlitedb"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// HubConfig configures `loyalty hub` and the admin commands that work on the hub's database.
type HubConfig struct {
	Listen      string        `mapstructure:"listen"`
	Database    string        `mapstructure:"database"` // a SQLite file path, or a postgres:// URL (openHubStore)
	AdminAPIKey string        `mapstructure:"admin_api_key"`
	Log         LogConfig     `mapstructure:"log"`
	Sync        HubSyncConfig `mapstructure:"sync"`
	QR          QRConfig      `mapstructure:"qr"`
	Leases      LeaseConfig   `mapstructure:"leases"`
	Claims      ClaimsConfig  `mapstructure:"claims"`
	HTTP        HubHTTPConfig `mapstructure:"http"`
	TLS         HubTLSConfig  `mapstructure:"tls"`
	Keys        KeysConfig    `mapstructure:"keys"`
	Metrics     MetricsConfig `mapstructure:"metrics"` // metrics.go

	Webhooks WebhooksConfig `mapstructure:"webhooks"` // webhook.go
}

// KeysConfig says where the key-encryption key that seals the QR signing keys comes from.
type KeysConfig struct {
	KEK     string `mapstructure:"kek"`      // base64 of 32 bytes; takes precedence over kek_file
	KEKFile string `mapstructure:"kek_file"` // default: a SQLite database's path with .kek for .db; none for PostgreSQL
}

// HubHTTPConfig bounds the hub's HTTP server (hub.Limits). The timeouts govern HTTP requests;
// a sync session, once upgraded to a websocket, has its own deadlines (sync.heartbeat).
type HubHTTPConfig struct {
	ReadHeaderTimeout time.Duration `mapstructure:"read_header_timeout"`
	ReadTimeout       time.Duration `mapstructure:"read_timeout"`
	WriteTimeout      time.Duration `mapstructure:"write_timeout"`
	IdleTimeout       time.Duration `mapstructure:"idle_timeout"`
	MaxHeaderBytes    int           `mapstructure:"max_header_bytes"`
	MaxConnections    int           `mapstructure:"max_connections"`
	MaxSyncSessions   int           `mapstructure:"max_sync_sessions"`
}

// HubTLSConfig gives the hub its certificate: with both files set it serves HTTPS and wss://,
// and takes a replaced pair at the next TLS handshake, without a restart.
type HubTLSConfig struct {
	CertFile string `mapstructure:"cert_file"` // PEM: the certificate, then any intermediates
	KeyFile  string `mapstructure:"key_file"`  // PEM: its private key
}

// ClaimsConfig bounds the event times the hub accepts from stores (docs/PROTOCOL.md, "What the
// hub verifies").
type ClaimsConfig struct {
	Backdate   time.Duration `mapstructure:"backdate"`
	MaxOffline time.Duration `mapstructure:"max_offline"`
	MaxFuture  time.Duration `mapstructure:"max_future"`
}

// LeaseConfig sizes and times budget quota leases (docs/BUDGETS.md, "Leases"); a budget's own
// lease_ttl and expected_outage override TTL and ExpectedOutage.
type LeaseConfig struct {
	TTL            time.Duration `mapstructure:"ttl"`
	Margin         time.Duration `mapstructure:"margin"`
	ExpectedOutage time.Duration `mapstructure:"expected_outage"`
	DemandWindow   time.Duration `mapstructure:"demand_window"`
	Headroom       float64       `mapstructure:"headroom"`
	Min            int64         `mapstructure:"min"`
	Share          float64       `mapstructure:"share"`
}

// Hub returns the hub's lease settings.
func (c LeaseConfig) Hub() hub.LeaseConfig {
	return hub.LeaseConfig{TTL: c.TTL, Margin: c.Margin, ExpectedOutage: c.ExpectedOutage, DemandWindow: c.DemandWindow,
		Headroom: c.Headroom, Min: c.Min, Share: c.Share}
}

// defaultLeases returns the hub's lease defaults (hub.DefaultLeaseConfig).
func defaultLeases() LeaseConfig {
	d := hub.DefaultLeaseConfig()
	return LeaseConfig{TTL: d.TTL, Margin: d.Margin, ExpectedOutage: d.ExpectedOutage, DemandWindow: d.DemandWindow,
		Headroom: d.Headroom, Min: d.Min, Share: d.Share}
}

// Validate reports the first problem with the lease settings. heartbeat is sync.heartbeat.
func (c LeaseConfig) Validate(heartbeat time.Duration) error {
	switch {
	case c.TTL < time.Second || c.TTL < 3*heartbeat:
		return fmt.Errorf("leases.ttl must be at least 1s and at least 3x sync.heartbeat, so connected stores renew in time")
	case c.Margin < 0:
		return fmt.Errorf("leases.margin cannot be negative")
	case c.ExpectedOutage < time.Minute || c.ExpectedOutage > loyalty.MaxLeaseTTL:
		return fmt.Errorf("leases.expected_outage must be 1m to %s (default %s): the outage a store's lease carries it through", loyalty.Duration(loyalty.MaxLeaseTTL), loyalty.Duration(defaultLeases().ExpectedOutage))
	case c.DemandWindow < time.Hour || c.DemandWindow > loyalty.MaxLeaseTTL:
		return fmt.Errorf("leases.demand_window must be 1h to %s (default %s): demand is counted per hour", loyalty.Duration(loyalty.MaxLeaseTTL), loyalty.Duration(defaultLeases().DemandWindow))
	case c.Headroom < 1 || c.Headroom > 10:
		return fmt.Errorf("leases.headroom must be 1 to 10 (default %g): a lease holds this many times the demand seen", defaultLeases().Headroom)
	case c.Min < 1:
		return fmt.Errorf("leases.min must be at least 1")
	case c.Share <= 0 || c.Share > 1:
		return fmt.Errorf("leases.share must be more than 0 and at most 1")
	}
	return nil
}

// HubSyncConfig tunes agent sessions.
type HubSyncConfig struct {
	Heartbeat       time.Duration `mapstructure:"heartbeat"`
	HelloTimeout    time.Duration `mapstructure:"hello_timeout"`
	MaxBatch        int           `mapstructure:"max_batch"`
	MaxMessageBytes int           `mapstructure:"max_message_bytes"`
	PollInterval    time.Duration `mapstructure:"poll_interval"`
}

// QRConfig sets token lifetimes.
type QRConfig struct {
	MemberTTL  time.Duration `mapstructure:"member_ttl"`
	VoucherTTL time.Duration `mapstructure:"voucher_ttl"`
}

// LogConfig selects the log handler.
type LogConfig struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// AgentConfig configures `loyalty agent`.
type AgentConfig struct {
	StoreID  string          `mapstructure:"store_id"`
	Token    string          `mapstructure:"token"`
	HubURL   string          `mapstructure:"hub_url"` // one URL, or several hubs on one database, comma-separated (HubURLs)
	Listen   string          `mapstructure:"listen"`
	Database string          `mapstructure:"database"`
	POSToken string          `mapstructure:"pos_token"`
	TimeZone string          `mapstructure:"timezone"`
	Log      LogConfig       `mapstructure:"log"`
	Sync     AgentSyncConfig `mapstructure:"sync"`
	Faults   FaultConfig     `mapstructure:"faults"`
	Metrics  MetricsConfig   `mapstructure:"metrics"` // metrics.go

	// POSAllowedHosts are further names the POS may call the agent by (the Host header), besides
	// localhost, loopback addresses and the host of listen; see agent.Server.AllowedHosts.
	POSAllowedHosts []string `mapstructure:"pos_allowed_hosts"`
	// POSInsecureLAN lets the POS API listen beyond loopback without a pos_token (agent.CheckExposure).
	POSInsecureLAN bool `mapstructure:"pos_insecure_lan"`

	// TLS says which CA the hub's certificate must come from (wss:// hub_url).
	TLS AgentTLSConfig `mapstructure:"tls"`
	// AllowInsecureWS lets hub_url be plain ws:// to a host other than loopback (checkHubURL).
	AllowInsecureWS bool `mapstructure:"allow_insecure_ws"`

	// What the agent keeps and for how long (retention.go).
	Replica AgentReplicaConfig `mapstructure:"replica"`
	Outbox  AgentOutboxConfig  `mapstructure:"outbox"`
	POS     AgentPOSConfig     `mapstructure:"pos"`
}

// AgentTLSConfig configures how the agent checks the hub's certificate.
type AgentTLSConfig struct {
	// CAFile is a PEM file of the CA certificate(s) the hub's certificate must be issued by;
	// empty: the system's trusted CAs.
	CAFile string `mapstructure:"ca_file"`
}

// AgentSyncConfig tunes the agent's sync client.
type AgentSyncConfig struct {
	MinBackoff      time.Duration `mapstructure:"min_backoff"`
	MaxBackoff      time.Duration `mapstructure:"max_backoff"`
	BatchSize       int           `mapstructure:"batch_size"`
	PushDelay       time.Duration `mapstructure:"push_delay"`
	LookupTimeout   time.Duration `mapstructure:"lookup_timeout"`
	MaxMessageBytes int           `mapstructure:"max_message_bytes"`
}

// FaultConfig injects failures, for end-to-end tests only. Never set these in production.
type FaultConfig struct {
	DuplicatePush  bool `mapstructure:"duplicate_push"`   // send every push twice
	CrashAfterAcks int  `mapstructure:"crash_after_acks"` // exit(3) when the Nth ack arrives, before recording it
}

// DefaultHubConfig returns the hub's defaults.
func DefaultHubConfig() HubConfig {
	return HubConfig{
		Listen:   "127.0.0.1:8080",
		Database: "hub.db",
		Log:      LogConfig{Level: "info", Format: "text"},
		Sync: HubSyncConfig{Heartbeat: 10 * time.Second, HelloTimeout: 10 * time.Second, MaxBatch: 500,
			MaxMessageBytes: 1 << 20, PollInterval: time.Second},
		QR:     QRConfig{MemberTTL: 2 * 365 * 24 * time.Hour, VoucherTTL: 90 * 24 * time.Hour},
		Leases: defaultLeases(),
		Claims: ClaimsConfig{Backdate: time.Hour, MaxOffline: 30 * 24 * time.Hour, MaxFuture: 10 * time.Minute},
		HTTP:   defaultHubHTTP(),

		Webhooks: defaultWebhooks(),
	}
}

// defaultHubHTTP returns the HTTP server's production limits (hub.DefaultLimits).
func defaultHubHTTP() HubHTTPConfig {
	l := hub.DefaultLimits()
	return HubHTTPConfig{ReadHeaderTimeout: l.ReadHeaderTimeout, ReadTimeout: l.ReadTimeout, WriteTimeout: l.WriteTimeout,
		IdleTimeout: l.IdleTimeout, MaxHeaderBytes: l.MaxHeaderBytes, MaxConnections: l.MaxConnections, MaxSyncSessions: l.MaxSyncSessions}
}

// Limits returns the HTTP server's limits for hub.Server.
func (c HubHTTPConfig) Limits() hub.Limits {
	return hub.Limits{ReadHeaderTimeout: c.ReadHeaderTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout,
		IdleTimeout: c.IdleTimeout, MaxHeaderBytes: c.MaxHeaderBytes, MaxConnections: c.MaxConnections, MaxSyncSessions: c.MaxSyncSessions}
}

// Validate reports the first problem with the HTTP server's limits.
func (c HubHTTPConfig) Validate() error {
	switch {
	case c.ReadHeaderTimeout < time.Second:
		return fmt.Errorf("http.read_header_timeout must be at least 1s (default %s)", defaultHubHTTP().ReadHeaderTimeout)
	case c.ReadTimeout < c.ReadHeaderTimeout:
		return fmt.Errorf("http.read_timeout must be at least http.read_header_timeout (%s): it includes reading the headers", c.ReadHeaderTimeout)
	case c.WriteTimeout < time.Second:
		return fmt.Errorf("http.write_timeout must be at least 1s (default %s); raise it if large API answers (GET /v1/check) are cut off", defaultHubHTTP().WriteTimeout)
	case c.IdleTimeout < time.Second:
		return fmt.Errorf("http.idle_timeout must be at least 1s (default %s)", defaultHubHTTP().IdleTimeout)
	case c.MaxHeaderBytes < 4<<10 || c.MaxHeaderBytes > 1<<20:
		return fmt.Errorf("http.max_header_bytes must be 4096 to 1048576, got %d", c.MaxHeaderBytes)
	case c.MaxSyncSessions < 1:
		return fmt.Errorf("http.max_sync_sessions must be at least 1 (the number of stores that may be connected at once)")
	case c.MaxConnections <= c.MaxSyncSessions:
		return fmt.Errorf("http.max_connections (%d) must be more than http.max_sync_sessions (%d), so the HTTP API stays reachable when every session is in use",
			c.MaxConnections, c.MaxSyncSessions)
	}
	return nil
}

// Validate reports the first problem with c.
// checkQR checks the codes' lifetimes, which the admin commands that sign codes use too.
func (c HubConfig) checkQR() error {
	switch {
	case c.QR.MemberTTL < 0 || c.QR.MemberTTL > 0 && c.QR.MemberTTL < time.Minute:
		return fmt.Errorf("qr.member_ttl must be at least 1m, or 0 (member codes never expire), got %s", c.QR.MemberTTL)
	case c.QR.VoucherTTL < time.Minute:
		return fmt.Errorf("qr.voucher_ttl must be at least 1m, got %s", c.QR.VoucherTTL)
	}
	return nil
}

// folderMissing is sqlitedb.CheckFolder's answer when the database's folder is missing or is no
// folder; a folder this user may not look into is the service's to open (--check-config is often
// run by another user than the service's).
func folderMissing(path string) error {
	if err := sqlitedb.CheckFolder(path); err != nil && !errors.Is(err, fs.ErrPermission) {
		return err
	}
	return nil
}

func (c HubConfig) Validate() error {
	if err := checkDatabaseForm(c.Database); err != nil {
		return err
	}
	if err := c.checkKEK(); err != nil {
		return err
	}
	switch {
	case c.AdminAPIKey == "":
		return fmt.Errorf("admin_api_key is required: the key that protects the hub's HTTP API. Make one with " +
			"`export LOYALTY_ADMIN_API_KEY=$(head -c 24 /dev/urandom | base64)` and keep it in your secret store")
	case len(c.AdminAPIKey) < 16:
		return fmt.Errorf("admin_api_key must be at least 16 characters, got %d (LOYALTY_ADMIN_API_KEY): "+
			"make one with `head -c 24 /dev/urandom | base64`", len(c.AdminAPIKey))
	case c.Sync.Heartbeat < 100*time.Millisecond:
		return fmt.Errorf("sync.heartbeat must be at least 100ms")
	case c.Sync.HelloTimeout < 100*time.Millisecond || c.Sync.HelloTimeout > 5*time.Minute:
		return fmt.Errorf("sync.hello_timeout must be 100ms to 5m")
	case c.Sync.PollInterval < 10*time.Millisecond || c.Sync.PollInterval > time.Hour:
		return fmt.Errorf("sync.poll_interval must be 10ms to 1h (leases expire, and on SQLite admin changes reach the stores, at this pace)")
	case c.checkQR() != nil:
		return c.checkQR()
	case c.Sync.MaxBatch < 1 || c.Sync.MaxBatch > 10000:
		return fmt.Errorf("sync.max_batch must be 1 to 10000")
	case c.Sync.MaxMessageBytes < lsync.MinMessageBytes || c.Sync.MaxMessageBytes > 64<<20:
		return fmt.Errorf("sync.max_message_bytes must be %d to %d", lsync.MinMessageBytes, 64<<20)
	case c.Leases.Validate(c.Sync.Heartbeat) != nil:
		return c.Leases.Validate(c.Sync.Heartbeat)
	case c.Claims.Backdate < time.Minute || c.Claims.Backdate > 7*24*time.Hour:
		return fmt.Errorf("claims.backdate must be 1m to 168h")
	case c.Claims.MaxOffline < c.Leases.TTL || c.Claims.MaxOffline < c.Claims.Backdate:
		return fmt.Errorf("claims.max_offline must be at least leases.ttl and claims.backdate")
	case c.Claims.MaxFuture < time.Minute || c.Claims.MaxFuture > 24*time.Hour:
		return fmt.Errorf("claims.max_future must be 1m to 24h")
	case (c.TLS.CertFile == "") != (c.TLS.KeyFile == ""):
		return fmt.Errorf("tls.cert_file and tls.key_file must be set together (LOYALTY_TLS_CERT_FILE, LOYALTY_TLS_KEY_FILE): " +
			"the hub's PEM certificate, intermediates included, and its private key; leave both empty to serve plain HTTP")
	}
	for _, f := range [][2]string{{"tls.cert_file", c.TLS.CertFile}, {"tls.key_file", c.TLS.KeyFile}} {
		if _, err := os.Stat(f[1]); f[1] != "" && err != nil {
			return fmt.Errorf("%s: %w", f[0], err) // before the database is opened or made
		}
	}
	if !isPostgresURL(c.Database) {
		if err := folderMissing(c.Database); err != nil { // --check-config says so too
			return err
		}
	}
	if err := checkListen(c.Listen); err != nil {
		return err
	}
	if err := c.Metrics.Validate(); err != nil { // metrics.go
		return err
	}
	if err := c.HTTP.Validate(); err != nil {
		return err
	}
	if err := c.Webhooks.Validate(); err != nil {
		return err
	}
	return c.Log.Validate()
}

// checkListen checks a listen address is host:port with a port number.
func checkListen(addr string) error {
	if addr == "" {
		return fmt.Errorf("listen is required (host:port, such as 127.0.0.1:8080)")
	}
	_, port, err := net.SplitHostPort(addr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return fmt.Errorf("listen must be host:port, such as 127.0.0.1:8080 (or :8080 for every address), got %q", addr)
	}
	return nil
}

// DefaultAgentConfig returns the agent's defaults.
func DefaultAgentConfig() AgentConfig {
	return AgentConfig{
		HubURL:   "ws://127.0.0.1:8080/v1/sync",
		Listen:   "127.0.0.1:8081",
		Database: "agent.db",
		TimeZone: "UTC",
		Log:      LogConfig{Level: "info", Format: "text"},
		Sync: AgentSyncConfig{MinBackoff: 250 * time.Millisecond, MaxBackoff: 30 * time.Second, BatchSize: 250,
			PushDelay: 10 * time.Millisecond, LookupTimeout: 500 * time.Millisecond, MaxMessageBytes: 1 << 20},
		Replica: defaultReplica, Outbox: defaultOutbox, POS: defaultPOS,
	}
}

// Validate reports the first problem with c.
func (c AgentConfig) Validate() error {
	switch {
	case c.StoreID == "":
		return fmt.Errorf("store_id is required: the id the store was registered with at the hub (`loyalty store add --id …`; --store-id, LOYALTY_STORE_ID)")
	case c.Token == "":
		return fmt.Errorf("token is required: the store token printed by `loyalty store add` (set LOYALTY_TOKEN)")
	case !allHaveWSScheme(c.HubURLs()):
		return fmt.Errorf("hub_url must start with ws:// or wss:// (several hubs: URLs separated by commas, each with ws:// or wss://), got %q", c.HubURL)
	case c.Database == "":
		return fmt.Errorf("database is required (a SQLite file path)")
	case isPostgresURL(c.Database):
		return fmt.Errorf("database: the agent's replica is a SQLite file path, not a PostgreSQL URL (%s is for the hub; "+
			"LOYALTY_DATABASE is read by both commands, so give the agent its own with --database or its config file)", databaseName(c.Database))
	}
	if err := folderMissing(c.Database); err != nil { // --check-config says so too
		return err
	}
	switch {
	case c.Sync.MinBackoff <= 0 || c.Sync.MaxBackoff < c.Sync.MinBackoff || c.Sync.MaxBackoff > time.Hour:
		return fmt.Errorf("sync.min_backoff must be positive and at most sync.max_backoff, which is at most 1h (a store that waits longer between attempts stays offline that long after the hub is back)")
	case c.Sync.BatchSize < 1 || c.Sync.BatchSize > 10000:
		return fmt.Errorf("sync.batch_size must be 1 to 10000")
	case c.Sync.PushDelay < 0 || c.Sync.PushDelay > time.Minute:
		return fmt.Errorf("sync.push_delay must be 0 to 1m (how long the agent gathers new sales before it sends them to the hub)")
	case c.Sync.LookupTimeout <= 0 || c.Sync.LookupTimeout > time.Minute:
		return fmt.Errorf("sync.lookup_timeout must be more than 0 and at most 1m (how long a connected store waits for the hub's figures for a member before it decides on its own records: the cashier waits that long)")
	case c.Sync.MaxMessageBytes < lsync.MinMessageBytes:
		return fmt.Errorf("sync.max_message_bytes must be at least %d", lsync.MinMessageBytes)
	}
	if err := loyalty.ValidateID("store", c.StoreID); err != nil {
		return fmt.Errorf("store_id: %w", err)
	}
	if err := checkListen(c.Listen); err != nil {
		return err
	}
	if err := c.Metrics.Validate(); err != nil { // metrics.go
		return err
	}
	for _, u := range c.HubURLs() {
		if err := checkHubURL(u, c.AllowInsecureWS, c.TLS.CAFile); err != nil {
			return err
		}
	}
	for _, h := range c.POSAllowedHosts {
		if h = strings.TrimSpace(h); h == "" || strings.ContainsAny(h, "*/ \t") {
			return fmt.Errorf("pos_allowed_hosts: each entry is a host name or IP address the POS calls the agent by, "+
				"without wildcards (a comma-separated list in LOYALTY_POS_ALLOWED_HOSTS), got %q", h)
		}
	}
	if err := agent.CheckExposure(c.Listen, c.POSToken, c.POSInsecureLAN); err != nil {
		return err
	}
	if c.POSToken != "" && len(c.POSToken) < 16 {
		return fmt.Errorf("pos_token must be at least 16 characters, got %d (LOYALTY_POS_TOKEN): a short token can be guessed; "+
			"make one with `head -c 24 /dev/urandom | base64`", len(c.POSToken))
	}
	// "Local" is a name LoadLocation takes, but it is this machine's zone, which the hub cannot
	// know: it would read the store's campaign hours in its own.
	if _, err := time.LoadLocation(c.TimeZone); err != nil || c.TimeZone == "Local" {
		return fmt.Errorf("timezone must be an IANA zone such as Europe/Berlin, got %q", c.TimeZone)
	}
	if err := c.validateRetention(); err != nil {
		return err
	}
	return c.Log.Validate()
}

// HubURLs returns the hubs in hub_url: one URL, or the URLs of several hub processes serving
// one database, separated by commas. The agent dials the first, and at every reconnection the
// next one, round and round (sync.Client.URLs), so that it moves to another hub when its hub dies.
func (c AgentConfig) HubURLs() []string {
	var out []string
	for u := range strings.SplitSeq(c.HubURL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

func allHaveWSScheme(urls []string) bool {
	for _, u := range urls {
		if !strings.HasPrefix(u, "ws://") && !strings.HasPrefix(u, "wss://") {
			return false
		}
	}
	return len(urls) > 0
}

// checkHubURL refuses a hub_url that would carry the store token and every sale unencrypted
// across a network: plain ws:// to a host other than loopback (127.0.0.0/8, ::1, localhost),
// unless allow_insecure_ws is set. AgentConfig.Validate and AgentMain.Open both call it.
func checkHubURL(hubURL string, allowInsecure bool, caFile string) error {
	u, err := url.Parse(hubURL)
	if err != nil || u.Hostname() == "" || (u.Scheme != "ws" && u.Scheme != "wss") {
		return fmt.Errorf("hub_url must be a ws:// or wss:// URL with a host, such as wss://hub.example.com/v1/sync, got %q", hubURL)
	}
	switch {
	case u.Scheme == "wss":
		return nil
	case caFile != "":
		return fmt.Errorf("tls.ca_file is set but hub_url %q is plain ws://, so no certificate would be checked: use a wss:// hub_url", hubURL)
	case isLoopbackHost(u.Hostname()) || allowInsecure:
		return nil
	}
	return fmt.Errorf("hub_url %q is plain ws:// to %s, which is not this machine: the store token and every sale would cross the network unencrypted. "+
		"Use a wss:// hub_url (the hub serves TLS with tls.cert_file and tls.key_file; if a private CA issued its certificate, set tls.ca_file here, LOYALTY_TLS_CA_FILE), "+
		"or, only on a network you trust, set allow_insecure_ws: true (LOYALTY_ALLOW_INSECURE_WS=true, --allow-insecure-ws)", hubURL, u.Hostname())
}

// isLoopbackHost reports whether host is localhost or a loopback address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Validate reports a bad log level or format.
func (c LogConfig) Validate() error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.Level)); err != nil {
		return fmt.Errorf("log.level must be debug, info, warn or error, got %q", c.Level)
	}
	if c.Format != "text" && c.Format != "json" {
		return fmt.Errorf("log.format must be text or json, got %q", c.Format)
	}
	return nil
}

// Logger builds the process's logger: the one place a handler is chosen.
func (c LogConfig) Logger() *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: l}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// loadConfig fills out from, in rising priority: defaults, the --config file, LOYALTY_*
// environment variables, and flags. Every key is bound explicitly, because viper's
// AutomaticEnv alone is invisible to Unmarshal. A key in the file that out does not have is an
// error naming the key (and the key it may be a typo of); a LOYALTY_* variable that no command
// reads is warned about on stderr, since the environment is shared with other programs.
func loadConfig(cmd *cobra.Command, defaults any, out any) error {
	v := viper.New()
	v.SetEnvPrefix("LOYALTY")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	known := flatten("", reflect.ValueOf(defaults))
	for key, val := range known {
		v.SetDefault(key, val)
		if err := v.BindEnv(key); err != nil {
			return err
		}
		if f := cmd.Flags().Lookup(strings.ReplaceAll(key, "_", "-")); f != nil {
			if err := v.BindPFlag(key, f); err != nil {
				return err
			}
		}
	}
	warnUnknownEnv(cmd.ErrOrStderr(), os.Environ())
	if path, _ := cmd.Flags().GetString("config"); path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("config file %s does not exist: check --config (the examples are in configs/)", path)
			}
			return fmt.Errorf("read config file %s: %w", path, err)
		}
		for _, k := range v.AllKeys() {
			if _, ok := known[k]; !ok {
				return fmt.Errorf("config file %s: %s", path, unknownKey(k, slices.Collect(maps.Keys(known))))
			}
		}
	}
	for key, def := range known {
		if err := checkValue(key, def, v.Get(key)); err != nil {
			return err
		}
	}
	if err := v.UnmarshalExact(out); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return nil
}

// checkValue says what is wrong with a setting's raw value (from a file, the environment or a
// flag) when it cannot be read as the type of its default, in words that name the key and an
// example, before decoding would give a generic message. A duration without a unit is refused:
// decoding would read "heartbeat: 10" as ten nanoseconds.
func checkValue(key string, def, raw any) error {
	where := fmt.Sprintf("%s (%s)", key, envName(key))
	switch def.(type) {
	case time.Duration:
		switch x := raw.(type) {
		case string:
			if _, err := time.ParseDuration(x); err != nil {
				return fmt.Errorf("%s: %q is not a duration: write a number with a unit, such as 500ms, 10s, 15m or 720h", where, x)
			}
		case int, int64, float64:
			if fmt.Sprint(x) != "0" {
				return fmt.Errorf("%s: %v has no unit: write it with one, such as %vs or %vm", where, x, x, x)
			}
		}
	case int, int64:
		switch x := raw.(type) {
		case string:
			if _, err := strconv.ParseInt(strings.TrimSpace(x), 10, 64); err != nil {
				return fmt.Errorf("%s: %q is not a whole number", where, x)
			}
		case float64, float32: // from a file (YAML 500.9): decoding would drop the fraction
			if f := reflect.ValueOf(x).Float(); f != math.Trunc(f) {
				return fmt.Errorf("%s: %v is not a whole number", where, x)
			}
		}
	case float64:
		if x, ok := raw.(string); ok {
			if _, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err != nil {
				return fmt.Errorf("%s: %q is not a number", where, x)
			}
		}
	case bool:
		if x, ok := raw.(string); ok {
			if _, err := strconv.ParseBool(strings.TrimSpace(x)); err != nil {
				return fmt.Errorf("%s: %q is not true or false", where, x)
			}
		}
	}
	return nil
}

// unknownKey says that key is not a setting of this command, and which one it may be a typo of.
func unknownKey(key string, keys []string) string {
	msg := fmt.Sprintf("unknown key %q", key)
	if k := closest(key, keys); k != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", k)
	} else if _, other := allConfigKeys()[key]; other {
		msg += " (it is a setting of the other command: the hub and the agent have separate configuration files)"
	}
	return msg + "; every key is listed in README.md, \"Configuration\""
}

// allConfigKeys is every key either command reads: the hub's and the agent's.
func allConfigKeys() map[string]any {
	keys := flatten("", reflect.ValueOf(DefaultHubConfig()))
	maps.Copy(keys, flatten("", reflect.ValueOf(DefaultAgentConfig())))
	return keys
}

// envName is the environment variable that sets key.
func envName(key string) string {
	return "LOYALTY_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// warnUnknownEnv warns about each LOYALTY_* variable in env that neither the hub nor the agent
// reads (a typo, such as LOYALTY_ADMIN_KEY, would otherwise be ignored in silence). Variables of
// the other command are fine: one shell often starts both, and so are the test suite's own
// (LOYALTY_TEST_POSTGRES, LOYALTY_TEST_CHROMIUM, …), which a developer's shell often exports.
func warnUnknownEnv(w io.Writer, env []string) {
	var names []string
	for k := range allConfigKeys() {
		names = append(names, envName(k))
	}
	if clock.Fake {
		names = append(names, clock.Env)
	}
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "LOYALTY_") || strings.HasPrefix(name, "LOYALTY_TEST_") || slices.Contains(names, name) {
			continue
		}
		msg := fmt.Sprintf("warning: the environment variable %s is not a loyalty setting and is ignored", name)
		var suffixes []string
		for _, n := range names {
			suffixes = append(suffixes, strings.TrimPrefix(n, "LOYALTY_"))
		}
		if n := closest(strings.TrimPrefix(name, "LOYALTY_"), suffixes); n != "" {
			msg += fmt.Sprintf(" (did you mean LOYALTY_%s?)", n)
		}
		fmt.Fprintln(w, msg)
	}
}

// closest returns the candidate nearest to word by edit distance, if it is near enough to be a
// typo of it (at most half of word's length, and at most 4 edits); else "".
func closest(word string, candidates []string) string {
	best, bestD := "", min(4, max(1, len(word)/2))+1
	for _, c := range slices.Sorted(slices.Values(candidates)) {
		if d := editDistance(word, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// flatten lists a config struct's keys (dotted mapstructure names) with their default values.
func flatten(prefix string, v reflect.Value) map[string]any {
	out := map[string]any{}
	t := v.Type()
	for i := range t.NumField() {
		key := prefix + t.Field(i).Tag.Get("mapstructure")
		f := v.Field(i)
		if f.Kind() == reflect.Struct {
			for k, val := range flatten(key+".", f) {
				out[k] = val
			}
			continue
		}
		out[key] = f.Interface()
	}
	return out
}

// printConfig writes the resolved configuration, one dotted key per line (the names used in
// config files; LOYALTY_ plus the key in upper case with dots as underscores in the
// environment), with secrets masked.
func printConfig(w io.Writer, cfg any) {
	kv := flatten("", reflect.ValueOf(cfg))
	keys := slices.Sorted(maps.Keys(kv))
	for _, k := range keys {
		v := fmt.Sprint(kv[k])
		if (k == "admin_api_key" || k == "token" || k == "pos_token" || k == "keys.kek") && v != "" {
			v = "***"
		}
		if k == "database" {
			v = databaseName(v)
		}
		fmt.Fprintf(w, "%s: %s\n", k, v)
	}
}
