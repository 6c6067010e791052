package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/loyalty-edge-sync/loyalty/agent"
	agentsqlite "github.com/loyalty-edge-sync/loyalty/agent/sqlite"
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

	Store  *agentsqlite.Store
	Client *lsync.Client
	Agent  *agent.Agent
	HTTP   *agent.Server

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
	// Before anything is opened: a POS API open to the network without a token is refused.
	if err := agent.CheckExposure(c.Listen, c.POSToken, c.POSInsecureLAN); err != nil {
		return err
	}
	if m.Store, err = agentsqlite.Open(ctx, c.Database); err != nil {
		return err
	}
	d := m.Dialer
	if d == nil {
		d = &ws.Dialer{Options: ws.Options{ReadLimit: int64(c.Sync.MaxMessageBytes)}}
	}
	m.Client = lsync.NewClient(c.HubURL, c.StoreID, c.Token, d, m.Store)
	m.Client.Logger, m.Client.AgentVersion = m.Logger, version
	m.Client.MinBackoff, m.Client.MaxBackoff, m.Client.BatchSize = c.Sync.MinBackoff, c.Sync.MaxBackoff, c.Sync.BatchSize
	m.Client.Faults.DuplicatePush = c.Faults.DuplicatePush
	m.Client.Faults.BeforeAck = m.BeforeAck
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
	m.Agent.Logger, m.Agent.LookupTimeout = m.Logger, c.Sync.LookupTimeout
	if m.Agent.Location, err = time.LoadLocation(c.TimeZone); err != nil {
		m.Store.Close()
		return fmt.Errorf("timezone: %w", err)
	}
	m.HTTP = agent.NewServer(m.Agent, c.Listen)
	m.HTTP.Logger, m.HTTP.POSToken = m.Logger, c.POSToken
	m.HTTP.AllowedHosts, m.HTTP.InsecureLAN = c.POSAllowedHosts, c.POSInsecureLAN
	if err := m.HTTP.Open(); err != nil {
		m.Store.Close()
		return err
	}
	ctx, m.cancel = context.WithCancel(context.Background())
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.Client.Run(ctx)
	}()
	m.Logger.Info("agent listening", slog.String("pos_api", m.HTTP.URL()), slog.Any("pos_allowed_hosts", c.POSAllowedHosts),
		slog.String("hub", c.HubURL), slog.String("database", m.Store.Path()))
	return nil
}

// Close stops syncing and serving and closes the replica. It is safe to call more than once.
func (m *AgentMain) Close() error {
	var err error
	m.once.Do(func() {
		if m.HTTP != nil {
			err = m.HTTP.Close()
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
