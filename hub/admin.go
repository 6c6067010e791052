// Admin: stores, members, the program, signing keys, conflicts and the ledger check, as the
// operator's API and CLI call them.

package hub

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/qr"
)

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// TokenIs reports whether token is the store's (its hash is TokenHash), in constant time.
func (s StoreInfo) TokenIs(token string) bool {
	return subtle.ConstantTimeCompare([]byte(hashToken(token)), []byte(s.TokenHash)) == 1
}

// CreateStore registers a store and returns its token. The token is shown once: the hub keeps
// only its hash.
func (h *Hub) CreateStore(ctx context.Context, id, name string) (StoreInfo, string, error) {
	return h.CreateStoreIn(ctx, id, name, "")
}

// CreateStoreIn registers a store in time zone tz (an IANA name; "" is UTC) and returns its token.
func (h *Hub) CreateStoreIn(ctx context.Context, id, name, tz string) (StoreInfo, string, error) {
	if tz == "" {
		tz = "UTC"
	}
	if _, err := time.LoadLocation(tz); err != nil || strings.EqualFold(tz, "local") {
		return StoreInfo{}, "", loyalty.Errorf(loyalty.EINVALID, "time zone %q is not an IANA time zone name such as Europe/Berlin", tz)
	}
	if err := loyalty.ValidateID("store", id); err != nil {
		return StoreInfo{}, "", err
	}
	if id == loyalty.OnlineStore || id == loyalty.HubStore {
		return StoreInfo{}, "", loyalty.Errorf(loyalty.EINVALID, "store id %q is reserved for the hub's own deltas", id)
	}
	if name == "" {
		name = id
	}
	token := rand.Text() + rand.Text()
	s := StoreInfo{ID: id, Name: name, TokenHash: hashToken(token), CreatedAt: h.Now().UTC().Truncate(time.Millisecond), TimeZone: tz}
	err := h.Store.Update(ctx, func(tx Tx) error {
		if err := tx.InsertStore(ctx, s); err != nil {
			return err
		}
		if err := tx.SetStoreZone(ctx, id, tz); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditStoreAdd, id, fmt.Sprintf("name %q, time zone %s", name, tz))
	})
	return s, token, err
}

// SetStoreZone registers a store's time zone (an IANA name such as Europe/Berlin; "" or UTC for
// UTC). Campaign days and hours of the store's sales are read in it, and the store's agent
// receives it at its next sync.
func (h *Hub) SetStoreZone(ctx context.Context, id, tz string) error {
	if tz == "" {
		tz = "UTC"
	}
	if _, err := time.LoadLocation(tz); err != nil || strings.EqualFold(tz, "local") || len(tz) > loyalty.MaxIDLength {
		return loyalty.Errorf(loyalty.EINVALID, "time zone %q is not an IANA time zone name such as Europe/Berlin", tz)
	}
	return h.update(ctx, func(tx Tx) error {
		if err := tx.SetStoreZone(ctx, id, tz); err != nil {
			return err
		}
		v, err := tx.NextVersion(ctx) // the store's agent must pull it
		if err != nil {
			return err
		}
		if err := tx.MarkStoreChanged(ctx, id, v); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditStoreTimeZone, id, "time zone "+tz)
	})
}

// RotateStoreToken issues a new token for a store; the old one stops working at once, and a
// session opened with it is ended, on whichever hub process it is (through the database's
// events, bus.go; on SQLite a rotation by the admin command, another process, takes effect at
// the store's next connection).
func (h *Hub) RotateStoreToken(ctx context.Context, id string) (string, error) {
	token := rand.Text() + rand.Text()
	err := h.Store.Update(ctx, func(tx Tx) error {
		if err := tx.SetStoreToken(ctx, id, hashToken(token)); err != nil {
			return err
		}
		if err := tx.Publish(ctx, Event{Kind: EventToken, Store: id, Owner: h.ID}); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditStoreToken, id, "new token issued; the old one stopped working")
	})
	if err == nil && h.OnTokenRotated != nil {
		h.OnTokenRotated(id)
	}
	return token, err
}

