package agent_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/agent"
	agentsqlite "github.com/loyalty-edge-sync/loyalty/agent/sqlite"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
	"github.com/loyalty-edge-sync/loyalty/sync/ws"
)

// warnLog is a slog.Handler keeping an agent's warnings.
type warnLog struct {
	mu    gosync.Mutex
	msgs  []string
	attrs []map[string]string
}

func (l *warnLog) Enabled(_ context.Context, level slog.Level) bool { return level >= slog.LevelWarn }
func (l *warnLog) WithAttrs([]slog.Attr) slog.Handler               { return l }
func (l *warnLog) WithGroup(string) slog.Handler                    { return l }
func (l *warnLog) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs, l.attrs = append(l.msgs, r.Message), append(l.attrs, m)
	return nil
}

// find returns the attributes of the first warning whose message contains msg.
func (l *warnLog) find(msg string) (map[string]string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, m := range l.msgs {
		if strings.Contains(m, msg) {
			return l.attrs[i], true
		}
	}
	return nil, false
}

func (l *warnLog) messages() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}

// tokenSharingAgent is an agent syncing with a real hub whose reconnection waits are reported
// on waits and held until the test ends, so it never takes its session back by itself.
type tokenSharingAgent struct {
	Client *lsync.Client
	HTTP   *agent.Server
	Log    *warnLog
	waits  chan time.Duration // the backoff of every wait
}

func openTokenSharingAgent(tb testing.TB, rh *biHub, name, store, token string) *tokenSharingAgent {
	tb.Helper()
	st, err := agentsqlite.Open(context.Background(), filepath.Join(tb.TempDir(), name+".db"))
	if err != nil {
		tb.Fatalf("open replica: %v", err)
	}
	tb.Cleanup(func() { st.Close() })
	ta := &tokenSharingAgent{Log: &warnLog{}, waits: make(chan time.Duration, 16)}
	c := lsync.NewClient(rh.HTTP.SyncURL(), store, token, &ws.Dialer{}, st)
	c.Logger, c.MinBackoff, c.MaxBackoff = slog.New(ta.Log), 20*time.Millisecond, time.Hour
	c.Wait = func(ctx context.Context, backoff, wait time.Duration) {
		ta.waits <- backoff
		<-ctx.Done()
	}
	a := agent.New(store, st, c)
	a.Logger = biLogger
	srv := agent.NewServer(a, "127.0.0.1:0")
	srv.Logger = biLogger
	if err := srv.Open(); err != nil {
		tb.Fatalf("open pos api: %v", err)
	}
	tb.Cleanup(func() { srv.Close() })
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(runCtx) }()
	tb.Cleanup(func() { cancel(); <-done })
	ta.Client, ta.HTTP = c, srv
	return ta
}

// TestAgentsSharingATokenSayWhy: a second agent starts with the first one's store id and token.
// The first is displaced: it logs a warning that says what happened and what to do, shows it as
// last_error in GET /v1/status, and waits its longest backoff (sync.max_backoff) before it
// connects again. The second, the new connection, stays online.
func TestAgentsSharingATokenSayWhy(t *testing.T) {
	ctx := context.Background()
	rh := mustOpenBIHub(t)
	_, token, err := rh.Hub.CreateStore(ctx, "s1", "")
	if err != nil {
		t.Fatal(err)
	}
	first := openTokenSharingAgent(t, rh, "first", "s1", token)
	biWaitFor(t, "the first agent online", func() bool { return first.Client.Status().Online })
	// Online means welcomed; the hub makes the session the store's live one just after it sent the
	// welcome. A pull answered proves it did.
	if err := first.Client.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	second := openTokenSharingAgent(t, rh, "second", "s1", token)

	select {
	case backoff := <-first.waits:
		if backoff != time.Hour {
			t.Errorf("the displaced agent's backoff is %s, want its longest, 1h", backoff)
		}
	case <-time.After(biTimeout):
		t.Fatal("the first agent never left its session to the second")
	}

	status, b := posDo(t, first.HTTP.URL(), "GET", "/v1/status", "", "")
	if status != http.StatusOK {
		t.Fatalf("GET /v1/status: %d %s", status, b)
	}
	var st agent.Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("decode status %s: %v", b, err)
	}
	if st.Online {
		t.Error("the displaced agent reports itself online")
	}
	for _, want := range []string{loyalty.ESUPERSEDED, "another connection for store s1, from 127.0.0.1:", "stop one, or give each its own store id"} {
		if !strings.Contains(st.LastError, want) {
			t.Errorf("last_error %q does not say %q", st.LastError, want)
		}
	}
	w, ok := first.Log.find("two agents may be running with this store's token; stop one, or give each its own store id")
	if !ok {
		t.Errorf("the displaced agent logged no warning saying what happened and what to do; warnings: %q", first.Log.messages())
	} else if !strings.Contains(w["err"], loyalty.ESUPERSEDED) {
		t.Errorf("the displaced agent's warning %v does not carry the hub's reason", w)
	}

	// The hub ends the first session when it makes the second the store's live one, just after
	// it sent the second its welcome, which the second may not have read yet.
	biWaitFor(t, "the second agent online", func() bool { return second.Client.Status().Online })
	if err := second.Client.Refresh(ctx); err != nil {
		t.Errorf("the second agent, which took over: %v", err)
	}
	if st := second.Client.Status(); !st.Online || st.LastError != "" {
		t.Errorf("the second agent: %+v, want online without an error", st)
	}
}
