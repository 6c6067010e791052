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
