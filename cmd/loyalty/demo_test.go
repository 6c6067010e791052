package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// engineeringWords are words a store manager should not meet in the demo's story. They belong in
// --verbose only. "ack" and "hub" are whole words ("back", "hubcap" are fine); "lease" starts a
// word ("please" is fine).
var engineeringWords = regexp.MustCompile(`(?i)delta|outbox|\back(s|ed)?\b|acknowledg|seed|redeliver|dedup|websocket|\bhub\b|\blease|replica|sqlite|idempot|cursor`)

// The words --verbose must add, each on its own.
var verboseWords = []string{"delta", "outbox", "ack", "seed", "redeliver", "dedup", "websocket"}

// demoJSON runs the summary through the --json encoder and decodes it, as a CI script reads it.
func demoJSON(t *testing.T, sum DemoSummary) (string, map[string]any) {
	t.Helper()
	var b bytes.Buffer
	if err := writeJSON(&b, sum); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	return b.String(), m
}

// wantSummary checks that a story carries the closing summary with the run's own numbers, read
// from the JSON of the same run.
func wantSummary(t *testing.T, out string, j map[string]any) {
	t.Helper()
	n := func(key string) int64 {
		v, ok := j[key].(float64)
		if !ok {
			t.Fatalf("JSON has no number %q: %v", key, j)
		}
		return int64(v)
	}
	tiers, _ := j["tiers"].(map[string]any)
	tier := func(id string) int64 { v, _ := tiers[id].(float64); return int64(v) }
	want := []string{
		fmt.Sprintf("OK    No sale lost: all %d sales, free coffees and online orders approved today reached head office.", n("deltas_created")),
		fmt.Sprintf("OK    None counted twice: head office has each of the %d exactly once.", n("deltas_applied")),
		"OK    Every customer's balance at head office is exactly the sum of the points on their receipts.",
		fmt.Sprintf("OK    A till that sent the same request twice (%d times today) got the same answer back", n("pos_retries")),
		fmt.Sprintf("OK    Same balance everywhere: for all %d customers, both stores show the balance head office has.", n("members")),
		fmt.Sprintf("OK    Budget kept: %d free coffees for points, within the chain's budget of %d", n("budget_spent"), n("budget_limit")),
		fmt.Sprintf("Customer levels tonight: %d Silver, %d Gold, %d Member.", tier("silver"), tier("gold"), tier("member")),
		fmt.Sprintf("Double points week gave %d bonus points; full espresso cards gave %d free coffees.", n("campaign_bonus_points"), n("punch_rewards")),
		fmt.Sprintf("Station Road approves %s while offline", plural(int(n("offline_sales")), "sale", "sales")),
		fmt.Sprintf("Customers swap points for %s there while offline.", plural(int(n("offline_redemptions")), "free coffee", "free coffees")),
		"All guarantees held: no sale lost, none counted twice, every store shows head office's balances, budget kept.",
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("the story lacks %q", w)
		}
	}
	// The story is told in steps, one idea per line.
	for _, step := range []string{"\n1. ", "\n2. Station Road goes offline", "\n3. Main Street's loyalty computer crashes", "\n4. Head office's server restarts", "\n5. Station Road is back online"} {
		if !strings.Contains(out, step) {
			t.Errorf("the story lacks the step %q", strings.TrimSpace(step))
		}
	}
	// The hub's and agents' logs never land between the lines of the story.
	if strings.Contains(out, "level=") || strings.Contains(out, "msg=") {
		t.Errorf("log lines in the story:\n%s", out)
	}
}

// demoTestSeed is long enough not to turn up among the story's numbers by chance.
const demoTestSeed = 31415926535

