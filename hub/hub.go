// Package hub is the central service of loyalty edge sync: the authoritative ledger and
// balances, deduplication and exactly-once apply of deltas pushed by store agents, the change
// feed that keeps agents' replicas current, the online channel (earn and redeem from e-commerce or
// a member app), and the operator's admin API.
//
// The logic here runs inside transactions of a Store (hub/sqlite; a PostgreSQL backend can
// implement the same interface). Transport is the sync package's Server, which calls Hub through
// the lsync.Handler interface.
//
// Where to find what:
//
//	hub.go       the Hub, its settings, start-up, and the transaction wrapper that tells agents
//	sessions.go  an agent's connection: authentication, store health, each store's one live
//	             session across the hub processes on the database
//	bus.go       events between those processes (changes agents must see, session takeovers)
//	push.go      a store's pushed deltas: dedup and exactly-once apply per batch, quarantine
//	group.go     group commit: pushes, pulls and health writes of many sessions at the same
//	             moment share one transaction and one commit
//	apply.go     the checks and bookkeeping of applying one delta (identity, recomputation,
//	             conflicts, balances), and what a batch reads and writes at once
//	batch.go     a pushed batch's new deltas inserted together (set-based ingest)
//	qualifying.go
//	             tier qualification from running totals per member and day (Tx.Qualifying)
//	claims.go    what the hub verifies of a store's claims (time, rule version, tier, leases)
//	budget.go    budgets: what a delta spends, and the accounting
//	leases.go    leases: sizing from demand, grant, refill, reclaim, expiry
//	feed.go      the change feed (pulls) and member subscriptions with their standing
//	standing.go  what a connected store asks the hub before it decides
//	online.go    the online channel: earn, redeem, vouchers, refunds, actions
//	referral.go  referral bonuses
//	jobs.go      background jobs: tier requalification, points expiry (birthday.go: birthdays)
//	admin.go     stores, members, the program, keys, conflicts, the ledger check
//	webhooks.go  webhooks: events written to an outbox in their cause's transaction, endpoints,
//	             signatures (webhooks_send.go: the sender, retries, leases; webhooks_http.go)
//	apikeys.go, keys.go, audit.go, restore.go
//	             API keys, QR signing keys, the audit trail, restore from a backup
//	http.go, server.go
//	             the admin and online HTTP API and the listener
//	store.go     the storage boundary (Store, Tx) that hub/sqlite and hub/postgres implement
package hub

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Hub is the central service. Set the exported fields before use.
type Hub struct {
	Store           Store
	Logger          *slog.Logger
	Now             func() time.Time
	MemberTokenTTL  time.Duration // lifetime of member QR tokens; 0: no expiry
	VoucherTokenTTL time.Duration // lifetime of voucher tokens
	// OnChange is called after every commit that agents must see, with the new change version,
	// whichever hub process on the database made it (Start): at once for this process's commits,
	// through the database's events for the others'. A version already reported is not
	// reported again. stores are the stores the changes since the last report concern (those
	// with a changed member in scope, or a changed setting); nil: every store (the program or a
	// key changed, many stores are concerned, or the hub cannot tell).
	OnChange func(version int64, stores []string)
	// OnTokenRotated is called after a store's token is replaced, to end its live session: at
	// once when this process replaced it, through the database's events when another did.
	OnTokenRotated func(store string)

	// ID names this hub process in the database (the owner of the sessions it holds): drawn by
	// New, different for every Hub.
	ID string
	// SessionTTL is how long a store's session held by this process stays live in the database
	// without being renewed; Start renews them every SessionTTL/3. Zero: 30s.
	SessionTTL time.Duration

	Lease LeaseConfig
	// Metrics receives what the hub measures (metrics.go); nil: nothing is measured.
	Metrics Metrics
	// Faults breaks the hub on purpose, for the simulator's test that its checker catches it.
	Faults struct {
		IgnoreOutstanding bool // grant leases and accept online spending as if no quota were leased out
	}

	// Claims bounds the event times the hub accepts from stores (see checkClaims).
	Claims ClaimLimits

	// KEK seals the QR signing keys in the database (keys.go). Init fails without it.
	KEK *seal.Box

	// WebhookEvents is how the hub emits webhook events (webhooks.go).
	WebhookEvents WebhookConfig

	groups      groups                 // sessions' writes waiting for a group commit (group.go)
	bookkeeping groups                 // sessions' claims and releases waiting for theirs
	jobHooks    struct{ ahead func() } // tests: called with a batch read ahead, before its write (jobs.go)
	scanLimit   int                    // tests: due members a page of ExpiringSoonPage reads (0: expiringScan)

	healthMu sync.Mutex
	health   map[string]Health
	started  map[string]time.Time     // per store: when its live session started
	live     map[string]*liveSession  // per store: its session this process claimed, until released
	pending  map[string]*pendingClaim // per store: a claim of this process not yet registered in live

	notified atomic.Int64 // the newest change version given to OnChange

	checkMu    sync.Mutex
	checking   *checkRun                        // the Check running in this process, which callers arriving meanwhile share
	checkHooks struct{ started, joined func() } // tests: a check begins reading; a caller waits for a running one
}

