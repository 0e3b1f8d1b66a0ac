package serving

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"outpost.dev/outpost/internal/clock"
)

// The budget of bytes in flight. Every inference request, on either
// transport, holds a charge against one budget for the memory it brought
// in, from before its body is read until its answer is written:
//
//   - the body as it is read (REST; its Content-Length up front when it
//     declares one, else as it streams) or the message (gRPC, its size);
//   - with it, what decoding will take: two copies of the JSON part of a
//     REST body (the JSON decoder buffers the whole object, and each
//     input's data is copied out of it before it is parsed), and the
//     tensors that binary data, in a REST body or a gRPC message, decode
//     into (as many bytes as the data);
//   - once decoded, its inputs exactly, in place of that estimate;
//   - once run, the outputs asked for, and their encoded answer.
//
// The body, the inputs and the outputs stay charged until the request
// ends: what a request stops using is garbage until the next collection,
// and takes memory until then. A request that would take the budget over
// its total is refused at once, before more of it is read or decoded; one
// that needs more than the whole total on its own gets 413. Outputs are
// never refused, since they exist by then: they are counted, and new
// requests find less room until they are written.
//
// Requests that find no room are refused rather than queued: a waiting
// request would hold its connection, and a client's bytes sit in socket
// buffers anyway; a refusal with Retry-After tells clients, and the load
// balancers in front of them, to back off or go elsewhere, and costs
// nothing to keep.

// DefaultInflightMultiple is how many of the largest requests
// (Config.MaxRequestBytes) fit in the budget of bytes in flight when
// Config.MaxInflightBytes is 0.
const DefaultInflightMultiple = 4

// retryAfter is how long a request refused for want of room is told to
// wait before it tries again.
const retryAfter = time.Second

// burstQuiet is how long the bytes in flight must stay below a quarter of
// the budget, after a burst reached it, before the memory the burst took
// is returned to the operating system.
const burstQuiet = time.Second

// budget bounds the bytes that requests hold at once, and returns memory
// to the operating system after a burst: once the bytes in flight reached
// a quarter of the total and then stayed below it for burstQuiet. Go's
// runtime alone keeps the heap it grew for a burst until its next
// collections, which an idle server does not start for minutes.
type budget struct {
	total        int64
	clk          clock.Clock
	returnMemory func()

	mu      sync.Mutex
	used    int64
	calm    time.Time // when used last fell below burstLevel
	waiting bool      // a goroutine waits for the quiet after a burst
	stopped bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newBudget(total int64, clk clock.Clock, returnMemory func()) *budget {
	return &budget{total: total, clk: clk, returnMemory: returnMemory, stop: make(chan struct{})}
}

// burstLevel is the use from which a burst's memory is returned once it is over.
func (b *budget) burstLevel() int64 { return b.total / 4 }

// inUse returns the bytes that requests hold now.
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// take adds n bytes to a charge that holds held, if they fit.
func (b *budget) take(n, held int64) error {
	if held+n > b.total {
		return &budgetError{status: http.StatusRequestEntityTooLarge,
			msg: fmt.Sprintf("the request needs %d bytes in flight, more than the whole in-flight budget of %d bytes", held+n, b.total)}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.total {
		return &budgetError{status: http.StatusTooManyRequests, retry: retryAfter,
			msg: fmt.Sprintf("the in-flight budget of %d bytes is in use by other requests: this request needs %d bytes more, and %d are free; retry after %v",
				b.total, n, max(b.total-b.used, 0), retryAfter)}
	}
	b.used += n
	return nil
}

// force adds n bytes whether or not they fit.
func (b *budget) force(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used += n
}

// give returns n bytes. When they end a burst, it starts waiting for the
// quiet after it.
func (b *budget) give(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	level := b.burstLevel()
	wasOver := b.used >= level
	b.used -= n
	if !wasOver || b.used >= level {
		return
	}
	b.calm = b.clk.Now()
	if !b.waiting && !b.stopped {
		b.waiting = true
		b.wg.Go(b.waitQuiet)
	}
}

// waitQuiet returns memory once the bytes in flight stayed below
// burstLevel for burstQuiet. A burst that comes and goes meanwhile starts
// the quiet again; one still on when the quiet would end leaves the wait
// to the give that ends it.
func (b *budget) waitQuiet() {
	t := b.clk.NewTimer(burstQuiet)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C():
		}
		b.mu.Lock()
		if b.used >= b.burstLevel() {
			b.waiting = false
			b.mu.Unlock()
			return
		}
		if left := burstQuiet - clock.Since(b.clk, b.calm); left > 0 {
			b.mu.Unlock()
			t.Reset(left)
			continue
		}
		b.waiting = false
		b.mu.Unlock()
		b.returnMemory()
		return
	}
}

// close stops waiting for quiet, and waits for a return of memory under way.
func (b *budget) close() {
	b.mu.Lock()
	if !b.stopped {
		b.stopped = true
		close(b.stop)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// charge starts a request's charge, holding nothing yet.
func (b *budget) charge() *charge { return &charge{b: b} }

// charge is what one request holds of the budget. One goroutine uses it.
type charge struct {
	b       *budget
	held    int64
	scratch int64 // part of held that decoding uses and gives back
}

// take adds n bytes, of which scratch are used only while the request is
// decoded. It returns a *budgetError when they do not fit.
func (c *charge) take(n, scratch int64) error {
	if err := c.b.take(n, c.held); err != nil {
		return err
	}
	c.held += n
	c.scratch += scratch
	return nil
}

// decoded gives back the bytes decoding used and takes inputs, the bytes
// of the decoded tensors, with take's errors when they do not fit.
func (c *charge) decoded(inputs int64) error {
	switch delta := inputs - c.scratch; {
	case delta > 0:
		if err := c.b.take(delta, c.held); err != nil {
			return err
		}
		c.held += delta
	case delta < 0:
		c.b.give(-delta)
		c.held += delta
	}
	c.scratch = 0
	return nil
}

// add adds n bytes that exist already, whether or not they fit.
func (c *charge) add(n int64) {
	c.b.force(n)
	c.held += n
}

// close gives back all the charge holds. It may be called again.
func (c *charge) close() {
	if c.held > 0 {
		c.b.give(c.held)
	}
	c.held, c.scratch = 0, 0
}

// inflightTotal is the budget of a Config: MaxInflightBytes, or
// DefaultInflightMultiple times maxRequest when it is 0.
func inflightTotal(maxInflight, maxRequest int64) int64 {
	if maxInflight > 0 {
		return maxInflight
	}
	if maxRequest > math.MaxInt64/DefaultInflightMultiple {
		return math.MaxInt64
	}
	return DefaultInflightMultiple * maxRequest
}

// decodeScratch is what decoding a REST body of n bytes takes besides the
// body: two copies of its JSON, the first jsonLen bytes (all of it when
// jsonLen < 0), and the tensors its binary tensor data decode into, of as
// many bytes as that data.
func decodeScratch(n, jsonLen int64) int64 {
	if jsonLen < 0 || jsonLen > n {
		return 2 * n
	}
	return 2*jsonLen + (n - jsonLen)
}

// budgetError is a request refused for the budget: 429 when it has no
// room for the request now, 413 when the request needs more than all of it.
type budgetError struct {
	status int
	retry  time.Duration // how long to wait before trying again; 0 for 413
	msg    string
}

func (e *budgetError) Error() string { return e.msg }

// retryAfterOf returns how long a request refused with err should wait
// before it tries again, or 0 when trying again will not help.
func retryAfterOf(err error) time.Duration {
	var be *budgetError
	if errors.As(err, &be) {
		return be.retry
	}
	return 0
}
