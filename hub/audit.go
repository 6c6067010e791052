package hub

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// Actor is who makes a request: the API key it came with, or the command line. The HTTP API's
// authentication puts it in the request's context (WithActor); the hub reads it there to record
// admin changes in the audit trail.
type Actor struct {
	KeyID   string // an API key's id, or one of the ids below
	KeyName string
	Scope   Scope
}

// The actors that are not API keys of the api_keys table.
var (
	// ConfigActor is the bootstrap admin key, admin_api_key in the hub's configuration.
	ConfigActor = Actor{KeyID: "config", KeyName: "admin_api_key", Scope: ScopeAdmin}
	// CLIActor is an admin command run on the hub's database (loyalty store add, …).
	CLIActor = Actor{KeyID: "cli", KeyName: "loyalty command line", Scope: ScopeAdmin}
	// internalActor is a call from Go code that named no actor: the demo, the simulator, tests.
	internalActor = Actor{KeyID: "internal", KeyName: "no credential (called in-process)"}
)

// actorKey is the context key of the Actor.
type actorKey struct{}

// WithActor returns ctx carrying a.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom returns the Actor in ctx, or the "internal" actor if there is none.
func ActorFrom(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok {
		return a
	}
	return internalActor
}

// Audit actions: one for each kind of admin change.
const (
	AuditStoreAdd         = "store.add"
	AuditStoreToken       = "store.token"
	AuditStoreTimeZone    = "store.timezone"
	AuditStoreWriteOff    = "store.writeoff"
	AuditMemberAdd        = "member.add"
	AuditMemberUpdate     = "member.update" // the names of the fields changed, never their values
	AuditMemberErase      = "member.erase"  // who erased; what was erased is gone
	AuditProgramPublish   = "program.publish"
	AuditSigningKeyRotate = "signing_key.rotate"
	AuditSigningKeyRetire = "signing_key.retire"
	AuditAPIKeyAdd        = "api_key.add"
	AuditAPIKeyRevoke     = "api_key.revoke"
	AuditWebhookAdd       = "webhook.add"
	AuditWebhookChange    = "webhook.change"
	AuditWebhookRemove    = "webhook.remove"
	AuditWebhookReplay    = "webhook.replay"
	AuditWebhookRotate    = "webhook.rotate"
	AuditAdjust           = "points.adjust"  // a manual adjustment (migrate.go)
	AuditAdjustReverse    = "points.reverse" // the reversal of a manual adjustment
	AuditImport           = "members.import" // a batch of a CSV import (import.go)
)

// AuditActions are every action the audit trail records, for checking a filter: an action
// nothing records would find nothing, and a typo would read as "nobody did that".
var AuditActions = []string{AuditStoreAdd, AuditStoreToken, AuditStoreTimeZone, AuditStoreWriteOff, AuditMemberAdd,
	AuditMemberUpdate, AuditMemberErase, AuditCardLink, AuditCardRevoke, AuditProgramPublish, AuditSigningKeyRotate,
	AuditSigningKeyRetire, AuditAPIKeyAdd, AuditAPIKeyRevoke, AuditWebhookAdd, AuditWebhookChange, AuditWebhookRemove,
	AuditWebhookReplay, AuditWebhookRotate, AuditAdjust, AuditAdjustReverse, AuditImport, AuditConflictResolve}

// knownAuditAction reports whether a filter's action is one the trail records, or the family of
// one ("member.*").
func knownAuditAction(action string) bool {
	if family, ok := strings.CutSuffix(action, "*"); ok {
		return slices.ContainsFunc(AuditActions, func(a string) bool { return strings.HasPrefix(a, family) })
	}
	return slices.Contains(AuditActions, action)
}

// MemberAuditActions are the audit actions whose target is a member id: a member's own audit
// entries (MemberRecords) are those with one of these actions and the member as target. Other
// actions' targets (a store, a program, a key, an import) may be any text a member id can be.
var MemberAuditActions = []string{AuditMemberAdd, AuditMemberUpdate, AuditMemberErase, AuditCardLink, AuditCardRevoke,
	AuditAdjust, AuditAdjustReverse}

// MemberAuditActionsSQL is MemberAuditActions as an SQL list of string literals, for a query's IN.
func MemberAuditActionsSQL() string {
	return "'" + strings.Join(MemberAuditActions, "', '") + "'"
}

// AuditEntry is one admin change: when, by which key, what, on what. Detail never holds a
// secret (tokens and API keys are never recorded, not even hashed).
type AuditEntry struct {
	Seq     int64     `json:"seq"`
	At      time.Time `json:"at"`
	KeyID   string    `json:"key_id"`
	KeyName string    `json:"key_name"`
	Action  string    `json:"action"`
	Target  string    `json:"target"`
	Detail  string    `json:"detail,omitempty"`
}

// hideWebhookDetails empties the detail of webhook entries, for a reader without the admin
// scope: a webhook's detail names its URL's scheme and host, which only admins see (webhooks.go),
// on the API as on the dashboard.
func hideWebhookDetails(es []AuditEntry) {
	for i := range es {
		if strings.HasPrefix(es[i].Action, "webhook.") {
			es[i].Detail = ""
		}
	}
}

// maxDetail bounds an audit detail; longer ones are cut.
const maxDetail = 500

