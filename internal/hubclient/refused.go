package hubclient

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"syscall"
	"time"

	"outpost.dev/outpost/internal/clock"
)

// RetryRefused returns a RoundTripper that sends a request through rt again,
// with backoff, while the hub's address refuses connections, for up to
// within in all: a hub started a moment before (`outpost hub serve &`, then
// a command) or restarting. A refused connection carried no byte of the
// request, so any request may be sent again, provided its body can be read
// anew (GetBody) or it has none. Other errors, and answers, pass through.
func RetryRefused(rt http.RoundTripper, clk clock.Clock, within time.Duration) http.RoundTripper {
	return &refusedRetrier{rt: rt, clock: clock.OrReal(clk), within: within}
}

type refusedRetrier struct {
	rt     http.RoundTripper
	clock  clock.Clock
	within time.Duration
}

func (r *refusedRetrier) RoundTrip(req *http.Request) (*http.Response, error) {
	deadline := r.clock.Now().Add(r.within)
	b := clock.Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	for attempt := 1; ; attempt++ {
		resp, err := r.rt.RoundTrip(req)
		if err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
			return resp, err
		}
		left := deadline.Sub(r.clock.Now())
		if left <= 0 {
			return nil, err
		}
		wait := min(b.Delay(attempt, rand.Float64()), left)
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, err
			}
			body, berr := req.GetBody()
			if berr != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
		if !clock.Sleep(req.Context(), r.clock, wait) {
			return nil, err
		}
	}
}
