package main

import (
	"context"
	"errors"
	"log/slog"
	"testing"
)

// fakeService is a service that, if fail, fails as soon as it is open, as a hub whose serving
// lock a restore took does.
type fakeService struct {
	fail   bool
	failed chan error
	closed int
}

func (f *fakeService) Open(context.Context) error {
	if f.fail {
		f.failed <- errors.New("lost")
	}
	return nil
}
func (f *fakeService) Close() error         { f.closed++; return nil }
func (f *fakeService) logger() *slog.Logger { return slog.New(slog.DiscardHandler) }
func (f *fakeService) Failed() <-chan error { return f.failed }

// TestRunServiceStopsOnFailure: a service that fails is closed, and runService returns its
// error (the process exits with it) without waiting for a signal; a signal closes a service
// that has not failed, with no error.
func TestRunServiceStopsOnFailure(t *testing.T) {
	f := &fakeService{fail: true, failed: make(chan error, 1)}
	if err := runService(context.Background(), f); err == nil || err.Error() != "lost" || f.closed != 1 {
		t.Errorf("runService of a failing service: %v, closed %d times; want its error, closed once", err, f.closed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the signal
	q := &fakeService{failed: make(chan error, 1)}
	if err := runService(ctx, q); err != nil || q.closed != 1 {
		t.Errorf("runService told to stop: %v, closed %d times; want nil, closed once", err, q.closed)
	}
}
