package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// TestBirthdays: the hub awards the program's birthday action on each member's birthday, in
// their home store's time zone, once a year, however often the sweep runs and however many hub
// processes run it; 29 February on 28 February in other years; nothing for a member without a
// birthday, and nothing without a birthday action.
func TestBirthdays(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	h.Now = func() time.Time { return now }
	if n, err := h.AwardBirthdays(ctx); err != nil || n != 0 {
		t.Fatalf("without a birthday action: %d, %v", n, err)
	}
	withProgram(t, h, func(p *loyalty.Program) {
		p.Actions = []loyalty.ActionRule{{ID: loyalty.ActionBirthday, Points: 200}}
	})
	if _, _, err := h.CreateStoreIn(ctx, "tokyo", "Shibuya", "Asia/Tokyo"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []loyalty.Member{
		{ID: "ann", Birthday: "07-14", HomeStore: "s1"}, // UTC
		{ID: "kenji", Birthday: "1990-07-14", HomeStore: "tokyo"},
		{ID: "leap", Birthday: "02-29"},
		{ID: "none"},
	} {
		if _, err := h.CreateMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	award := func(at time.Time, want int) {
		t.Helper()
		now = at
		if n, err := h.AwardBirthdays(ctx); err != nil || n != want {
			t.Fatalf("%s: awarded %d, %v; want %d", at, n, err, want)
		}
		mustCheck(t, h)
	}
	award(time.Date(2026, 7, 13, 14, 59, 59, 0, time.UTC), 0) // 23:59:59 in Tokyo
	award(time.Date(2026, 7, 13, 15, 0, 0, 0, time.UTC), 1)   // midnight in Tokyo: Kenji
	award(time.Date(2026, 7, 13, 16, 0, 0, 0, time.UTC), 0)   // an hour later: nothing again
	award(time.Date(2026, 7, 14, 0, 0, 0, 0, time.UTC), 1)    // midnight UTC: Ann
	for _, id := range []string{"ann", "kenji"} {
		v, err := h.Member(ctx, id, 5)
		if err != nil || v.Balance != 200 || len(v.Ledger) != 1 {
			t.Fatalf("%s after the birthday: %+v, %v", id, v, err)
		}
		if e := v.Ledger[0]; e.Kind != loyalty.KindEarn || e.Rule != loyalty.ActionBirthday || e.OrderID != "birthday-2026-"+id || e.Points != 200 {
			t.Errorf("%s's award: %+v", id, e)
		}
	}

	// Two hub processes on the same database, a day later (within the catch-up days): nothing.
	other := hub.New(h.Store)
	other.Now, other.Logger = h.Now, h.Logger
	now = time.Date(2026, 7, 15, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for _, x := range []*hub.Hub{h, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n, err := x.AwardBirthdays(ctx); err != nil || n != 0 {
				t.Errorf("a day later: %d, %v", n, err)
			}
		}()
	}
	wg.Wait()

	// 29 February: on 28 February in 2027, on the 29th in 2028.
	award(time.Date(2027, 2, 27, 23, 0, 0, 0, time.UTC), 0)
	award(time.Date(2027, 2, 28, 1, 0, 0, 0, time.UTC), 1)
	award(time.Date(2028, 2, 28, 1, 0, 0, 0, time.UTC), 0)
	award(time.Date(2028, 2, 29, 1, 0, 0, 0, time.UTC), 1)
	if v, _ := h.Member(ctx, "leap", 5); v.Balance != 400 || v.Ledger[0].OrderID != "birthday-2028-leap" {
		t.Errorf("leap: %+v", v)
	}
	if balance(t, h, "none") != 0 {
		t.Error("a member without a birthday got points")
	}
}

// TestBirthdays_TwoProcessesAtOnce: two hub processes on the same database sweeping at the same
// moment award each member once, and between them count each award once. On PostgreSQL one of
// the two transactions is retried after the other committed: the retry must not count the award
// it found made.
func TestBirthdays_TwoProcessesAtOnce(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC)
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Actions = []loyalty.ActionRule{{ID: loyalty.ActionBirthday, Points: 200}}
	})
	if _, _, err := h.CreateStoreIn(ctx, "tokyo", "Shibuya", "Asia/Tokyo"); err != nil {
		t.Fatal(err)
	}
	for _, m := range []loyalty.Member{
		{ID: "ann", Birthday: "07-14", HomeStore: "s1"}, // UTC
		{ID: "kenji", Birthday: "1990-07-14", HomeStore: "tokyo"},
	} {
		if _, err := h.CreateMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	other := hub.New(h.Store)
	other.Now, other.Logger = h.Now, h.Logger
	now = time.Date(2027, 7, 14, 6, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i, x := range []*hub.Hub{h, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := x.AwardBirthdays(ctx)
			if err != nil {
				t.Error(err)
			}
			counts[i] = n
		}()
	}
	wg.Wait()
	if counts[0]+counts[1] != 2 || balance(t, h, "ann") != 200 || balance(t, h, "kenji") != 200 {
		t.Errorf("from two processes: %v awarded, ann %d, kenji %d; want 2 awards, 200 each", counts, balance(t, h, "ann"), balance(t, h, "kenji"))
	}
	mustCheck(t, h)
}

