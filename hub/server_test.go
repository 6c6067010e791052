package hub_test

// Tests of the hub's HTTP server itself (server.go): timeouts that cut slow clients off, the caps
// on connections and sync sessions, sync sessions that outlive the HTTP timeouts, and TLS with a
// certificate replaced while the hub runs. Each test runs a hub.Server with its own limits beside
// the bad-input fixture's, on the same hub and sync server.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi/jsonapitest"
	"github.com/loyalty-edge-sync/loyalty/internal/testca"
	lsync "github.com/loyalty-edge-sync/loyalty/sync"
	"github.com/loyalty-edge-sync/loyalty/sync/ws"
)

// srvSafety bounds every wait in these tests, so a broken server fails a test instead of hanging
// it. It is a safety net, never what a test waits for.
const srvSafety = 20 * time.Second

// srvOpen starts a second hub.Server on th's hub with the given limits (and TLS files), on
// 127.0.0.1:0; it stops with the test.
func srvOpen(t *testing.T, th *biTestHub, lim hub.Limits, ping time.Duration, certFile, keyFile string) *hub.Server {
	t.Helper()
	up := &ws.Upgrader{Options: ws.Options{ReadLimit: biReadLimit, PingInterval: ping}}
	srv := &hub.Server{Hub: th.Hub, Sync: th.Sync, Addr: "127.0.0.1:0", AdminKey: biAdminKey, Logger: th.Hub.Logger,
		Upgrade: up.Upgrade, Limits: lim, TLSCertFile: certFile, TLSKeyFile: keyFile}
	if err := srv.Open(); err != nil {
		t.Fatalf("open server: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// srvWait polls cond until it holds; it fails the test after srvSafety. The poll interval only
// paces the checks.
func srvWait(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(srvSafety)
	tick := time.NewTicker(5 * time.Millisecond) // paces the checks; nothing waits for time itself
	defer tick.Stop()
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, why)
		}
		<-tick.C
	}
}

// srvReadUntilClosed reads c until the server closes it and returns what it sent. It fails the
// test if the safety deadline passes first: the server never cut the client off.
func srvReadUntilClosed(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(srvSafety))
	b, err := io.ReadAll(c)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("the server kept the connection open for %s (it sent %q)", srvSafety, b)
	case err != nil && !errors.Is(err, syscall.ECONNRESET):
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func srvDialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, srvSafety)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestServerCutsOffSlowClients: a client that sends part of a request and then nothing is
// disconnected by the read timeouts, not kept forever.
func TestServerCutsOffSlowClients(t *testing.T) {
	th := MustOpenBIHub(t)
	srv := srvOpen(t, th, hub.Limits{ReadHeaderTimeout: 200 * time.Millisecond, ReadTimeout: 400 * time.Millisecond}, 0, "", "")
	for _, tt := range []struct {
		name, sent string
	}{
		{"half a request line", "GET /healthz HT"},
		{"headers never ended", "GET /healthz HTTP/1.1\r\nHost: hub\r\nX-Slow: aaa"},
		{"body never finished", "POST /v1/members HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer " + biAdminKey +
			"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"id\":\"slo"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := srvDialTCP(t, srv.ListenAddr())
			if _, err := io.WriteString(c, tt.sent); err != nil {
				t.Fatal(err)
			}
			if got := srvReadUntilClosed(t, c); strings.HasPrefix(got, "HTTP/1.1 2") {
				t.Errorf("the server answered an incomplete request with success: %q", got)
			}
		})
	}
	// Nothing was created from the unfinished body.
	status, _ := th.do(t, "GET", "/v1/members/slo", "")
	if status != http.StatusNotFound {
		t.Errorf("GET /v1/members/slo: %d, want 404", status)
	}
}

// TestServerConnectionCap: past MaxConnections a new connection is closed at once; when a
// connection ends its slot is free again.
func TestServerConnectionCap(t *testing.T) {
	th := MustOpenBIHub(t)
	// Long read timeouts: the idle connections below hold their slots for the whole test.
	srv := srvOpen(t, th, hub.Limits{ReadHeaderTimeout: time.Minute, ReadTimeout: time.Minute, MaxConnections: 3, MaxSyncSessions: 1}, 0, "", "")
	var idle []net.Conn
	for range 3 {
		idle = append(idle, srvDialTCP(t, srv.ListenAddr()))
	}
	srvWait(t, "3 connections accepted", func() (bool, string) {
		return srv.Connections() == 3, "connections: " + strconv.Itoa(srv.Connections())
	})

	over := srvDialTCP(t, srv.ListenAddr())
	io.WriteString(over, "GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
	if got := srvReadUntilClosed(t, over); got != "" {
		t.Errorf("a connection over the cap was answered %q; want it closed", got)
	}
	if n := srv.Connections(); n != 3 {
		t.Errorf("after refusing one: %d connections counted, want 3", n)
	}

	idle[0].Close()
	srvWait(t, "the closed connection's slot freed", func() (bool, string) {
		return srv.Connections() == 2, "connections: " + strconv.Itoa(srv.Connections())
	})
	c := srvDialTCP(t, srv.ListenAddr())
	io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(srvSafety))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("a connection under the cap again: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz under the cap: %d, want 200", resp.StatusCode)
	}
}

