// Package connlimit keeps an HTTP server's connections within a budget, such
// as what its open-files limit leaves once its database and files are
// served.
//
// A hub with 10,000 agents holds one connection per agent for its
// desired-state long-poll and more for their reports, fetches and idle
// keep-alive connections. Past the process's open-files limit, accept fails
// (the server retries it in a loop) and so does opening a blob or a database
// file for the requests already accepted: they are answered 500. A Limiter
// accepts a connection only while fewer than its budget are open; at the
// budget it first closes the connection idle the longest, once it has been
// idle for MinIdle (an HTTP/1.1 server may close an idle keep-alive
// connection at any time, and the client opens another; one idle for less
// is likely between two requests of a client about to send the second), and
// otherwise it waits, the new connection queued by the kernel, until one
// closes or has been idle long enough.
//
// Serve on Listener(ln) with ConnState as the server's ConnState hook.
package connlimit

import (
	"container/list"
	"net"
	"net/http"
	"sync"
	"time"

	"outpost.dev/outpost/internal/clock"
)

// DefaultMinIdle is Options.MinIdle when zero.
const DefaultMinIdle = time.Second

// Options configures a Limiter.
type Options struct {
	// MinIdle is how long a connection must have been idle before the
	// Limiter closes it to make room; zero means DefaultMinIdle.
	MinIdle time.Duration
	// Clock times idleness; nil means the real clock.
	Clock clock.Clock
}

// Limiter keeps the connections of a server within a budget. It is safe
// for concurrent use.
type Limiter struct {
	max     int
	minIdle time.Duration
	clock   clock.Clock

	mu      sync.Mutex
	open    int
	peak    int       // the most open at once
	idle    list.List // of *conn, idle the longest first
	changed chan struct{}
}

// New returns a Limiter that keeps at most max connections open.
func New(max int, opts Options) *Limiter {
	if opts.MinIdle <= 0 {
		opts.MinIdle = DefaultMinIdle
	}
	return &Limiter{max: max, minIdle: opts.MinIdle, clock: clock.OrReal(opts.Clock), changed: make(chan struct{})}
}

// Open returns how many connections are open.
func (l *Limiter) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *Limiter) peakOpen() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peak
}

// Listener returns ln, accepting only within the budget.
func (l *Limiter) Listener(ln net.Listener) net.Listener {
	return &listener{Listener: ln, l: l, closed: make(chan struct{})}
}

// ConnState is the server's http.Server.ConnState hook: it tells the
// Limiter which connections are idle.
func (l *Limiter) ConnState(c net.Conn, state http.ConnState) {
	lc, ok := find(c)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.idle != nil {
		l.idle.Remove(lc.idle)
		lc.idle = nil
	}
	if state == http.StateIdle && !lc.closed {
		lc.idle, lc.idleSince = l.idle.PushBack(lc), l.clock.Now()
		l.broadcastLocked() // an Accept waiting for room may close it
	}
}

// broadcastLocked wakes an Accept waiting for room.
func (l *Limiter) broadcastLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// find finds the Limiter's connection under c (a *tls.Conn, say).
func find(c net.Conn) (*conn, bool) {
	for c != nil {
		if lc, ok := c.(*conn); ok {
			return lc, true
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, false
		}
		c = u.NetConn()
	}
	return nil, false
}

// admit waits until a connection may open, closing the one idle the longest
// when the budget is spent and it has been idle for MinIdle. It returns
// false when stop closes first.
func (l *Limiter) admit(stop <-chan struct{}) bool {
	for {
		l.mu.Lock()
		if l.open < l.max {
			l.open++
			l.peak = max(l.peak, l.open)
			l.mu.Unlock()
			return true
		}
		var victim *conn
		var wait time.Duration = -1 // until something changes
		if e := l.idle.Front(); e != nil {
			c := e.Value.(*conn)
			if idle := clock.Since(l.clock, c.idleSince); idle >= l.minIdle {
				l.idle.Remove(e)
				c.idle, victim = nil, c
			} else {
				wait = l.minIdle - idle
			}
		}
		changed := l.changed
		l.mu.Unlock()
		if victim != nil {
			_ = victim.Close() // frees its place
			continue
		}
		var timer clock.Timer
		var timeout <-chan time.Time
		if wait >= 0 {
			timer = l.clock.NewTimer(wait)
			timeout = timer.C()
		}
		stopped := false
		select {
		case <-changed:
		case <-timeout:
		case <-stop:
			stopped = true
		}
		if timer != nil {
			timer.Stop()
		}
		if stopped {
			return false
		}
	}
}

// release frees the place of a connection that closed, or of one that was
// not accepted after all.
func (l *Limiter) release(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c != nil {
		c.closed = true
		if c.idle != nil {
			l.idle.Remove(c.idle)
			c.idle = nil
		}
	}
	l.open--
	l.broadcastLocked()
}

type listener struct {
	net.Listener
	l         *Limiter
	closeOnce sync.Once
	closed    chan struct{}
}

func (ln *listener) Accept() (net.Conn, error) {
	if !ln.l.admit(ln.closed) {
		return nil, net.ErrClosed
	}
	c, err := ln.Listener.Accept()
	if err != nil {
		ln.l.release(nil)
		return nil, err
	}
	return &conn{Conn: c, l: ln.l}, nil
}

func (ln *listener) Close() error {
	ln.closeOnce.Do(func() { close(ln.closed) })
	return ln.Listener.Close()
}

// conn is an accepted connection, counted until it closes.
type conn struct {
	net.Conn
	l *Limiter

	// Guarded by l.mu.
	idle      *list.Element
	idleSince time.Time
	closed    bool

	once sync.Once
}

// NetConn returns the connection it wraps.
func (c *conn) NetConn() net.Conn { return c.Conn }

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c) })
	return err
}