// audit records an admin change by the context's actor in tx, the change's own transaction:
// the entry exists if and only if the change was committed.
func (h *Hub) audit(ctx context.Context, tx Tx, action, target, detail string) error {
	a := ActorFrom(ctx)
	detail = loyalty.Truncate(detail, maxDetail)
	return tx.InsertAudit(ctx, AuditEntry{At: h.Now().UTC().Truncate(time.Millisecond), KeyID: a.KeyID, KeyName: a.KeyName,
		Action: action, Target: target, Detail: detail})
}

// Audit returns up to limit audit entries, newest first.
func (h *Hub) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	return h.AuditPage(ctx, AuditQuery{Limit: limit})
}

// AuditQuery picks audit entries: the newest Limit of those older than Before (a Seq; 0: the
// newest), of one action (Action: "member.add"; or a family of them: "member.*"), by one key
// (KeyID). A page's last Seq is the next page's Before: no entry is out of reach, however many
// a busy key or a large import added since.
type AuditQuery struct {
	Before int64
	Action string
	KeyID  string
	Limit  int
}

// actions splits q's action filter into an action to match exactly, or the prefix of a family
// ("member." of "member.*"); both "" for none.
func (q AuditQuery) actions() (exact, family string) {
	if f, ok := strings.CutSuffix(q.Action, "*"); ok {
		return "", f
	}
	return q.Action, ""
}

// Where returns the conditions q's filters make, for an audit query's WHERE ("" for none), with
// their arguments, each placeholder written by place(n), n from 1: only the filters given, each a
// condition of its own, so that the planner uses the index of those given (audit_action,
// audit_key, audit_key_action) and seeks to before. A family of actions is a condition on the
// action's prefix, which no index serves: Hub.AuditPage asks for each of the family's actions
// instead.
func (q AuditQuery) Where(place func(n int) string) (string, []any) {
	var conds []string
	var args []any
	exact, family := q.actions()
	for _, f := range []struct {
		cond string
		arg  any
		set  bool
	}{
		{"seq < %s", q.Before, q.Before > 0},
		{"action = %s", exact, exact != ""},
		{"substr(action, 1, " + strconv.Itoa(len(family)) + ") = %s", family, family != ""},
		{"key_id = %s", q.KeyID, q.KeyID != ""},
	} {
		if f.set {
			args = append(args, f.arg)
			conds = append(conds, fmt.Sprintf(f.cond, place(len(args))))
		}
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// auditAction is what an action filter may hold: an action's name, or its family and ".*".
var auditAction = regexp.MustCompile(`^[a-z_]{1,32}(\.[a-z_]{1,32})?$|^[a-z_]{1,32}\.\*$`)

// AuditPage returns the audit entries q picks, newest first. It returns EINVALID.
func (h *Hub) AuditPage(ctx context.Context, q AuditQuery) ([]AuditEntry, error) {
	switch {
	case q.Limit < 1 || q.Limit > MaxAuditLimit:
		return nil, loyalty.Errorf(loyalty.EINVALID, "limit must be a whole number from 1 to %d", MaxAuditLimit)
	case q.Before < 0:
		return nil, loyalty.Errorf(loyalty.EINVALID, "before must be an entry's seq, a whole number from 1")
	case q.Action != "" && !auditAction.MatchString(q.Action):
		return nil, loyalty.Errorf(loyalty.EINVALID, "action must be an action such as member.add, or a family such as member.*")
	case q.Action != "" && !knownAuditAction(q.Action):
		return nil, loyalty.Errorf(loyalty.EINVALID, "no audit action %s; the actions are %s, or a family of them such as member.*",
			q.Action, strings.Join(AuditActions, ", "))
	case !loyalty.ValidText(q.KeyID, 64):
		return nil, loyalty.Errorf(loyalty.EINVALID, "key_id must be an API key's id (ak-…), config, cli or internal")
	}
	out := []AuditEntry{}
	err := h.Store.View(ctx, func(tx Tx) error {
		_, family := q.actions()
		if family == "" {
			var err error
			out, err = tx.Audit(ctx, q)
			return err
		}
		// A family is each of its actions, each read along its index from before, newest
		// first, and the pages merged: one condition on a prefix of the action read the whole
		// trail when the family's entries were few among many (a web shop's sign-ups).
		out = out[:0]
		for _, a := range AuditActions {
			if !strings.HasPrefix(a, family) {
				continue
			}
			one := q
			one.Action = a
			es, err := tx.Audit(ctx, one)
			if err != nil {
				return err
			}
			out = append(out, es...)
		}
		slices.SortFunc(out, func(a, b AuditEntry) int { return cmp.Compare(b.Seq, a.Seq) })
		out = out[:min(len(out), q.Limit)]
		return nil
	})
	if out == nil {
		out = []AuditEntry{}
	}
	return out, err
}

const MaxAuditLimit = 1000

// orNone returns s, or "none" if it is empty.
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// WriteOffDetail describes what a write-off returned, for its audit entry.
func WriteOffDetail(returned map[string]int64) string {
	if len(returned) == 0 {
		return "no ended lease: nothing returned"
	}
	parts := make([]string, 0, len(returned))
	for _, b := range slices.Sorted(maps.Keys(returned)) {
		parts = append(parts, fmt.Sprintf("%s %d", b, returned[b]))
	}
	return "returned to budgets: " + strings.Join(parts, ", ")
}
