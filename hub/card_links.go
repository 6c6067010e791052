package hub

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/web"
)

// Member card links: /m/<token> on the hub shows a member their card (balance, tier, QR code,
// rewards, vouchers, recent history) without any API key. The token is a value signed with
// web.Signer under the key WebKey("cards") for the purpose "card", over the member's id and
// their card epoch, with an expiry. Revoking a member's links moves their epoch on
// (CardTx.RevokeCardLinks): every link made before carries the old epoch and stops working,
// while links made after work. An erased member's links stop working too. docs/PAGES.md, "The
// member's card (hub)".

// CardTx is the storage of card link revocation.
type CardTx interface {
	// CardEpoch returns a member's card epoch: 0 until their links are first revoked.
	CardEpoch(ctx context.Context, member string) (int64, error)
	// RevokeCardLinks moves a member's card epoch on by one (to 1 from none) and records at as
	// the time of the revocation; it returns the new epoch. The caller checks that the member
	// exists.
	RevokeCardLinks(ctx context.Context, member string, at time.Time) (int64, error)
}

// Card link lifetimes: what POST /v1/members/{id}/card-links accepts as ttl_hours, and its default.
const (
	CardLinkDefaultTTL = 30 * 24 * time.Hour
	CardLinkMaxTTL     = 366 * 24 * time.Hour
	CardLinkMinTTL     = time.Hour
	// MaxCardToken bounds the token of a card link the hub looks at; real ones are under 100
	// characters plus the member id's base64.
	MaxCardToken = 400
	// cardPurpose keeps card links apart from every other value web.Signer signs (sessions).
	cardPurpose = "card"
	// CardPathPrefix starts every card link's path.
	CardPathPrefix = "/m/"
)

// Audit actions of card links.
const (
	AuditCardLink   = "member.card_link"   // a card link was made (never the link itself)
	AuditCardRevoke = "member.card_revoke" // every card link of the member made so far was revoked
)

