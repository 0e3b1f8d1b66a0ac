package serving

import (
	"testing"
	"time"
)

func TestRecentLatencies(t *testing.T) {
	var r recentLatencies
	t0 := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	if d, n := r.quantile(0.99, t0); d != 0 || n != 0 {
		t.Fatalf("empty: %v, %d", d, n)
	}
	// 100 requests, 1ms to 100ms, one a second: p99 is 99ms, p50 50ms.
	for i := 1; i <= 100; i++ {
		r.add(t0.Add(time.Duration(i)*time.Second), time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q     float64
		since time.Time
		want  time.Duration
		n     int
	}{
		{0.99, t0, 99 * time.Millisecond, 100},
		{0.5, t0, 50 * time.Millisecond, 100},
		{1, t0, 100 * time.Millisecond, 100},
		// Only the last 10 seconds: 91ms to 100ms.
		{0.99, t0.Add(91 * time.Second), 100 * time.Millisecond, 10},
		{0.5, t0.Add(91 * time.Second), 95 * time.Millisecond, 10},
		{0.99, t0.Add(time.Hour), 0, 0},
	} {
		if d, n := r.quantile(tc.q, tc.since); d != tc.want || n != tc.n {
			t.Errorf("quantile(%v, +%v) = %v, %d; want %v, %d", tc.q, tc.since.Sub(t0), d, n, tc.want, tc.n)
		}
	}
	// It keeps the newest recentRequests only.
	for i := range recentRequests {
		r.add(t0.Add(time.Hour+time.Duration(i)*time.Millisecond), time.Microsecond)
	}
	if d, n := r.quantile(1, t0); d != time.Microsecond || n != recentRequests {
		t.Errorf("after %d more: max %v of %d, want 1µs of %d", recentRequests, d, n, recentRequests)
	}
}
