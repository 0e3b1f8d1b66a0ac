package cli

import (
	"context"
	"log/slog"
	"sync"

	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/edgerun"
	"outpost.dev/outpost/internal/pipeline"
)

// startPipelines opens the agent's pipeline engine and runs it, with the
// runner that feeds it the agent's pipelines, until ctx ends; the channel
// closes once both stopped. Call it once the agent is ready (its cluster
// name known).
func startPipelines(ctx context.Context, a *agent.Agent, r *edgerun.Runner, log *slog.Logger) (<-chan struct{}, error) {
	eng, err := pipeline.Open(ctx, pipeline.Options{
		Dir: r.EngineDir(), Data: r.DataDir(), Cluster: a.Name(), Host: r, OnUpdate: r.Updated,
		Logger: log.With("component", "pipelines"),
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
	go func() {
		wg.Wait()
		eng.Close()
		close(done)
	}()
	return done, nil
}