// CardLink is a new member card link: the path to send the member (on the hub's public URL) and
// when it stops working.
type CardLink struct {
	MemberID  string    `json:"member_id"`
	URLPath   string    `json:"url_path"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CardRevocation is the answer to revoking a member's card links.
type CardRevocation struct {
	MemberID  string    `json:"member_id"`
	RevokedAt time.Time `json:"revoked_at"`
}

// errNoCard is the one answer to a card link that is not valid, whichever way: malformed,
// tampered, of another purpose, expired, revoked, or of an erased or unknown member. The page
// does not say which.
var errNoCard = loyalty.Errorf(loyalty.ENOTFOUND, "this card link is not valid, or no longer")

func (h *Hub) cardSigner() (*web.Signer, error) {
	key, err := h.WebKey("cards")
	if err != nil {
		return nil, loyalty.Errorf(loyalty.EUNAVAILABLE, "card links need the hub's key-encryption key (keys.kek_file): %v", err)
	}
	return web.NewSigner(key)
}

// NewCardLink makes a member card link valid for ttl (0: CardLinkDefaultTTL; otherwise from
// CardLinkMinTTL to CardLinkMaxTTL). It is audited, without the link.
func (h *Hub) NewCardLink(ctx context.Context, member string, ttl time.Duration) (CardLink, error) {
	if ttl == 0 {
		ttl = CardLinkDefaultTTL
	}
	if ttl < CardLinkMinTTL || ttl > CardLinkMaxTTL {
		return CardLink{}, loyalty.Errorf(loyalty.EINVALID, "ttl_hours must be a whole number from %d to %d",
			int(CardLinkMinTTL/time.Hour), int(CardLinkMaxTTL/time.Hour))
	}
	signer, err := h.cardSigner()
	if err != nil {
		return CardLink{}, err
	}
	var link CardLink
	err = h.Store.Update(ctx, func(tx Tx) error {
		m, err := tx.Member(ctx, member)
		if err != nil {
			return err
		}
		if m.Erased {
			return loyalty.Errorf(loyalty.ENOTFOUND, "member %s was erased; no card link is made for them", member)
		}
		epoch, err := tx.CardEpoch(ctx, member)
		if err != nil {
			return err
		}
		exp := h.Now().Add(ttl).Truncate(time.Second)
		token := signer.Sign(cardPurpose, strconv.FormatInt(epoch, 10)+" "+member, exp)
		if len(token) > MaxCardToken {
			return loyalty.Errorf(loyalty.EINVALID, "member id %s is too long for a card link", loyalty.Truncate(member, 40))
		}
		link = CardLink{MemberID: member, URLPath: CardPathPrefix + token, ExpiresAt: exp.UTC()}
		return h.audit(ctx, tx, AuditCardLink, member, "card link valid until "+link.ExpiresAt.Format(time.RFC3339))
	})
	if err != nil {
		return CardLink{}, err
	}
	return link, nil
}

// RevokeCardLinks makes every card link of member made so far stop working; links made later
// work. It is audited.
func (h *Hub) RevokeCardLinks(ctx context.Context, member string) (CardRevocation, error) {
	at := h.Now().UTC().Truncate(time.Millisecond)
	err := h.Store.Update(ctx, func(tx Tx) error {
		if _, err := tx.Member(ctx, member); err != nil {
			return err
		}
		if _, err := tx.RevokeCardLinks(ctx, member, at); err != nil {
			return err
		}
		return h.audit(ctx, tx, AuditCardRevoke, member, "every card link made so far revoked")
	})
	if err != nil {
		return CardRevocation{}, err
	}
	return CardRevocation{MemberID: member, RevokedAt: at}, nil
}

// cardMember returns the member a card link's token is for, and when the link expires, if it is
// valid now: signed by this hub for cards, not expired, of the member's current epoch, and the
// member not erased. Any other token is errNoCard.
func (h *Hub) cardMember(ctx context.Context, tx Tx, signer *web.Signer, token string) (loyalty.Member, time.Time, error) {
	if len(token) > MaxCardToken {
		return loyalty.Member{}, time.Time{}, errNoCard
	}
	payload, exp, err := signer.Verify(cardPurpose, token, h.Now())
	if err != nil {
		return loyalty.Member{}, time.Time{}, errNoCard
	}
	e, id, ok := strings.Cut(payload, " ")
	epoch, perr := strconv.ParseInt(e, 10, 64)
	if !ok || perr != nil || id == "" {
		return loyalty.Member{}, time.Time{}, errNoCard
	}
	m, err := tx.Member(ctx, id)
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		return loyalty.Member{}, time.Time{}, errNoCard
	} else if err != nil {
		return loyalty.Member{}, time.Time{}, err
	}
	if m.Erased {
		return loyalty.Member{}, time.Time{}, errNoCard
	}
	cur, err := tx.CardEpoch(ctx, id)
	if err != nil {
		return loyalty.Member{}, time.Time{}, err
	}
	if cur != epoch {
		return loyalty.Member{}, time.Time{}, errNoCard
	}
	return m, exp, nil
}

// Card is what the member card page shows. It holds no internal ids: no delta, order or
// voucher ids, no store ids (store names instead).
type Card struct {
	Name        string
	Balance     int64
	Tier        string // the tier's name; "" without tiers
	Next        *CardStep
	Affordable  []loyalty.Reward // rewards the member can redeem now, cheapest first
	Goal        *CardGoal        // the cheapest reward they cannot afford yet
	Vouchers    []CardVoucher
	History     []CardLine
	QR          string    // a member QR token, newly signed
	LinkExpires time.Time // when this card link stops working
	Currency    string
}

// CardStep is the progress to the next tier.
type CardStep struct {
	Tier    string // the next tier's name
	Basis   string // loyalty.BasisSpend (Have and Need are minor units) or loyalty.BasisPoints
	Have    int64  // qualifying total in the current window
	Need    int64  // what is still missing
	Percent int    // Have of the threshold, 0 to 100
}

// CardGoal is the next reward to save for.
type CardGoal struct {
	Reward string
	Need   int64 // points still missing
}

// CardVoucher is a voucher the member holds and can still use.
type CardVoucher struct {
	Reward  string
	Expires time.Time
}

// CardLine is one ledger entry in plain words.
type CardLine struct {
	At     time.Time
	Text   string
	Points int64
}

// cardHistory is how many ledger entries the card shows.
const cardHistory = 20

// maxCardVouchers bounds the vouchers the card lists.
const maxCardVouchers = 20

// Card returns the card that a card link's token shows, or ENOTFOUND (the same for every kind
// of invalid link).
func (h *Hub) Card(ctx context.Context, token string) (Card, error) {
	signer, err := h.cardSigner()
	if err != nil {
		return Card{}, err
	}
	var c Card
	var member string
	err = h.Store.View(ctx, func(tx Tx) error {
		m, exp, err := h.cardMember(ctx, tx, signer, token)
		if err != nil {
			return err
		}
		c = Card{Name: m.Name, Balance: m.Balance, LinkExpires: exp.UTC()}
		p, _, err := tx.Program(ctx)
		if err != nil {
			return err
		}
		c.Currency = p.Currency
		now := h.Now()
		if err := h.cardTier(ctx, tx, &c, m, &p, now); err != nil {
			return err
		}
		cardRewards(&c, m, &p)
		if err := h.cardVouchers(ctx, tx, &c, m.ID, &p, now); err != nil {
			return err
		}
		member = m.ID
		if err := h.cardLedger(ctx, tx, &c, m.ID, &p); err != nil {
			return err
		}
		cardZone(ctx, tx, &c, m)
		return nil
	})
	if err != nil {
		return Card{}, err
	}
	// The member's QR code, as GET /v1/members/{id}/qr makes it (a member erased meanwhile has
	// none: ENOTFOUND, the link that does not work), but ending with the link at the latest (see CardQR).
	c.QR, err = h.memberToken(ctx, member, c.LinkExpires)
	return c, err
}

// cardZone shows the card's times in the time zone of the member's home store, as the member
// lives them (a purchase at 23:30 in Auckland is on that day, not on the day before in UTC); in
// UTC for a member without a home store, or one whose zone is unknown.
func cardZone(ctx context.Context, tx Tx, c *Card, m loyalty.Member) {
	loc := time.UTC
	if m.HomeStore != "" {
		if s, err := tx.StoreInfo(ctx, m.HomeStore); err == nil && s.TimeZone != "" {
			if l, err := time.LoadLocation(s.TimeZone); err == nil {
				loc = l
			}
		}
	}
	c.LinkExpires = c.LinkExpires.In(loc)
	for i := range c.Vouchers {
		c.Vouchers[i].Expires = c.Vouchers[i].Expires.In(loc)
	}
	for i := range c.History {
		c.History[i].At = c.History[i].At.In(loc)
	}
}

// CardQR returns a newly signed member QR token for the member of a valid card link, or
// ENOTFOUND. Like the card's, it expires with the link at the latest: a code read off a link
// that was forwarded and then revoked stops working at the till when the link would have, not
// qr.member_ttl (two years) later. (Stores check codes offline, so a revocation itself cannot
// reach a code already shown.)
func (h *Hub) CardQR(ctx context.Context, token string) (string, error) {
	signer, err := h.cardSigner()
	if err != nil {
		return "", err
	}
	var member string
	var exp time.Time
	err = h.Store.View(ctx, func(tx Tx) error {
		m, e, err := h.cardMember(ctx, tx, signer, token)
		member, exp = m.ID, e
		return err
	})
	if err != nil {
		return "", err
	}
	return h.memberToken(ctx, member, exp)
}

func tierName(p *loyalty.Program, id string) string {
	if p.Tiers != nil {
		for _, t := range p.Tiers.Tiers {
			if t.ID == id {
				return cmp.Or(t.Name, t.ID)
			}
		}
	}
	return id
}

func (h *Hub) cardTier(ctx context.Context, tx Tx, c *Card, m loyalty.Member, p *loyalty.Program, now time.Time) error {
	c.Tier = tierName(p, m.Tier)
	if p.Tiers == nil || len(p.Tiers.Tiers) == 0 {
		return nil
	}
	since, until := p.Tiers.WindowBounds(now)
	q, err := tx.Qualifying(ctx, m.ID, p.Tiers.Basis, since, until)
	if err != nil {
		return err
	}
	for _, t := range p.Tiers.Tiers {
		if t.Threshold > q.Total && t.Threshold > 0 {
			pct := int(q.Total * 100 / t.Threshold)
			c.Next = &CardStep{Tier: cmp.Or(t.Name, t.ID), Basis: p.Tiers.Basis, Have: q.Total, Need: t.Threshold - q.Total, Percent: max(0, min(pct, 100))}
			break
		}
	}
	return nil
}

func cardRewards(c *Card, m loyalty.Member, p *loyalty.Program) {
	rewards := slices.Clone(p.Rewards)
	slices.SortStableFunc(rewards, func(a, b loyalty.Reward) int { return cmp.Compare(a.PointsCost, b.PointsCost) })
	for _, r := range rewards {
		if r.Disabled || r.PointsCost <= 0 || len(r.Tiers) > 0 && !slices.Contains(r.Tiers, m.Tier) {
			continue
		}
		if r.PointsCost <= m.Balance {
			c.Affordable = append(c.Affordable, r)
		} else if c.Goal == nil {
			c.Goal = &CardGoal{Reward: cmp.Or(r.Name, r.ID), Need: r.PointsCost - m.Balance}
		}
	}
}

func rewardName(p *loyalty.Program, id string) string {
	for _, r := range p.Rewards {
		if r.ID == id {
			return cmp.Or(r.Name, r.ID)
		}
	}
	return "a reward"
}

func (h *Hub) cardVouchers(ctx context.Context, tx Tx, c *Card, member string, p *loyalty.Program, now time.Time) error {
	vs, err := tx.OpenVouchers(ctx, member, now, maxCardVouchers)
	for _, v := range vs {
		c.Vouchers = append(c.Vouchers, CardVoucher{Reward: rewardName(p, v.Reward), Expires: v.ExpiresAt.UTC()})
	}
	return err
}

func (h *Hub) cardLedger(ctx context.Context, tx Tx, c *Card, member string, p *loyalty.Program) error {
	entries, err := tx.Ledger(ctx, member, cardHistory)
	if err != nil {
		return err
	}
	stores := map[string]string{}
	where := func(id string) string {
		switch id {
		case loyalty.OnlineStore:
			return "online"
		case loyalty.HubStore, "":
			return ""
		}
		if name, ok := stores[id]; ok {
			return name
		}
		name := "in a store"
		if s, err := tx.StoreInfo(ctx, id); err == nil && s.Name != "" {
			name = "at " + s.Name
		}
		stores[id] = name
		return name
	}
	for _, e := range entries {
		c.History = append(c.History, CardLine{At: e.OccurredAt.UTC(), Text: ledgerWords(e.Delta, p, where(e.Store), c.Currency), Points: e.Points})
	}
	return nil
}

// ledgerWords says what a ledger entry did, for the member: no ids, no operator's notes.
func ledgerWords(d loyalty.Delta, p *loyalty.Program, where, currency string) string {
	at := ""
	if where != "" {
		at = " " + where
	}
	cur := cmp.Or(d.Currency, currency)
	switch d.Kind {
	case loyalty.KindEarn:
		switch {
		case d.Rule != "":
			return "Bonus points" + at
		case d.Amount > 0:
			return fmt.Sprintf("Purchase of %s %s%s", web.MoneyOf(d.Amount, cur), cur, at)
		}
		return "Points earned" + at
	case loyalty.KindRedeem:
		if d.Voucher != "" {
			return "Voucher used for " + rewardName(p, d.Reward) + at
		}
		if d.Reward != "" {
			return "Reward: " + rewardName(p, d.Reward) + at
		}
		return "Points spent" + at
	case loyalty.KindReverse:
		if d.Points < 0 {
			return "Refund: points of a purchase taken back" + at
		}
		return "Cancelled reward: points given back" + at
	case loyalty.KindAdjust:
		return "Points corrected by customer service"
	case loyalty.KindTier:
		if d.Tier != "" {
			return "Tier is now " + tierName(p, d.Tier)
		}
		return "Tier changed"
	case loyalty.KindExpire:
		if d.Points > 0 {
			return "Expired points given back"
		}
		return "Points expired"
	}
	return "Points changed"
}
