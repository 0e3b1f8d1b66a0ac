package agent

import "sync"

// reachability tells the loops that back off from an unreachable hub when
// it answers again. A loop whose request got no answer marks the hub
// unreachable; the next answer the hub gives any loop then closes the
// channel that every waiting loop selects on, so that a link that comes
// back is used at once instead of after the longest backoff of the outage.
// Answers that say no (a status code) do not count as unreachable: an
// overloaded hub's Retry-After is honoured.
type reachability struct {
	mu          sync.Mutex
	unreachable bool
	back        chan struct{}
}

func newReachability() *reachability { return &reachability{back: make(chan struct{})} }

// wait returns a channel closed when the hub answers after it was marked
// unreachable. Take it before the request whose failure it is to cut short,
// so that an answer to another loop meanwhile is not missed.
func (r *reachability) wait() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.back
}

// failed marks the hub unreachable: a request got no answer.
func (r *reachability) failed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreachable = true
}

// answered records an answer from the hub; it wakes the waiting loops when
// the hub was unreachable, and reports whether it did.
func (r *reachability) answered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.unreachable {
		return false
	}
	r.unreachable = false
	close(r.back)
	r.back = make(chan struct{})
	return true
}