// Stores lists the stores with their sync health: as the database has it, which every hub
// process writes for the sessions it holds, and, for a store connected to this process, as this
// process saw it last (its last ping), which is fresher.
func (h *Hub) Stores(ctx context.Context) ([]StoreInfo, error) {
	var out []StoreInfo
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Stores(ctx)
		return err
	})
	h.healthMu.Lock()
	defer h.healthMu.Unlock()
	for i := range out {
		if hl, ok := h.health[out[i].ID]; ok && hl.Connected {
			out[i].Health = hl
		}
		off := time.Duration(out[i].Health.ClockOffsetMS) * time.Millisecond
		out[i].Health.ClockSkewed = max(off, -off) > MaxClockSkew
	}
	return out, err
}

// NewMember is what CreateMember answers: the member as stored after the sign-up award, and what
// became of that award.
type NewMember struct {
	loyalty.Member
	// Signup is the program's sign-up award (its action "signup"), when the program has one.
	Signup *SignupAward `json:"signup,omitempty"`
}

// SignupAward is what a new member got from the program's sign-up action.
type SignupAward struct {
	// Points are the points given: the action's, fewer if an earn cap reduced them, 0 if refused.
	Points int64 `json:"points"`
	// Refused is why no points were given (the member was created anyway): EBUDGET for a used-up
	// budget or the action's max_times, as POST /v1/actions would answer.
	Refused *loyalty.Error `json:"refused,omitempty"`
}

// CreateMember adds a member. An empty id gets a generated one. The member starts at zero points
// and is in its home store's replica scope. If the program has a signup action, the member is
// awarded it; a refused award (a used-up budget) does not undo the sign-up: the answer's Signup
// says so. Only a storage failure of the award returns an error, with the member created.
func (h *Hub) CreateMember(ctx context.Context, m loyalty.Member) (NewMember, error) {
	fail := func(err error) (NewMember, error) { return NewMember{Member: m}, err }
	if m.ID == "" {
		m.ID = "m" + strings.ToLower(rand.Text()[:12])
	}
	if err := loyalty.ValidateID("member", m.ID); err != nil {
		return fail(err)
	}
	m.Email = strings.ToLower(strings.TrimSpace(m.Email))
	if m.Email != "" {
		if err := validEmail(m.Email); err != nil { // as PATCH /v1/members/{id} checks it (care.go)
			return fail(err)
		}
	}
	if err := validName(m.Name); err != nil {
		return fail(err)
	}
	if m.ReferredBy != "" {
		ref, err := h.Member(ctx, m.ReferredBy, 0)
		if loyalty.ErrorCode(err) == loyalty.ENOTFOUND || err == nil && ref.Erased { // an erased member's code names no one
			return fail(loyalty.Errorf(loyalty.EINVALID, "referral code %q belongs to no member", m.ReferredBy))
		} else if err != nil {
			return fail(err)
		}
		if ref.ID == m.ID || ref.Email != "" && strings.EqualFold(ref.Email, strings.TrimSpace(m.Email)) {
			return fail(loyalty.Errorf(loyalty.EINVALID, "a member cannot refer themselves"))
		}
	}
	m.ReferralPaid = false
	m.Country = countryCode(m.Country)
	if m.Country != "" {
		if err := validCountry(m.Country); err != nil {
			return fail(err)
		}
	}
	if m.Birthday != "" {
		if err := loyalty.ValidateBirthday(m.Birthday, h.Now().UTC().AddDate(0, 0, 1)); err != nil { // a day of slack: time zones ahead of UTC
			return fail(err)
		}
	}
	m.Balance, m.CreatedAt = 0, h.Now().UTC().Truncate(time.Millisecond)
	err := h.update(ctx, func(tx Tx) error {
		if m.HomeStore != "" {
			if _, err := tx.StoreInfo(ctx, m.HomeStore); err != nil {
				return loyalty.Errorf(loyalty.EINVALID, "home store %q is not registered", m.HomeStore)
			}
		}
		var err error
		if m.Version, err = tx.NextVersion(ctx); err != nil {
			return err
		}
		if err := tx.InsertMember(ctx, m); err != nil {
			return err
		}
		if m.HomeStore != "" {
			if err := tx.Subscribe(ctx, m.HomeStore, m.ID); err != nil {
				return err
			}
		}
		if err := emitEvents(ctx, tx, []WebhookEvent{newWebhookEvent(EventMemberCreated, m.CreatedAt, memberCreated(m), m.ID)}); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditMemberAdd, m.ID, "home store "+orNone(m.HomeStore)) // no email or name: personal data
	})
	if err != nil {
		return fail(err)
	}
	// A program with a signup action welcomes the new member with its points. The member exists
	// either way: points a budget refuses are not given, and the answer says why.
	out := NewMember{Member: m}
	if p, perr := h.Program(ctx); perr != nil {
		return out, perr
	} else if _, aerr := p.Action(loyalty.ActionSignup); aerr == nil {
		r, err := h.Action(ctx, loyalty.ActionRequest{OrderID: loyalty.SignupOrderID(m.ID), MemberID: m.ID, Action: loyalty.ActionSignup})
		if code := loyalty.ErrorCode(err); code == loyalty.EINTERNAL {
			return out, fmt.Errorf("signup points: %w", err)
		} else if err != nil {
			h.Logger.Info("no signup points", slog.String("member", m.ID), slog.String("reason", loyalty.ErrorMessage(err)))
			out.Signup = &SignupAward{Refused: loyalty.AsError(err)}
		} else {
			out.Signup = &SignupAward{Points: r.Points}
		}
	}
	v, err := h.Member(ctx, m.ID, 0)
	out.Member = v.Member
	if err != nil {
		out.Member = m
	}
	return out, err
}

