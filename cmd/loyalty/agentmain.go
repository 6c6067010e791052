package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/loyalty-edge-sync/loyalty/agent"
	agentsqlite "github.com/loyalty-edge-sync/loyalty/agent/sqlite"
	"github.com/loyalty-edge-sync/loyalty/internal/clock"
	"github.com/loyalty-edge-sync/loyalty/internal/metrics"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
	"github.com/loyalty-edge-sync/loyalty/sync/ws"
)

// AgentMain is a running store agent: replica, sync client and POS API.
type AgentMain struct {
	Config AgentConfig
	Logger *slog.Logger
	// Dialer overrides the websocket dialer (the demo routes one agent through a cuttable link).
	Dialer lsync.Dialer
	// BeforeAck, if set, is installed as the sync client's fault hook (see lsync.Faults).
	BeforeAck func(*lsync.Ack) error
	// DateError, if set, moves the clock the agent dates its changes by, not the one its sync
	// client measures the hub's clock with: the change's date on the hub's clock is off by it, as
	// when the estimate from a round trip under load runs behind (the demo's test).
	DateError time.Duration

	Store  *agentsqlite.Store
	Client *lsync.Client
	Agent  *agent.Agent
	HTTP   *agent.Server
	// Metrics serves GET /metrics on metrics.listen (nil when it is "").
	Metrics *metricsServer

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Open opens the replica, binds the POS port and starts syncing.
func (m *AgentMain) Open(ctx context.Context) (err error) {
	if m.Logger == nil {
		m.Logger = m.Config.Log.Logger()
	}
	c := m.Config
	m.Logger = m.Logger.With(slog.String("store", c.StoreID))
	if clock.Fake {
		m.Logger.Warn("TEST BUILD: this binary runs on the shared test clock (built with -tags fakeclock); never run it in a store or a hub")
	}
	// Before anything is opened: a POS API open to the network without a token is refused.
	if err := agent.CheckExposure(c.Listen, c.POSToken, c.POSInsecureLAN); err != nil {
		return err
	}
	// Nor is a hub reached unencrypted across a network, or through a CA file that cannot be read.
	urls := c.HubURLs()
	if len(urls) == 0 {
		return fmt.Errorf("hub_url is required: the hub's wss:// URL (or several hubs' URLs, comma-separated)")
	}
	for _, u := range urls {
		if err := checkHubURL(u, c.AllowInsecureWS, c.TLS.CAFile); err != nil {
			return err
		}
	}
	tlsConf, err := c.TLS.clientConfig()
	if err != nil {
		return err
	}
	for _, hubURL := range urls {
		if u, _ := url.Parse(hubURL); u.Scheme == "ws" && !isLoopbackHost(u.Hostname()) {
			m.Logger.Warn("allow_insecure_ws: syncing with the hub over plain ws:// across the network; the store token and every sale travel unencrypted",
				slog.String("hub", hubURL))
		}
	}
	if m.Store, err = agentsqlite.Open(ctx, c.Database); err != nil {
		return err
	}
	m.Store.Logger, m.Store.Now = m.Logger, clock.Now
	d := m.Dialer
	if d == nil {
		d = &ws.Dialer{Options: ws.Options{ReadLimit: int64(c.Sync.MaxMessageBytes)}, TLS: tlsConf}
	}
	d = hintDialer{Dialer: d, caFile: c.TLS.CAFile}
	m.Client = lsync.NewClient(urls[0], c.StoreID, c.Token, d, m.Store)
	if len(urls) > 1 {
		m.Client.URLs = urls // tried in turn (sync.Client.URLs)
	}
	m.Client.Logger, m.Client.AgentVersion, m.Client.Now = m.Logger, version, clock.Now
	m.Client.MinBackoff, m.Client.MaxBackoff, m.Client.BatchSize = c.Sync.MinBackoff, c.Sync.MaxBackoff, c.Sync.BatchSize
	m.Client.PushDelay = c.Sync.PushDelay
	m.Client.Faults.DuplicatePush = c.Faults.DuplicatePush
	m.Client.Faults.BeforeAck = m.BeforeAck
	if c.Faults.DuplicatePush || c.Faults.CrashAfterAcks > 0 {
		// For the fault simulator and its tests: never in a store. Said loudly, since a setting of
		// a known name (LOYALTY_FAULTS_…) raises no warning of its own.
		m.Logger.Error("fault injection is on (faults.*): this agent will misbehave on purpose; unset every faults setting in a store",
			slog.Bool("duplicate_push", c.Faults.DuplicatePush), slog.Int("crash_after_acks", c.Faults.CrashAfterAcks))
	}
	if n := c.Faults.CrashAfterAcks; n > 0 && m.BeforeAck == nil {
		acks := 0
		m.Client.Faults.BeforeAck = func(*lsync.Ack) error {
			if acks++; acks >= n {
				m.Logger.Error("fault injection: crashing before recording an ack", slog.Int("ack", acks))
				os.Exit(3)
			}
			return nil
		}
	}
	m.Agent = agent.New(c.StoreID, m.Store, m.Client)
	m.Agent.Logger, m.Agent.LookupTimeout, m.Agent.Now = m.Logger, c.Sync.LookupTimeout, clock.Now
	if e := m.DateError; e != 0 {
		m.Agent.Now = func() time.Time { return clock.Now().Add(e) }
	}
	m.Agent.Retention = c.Retention()
	if m.Agent.Location, err = time.LoadLocation(c.TimeZone); err != nil {
		m.Store.Close()
		return fmt.Errorf("timezone: %w", err)
	}
	m.HTTP = agent.NewServer(m.Agent, c.Listen)
	m.HTTP.Logger, m.HTTP.POSToken = m.Logger, c.POSToken
	m.HTTP.AllowedHosts, m.HTTP.InsecureLAN = c.POSAllowedHosts, c.POSInsecureLAN
	prom := metrics.NewAgent(m.Agent, m.Logger)
	m.HTTP.Metrics = prom
	mln, err := listenMetrics(c.Metrics.Listen)
	if err != nil {
		m.Store.Close()
		return err
	}
	if err := m.HTTP.Open(); err != nil {
		if mln != nil {
			mln.Close()
		}
		m.Store.Close()
		return err
	}
	m.Metrics = serveMetrics(mln, prom.Handler(), m.Logger)
	ctx, m.cancel = context.WithCancel(context.Background())
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		m.Client.Run(ctx)
	}()
	go func() { // eviction and pruning: at start, then hourly (agent.Retention)
		defer m.wg.Done()
		m.Agent.RunMaintenance(ctx)
	}()
	m.Logger.Info("agent listening", slog.String("pos_api", m.HTTP.URL()), slog.Any("pos_allowed_hosts", c.POSAllowedHosts),
		slog.String("hub", c.HubURL), slog.String("database", m.Store.Path()))
	return nil
}

