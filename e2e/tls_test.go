package e2e_test

import (
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty/internal/testca"
)

// Every end-to-end hub serves HTTPS and wss:// with a certificate from a CA made for this test
// run (internal/testca); agents trust that CA through tls.ca_file, and the tests' own HTTP
// calls trust it too. Nothing is installed and no certificate is checked in.

var e2eCA = sync.OnceValues(func() (*testca.CA, error) { return testca.New("loyalty e2e test CA") })

func testCA(t *testing.T) *testca.CA {
	t.Helper()
	ca, err := e2eCA()
	if err != nil {
		t.Fatalf("test CA: %v", err)
	}
	return ca
}

var e2eClient = sync.OnceValue(func() *http.Client {
	ca, err := e2eCA()
	if err != nil {
		return http.DefaultClient // testCA reports the error
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
})

// httpClient calls the hub's API (HTTPS, trusting the test CA) and the agents' POS API (HTTP).
func httpClient(t *testing.T) *http.Client {
	t.Helper()
	testCA(t)
	return e2eClient()
}

// tlsFiles writes, once per world, the hub's certificate and key (for 127.0.0.1 and localhost)
// and the CA certificate agents trust.
func (w *world) tlsFiles() (cert, key, ca string) {
	w.t.Helper()
	cert, key, ca = filepath.Join(w.dir, "hub.crt"), filepath.Join(w.dir, "hub.key"), filepath.Join(w.dir, "ca.pem")
	if _, err := os.Stat(ca); err == nil {
		return cert, key, ca
	}
	c := testCA(w.t)
	if err := c.MustIssue(w.t, "127.0.0.1", "localhost").Write(cert, key); err != nil {
		w.t.Fatal(err)
	}
	if err := c.WriteCert(ca); err != nil {
		w.t.Fatal(err)
	}
	return cert, key, ca
}

// api returns the hub's API base URL.
func (w *world) api() string { return "https://" + w.hubAddr }

// agentEnv returns the environment of store id's agent: its token, the hub's wss:// URL at
// hubAddr (the hub, or a link to it) and the CA to trust, its POS API address and replica.
func (w *world) agentEnv(id, token, hubAddr string) []string {
	w.t.Helper()
	_, _, ca := w.tlsFiles()
	return []string{
		"LOYALTY_STORE_ID=" + id, "LOYALTY_TOKEN=" + token, "LOYALTY_HUB_URL=wss://" + hubAddr + "/v1/sync",
		"LOYALTY_TLS_CA_FILE=" + ca, "LOYALTY_LISTEN=" + w.addrs[id], "LOYALTY_DATABASE=" + filepath.Join(w.dir, id+".db"),
	}
}

// TestAgentRefusesHubWithUnknownCA: an agent that trusts another CA than the one that issued the
// hub's certificate never syncs, and says why and what to do in its status; the same agent
// with the right CA then syncs.
func TestAgentRefusesHubWithUnknownCA(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: builds the binary and runs processes")
	}
	w := &world{t: t, bin: binary(t), dir: t.TempDir(), key: "0123456789abcdef0123", hubAddr: freePort(t), agents: map[string]*proc{},
		addrs: map[string]string{"s1": freePort(t)}, env: map[string][]string{}}
	w.startHub()
	var created struct {
		Token string `json:"token"`
	}
	if s := call(t, "POST", w.api()+"/v1/stores", w.key, map[string]string{"id": "s1"}, &created); s != 201 {
		t.Fatalf("create store: HTTP %d", s)
	}
	other := filepath.Join(w.dir, "other-ca.pem")
	if err := testca.MustNew(t, "some other CA").WriteCert(other); err != nil {
		t.Fatal(err)
	}
	base := append(w.agentEnv("s1", created.Token, w.hubAddr), "LOYALTY_SYNC_MIN_BACKOFF=50ms", "LOYALTY_SYNC_MAX_BACKOFF=300ms")
	w.env["s1"] = slices.Concat(base, []string{"LOYALTY_TLS_CA_FILE=" + other}) // the last value of a variable wins
	p := w.startAgent("s1")
	eventually(t, 20*time.Second, "the agent to report the hub's certificate as untrusted", func() (bool, string) {
		st := w.status("s1")
		return strings.Contains(st.LastError, "certificate signed by unknown authority") && strings.Contains(st.LastError, "tls.ca_file"),
			"last_error: " + st.LastError
	})
	if st := w.status("s1"); st.Online || st.Sessions != 0 || st.ProgramVersion != 0 {
		t.Errorf("the agent trusting another CA: online %v, %d sessions, program version %d; want it never synced",
			st.Online, st.Sessions, st.ProgramVersion)
	}
	if log, _ := os.ReadFile(p.log); !strings.Contains(string(log), "certificate signed by unknown authority") {
		t.Errorf("the agent's log does not name the certificate error:\n%s", tail(string(log), 2000))
	}

	// The same agent trusting the hub's CA syncs.
	if code := p.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("agent exited %d on SIGTERM, want 0", code)
	}
	w.env["s1"] = base
	w.startAgent("s1")
	w.waitAgentUp("s1")
	if st := w.status("s1"); !st.Online || st.LastError != "" {
		t.Errorf("with the hub's CA: online %v, last error %q", st.Online, st.LastError)
	}
}
