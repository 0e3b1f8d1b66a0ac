package serving

import (
	"errors"
	"math"
	"sync/atomic"
	"time"
)

// Health is what one deployment's serving version answered since it was loaded: the figures
// a rollout's health gate compares with the previous version's on the same cluster.
type Health struct {
	// Version is the version that answered.
	Version string
	// Requests counts inference requests; Errors those the model failed (not those refused
	// for their own input or for want of memory).
	Requests, Errors int64
	// P99 is the 99th percentile of their latency, to within a tenth.
	P99 time.Duration
}

// Latency buckets grow by a tenth each from healthMin: 160 of them reach past 300 s.
const (
	healthBuckets = 160
	healthMin     = 100 * time.Microsecond
	healthGrowth  = 1.1
)

// health counts a session's requests, errors and latencies, without locks.
type health struct {
	requests, errors atomic.Int64
	buckets          [healthBuckets]atomic.Int64
}

// observe counts one request that took d and ended with err.
func (h *health) observe(d time.Duration, err error) {
	h.requests.Add(1)
	var re *RequestError
	var be *budgetError
	if err != nil && !errors.As(err, &re) && !errors.As(err, &be) && !errors.Is(err, errCanceled) {
		h.errors.Add(1)
	}
	h.buckets[bucketOf(d)].Add(1)
}

// errCanceled stands for a request its client gave up on: not the model's failure.
var errCanceled = errors.New("canceled")

func bucketOf(d time.Duration) int {
	if d <= healthMin {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(healthMin)) / math.Log(healthGrowth)))
	return min(i, healthBuckets-1)
}

// upper is the latency bucket i ends at.
func upper(i int) time.Duration {
	return time.Duration(float64(healthMin) * math.Pow(healthGrowth, float64(i)))
}

// snapshot returns the counts and the p99 latency (the end of its bucket).
func (h *health) snapshot(version string) Health {
	out := Health{Version: version, Requests: h.requests.Load(), Errors: h.errors.Load()}
	var counts [healthBuckets]int64
	var total int64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return out
	}
	need := int64(math.Ceil(0.99 * float64(total)))
	var seen int64
	for i, c := range counts {
		seen += c
		if seen >= need {
			out.P99 = upper(i)
			break
		}
	}
	return out
}

// Health returns, by deployment, what the version each serves now answered since it loaded.
func (s *Server) Health() map[string]Health {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]Health, len(s.models))
	for _, m := range s.models {
		if m.cur != nil {
			out[m.deployment] = m.cur.health.snapshot(m.cur.version)
		}
	}
	return out
}