// birthdayBudget is a program edit: 200 birthday points, under a points_issued budget of limit.
func birthdayBudget(limit int64) func(*loyalty.Program) {
	return func(p *loyalty.Program) {
		p.Actions = []loyalty.ActionRule{{ID: loyalty.ActionBirthday, Points: 200}}
		p.Budgets = []loyalty.Budget{{ID: "pts", Metric: loyalty.MetricPointsIssued, Limit: limit}}
	}
}

// TestBirthdays_CatchUpAndRefusal: a hub down on the day awards the birthday when it is back,
// within the catch-up days; an award a budget refuses is not an error, and is given at a later
// sweep once the budget has room.
func TestBirthdays_CatchUpAndRefusal(t *testing.T) {
	h, ctx := openHub(t), context.Background()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	h.Now = func() time.Time { return now }
	withProgram(t, h, birthdayBudget(100))
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "ann", Birthday: "03-10"}); err != nil {
		t.Fatal(err)
	}
	now = time.Date(2026, 3, 12, 8, 0, 0, 0, time.UTC) // two days late
	if n, err := h.AwardBirthdays(ctx); err != nil || n != 0 || balance(t, h, "ann") != 0 {
		t.Fatalf("over the budget: %d, %v, balance %d; want no award and no error", n, err, balance(t, h, "ann"))
	}
	withProgram(t, h, birthdayBudget(1000))
	if n, err := h.AwardBirthdays(ctx); err != nil || n != 1 || balance(t, h, "ann") != 200 {
		t.Fatalf("with room: %d, %v, balance %d", n, err, balance(t, h, "ann"))
	}
	// Too late: a week after the day, the next birthday is next year's.
	if _, err := h.CreateMember(ctx, loyalty.Member{ID: "bob", Birthday: "03-01"}); err != nil {
		t.Fatal(err) // joined after this year's birthday
	}
	now = time.Date(2027, 3, 8, 0, 0, 0, 0, time.UTC)
	if n, err := h.AwardBirthdays(ctx); err != nil || n != 0 {
		t.Fatalf("a week after bob's birthday: %d, %v", n, err)
	}
}

// TestBirthdays_Batched: the awards due at one sweep share a transaction and its commit; when the
// budget has room for only some of them, the refused ones cost only themselves: every award that
// fits is made, each once, and the others wait for a later sweep.
func TestBirthdays_Batched(t *testing.T) {
	h, ctx := openHub(t), context.Background()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	h.Now = func() time.Time { return now }
	withProgram(t, h, birthdayBudget(1_000_000))
	const members = 7
	for i := range members {
		day := "05-01" // today, in the first sweep
		if i >= 3 {
			day = "05-02" // tomorrow
		}
		if _, err := h.CreateMember(ctx, loyalty.Member{ID: fmt.Sprintf("b%d", i), Birthday: day}); err != nil {
			t.Fatal(err)
		}
	}
	commits := 0
	h.OnChange = func(int64, []string) { commits++ }
	now = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	store := h.Store
	one, many, rows, lookups := new(atomic.Int64), new(atomic.Int64), new(atomic.Int64), new(atomic.Int64)
	h.Store = insertCounter{Store: store, one: one, many: many, rows: rows, lookups: lookups}
	if n, err := h.AwardBirthdays(ctx); err != nil || n != 3 || commits != 1 {
		t.Fatalf("three birthdays today: awarded %d in %d commits, %v; want 3 in 1", n, commits, err)
	}
	// The batch's awards go into the ledger with one insert, their new ids not looked up.
	if one.Load() != 0 || many.Load() != 1 || rows.Load() != 3 || lookups.Load() != 0 {
		t.Errorf("the batch's ledger writes: %d single inserts, %d inserts of %d deltas, %d delta reads; want one insert of 3, no read",
			one.Load(), many.Load(), rows.Load(), lookups.Load())
	}
	h.Store = store
	// Tomorrow four are due, and the budget has room for two more awards.
	issued := int64(3 * 200)
	withProgram(t, h, birthdayBudget(issued+2*200))
	now = now.AddDate(0, 0, 1)
	if n, err := h.AwardBirthdays(ctx); err != nil || n != 2 {
		t.Fatalf("four due, room for two: awarded %d, %v", n, err)
	}
	withProgram(t, h, birthdayBudget(1_000_000))
	if n, err := h.AwardBirthdays(ctx); err != nil || n != 2 {
		t.Fatalf("with room again: awarded %d, %v; want the two refused before", n, err)
	}
	for i := range members {
		if b := balance(t, h, fmt.Sprintf("b%d", i)); b != 200 {
			t.Errorf("member b%d: balance %d, want one birthday's 200", i, b)
		}
	}
	mustCheck(t, h)
}

