package loyalty

import "maps"

// What an order's ledger entries mean, computed the same way by a store's agent, by the hub's
// online channel and by the hub when it verifies a store's refund: which rewards stand on the
// order (for stacking), what is left of each entry after the refunds so far, which entries a full
// refund undoes, and what a full or partial refund's delta carries. Each side reads the order's
// entries and their reversals from its own storage.

// OrderEntry is one ledger delta of an order, with the reverse deltas that undid it, in whole or
// in part, since.
type OrderEntry struct {
	Delta
	Reversals []Delta
}

// Left is what refunds have not taken back of an entry yet. A reversal with no amount undid the
// rest of the entry (a full refund, or a void); one with an amount refunded that much of an
// earn's sale (a partial refund), taking back its share of the points and the punch-card units
// of the lines given back.
type Left struct {
	Amount  int64            // of the sale, not refunded yet
	Points  int64            // not taken back yet
	Punches map[string]int64 // punch-card units not taken back yet
	None    bool             // nothing is left: the entry was undone in full
}

// Left returns what is left of e after its reversals.
func (e OrderEntry) Left() Left {
	l := Left{Amount: e.Amount, Points: e.Points, Punches: maps.Clone(e.Punches)}
	for _, r := range e.Reversals {
		if r.Amount == 0 || e.Kind != KindEarn {
			return Left{None: true}
		}
		l.Amount -= r.Amount
		l.Points += r.Points // a reversal's points are the opposite of the entry's
		for card, n := range r.Punches {
			l.Punches[card] += n
			if l.Punches[card] == 0 {
				delete(l.Punches, card)
			}
		}
	}
	// Refunds by amount alone take back no punch-card units: a sale whose whole amount was
	// refunded still has its units to take back, by a full reverse.
	l.None = l.Amount <= 0 && len(l.Punches) == 0 && len(e.Reversals) > 0
	return l
}

// Reversed reports whether nothing is left of e to take back.
func (e OrderEntry) Reversed() bool { return e.Left().None }

// StandingRewards lists the rewards redeemed on an order and not reversed since: what a new
// reward on the same order must stack with (Program.Stacks).
func StandingRewards(entries []OrderEntry) []string {
	var out []string
	for _, e := range entries {
		if e.Kind == KindRedeem && e.Reward != "" && !e.Reversed() {
			out = append(out, e.Reward)
		}
	}
	return out
}

// ToReverse lists the entries a full refund of the order undoes: every earn and redemption with
// something left to take back.
func ToReverse(entries []OrderEntry) []OrderEntry {
	var out []OrderEntry
	for _, e := range entries {
		if (e.Kind == KindEarn || e.Kind == KindRedeem) && !e.Reversed() {
			out = append(out, e)
		}
	}
	return out
}

// Undo fills r, a new reverse delta, to undo what is left of e: the opposite of the points and
// punch-card units refunds have not taken back yet, under e's rule version and naming its
// reward. Its amount is 0: it undoes the rest, whatever that is.
func (r *Delta) Undo(e OrderEntry) {
	left := e.Left()
	r.Kind, r.Reverses = KindReverse, e.ID
	r.Points, r.RuleVersion, r.Reward = -left.Points, e.RuleVersion, e.Reward
	r.Amount, r.Lines, r.Punches = 0, nil, negated(left.Punches)
}

// Refund is a partial refund of an order: an amount of money given back, and optionally the
// lines given back (which then add up to the amount and take back their punch-card units).
type Refund struct {
	Amount int64
	Lines  []Line
}

// RefundPart fills r, a new reverse delta, to take back what refund takes of the earn e: its
// share of the sale's points, counted so that the refunds of an order never take back more than
// the sale earned, and all of it when the whole amount is refunded (each refund takes the
// difference between what the refunded total so far and before it earned, rounded down); and
// the punch-card units of the lines given back, as far as the sale's are left. cards says which
// punch cards a line counts on. It returns EINVALID for a refund larger than what is left.
func (r *Delta) RefundPart(e OrderEntry, refund Refund, cards func(Line) []string) error {
	if e.Kind != KindEarn || e.Amount <= 0 {
		return Errorf(EINVALID, "only a sale's points can be refunded in part; refund the order in full instead")
	}
	left := e.Left()
	if left.None || left.Amount <= 0 {
		return Errorf(ECONFLICT, "this sale was already refunded in full")
	}
	if refund.Amount <= 0 || refund.Amount > left.Amount {
		return Errorf(EINVALID, "a refund of %d minor units does not fit the %d left of this sale; send at most what is left, or refund the order in full",
			refund.Amount, left.Amount)
	}
	r.Kind, r.Reverses, r.RuleVersion = KindReverse, e.ID, e.RuleVersion
	r.Amount, r.Currency, r.Lines = refund.Amount, e.Currency, refund.Lines
	r.Points = -RefundShare(e, *r, e.Points)
	r.Punches = nil
	for _, l := range refund.Lines {
		for _, card := range cards(l) {
			have := left.Punches[card]
			if n := min(l.Qty, have); n > 0 {
				if r.Punches == nil {
					r.Punches = map[string]int64{}
				}
				r.Punches[card] -= n
				left.Punches[card] -= n
			}
		}
	}
	return nil
}

