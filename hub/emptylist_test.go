package hub_test

import (
	"bytes"
	"testing"
)

// TestListsAreNeverNull: on a new hub every list endpoint answers [] (or an object), never
// null: `GET /v1/budgets` used to print null while every other list printed [].
func TestListsAreNeverNull(t *testing.T) {
	th := MustOpenBIHub(t)
	for _, path := range []string{"/v1/budgets", "/v1/stores", "/v1/conflicts", "/v1/rejections", "/v1/api-keys", "/v1/audit", "/v1/expiring", "/v1/rewards"} {
		status, body := biHTTPDo(t, "GET", th.HTTP.URL()+path, "", "Bearer "+biAdminKey)
		if status != 200 {
			t.Errorf("GET %s: HTTP %d %s", path, status, body)
			continue
		}
		if b := bytes.TrimSpace(body); bytes.Equal(b, []byte("null")) {
			t.Errorf("GET %s answered null, want a JSON list", path)
		}
	}
}
