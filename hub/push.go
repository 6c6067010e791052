// Pushes: a store's deltas deduplicated and applied exactly once, in one transaction per batch
// (apply.go), or quarantined when the hub cannot take them; batches pushed at the same moment by
// several stores share one transaction and one commit (group commit, group.go).

package hub

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/loyalty-edge-sync/loyalty"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// Push implements lsync.Handler: the batch is applied in one transaction, which it may share with
// other stores' batches and other sessions' writes made at the same moment (group commit,
// group.go), and the Ack comes after that transaction committed. If the shared transaction
// fails, the batch is applied alone; if that fails, its deltas are applied one at a time, and one
// that fails on its own twice, while a transaction of nothing between the two succeeds, is set
// aside as a rejection (EINTERNAL) for an operator, so it cannot stall the store's outbox behind
// it. The rejection keeps the whole delta: nothing is lost. When storage fails every transaction,
// the push fails and the store sends it again later.
func (h *Hub) Push(ctx context.Context, store string, deltas []loyalty.Delta) (*lsync.Ack, error) {
	if len(deltas) == 0 {
		return h.pushAlone(ctx, store, deltas)
	}
	p := &groupPush{store: store, deltas: deltas}
	err := h.grouped(ctx, p, nil, func(ctx context.Context) error {
		var err error
		p.ack, err = h.pushAlone(ctx, store, deltas)
		return err
	})
	if err != nil {
		return nil, err
	}
	h.countAck(p.ack) // metrics.go
	return p.ack, nil
}

// pushAlone applies one store's batch in a transaction of its own; if that fails, one delta at a
// time (Push).
func (h *Hub) pushAlone(ctx context.Context, store string, deltas []loyalty.Delta) (*lsync.Ack, error) {
	ack, err := h.push(ctx, store, deltas)
	if err == nil || len(deltas) == 0 || ctx.Err() != nil {
		return ack, err
	}
	h.Logger.Warn("a push failed; applying its deltas one at a time", slog.String("store", store), slog.Any("err", err))
	ack = &lsync.Ack{Results: make([]lsync.Result, 0, len(deltas)), Balances: []lsync.Balance{}}
	for _, d := range deltas {
		one, err := h.push(ctx, store, []loyalty.Delta{d})
		if err != nil && ctx.Err() == nil {
			// Storage that fails every transaction (down, or out of reach) is no reason to set a
			// delta aside: the rejection is final, and a good sale would never count. A
			// transaction of nothing tells the two apart; the store pushes again later.
			if perr := h.update(ctx, func(Tx) error { return nil }); perr != nil {
				return nil, err
			}
			one, err = h.push(ctx, store, []loyalty.Delta{d})
		}
		if err != nil && ctx.Err() == nil {
			h.Logger.Error("delta set aside: it cannot be applied", slog.String("store", store), slog.String("delta", d.ID), slog.Any("err", err))
			one, err = h.quarantine(ctx, store, d)
		}
		if err != nil {
			return nil, err // storage is down: the store retries the whole push later
		}
		ack.Results = append(ack.Results, one.Results...)
		ack.Balances = append(ack.Balances, one.Balances...)
	}
	return ack, nil
}

// quarantine records a delta that cannot be applied as a rejection, in a transaction of its own.
func (h *Hub) quarantine(ctx context.Context, store string, d loyalty.Delta) (*lsync.Ack, error) {
	var r lsync.Result
	err := h.update(ctx, func(tx Tx) error {
		var err error
		r, err = h.newApplier(tx).reject(ctx, store, d, d.Hash(), loyalty.Errorf(loyalty.EINTERNAL,
			"the hub could not apply this change (an internal error; the details are in the hub's log); it is set aside for an operator"))
		return err
	})
	return &lsync.Ack{Results: []lsync.Result{r}, Balances: []lsync.Balance{}}, err
}

