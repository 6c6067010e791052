// Set-based ingest: a pushed batch's new deltas go into the ledger together, a few statements for
// the batch (Tx.InsertDeltas) rather than one each.

package hub

import (
	"context"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// A pushed batch's applier keeps the deltas it accepts in memory (pending) and inserts them at
// once (flush): in finish, or as soon as anything reads what they would change. Every Tx method
// that reads the ledger or what its inserts keep (the qualifying totals) goes through batchTx,
// which flushes first, so that the applier's reads see its own deltas exactly as if each had been
// inserted when it was applied. The hub's own deltas of the batch (tier changes, and a job's
// expiries) wait with the rest, in the order they were made, and a delta inserted on its own
// flushes first, so that sequence numbers keep the order of apply.
// TestBatchTxFlushesEveryLedgerRead checks that every storage method whose statements touch
// those tables is here.
//
// What the applier learns only from the insert, a delta's sequence number, it fills in after the
// flush (applyBatch); a duplicate of a pending delta in the same batch flushes to learn it.

// pendingDelta is an accepted delta waiting for its insert.
type pendingDelta = NewDelta

// deferInserts makes the applier keep the deltas it accepts for one insert at the batch's end.
func (a *applier) deferInserts() {
	a.base = a.tx
	a.tx = batchTx{Tx: a.tx, a: a}
}

// insert adds an accepted delta to the ledger, or to the pending ones (then its sequence number
// is 0 until the flush).
func (a *applier) insert(ctx context.Context, d loyalty.Delta, hash string) (int64, bool, error) {
	if a.base == nil {
		return a.tx.InsertDelta(ctx, d, hash, a.Now())
	}
	a.pending = append(a.pending, pendingDelta{Delta: d, Hash: hash, ReceivedAt: a.Now()})
	if d.Kind == loyalty.KindTier {
		a.pendingTier = true
	}
	return 0, true, nil
}

// flush inserts the pending deltas.
func (a *applier) flush(ctx context.Context) error {
	if len(a.pending) == 0 {
		return nil
	}
	seqs, err := a.base.InsertDeltas(ctx, a.pending)
	if err != nil {
		return err
	}
	for i, p := range a.pending {
		a.inserted[p.Delta.ID] = DeltaRef{Seq: seqs[i], Hash: p.Hash}
	}
	a.pending, a.pendingTier = a.pending[:0], false
	return nil
}

// batchTx is a pushed batch's Tx: reads of the ledger flush the pending deltas first.
type batchTx struct {
	Tx
	a *applier
}

// TierChanges reads tier deltas only: pending ones are a store's, never tier changes, unless a
// hub batch holds one.
func (t batchTx) TierChanges(ctx context.Context, member string, until time.Time, limit int) ([]TierChange, error) {
	if t.a.pendingTier {
		if err := t.a.flush(ctx); err != nil {
			return nil, err
		}
	}
	return t.Tx.TierChanges(ctx, member, until, limit)
}

func (t batchTx) InsertDelta(ctx context.Context, d loyalty.Delta, hash string, at time.Time) (int64, bool, error) {
	if err := t.a.flush(ctx); err != nil {
		return 0, false, err
	}
	return t.Tx.InsertDelta(ctx, d, hash, at)
}

func (t batchTx) InsertDeltas(ctx context.Context, ds []NewDelta) ([]int64, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.InsertDeltas(ctx, ds)
}

func (t batchTx) NewEpoch(ctx context.Context, at time.Time) (int64, error) {
	if err := t.a.flush(ctx); err != nil {
		return 0, err
	}
	return t.Tx.NewEpoch(ctx, at)
}

func (t batchTx) Delta(ctx context.Context, id string) (LedgerEntry, error) {
	if err := t.a.flush(ctx); err != nil {
		return LedgerEntry{}, err
	}
	return t.Tx.Delta(ctx, id)
}

func (t batchTx) DeltaHashes(ctx context.Context, ids []string) (map[string]DeltaRef, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.DeltaHashes(ctx, ids)
}

func (t batchTx) Ledger(ctx context.Context, member string, limit int) ([]LedgerEntry, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Ledger(ctx, member, limit)
}

func (t batchTx) LedgerSum(ctx context.Context, member string) (int64, error) {
	if err := t.a.flush(ctx); err != nil {
		return 0, err
	}
	return t.Tx.LedgerSum(ctx, member)
}

func (t batchTx) ReversalOf(ctx context.Context, id string) (string, error) {
	if err := t.a.flush(ctx); err != nil {
		return "", err
	}
	return t.Tx.ReversalOf(ctx, id)
}

func (t batchTx) Reversals(ctx context.Context, id string) ([]LedgerEntry, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Reversals(ctx, id)
}

func (t batchTx) OrderDeltas(ctx context.Context, store, orderID string) ([]LedgerEntry, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.OrderDeltas(ctx, store, orderID)
}

func (t batchTx) VoucherUses(ctx context.Context, voucher string) ([]string, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.VoucherUses(ctx, voucher)
}

func (t batchTx) OpenVouchers(ctx context.Context, member string, now time.Time, limit int) ([]Voucher, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.OpenVouchers(ctx, member, now, limit)
}

func (t batchTx) Charges(ctx context.Context, delta string) ([]Charge, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Charges(ctx, delta)
}

func (t batchTx) MemberRedemptions(ctx context.Context, member, reward string, since, until time.Time) (int64, error) {
	if err := t.a.flush(ctx); err != nil {
		return 0, err
	}
	return t.Tx.MemberRedemptions(ctx, member, reward, since, until)
}

func (t batchTx) MemberEarned(ctx context.Context, member, rule string, since, until time.Time) (int64, error) {
	if err := t.a.flush(ctx); err != nil {
		return 0, err
	}
	return t.Tx.MemberEarned(ctx, member, rule, since, until)
}

func (t batchTx) Qualifying(ctx context.Context, member, basis string, since, until time.Time) (Qualification, error) {
	if err := t.a.flush(ctx); err != nil {
		return Qualification{}, err
	}
	return t.Tx.Qualifying(ctx, member, basis, since, until)
}

func (t batchTx) QualifyingOf(ctx context.Context, members []string, basis string, since, until time.Time) (map[string]Qualification, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.QualifyingOf(ctx, members, basis, since, until)
}

func (t batchTx) QualifyingFromLedger(ctx context.Context, member, basis string, since, until time.Time) (Qualification, error) {
	if err := t.a.flush(ctx); err != nil {
		return Qualification{}, err
	}
	return t.Tx.QualifyingFromLedger(ctx, member, basis, since, until)
}

func (t batchTx) RuleCount(ctx context.Context, member, rule string, since, until time.Time) (int64, error) {
	if err := t.a.flush(ctx); err != nil {
		return 0, err
	}
	return t.Tx.RuleCount(ctx, member, rule, since, until)
}

func (t batchTx) Lots(ctx context.Context, member string, since time.Time) ([]loyalty.Lot, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.Lots(ctx, member, since)
}

func (t batchTx) LotsOf(ctx context.Context, members []string, since time.Time) (map[string][]loyalty.Lot, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.LotsOf(ctx, members, since)
}

func (t batchTx) LotsDrift(ctx context.Context, after, last string, most int) ([]string, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.LotsDrift(ctx, after, last, most)
}

func (t batchTx) LedgerHead(ctx context.Context) (int64, error) {
	if err := t.a.flush(ctx); err != nil {
		return 0, err
	}
	return t.Tx.LedgerHead(ctx)
}

func (t batchTx) MembersAfter(ctx context.Context, seq int64, members []string) ([]string, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.MembersAfter(ctx, seq, members)
}

// The reports' reads (reports.go) never run in a pushed batch; they flush all the same, so that
// no read of the ledger can miss a batch's own deltas.

func (t batchTx) ReportActivity(ctx context.Context, q ReportQuery, byStore bool) ([]Activity, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.ReportActivity(ctx, q, byStore)
}

func (t batchTx) ReportMonths(ctx context.Context, q ReportQuery) ([]MonthActivity, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.ReportMonths(ctx, q)
}

func (t batchTx) ReportCohorts(ctx context.Context, q ReportQuery) ([]CohortMonth, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.ReportCohorts(ctx, q)
}

func (t batchTx) ReportSales(ctx context.Context, q ReportQuery, byStore bool) ([]SalesTotal, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.ReportSales(ctx, q, byStore)
}

// Member care (care.go) reads and rewrites the ledger; no push calls it, but its reads flush too.

func (t batchTx) EraseMember(ctx context.Context, id string, at time.Time, version int64) error {
	if err := t.a.flush(ctx); err != nil {
		return err
	}
	return t.Tx.EraseMember(ctx, id, at, version)
}

func (t batchTx) LedgerAfter(ctx context.Context, member string, after int64, limit int) ([]LedgerEntry, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.LedgerAfter(ctx, member, after, limit)
}

func (t batchTx) MemberRecords(ctx context.Context, member string) (MemberRecords, error) {
	if err := t.a.flush(ctx); err != nil {
		return MemberRecords{}, err
	}
	return t.Tx.MemberRecords(ctx, member)
}

func (t batchTx) LedgerPage(ctx context.Context, from, to time.Time, after int64, limit int) ([]LedgerEntry, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.LedgerPage(ctx, from, to, after, limit)
}

func (t batchTx) ImportedMembers(ctx context.Context, importID string, members []string) (map[string]bool, error) {
	if err := t.a.flush(ctx); err != nil {
		return nil, err
	}
	return t.Tx.ImportedMembers(ctx, importID, members)
}
