package agent_test

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// An erasure at the hub reaches the store at its next pull: the replica's copy loses the
// member's name and email, keeps the balance, and the member's QR codes are refused.
func TestErasedMember_CodesRefusedPersonalDataDropped(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	token := ta.token(t, "m1")
	if r := ta.scan(t, "m1"); r.Member.Name != "Ann" {
		t.Fatalf("before the erasure the scan shows %+v", r.Member)
	}
	if err := ta.store.ApplyChanges(ctx, &lsync.Changes{Cursor: 11,
		Members: []loyalty.Member{{ID: "m1", Balance: 120, Version: 6, Erased: true}}}); err != nil {
		t.Fatal(err)
	}
	var m loyalty.Member
	err := ta.store.View(ctx, func(tx agent.Tx) error {
		var err error
		m, err = tx.Member(ctx, "m1")
		return err
	})
	if err != nil || m.Name != "" || m.Email != "" || !m.Erased || m.Balance != 120 {
		t.Fatalf("the replica's copy after the erasure: %+v, %v", m, err)
	}
	_, err = ta.Scan(ctx, agent.ScanRequest{QR: token})
	if loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("scan of an erased member's code: %v, want ENOTFOUND", err)
	}
	_, err = ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o-erased", QR: token, Amount: 1000, Currency: "EUR"})
	if loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("earn with an erased member's code: %v, want ENOTFOUND", err)
	}
	// Another member's code still works.
	if _, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o-other", QR: ta.token(t, "m9"), Amount: 1000, Currency: "EUR"}); err != nil {
		t.Errorf("earn for a member the replica does not hold: %v", err)
	}
}

// An erasure leaves nothing of the member's personal data in the replica's files: not in the
// pages' free space (the copy is overwritten with secure_delete), not in the WAL's older frames
// (it is emptied into the file once the erased copy is committed), before or after the replica
// is closed.
func TestErasedMember_NothingLeftInTheFiles(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	email, name := "grace.qzxhopper.4411@example.org", "Grace Qzxhopper"
	if err := ta.store.ApplyChanges(ctx, &lsync.Changes{Cursor: 11,
		Members: []loyalty.Member{{ID: "m7", Email: email, Name: name, Balance: 10, Version: 6}}}); err != nil {
		t.Fatal(err)
	}
	left := func() string {
		t.Helper()
		for _, suffix := range []string{"", "-wal"} {
			b, err := os.ReadFile(ta.path + suffix)
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte(email)) || bytes.Contains(b, []byte(name)) {
				return "agent.db" + suffix
			}
		}
		return ""
	}
	if err := ta.store.ApplyChanges(ctx, &lsync.Changes{Cursor: 12,
		Members: []loyalty.Member{{ID: "m7", Balance: 10, Version: 7, Erased: true}}}); err != nil {
		t.Fatal(err)
	}
	// The WAL is emptied in the background, once the erased copy is committed.
	biWaitFor(t, "the files to hold nothing of the erased member", func() bool { return left() == "" })
	// A later copy of the erased member (a new balance) erases nothing more, and changes nothing.
	if err := ta.store.ApplyChanges(ctx, &lsync.Changes{Cursor: 13,
		Members: []loyalty.Member{{ID: "m7", Balance: 20, Version: 8, Erased: true}}}); err != nil {
		t.Fatal(err)
	}
	ta.store.Close()
	if f := left(); f != "" {
		t.Errorf("once the replica is closed, %s holds the erased member's email or name", f)
	}
}

// TestErasedMember_RetryGetsTheFirstAnswer: a sale recorded with a member's code before the
// store pulled their erasure, retried unchanged afterwards, gets its first answer: the sale was
// made, and the POS must be able to tell. A new sale with the code is refused. Before, the
// erasure was checked ahead of the order's stored answer: the retry was ENOTFOUND.
func TestErasedMember_RetryGetsTheFirstAnswer(t *testing.T) {
	ta := newTestAgent(t)
	ctx := context.Background()
	token := ta.token(t, "m1")
	req := loyalty.EarnRequest{OrderID: "o1", QR: token, Amount: 1000, Currency: "EUR"}
	first, err := ta.Earn(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := ta.store.ApplyMember(ctx, &loyalty.Member{ID: "m1", Balance: 120, Version: 6, Erased: true}); err != nil {
		t.Fatal(err)
	}
	again, err := ta.Earn(ctx, req)
	if err != nil || len(again.Deltas) != 1 || again.Deltas[0] != first.Deltas[0] || !again.Replayed {
		t.Fatalf("retry of a recorded sale after the erasure synced: %+v, %v; want the first answer (delta %s)", again, err, first.Deltas[0])
	}
	if _, err := ta.Earn(ctx, loyalty.EarnRequest{OrderID: "o2", QR: token, Amount: 1000, Currency: "EUR"}); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("a new sale with the erased member's code: %v, want ENOTFOUND", err)
	}
}

// TestErasedMember_RefusedByAConnectedStoreThatDidNotHoldThem: a connected store that never held
// a member erased at the hub is shown their code (signed before the erasure, unexpired). The
// scan's, the earn's and the redemption's lookups at the hub bring the erased copy in, and the
// call is refused, as the hub's own online channel refuses it. Before, the erasure was checked before
// the lookup, against a replica without the member: the sale was recorded, "checked by the hub".
func TestErasedMember_RefusedByAConnectedStoreThatDidNotHoldThem(t *testing.T) {
	sp, _ := onlinePair(t, func(p *loyalty.Program) {})
	ctx := context.Background()
	if _, err := sp.hub.CreateMember(ctx, loyalty.Member{ID: "m9", HomeStore: "s2"}); err != nil {
		t.Fatal(err)
	}
	code := mustToken(t, sp.hub, "m9") // the member's app showed it before the erasure
	if _, err := sp.hub.EraseMember(ctx, "m9"); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.hub.Earn(ctx, loyalty.EarnRequest{OrderID: "web-1", QR: code, Amount: 1000, Currency: "EUR"}); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Fatalf("the hub's online channel: %v, want ENOTFOUND", err)
	}
	if r, err := sp.agent.Scan(ctx, agent.ScanRequest{QR: code}); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("a scan at the store: %+v, %v; want ENOTFOUND", r, err)
	}
	if rc, err := sp.agent.Earn(ctx, loyalty.EarnRequest{OrderID: "e1", QR: code, Amount: 1000, Currency: "EUR"}); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("a sale at the store: %+v, %v; want ENOTFOUND", rc, err)
	}
	if rc, err := sp.agent.Redeem(ctx, loyalty.RedeemRequest{OrderID: "r1", QR: code, RewardID: "coffee"}); loyalty.ErrorCode(err) != loyalty.ENOTFOUND {
		t.Errorf("a redemption at the store: %+v, %v; want ENOTFOUND", rc, err)
	}
}
