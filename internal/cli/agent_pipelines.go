package cli

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/edgerun"
	"outpost.dev/outpost/internal/feedback"
	"outpost.dev/outpost/internal/pipeline"
	"outpost.dev/outpost/internal/schedule"
)

// pipelineFlags are the agent's flags for the pipelines it runs.
type pipelineFlags struct {
	reserveCPU, reserveMemory string
	target                    time.Duration
	// latency, if set, reads serving's recent p99 (serving.Server.LatencyP99).
	latency func(window time.Duration) (time.Duration, int)
	// memory is the agent's declared memory (--memory), 0 when measured.
	memory int64
}

// Defaults of the pipeline flags.
const (
	defaultServingReserveCPU    = "500m"
	defaultServingReserveMemory = "256Mi"
	defaultServingTarget        = 250 * time.Millisecond
	// latencyWindow is the span of requests the p99 that throttles
	// training is taken over; latencyEvery how often it is taken.
	latencyWindow = 30 * time.Second
	latencyEvery  = 2 * time.Second
)

func (p *pipelineFlags) register(f *pflag.FlagSet) {
	f.StringVar(&p.reserveCPU, "serving-reserve-cpu", defaultServingReserveCPU, "CPU that pipeline steps never get: serving's")
	f.StringVar(&p.reserveMemory, "serving-reserve-memory", defaultServingReserveMemory, "memory that pipeline steps never get: serving's")
	f.DurationVar(&p.target, "serving-p99-target", defaultServingTarget, "serving's p99 latency to keep: above it, training steps are throttled (0: never)")
}

// capacity is the scheduler's view of this machine.
func (p *pipelineFlags) capacity() (schedule.Config, error) {
	cpu, err := resource.ParseQuantity(p.reserveCPU)
	if err != nil {
		return schedule.Config{}, fmt.Errorf("--serving-reserve-cpu %q: %w", p.reserveCPU, err)
	}
	mem, err := resource.ParseQuantity(p.reserveMemory)
	if err != nil {
		return schedule.Config{}, fmt.Errorf("--serving-reserve-memory %q: %w", p.reserveMemory, err)
	}
	alloc := pipeline.DetectCapacity()
	if p.memory > 0 {
		alloc.Memory = p.memory // the cluster's memory as the agent reports it
	}
	return schedule.Config{
		Allocatable:    alloc,
		ServingReserve: schedule.Resources{MilliCPU: cpu.MilliValue(), Memory: mem.Value()},
		ServingTarget:  p.target,
	}, nil
}

// startPipelines opens the agent's pipeline engine and runs it, with the
// runner that feeds it the agent's pipelines, until ctx ends; the channel
// closes once both stopped. Call it once the agent is ready (its cluster
// name known). Serving's p99, when it serves, reaches the scheduler every
// latencyEvery.
func startPipelines(ctx context.Context, a *agent.Agent, r *edgerun.Runner, fb *feedback.Store, pf pipelineFlags, log *slog.Logger) (<-chan struct{}, error) {
	capacity, err := pf.capacity()
	if err != nil {
		return nil, err
	}
	eng, err := pipeline.Open(ctx, pipeline.Options{
		Dir: r.EngineDir(), Data: r.DataDir(), Cluster: a.Name(), Host: r, Feedback: fb, OnUpdate: r.Updated,
		Capacity: capacity, Logger: log.With("component", "pipelines"),
	})
	if err != nil {
		return nil, err
	}
	r.Attach(a, eng)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := eng.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("pipeline engine stopped", "err", err)
		}
	})
	wg.Go(func() {
		if err := r.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("pipeline runner stopped", "err", err)
		}
	})
	if pf.latency != nil && pf.target > 0 {
		wg.Go(func() {
			tick := time.NewTicker(latencyEvery)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					if p99, n := pf.latency(latencyWindow); n > 0 {
						eng.ObserveServing(p99)
					}
				}
			}
		})
	}
	go func() {
		wg.Wait()
		eng.Close()
		close(done)
	}()
	return done, nil
}
