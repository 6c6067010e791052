package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"syscall"
	"time"
)

// MetricsConfig is where a hub or an agent serves its Prometheus metrics (GET /metrics, without
// authentication; docs/OPERATIONS.md): a listener of its own, so that the metrics can stay on an
// internal network or loopback whatever the API's listener is open to. "" serves none.
type MetricsConfig struct {
	Listen string `mapstructure:"listen"`
}

// Validate checks that listen is empty or host:port.
func (c MetricsConfig) Validate() error {
	if c.Listen == "" {
		return nil
	}
	if err := checkListen(c.Listen); err != nil {
		return fmt.Errorf("metrics.%w", err)
	}
	return nil
}

// metricsServer serves GET /metrics on a listener of its own.
type metricsServer struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// listenMetrics binds addr at once (a port in use is an error), or returns nil for "".
func listenMetrics(addr string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("cannot serve metrics on %s: the port is in use (by another hub or agent, or the API's own listen): "+
			"set metrics.listen (LOYALTY_METRICS_LISTEN) to a free port, or empty for no metrics", addr)
	} else if err != nil {
		return nil, fmt.Errorf("cannot serve metrics on %s (metrics.listen, LOYALTY_METRICS_LISTEN): %w", addr, err)
	}
	return ln, nil
}

// metricsIdleTimeout closes a metrics connection that waits this long for its next request: a
// scraper asks every 15 to 60 seconds, and with no deadline a client that asked once and then
// idled held its connection (a goroutine, buffers, a file descriptor) for good.
const metricsIdleTimeout = 2 * time.Minute

// serveMetrics serves metrics on ln (nil: nothing, and a nil server) until Close.
func serveMetrics(ln net.Listener, metrics http.Handler, logger *slog.Logger) *metricsServer {
	if ln == nil {
		return nil
	}
	if host, _, _ := net.SplitHostPort(ln.Addr().String()); !isLoopbackHost(host) {
		logger.Warn("metrics are served without authentication beyond loopback: keep metrics.listen on an internal network",
			slog.String("metrics", ln.Addr().String()))
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	s := &metricsServer{ln: ln, done: make(chan struct{}),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: metricsIdleTimeout, MaxHeaderBytes: 8 << 10}}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("metrics listener stopped", slog.Any("err", err))
		}
	}()
	logger.Info("metrics listening", slog.String("url", "http://"+ln.Addr().String()+"/metrics"))
	return s
}

// Addr returns the bound address ("" when no metrics are served).
func (s *metricsServer) Addr() string {
	if s == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops serving and waits for the server's goroutine.
func (s *metricsServer) Close() error {
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
