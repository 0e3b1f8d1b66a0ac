// Package linksim simulates a poor network link for tests, benchmarks and
// the demo: a TCP proxy on the loopback interface that forwards every
// connection to a target and can partition, delay, throttle, corrupt and
// cut the bytes that cross it, counting what it forwards.
//
// All controls are safe to call from any goroutine at any time and apply
// to open connections as well as new ones. "Up" is the direction from the
// client to the target, "down" the direction from the target back to the
// client.
package linksim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults used when Options leaves a field zero.
const (
	DefaultBufferSize  = 32 << 10
	DefaultQueueLength = 256
	DefaultDialTimeout = 5 * time.Second
)

// Options configures a Link. The zero value is a perfect link.
type Options struct {
	// Latency is the initial one-way delay added in each direction.
	Latency time.Duration
	// Bandwidth is the initial rate limit in bytes per second in each
	// direction; 0 means unlimited.
	Bandwidth int64
	// BufferSize is the largest chunk read and forwarded at once
	// (default DefaultBufferSize).
	BufferSize int
	// QueueLength is how many chunks may be in flight per direction of a
	// connection while they wait out the latency (default
	// DefaultQueueLength). Throughput under latency is bounded by
	// QueueLength*BufferSize per latency period, like a TCP window.
	QueueLength int
	// DialTimeout bounds connecting to the target (default DefaultDialTimeout).
	DialTimeout time.Duration
}

// Stats counts what a Link did since it started or since ResetStats.
type Stats struct {
	// Up and Down are bytes forwarded to the target and to the client.
	// A chunk is counted as it is handed to the socket, so a reader that
	// has received bytes always finds them counted.
	Up, Down int64
	// Conns is the number of connections accepted and forwarded.
	Conns int64
	// Refused is the number of connections accepted and closed at once
	// because the link was partitioned.
	Refused int64
	// Cut is the number of open connections closed by the link itself,
	// by Partition or CutDownAfter.
	Cut int64
	// Corrupted is the number of bytes in which CorruptDown flipped a bit.
	Corrupted int64
}

// Link is a running fault-injecting TCP proxy. Create one with Listen and
// stop it with Close.
type Link struct {
	target string
	opts   Options
	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	latency atomic.Int64 // time.Duration
	up      pacer
	down    pacer

	mu          sync.Mutex
	conns       map[*conn]struct{}
	partitioned bool
	closed      bool
	corrupt     corrupter
	cut         cutter

	nUp, nDown, nConns, nRefused, nCut, nCorrupted atomic.Int64
}

// Listen starts a Link on 127.0.0.1 at a free port that forwards each
// connection it accepts to target (host:port).
func Listen(target string, opts Options) (*Link, error) {
	if opts.BufferSize <= 0 {
		opts.BufferSize = DefaultBufferSize
	}
	if opts.QueueLength <= 0 {
		opts.QueueLength = DefaultQueueLength
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("linksim: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Link{
		target: target,
		opts:   opts,
		ln:     ln,
		ctx:    ctx,
		cancel: cancel,
		conns:  make(map[*conn]struct{}),
		cut:    cutter{left: -1},
	}
	l.SetLatency(opts.Latency)
	l.SetBandwidth(opts.Bandwidth)
	l.wg.Add(1)
	go l.serve()
	return l, nil
}

// Addr returns the host:port clients should connect to.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// Target returns the address the link forwards to.
func (l *Link) Target() string { return l.target }

// Close stops listening, closes every open connection and waits until all
// of the link's goroutines have returned.
func (l *Link) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	err := l.ln.Close()
	l.cancel()
	for c := range l.conns {
		c.kill(nil)
	}
	l.mu.Unlock()
	l.wg.Wait()
	if err != nil {
		return fmt.Errorf("linksim: close: %w", err)
	}
	return nil
}

// Partition with on set closes every open connection, both sides, and
// makes the link accept and close new connections at once until it is
// called with on unset, which heals the link.
func (l *Link) Partition(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partitioned = on
	if on {
		l.cutAllLocked()
	}
}

// Partitioned reports whether the link is partitioned.
func (l *Link) Partitioned() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.partitioned
}

// SetLatency sets the one-way delay added to each chunk in each direction;
// it applies to bytes read from then on. Latency does not limit
// throughput: chunks in flight are queued with their delivery time.
func (l *Link) SetLatency(d time.Duration) {
	l.latency.Store(int64(max(d, 0)))
}

// SetBandwidth sets the rate limit in bytes per second in each direction,
// shared by all connections of the link; 0 (or less) means unlimited. It
// applies to chunks read from then on, and a chunk is at most about a
// sixteenth of a second's worth of bytes.
func (l *Link) SetBandwidth(bytesPerSec int64) {
	l.up.setRate(bytesPerSec)
	l.down.setRate(bytesPerSec)
}

// CorruptDown flips one bit in every everyN-th byte flowing down, counting
// from this call: bytes everyN-1, 2*everyN-1, ... of the down stream (all
// connections together) are corrupted. 0 (or less) turns corruption off.
func (l *Link) CorruptDown(everyN int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.corrupt = corrupter{every: max(everyN, 0)}
}

// CutDownAfter arms a one-shot cut: once n more bytes have been written
// down (all connections together), every open connection is closed,
// exactly after the n-th byte. The link stays up for new connections.
// n == 0 cuts the open connections now; n < 0 disarms a pending cut.
func (l *Link) CutDownAfter(n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n == 0 {
		l.cut = cutter{left: -1}
		l.cutAllLocked()
		return
	}
	l.cut = cutter{left: max(n, -1)}
}

