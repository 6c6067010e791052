package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loyalty-edge-sync/loyalty/hub"
)

// plan returns SQLite's query plan for q with args, its steps joined by "; ".
func plan(t *testing.T, s *Store, q string, args ...any) string {
	t.Helper()
	rows, err := s.db.R.QueryContext(context.Background(), `EXPLAIN QUERY PLAN `+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var steps []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		steps = append(steps, detail)
	}
	return strings.Join(steps, "; ")
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestMembersAfterReadsTheNewDeltas: a job's check of which members of a batch changed since its
// read ahead (MembersAfter) reads the deltas after the ledger position, by the table's key, not
// each member's ledger through the index on members.
func TestMembersAfterReadsTheNewDeltas(t *testing.T) {
	s := openStore(t)
	got := plan(t, s, membersAfterQuery, 100, `["m1","m2"]`)
	if !strings.Contains(got, "SEARCH deltas USING INTEGER PRIMARY KEY (rowid>?)") || strings.Contains(got, "deltas_member") {
		t.Errorf("plan: %s; want a search of the table's key after the position, and no members' index", got)
	}
}

// TestBirthdayMembersReadsARange: a page of a day's birthdays is a range of the index on the day
// and the member id, not every member of the day sorted again for each page (which made a sweep
// cost the square of the day's members).
func TestBirthdayMembersReadsARange(t *testing.T) {
	s := openStore(t)
	got := plan(t, s, birthdayMembersQuery, "05-01", "", 200)
	if !strings.Contains(got, "USING INDEX members_birthday") || strings.Contains(got, "TEMP B-TREE") {
		t.Errorf("plan: %s; want a search of members_birthday and no sort", got)
	}
}

// TestLotsAreOneSearchAMember: the expiry job's read of a batch's lots searches member_lots by
// each member's key and reads nothing else; the queries of a member's earns in a span of time
// (memberEarns: the tiers' window edges, earn caps, action limits) search it
// by member (and time) and read each earn's row by its position, as they did the index of
// members' earns it replaced, never a member's whole ledger.
func TestLotsAreOneSearchAMember(t *testing.T) {
	s := openStore(t)
	got := plan(t, s, lotsOfQuery, `["m1","m2"]`, 0)
	if !strings.Contains(got, "SEARCH l USING PRIMARY KEY (member=? AND at>?)") || strings.Contains(got, "deltas") {
		t.Errorf("lots: plan %s; want a search of member_lots by member and time, and no ledger read", got)
	}
	for name, q := range map[string]struct {
		query string
		lots  string
		args  []any
	}{
		"window edges": {qualifyingEdges, "(member=? AND at>? AND at<?)", []any{`["m1"]`, 0, 1, `["m1"]`, 0, 1}},
		"earned":       {memberEarnedQuery, "(member=? AND at>? AND at<?)", []any{"m1", "", 0, 1}},
		"rule count":   {ruleCountQuery, "(member=? AND at>? AND at<?)", []any{"m1", "review", 0, 1}},
	} {
		got := plan(t, s, q.query, q.args...)
		if !strings.Contains(got, "SEARCH l USING PRIMARY KEY "+q.lots) ||
			!strings.Contains(got, "SEARCH d USING INTEGER PRIMARY KEY (rowid=?)") || strings.Contains(got, "SCAN l") ||
			strings.Contains(got, "SCAN d") || strings.Contains(got, "USING INDEX deltas_member ") {
			t.Errorf("%s: plan %s; want member_lots searched by %s, each earn read by its position", name, got, q.lots)
		}
	}
}

// TestWebhookClaimOfOneEndpoint: a round's claim of one endpoint's due deliveries searches that
// endpoint's index, not every endpoint's due deliveries (a disabled endpoint's backlog is kept).
func TestWebhookClaimOfOneEndpoint(t *testing.T) {
	s := openStore(t)
	got := plan(t, s, claimEndpointDueQuery, "wh-1", 1, 100)
	if !strings.Contains(got, "USING INDEX webhook_deliveries_endpoint_due (endpoint=? AND next_at<?)") {
		t.Errorf("plan: %s; want a search of webhook_deliveries_endpoint_due by endpoint and time", got)
	}
}

// TestAuditFiltersUseTheirIndex: an audit query by key or by action searches that index from
// before, not the whole trail.
func TestAuditFiltersUseTheirIndex(t *testing.T) {
	s := openStore(t)
	for _, tt := range []struct {
		q     hub.AuditQuery
		index string
	}{
		{hub.AuditQuery{KeyID: "ak-1", Before: 10, Limit: 5}, "USING INDEX audit_key (key_id=? AND seq<?)"},
		{hub.AuditQuery{Action: "member.add", Limit: 5}, "USING INDEX audit_action (action=?)"},
		{hub.AuditQuery{Action: "member.add", KeyID: "ak-1", Before: 10, Limit: 5}, "USING INDEX audit_key_action (key_id=? AND action=? AND seq<?)"},
		{hub.AuditQuery{Before: 3_000_000_000, Limit: 5}, "USING INTEGER PRIMARY KEY (rowid<?)"},
	} {
		q, args := auditQuery(tt.q)
		if got := plan(t, s, q, args...); !strings.Contains(got, tt.index) {
			t.Errorf("%+v: plan %s; want %s", tt.q, got, tt.index)
		}
	}
}

// TestOpenLeasesAndProgramsUseTheirIndex: the lease expiry job, a store's and a budget's open
// leases, and a pull's look for unacknowledged rule versions search the open rows' indexes, not
// every lease ever granted nor every version ever sent.
func TestOpenLeasesAndProgramsUseTheirIndex(t *testing.T) {
	s := openStore(t)
	for _, tt := range []struct{ q, index string }{
		{`SELECT ` + leaseCols + ` FROM leases WHERE ` + expiredLeases, "INDEX leases_active_expiry (expires_at<?)"},
		{`SELECT ` + leaseCols + ` FROM leases WHERE ` + storeLeases, "INDEX leases_store_open (store=?)"},
		{`SELECT ` + leaseCols + ` FROM leases WHERE ` + budgetLeases, "INDEX leases_budget_open (budget=?)"},
		{programsUnreceived, "INDEX store_programs_unreceived (store=?)"},
	} {
		if got := plan(t, s, tt.q, "x"); !strings.Contains(got, tt.index) || strings.Contains(got, "TEMP B-TREE") {
			t.Errorf("%s: plan %s; want %s", tt.q, got, tt.index)
		}
	}
}

// TestFailedDeliveriesUseTheirIndex: an endpoint's failed deliveries are read from their own
// index, newest first, not by reading its whole log.
func TestFailedDeliveriesUseTheirIndex(t *testing.T) {
	s := openStore(t)
	q := `SELECT d.event FROM webhook_deliveries d WHERE d.endpoint = ?1` + hub.DeliveryStateCond(hub.DeliveryFailed) + ` ORDER BY d.created_at DESC, d.event DESC LIMIT ?2+0`
	if got := plan(t, s, q, "wh-1", 10); !strings.Contains(got, "INDEX webhook_deliveries_failed (endpoint=?)") {
		t.Errorf("plan: %s; want a search of webhook_deliveries_failed", got)
	}
}

// TestDisabledPendingUseTheirIndex: the prune finds what waits for disabled endpoints endpoint by
// endpoint, through the index of pending deliveries, which a delivery given up leaves.
func TestDisabledPendingUseTheirIndex(t *testing.T) {
	s := openStore(t)
	got := plan(t, s, `SELECT d.rowid FROM `+disabledPending+` LIMIT ?3+0`, "", 10, 100)
	if !strings.Contains(got, "SCAN e") || !strings.Contains(got, "SEARCH d USING INDEX webhook_deliveries_endpoint_due (endpoint=?)") {
		t.Errorf("plan: %s; want the endpoints read, then each one's pending deliveries searched by endpoint", got)
	}
}

// TestNameSearchUsesTheIndex: a search by name of 3 characters or more reads the names' index
// and the members it finds, never every member.
func TestNameSearchUsesTheIndex(t *testing.T) {
	s := openStore(t)
	q, args := searchMembersQuery(hub.MemberFilter{Name: "ann"}, "", 11)
	got := plan(t, s, q, args...)
	if strings.Contains(got, "SCAN m") || !strings.Contains(got, "VIRTUAL TABLE INDEX 0:M") {
		t.Errorf("plan: %s; want the names' index read, and the members it finds", got)
	}
}

// TestLotsDriftReadsAPageOfMembers: the check's comparison of lots with the ledger reads the
// page's range of members from the ledger's index on members and from member_lots' key, never a
// whole table, so that a page's read-only snapshot (which holds the write-ahead log's checkpoints)
// lasts as long as its members' ledgers take, not the whole database's.
func TestLotsDriftReadsAPageOfMembers(t *testing.T) {
	s := openStore(t)
	for name, q := range map[string]struct {
		upTo        bool
		deltas, key string
	}{
		"a page":        {true, "deltas_member (member>? AND member<?)", "PRIMARY KEY (member>? AND member<?)"},
		"the last page": {false, "deltas_member (member>?)", "PRIMARY KEY (member>?)"},
	} {
		got := plan(t, s, lotsDriftQuery(q.upTo), "m1", "m2", 10)
		if !strings.Contains(got, "SEARCH d USING INDEX "+q.deltas) || !strings.Contains(got, "SEARCH k USING "+q.key) ||
			strings.Contains(got, "SCAN d") || strings.Contains(got, "SCAN k") {
			t.Errorf("%s: plan %s; want ranges of deltas_member and member_lots' key, and no scan", name, got)
		}
	}
}

// TestSearchByHomeStoreOrTierReadsWhatItFinds: a search by home store or by tier reads that
// store's or tier's members from its index in id order, after the page before, with no sort:
// not every member in id order until the page is full.
func TestSearchByHomeStoreOrTierReadsWhatItFinds(t *testing.T) {
	s := openStore(t)
	for name, tt := range map[string]struct {
		f    hub.MemberFilter
		want string
	}{
		"home store":       {hub.MemberFilter{HomeStore: "s1"}, "SEARCH m USING INDEX members_home_store (home_store=? AND id>?)"},
		"tier":             {hub.MemberFilter{Tier: "gold"}, "SEARCH m USING INDEX members_tier (tier=? AND id>?)"},
		"tier, short name": {hub.MemberFilter{Tier: "gold", Name: "Li"}, "SEARCH m USING INDEX members_tier (tier=? AND id>?)"},
	} {
		q, args := searchMembersQuery(tt.f, "m1", 100)
		got := plan(t, s, q, args...)
		if !strings.Contains(got, tt.want) || strings.Contains(got, "SCAN") || strings.Contains(got, "TEMP B-TREE") {
			t.Errorf("%s: plan %s; want %s, and no scan or sort", name, got, tt.want)
		}
	}
}