// MemberView is a member with their recent ledger.
type MemberView struct {
	loyalty.Member
	// Attributes are the operator's key/value notes on the member (UpdateMember); kept at the hub.
	Attributes map[string]string `json:"attributes,omitempty"`
	// ErasedAt is when the member's personal data was erased (EraseMember); zero if it was not.
	ErasedAt time.Time     `json:"erased_at,omitzero"`
	Ledger   []LedgerEntry `json:"ledger"`
}

// ForScope is the view a key of scope may read. An online key (the web shop, the member app: an
// edge, not the operator) reads neither the operator's notes on the member (Attributes), nor what
// an operator wrote on an adjustment (its reason, and its terminal: the operator's key id), nor
// which key made an online change (Key).
func (v MemberView) ForScope(scope Scope) MemberView {
	if scope != ScopeOnline {
		return v
	}
	v.Attributes = nil
	v.Ledger = slices.Clone(v.Ledger)
	for i := range v.Ledger {
		v.Ledger[i].Key = ""
		if v.Ledger[i].Kind == loyalty.KindAdjust {
			v.Ledger[i].Reason, v.Ledger[i].Terminal = "", ""
		}
	}
	return v
}

// Member returns a member, with their birthday, and their newest ledger entries.
func (h *Hub) Member(ctx context.Context, id string, ledger int) (MemberView, error) {
	var v MemberView
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		if v.Member, err = tx.Member(ctx, id); err != nil {
			return err
		}
		p, err := tx.MemberProfile(ctx, id)
		if err != nil {
			return err
		}
		v.Birthday, v.Attributes, v.ErasedAt = p.Birthday, p.Attributes, p.ErasedAt
		v.Ledger, err = tx.Ledger(ctx, id, ledger)
		return err
	})
	return v, err
}

// MemberToken returns a signed member QR token, valid for MemberTokenTTL.
func (h *Hub) MemberToken(ctx context.Context, id string) (string, error) {
	return h.memberToken(ctx, id, time.Time{})
}