// srvSession dials url and completes the handshake as store; pings from the hub are recorded in
// pinged (unix nanoseconds) and answered.
func srvSession(t *testing.T, d *websocket.Dialer, url, store, token string, pinged *atomic.Int64) (*websocket.Conn, <-chan *lsync.Message, <-chan error) {
	t.Helper()
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	resp.Body.Close()
	t.Cleanup(func() { c.Close() })
	if pinged != nil {
		c.SetPingHandler(func(data string) error {
			pinged.Store(time.Now().UnixNano())
			return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(srvSafety))
		})
	}
	msgs, errc := make(chan *lsync.Message, 16), make(chan error, 1)
	go func() {
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				errc <- err
				return
			}
			m, err := lsync.Decode(b)
			if err != nil {
				errc <- err
				return
			}
			if m.Type != lsync.TypeNotify {
				msgs <- m
			}
		}
	}()
	srvSend(t, c, &lsync.Message{Type: lsync.TypeHello, ID: 1, Hello: &lsync.Hello{Versions: lsync.Versions, Store: store, Token: token,
		SentAt: time.Now().UnixMilli()}})
	if m := srvNext(t, msgs, errc); m.Type != lsync.TypeWelcome {
		t.Fatalf("got %s %+v, want welcome", m.Type, m.Error)
	}
	return c, msgs, errc
}

func srvSend(t *testing.T, c *websocket.Conn, m *lsync.Message) {
	t.Helper()
	b, err := lsync.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	c.SetWriteDeadline(time.Now().Add(srvSafety))
	if err := c.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func srvNext(t *testing.T, msgs <-chan *lsync.Message, errc <-chan error) *lsync.Message {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case err := <-errc:
		t.Fatalf("the session ended: %v", err)
	case <-time.After(srvSafety):
		t.Fatal("no message from the hub")
	}
	return nil
}

// TestServerSyncSessionCap: with MaxSyncSessions stores connected, another store's upgrade is
// refused with 503 EUNAVAILABLE; once a session ends, the store gets in.
func TestServerSyncSessionCap(t *testing.T) {
	fx := newBadFixture(t)
	srv := srvOpen(t, fx.biTestHub, hub.Limits{MaxSyncSessions: 1}, 0, "", "")
	d := &websocket.Dialer{HandshakeTimeout: srvSafety}
	first, _, _ := srvSession(t, d, srv.SyncURL(), "s1", fx.Tokens["s1"], nil)
	srvWait(t, "s1's session registered", func() (bool, string) {
		return fx.Sync.Sessions() == 1, "sessions: " + strconv.Itoa(fx.Sync.Sessions())
	})

	c, resp, err := d.Dial(srv.SyncURL(), nil)
	if err == nil {
		c.Close()
		t.Fatal("a second session was accepted over max_sync_sessions 1")
	}
	if resp == nil {
		t.Fatalf("dial over the cap: %v, want an HTTP answer", err)
	}
	body, _ := io.ReadAll(resp.Body)
	jsonapitest.AssertError(t, resp.StatusCode, body, http.StatusServiceUnavailable, loyalty.EUNAVAILABLE)

	// The same refusal through the agents' dialer carries the hub's explanation.
	_, err = (&ws.Dialer{}).Dial(context.Background(), srv.SyncURL())
	var he *ws.HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "max_sync_sessions") {
		t.Errorf("ws.Dialer over the cap: %v, want a HandshakeError with 503 naming max_sync_sessions", err)
	}

	first.Close()
	srvWait(t, "s1's session ended", func() (bool, string) {
		return fx.Sync.Sessions() == 0, "sessions: " + strconv.Itoa(fx.Sync.Sessions())
	})
	srvSession(t, d, srv.SyncURL(), "s2", fx.Tokens["s2"], nil)
}

