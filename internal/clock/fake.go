package clock

import (
	"context"
	"sync"
	"time"
)

// Fake is a Clock that moves only when told to, for tests of code that
// waits, retries or keeps deadlines. Its timers and tickers fire, in order
// of their deadlines, as Advance passes them. It is safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	timers  map[*fakeTimer]struct{} // pending
	changed chan struct{}           // closed and replaced when a timer is added
}

// NewFake returns a Fake clock reading t.
func NewFake(t time.Time) *Fake {
	return &Fake{now: t, timers: map[*fakeTimer]struct{}{}, changed: make(chan struct{})}
}

var _ Clock = (*Fake)(nil)

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer that fires when the fake time reaches d from now.
func (f *Fake) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{f: f, ch: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// NewTicker returns a ticker that fires every d of fake time.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	t := &fakeTimer{f: f, ch: make(chan time.Time, 1), period: d}
	t.Reset(d)
	return tickerOf{t}
}

// Advance moves the fake time forward by d, firing every timer and tick
// due on the way, each with the time it was due.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	end := f.now.Add(d)
	for {
		var next *fakeTimer
		for t := range f.timers {
			if !t.when.After(end) && (next == nil || t.when.Before(next.when)) {
				next = t
			}
		}
		if next == nil {
			break
		}
		if next.when.After(f.now) {
			f.now = next.when
		}
		select {
		case next.ch <- f.now:
		default: // a tick nobody read yet: dropped, as time.Ticker does
		}
		if next.period > 0 {
			next.when = next.when.Add(next.period)
		} else {
			delete(f.timers, next)
		}
	}
	f.now = end
}

// Pending returns how many timers and tickers are waiting to fire.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

// WaitPending blocks until at least n timers and tickers are waiting to
// fire, so a test advances the clock only once the code under test is
// waiting on it. It returns ctx's error if ctx ends first.
func (f *Fake) WaitPending(ctx context.Context, n int) error {
	for {
		f.mu.Lock()
		have, changed := len(f.timers), f.changed
		f.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// fakeTimer is a Timer, or with a period a Ticker, of a Fake clock.
type fakeTimer struct {
	f      *Fake
	ch     chan time.Time
	period time.Duration // > 0 for a ticker
	when   time.Time     // guarded by f.mu
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	_, pending := t.f.timers[t]
	delete(t.f.timers, t)
	return pending
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.f.mu.Lock()
	_, pending := t.f.timers[t]
	if t.period > 0 && d > 0 {
		t.period = d
	}
	t.when = t.f.now.Add(d)
	t.f.timers[t] = struct{}{}
	close(t.f.changed)
	t.f.changed = make(chan struct{})
	t.f.mu.Unlock()
	if d <= 0 {
		t.f.Advance(0)
	}
	return pending
}

var (
	_ Timer  = (*fakeTimer)(nil)
	_ Ticker = tickerOf{}
)

// tickerOf is a fakeTimer with a period, as a Ticker.
type tickerOf struct{ *fakeTimer }

func (t tickerOf) Stop()                 { t.fakeTimer.Stop() }
func (t tickerOf) Reset(d time.Duration) { t.fakeTimer.Reset(d) }
