package transfer

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/internal/testenv"
)

func TestGateServesHigherPriorityFirst(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var order []Priority
	g := &gate{take: func(ctx context.Context, n int) error {
		<-release
		mu.Lock()
		order = append(order, Priority(n))
		mu.Unlock()
		return nil
	}}
	// A first caller holds the gate inside take; the others queue behind
	// it in this order, and the gate must serve them by priority, first
	// come first served within one.
	arrivals := []Priority{PriorityLogs, PriorityLogs, PriorityTelemetry, PriorityFL, PriorityActive, PriorityTelemetry, PriorityControl}
	var wg sync.WaitGroup
	wg.Go(func() { _ = g.wait(context.Background(), PriorityLogs, 99) })
	testenv.WaitFor(t, 10*time.Second, "first caller to hold the gate", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.busy })
	// Give each queued caller an identity: n encodes arrival order.
	for k, p := range arrivals {
		wg.Go(func() { _ = g.wait(context.Background(), p, 100+k) })
		testenv.WaitFor(t, 10*time.Second, "caller to queue", func() bool { return g.waiting() == k+1 })
	}
	close(release)
	wg.Wait()
	// order holds n values; map back to arrivals.
	var got []int
	for _, n := range order[1:] {
		got = append(got, int(n)-100)
	}
	want := []int{6, 4, 3, 2, 5, 0, 1} // control, active, fl, telemetry (first come), telemetry, logs, logs
	if int(order[0]) != 99 || !slices.Equal(got, want) {
		t.Fatalf("served arrivals %v (first %d), want %v", got, order[0], want)
	}
}

func TestGateCancelledWaiterLeavesQueue(t *testing.T) {
	release := make(chan struct{})
	var took []int
	g := &gate{take: func(ctx context.Context, n int) error {
		if n == 1 {
			<-release
		}
		took = append(took, n)
		return nil
	}}
	done := make(chan error, 3)
	go func() { done <- g.wait(context.Background(), PriorityLogs, 1) }()
	testenv.WaitFor(t, 10*time.Second, "holder", func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.busy })
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- g.wait(ctx, PriorityControl, 2) }()
	testenv.WaitFor(t, 10*time.Second, "first waiter", func() bool { return g.waiting() == 1 })
	go func() { done <- g.wait(context.Background(), PriorityLogs, 3) }()
	testenv.WaitFor(t, 10*time.Second, "second waiter", func() bool { return g.waiting() == 2 })
	cancel()
	testenv.WaitFor(t, 10*time.Second, "cancelled waiter to leave", func() bool { return g.waiting() == 1 })
	close(release)
	var errs []error
	for range 3 {
		errs = append(errs, <-done)
	}
	if n := len(slices.DeleteFunc(errs, func(err error) bool { return err == nil })); n != 1 || !errors.Is(errs[0], context.Canceled) {
		t.Fatalf("errors %v, want one context.Canceled", errs)
	}
	if !slices.Equal(took, []int{1, 3}) {
		t.Fatalf("took %v, want [1 3]", took)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.busy || len(g.queue) != 0 {
		t.Fatalf("gate still busy after everyone left")
	}
}

func TestPriorityString(t *testing.T) {
	for p, want := range map[Priority]string{PriorityControl: "control", PriorityActive: "active", PriorityFL: "fl", PriorityTelemetry: "telemetry", PriorityLogs: "logs", 9: "priority(9)"} {
		if p.String() != want {
			t.Errorf("%d: %q, want %q", int(p), p.String(), want)
		}
	}
	if !(PriorityControl > PriorityActive && PriorityActive > PriorityFL && PriorityFL > PriorityTelemetry && PriorityTelemetry > PriorityLogs) {
		t.Fatal("priorities out of order")
	}
}
