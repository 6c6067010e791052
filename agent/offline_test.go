package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	agentsqlite "github.com/loyalty-edge-sync/loyalty/agent/sqlite"
	"github.com/loyalty-edge-sync/loyalty/qr"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// clockedAgent is an offline agent whose replica and agent read one test clock from the
// replica's first use on, as both read the machine's clock in production. Opening the same file
// again is an agent restart.
type clockedAgent struct {
	*agent.Agent
	store *agentsqlite.Store
	path  string
	clock *time.Time
	key   qr.PrivateKey
	pages int64
}

func openClocked(t *testing.T, path string, clock *time.Time, key qr.PrivateKey) *clockedAgent {
	t.Helper()
	s, err := agentsqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	s.Now = func() time.Time { return *clock }
	t.Cleanup(func() { s.Close() })
	a := agent.New("s1", s, &fakeSync{})
	a.Logger, a.Now = biLogger, s.Now
	return &clockedAgent{Agent: a, store: s, path: path, clock: clock, key: key}
}

// newClocked opens a new replica at the test clock and gives it the hub's page: p, a signing
// key, member m1 with 10000 points and leases.
func newClocked(t *testing.T, clock *time.Time, p loyalty.Program, leases ...lsync.Lease) *clockedAgent {
	t.Helper()
	k, err := qr.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	ca := openClocked(t, filepath.Join(t.TempDir(), "agent.db"), clock, k)
	ca.hear(t, p, leases...)
	return ca
}

// hear applies the last page of a pull at the test clock: the store hears from the hub.
func (ca *clockedAgent) hear(t *testing.T, p loyalty.Program, leases ...lsync.Lease) {
	t.Helper()
	ca.pages++
	p.Version = ca.pages
	if leases == nil {
		leases = []lsync.Lease{}
	}
	err := ca.store.ApplyChanges(context.Background(), &lsync.Changes{Cursor: 10 + ca.pages, Program: &p, Keys: []qr.PublicKey{ca.key.Public()},
		Members: []loyalty.Member{{ID: "m1", Name: "Ann", Balance: 10000, Version: ca.pages}}, Leases: leases})
	if err != nil {
		t.Fatal(err)
	}
}

// restart closes the replica (a clean stop, unless crash) and opens it again at the test clock.
func (ca *clockedAgent) restart(t *testing.T, crash bool) *clockedAgent {
	t.Helper()
	if !crash {
		if err := ca.store.Close(); err != nil {
			t.Fatal(err)
		}
	}
	n := openClocked(t, ca.path, ca.clock, ca.key)
	n.pages = ca.pages
	return n
}

func (ca *clockedAgent) redeem(reward string) error {
	_, err := ca.Redeem(context.Background(), loyalty.RedeemRequest{OrderID: fmt.Sprintf("o-%s-%d", reward, ca.clock.UnixNano()), MemberID: "m1", RewardID: reward})
	return err
}

func (ca *clockedAgent) lease(t *testing.T, id string) agent.Lease {
	t.Helper()
	st, err := ca.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range st.Leases {
		if l.ID == id {
			return l
		}
	}
	t.Fatalf("no lease %s in the status: %+v", id, st.Leases)
	return agent.Lease{}
}

// coffeeBudget is the default program with a budget of coffees.
func coffeeBudget() loyalty.Program {
	p := loyalty.DefaultProgram()
	p.Budgets = []loyalty.Budget{{ID: "coffees", Metric: loyalty.MetricRedemptions, Reward: "coffee", Limit: 100}}
	return p
}

func coffeeLease(ttl time.Duration) lsync.Lease {
	return lsync.Lease{ID: "L1", Budget: "coffees", Granted: 10, State: "active", TTLMillis: ttl.Milliseconds()}
}