// TestSessionOutlivesHTTPTimeouts: the HTTP server's read and write timeouts set deadlines on a
// connection that outlive the websocket upgrade; a sync session must not be cut by them. The
// session below stays up until the hub has pinged it well after every HTTP deadline passed,
// then still answers a request, over plain HTTP and over TLS.
func TestSessionOutlivesHTTPTimeouts(t *testing.T) {
	// Pings far apart enough that a busy machine does not miss one (the hub drops a session
	// silent for 2.5 ping intervals), HTTP timeouts well inside the wait.
	const timeout, ping = 100 * time.Millisecond, 200 * time.Millisecond
	lim := hub.Limits{ReadHeaderTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout, IdleTimeout: timeout}
	ca := testca.MustNew(t, "session test CA")
	for _, useTLS := range []bool{false, true} {
		name := map[bool]string{false: "ws", true: "wss"}[useTLS]
		t.Run(name, func(t *testing.T) {
			fx := newBadFixture(t)
			var certFile, keyFile string
			d := &websocket.Dialer{HandshakeTimeout: srvSafety}
			if useTLS {
				certFile, keyFile = srvWriteLeaf(t, ca.MustIssue(t, "127.0.0.1"))
				d.TLSClientConfig = &tls.Config{RootCAs: ca.Pool()}
			}
			srv := srvOpen(t, fx.biTestHub, lim, ping, certFile, keyFile)
			if !strings.HasPrefix(srv.SyncURL(), name+"://") {
				t.Fatalf("SyncURL %s, want %s://", srv.SyncURL(), name)
			}
			var pinged atomic.Int64
			c, msgs, errc := srvSession(t, d, srv.SyncURL(), "s1", fx.Tokens["s1"], &pinged)
			upgraded := time.Now()
			late := upgraded.Add(6 * timeout) // every HTTP deadline set before the upgrade has long passed
			srvWait(t, "a ping from the hub after the HTTP deadlines passed", func() (bool, string) {
				select {
				case err := <-errc:
					t.Fatalf("the session ended %s after the upgrade: %v", time.Since(upgraded), err)
				default:
				}
				return time.Unix(0, pinged.Load()).After(late), "last ping " + time.Unix(0, pinged.Load()).Sub(upgraded).String() + " after the upgrade"
			})
			srvSend(t, c, &lsync.Message{Type: lsync.TypePing, ID: 9, Ping: &lsync.Ping{SentAt: time.Now().UnixMilli()}})
			if m := srvNext(t, msgs, errc); m.Type != lsync.TypePong || m.ID != 9 {
				t.Errorf("got %s id %d, want pong id 9", m.Type, m.ID)
			}
		})
	}
}

