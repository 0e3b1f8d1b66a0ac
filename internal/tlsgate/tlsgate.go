// Package tlsgate bounds how many TLS handshakes a server computes at once.
//
// When thousands of clients connect together (a fleet starting, or coming
// back after its hub restarted), a server that starts every handshake at
// once shares its CPU among all of them: each takes longer than its client
// waits (Go's HTTP clients give a handshake 10 s), the clients give up and
// connect again, and the server spends its CPU on handshakes nobody waits
// for any more, while its accept loop and its requests queue behind them.
//
// A Gate lets a few handshakes at a time do their expensive part (the key
// exchange and the certificate signature, between reading the client's
// hello and writing the server's answer), the newest first, and refuses,
// before that work, a handshake whose connection has waited longer than
// MaxWait since it was accepted: the handshakes it computes are those whose
// clients still wait. Reading the client's hello and waiting for its last
// message hold no slot, so slow clients cannot block the gate.
//
// Use both halves: serve on Listener(ln), with Config(cfg) as the TLS
// configuration.
package tlsgate

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"runtime"
	"sync"
	"time"

	"outpost.dev/outpost/internal/clock"
)

// DefaultMaxWait is Options.MaxWait when zero: half of the 10 s Go's HTTP
// clients give a TLS handshake, the rest being for the queue before the
// server accepted the connection and for the round trips.
const DefaultMaxWait = 5 * time.Second

// ErrTooLate is the handshake error of a connection that waited longer than
// MaxWait for a slot; the client sees the handshake fail.
var ErrTooLate = errors.New("tlsgate: handshake waited too long for the server")

// Options configures a Gate.
type Options struct {
	// Slots is how many handshakes compute at once; zero means twice
	// runtime.GOMAXPROCS.
	Slots int
	// MaxWait is how long after it was accepted a connection may still
	// start its handshake; zero means DefaultMaxWait.
	MaxWait time.Duration
	// Clock times the waits; nil means the real clock.
	Clock clock.Clock
}

// Gate bounds the handshakes a TLS server computes at once. It is safe for
// concurrent use.
type Gate struct {
	slots   int
	maxWait time.Duration
	clock   clock.Clock

	mu      sync.Mutex
	busy    int       // slots held
	waiters []*waiter // newest last; entries that gave up are skipped
	gone    int       // waiters that gave up and are still listed
}

// waiter is a handshake waiting for a slot.
type waiter struct {
	granted chan struct{} // closed when the slot passes to it
	done    bool          // granted, or gave up: no longer waiting
}

// New returns a Gate.
func New(opts Options) *Gate {
	if opts.Slots <= 0 {
		opts.Slots = 2 * runtime.GOMAXPROCS(0)
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultMaxWait
	}
	return &Gate{slots: opts.Slots, maxWait: opts.MaxWait, clock: clock.OrReal(opts.Clock)}
}

// acquire takes a slot for a handshake on a connection accepted at
// accepted: at once if one is free and nobody waits, else when one passes to
// it (the newest waiter gets it first). It fails with ErrTooLate when the
// connection is, or grows, older than MaxWait first, and with ctx's error
// when ctx ends.
func (g *Gate) acquire(ctx context.Context, accepted time.Time) error {
	g.mu.Lock()
	if g.busy < g.slots && len(g.waiters) == g.gone {
		g.busy++
		g.mu.Unlock()
		return nil
	}
	left := g.maxWait - clock.Since(g.clock, accepted)
	if left <= 0 {
		g.mu.Unlock()
		return ErrTooLate
	}
	w := &waiter{granted: make(chan struct{})}
	g.waiters = append(g.waiters, w)
	g.mu.Unlock()

	t := g.clock.NewTimer(left)
	defer t.Stop()
	var err error
	select {
	case <-w.granted:
		return nil
	case <-t.C():
		err = ErrTooLate
	case <-ctx.Done():
		err = ctx.Err()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if w.done { // the slot came as it gave up: pass it on
		g.releaseLocked()
		return err
	}
	w.done = true
	g.gone++
	g.compactLocked()
	return err
}

// release gives back a slot: to the newest waiter, if any.
func (g *Gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.releaseLocked()
}

func (g *Gate) releaseLocked() {
	for len(g.waiters) > 0 {
		w := g.waiters[len(g.waiters)-1]
		g.waiters[len(g.waiters)-1] = nil
		g.waiters = g.waiters[:len(g.waiters)-1]
		if w.done {
			g.gone--
			continue
		}
		w.done = true
		close(w.granted)
		return // the slot passes on: busy stays
	}
	g.busy--
}

// compactLocked drops the waiters that gave up once they are most of the list.
func (g *Gate) compactLocked() {
	if g.gone < 64 || g.gone < len(g.waiters)/2 {
		return
	}
	kept := g.waiters[:0]
	for _, w := range g.waiters {
		if !w.done {
			kept = append(kept, w)
		}
	}
	clear(g.waiters[len(kept):])
	g.waiters, g.gone = kept, 0
}

// Config returns a copy of cfg whose handshakes, on connections from
// Listener, take a slot of the gate before their expensive part. A
// GetConfigForClient of cfg is called once the slot is held.
func (g *Gate) Config(cfg *tls.Config) *tls.Config {
	cfg = cfg.Clone()
	next := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if c, ok := hello.Conn.(*conn); ok {
			if err := c.acquire(hello.Context()); err != nil {
				return nil, err
			}
		}
		if next != nil {
			return next(hello)
		}
		return nil, nil
	}
	return cfg
}

// Listener returns ln whose connections the gate knows: when each was
// accepted, and that the server's first write ends its handshake's
// expensive part.
func (g *Gate) Listener(ln net.Listener) net.Listener { return &listener{Listener: ln, g: g} }

type listener struct {
	net.Listener
	g *Gate
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, g: l.g, accepted: l.g.clock.Now()}, nil
}

// conn is an accepted connection; it holds a slot from its handshake's
// GetConfigForClient until its first write (the server's answer) or close.
type conn struct {
	net.Conn
	g        *Gate
	accepted time.Time

	mu      sync.Mutex
	holding bool
	wrote   bool
}

// NetConn returns the connection it wraps.
func (c *conn) NetConn() net.Conn { return c.Conn }

func (c *conn) acquire(ctx context.Context) error {
	c.mu.Lock()
	started := c.holding || c.wrote
	c.mu.Unlock()
	if started {
		return nil
	}
	if err := c.g.acquire(ctx, c.accepted); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.wrote { // closed while it waited
		c.g.release()
		return net.ErrClosed
	}
	c.holding = true
	return nil
}

func (c *conn) releaseSlot() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wrote = true
	if c.holding {
		c.holding = false
		c.g.release()
	}
}

func (c *conn) Write(b []byte) (int, error) {
	c.releaseSlot()
	return c.Conn.Write(b)
}

func (c *conn) Close() error {
	c.releaseSlot()
	return c.Conn.Close()
}