// TestStatusShowsExpiredLeases (issue finding 2): GET /v1/status reports a lease whose time at
// the store is up as expired, computed when it is read, not as the active the hub last said.
func TestStatusShowsExpiredLeases(t *testing.T) {
	clock := now
	ca := newClocked(t, &clock, coffeeBudget(), coffeeLease(10*time.Minute),
		lsync.Lease{ID: "L2", Budget: "coffees", Granted: 3, State: "ended", TTLMillis: time.Hour.Milliseconds()})
	if l := ca.lease(t, "L1"); l.State != agent.LeaseActive || !l.ValidUntil.Equal(now.Add(10*time.Minute)) {
		t.Errorf("a lease within its time: %+v, want active until %s", l, now.Add(10*time.Minute))
	}
	clock = now.Add(10*time.Minute - time.Millisecond)
	if l := ca.lease(t, "L1"); l.State != agent.LeaseActive {
		t.Errorf("a lease in its last millisecond: %+v, want active", l)
	}
	clock = now.Add(10 * time.Minute)
	if l := ca.lease(t, "L1"); l.State != agent.LeaseExpired {
		t.Errorf("a lease past its valid_until: %+v, want state expired", l)
	}
	if err := ca.redeem("coffee"); loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Errorf("coffee on an expired lease: %v, want EBUDGET", err)
	}
	if l := ca.lease(t, "L2"); l.State != agent.LeaseEnded {
		t.Errorf("a lease the hub ended: %+v, want ended", l)
	}
	// Renewed by the hub: active again.
	ca.hear(t, coffeeBudget(), coffeeLease(10*time.Minute))
	if l := ca.lease(t, "L1"); l.State != agent.LeaseActive || !l.ValidUntil.Equal(clock.Add(10*time.Minute)) {
		t.Errorf("a renewed lease: %+v, want active until %s", l, clock.Add(10*time.Minute))
	}
}

// TestOfflineValidity (issue finding 3): a store that has not heard from the hub for a reward's
// offline validity (the program's offline_validity, 24h by default, or the reward's own) stops
// redeeming it, with a budget or without, until it hears from the hub again.
func TestOfflineValidity(t *testing.T) {
	const refusal = "can't be redeemed while this store has been offline for more than 24h; it will work again when the store is back online"
	clock := now
	// The coffee's lease would last four days: the offline validity ends it first.
	ca := newClocked(t, &clock, coffeeBudget(), coffeeLease(96*time.Hour))
	clock = now.Add(24*time.Hour - time.Millisecond)
	for _, r := range []string{"five-off", "coffee"} {
		if err := ca.redeem(r); err != nil {
			t.Errorf("%s after 24h less 1 ms without the hub: %v", r, err)
		}
	}
	clock = now.Add(24 * time.Hour)
	for _, r := range []string{"five-off", "coffee"} {
		err := ca.redeem(r)
		if loyalty.ErrorCode(err) != loyalty.EBUDGET || !strings.Contains(err.Error(), refusal) {
			t.Errorf("%s after 24h without the hub: %v, want EBUDGET %q", r, err, refusal)
		}
	}
	s, err := ca.Scan(context.Background(), agent.ScanRequest{QR: mustSign(t, ca.key, "m1")})
	if err != nil || len(s.Affordable) != 0 {
		t.Errorf("scan after 24h without the hub: %+v, %v; want no affordable reward", s.Affordable, err)
	}
	clock = now.Add(30 * time.Hour)
	ca.hear(t, coffeeBudget(), coffeeLease(96*time.Hour))
	for _, r := range []string{"five-off", "coffee"} {
		if err := ca.redeem(r); err != nil {
			t.Errorf("%s once the store heard from the hub again: %v", r, err)
		}
	}

	// The program's offline_validity, and a reward's own.
	var p loyalty.Program
	err = json.Unmarshal([]byte(`{"currency": "EUR", "earn": {"points_per_unit": 1, "unit_minor": 100}, "offline_validity": "48h",
		"rewards": [{"id": "coffee", "name": "Free coffee", "points_cost": 50, "kind": "free_product", "offline_validity": "1h"},
			{"id": "five-off", "name": "5.00 EUR off", "points_cost": 100, "kind": "amount_off", "value": 500}]}`), &p)
	if err != nil {
		t.Fatal(err)
	}
	clock = now
	ca = newClocked(t, &clock, p)
	clock = now.Add(time.Hour - time.Millisecond)
	if err := ca.redeem("coffee"); err != nil {
		t.Errorf("coffee (offline_validity 1h) after 1h less 1 ms: %v", err)
	}
	clock = now.Add(time.Hour)
	if err := ca.redeem("coffee"); loyalty.ErrorCode(err) != loyalty.EBUDGET || !strings.Contains(err.Error(), "offline for more than 1h;") {
		t.Errorf("coffee (offline_validity 1h) after 1h: %v, want EBUDGET", err)
	}
	clock = now.Add(48*time.Hour - time.Millisecond)
	if err := ca.redeem("five-off"); err != nil {
		t.Errorf("five-off (program offline_validity 48h) after 48h less 1 ms: %v", err)
	}
	clock = now.Add(48 * time.Hour)
	if err := ca.redeem("five-off"); loyalty.ErrorCode(err) != loyalty.EBUDGET || !strings.Contains(err.Error(), "offline for more than 48h;") {
		t.Errorf("five-off (program offline_validity 48h) after 48h: %v, want EBUDGET", err)
	}
}

