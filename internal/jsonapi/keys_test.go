package jsonapi_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi/jsonapitest"
)

type keysLine struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

type keysBase struct {
	Store string `json:"store"`
	Note  string // no tag: its Go name
}

// selfDecoded decodes itself: only repeated keys are checked inside it.
type selfDecoded map[string]any

func (s *selfDecoded) UnmarshalJSON(b []byte) error {
	m := map[string]any{}
	err := json.Unmarshal(b, &m)
	*s = m
	return err
}

type keysOrder struct {
	keysBase
	OrderID string            `json:"order_id"`
	Amount  *int64            `json:"amount"`
	Lines   []keysLine        `json:"lines"`
	Attrs   map[string]string `json:"attrs"`
	Extra   any               `json:"extra"`
	Self    selfDecoded       `json:"self"`
	Skip    string            `json:"-"`
}

func decodeInto(t *testing.T, v any, body string) (error, *httptest.ResponseRecorder) {
	t.Helper()
	r := httptest.NewRequest("POST", "/v1/earn", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	err := jsonapi.Decode(w, r, v)
	if err != nil {
		jsonapi.Error(w, r, slog.New(slog.DiscardHandler), err)
	}
	return err, w
}

// TestDecode_FieldNames: a field name in another case, or a key given twice in one object, is
// refused with EINVALID, where encoding/json would read "AMOUNT" as "amount" and keep the last
// of two.
func TestDecode_FieldNames(t *testing.T) {
	for _, tt := range []struct{ name, body, msg string }{
		{"other case", `{"order_id":"A","AMOUNT":5}`, `field "AMOUNT" is spelled "amount"`},
		{"both cases", `{"amount":1250,"AMOUNT":100000000}`, `field "AMOUNT" is spelled "amount"`},
		{"long s folds to s", `{"Note":"x","ſtore":"s"}`, `is spelled "store"`},
		{"upper case", `{"ORDER_ID":"A"}`, `field "ORDER_ID" is spelled "order_id"`},
		{"Kelvin sign folds to k", `{"lines":[{"s\u212aU":"x"}]}`, `is spelled "sku"`},
		{"promoted field", `{"Store":"s"}`, `field "Store" is spelled "store"`},
		{"untagged field", `{"note":"x"}`, `field "note" is spelled "Note"`},
		{"in a list", `{"lines":[{"sku":"a"},{"SKU":"b"}]}`, `field "lines[1].SKU" is spelled "sku"`},
		{"twice", `{"order_id":"A","amount":1,"amount":2}`, `field "amount" is given twice`},
		{"twice, escaped", `{"amount":1,"\u0061mount":2}`, `field "amount" is given twice`},
		{"twice in a list", `{"lines":[{"qty":1,"qty":2}]}`, `field "lines[0].qty" is given twice`},
		{"twice in a map", `{"attrs":{"a":"1","a":"2"}}`, `field "attrs.a" is given twice`},
		{"twice in any", `{"extra":[{"x":{"y":1,"y":2}}]}`, `field "extra[0].x.y" is given twice`},
		{"twice in an Unmarshaler", `{"self":{"k":1,"k":2}}`, `field "self.k" is given twice`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var o keysOrder
			err, w := decodeInto(t, &o, tt.body)
			jsonapitest.AssertError(t, w.Code, w.Body.Bytes(), http.StatusBadRequest, loyalty.EINVALID)
			if msg := loyalty.ErrorMessage(err); !strings.Contains(msg, tt.msg) {
				t.Errorf("message %q, want it to contain %q", msg, tt.msg)
			}
		})
	}
	// Accepted: the documented names, any case inside maps, interfaces and self-decoding types,
	// the same key in different objects.
	var o keysOrder
	body := `{"store":"s","Note":"n","order_id":"A","amount":5,"lines":[{"sku":"a","qty":1},{"sku":"a","qty":1}],` +
		`"attrs":{"a":"1","A":"2"},"extra":{"Amount":1,"amount":2},"self":{"K":1,"k":2}}`
	if err, _ := decodeInto(t, &o, body); err != nil || o.Store != "s" || *o.Amount != 5 || len(o.Lines) != 2 || o.Attrs["A"] != "2" {
		t.Errorf("got %+v, %v; want the body decoded", o, err)
	}
	// Unknown names and malformed JSON are still the decoder's to report, as before.
	for body, msg := range map[string]string{
		`{"points":5}`:             `unknown field "points"`,
		`{"order_id":"A","Skip":1`: "malformed JSON",
		`{"lines":[{"sku":]}`:      "malformed JSON",
	} {
		if err, _ := decodeInto(t, &o, body); !strings.Contains(loyalty.ErrorMessage(err), msg) {
			t.Errorf("%s: %v, want %q", body, err, msg)
		}
	}
	// Into an interface, only repeated keys are refused.
	var v any
	if err, _ := decodeInto(t, &v, `{"a":{"B":1,"b":2}}`); err != nil {
		t.Errorf("into any: %v", err)
	}
	if err, _ := decodeInto(t, &v, `{"a":1,"a":1}`); loyalty.ErrorCode(err) != loyalty.EINVALID {
		t.Errorf("into any, a key twice: %v, want EINVALID", err)
	}
}

// TestDecode_DeepNesting: a body as deep as it is long ([[[[… or {"a":{"a":… up to the body
// limit) is refused quickly and small, not walked level by level with a path kept for each.
func TestDecode_DeepNesting(t *testing.T) {
	for _, open := range []string{"[", `{"extra":`} {
		body := strings.Repeat(open, jsonapi.MaxBody/len(open))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var v any
		err, _ := decodeInto(t, &v, body)
		runtime.ReadMemStats(&after)
		if loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(loyalty.ErrorMessage(err), "deep") {
			t.Errorf("%d bytes of %s: %v, want EINVALID saying it nests too deep", len(body), open, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
			t.Errorf("%d bytes of %s took %d MB to refuse", len(body), open, grew>>20)
		}
	}
	// As deep as the limit is fine.
	var v any
	ok := strings.Repeat("[", 64) + strings.Repeat("]", 64)
	if err, _ := decodeInto(t, &v, ok); err != nil {
		t.Errorf("64 levels: %v", err)
	}
}

// TestWrite_Unencodable: an answer that cannot be encoded is 500 EINTERNAL with the generic
// message, not its status with an empty body.
func TestWrite_Unencodable(t *testing.T) {
	w := httptest.NewRecorder()
	jsonapi.Write(w, http.StatusOK, map[string]time.Time{"to": time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
	jsonapitest.AssertError(t, w.Code, w.Body.Bytes(), http.StatusInternalServerError, loyalty.EINTERNAL)
	if !strings.Contains(w.Body.String(), "internal error") {
		t.Errorf("body %s, want the generic message", w.Body)
	}
	w = httptest.NewRecorder()
	jsonapi.Write(w, http.StatusCreated, []string(nil))
	if w.Code != http.StatusCreated || w.Body.String() != "[]\n" {
		t.Errorf("%d %q, want 201 []", w.Code, w.Body)
	}
}