// memberToken returns a signed member QR token that expires after MemberTokenTTL, or at notAfter
// (unless zero) if that is sooner.
func (h *Hub) memberToken(ctx context.Context, id string, notAfter time.Time) (string, error) {
	var token string
	err := h.Store.View(ctx, func(tx Tx) error {
		if m, err := tx.Member(ctx, id); err != nil {
			return err
		} else if m.Erased {
			return loyalty.Errorf(loyalty.ENOTFOUND, "member %s was erased; no member code is issued for them", id)
		}
		k, err := h.signingKey(ctx, tx)
		if err != nil {
			return err
		}
		now := h.Now()
		c := qr.Claims{Type: qr.TypeMember, Member: id, IssuedAt: now.Unix()}
		if h.MemberTokenTTL > 0 {
			c.Expires = now.Add(h.MemberTokenTTL).Unix()
		}
		if !notAfter.IsZero() && (c.Expires == 0 || notAfter.Unix() < c.Expires) {
			c.Expires = notAfter.Unix()
		}
		token, err = qr.Sign(k, c)
		return err
	})
	return token, err
}

// Program returns the current program.
func (h *Hub) Program(ctx context.Context) (loyalty.Program, error) {
	var p loyalty.Program
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		p, _, err = tx.Program(ctx)
		return err
	})
	return p, err
}

// SetProgram publishes a new version of the program. Its Version is assigned by the hub.
func (h *Hub) SetProgram(ctx context.Context, p loyalty.Program) (loyalty.Program, error) {
	return h.setProgram(ctx, p, -1)
}

// SetProgramIf publishes p as SetProgram does, only if the program in force is still version
// base: in the same transaction, so two operators who each changed what they saw never undo each
// other's change. Otherwise it returns ECONFLICT and publishes nothing.
func (h *Hub) SetProgramIf(ctx context.Context, p loyalty.Program, base int64) (loyalty.Program, error) {
	return h.setProgram(ctx, p, max(base, 0))
}

// setProgram publishes p; base < 0 publishes whatever version is in force.
func (h *Hub) setProgram(ctx context.Context, p loyalty.Program, base int64) (loyalty.Program, error) {
	if err := p.Validate(); err != nil {
		return p, err
	}
	err := h.update(ctx, func(tx Tx) error {
		cur, _, err := tx.Program(ctx)
		if err != nil {
			return err
		}
		if base >= 0 && cur.Version != base {
			return loyalty.Errorf(loyalty.ECONFLICT, "the program changed (it is version %d now, not %d) since it was read; read it again and make the change on it", cur.Version, base)
		}
		p.Version = cur.Version + 1
		v, err := tx.NextVersion(ctx)
		if err != nil {
			return err
		}
		if err := tx.InsertProgram(ctx, p, v, h.Now()); err != nil {
			return err
		}
		if err := h.reschedule(ctx, tx, &cur, &p); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditProgramPublish, "program", fmt.Sprintf("rule version %d, %d rewards%s", p.Version, len(p.Rewards), programChanges(&cur, &p)))
	})
	return p, err
}

