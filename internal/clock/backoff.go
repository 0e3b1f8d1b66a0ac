package clock

import "time"

// Backoff is the exponential backoff between attempts: the n-th retry
// waits a random time between half and all of min(Base*2^(n-1), Max).
type Backoff struct {
	Base, Max time.Duration
}

// Delay returns the wait before retry attempt (1 for the first retry),
// given u drawn uniformly from [0, 1).
func (b Backoff) Delay(attempt int, u float64) time.Duration {
	d := b.Base
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	return d/2 + time.Duration(u*float64(d-d/2))
}