// TestDemoStory runs the demo as `loyalty demo` and `loyalty demo --verbose` do, and checks that
// the story is in plain words with the run's real numbers, and that --verbose adds the
// engineering detail.
func TestDemoStory(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	tmp := t.TempDir()
	var plain bytes.Buffer
	sum, err := runDemo(ctx, demoOptions{Seed: demoTestSeed, TempDir: tmp}, &plain)
	out := plain.String()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	defer demoLogOnFailure(t, sum)
	js, j := demoJSON(t, sum)
	for _, key := range []string{"seed", "stores", "members", "deltas_created", "deltas_applied", "duplicates_ignored", "lost",
		"balances_match", "offline_sales", "offline_redemptions", "pos_retries", "retries_matched", "agent_restarts", "hub_restarts",
		"conflicts", "tier_upgrades", "campaign_bonus_points", "punch_rewards", "mismatches", "duration_ms"} {
		if _, ok := j[key]; !ok {
			t.Errorf("JSON lacks the key %q", key)
		}
	}
	for _, grep := range []string{`"lost": 0,`, `"balances_match": true,`} { // what .ci/run greps
		if !strings.Contains(js, grep) {
			t.Errorf("JSON lacks %s:\n%s", grep, js)
		}
	}
	wantSummary(t, out, j)
	if w := engineeringWords.FindAllString(out, -1); len(w) > 0 {
		t.Errorf("engineering words in the plain story: %q\n%s", w, out)
	}
	if strings.Contains(out, fmt.Sprint(sum.Seed)) {
		t.Errorf("the plain story shows the seed %d", sum.Seed)
	}
	if sum.LogFile != "" {
		t.Errorf("a successful plain run kept its log: %s", sum.LogFile)
	}
	if es, _ := os.ReadDir(tmp); len(es) > 0 {
		t.Errorf("the demo left %d files in its temporary directory's parent", len(es))
	}
	if t.Failed() {
		t.Logf("plain story:\n%s", out)
	}

	var verbose bytes.Buffer
	vsum, err := runDemo(ctx, demoOptions{Seed: demoTestSeed, Verbose: true, TempDir: tmp}, &verbose)
	vout := verbose.String()
	if err != nil {
		t.Fatalf("demo --verbose: %v\n%s", err, vout)
	}
	_, vj := demoJSON(t, vsum)
	wantSummary(t, vout, vj) // the plain story is still there
	for _, w := range verboseWords {
		if !regexp.MustCompile(`(?i)\b` + w).MatchString(vout) {
			t.Errorf("--verbose does not mention %q", w)
		}
	}
	if !strings.Contains(vout, fmt.Sprintf("--seed %d", vsum.Seed)) {
		t.Errorf("--verbose does not say how to replay the seed %d", vsum.Seed)
	}
	if vsum.LogFile == "" || !strings.Contains(vout, vsum.LogFile) {
		t.Errorf("--verbose does not say where the log is (%q)", vsum.LogFile)
	} else if b, err := os.ReadFile(vsum.LogFile); err != nil || !strings.Contains(string(b), "level=INFO") {
		t.Errorf("the log %s is missing or empty: %v", vsum.LogFile, err)
	} else if es, _ := os.ReadDir(filepath.Dir(vsum.LogFile)); len(es) != 1 {
		t.Errorf("besides the log, the demo kept %d files", len(es)-1)
	}
	if t.Failed() {
		t.Logf("verbose story:\n%s", vout)
	}
}

// demoLogOnFailure shows, if the test failed, the warnings and errors of the log a run kept: a
// guarantee that broke once under load is then traced to its cause from the test's output alone.
func demoLogOnFailure(t *testing.T, sum DemoSummary) {
	if !t.Failed() || sum.LogFile == "" {
		return
	}
	b, err := os.ReadFile(sum.LogFile)
	if err != nil {
		t.Logf("the demo's log: %v", err)
		return
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			lines = append(lines, l)
		}
	}
	t.Logf("the demo's log, its warnings and errors (%s):\n%s", sum.LogFile, strings.Join(lines, "\n"))
}

// TestDemoStory_ChangesDatedBehindTheHub runs the demo with every store's changes dated 300 ms
// behind the hub's clock, as an agent's estimate of it from a round trip can be when the machine
// is busy. A sale just after a member's upgrade was then dated just before it, and head office
// refused the tier the store had rightly seen (the sale was lost: TestDemoStory failed so, once,
// in CI).
func TestDemoStory_ChangesDatedBehindTheHub(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	sum, err := runDemo(ctx, demoOptions{Seed: demoTestSeed, TempDir: t.TempDir(), dateError: -300 * time.Millisecond}, &out)
	defer demoLogOnFailure(t, sum)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if p := sum.problems(); len(p) > 0 || sum.Lost > 0 || sum.TierUpgrades == 0 {
		t.Errorf("problems %q, lost %d, tier upgrades %d (the story needs some):\n%s", p, sum.Lost, sum.TierUpgrades, out.String())
	}
}

