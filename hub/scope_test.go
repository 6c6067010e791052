package hub_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
)

// feedMembers pulls store's change feed from *cursor to its end, moves *cursor, and returns the
// ids of the members it carried.
func feedMembers(t *testing.T, h *hub.Hub, store string, cursor *int64) []string {
	t.Helper()
	var ids []string
	for {
		ch, err := h.Pull(context.Background(), store, lsync.Pull{Cursor: *cursor, Limit: 1000, Flushed: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ch.Members {
			ids = append(ids, m.ID)
		}
		*cursor = ch.Cursor
		if !ch.More {
			return ids
		}
	}
}

// A store that evicted a member from its replica unsubscribes: the change feed stops carrying
// the member to it, whatever the member does elsewhere, until the store subscribes to them again
// (a scan while online) or pushes a delta of theirs. Other stores' scopes are untouched.
func TestUnsubscribe_TheFeedStopsCarryingTheMember(t *testing.T) {
	h := openHub(t)
	ctx := context.Background()
	var c1, c2 int64
	feedMembers(t, h, "s1", &c1)
	if err := h.Unsubscribe(ctx, "s2", []string{"m2"}); err != nil { // s2 keeps m1 in scope below
		t.Fatal(err)
	}
	pushOK(t, h, "s2", scanned(t, h, earn("s2", "m1", 1000))) // m1 now in s2's scope too
	feedMembers(t, h, "s2", &c2)

	if err := h.Unsubscribe(ctx, "s1", []string{"m1", "nobody"}); err != nil {
		t.Fatalf("unsubscribe m1 (and a member the hub does not know): %v", err)
	}
	if err := h.Unsubscribe(ctx, "s1", []string{"m1"}); err != nil {
		t.Fatalf("unsubscribe again: %v", err)
	}
	pushOK(t, h, "s2", earn("s2", "m1", 2000)) // m1 shops at s2: a new version of m1
	if got := feedMembers(t, h, "s1", &c1); slices.Contains(got, "m1") {
		t.Fatalf("s1's feed carried m1 %v after s1 unsubscribed", got)
	}
	if got := feedMembers(t, h, "s2", &c2); !slices.Contains(got, "m1") {
		t.Fatalf("s2's feed %v lost m1: unsubscribing at s1 touched s2's scope", got)
	}

	// Back in scope by a subscription (the member scanned at s1 while online)...
	if _, _, err := h.Subscribe(ctx, "s1", lsync.Subscribe{Member: "m1"}); err != nil {
		t.Fatal(err)
	}
	pushOK(t, h, "s2", earn("s2", "m1", 3000))
	if got := feedMembers(t, h, "s1", &c1); !slices.Contains(got, "m1") {
		t.Fatalf("s1's feed %v: m1 subscribed again, but not carried", got)
	}
	// ...or by a delta the store pushes (a sale made offline with the member's QR code).
	if err := h.Unsubscribe(ctx, "s1", []string{"m1"}); err != nil {
		t.Fatal(err)
	}
	pushOK(t, h, "s1", earn("s1", "m1", 1000))
	if got := feedMembers(t, h, "s1", &c1); !slices.Contains(got, "m1") {
		t.Fatalf("s1's feed %v: s1 pushed a sale of m1, which puts m1 back in its scope", got)
	}
	if got := balance(t, h, "m1"); got != 70 {
		t.Errorf("m1's balance %d, want 70: unsubscribing changes no account", got)
	}
	mustCheck(t, h)

	long := strings.Repeat("x", loyalty.MaxIDLength+1)
	if err := h.Unsubscribe(ctx, "s1", []string{long}); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("a member id over %d characters: %v, want EINVALID", loyalty.MaxIDLength, err)
	}
}
