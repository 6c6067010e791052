// Package faultnet is a cuttable network link on 127.0.0.1 for the demo and end-to-end tests:
// a TCP proxy that stands in for a store's connection to the hub.
package faultnet

import (
	"io"
	"net"
	"sync"
)

// Link is a TCP proxy on 127.0.0.1 standing in for a store's network connection: Cut drops
// every connection and refuses new ones until Heal.
type Link struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// NewLink starts a link to target (host:port).
func NewLink(target string) (*Link, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &Link{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Addr returns the address to dial instead of the target.
func (l *Link) Addr() string { return l.ln.Addr().String() }

func (l *Link) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		down := l.down
		l.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", l.target)
		if err != nil {
			c.Close()
			continue
		}
		l.track(c, up)
		l.wg.Add(2)
		go l.pipe(c, up)
		go l.pipe(up, c)
	}
}

func (l *Link) track(cs ...net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cs {
		l.conns[c] = struct{}{}
	}
}

func (l *Link) pipe(dst, src net.Conn) {
	defer l.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Cut drops all connections and refuses new ones.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = true
	for c := range l.conns {
		c.Close()
	}
	clear(l.conns)
}

// Heal accepts connections again.
func (l *Link) Heal() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = false
}

// Close stops the link and waits for its goroutines.
func (l *Link) Close() error {
	err := l.ln.Close()
	l.Cut()
	l.wg.Wait()
	return err
}