// programChanges says, for the audit trail, what a new program p switched and changed against
// cur: the rewards and campaigns switched off or on, added or removed, and the budgets added,
// removed or given another limit. It is "" when none of that changed.
func programChanges(cur, p *loyalty.Program) string {
	var out []string
	note := func(what string, ids []string) {
		if len(ids) > 0 {
			out = append(out, what+" "+strings.Join(ids, ", "))
		}
	}
	// diff notes the ids switched, added and removed between two lists' disabled flags.
	diff := func(kind string, old, now map[string]bool) {
		var off, on, added, removed []string
		for _, id := range slices.Sorted(maps.Keys(now)) {
			was, had := old[id]
			switch {
			case !had:
				added = append(added, id)
			case !was && now[id]:
				off = append(off, id)
			case was && !now[id]:
				on = append(on, id)
			}
		}
		for _, id := range slices.Sorted(maps.Keys(old)) {
			if _, ok := now[id]; !ok {
				removed = append(removed, id)
			}
		}
		note(kind+" switched off:", off)
		note(kind+" switched on:", on)
		note(kind+" added:", added)
		note(kind+" removed:", removed)
	}
	rewards := func(p *loyalty.Program) map[string]bool {
		m := map[string]bool{}
		for _, r := range p.Rewards {
			m[r.ID] = r.Disabled
		}
		return m
	}
	campaigns := func(p *loyalty.Program) map[string]bool {
		m := map[string]bool{}
		for _, c := range p.Campaigns {
			m[c.ID] = c.Disabled
		}
		return m
	}
	diff("rewards", rewards(cur), rewards(p))
	diff("campaigns", campaigns(cur), campaigns(p))
	limits := func(p *loyalty.Program) map[string]int64 {
		m := map[string]int64{}
		for _, b := range p.Budgets {
			m[b.ID] = b.Limit
		}
		return m
	}
	was, is := limits(cur), limits(p)
	var budgets []string
	for _, id := range slices.Sorted(maps.Keys(is)) {
		if old, had := was[id]; !had {
			budgets = append(budgets, fmt.Sprintf("%s added (limit %d)", id, is[id]))
		} else if old != is[id] {
			budgets = append(budgets, fmt.Sprintf("%s limit %d to %d", id, old, is[id]))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(was)) {
		if _, ok := is[id]; !ok {
			budgets = append(budgets, id+" removed")
		}
	}
	note("budgets:", budgets)
	if len(out) == 0 {
		return ""
	}
	return "; " + strings.Join(out, "; ")
}

// reschedule makes the background jobs look at every member again when a new program changes
// the tiers or the expiry rule (jobs.go): the members' times were computed under the old rules.
// One statement per job; the runs that follow compute each member's time under the new rules.
func (h *Hub) reschedule(ctx context.Context, tx Tx, old, p *loyalty.Program) error {
	now := h.Now()
	same := func(a, b any) bool { // as published: an empty list is no list
		x, errx := json.Marshal(a)
		y, erry := json.Marshal(b)
		return errx == nil && erry == nil && string(x) == string(y)
	}
	if !same(old.Tiers, p.Tiers) {
		at := now
		if p.Tiers == nil || len(p.Tiers.Tiers) == 0 {
			at = time.Time{} // no tiers: nothing to review
		}
		if err := tx.ScheduleAll(ctx, JobTiers, at); err != nil {
			return err
		}
	}
	if !same(old.Expiry, p.Expiry) {
		at := now
		if p.Expiry == nil {
			at = time.Time{} // nothing expires
		}
		if err := tx.ScheduleAll(ctx, JobExpiry, at); err != nil {
			return err
		}
	}
	return nil
}

// RotateKey creates a new signing key. Older keys keep verifying until retired.
func (h *Hub) RotateKey(ctx context.Context) (qr.PublicKey, error) {
	var k qr.PrivateKey
	err := h.update(ctx, func(tx Tx) error {
		if err := h.insertNewKey(ctx, tx); err != nil {
			return err
		}
		var err error
		if k, err = h.signingKey(ctx, tx); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditSigningKeyRotate, k.ID, "new QR signing key")
	})
	if err != nil {
		return qr.PublicKey{}, err
	}
	return k.Public(), nil
}