// Stats returns the counters.
func (l *Link) Stats() Stats {
	return Stats{
		Up:        l.nUp.Load(),
		Down:      l.nDown.Load(),
		Conns:     l.nConns.Load(),
		Refused:   l.nRefused.Load(),
		Cut:       l.nCut.Load(),
		Corrupted: l.nCorrupted.Load(),
	}
}

// ResetStats sets every counter to zero.
func (l *Link) ResetStats() {
	for _, c := range []*atomic.Int64{&l.nUp, &l.nDown, &l.nConns, &l.nRefused, &l.nCut, &l.nCorrupted} {
		c.Store(0)
	}
}

// cutAllLocked closes every open connection; l.mu must be held.
func (l *Link) cutAllLocked() {
	for c := range l.conns {
		c.kill(&l.nCut)
		delete(l.conns, c)
	}
}

// serve accepts connections until the listener is closed.
func (l *Link) serve() {
	defer l.wg.Done()
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient accept error (e.g. out of file descriptors):
			// back off briefly rather than spin.
			select {
			case <-l.ctx.Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		l.mu.Lock()
		refuse := l.partitioned || l.closed
		if !refuse {
			l.wg.Add(1)
		}
		l.mu.Unlock()
		if refuse {
			l.nRefused.Add(1)
			nc.Close()
			continue
		}
		go l.handle(nc)
	}
}

// handle dials the target for client and forwards between the two.
func (l *Link) handle(client net.Conn) {
	defer l.wg.Done()
	ctx, cancel := context.WithTimeout(l.ctx, l.opts.DialTimeout)
	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", l.target)
	cancel()
	if err != nil {
		client.Close()
		return
	}
	c := &conn{client: client, server: server, done: make(chan struct{})}
	l.mu.Lock()
	if l.partitioned || l.closed {
		l.mu.Unlock()
		l.nRefused.Add(1)
		c.kill(nil)
		return
	}
	l.conns[c] = struct{}{}
	l.mu.Unlock()
	l.nConns.Add(1)

	var readers, writers sync.WaitGroup
	upQ := make(chan chunk, l.opts.QueueLength)
	downQ := make(chan chunk, l.opts.QueueLength)
	readers.Add(2)
	writers.Add(2)
	go func() { defer readers.Done(); l.read(c, client, upQ, &l.up) }()
	go func() { defer readers.Done(); l.read(c, server, downQ, &l.down) }()
	go func() { defer writers.Done(); l.write(c, server, upQ, nil, &l.nUp) }()
	go func() { defer writers.Done(); l.write(c, client, downQ, l.shapeDown, &l.nDown) }()
	writers.Wait()
	c.kill(nil)
	readers.Wait()

	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// chunk is a run of bytes in flight with the time it is due to arrive.
type chunk struct {
	b   []byte
	due time.Time
}

// read reads chunks from src, paces them by p, stamps them with their
// delivery time and queues them. It closes q at end of stream; any other
// error kills the connection.
func (l *Link) read(c *conn, src net.Conn, q chan<- chunk, p *pacer) {
	defer close(q)
	buf := make([]byte, l.opts.BufferSize)
	for {
		n, err := src.Read(buf[:p.chunkSize(len(buf))])
		if n > 0 {
			if !sleep(c.done, p.reserve(n, time.Now())) {
				return
			}
			ch := chunk{b: append([]byte(nil), buf[:n]...), due: time.Now().Add(time.Duration(l.latency.Load()))}
			select {
			case q <- ch:
			case <-c.done:
				return
			}
		}
		if err != nil {
			if !isEOF(err) {
				c.kill(nil)
			}
			return
		}
	}
}

// write delivers queued chunks to dst when they are due, after shape (if
// any) has had its say, and half-closes dst at end of stream.
func (l *Link) write(c *conn, dst net.Conn, q <-chan chunk, shape func([]byte) (int, bool), count *atomic.Int64) {
	for ch := range q {
		if !sleep(c.done, time.Until(ch.due)) {
			return
		}
		b, cut := ch.b, false
		if shape != nil {
			var keep int
			keep, cut = shape(b)
			b = b[:keep]
		}
		if len(b) > 0 {
			// Count before writing, so that whoever has read the bytes
			// sees them counted; take back what did not go out.
			count.Add(int64(len(b)))
			n, err := dst.Write(b)
			if err != nil {
				count.Add(int64(n - len(b)))
				c.kill(nil)
				return
			}
		}
		if cut {
			l.mu.Lock()
			l.cutAllLocked()
			l.mu.Unlock()
			return
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// shapeDown applies corruption and the armed cut to b, a chunk about to go
// down. It returns how many bytes of b to write and whether to cut all
// connections after writing them.
func (l *Link) shapeDown(b []byte) (keep int, cut bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	keep, cut = l.cut.take(len(b))
	l.nCorrupted.Add(l.corrupt.apply(b[:keep]))
	return keep, cut
}

// isEOF reports whether err is a clean end of stream.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
}

// sleep waits for d unless done closes first; it reports whether the wait
// completed.
func sleep(done <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-done:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return false
	case <-t.C:
		return true
	}
}

// conn is one proxied connection.
type conn struct {
	client, server net.Conn
	once           sync.Once
	done           chan struct{}
}

// kill closes both sides once. If count is not nil and this call is the
// one that closes, it is incremented first, so that whoever sees the
// connection close also sees the count.
func (c *conn) kill(count *atomic.Int64) {
	c.once.Do(func() {
		if count != nil {
			count.Add(1)
		}
		close(c.done)
		c.client.Close()
		c.server.Close()
	})
}