// TestDemoBrokenGuarantee checks the closing summary of a run that broke guarantees: it says so in
// plain words, and the demo fails.
func TestDemoBrokenGuarantee(t *testing.T) {
	good := DemoSummary{Members: 12, DeltasCreated: 116, DeltasApplied: 116, BalancesMatch: true, RetriesMatched: true,
		ReceiptsMatch: true, BudgetsKept: true, BudgetLimit: 40, BudgetSpent: 20, Mismatches: []string{}, Tiers: map[string]int{}}
	if p := good.problems(); len(p) > 0 {
		t.Fatalf("a good run has problems: %v", p)
	}
	if s := good.story(false); !strings.Contains(s, "All guarantees held") || strings.Contains(s, "FAIL") {
		t.Errorf("a good run's summary:\n%s", s)
	}
	bad := good
	bad.Lost, bad.DeltasApplied, bad.BudgetsKept, bad.BudgetSpent, bad.BudgetPeak = 3, 113, false, 41, 41
	bad.BalancesMatch, bad.Mismatches = false, []string{"m01 at north: agent 10, hub 12"}
	s := bad.story(false)
	for _, w := range []string{
		"FAIL  Sales lost: 3 of the 116 sales, free coffees and online orders approved today never reached head office.",
		"FAIL  Balances differ: 1 balance at a store does not match head office.",
		"FAIL  Budget overspent: 41 free coffees for points against a budget of 40.",
		"A GUARANTEE WAS BROKEN",
	} {
		if !strings.Contains(s, w) {
			t.Errorf("the summary of a broken run lacks %q:\n%s", w, s)
		}
	}
	if strings.Contains(s, "All guarantees held") {
		t.Errorf("a broken run says all guarantees held:\n%s", s)
	}
	if w := engineeringWords.FindAllString(s, -1); len(w) > 0 {
		t.Errorf("engineering words in the summary of a broken run: %q", w)
	}
	if p := bad.problems(); len(p) != 3 {
		t.Errorf("problems of a broken run: %q", p)
	}
}

// TestDemoFlags checks the flags the README and CI use.
func TestDemoFlags(t *testing.T) {
	c := cmdWith(t, demoCommand, "--json", "--verbose", "--seed", "7")
	for _, f := range []string{"json", "verbose", "seed"} {
		if c.Flags().Lookup(f) == nil {
			t.Errorf("no --%s flag", f)
		}
	}
	if !strings.Contains(c.Long, "--seed") || !strings.Contains(c.Long, "--verbose") {
		t.Errorf("--help does not explain --seed and --verbose:\n%s", c.Long)
	}
}

// A till that retries after a timeout acts on the retry's answer. A refusal is not remembered by
// the agent, so the retry may be approved (quota arrived in between): the demo must count that
// receipt, or the hub's ledger holds an entry no receipt accounts for (seen in CI as "counted
// twice" under load). An approved call answered differently on the retry is a broken guarantee.
func TestDemoPOSActsOnTheRetrysAnswer(t *testing.T) {
	approved := `{"order_id":"o1","points":-50,"delta_ids":["dX"]}`
	for _, tc := range []struct {
		name        string
		answers     []int // HTTP status of the first call and the retry
		wantStatus  int
		wantDeltas  int
		wantMatched bool
	}{
		{"refused then approved", []int{409, 200}, 200, 1, true},
		{"approved twice", []int{200, 200}, 200, 1, true},
		{"refused twice", []int{409, 409}, 409, 0, true},
		{"approved then refused", []int{200, 409}, 409, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				status := tc.answers[min(calls, 1)]
				calls++
				w.WriteHeader(status)
				if status == 200 {
					io.WriteString(w, approved)
				} else {
					io.WriteString(w, `{"error":{"code":"EBUDGET","message":"used up"}}`)
				}
			}))
			defer srv.Close()
			d := &demo{sum: DemoSummary{RetriesMatched: true}}
			var r loyalty.Receipt
			status, code, err := d.posAt(srv.URL, loyalty.RedeemRequest{OrderID: "o1"}, &r)
			if err != nil {
				t.Fatal(err)
			}
			if calls != 2 || status != tc.wantStatus || len(r.Deltas) != tc.wantDeltas || d.sum.RetriesMatched != tc.wantMatched {
				t.Errorf("calls %d, status %d (want %d), deltas %v (want %d), retries matched %v (want %v)",
					calls, status, tc.wantStatus, r.Deltas, tc.wantDeltas, d.sum.RetriesMatched, tc.wantMatched)
			}
			if status != 200 && code != "EBUDGET" {
				t.Errorf("refusal code %q, want EBUDGET", code)
			}
		})
	}
}
