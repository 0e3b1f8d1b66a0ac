package transfer

import (
	"context"
	"fmt"
	"sync"
)

// Priority orders the users of a link: when bandwidth is short, a higher
// priority gets it first.
type Priority int

// Priorities, lowest first.
const (
	// PriorityLogs is for shipping logs.
	PriorityLogs Priority = iota
	// PriorityTelemetry is for metrics and traces.
	PriorityTelemetry
	// PriorityFL is for federated-learning updates.
	PriorityFL
	// PriorityActive is for models a deployment wants active.
	PriorityActive
	// PriorityControl is for control traffic with the hub.
	PriorityControl
)

// String names the priority.
func (p Priority) String() string {
	switch p {
	case PriorityLogs:
		return "logs"
	case PriorityTelemetry:
		return "telemetry"
	case PriorityFL:
		return "fl"
	case PriorityActive:
		return "active"
	case PriorityControl:
		return "control"
	}
	return fmt.Sprintf("priority(%d)", int(p))
}

// gate lets one caller at a time take bandwidth, choosing among those
// waiting the highest priority, first come first served within a priority.
// Because the limiter is asked by one caller at a time, a caller that
// arrives while lower priorities wait goes ahead of all of them.
type gate struct {
	take func(ctx context.Context, n int) error

	mu     sync.Mutex
	busy   bool
	seq    uint64
	queue  []*gateWaiter
	grants []Priority // when non-nil, records the order of grants (tests)
}

type gateWaiter struct {
	prio  Priority
	seq   uint64
	ready chan struct{}
}

// wait takes n bytes of bandwidth at priority prio.
func (g *gate) wait(ctx context.Context, prio Priority, n int) error {
	if err := g.acquire(ctx, prio); err != nil {
		return err
	}
	defer g.release()
	return g.take(ctx, n)
}

func (g *gate) acquire(ctx context.Context, prio Priority) error {
	g.mu.Lock()
	if !g.busy && len(g.queue) == 0 {
		g.busy = true
		g.granted(prio)
		g.mu.Unlock()
		return nil
	}
	g.seq++
	w := &gateWaiter{prio: prio, seq: g.seq, ready: make(chan struct{})}
	g.queue = append(g.queue, w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		for i, q := range g.queue {
			if q == w {
				g.queue = append(g.queue[:i], g.queue[i+1:]...)
				g.mu.Unlock()
				return ctx.Err()
			}
		}
		g.mu.Unlock()
		// Granted meanwhile: pass the turn on.
		g.release()
		return ctx.Err()
	}
}

func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		g.busy = false
		return
	}
	best := 0
	for i, q := range g.queue {
		b := g.queue[best]
		if q.prio > b.prio || (q.prio == b.prio && q.seq < b.seq) {
			best = i
		}
	}
	w := g.queue[best]
	g.queue = append(g.queue[:best], g.queue[best+1:]...)
	g.granted(w.prio)
	close(w.ready)
}

func (g *gate) granted(p Priority) {
	if g.grants != nil {
		g.grants = append(g.grants, p)
	}
}

// waiting returns how many callers wait for their turn.
func (g *gate) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.queue)
}
