package serving

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"outpost.dev/outpost/internal/clock"
)

// TestBudgetCharges takes, swaps and gives back charges of a budget of
// 1000 bytes, of which another request holds 400, and checks what each
// step leaves in use and how it refuses: 429 with a retry when there is no
// room now, 413 when a charge would need more than the whole budget, and
// nothing taken either way.
func TestBudgetCharges(t *testing.T) {
	type step struct {
		do       func(c *charge) error
		wantUsed int64 // by both charges after the step
		status   int   // of the error, 0 for none
	}
	take := func(n, scratch int64) func(*charge) error {
		return func(c *charge) error { return c.take(n, scratch) }
	}
	decoded := func(n int64) func(*charge) error { return func(c *charge) error { return c.decoded(n) } }
	add := func(n int64) func(*charge) error { return func(c *charge) error { c.add(n); return nil } }
	closed := func(c *charge) error { c.close(); return nil }
	tests := []struct {
		name  string
		steps []step
	}{
		{"body, decoded, outputs, closed", []step{
			{do: take(300, 200), wantUsed: 700},
			{do: decoded(50), wantUsed: 550}, // the scratch 200 given back, 50 of inputs taken
			{do: add(100), wantUsed: 650},
			{do: closed, wantUsed: 400},
			{do: closed, wantUsed: 400}, // again: nothing more
		}},
		{"no room now", []step{
			{do: take(601, 0), wantUsed: 400, status: http.StatusTooManyRequests},
			{do: take(600, 0), wantUsed: 1000},
			{do: closed, wantUsed: 400},
		}},
		{"more than the whole budget", []step{
			{do: take(1001, 1000), wantUsed: 400, status: http.StatusRequestEntityTooLarge},
			{do: take(500, 0), wantUsed: 900},
			{do: take(501, 0), wantUsed: 900, status: http.StatusRequestEntityTooLarge},
			{do: closed, wantUsed: 400},
		}},
		{"decoded inputs that do not fit", []step{
			{do: take(200, 100), wantUsed: 600},
			{do: decoded(501), wantUsed: 600, status: http.StatusTooManyRequests}, // needs 401 more, 400 free
			{do: decoded(500), wantUsed: 1000},
			{do: closed, wantUsed: 400},
		}},
		{"decoded inputs more than the whole budget", []step{
			{do: take(200, 100), wantUsed: 600},
			{do: decoded(901), wantUsed: 600, status: http.StatusRequestEntityTooLarge},
			{do: closed, wantUsed: 400},
		}},
		{"outputs past the total", []step{
			{do: take(500, 0), wantUsed: 900},
			{do: add(300), wantUsed: 1200},
			{do: take(1, 0), wantUsed: 1200, status: http.StatusTooManyRequests},
			{do: closed, wantUsed: 400},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBudget(1000, clock.Real(), func() {})
			defer b.close()
			other := b.charge()
			if err := other.take(400, 0); err != nil {
				t.Fatal(err)
			}
			c := b.charge()
			for i, s := range tt.steps {
				err := s.do(c)
				var be *budgetError
				switch {
				case s.status == 0 && err != nil:
					t.Fatalf("step %d: %v", i, err)
				case s.status != 0 && (!errors.As(err, &be) || be.status != s.status):
					t.Fatalf("step %d: error %v, want status %d", i, err, s.status)
				case s.status == http.StatusTooManyRequests && retryAfterOf(err) != time.Second:
					t.Errorf("step %d: retry after %v, want 1s", i, retryAfterOf(err))
				case s.status == http.StatusRequestEntityTooLarge && retryAfterOf(err) != 0:
					t.Errorf("step %d: retry after %v for a request that can never fit", i, retryAfterOf(err))
				}
				if got := b.inUse(); got != s.wantUsed {
					t.Fatalf("step %d: %d bytes in use, want %d", i, got, s.wantUsed)
				}
			}
			other.close()
			if got := b.inUse(); got != 0 {
				t.Errorf("%d bytes in use after every charge closed", got)
			}
		})
	}
}

// TestBudgetReturnsMemoryAfterBurst checks when memory is returned to the
// operating system: once the bytes in flight reached a quarter of the
// budget and then stayed below it for a second; never for traffic below
// it, and not while bursts go on.
func TestBudgetReturnsMemoryAfterBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var returned atomic.Int64
		b := newBudget(1000, clock.Real(), func() { returned.Add(1) }) // a burst from 250 bytes
		defer b.close()
		after := func(d time.Duration, want int64, what string) {
			t.Helper()
			time.Sleep(d)
			synctest.Wait()
			if got := returned.Load(); got != want {
				t.Fatalf("%s: memory returned %d times, want %d", what, got, want)
			}
		}
		take := func(n int64) *charge {
			c := b.charge()
			if err := c.take(n, 0); err != nil {
				t.Fatal(err)
			}
			return c
		}

		take(249).close()
		after(time.Hour, 0, "below a quarter of the budget")

		small := take(100) // stays in flight: small requests do not hold the return back
		big := take(300)
		after(time.Hour, 0, "during a burst")
		big.close()
		after(999*time.Millisecond, 0, "just before a second of quiet")
		after(time.Millisecond, 1, "after a second of quiet")

		take(300).close()
		after(500*time.Millisecond, 1, "half a second after a burst")
		take(300).close() // another burst: the quiet starts again
		after(999*time.Millisecond, 1, "a second after the first burst")
		after(time.Millisecond, 2, "a second after the second burst")

		take(300).close()
		big = take(600)
		after(time.Hour, 2, "while a burst goes on")
		big.close()
		after(time.Second, 3, "a second after it ended")
		small.close()
		after(time.Hour, 3, "once idle")
	})
}

// BenchmarkCharge measures what the budget adds to each request: a charge
// taken, swapped for its decoded inputs, given its outputs and closed.
func BenchmarkCharge(b *testing.B) {
	bud := newBudget(1<<30, clock.Real(), func() {})
	defer bud.close()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := bud.charge()
			if err := c.take(3000, 2000); err != nil {
				b.Fatal(err)
			}
			if err := c.decoded(3136); err != nil {
				b.Fatal(err)
			}
			c.add(40)
			c.add(200)
			c.close()
		}
	})
}
