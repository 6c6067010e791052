package main

import (
	"fmt"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/loyalty-edge-sync/loyalty/agent"
)

// HubConfig configures `loyalty hub` and the admin commands that work on the hub's database.
type HubConfig struct {
	Listen      string        `mapstructure:"listen"`
	Database    string        `mapstructure:"database"`
	AdminAPIKey string        `mapstructure:"admin_api_key"`
	Log         LogConfig     `mapstructure:"log"`
	Sync        HubSyncConfig `mapstructure:"sync"`
	QR          QRConfig      `mapstructure:"qr"`
	Leases      LeaseConfig   `mapstructure:"leases"`
	Claims      ClaimsConfig  `mapstructure:"claims"`
}

// ClaimsConfig bounds the event times the hub accepts from stores (docs/PROTOCOL.md, "What the
// hub verifies").
type ClaimsConfig struct {
	Backdate   time.Duration `mapstructure:"backdate"`
	MaxOffline time.Duration `mapstructure:"max_offline"`
	MaxFuture  time.Duration `mapstructure:"max_future"`
}

// LeaseConfig sizes and times budget quota leases (docs/BUDGETS.md).
type LeaseConfig struct {
	TTL    time.Duration `mapstructure:"ttl"`
	Margin time.Duration `mapstructure:"margin"`
	Min    int64         `mapstructure:"min"`
	Share  float64       `mapstructure:"share"`
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
	HubURL   string          `mapstructure:"hub_url"`
	Listen   string          `mapstructure:"listen"`
	Database string          `mapstructure:"database"`
	POSToken string          `mapstructure:"pos_token"`
	TimeZone string          `mapstructure:"timezone"`
	Log      LogConfig       `mapstructure:"log"`
	Sync     AgentSyncConfig `mapstructure:"sync"`
	Faults   FaultConfig     `mapstructure:"faults"`

	// POSAllowedHosts are further names the POS may call the agent by (the Host header), besides
	// localhost, loopback addresses and the host of listen; see agent.Server.AllowedHosts.
	POSAllowedHosts []string `mapstructure:"pos_allowed_hosts"`
	// POSInsecureLAN lets the POS API listen beyond loopback without a pos_token (agent.CheckExposure).
	POSInsecureLAN bool `mapstructure:"pos_insecure_lan"`
}

// AgentSyncConfig tunes the agent's sync client.
type AgentSyncConfig struct {
	MinBackoff      time.Duration `mapstructure:"min_backoff"`
	MaxBackoff      time.Duration `mapstructure:"max_backoff"`
	BatchSize       int           `mapstructure:"batch_size"`
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
		Leases: LeaseConfig{TTL: 15 * time.Minute, Margin: time.Minute, Min: 1, Share: 0.05},
		Claims: ClaimsConfig{Backdate: time.Hour, MaxOffline: 30 * 24 * time.Hour, MaxFuture: 10 * time.Minute},
	}
}

// Validate reports the first problem with c.
func (c HubConfig) Validate() error {
	switch {
	case c.Listen == "":
		return fmt.Errorf("listen is required (host:port)")
	case c.Database == "":
		return fmt.Errorf("database is required (a SQLite file path)")
	case len(c.AdminAPIKey) < 16:
		return fmt.Errorf("admin_api_key must be at least 16 characters (set LOYALTY_ADMIN_API_KEY)")
	case c.Sync.Heartbeat < 100*time.Millisecond:
		return fmt.Errorf("sync.heartbeat must be at least 100ms")
	case c.Sync.MaxBatch < 1 || c.Sync.MaxBatch > 10000:
		return fmt.Errorf("sync.max_batch must be 1 to 10000")
	case c.Sync.MaxMessageBytes < 64<<10:
		return fmt.Errorf("sync.max_message_bytes must be at least 65536")
	case c.QR.VoucherTTL <= 0:
		return fmt.Errorf("qr.voucher_ttl must be positive")
	case c.Leases.TTL < time.Second || c.Leases.TTL < 3*c.Sync.Heartbeat:
		return fmt.Errorf("leases.ttl must be at least 1s and at least 3x sync.heartbeat, so connected stores renew in time")
	case c.Leases.Margin < 0:
		return fmt.Errorf("leases.margin cannot be negative")
	case c.Leases.Min < 1:
		return fmt.Errorf("leases.min must be at least 1")
	case c.Leases.Share <= 0 || c.Leases.Share > 1:
		return fmt.Errorf("leases.share must be more than 0 and at most 1")
	case c.Claims.Backdate < time.Minute || c.Claims.Backdate > 7*24*time.Hour:
		return fmt.Errorf("claims.backdate must be 1m to 168h")
	case c.Claims.MaxOffline < c.Leases.TTL || c.Claims.MaxOffline < c.Claims.Backdate:
		return fmt.Errorf("claims.max_offline must be at least leases.ttl and claims.backdate")
	case c.Claims.MaxFuture < time.Minute || c.Claims.MaxFuture > 24*time.Hour:
		return fmt.Errorf("claims.max_future must be 1m to 24h")
	}
	return c.Log.Validate()
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
			LookupTimeout: 500 * time.Millisecond, MaxMessageBytes: 1 << 20},
	}
}

// Validate reports the first problem with c.
func (c AgentConfig) Validate() error {
	switch {
	case c.StoreID == "":
		return fmt.Errorf("store_id is required")
	case c.Token == "":
		return fmt.Errorf("token is required: the store token printed by `loyalty store add` (set LOYALTY_TOKEN)")
	case !strings.HasPrefix(c.HubURL, "ws://") && !strings.HasPrefix(c.HubURL, "wss://"):
		return fmt.Errorf("hub_url must start with ws:// or wss://, got %q", c.HubURL)
	case c.Listen == "":
		return fmt.Errorf("listen is required (host:port of the POS API)")
	case c.Database == "":
		return fmt.Errorf("database is required (a SQLite file path)")
	case c.Sync.MinBackoff <= 0 || c.Sync.MaxBackoff < c.Sync.MinBackoff:
		return fmt.Errorf("sync.min_backoff must be positive and at most sync.max_backoff")
	case c.Sync.BatchSize < 1:
		return fmt.Errorf("sync.batch_size must be positive")
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
	if _, err := time.LoadLocation(c.TimeZone); err != nil {
		return fmt.Errorf("timezone must be an IANA zone such as Europe/Berlin, got %q", c.TimeZone)
	}
	return c.Log.Validate()
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
// AutomaticEnv alone is invisible to Unmarshal.
func loadConfig(cmd *cobra.Command, defaults any, out any) error {
	v := viper.New()
	v.SetEnvPrefix("LOYALTY")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	for key, val := range flatten("", reflect.ValueOf(defaults)) {
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
	if path, _ := cmd.Flags().GetString("config"); path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return fmt.Errorf("read config %s: %w", path, err)
		}
	}
	if err := v.UnmarshalExact(out); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
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
func printConfig(cfg any) {
	kv := flatten("", reflect.ValueOf(cfg))
	keys := slices.Sorted(maps.Keys(kv))
	for _, k := range keys {
		v := fmt.Sprint(kv[k])
		if (k == "admin_api_key" || k == "token" || k == "pos_token") && v != "" {
			v = "***"
		}
		fmt.Printf("%s: %s\n", k, v)
	}
}
