package sqlite

import (
	"context"
	"encoding/json"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
)

// What the replica keeps and for how long: members' last-seen times, eviction, the unsubscribes
// waiting for the hub, and the pruning of acknowledged deltas and POS answers. The agent decides
// when (agent/maintain.go); these only find and delete rows, a bounded number per call.

// touchSlack is how old a member's last-seen time may be left: a scan of a member seen within
// it writes nothing, so scans do not cost a commit each.
const touchSlack = time.Hour

func (t *tx) Touch(ctx context.Context, member string, at time.Time) error {
	_, err := t.ExecContext(ctx, `UPDATE members SET seen_at = ? WHERE id = ? AND seen_at < ?`,
		at.UnixMilli(), member, at.Add(-touchSlack).UnixMilli())
	return err
}

func (t *tx) StampUnseen(ctx context.Context, at time.Time, limit int) (int64, error) {
	res, err := t.ExecContext(ctx, `UPDATE members SET seen_at = ? WHERE id IN (SELECT id FROM members WHERE seen_at = 0 LIMIT ?+0)`,
		at.UnixMilli(), limit)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// Evict implements agent.Tx. A member with a pending delta, or an acknowledged one that the copy
// does not include yet (hub_version > 0), stays: dropping the copy would change what the store
// counts for them. Their other deltas stay in the ledger (PruneOrders decides about those), so
// limits and caps still count them; without a copy, what the store shows of the member is what
// it shows of one it never saw: its own pending deltas.
func (t *tx) Evict(ctx context.Context, before, at time.Time, limit int) ([]string, error) {
	ids, err := t.Strings(ctx, `SELECT m.id FROM members m WHERE m.seen_at > 0 AND m.seen_at < ?
		AND NOT EXISTS (SELECT 1 FROM deltas d WHERE d.member = m.id AND d.state = 'pending')
		AND NOT EXISTS (SELECT 1 FROM deltas d WHERE d.member = m.id AND d.hub_version > 0)
		ORDER BY m.seen_at LIMIT ?+0`, before.UnixMilli(), limit)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if _, err := t.ExecContext(ctx, `DELETE FROM members WHERE id = ?`, id); err != nil {
			return nil, err
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO unsubscribes (member, at) VALUES (?, ?)
			ON CONFLICT (member) DO UPDATE SET at = excluded.at`, id, at.UnixMilli()); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func (t *tx) Unsubscribes(ctx context.Context, limit int) ([]agent.Evicted, error) {
	rows, err := t.QueryContext(ctx, `SELECT member, at FROM unsubscribes ORDER BY at, member LIMIT ?+0`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []agent.Evicted
	for rows.Next() {
		var e agent.Evicted
		var at int64
		if err := rows.Scan(&e.Member, &at); err != nil {
			return nil, err
		}
		e.At = time.UnixMilli(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Unsubscribed implements agent.Tx. A member evicted again since (a newer time) keeps its row,
// for the next unsubscribe. Came back: a copy in the replica (a lookup, or a feed page the hub
// had sent before it took the unsubscribe), or a delta the copy does not include (pending, or
// acknowledged while the store had no copy), which the hub may have applied, putting the member
// back in the scope, before it took the unsubscribe.
func (t *tx) Unsubscribed(ctx context.Context, done []agent.Evicted) ([]string, error) {
	var back []string
	for _, e := range done {
		if _, err := t.ExecContext(ctx, `DELETE FROM unsubscribes WHERE member = ? AND at = ?`, e.Member, e.At.UnixMilli()); err != nil {
			return nil, err
		}
		var came bool
		err := t.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM members WHERE id = ?1)
			OR EXISTS (SELECT 1 FROM deltas WHERE member = ?1 AND state = 'pending')
			OR EXISTS (SELECT 1 FROM deltas WHERE member = ?1 AND hub_version > 0)`, e.Member).Scan(&came)
		if err != nil {
			return nil, err
		}
		if came {
			back = append(back, e.Member)
		}
	}
	return back, nil
}

