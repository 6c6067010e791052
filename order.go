package loyalty

// What an order's ledger entries mean, computed the same way by a store's agent and by the hub's
// online channel: which rewards stand on the order (for stacking), which entries a refund undoes,
// and what the undoing delta carries. Each side reads the order's entries from its own storage and
// passes whether an entry was reversed already.

// OrderEntry is one ledger delta of an order, with whether a later reverse undid it.
type OrderEntry struct {
	Delta
	Reversed bool
}

// StandingRewards lists the rewards redeemed on an order and not reversed since: what a new
// reward on the same order must stack with (Program.Stacks).
func StandingRewards(entries []OrderEntry) []string {
	var out []string
	for _, e := range entries {
		if e.Kind == KindRedeem && e.Reward != "" && !e.Reversed {
			out = append(out, e.Reward)
		}
	}
	return out
}

// ToReverse lists the entries a refund of the order undoes: every earn and redemption not
// reversed already.
func ToReverse(entries []OrderEntry) []Delta {
	var out []Delta
	for _, e := range entries {
		if (e.Kind == KindEarn || e.Kind == KindRedeem) && !e.Reversed {
			out = append(out, e.Delta)
		}
	}
	return out
}

// Undo fills r, a new reverse delta, to undo orig: the opposite points and punch-card units (a
// refund takes its punches back), under orig's rule version and naming its reward.
func (r *Delta) Undo(orig Delta) {
	r.Kind, r.Reverses = KindReverse, orig.ID
	r.Points, r.RuleVersion, r.Reward = -orig.Points, orig.RuleVersion, orig.Reward
	r.Punches = nil
	for card, n := range orig.Punches {
		if r.Punches == nil {
			r.Punches = make(map[string]int64, len(orig.Punches))
		}
		r.Punches[card] = -n
	}
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
