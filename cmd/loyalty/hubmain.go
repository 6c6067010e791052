package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/loyalty-edge-sync/loyalty/hub"
	hubpostgres "github.com/loyalty-edge-sync/loyalty/hub/postgres"
	"github.com/loyalty-edge-sync/loyalty/internal/clock"
	"github.com/loyalty-edge-sync/loyalty/internal/metrics"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
	"github.com/loyalty-edge-sync/loyalty/sync/ws"
)

// HubMain is a running hub: storage, logic, sync server and HTTP API. The `hub` command, the
// demo and end-to-end tests all start hubs through it.
type HubMain struct {
	Config HubConfig
	Logger *slog.Logger

	Store hub.Store // hub/sqlite or hub/postgres, as Config.Database says (openHubStore)
	Hub   *hub.Hub
	Sync  *lsync.Server
	HTTP  *hub.Server
	// Metrics serves GET /metrics on metrics.listen (nil when it is "").
	Metrics *metricsServer
	// Webhooks sends the hub's webhook deliveries (started with the jobs, stopped by Close).
	Webhooks *hub.WebhookSender

	cancel context.CancelFunc
	unlock func() // the shared lock against loyalty restore: a SQLite database's lock file (lockDatabase), or PostgreSQL's serving lock
	// failed delivers why the hub must stop serving (Failed): on PostgreSQL, its serving lock
	// lost to a restore. nil on SQLite, whose lock is a file the process holds.
	failed chan error
	// lockCheck is how often a hub on PostgreSQL checks the connection holding its serving lock
	// (hubpostgres.Store.Serve); 0: every second.
	lockCheck time.Duration
	// metricsLn is metrics.listen's listener, bound first with the API's.
	metricsLn net.Listener
	wg        sync.WaitGroup
	once      sync.Once
}

