package kube

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"outpost.dev/outpost/internal/clock"
)

// countingRegistry answers every constraint with the version its calls
// count to, failing when fail is set.
type countingRegistry struct {
	calls atomic.Int64
	fail  atomic.Bool
}

func (c *countingRegistry) Resolve(ctx context.Context, model, constraint string, _ bool) (Resolved, error) {
	n := c.calls.Add(1)
	if c.fail.Load() {
		return Resolved{}, errors.New("registry unreachable")
	}
	return Resolved{Version: "1.0." + string(rune('0'+n)), Digest: dg1}, nil
}

// TestResolveReusesAnswers: reconciles at every status change reuse the
// registry's answer for Resync, and ask again after it.
func TestResolveReusesAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := &countingRegistry{}
		r := &deploymentReconciler{cfg: ControllerConfig{Resolver: reg, Resync: time.Minute}, clock: clock.Real()}
		ctx := t.Context()
		first, _ := r.resolve(ctx, "m", "^1", false)
		for range 5 {
			time.Sleep(10 * time.Second)
			if got, _ := r.resolve(ctx, "m", "^1", false); got.Version != first.Version {
				t.Fatalf("within Resync: %+v, want the first answer %+v", got, first)
			}
		}
		if n := reg.calls.Load(); n != 1 {
			t.Fatalf("%d registry calls within Resync, want 1", n)
		}
		if _, _ = r.resolve(ctx, "m", "^2", false); reg.calls.Load() != 2 {
			t.Fatal("another constraint reused the first one's answer")
		}
		time.Sleep(15 * time.Second) // the first answer is a minute old
		if got, _ := r.resolve(ctx, "m", "^1", false); got.Version == first.Version || reg.calls.Load() != 3 {
			t.Fatalf("after Resync: %+v after %d calls, want a new answer", got, reg.calls.Load())
		}
		reg.fail.Store(true)
		time.Sleep(time.Minute)
		if _, err := r.resolve(ctx, "m", "^1", false); err == nil {
			t.Fatal("the registry's failure was not passed on")
		}
		if len(r.resolved) != 1 {
			t.Fatalf("%d answers kept, want only the one asked for in the last minute", len(r.resolved))
		}
	})
}