// RetireKey sets the time after which tokens signed by key id are refused everywhere. The key
// the hub signs with now is not retired (EINVALID): a key being retired signs no new codes from
// that moment, whatever the time, and the hub would fall back to an older key or have none.
func (h *Hub) RetireKey(ctx context.Context, id string, at time.Time) error {
	return h.update(ctx, func(tx Tx) error {
		if k, err := tx.SigningKey(ctx); err != nil && loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
			return err
		} else if err == nil && k.ID == id {
			return loyalty.Errorf(loyalty.EINVALID, "key %s is the one new QR codes are signed with: rotate a new key in first (loyalty keys rotate), then retire this one", id)
		}
		v, err := tx.NextVersion(ctx)
		if err != nil {
			return err
		}
		if err := tx.RetireKey(ctx, id, at, v); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditSigningKeyRetire, id, "tokens it signed are refused after "+at.UTC().Format(time.RFC3339))
	})
}

func (h *Hub) insertNewKey(ctx context.Context, tx Tx) error {
	if h.KEK == nil {
		return loyalty.Errorf(loyalty.EINVALID, "the hub has no key-encryption key to seal a new signing key with: set keys.kek_file (or keys.kek)")
	}
	k, err := qr.NewKey()
	if err != nil {
		return err
	}
	v, err := tx.NextVersion(ctx)
	if err != nil {
		return err
	}
	return tx.InsertKey(ctx, h.sealKey(k), v)
}

// KeyInfo is a QR signing key as an operator sees it: its id, whether new codes are signed with
// it, and from when codes signed with it are refused (zero: not retired).
type KeyInfo struct {
	ID       string    `json:"kid"`
	Signing  bool      `json:"signing"`
	NotAfter time.Time `json:"not_after,omitzero"`
}

// Keys returns the QR signing keys, oldest first: the one that signs, and those that still
// verify codes or no longer do.
func (h *Hub) Keys(ctx context.Context) ([]KeyInfo, error) {
	out := []KeyInfo{}
	err := h.Store.View(ctx, func(tx Tx) error {
		keys, err := tx.Keys(ctx)
		if err != nil {
			return err
		}
		signing, err := tx.SigningKey(ctx)
		if err != nil && loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
			return err
		}
		out = out[:0]
		for _, k := range keys {
			out = append(out, KeyInfo{ID: k.ID, Signing: k.ID == signing.ID && signing.ID != "", NotAfter: k.NotAfter})
		}
		return nil
	})
	return out, err
}

// Conflicts returns the newest recorded conflicts.
func (h *Hub) Conflicts(ctx context.Context, limit int) ([]Conflict, error) {
	return h.ConflictsBefore(ctx, 0, limit)
}

// ConflictsBefore returns up to limit conflicts with an id below before (0: the newest), newest
// first: the page of GET /v1/conflicts that follows the one whose last id is before.
func (h *Hub) ConflictsBefore(ctx context.Context, before int64, limit int) ([]Conflict, error) {
	var out []Conflict
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Conflicts(ctx, before, limit)
		return err
	})
	return out, err
}

// Rejections returns the newest rejected deltas.
func (h *Hub) Rejections(ctx context.Context, limit int) ([]Rejection, error) {
	var out []Rejection
	err := h.Store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.Rejections(ctx, limit)
		return err
	})
	return out, err
}

// CheckReport is the result of Check.
type CheckReport struct {
	Members    int      `json:"members"`
	Points     int64    `json:"points"` // sum of all balances
	Mismatches []string `json:"mismatches"`
}

// checkRun is a Check under way, and then its report.
type checkRun struct {
	done   chan struct{} // closed when report and err are set
	report CheckReport
	err    error
}