func srvWriteLeaf(t *testing.T, l *testca.Leaf) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "hub.crt"), filepath.Join(dir, "hub.key")
	if err := l.Write(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestServerTLS: the hub serves HTTPS and wss:// from the two files, refuses TLS below 1.2, and
// takes a replaced certificate at the next handshake; a half-replaced pair keeps the old one.
func TestServerTLS(t *testing.T) {
	fx := newBadFixture(t)
	ca := testca.MustNew(t, "hub test CA")
	first := ca.MustIssue(t, "127.0.0.1", "localhost")
	certFile, keyFile := srvWriteLeaf(t, first)
	srv := srvOpen(t, fx.biTestHub, hub.Limits{}, 0, certFile, keyFile)
	if !srv.TLS() || !strings.HasPrefix(srv.URL(), "https://") || !strings.HasPrefix(srv.SyncURL(), "wss://") {
		t.Fatalf("TLS %v, URL %s, SyncURL %s; want https and wss", srv.TLS(), srv.URL(), srv.SyncURL())
	}
	trust := &tls.Config{RootCAs: ca.Pool()}

	served := func() (*big.Int, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: srvSafety}, "tcp", srv.ListenAddr(), trust)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
	}
	if got, err := served(); err != nil || got.Cmp(first.Cert.SerialNumber) != 0 {
		t.Fatalf("first handshake: serial %v, %v; want %v", got, err, first.Cert.SerialNumber)
	}

	// The API over HTTPS, trusting the CA; plain HTTP to the TLS port is refused.
	client := &http.Client{Timeout: srvSafety, Transport: &http.Transport{TLSClientConfig: trust}}
	resp, err := client.Get(srv.URL() + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz over HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz over HTTPS: %d", resp.StatusCode)
	}
	if status, _ := biHTTPDo(t, "GET", "http://"+srv.ListenAddr()+"/healthz", "", ""); status != http.StatusBadRequest {
		t.Errorf("plain HTTP to the TLS port: %d, want 400", status)
	}

	// TLS 1.1 is refused.
	old := trust.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if c, err := tls.DialWithDialer(&net.Dialer{Timeout: srvSafety}, "tcp", srv.ListenAddr(), old); err == nil {
		c.Close()
		t.Error("a TLS 1.1 handshake succeeded; want TLS 1.2 at least")
	}

	// Agents: wss:// with the CA works; with the system's roots the certificate is refused.
	conn, err := (&ws.Dialer{TLS: trust}).Dial(context.Background(), srv.SyncURL())
	if err != nil {
		t.Fatalf("ws.Dialer with the CA: %v", err)
	}
	conn.Close()
	_, err = (&ws.Dialer{}).Dial(context.Background(), srv.SyncURL())
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("ws.Dialer with the system roots: %v, want x509.UnknownAuthorityError", err)
	}

	// A renewed certificate: the next handshakes see it, with no restart.
	second := ca.MustIssue(t, "127.0.0.1", "localhost")
	if err := second.Write(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	srvWait(t, "the replaced certificate served", func() (bool, string) {
		got, err := served()
		if err != nil {
			t.Fatalf("handshake after the replacement: %v", err)
		}
		if got.Cmp(first.Cert.SerialNumber) != 0 && got.Cmp(second.Cert.SerialNumber) != 0 {
			t.Fatalf("served serial %v, neither the first nor the second certificate", got)
		}
		return got.Cmp(second.Cert.SerialNumber) == 0, "still the first certificate"
	})

	// Half replaced (a new certificate, the old key): the hub keeps serving the last good pair,
	// and takes the new one once its key arrives.
	third := ca.MustIssue(t, "127.0.0.1", "localhost")
	if err := os.WriteFile(certFile, third.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := served(); err != nil || got.Cmp(second.Cert.SerialNumber) != 0 {
		t.Errorf("with a certificate and a key that do not match: serial %v, %v; want the previous certificate %v", got, err, second.Cert.SerialNumber)
	}
	if err := os.WriteFile(keyFile, third.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	srvWait(t, "the completed pair served", func() (bool, string) {
		got, err := served()
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return got.Cmp(third.Cert.SerialNumber) == 0, "serial " + got.String()
	})
}

// TestServerTLSOpenErrors: a missing or mismatched pair stops Open with a message naming the keys.
func TestServerTLSOpenErrors(t *testing.T) {
	th := MustOpenBIHub(t)
	ca := testca.MustNew(t, "hub test CA")
	certFile, keyFile := srvWriteLeaf(t, ca.MustIssue(t))
	_, otherKey := srvWriteLeaf(t, ca.MustIssue(t))
	for _, tt := range []struct{ name, cert, key string }{
		{"key missing", certFile, ""},
		{"no such file", certFile + ".nope", keyFile},
		{"another certificate's key", certFile, otherKey},
	} {
		srv := &hub.Server{Hub: th.Hub, Sync: th.Sync, Addr: "127.0.0.1:0", AdminKey: biAdminKey, Logger: th.Hub.Logger,
			TLSCertFile: tt.cert, TLSKeyFile: tt.key}
		err := srv.Open()
		if err == nil {
			srv.Close()
			t.Errorf("%s: Open succeeded", tt.name)
		} else if !strings.Contains(err.Error(), "tls.cert_file") || !strings.Contains(err.Error(), "tls.key_file") {
			t.Errorf("%s: %v, want a message naming tls.cert_file and tls.key_file", tt.name, err)
		}
	}
}

// TestServerCloseCutsOffAfterTheGrace: a shutdown waits for the requests under way as long as an
// answer may take (http.write_timeout), then closes their connections and returns without an
// error, so that the process exits 0 and the database is closed after them. Before, it waited a
// fixed 5 seconds and then returned the deadline's error (the hub exited 1, a failed unit to
// systemd) with the request still running.
func TestServerCloseCutsOffAfterTheGrace(t *testing.T) {
	th := MustOpenBIHub(t)
	srv := srvOpen(t, th, hub.Limits{WriteTimeout: 200 * time.Millisecond, ReadTimeout: time.Hour}, 0, "", "")
	underWay, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	var once sync.Once
	srv.SetUploadHook(func() { // the upload's handler stays under way, whatever its deadlines
		once.Do(func() { close(underWay) })
		<-release
	})
	conn, err := net.Dial("tcp", srv.ListenAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/imports?import_id=slow&reason=slow+upload HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: text/csv\r\nContent-Length: 1000000\r\n\r\nmember_id,points\nm1,5\n", biAdminKey)
	select {
	case <-underWay:
	case <-time.After(srvSafety):
		t.Fatal("the upload did not start")
	}
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("close with an upload under way: %v; want nil once the grace is over", err)
		}
	case <-time.After(srvSafety):
		t.Fatal("close did not return")
	}
	// The upload's connection was closed under it: a read ends at once.
	conn.SetReadDeadline(time.Now().Add(srvSafety))
	if _, err := io.ReadAll(conn); err != nil {
		t.Errorf("the upload's connection: %v; want it closed by the hub", err)
	}
}
