package clock

import (
	"context"
	"fmt"

	"golang.org/x/time/rate"
)

// WaitN takes n tokens from lim, waiting until they are available or ctx
// ends, as lim.WaitN does, but reads the time from c and waits on c's
// timers, so that a rate-limited transfer runs on simulated time in tests.
// A Limiter must be used with one clock only: its state holds the time of
// its last use.
func WaitN(ctx context.Context, c Clock, lim *rate.Limiter, n int) error {
	burst, limit := lim.Burst(), lim.Limit()
	if n > burst && limit != rate.Inf {
		return fmt.Errorf("rate: Wait(n=%d) exceeds limiter's burst %d", n, burst)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	now := c.Now()
	r := lim.ReserveN(now, n)
	if !r.OK() {
		return fmt.Errorf("rate: Wait(n=%d) exceeds limiter's burst %d", n, lim.Burst())
	}
	delay := r.DelayFrom(now)
	if delay == 0 {
		return nil
	}
	if deadline, ok := ctx.Deadline(); ok && delay > deadline.Sub(now) {
		r.CancelAt(now)
		return fmt.Errorf("rate: Wait(n=%d) would exceed context deadline", n)
	}
	t := c.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C():
		return nil
	case <-ctx.Done():
		// Give the tokens back, so that other waiters may go sooner.
		r.CancelAt(c.Now())
		return ctx.Err()
	}
}
