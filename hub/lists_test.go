package hub_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi/jsonapitest"
)

// TestConflictsAndRejections_EveryOneWithinReach: GET /v1/conflicts pages back through every
// conflict (limit, before), and every rejection is in the rejections export, oldest first, in
// pages that split the rejections made in one millisecond; GET /v1/rejections lists the newest
// limit. Past the newest 500, neither was within reach but in the database.
func TestConflictsAndRejections_EveryOneWithinReach(t *testing.T) {
	a := openAKHub(t)
	h := a.Hub
	ctx := context.Background()
	at := t0
	err := h.Store.Update(ctx, func(tx hub.Tx) error {
		for i := range 7 {
			if _, err := tx.InsertConflict(ctx, hub.Conflict{Kind: "overdraft", Member: "m1", Store: "s1", Deltas: []string{fmt.Sprintf("d%d", i)},
				Amount: int64(i + 1), Detail: "test", At: at.Add(time.Duration(i) * time.Second), Flagged: true}); err != nil {
				return err
			}
		}
		// Five rejections, three of them in one millisecond, from two stores.
		for i, r := range []struct {
			store string
			ms    int
		}{{"s2", 0}, {"s1", 5}, {"s2", 5}, {"s1", 5}, {"s1", 9}} {
			d := loyalty.Delta{ID: fmt.Sprintf("r%d", i), Store: r.store, Member: "m1", Kind: loyalty.KindEarn, Points: 1, OccurredAt: at}
			if err := tx.InsertRejection(ctx, hub.Rejection{Delta: d, Store: r.store, Code: loyalty.EINVALID, Message: "no",
				At: at.Add(time.Duration(r.ms) * time.Millisecond), Hash: d.Hash()}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	report := a.newKey(t, akAdminKey, "dashboards", hub.ScopeReport).Key

	var ids []int64
	for before := ""; ; {
		var page []hub.Conflict
		a.mustDo(t, report, "GET", "/v1/conflicts?limit=3"+before, "", http.StatusOK, &page)
		if len(page) == 0 {
			break
		}
		if len(ids) > 7 {
			t.Fatalf("conflicts paged back: %v and still more", ids)
		}
		if len(page) > 3 {
			t.Fatalf("a page of %d conflicts, limit 3", len(page))
		}
		for _, c := range page {
			ids = append(ids, c.ID)
		}
		before = "&before=" + strconv.FormatInt(page[len(page)-1].ID, 10)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] >= ids[i-1] {
			t.Fatalf("conflicts paged back: ids %v, want newest first, each once", ids)
		}
	}
	if len(ids) != 7 {
		t.Fatalf("conflicts paged back: ids %v, want all 7", ids)
	}

	var newest []hub.Rejection
	a.mustDo(t, report, "GET", "/v1/rejections?limit=2", "", http.StatusOK, &newest)
	if len(newest) != 2 || newest[0].Delta.ID != "r4" {
		t.Fatalf("the 2 newest rejections: %+v, want r4 first", newest)
	}

	var out bytes.Buffer
	if err := h.Export(ctx, &out, hub.ExportRejections, hub.ExportOptions{PageSize: 2}); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rows[1:] {
		got = append(got, r[1]+"/"+r[2])
	}
	if want := []string{"s2/r0", "s1/r1", "s1/r3", "s2/r2", "s1/r4"}; rows[0][0] != "at" || !slices.Equal(got, want) {
		t.Fatalf("the rejections export in pages of 2: header %v, rows %v; want %v", rows[0], got, want)
	}

	for _, q := range []string{"/v1/conflicts?limit=0", "/v1/conflicts?limit=1001", "/v1/conflicts?before=0", "/v1/conflicts?before=x",
		"/v1/conflicts?store=s1", "/v1/rejections?limit=0", "/v1/rejections?before=5"} {
		status, body := a.do(t, report, "GET", q, "")
		jsonapitest.AssertError(t, status, body, http.StatusBadRequest, loyalty.EINVALID)
	}
}
