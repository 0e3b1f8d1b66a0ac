package serving

import (
	"slices"
	"sync"
	"time"
)

// recentLatencies keeps the latency of the last requests answered, with
// when each was answered, so that the pipeline scheduler can see serving's
// p99 of the last moments and throttle training when it rises.
type recentLatencies struct {
	mu   sync.Mutex
	at   [recentRequests]time.Time
	took [recentRequests]time.Duration
	next int
	n    int
}

// recentRequests is how many requests recentLatencies keeps.
const recentRequests = 2048

func (r *recentLatencies) add(at time.Time, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at[r.next], r.took[r.next] = at, took
	r.next = (r.next + 1) % recentRequests
	r.n = min(r.n+1, recentRequests)
}

// quantile returns the q-quantile (0 < q ≤ 1, nearest rank) of the
// latencies of the requests answered since since, and how many there were.
func (r *recentLatencies) quantile(q float64, since time.Time) (time.Duration, int) {
	r.mu.Lock()
	var ds []time.Duration
	for i := range r.n {
		if !r.at[i].Before(since) {
			ds = append(ds, r.took[i])
		}
	}
	r.mu.Unlock()
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	k := int(q*float64(len(ds))+0.999999) - 1
	return ds[min(max(k, 0), len(ds)-1)], len(ds)
}

// LatencyP99 returns the 99th percentile of the latency of the inference
// requests answered in the last window (at most the last 2048 of them), and
// how many there were; 0, 0 when there were none.
func (s *Server) LatencyP99(window time.Duration) (time.Duration, int) {
	return s.metrics.recent.quantile(0.99, s.clock.Now().Add(-window))
}