// Open binds the port, opens the database and starts serving. On error nothing is left running.
// The port comes first: a hub that cannot listen (another hub has the port) fails before it
// creates or migrates anything.
func (m *HubMain) Open(ctx context.Context) (err error) {
	if m.Logger == nil {
		m.Logger = m.Config.Log.Logger()
	}
	c := m.Config
	ln, err := hub.Listen(c.Listen)
	if err == nil {
		var mln net.Listener
		if mln, err = listenMetrics(c.Metrics.Listen); err != nil {
			ln.Close()
		} else if mln != nil {
			defer func() {
				if err != nil {
					mln.Close()
				}
			}()
			m.metricsLn = mln
		}
	}
	if clock.Fake {
		m.Logger.Warn("TEST BUILD: this binary runs on the shared test clock (built with -tags fakeclock); never run it in a store or a hub")
	}
	if err != nil {
		return err
	}
	exists, err := checkHubDatabase(ctx, c.Database, true)
	if err == nil {
		err = c.checkKEK()
	}
	if err != nil {
		ln.Close()
		return err
	}
	if !exists {
		m.Logger.Warn("no hub database yet: creating a new, empty one (if the hub should have found one, stop it and check database, --database, LOYALTY_DATABASE)",
			slog.String("database", databaseName(c.Database)))
	}
	// A SQLite file is locked against `loyalty restore` by a lock file beside it; a PostgreSQL
	// database by an advisory lock, once it is open (below).
	m.unlock = func() {}
	if !isPostgresURL(c.Database) {
		if m.unlock, err = lockDatabase(c.Database, false); err != nil {
			ln.Close()
			return err
		}
	}
	defer func() {
		if err != nil {
			ln.Close() // closing twice, after the server took it, is harmless
			m.unlock()
		}
	}()
	if m.Store, err = openHubStore(ctx, c.Database); err != nil {
		return err
	}
	if err = refuseReplaced(ctx, m.Store, c.Database); err != nil {
		m.Store.Close()
		return err
	}
	if ps, ok := m.Store.(*hubpostgres.Store); ok {
		every := m.lockCheck
		if every == 0 {
			every = time.Second
		}
		serving, herr := ps.Serve(ctx, every, m.Logger)
		if herr != nil {
			m.Store.Close()
			if errors.Is(herr, hubpostgres.ErrServing) {
				herr = fmt.Errorf("%s is being restored (loyalty restore holds it): start the hub once the restore is done", databaseName(c.Database))
			}
			return herr
		}
		m.unlock = serving.Close
		m.failed = make(chan error, 1)
		go func() {
			err, lost := <-serving.Lost()
			switch {
			case !lost:
			case errors.Is(err, hubpostgres.ErrRestored):
				m.failed <- fmt.Errorf("%s was restored (loyalty restore marked it) while this hub process could not reach it: "+
					"this hub process stops; start it again", databaseName(c.Database))
			default:
				m.failed <- fmt.Errorf("%s is being restored (loyalty restore took its serving lock while this hub's connection to it was broken): "+
					"this hub process stops; start it again once the restore is done", databaseName(c.Database))
			}
		}()
	}
	m.Hub = hub.New(m.Store)
	m.Hub.Logger, m.Hub.Now = m.Logger, clock.Now
	if m.Hub.KEK, err = openKEK(ctx, c, m.Store, m.Logger); err != nil {
		m.Store.Close()
		return err
	}
	m.Hub.MemberTokenTTL, m.Hub.VoucherTokenTTL = c.QR.MemberTTL, c.QR.VoucherTTL
	m.Hub.Lease = c.Leases.Hub()
	m.Hub.Claims = hub.ClaimLimits{Backdate: c.Claims.Backdate, MaxOffline: c.Claims.MaxOffline, MaxFuture: c.Claims.MaxFuture}
	m.Hub.WebhookEvents = c.Webhooks.events()
	if err := m.Hub.Init(ctx); err != nil {
		m.Store.Close()
		return fmt.Errorf("init hub: %w", err)
	}
	m.Sync = lsync.NewServer(m.Hub)
	m.Sync.Logger, m.Sync.Now = m.Logger, clock.Now
	m.Sync.HeartbeatInterval, m.Sync.HelloTimeout = c.Sync.Heartbeat, c.Sync.HelloTimeout
	m.Sync.MaxBatch, m.Sync.MaxMessageBytes = c.Sync.MaxBatch, c.Sync.MaxMessageBytes
	prom := metrics.NewHub(m.Hub, m.Sync, m.Logger)
	m.Hub.Metrics = prom
	m.Hub.OnChange = m.Sync.NotifyStores
	m.Hub.OnTokenRotated = m.Sync.Disconnect
	up := &ws.Upgrader{Options: ws.Options{ReadLimit: int64(c.Sync.MaxMessageBytes), PingInterval: c.Sync.Heartbeat}}
	m.HTTP = &hub.Server{Hub: m.Hub, Sync: m.Sync, Listener: ln, AdminKey: c.AdminAPIKey, Logger: m.Logger, Upgrade: up.Upgrade,
		Limits: c.HTTP.Limits(), TLSCertFile: c.TLS.CertFile, TLSKeyFile: c.TLS.KeyFile}
	if err := m.HTTP.Open(); err != nil {
		m.Sync.Close()
		m.Store.Close()
		return err
	}
	if !m.HTTP.TLS() && !loopbackListen(m.HTTP.ListenAddr()) {
		m.Logger.Warn("the hub serves plain HTTP beyond loopback: agents refuse a ws:// hub_url off loopback unless allow_insecure_ws is set, "+
			"and store tokens and the admin key cross the network unencrypted; set tls.cert_file and tls.key_file, or put a TLS terminator in front",
			slog.String("listen", m.HTTP.ListenAddr()))
	}
	m.Metrics = serveMetrics(m.metricsLn, prom.Handler(), m.Logger)
	ctx, m.cancel = context.WithCancel(context.Background())
	m.startJobs(ctx)
	m.Logger.Info("hub listening", slog.String("url", m.HTTP.URL()), slog.String("database", databaseName(c.Database)))
	return nil
}

// loopbackListen reports whether a bound address (host:port) is on loopback only.
func loopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && isLoopbackHost(host)
}

// jobInterval is how often the hub requalifies tiers, expires points and awards birthday points.
const jobInterval = time.Hour