// Check verifies that every member's balance equals the sum of their ledger, that the running
// totals the tiers are computed from (Tx.Qualifying) agree with the ledger, over the member's
// whole history, on either basis, and that the lots points expire by (Tx.Lots) do too.
//
// A check reads every member, so one runs at a time in a process: a caller that arrives while
// one runs gets its report (begun before the call) instead of starting another. It reads 1,000
// members to a read-only transaction, so that it holds a reader connection, and on SQLite the
// write-ahead log's checkpoints, for one page of members at a time rather than for the whole
// database: each member is checked against their own ledger, and their lots against it, in one
// snapshot. The lots of ids between the pages' members (lots of no member) are compared too.
func (h *Hub) Check(ctx context.Context) (CheckReport, error) {
	h.checkMu.Lock()
	run := h.checking
	joined := run != nil
	if run == nil {
		run = &checkRun{done: make(chan struct{})}
		h.checking = run
		go func() { // runs to its end for every caller sharing it, whichever of them gives up
			defer func() {
				if p := recover(); p != nil { // a bug: the callers get an error, not a crashed process
					h.Logger.Error("the consistency check panicked", slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
					run.err = fmt.Errorf("the consistency check failed: %v", p)
				}
				h.checkMu.Lock()
				h.checking = nil
				h.checkMu.Unlock()
				close(run.done)
			}()
			run.report, run.err = h.check(context.WithoutCancel(ctx))
		}()
	}
	h.checkMu.Unlock()
	if joined && h.checkHooks.joined != nil {
		h.checkHooks.joined()
	}
	select {
	case <-run.done:
		r := run.report
		r.Mismatches = slices.Clone(r.Mismatches)
		return r, run.err
	case <-ctx.Done():
		return CheckReport{}, ctx.Err()
	}
}

func (h *Hub) check(ctx context.Context) (CheckReport, error) {
	if h.checkHooks.started != nil {
		h.checkHooks.started()
	}
	const mostDrift = 1000 // lots listed that differ from the ledger, at most
	r := CheckReport{Mismatches: []string{}}
	var drift []string
	cut := false
	after := ""
	for {
		var ms []loyalty.Member
		var page CheckReport // this page's figures, kept once its transaction is done (a retried one starts again)
		var pageDrift []string
		err := h.Store.View(ctx, func(tx Tx) error {
			var err error
			page, pageDrift = CheckReport{}, nil
			if ms, err = tx.Members(ctx, after, 1000); err != nil {
				return err
			}
			for _, m := range ms {
				sum, err := tx.LedgerSum(ctx, m.ID)
				if err != nil {
					return err
				}
				page.Members++
				page.Points += m.Balance
				if sum != m.Balance {
					page.Mismatches = append(page.Mismatches, fmt.Sprintf("%s: balance %d, ledger %d", m.ID, m.Balance, sum))
				}
				for _, basis := range []string{loyalty.BasisSpend, loyalty.BasisPoints} {
					kept, err := tx.Qualifying(ctx, m.ID, basis, time.Time{}, time.Time{})
					if err != nil {
						return err
					}
					scan, err := tx.QualifyingFromLedger(ctx, m.ID, basis, time.Time{}, time.Time{})
					if err != nil {
						return err
					}
					if kept.Total != scan.Total || !kept.First.Equal(scan.First) || !kept.Next.Equal(scan.Next) {
						page.Mismatches = append(page.Mismatches, fmt.Sprintf("%s: qualifying %s %+v, ledger %+v", m.ID, basis, kept, scan))
					}
				}
			}
			if cut {
				return nil
			}
			// The lots of the page's members, in the same snapshot: the ids after the page before,
			// up to the page's last (the last page, with no members, has no upper bound: it finds
			// lots of ids past every member).
			last := ""
			if len(ms) > 0 {
				last = ms[len(ms)-1].ID
			}
			pageDrift, err = tx.LotsDrift(ctx, after, last, mostDrift-len(drift)+1)
			return err
		})
		if err != nil {
			return r, err
		}
		r.Members, r.Points, r.Mismatches = r.Members+page.Members, r.Points+page.Points, append(r.Mismatches, page.Mismatches...)
		if drift = append(drift, pageDrift...); len(drift) > mostDrift {
			drift, cut = drift[:mostDrift], true
		}
		if len(ms) == 0 {
			break
		}
		after = ms[len(ms)-1].ID
	}
	if cut {
		drift = append(drift, fmt.Sprintf("more lots differ from the ledger than the %d listed", mostDrift))
	}
	r.Mismatches = append(r.Mismatches, drift...)
	return r, nil
}
