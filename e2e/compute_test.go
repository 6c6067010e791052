package e2e_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	agentsqlite "github.com/loyalty-edge-sync/loyalty/agent/sqlite"
	"github.com/loyalty-edge-sync/loyalty/hub"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// randomProgram draws category rates, tiers, campaigns and punch cards from rng.
func randomProgram(rng *mrand.Rand, start time.Time) loyalty.Program {
	p := loyalty.DefaultProgram()
	p.Earn.PointsPerUnit = 1 + rng.Int64N(3)
	p.CategoryRates = []loyalty.CategoryRate{{Category: "coffee", PointsPerUnit: rng.Int64N(6)}, {Category: "wine", PointsPerUnit: rng.Int64N(3)}}
	p.Tiers = &loyalty.TierRules{Basis: loyalty.BasisPoints, Window: loyalty.WindowLifetime, Tiers: []loyalty.Tier{
		{ID: "member", Threshold: 0, Multiplier: 1000},
		{ID: "silver", Threshold: 1_000_000, Multiplier: 1000 + 250*(1+rng.Int64N(4))},
		{ID: "gold", Threshold: 5_000_000, Multiplier: 1500 + 250*(1+rng.Int64N(6))},
	}}
	days := []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
	for i := range 2 + rng.IntN(4) {
		c := loyalty.Campaign{ID: fmt.Sprint("c", i), Start: start.Add(time.Duration(rng.IntN(72)) * time.Hour)}
		c.End = c.Start.Add(time.Duration(24+rng.IntN(240)) * time.Hour)
		if rng.IntN(2) == 0 {
			c.Multiplier = 1000 + 250*(1+rng.Int64N(8))
		} else {
			c.Bonus = 1 + rng.Int64N(50)
			c.MinAmount = rng.Int64N(3000)
		}
		if rng.IntN(2) == 0 {
			c.Days = []string{days[rng.IntN(7)], days[rng.IntN(7)]}
			slices.Sort(c.Days)
			c.Days = slices.Compact(c.Days)
		}
		if rng.IntN(2) == 0 {
			from := rng.IntN(24)
			c.From, c.To = fmt.Sprintf("%02d:00", from), fmt.Sprintf("%02d:30", (from+1+rng.IntN(6))%24)
		}
		switch rng.IntN(3) {
		case 0:
			c.Segment.Tiers = []string{[]string{"member", "silver", "gold"}[rng.IntN(3)]}
		case 1:
			c.Segment.Countries = []string{[]string{"DE", "FR"}[rng.IntN(2)]}
		}
		p.Campaigns = append(p.Campaigns, c)
	}
	p.PunchCards = []loyalty.PunchCard{{ID: "espresso-card", SKU: "espresso", Buy: 2 + rng.Int64N(8), Reward: "coffee"}}
	return p
}

func randomLines(rng *mrand.Rand) ([]loyalty.Line, loyalty.Money) {
	var lines []loyalty.Line
	var total int64
	for range 1 + rng.IntN(4) {
		l := loyalty.Line{Qty: 1 + rng.Int64N(3), Amount: 50 + rng.Int64N(8000)}
		switch rng.IntN(4) {
		case 0:
			l.SKU, l.Category = "espresso", "coffee"
		case 1:
			l.Category = "coffee"
		case 2:
			l.Category = "wine"
		}
		total += l.Amount
		lines = append(lines, l)
	}
	return lines, loyalty.Money(total)
}

type offlineSync struct{}

func (offlineSync) Kick() {}
func (offlineSync) Subscribe(context.Context, string) (*loyalty.Member, error) {
	return nil, loyalty.Errorf(loyalty.EUNAVAILABLE, "offline")
}
func (offlineSync) Status() lsync.Status { return lsync.Status{} }
func (offlineSync) Refresh(context.Context) error {
	return loyalty.Errorf(loyalty.EUNAVAILABLE, "offline")
}

