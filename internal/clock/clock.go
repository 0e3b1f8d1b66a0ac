// Package clock is the one source of time of the hub, the agent, the store
// and the registry. Code that reads the time, waits, retries or keeps a
// deadline takes a Clock instead of calling the time package, so that tests
// run it on simulated time: a Fake they advance by hand, or Real inside a
// testing/synctest bubble.
package clock

import (
	"context"
	"time"
)

// Clock tells the time and makes timers.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a Timer that fires once, d from now.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a Ticker that fires every d (d > 0).
	NewTicker(d time.Duration) Ticker
}

// Timer fires once on its channel, as a *time.Timer does.
type Timer interface {
	// C is the channel on which the timer fires.
	C() <-chan time.Time
	// Stop stops the timer, reporting whether it was still pending.
	Stop() bool
	// Reset makes the timer fire d from now, reporting whether it was pending.
	Reset(d time.Duration) bool
}

// Ticker fires repeatedly on its channel, as a *time.Ticker does; a tick
// that finds the channel full is dropped.
type Ticker interface {
	// C is the channel on which the ticker fires.
	C() <-chan time.Time
	// Stop stops the ticker.
	Stop()
	// Reset makes the ticker fire every d from now.
	Reset(d time.Duration)
}

// Real returns the system clock.
func Real() Clock { return realClock{} }

// OrReal returns c, or the system clock when c is nil: the default of the
// Clock fields in configuration structs.
func OrReal(c Clock) Clock {
	if c == nil {
		return Real()
	}
	return c
}

type realClock struct{}

func (realClock) Now() time.Time                   { return time.Now() }
func (realClock) NewTimer(d time.Duration) Timer   { return realTimer{time.NewTimer(d)} }
func (realClock) NewTicker(d time.Duration) Ticker { return realTicker{time.NewTicker(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time   { return t.t.C }
func (t realTicker) Stop()                 { t.t.Stop() }
func (t realTicker) Reset(d time.Duration) { t.t.Reset(d) }

// Since returns the time elapsed on c since t.
func Since(c Clock, t time.Time) time.Duration { return c.Now().Sub(t) }

// Until returns the time on c until t.
func Until(c Clock, t time.Time) time.Duration { return t.Sub(c.Now()) }

// Sleep waits d on c or until ctx ends, reporting whether d elapsed.
func Sleep(ctx context.Context, c Clock, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-ctx.Done():
		return false
	}
}