// RefundShare is what the reversal r gives back of a quantity the sale of e counted in full
// (its points, or what it spent of a budget): for a partial refund, the difference between the
// shares of the refunded total after and before it, each rounded down, so that the parts never
// give back more than the whole and a refund of everything gives back exactly all; for a
// reversal without an amount, all that the earlier parts left. e.Reversals must not include r.
func RefundShare(e OrderEntry, r Delta, total int64) int64 {
	if e.Kind != KindEarn || e.Amount <= 0 {
		return total
	}
	done := int64(0)
	for _, x := range e.Reversals {
		if x.Amount == 0 {
			return 0 // undone in full already
		}
		done += x.Amount
	}
	done = min(done, e.Amount)
	before, _ := mulDiv(total, done, e.Amount) // done ≤ e.Amount: the share fits in int64
	if r.Amount == 0 {
		return total - before
	}
	after, _ := mulDiv(total, min(done+r.Amount, e.Amount), e.Amount)
	return after - before
}

// CheckRefund checks a store's reverse delta r of entry e as the hub does: a full reversal must
// undo exactly what is left; a partial one must take exactly its share of the points (RefundPart)
// and may take back at most the punch-card units left, of cards the sale punched. It returns
// EINVALID, or ECONFLICT when nothing is left to reverse.
func CheckRefund(e OrderEntry, r Delta) error {
	left := e.Left()
	if left.None {
		return Errorf(ECONFLICT, "the change this refund reverses was already reversed")
	}
	if r.Amount == 0 {
		var want Delta
		want.Undo(e)
		if r.Points != want.Points {
			return Errorf(EINVALID, "reversing what is left of %d points takes %d, not %d", e.Points, want.Points, r.Points)
		}
		if !maps.Equal(r.Punches, want.Punches) {
			return Errorf(EINVALID, "a reversal takes back exactly the punches the order has left")
		}
		return nil
	}
	if err := checkRefundLines(r); err != nil {
		return err
	}
	var want Delta
	if err := want.RefundPart(e, Refund{Amount: r.Amount}, func(Line) []string { return nil }); err != nil {
		return err
	}
	if r.Points != want.Points {
		return Errorf(EINVALID, "a refund of %d of a sale of %d takes back %d of its %d points, not %d",
			r.Amount, e.Amount, -want.Points, e.Points, -r.Points)
	}
	for card, n := range r.Punches {
		if n >= 0 || -n > left.Punches[card] {
			return Errorf(EINVALID, "a refund takes back at most the punch-card units the sale has left")
		}
	}
	return nil
}

// checkRefundLines checks the lines of a partial refund: bounded, and adding up to its amount.
func checkRefundLines(r Delta) error {
	if len(r.Lines) == 0 {
		return nil
	}
	if len(r.Lines) > MaxLines {
		return Errorf(EINVALID, "a refund has at most %d lines", MaxLines)
	}
	var sum int64
	for i, l := range r.Lines {
		switch {
		case l.Amount < 0 || l.Amount > MaxAmount:
			return Errorf(EINVALID, "lines[%d]: amount must be 0 to %d minor units", i, int64(MaxAmount))
		case l.Qty < 0 || l.Qty > MaxQty:
			return Errorf(EINVALID, "lines[%d]: qty must be 0 to %d", i, MaxQty)
		case !ValidText(l.SKU, MaxIDLength) || !ValidText(l.Category, MaxIDLength):
			return Errorf(EINVALID, "lines[%d]: sku and category must be UTF-8 text of at most %d characters, without NUL (U+0000)", i, MaxIDLength)
		}
		sum += l.Amount // at most MaxLines × MaxAmount: no overflow
	}
	if sum != r.Amount {
		return Errorf(EINVALID, "the refunded lines add up to %d, the refund is %d", sum, r.Amount)
	}
	return nil
}

// PunchCardsOf returns a function that says which of the program's punch cards a line counts
// on, as ComputeEarn counts them, for RefundPart.
func (p *Program) PunchCardsOf() func(Line) []string {
	return func(l Line) []string {
		var out []string
		for _, c := range p.PunchCards {
			if c.Counts(l) {
				out = append(out, c.ID)
			}
		}
		return out
	}
}

func negated(m map[string]int64) map[string]int64 {
	var out map[string]int64
	for k, v := range m {
		if v == 0 {
			continue
		}
		if out == nil {
			out = make(map[string]int64, len(m))
		}
		out[k] = -v
	}
	return out
}

// PunchRewards lists the rewards of the punch cards an order filled, for its receipt.
func (p *Program) PunchRewards(cards []string) []Reward {
	var out []Reward
	for _, id := range cards {
		if c, ok := p.PunchCard(id); ok {
			if r, err := p.Reward(c.Reward); err == nil {
				out = append(out, r)
			}
		}
	}
	return out
}