// push applies one store's batch in a transaction of its own.
func (h *Hub) push(ctx context.Context, store string, deltas []loyalty.Delta) (*lsync.Ack, error) {
	var ack *lsync.Ack
	err := h.update(ctx, func(tx Tx) error {
		var err error
		ack, err = h.applyBatch(ctx, tx, store, deltas)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ack, nil
}

// applyBatch applies one store's batch in tx, with an applier of its own, and returns its Ack.
func (h *Hub) applyBatch(ctx context.Context, tx Tx, store string, deltas []loyalty.Delta) (*lsync.Ack, error) {
	a := h.newApplier(tx)
	a.deferInserts() // the batch's new deltas go into the ledger together (batch.go)
	if err := a.prepare(ctx, deltas); err != nil {
		return nil, err
	}
	ack := &lsync.Ack{}
	var err error
	if ack.Results, err = a.applyAll(ctx, store, deltas); err != nil {
		return nil, err
	}
	balances, err := a.finish(ctx) // finish inserts what is pending first
	if err != nil {
		return nil, err
	}
	a.seqs(deltas, ack.Results)
	told, err := a.ackBalances(ctx, []string{store}, [][]loyalty.Delta{deltas}, [][]lsync.Result{ack.Results}, balances)
	if err != nil {
		return nil, err
	}
	ack.Balances = told[0]
	return ack, nil
}

// ackBalances returns the balances each push of a transaction is told (stores[i] pushed deltas[i]
// and was answered results[i]): of all the members the transaction changed or reported
// (balances), those of the push's own deltas that were applied or were duplicates, and that the
// store holds in its scope after the push. Others the transaction changed (a referrer credited by
// the store's sale, the members of other stores' pushes in a group) are not the store's to know,
// nor is the balance of a member it made a change for without holding them (a sale a store could
// invent); if it holds them, the change feed brings them. Pairs the applier did not see in a
// scope are read in one query.
func (a *applier) ackBalances(ctx context.Context, stores []string, deltas [][]loyalty.Delta, results [][]lsync.Result,
	balances []lsync.Balance) ([][]lsync.Balance, error) {
	byMember := make(map[string]lsync.Balance, len(balances))
	for _, b := range balances {
		byMember[b.Member] = b
	}
	out := make([][]lsync.Balance, len(stores))
	var ask [][2]string
	for i, store := range stores {
		out[i] = []lsync.Balance{}
		told := make(map[string]bool)
		for k, r := range results[i] {
			m := deltas[i][k].Member
			if (r.Status != lsync.StatusApplied && r.Status != lsync.StatusDuplicate) || told[m] ||
				deltas[i][k].Kind == loyalty.KindSale { // counted apart from the ledger: no member's balance
				continue
			}
			if b, ok := byMember[m]; ok {
				out[i] = append(out[i], b)
				told[m] = true
				if key := [2]string{store, m}; !a.subscribed[key] {
					ask = append(ask, key)
				}
			}
		}
	}
	if len(ask) == 0 {
		return out, nil
	}
	in, err := a.tx.InScope(ctx, ask)
	if err != nil {
		return nil, err
	}
	for key := range in {
		a.subscribed[key] = true
	}
	for i, store := range stores {
		out[i] = slices.DeleteFunc(out[i], func(b lsync.Balance) bool { return !a.subscribed[[2]string{store, b.Member}] })
	}
	return out, nil
}

// groupPush is a store's push in a group (group.go), and its Ack once applied.
type groupPush struct {
	store  string
	deltas []loyalty.Delta
	ack    *lsync.Ack // set by each attempt
}

// applyPushes applies several stores' pushes, next to each other in a group, as one batch: one
// applier, so the ledger inserts, the members' reads and writes, their new versions, their
// qualifying totals and the stores' new scope rows are a few statements for the whole group
// instead of a few for each push. In a reconnect storm (a thousand stores, each pushing a few
// dozen deltas at once) those per-push statements cost the hub more than the deltas themselves.
// The deltas are applied in the group's order, each seeing what the ones before it did, exactly as
// in one store's batch: a tier claim is checked against the tier history as it stood before the
// batch, and a member's tier is worked out once, after all of them (one tier delta for the net
// change). A store gains nothing by it it could not have by pushing one batch of its own. Each
// push's Ack has the results of its own deltas and the balances of the members its applied or
// duplicate deltas are for, as the whole group left them (a later version than the push alone
// would give: the same member state the feed gives). A member the batch changed for no delta of
// the push, a referrer credited by its sale, is in no ack: the feed brings them.
func (h *Hub) applyPushes(ctx context.Context, tx Tx, pushes []*groupPush) error {
	if len(pushes) == 1 {
		ack, err := h.applyBatch(ctx, tx, pushes[0].store, pushes[0].deltas)
		pushes[0].ack = ack
		return err
	}
	a := h.newApplier(tx)
	a.deferInserts()
	var all []loyalty.Delta
	for _, p := range pushes {
		all = append(all, p.deltas...)
	}
	if err := a.prepare(ctx, all); err != nil {
		return err
	}
	if err := a.prepareStores(ctx, pushes); err != nil {
		return err
	}
	results := make([][]lsync.Result, len(pushes))
	for i, p := range pushes {
		var err error
		if results[i], err = a.applyAll(ctx, p.store, p.deltas); err != nil {
			return err
		}
	}
	balances, err := a.finish(ctx)
	if err != nil {
		return err
	}
	stores, deltas := make([]string, len(pushes)), make([][]loyalty.Delta, len(pushes))
	for i, p := range pushes {
		a.seqs(p.deltas, results[i])
		stores[i], deltas[i] = p.store, p.deltas
	}
	told, err := a.ackBalances(ctx, stores, deltas, results, balances)
	if err != nil {
		return err
	}
	for i, p := range pushes {
		p.ack = &lsync.Ack{Results: results[i], Balances: told[i]}
	}
	return nil
}

// prepareStores reads at once what applying a group's pushes reads of each store: the store
// (claims.go: storeInfo) and the rule versions it was sent from each version its deltas name on
// (checkVersion), one query each for the group, or one per rule version named, where a group of
// a hundred stores' single sales would otherwise make two queries a store. A store that is not
// found is left to the per-delta path, which refuses its deltas.
func (a *applier) prepareStores(ctx context.Context, pushes []*groupPush) error {
	var stores []string
	seen := make(map[string]bool, len(pushes))
	byVersion := make(map[int64][]string) // the stores whose deltas name each version
	wanted := make(map[sentKey]bool)
	for _, p := range pushes {
		if !storableKey(p.store) {
			continue
		}
		if !seen[p.store] {
			seen[p.store] = true
			stores = append(stores, p.store)
		}
		for _, d := range p.deltas {
			if (d.Kind != loyalty.KindEarn && d.Kind != loyalty.KindRedeem) || d.RuleVersion <= 0 {
				continue
			}
			if k := (sentKey{p.store, d.RuleVersion}); !wanted[k] {
				wanted[k] = true
				byVersion[d.RuleVersion] = append(byVersion[d.RuleVersion], p.store)
			}
		}
	}
	if len(stores) < 2 {
		return nil // one store's deltas read it as cheaply
	}
	infos, err := a.tx.StoresInfo(ctx, stores)
	if err != nil {
		return err
	}
	maps.Copy(a.stores, infos)
	if a.sent == nil {
		a.sent = make(map[sentKey][]SentProgram)
	}
	for v, stores := range byVersion {
		sent, err := a.tx.ProgramsSentTo(ctx, stores, v, 2) // as checkVersion reads them
		if err != nil {
			return err
		}
		for _, s := range stores {
			a.sent[sentKey{s, v}] = sent[s]
		}
	}
	return nil
}

// applyAll applies a store's deltas in order and returns their results.
func (a *applier) applyAll(ctx context.Context, store string, deltas []loyalty.Delta) ([]lsync.Result, error) {
	results := make([]lsync.Result, 0, len(deltas))
	for _, d := range deltas {
		r, err := a.apply(ctx, store, d)
		if err != nil {
			return nil, fmt.Errorf("delta %s: %w", d.ID, err)
		}
		results = append(results, r)
	}
	return results, nil
}

// seqs gives the applied results of deltas, whose deltas were inserted with the batch (after
// their result was made), their sequence numbers. A sale is counted apart from the ledger
// (sales.go) and has none: another store's delta of the group may have its id.
func (a *applier) seqs(deltas []loyalty.Delta, results []lsync.Result) {
	for i, r := range results {
		if r.Status == lsync.StatusApplied && r.Seq == 0 && deltas[i].Kind != loyalty.KindSale {
			results[i].Seq = a.inserted[r.DeltaID].Seq
		}
	}
}
