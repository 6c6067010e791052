package hub_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// FuzzImport imports arbitrary files: an import either refuses the whole file with EINVALID (a
// header it cannot use) or accounts for every row as imported, skipped or bad, and the balances
// still equal the ledger.
func FuzzImport(f *testing.F) {
	for _, seed := range []string{
		"email,points\nann@example.com,120\n",
		"email,points\na@b.c,52,620\n",
		"email,points\n\"a@b.c\",\"52,620\"\n",
		"member_id,email,total_spent,home_store\nm1,,12345,\nx,x@y.z,99999999999999999999,s1\n",
		"email,points\nann@example.com,-5\nann@example.com,9223372036854775807\n",
		"\ufeffEmail , Points\nA@B.C,1.000\n\"unterminated,5\n",
		"member_id,points\nm1,-1000000000000\nm2,1000000000000\n",
	} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	h := openHub(f)
	n := 0
	f.Fuzz(func(t *testing.T, file string, set bool) {
		n++
		o := hub.ImportOptions{ImportID: fmt.Sprintf("fuzz-%d", n), Reason: "fuzz", PointsPerUnit: "", BatchSize: 3}
		if set {
			o.Mode = hub.ImportSet
		}
		if strings.Contains(strings.SplitN(strings.ToLower(file), "\n", 2)[0], "total_spent") {
			o.PointsPerUnit = "1.5"
		}
		rep, err := h.Import(cliCtx(), strings.NewReader(file), o)
		if err != nil {
			if loyalty.ErrorCode(err) != loyalty.EINVALID {
				t.Fatalf("import refused with %v, want EINVALID or success", err)
			}
			return
		}
		if rep.Rows != rep.Imported+rep.Skipped+rep.Bad {
			t.Fatalf("%d rows, but %d imported + %d skipped + %d bad", rep.Rows, rep.Imported, rep.Skipped, rep.Bad)
		}
		for _, e := range rep.Errors {
			if e.Line < 2 || e.Reason == "" {
				t.Fatalf("row error %+v", e)
			}
		}
		r, err := h.Check(cliCtx())
		if err != nil || len(r.Mismatches) > 0 {
			t.Fatalf("check: %+v, %v", r, err)
		}
	})
}