// TestBirthdays_Members: POST /v1/members takes a birthday and GET /v1/members/{id} shows it; an
// invalid one is refused; the stores never receive it, neither in their change feed nor when they
// subscribe to a member.
func TestBirthdays_Members(t *testing.T) {
	a := openAKHub(t)
	ctx := context.Background()
	var m struct {
		ID       string `json:"id"`
		Birthday string `json:"birthday"`
	}
	a.mustDo(t, akAdminKey, "POST", "/v1/members", `{"id":"ann","home_store":"s1","birthday":"1990-07-14"}`, http.StatusCreated, &m)
	if m.ID != "ann" || m.Birthday != "1990-07-14" {
		t.Errorf("created: %+v", m)
	}
	a.mustDo(t, akAdminKey, "GET", "/v1/members/ann", "", http.StatusOK, &m)
	if m.Birthday != "1990-07-14" {
		t.Errorf("read: %+v", m)
	}
	for body, msg := range map[string]string{
		`{"id":"bob","birthday":"02-30"}`:      `birthday \"02-30\" is not a date`,
		`{"id":"bob","birthday":"14/07/1990"}`: `birthday \"14/07/1990\" is not a date`,
		`{"id":"bob","birthday":"2030-01-01"}`: `birthday \"2030-01-01\" is in the future`,
	} {
		status, b := a.do(t, akAdminKey, "POST", "/v1/members", body)
		if status != http.StatusBadRequest || !strings.Contains(string(b), `"EINVALID"`) || !strings.Contains(string(b), msg) {
			t.Errorf("%s: %d %s", body, status, b)
		}
	}
	if _, err := a.Hub.Member(ctx, "bob", 0); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("a refused member was created: %v", err)
	}

	ch, err := a.Hub.Pull(ctx, "s1", lsync.Pull{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ch)
	if !strings.Contains(string(b), `"ann"`) || strings.Contains(string(b), "birthday") || strings.Contains(string(b), "1990") {
		t.Errorf("the store's change feed: %s", b)
	}
	code, err := a.Hub.MemberToken(ctx, "ann")
	if err != nil {
		t.Fatal(err)
	}
	sub, _, err := a.Hub.Subscribe(ctx, "s2", lsync.Subscribe{Member: "ann", QR: code})
	if err != nil || sub.Birthday != "" {
		t.Errorf("a store subscribing to ann got %+v, %v", sub, err)
	}
}

// TestBirthdays_ManyPagesAndDays: a sweep pages through each day's members (more than one page
// of a day, in both forms of a birthday) and awards exactly the members whose birthday is due:
// today's, and those of the catch-up days, never those of days to come or long past.
func TestBirthdays_ManyPagesAndDays(t *testing.T) {
	h, ctx := openHub(t), context.Background()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	h.Now = func() time.Time { return now }
	withProgram(t, h, birthdayBudget(1_000_000))
	days := map[string]int{"05-01": 450, "04-27": 30, "04-20": 20, "05-03": 20} // today, caught up, past the grace days, to come
	want := map[string]bool{}
	for day, n := range days {
		for i := range n {
			// Ids that sort across the days: a cursor that ran on from one day into the next
			// would skip members.
			id, birthday := fmt.Sprintf("%03d-%s", i, day), day
			if i%2 == 1 {
				birthday = "1990-" + day
			}
			if _, err := h.CreateMember(ctx, loyalty.Member{ID: id, Birthday: birthday}); err != nil {
				t.Fatal(err)
			}
			want[id] = day == "05-01" || day == "04-27"
		}
	}
	now = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	if n, err := h.AwardBirthdays(ctx); err != nil || n != 480 {
		t.Fatalf("awarded %d, %v; want today's 450 and the 30 of 04-27", n, err)
	}
	if n, err := h.AwardBirthdays(ctx); err != nil || n != 0 {
		t.Fatalf("again: awarded %d, %v; want none", n, err)
	}
	for id, due := range want {
		if b := balance(t, h, id); (b == 200) != due || (b != 0 && b != 200) {
			t.Errorf("member %s: balance %d, want the birthday's 200: %v", id, b, due)
		}
	}
	mustCheck(t, h)
}

