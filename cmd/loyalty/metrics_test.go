package main

import (
	"net"
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
