package hub_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	hubsqlite "github.com/loyalty-edge-sync/loyalty/hub/sqlite"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// TestRestore_VouchersBoughtAfterTheBackup: vouchers bought online after the backup, when the
// online channel sends their purchases again to the restored hub (README, "Backup and restore"),
// are the vouchers the members hold: the same ids, so a member's code is honoured online, and a
// store's use of one, pushed after the resend, is applied. Before, each resend made a voucher
// with a new id: the member's code named nothing (ENOTFOUND online, a store's use rejected), and
// a second, unused voucher stood paid for once.
func TestRestore_VouchersBoughtAfterTheBackup(t *testing.T) {
	skipOnPostgres(t, "a backup with loyalty backup is SQLite's")
	h := openHub(t)
	ctx := context.Background()
	fund(t, h, "m1", 500)
	backup := filepath.Join(t.TempDir(), "backup.db")
	if err := h.Store.(*hubsqlite.Store).Backup(ctx, backup); err != nil {
		t.Fatal(err)
	}
	buy := []loyalty.RedeemRequest{{OrderID: "SHOP-1", MemberID: "m1", RewardID: "coffee"}, {OrderID: "SHOP-2", MemberID: "m1", RewardID: "coffee"}}
	var held []hub.Voucher
	for _, req := range buy {
		v, err := h.IssueVoucher(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, v.Voucher)
	}

	s, err := hubsqlite.Open(ctx, backup)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r := hub.New(s)
	r.KEK, r.Now, r.Logger = h.KEK, h.Now, slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := r.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Restored(ctx); err != nil {
		t.Fatal(err)
	}
	for i, req := range buy { // the web shop sends again the calls made since the backup
		v, err := r.IssueVoucher(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if v.Voucher.ID != held[i].ID {
			t.Errorf("the resent purchase %s made voucher %s; the member holds %s", req.OrderID, v.Voucher.ID, held[i].ID)
		}
	}
	if _, err := r.Redeem(ctx, loyalty.RedeemRequest{OrderID: "SHOP-3", Voucher: held[0].Token}); err != nil {
		t.Errorf("the member's code of voucher SHOP-1, online after the restore: %v", err)
	}
	use := loyalty.Delta{ID: loyalty.NewDeltaID(), Store: "s1", Member: "m1", Kind: loyalty.KindRedeem, Voucher: held[1].ID,
		Reward: "coffee", RuleVersion: 1, OccurredAt: t0}
	ack, err := r.Push(ctx, "s1", []loyalty.Delta{use})
	if err != nil {
		t.Fatal(err)
	}
	if ack.Results[0].Status != lsync.StatusApplied {
		t.Errorf("a store's use of voucher SHOP-2 after the restore: %+v; want it applied", ack.Results[0])
	}
	if b := balance(t, r, "m1"); b != 500-2*50 {
		t.Errorf("m1's balance at the restored hub: %d; want %d, two coffees paid once each", b, 500-2*50)
	}
}