// TestBirthdayDays: a sweep's days run from the catch-up days to tomorrow, each once; 29 February
// comes with 28 February, and only once when a leap year's window holds both.
func TestBirthdayDays(t *testing.T) {
	for now, want := range map[time.Time][]string{
		time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC): {"04-23", "04-24", "04-25", "04-26", "04-27", "04-28", "04-29", "04-30", "05-01", "05-02"},
		time.Date(2027, 3, 2, 9, 0, 0, 0, time.UTC): {"02-22", "02-23", "02-24", "02-25", "02-26", "02-27", "02-28", "02-29", "03-01", "03-02", "03-03"},
		time.Date(2028, 3, 2, 9, 0, 0, 0, time.UTC): {"02-23", "02-24", "02-25", "02-26", "02-27", "02-28", "02-29", "03-01", "03-02", "03-03"},
	} {
		if got := hub.BirthdayDays(now); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", now.Format(time.DateOnly), got, want)
		}
	}
}

// TestHubOrderIDsRefusedOnline: an online caller cannot use the order ids of the hub's own
// awards. Under a member's birthday key, another action would take the award's place, so that the
// birthday job found it made and gave nothing; under any of them, an order would share the
// award's entries, so that reversing it took the award back.
func TestHubOrderIDsRefusedOnline(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	now := time.Date(2026, 7, 14, 12, 0, 0, 0, time.UTC)
	h.Now = func() time.Time { return now }
	withProgram(t, h, func(p *loyalty.Program) {
		p.Actions = []loyalty.ActionRule{{ID: loyalty.ActionBirthday, Points: 200}, {ID: loyalty.ActionSignup, Points: 50}, {ID: "review", Points: 10}}
	})
	for _, m := range []loyalty.Member{{ID: "victim", Birthday: "08-01", HomeStore: "s1"}, {ID: "mallory", HomeStore: "s1"}} {
		if _, err := h.CreateMember(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "w-1", MemberID: "mallory", Amount: 10000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	before := balance(t, h, "mallory")
	birthdayKey := loyalty.BirthdayOrderID(2026, "victim")
	for _, call := range []struct {
		name string
		do   func() error
	}{
		{"an action under a birthday's key", func() error {
			_, err := h.Action(ctx, loyalty.ActionRequest{OrderID: birthdayKey, MemberID: "mallory", Action: "review"})
			return err
		}},
		{"an action under another member's sign-up key", func() error {
			_, err := h.Action(ctx, loyalty.ActionRequest{OrderID: loyalty.SignupOrderID("newbie"), MemberID: "mallory", Action: "review"})
			return err
		}},
		{"an earn under a birthday's key", func() error {
			_, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: birthdayKey, MemberID: "mallory", Amount: 100, Currency: "EUR"})
			return err
		}},
		{"a redemption under a sign-up key", func() error {
			_, err := h.Redeem(ctx, loyalty.RedeemRequest{OrderID: loyalty.SignupOrderID("x"), MemberID: "mallory", RewardID: "coffee"})
			return err
		}},
		{"a voucher under a birthday's key", func() error {
			_, err := h.IssueVoucher(ctx, loyalty.RedeemRequest{OrderID: birthdayKey, MemberID: "mallory", RewardID: "coffee"})
			return err
		}},
		{"a reversal of a sign-up award", func() error {
			_, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: loyalty.SignupOrderID("mallory")})
			return err
		}},
	} {
		if err := call.do(); loyalty.ErrorCode(err) != loyalty.EINVALID {
			t.Errorf("%s: %v, want EINVALID", call.name, err)
		}
	}
	if got := balance(t, h, "mallory"); got != before {
		t.Errorf("mallory's balance %d after the refused calls, want %d", got, before)
	}
	// An order id that only looks like one is a caller's, and its order is reversed as any.
	if _, err := h.Earn(ctx, loyalty.EarnRequest{OrderID: "birthday-cake-42", MemberID: "mallory", Amount: 1000, Currency: "EUR"}); err != nil {
		t.Fatalf("an earn under birthday-cake-42: %v", err)
	}
	if _, err := h.Reverse(ctx, loyalty.ReverseRequest{OrderID: "birthday-cake-42"}); err != nil {
		t.Fatalf("its reversal: %v", err)
	}
	// The hub's own awards still go through: the sign-up of a new member, and the birthday.
	if nm, err := h.CreateMember(ctx, loyalty.Member{ID: "newbie"}); err != nil || nm.Signup == nil || nm.Signup.Points != 50 {
		t.Fatalf("newbie's sign-up: %+v, %v; want 50 points", nm.Signup, err)
	}
	now = time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	if n, err := h.AwardBirthdays(ctx); err != nil || n != 1 {
		t.Fatalf("birthdays on 1 August: %d, %v; want the victim's", n, err)
	}
	if got := balance(t, h, "victim"); got != 250 {
		t.Errorf("victim's balance %d, want 250 (sign-up and birthday)", got)
	}
	mustCheck(t, h)
}