// clientConfig returns the TLS configuration for a wss:// hub: the CA in ca_file, or the
// system's trusted CAs; TLS 1.2 or newer.
func (c AgentTLSConfig) clientConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile == "" {
		return tc, nil
	}
	b, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("tls.ca_file: %w: give the PEM file of the CA that issued the hub's certificate (LOYALTY_TLS_CA_FILE)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tls.ca_file %s holds no PEM certificate: give the CA certificate (-----BEGIN CERTIFICATE-----) that issued the hub's certificate", c.CAFile)
	}
	tc.RootCAs = pool
	return tc, nil
}

// hintDialer adds to a failed connection what the operator should do about it. The error shows
// in the agent's log and as last_error in its status (GET /v1/status).
type hintDialer struct {
	lsync.Dialer
	caFile string
}

func (d hintDialer) Dial(ctx context.Context, url string) (lsync.Conn, error) {
	c, err := d.Dialer.Dial(ctx, url)
	if err != nil {
		return nil, dialHint(err, d.caFile)
	}
	return c, nil
}

func dialHint(err error, caFile string) error {
	var (
		unknownCA x509.UnknownAuthorityError
		wrongHost x509.HostnameError
		invalid   x509.CertificateInvalidError
		notTLS    tls.RecordHeaderError
		refused   *ws.HandshakeError
	)
	switch {
	case errors.As(err, &unknownCA):
		issuer := "a CA this machine trusts"
		if caFile != "" {
			issuer = "the CA in tls.ca_file " + caFile
		}
		return fmt.Errorf("%w: the hub's certificate is not issued by %s; set tls.ca_file (LOYALTY_TLS_CA_FILE) to the PEM certificate of the CA that issued it", err, issuer)
	case errors.As(err, &wrongHost):
		return fmt.Errorf("%w: the hub's certificate is not issued for the host in hub_url; use a host name the certificate names, or reissue it for this one", err)
	case errors.As(err, &invalid):
		return fmt.Errorf("%w: the hub's certificate is not valid now (expired, or this machine's clock is wrong); renew it at the hub, which takes the new files without a restart", err)
	case errors.As(err, &notTLS):
		return fmt.Errorf("%w: the hub does not serve TLS at this address; give it tls.cert_file and tls.key_file, or use a ws:// hub_url if it serves plain HTTP on loopback", err)
	case errors.As(err, &refused) && strings.Contains(refused.Body, "HTTPS server"):
		return fmt.Errorf("%w: the hub serves TLS; use a wss:// hub_url", err)
	}
	return err
}

// Close stops syncing and serving and closes the replica. It is safe to call more than once.
func (m *AgentMain) Close() error {
	var err error
	m.once.Do(func() {
		if m.HTTP != nil {
			err = m.HTTP.Close()
		}
		if e := m.Metrics.Close(); e != nil && err == nil {
			err = e
		}
		if m.cancel != nil {
			m.cancel()
		}
		m.wg.Wait()
		if m.Store != nil {
			if e := m.Store.Close(); e != nil && err == nil {
				err = fmt.Errorf("close replica: %w", e)
			}
		}
	})
	return err
}