// TestAgentAndHubComputeTheSame: on thousands of random orders (members in every tier and
// country, random campaigns, times and lines), an agent offline and the hub compute the same
// points. Offline: every delta the agent made is applied by the hub, which recomputes it and
// refuses any difference. Online: the hub's own earn for the same order gives the same points.
func TestAgentAndHubComputeTheSame(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("COMPUTE_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (replay with COMPUTE_SEED=%d)", seed, seed)
	rng := mrand.New(mrand.NewPCG(seed, seed))
	ctx := context.Background()
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	hs, err := hubsqlite.Open(ctx, filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	h := hub.New(hs)
	h.KEK = seal.NewRandom()
	h.Logger = quiet
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	now := start
	h.Now = func() time.Time { return now }
	if err := h.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.SetProgram(ctx, randomProgram(rng, start)); err != nil {
		t.Fatal(err)
	}
	// The store is in Berlin: its agent learns the zone from the hub, which reads campaigns in it too.
	if _, _, err := h.CreateStoreIn(ctx, "s1", "", "Europe/Berlin"); err != nil {
		t.Fatal(err)
	}
	// Members in every tier and country; their tiers stay put (thresholds are far away).
	var members []string
	for i, points := range []int64{0, 0, 2_000_000, 2_000_000, 8_000_000, 8_000_000} {
		m := loyalty.Member{ID: fmt.Sprint("m", i), HomeStore: "s1", Country: []string{"DE", "FR", ""}[i%3]}
		if _, err := h.CreateMember(ctx, m); err != nil {
			t.Fatal(err)
		}
		if points > 0 {
			p, _ := h.Program(ctx)
			if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "fund-" + m.ID, MemberID: m.ID,
				Amount: loyalty.Money(points * p.Earn.UnitMinor / p.Earn.PointsPerUnit), Currency: "EUR"}); err != nil {
				t.Fatal(err)
			}
		}
		members = append(members, m.ID)
	}
	newAgent := func(name, store string, loc *time.Location) (*agent.Agent, *agentsqlite.Store) {
		st, err := agentsqlite.Open(ctx, filepath.Join(dir, name+".db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		for cur := int64(0); ; {
			ch, err := h.Pull(ctx, store, lsync.Pull{Cursor: cur, Limit: 100, Flushed: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := st.ApplyChanges(ctx, ch); err != nil {
				t.Fatal(err)
			}
			if cur = ch.Cursor; !ch.More {
				break
			}
		}
		a := agent.New(store, st, offlineSync{})
		a.Logger, a.Now, a.Location = quiet, func() time.Time { return now }, loc
		return a, st
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	store, st := newAgent("berlin", "s1", berlin)
	var want int64
	campaigns := 0
	orders, online := 3000, 800
	if raceEnabled {
		orders, online = 1000, 300
	}
	for i := range orders {
		now = start.Add(time.Duration(rng.Int64N(14*24*3600)) * time.Second)
		lines, amount := randomLines(rng)
		r, err := store.Earn(ctx, loyalty.EarnRequest{OrderID: fmt.Sprint("o", i), MemberID: members[rng.IntN(len(members))],
			Amount: amount, Currency: "EUR", Lines: lines})
		if err != nil {
			t.Fatalf("order %d: %v", i, err)
		}
		want += r.Points
		if len(r.Earn.Campaigns) > 0 {
			campaigns++
		}
	}
	now = start.Add(14 * 24 * time.Hour) // the store comes back online after the last sale
	for after := int64(0); ; {
		out, err := st.Pending(ctx, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) == 0 {
			break
		}
		ds := make([]loyalty.Delta, len(out))
		for i, o := range out {
			ds[i] = o.Delta
		}
		ack, err := h.Push(ctx, "s1", ds)
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range ack.Results {
			if res.Status != lsync.StatusApplied {
				t.Fatalf("the hub computes delta %s differently: %s %s", res.DeltaID, res.Code, res.Message)
			}
		}
		after = out[len(out)-1].Seq
	}
	var got int64
	for _, m := range members {
		v, err := h.Member(ctx, m, 1_000_000)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range v.Ledger {
			if l.Store == "s1" {
				got += l.Points
			}
		}
	}
	if got != want {
		t.Fatalf("hub ledger holds %d points from the store, the store computed %d", got, want)
	}

	// Online: an agent in UTC (the hub's online zone) and the hub earn the same orders.
	if _, _, err := h.CreateStore(ctx, "s2", ""); err != nil {
		t.Fatal(err)
	}
	for _, m := range members { // as the store's till scans them
		code, err := h.MemberToken(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := h.Subscribe(ctx, "s2", lsync.Subscribe{Member: m, QR: code}); err != nil {
			t.Fatal(err)
		}
	}
	utc, _ := newAgent("utc", "s2", berlin) // the hub's zone for s2, UTC, wins over the agent's own
	mismatches := 0
	for i := range online {
		now = start.Add(time.Duration(rng.Int64N(14*24*3600)) * time.Second)
		lines, amount := randomLines(rng)
		m := members[rng.IntN(len(members))]
		ra, err := utc.Earn(ctx, loyalty.EarnRequest{OrderID: fmt.Sprint("u", i), MemberID: m, Amount: amount, Currency: "EUR", Lines: lines})
		if err != nil {
			t.Fatal(err)
		}
		rh, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: fmt.Sprint("w", i), MemberID: m, Amount: amount, Currency: "EUR", Lines: lines})
		if err != nil {
			t.Fatal(err)
		}
		if ra.Points != rh.Points || !slices.Equal(ra.Earn.Campaigns, rh.Earn.Campaigns) {
			mismatches++
			if mismatches <= 3 {
				t.Errorf("order %d for %s at %s: agent %s %v, hub %s %v", i, m, now, ra.Earn.Describe(), ra.Earn.Campaigns, rh.Earn.Describe(), rh.Earn.Campaigns)
			}
		}
	}
	t.Logf("%d offline orders (%d under a campaign) applied as computed; %d online orders, %d differences", orders, campaigns, online, mismatches)
}