// ClaimLimits bounds the event time a store may give a delta: from Backdate before the store's
// last flushed pull (everything it had made then was pushed before it), and no more than
// MaxOffline before the hub's clock, up to MaxFuture after the hub's clock.
type ClaimLimits struct {
	Backdate   time.Duration
	MaxOffline time.Duration
	MaxFuture  time.Duration
}

// DefaultClaimLimits returns the defaults: an hour of backdating, 30 days offline, ten minutes of
// clock error.
func DefaultClaimLimits() ClaimLimits {
	return ClaimLimits{Backdate: time.Hour, MaxOffline: 30 * 24 * time.Hour, MaxFuture: 10 * time.Minute}
}

var _ lsync.Handler = (*Hub)(nil)
var _ lsync.Unsubscriber = (*Hub)(nil)

// New returns a Hub on s with default settings.
func New(s Store) *Hub {
	return &Hub{
		Store:           s,
		Logger:          slog.Default(),
		Now:             time.Now,
		MemberTokenTTL:  2 * 365 * 24 * time.Hour,
		VoucherTokenTTL: 90 * 24 * time.Hour,
		Lease:           DefaultLeaseConfig(),
		Claims:          DefaultClaimLimits(),
		ID:              newHubID(),
		health:          make(map[string]Health),
		started:         make(map[string]time.Time),
		live:            make(map[string]*liveSession),
		pending:         make(map[string]*pendingClaim),
		bookkeeping:     groups{bookkeeping: true},
	}
}

// newHubID returns an id for a hub process: its host and process id, for people reading the
// sessions table or a log, and a random part, for uniqueness.
func newHubID() string {
	host, _ := os.Hostname()
	if len(host) > 40 {
		host = host[:40]
	}
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), rand.Text()[:10])
}

func (h *Hub) sessionTTL() time.Duration {
	if h.SessionTTL > 0 {
		return h.SessionTTL
	}
	return 30 * time.Second
}

// Init makes sure the hub has a program and a signing key, creating the defaults on first start,
// and that its signing keys are sealed under KEK and open with it.
func (h *Hub) Init(ctx context.Context) error {
	var made string // a signing key made where every key had been retired
	err := h.update(ctx, func(tx Tx) error {
		made = ""
		if h.KEK == nil {
			// Without the key the hub cannot sign, nor make its first signing key: tools that
			// do not sign may go on with a database that has one.
			if _, err := tx.SigningKey(ctx); err != nil {
				return loyalty.Errorf(loyalty.EINVALID, "the hub needs a key-encryption key to seal its QR signing keys: set keys.kek_file (or keys.kek)")
			}
			return nil
		}
		if _, _, err := tx.Program(ctx); loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
			v, err := tx.NextVersion(ctx)
			if err != nil {
				return err
			}
			if err := tx.InsertProgram(ctx, loyalty.DefaultProgram(), v, h.Now()); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		if _, err := tx.SigningKey(ctx); loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
			// The first key, or one to sign with where every key was retired (by an older
			// version, which let the signing key be retired): in the audit trail either way.
			keys, err := tx.Keys(ctx)
			if err != nil {
				return err
			}
			if err := h.insertNewKey(ctx, tx); err != nil {
				return err
			}
			k, err := tx.SigningKey(ctx)
			if err != nil {
				return err
			}
			detail := "the hub's first QR signing key"
			if len(keys) > 0 {
				made, detail = k.ID, "every QR signing key was retired: a new one signs codes"
			}
			if err := h.audit(ctx, tx, AuditSigningKeyRotate, k.ID, detail); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		return h.sealKeys(ctx, tx)
	})
	if err == nil && made != "" {
		h.Logger.Warn("every QR signing key was retired, so the hub made a new one to sign codes with; agents receive it at their next sync", "key", made)
	}
	return err
}

// update runs fn in a write transaction and reports the newest change version to OnChange: in
// this process at once, and to every hub process on the database by an event published in the
// transaction (bus.go), so that agents connected to any of them pull.
func (h *Hub) update(ctx context.Context, fn func(Tx) error) error {
	var before int64
	var after int64
	err := h.Store.Update(ctx, func(tx Tx) error {
		var err error
		if before, err = tx.CurrentVersion(ctx); err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		if after, err = tx.CurrentVersion(ctx); err != nil || after <= before {
			return err
		}
		return tx.Publish(ctx, Event{Kind: EventChange, Version: after})
	})
	if err == nil && after > before {
		h.changed(context.WithoutCancel(ctx), after, false) // committed: told whatever the caller does now
	}
	return err
}
