package main

import (
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestListenMetrics_PortInUse: a metrics.listen whose port is taken names the setting to change,
// rather than a bare "address already in use" an operator would take for the API's listen.
func TestListenMetrics_PortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ln, err := listenMetrics(taken.Addr().String())
	if err == nil {
		ln.Close()
		t.Fatal("listened on a port in use")
	}
	for _, want := range []string{taken.Addr().String(), "metrics.listen", "LOYALTY_METRICS_LISTEN", "in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := listenMetrics("127.0.0.1:99999"); err == nil || !strings.Contains(err.Error(), "metrics.listen") {
		t.Errorf("a bad port: %v", err)
	}
	if ln, err := listenMetrics(""); ln != nil || err != nil {
		t.Errorf(`"": %v, %v; want no listener and no error`, ln, err)
	}
}

// TestServeMetrics_BoundsEachConnection: the metrics listener (no key, often reachable from a
// monitoring network) closes a connection that idles between requests or is slow to send one,
// and takes small headers. It had no idle or read deadline: a client that asked once and idled
// held its connection, a goroutine and a file descriptor of the hub or agent for good.
func TestServeMetrics_BoundsEachConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := serveMetrics(ln, http.NotFoundHandler(), slog.New(slog.DiscardHandler))
	defer s.Close()
	if srv := s.srv; srv.IdleTimeout <= 0 || srv.ReadTimeout <= 0 || srv.ReadHeaderTimeout <= 0 || srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 64<<10 {
		t.Errorf("metrics server: idle timeout %v, read timeout %v, header timeout %v, header bytes %d; want each bounded",
			srv.IdleTimeout, srv.ReadTimeout, srv.ReadHeaderTimeout, srv.MaxHeaderBytes)
	}
}