func mustSign(t *testing.T, k qr.PrivateKey, member string) string {
	t.Helper()
	tok, err := qr.Sign(k, qr.Claims{Type: qr.TypeMember, Member: member})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestLeasesSurviveARestart (issue finding 4): an agent restarted while offline goes on spending
// its leases until their deadline, with what it spent before the restart counted.
func TestLeasesSurviveARestart(t *testing.T) {
	clock := now
	ca := newClocked(t, &clock, coffeeBudget(), lsync.Lease{ID: "L1", Budget: "coffees", Granted: 3, State: "active", TTLMillis: (10 * time.Minute).Milliseconds()})
	clock = now.Add(time.Minute)
	if err := ca.redeem("coffee"); err != nil {
		t.Fatal(err)
	}
	clock = now.Add(2 * time.Minute)
	ca = ca.restart(t, false)
	clock = now.Add(3 * time.Minute)
	if l := ca.lease(t, "L1"); l.State != agent.LeaseActive || !l.ValidUntil.Equal(now.Add(10*time.Minute)) {
		t.Errorf("after a restart: %+v, want active until %s", l, now.Add(10*time.Minute))
	}
	for i := range 3 {
		err := ca.redeem("coffee")
		if i < 2 && err != nil {
			t.Fatalf("coffee %d of 3 after a restart: %v", i+2, err)
		}
		if i == 2 && loyalty.ErrorCode(err) != loyalty.EBUDGET {
			t.Fatalf("coffee 4 of a lease of 3: %v, want EBUDGET", err)
		}
		clock = clock.Add(time.Second)
	}
	clock = now.Add(3 * time.Minute) // renewed and refilled
	ca.hear(t, coffeeBudget(), lsync.Lease{ID: "L1", Budget: "coffees", Granted: 6, State: "active", TTLMillis: (10 * time.Minute).Milliseconds()})
	clock = now.Add(3*time.Minute + 10*time.Minute - time.Millisecond)
	if err := ca.redeem("coffee"); err != nil {
		t.Fatalf("a refilled lease in its last millisecond: %v", err)
	}
	clock = now.Add(3*time.Minute + 10*time.Minute)
	if err := ca.redeem("coffee"); loyalty.ErrorCode(err) != loyalty.EBUDGET {
		t.Fatalf("at the refilled lease's deadline: %v, want EBUDGET", err)
	}
}

// TestRestartDeadlinesIgnoreClockChanges (issue findings 3 and 4): after a restart, no change of
// the machine's clock extends a lease or the offline validity: a clock set back while the agent
// was stopped counts that time as nothing, one set forward only shortens them, and a crash gives
// back nothing since the last checkpoint (the keeper writes one every few seconds, ahead by a
// little more than that, so a crash can only shorten them).
func TestRestartDeadlinesIgnoreClockChanges(t *testing.T) {
	// The store hears from the hub at now: a lease of 10 minutes and an offline validity of an
	// hour. The keeper's last checkpoint is at now+4m; the agent stops (or crashes) at now+5m.
	stopAt := now.Add(5 * time.Minute)
	for _, c := range []struct {
		name                          string
		crash                         bool
		restartAt, leaseEnd, validEnd time.Time // by the clock of the restarted agent
	}{
		{"stopped, clock right", false, now.Add(7 * time.Minute), now.Add(10 * time.Minute), now.Add(time.Hour)},
		{"stopped, clock set back a day", false, now.Add(-24 * time.Hour),
			now.Add(-24*time.Hour + 5*time.Minute), now.Add(-24*time.Hour + 55*time.Minute)},
		{"stopped, clock set forward", false, now.Add(30 * time.Minute), now.Add(30 * time.Minute), now.Add(time.Hour)},
		{"crashed, clock set back a day", true, now.Add(-24 * time.Hour), // counted from the checkpoint at now+4m, plus its 30s ahead
			now.Add(-24*time.Hour + 5*time.Minute + 30*time.Second), now.Add(-24*time.Hour + 55*time.Minute + 30*time.Second)},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := now
			p := coffeeBudget()
			p.OfflineValidity = loyalty.Duration(time.Hour)
			ca := newClocked(t, &clock, p, coffeeLease(10*time.Minute))
			clock = now.Add(4 * time.Minute)
			if err := ca.store.Checkpoint(context.Background()); err != nil { // as the keeper does
				t.Fatal(err)
			}
			clock = stopAt
			ca = ca.restart(t, c.crash)
			clock = c.restartAt
			if c.leaseEnd.After(c.restartAt) {
				if l := ca.lease(t, "L1"); l.State != agent.LeaseActive || !l.ValidUntil.Equal(c.leaseEnd) {
					t.Errorf("after the restart: %+v, want active until %s", l, c.leaseEnd)
				}
				clock = c.leaseEnd.Add(-time.Millisecond)
				if err := ca.redeem("coffee"); err != nil {
					t.Errorf("coffee in the lease's last millisecond: %v", err)
				}
			}
			clock = c.leaseEnd
			if err := ca.redeem("coffee"); loyalty.ErrorCode(err) != loyalty.EBUDGET {
				t.Errorf("coffee at the lease's deadline: %v, want EBUDGET", err)
			}
			if l := ca.lease(t, "L1"); l.State != agent.LeaseExpired {
				t.Errorf("lease at its deadline: %+v, want expired", l)
			}
			clock = c.validEnd.Add(-time.Millisecond)
			if err := ca.redeem("five-off"); err != nil {
				t.Errorf("five-off in the last millisecond of the offline validity: %v", err)
			}
			clock = c.validEnd
			if err := ca.redeem("five-off"); loyalty.ErrorCode(err) != loyalty.EBUDGET {
				t.Errorf("five-off at the end of the offline validity: %v, want EBUDGET", err)
			}
		})
	}
}

// TestHubReplicatesOfflineValidity: the hub accepts a program's and a reward's offline_validity
// and sends them to its stores.
func TestHubReplicatesOfflineValidity(t *testing.T) {
	p := loyalty.DefaultProgram()
	p.OfflineValidity = loyalty.Duration(2 * time.Hour)
	p.Rewards[0].OfflineValidity = loyalty.Duration(30 * time.Minute)
	sp := openSyncPair(t, p)
	ctx := context.Background()
	var got loyalty.Program
	err := sp.store.View(ctx, func(tx agent.Tx) error {
		var err error
		got, err = tx.Program(ctx)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := got.OfflineValidityOf(got.Rewards[0]), got.OfflineValidityOf(got.Rewards[1]); a != 30*time.Minute || b != 2*time.Hour {
		t.Errorf("offline validity at the store: %s for %s, %s for %s; want 30m and 2h", a, got.Rewards[0].ID, b, got.Rewards[1].ID)
	}
}
