package edgerun

import (
	"errors"
	"testing"
	"time"
)

// After failed uploads and a successful one, the loop waits its interval
// again, not a millisecond at a time until the next failure.
func TestUploadRetry(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	backoff := func(n int) time.Duration { return time.Duration(n) * time.Second }
	fail := errors.New("hub unreachable")
	const interval = time.Minute
	type attempt struct {
		at       time.Duration // since t0
		err      error
		failures int
		wait     time.Duration // the loop's wait right after it
	}
	for _, tc := range []struct {
		name     string
		attempts []attempt
	}{
		{"success", []attempt{{0, nil, 0, interval}}},
		{"failures back off", []attempt{{0, fail, 1, time.Second}, {time.Second, fail, 2, 2 * time.Second}}},
		{"a success after failures clears the retry", []attempt{
			{0, fail, 1, time.Second},
			{time.Second, nil, 0, interval},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r uploadRetry
			for i, a := range tc.attempts {
				now := t0.Add(a.at)
				r.record(a.err, now, backoff)
				if r.failures != a.failures {
					t.Errorf("attempt %d: %d failures, want %d", i, r.failures, a.failures)
				}
				// Later, when the retry time (if any) has passed, the loop must still
				// wait its interval unless a retry is due.
				if got := loopWait(now, interval, time.Time{}, r.after); got != a.wait {
					t.Errorf("attempt %d: the loop waits %v, want %v", i, got, a.wait)
				}
				if a.err == nil {
					if got := loopWait(now.Add(time.Hour), interval, time.Time{}, r.after); got != interval {
						t.Errorf("attempt %d: an hour after a success the loop waits %v, want %v", i, got, interval)
					}
				}
			}
		})
	}
}

func TestLoopWait(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		times []time.Time
		want  time.Duration
	}{
		{"nothing due", []time.Time{{}, {}}, time.Minute},
		{"a schedule sooner", []time.Time{t0.Add(10 * time.Second), {}}, 10 * time.Second},
		{"the sooner of two", []time.Time{t0.Add(10 * time.Second), t0.Add(3 * time.Second)}, 3 * time.Second},
		{"past: a millisecond", []time.Time{t0.Add(-time.Second)}, time.Millisecond},
		{"later than the interval", []time.Time{t0.Add(time.Hour)}, time.Minute},
	} {
		if got := loopWait(t0, time.Minute, tc.times...); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