// startJobs starts the hub's background work, each job in its own goroutine on its own ticker,
// owned by m (Close stops them and waits for them): Hub.Start's, which hear the changes and session
// takeovers of the other hub processes on the database at once (hub/bus.go) and renew the store
// sessions this one holds; the poll of changes made by other processes, which tells connected
// agents (on SQLite, the only way to hear of an admin command's change; on PostgreSQL, a
// fallback); lease expiry at the poll's interval; and hourly, tier
// requalification (downgrades of members whose window total fell), points expiry, birthday
// points, and forgetting members' replaced countries no store can still claim. A long run of one
// job delays no other, and never the poll: each job writes in batches of its own transactions,
// between which pushes from agents are applied and acknowledged.
func (m *HubMain) startJobs(ctx context.Context) {
	m.Hub.Start(ctx, &m.wg)
	m.Webhooks = m.Config.Webhooks.sender(m.Hub)
	m.Webhooks.Open()
	poll := m.Config.Sync.PollInterval
	m.every(ctx, poll, "poll", m.poll)
	m.every(ctx, poll, "expire_leases", func(ctx context.Context) {
		if n, err := m.Hub.ExpireLeases(ctx); err != nil {
			m.warn(ctx, "expire leases", err)
		} else if n > 0 {
			m.Logger.Info("leases expired; their unspent quota waits for the stores to report", slog.Int("leases", n))
		}
	})
	m.every(ctx, jobInterval, "requalify", func(ctx context.Context) {
		if n, err := m.Hub.Requalify(ctx); err != nil {
			m.warn(ctx, "requalify tiers", err)
		} else if n > 0 {
			m.Logger.Info("tiers requalified", slog.Int("changed", n))
		}
	})
	m.every(ctx, jobInterval, "expire_points", func(ctx context.Context) {
		if n, err := m.Hub.ExpirePoints(ctx); err != nil {
			m.warn(ctx, "expire points", err)
		} else if n > 0 {
			m.Logger.Info("points expired", slog.Int("members", n))
		}
		// points.expiring webhooks, once per lot; it reads nothing without an endpoint for them.
		if n, err := m.Hub.RemindExpiring(ctx); err != nil {
			m.warn(ctx, "points expiry reminders", err)
		} else if n > 0 {
			m.Logger.Info("points expiry reminders", slog.Int("expiring_soon", n))
		}
	})
	m.every(ctx, jobInterval, "past_countries", func(ctx context.Context) {
		if _, err := m.Hub.ForgetPastCountries(ctx); err != nil {
			m.warn(ctx, "forget replaced countries", err)
		}
	})
	m.every(ctx, jobInterval, "birthdays", func(ctx context.Context) {
		if n, err := m.Hub.AwardBirthdays(ctx); err != nil {
			m.warn(ctx, "birthday points", err)
		} else if n > 0 {
			m.Logger.Info("birthday points awarded", slog.Int("members", n))
		}
	})
}

// every runs job every interval in a goroutine of m's until ctx ends, and records how long each
// run took under name (hub.Metrics.Job). A run that takes longer than the interval is not
// overlapped by the next: the ticker drops the ticks it missed.
func (m *HubMain) every(ctx context.Context, interval time.Duration, name string, job func(context.Context)) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				start := time.Now()
				job(ctx)
				m.Hub.Metrics.Job(name, time.Since(start))
			}
		}
	}()
}

// warn logs a job's failure, unless the job stopped because the hub is closing.
func (m *HubMain) warn(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	m.Logger.Warn(what, slog.Any("err", err))
}

// poll notices changes made by other processes on the same database (the admin commands, other
// hub processes) and tells the agents they concern. A failed read is tried again at the next
// poll.
func (m *HubMain) poll(ctx context.Context) {
	_ = m.Hub.NoticeChanges(ctx)
}

// Close stops serving and closes the database. It is safe to call more than once.
func (m *HubMain) Close() error {
	var err error
	m.once.Do(func() {
		if m.cancel != nil {
			m.cancel()
		}
		m.wg.Wait()
		if m.Webhooks != nil {
			m.Webhooks.Close()
		}
		if m.HTTP != nil {
			err = m.HTTP.Close()
		}
		if e := m.Metrics.Close(); e != nil && err == nil {
			err = e
		}
		if m.unlock != nil {
			defer m.unlock()
		}
		if m.Store != nil {
			if e := m.Store.Close(); e != nil && err == nil {
				err = e
			}
		}
	})
	return err
}

// refuseReplaced refuses a database that loyalty restore replaced with a restored one: a hub on
// it would take changes of stores the restored database never sees.
func refuseReplaced(ctx context.Context, s hub.Store, database string) error {
	var e hub.EpochInfo
	if err := s.View(ctx, func(tx hub.Tx) (err error) { e, err = tx.Epoch(ctx); return err }); err != nil {
		return err
	}
	if !e.ReplacedAt.IsZero() {
		return fmt.Errorf("%s was replaced by a restored database (loyalty restore --replaced, at %s): start every hub process on the restored one",
			databaseName(database), e.ReplacedAt.UTC().Format(time.RFC3339))
	}
	return nil
}