func (t *tx) DropCopy(ctx context.Context, member string) (bool, error) {
	res, err := t.ExecContext(ctx, `DELETE FROM members WHERE id = ?1
		AND NOT EXISTS (SELECT 1 FROM deltas d WHERE d.member = ?1 AND d.state = 'pending' AND d.body ->> '$.presence' != '')`, member)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (t *tx) ForgetResults(ctx context.Context, before time.Time, limit int) (int64, error) {
	res, err := t.ExecContext(ctx, `UPDATE pos_requests SET response = '' WHERE (op, order_id) IN
		(SELECT op, order_id FROM pos_requests WHERE response != '' AND at < ? LIMIT ?+0)`, before.UnixMilli(), limit)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// prunedSpend is what pruned deltas spent of the lease ?1, to add to its deltas' spending.
const prunedSpend = `COALESCE((SELECT amount FROM lease_pruned WHERE lease = ?1), 0)`

// PruneOrders implements agent.Tx. It goes through acknowledged deltas in local order, and
// deletes an order only whole: a reversal without the delta it reverses, or the other way round,
// would count wrongly in limits and caps, and a refund needs the order's deltas.
func (t *tx) PruneOrders(ctx context.Context, p agent.Prune, after int64, limit int) (agent.Pruned, error) {
	out := agent.Pruned{Next: after}
	before := p.Before.UnixMilli()
	// Settled leases (no longer in the hub's list) are spent no more: what was pruned of them goes.
	if _, err := t.ExecContext(ctx, `DELETE FROM lease_pruned WHERE lease NOT IN (SELECT id FROM leases)`); err != nil {
		return out, err
	}
	rows, err := t.QueryContext(ctx, `SELECT seq, order_id FROM deltas WHERE seq > ? AND state = 'acked' AND hub_version = 0
		AND MAX(created_at, event_at) < ? ORDER BY seq LIMIT ?+0`, after, before, limit)
	if err != nil {
		return out, err
	}
	var orders []string
	seen := map[string]bool{}
	for rows.Next() {
		var seq int64
		var order string
		if err := rows.Scan(&seq, &order); err != nil {
			rows.Close()
			return out, err
		}
		out.Next, out.Scanned = seq, out.Scanned+1
		if order != "" && !seen[order] {
			seen[order] = true
			orders = append(orders, order)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, err
	}
	// An order stays if any of its deltas (rejected ones aside) is not done with.
	keep := `d.state = 'pending' OR d.hub_version > 0 OR MAX(d.created_at, d.event_at) >= ?2`
	if p.KeepEarns {
		keep += ` OR d.kind = 'earn'`
	}
	if p.KeepRedeems {
		keep += ` OR d.kind = 'redeem' AND d.voucher = ''`
	}
	keep += ` OR d.kind = 'redeem' AND d.voucher = '' AND d.reward IN (SELECT value FROM json_each(?3))`
	rewards, err := json.Marshal(p.KeepRewards)
	if err != nil {
		return out, err
	}
	for _, order := range orders {
		var stays bool
		// So does an order the hub rejected a delta of, until it is split again (agent.resplit).
		err := t.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM deltas d WHERE d.order_id = ?1 AND d.state != 'rejected' AND (`+keep+`))
			OR EXISTS (SELECT 1 FROM order_resplit WHERE order_id = ?1)`,
			order, before, string(rewards)).Scan(&stays)
		if err != nil {
			return out, err
		}
		if stays {
			continue
		}
		for _, q := range []string{
			// What the order spent of leases the store still holds goes on counting.
			`INSERT INTO lease_pruned (lease, amount) SELECT u.lease, SUM(u.amount) FROM lease_use u JOIN deltas d ON d.id = u.delta_id
				WHERE d.order_id = ? AND d.state = 'acked' AND u.lease IN (SELECT id FROM leases) GROUP BY u.lease
				ON CONFLICT (lease) DO UPDATE SET amount = amount + excluded.amount`,
			`DELETE FROM lease_use WHERE delta_id IN (SELECT id FROM deltas WHERE order_id = ? AND state = 'acked')`,
			`DELETE FROM delta_punches WHERE delta_id IN (SELECT id FROM deltas WHERE order_id = ? AND state = 'acked')`,
		} {
			if _, err := t.ExecContext(ctx, q, order); err != nil {
				return out, err
			}
		}
		res, err := t.ExecContext(ctx, `DELETE FROM deltas WHERE order_id = ? AND state = 'acked'`, order)
		if err != nil {
			return out, err
		}
		n, _ := res.RowsAffected()
		// The order's POS keys: its own and its parts' (loyalty.PartKey).
		keys := `(order_id = ?1 OR order_id >= ?2 AND order_id < ?3)`
		from, to := loyalty.PartKeyRange(order)
		var answered int64
		if err := t.QueryRowContext(ctx, `SELECT COUNT(*) FROM pos_requests WHERE `+keys+` AND response != ''`, order, from, to).Scan(&answered); err != nil {
			return out, err
		}
		if _, err := t.ExecContext(ctx, `DELETE FROM pos_requests WHERE `+keys, order, from, to); err != nil {
			return out, err
		}
		out.Orders, out.Deltas, out.Results = out.Orders+1, out.Deltas+n, out.Results+answered
	}
	return out, nil
}
