package hub_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/loyalty-edge-sync/loyalty/hub"
)

// TestExport_HoldsOnlyTheMembersAuditEntries: the member export (handed to the member) holds
// the audit entries about the member (docs/API.md), by action as well as by target: member ids
// share the audit's target column with store ids, "program", import ids, conflict numbers,
// webhook and key ids, and a web shop may sign a member up as "program" or "s1". That member's
// export must not hold the program's publications or the store's token rotations, with the
// operators' key names and ids.
func TestExport_HoldsOnlyTheMembersAuditEntries(t *testing.T) {
	a := openAKHub(t)
	shop := a.newKey(t, akAdminKey, "web shop", hub.ScopeOnline)
	ops := a.newKey(t, akAdminKey, "Head office (Jane Roe)", hub.ScopeAdmin)
	for _, id := range []string{"program", "s1"} {
		a.mustDo(t, shop.Key, "POST", "/v1/members", `{"id":"`+id+`"}`, http.StatusCreated, nil)
	}
	// The operators' own work, nothing to do with any member.
	var p json.RawMessage
	a.mustDo(t, ops.Key, "GET", "/v1/program", "", http.StatusOK, &p)
	a.mustDo(t, ops.Key, "PUT", "/v1/program", string(p), http.StatusOK, nil)
	a.mustDo(t, ops.Key, "POST", "/v1/stores/s1/token", "", http.StatusOK, nil)

	memberActions := func(action string) bool {
		return strings.HasPrefix(action, "member.") || strings.HasPrefix(action, "points.")
	}
	for _, id := range []string{"program", "s1"} {
		var out struct {
			hub.MemberExport
			Ledger []hub.LedgerEntry `json:"ledger"`
		}
		a.mustDo(t, akAdminKey, "GET", "/v1/members/"+id+"/export", "", http.StatusOK, &out)
		for _, e := range out.Audit {
			if !memberActions(e.Action) {
				t.Errorf("export of member %q holds an audit entry that is not about the member: %s by %s (%s) on %q: %q",
					id, e.Action, e.KeyName, e.KeyID, e.Target, e.Detail)
			}
		}
	}
}
