package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"outpost.dev/outpost/internal/chaos"
)

// Config is a campaign: a plan drawn from a seed, run against fresh
// processes.
type Config struct {
	// Options configure each run; Dir is the campaign's scratch directory,
	// which gets a folder per run.
	Options
	// Seed draws the plan.
	Seed uint64
	// Faults is how many faults the plan injects.
	Faults int
	// CheckEvery and MaxGap shape the plan (see chaos.PlanConfig).
	CheckEvery int
	MaxGap     time.Duration
	// Steps, if set, runs only the plan's steps with these IDs (and a final
	// check), to replay a shrunk plan.
	Steps []int
	// ShrinkBudget is how many runs to spend looking for a shorter plan
	// that still fails, when one fails; 0 spends none.
	ShrinkBudget int
}

// Plan is the plan cfg runs.
func (cfg Config) Plan() ([]chaos.Step, error) {
	agents := cfg.Agents
	if agents <= 0 {
		agents = 3
	}
	plan := chaos.Generate(cfg.Seed, chaos.PlanConfig{Agents: agents, Faults: cfg.Faults, CheckEvery: cfg.CheckEvery,
		MaxGap: cfg.MaxGap, NoDiskFull: cfg.DiskFull == DiskOff})
	if len(cfg.Steps) == 0 {
		return plan, nil
	}
	return chaos.Select(plan, cfg.Steps)
}

// Campaign runs cfg's plan and returns its report. When an invariant
// breaks, the run stops after that step; with a ShrinkBudget the steps up
// to it are then shrunk, each candidate run against fresh processes, to
// the shortest plan found that breaks one of the same invariants, which
// the report carries with the seed. An error means the campaign itself
// could not run.
func Campaign(ctx context.Context, cfg Config) (*chaos.Report, error) {
	plan, err := cfg.Plan()
	if err != nil {
		return nil, err
	}
	r, failedAt, err := runOnce(ctx, cfg, plan, "run")
	if err != nil || len(r.Violations) == 0 || cfg.ShrinkBudget <= 0 {
		return r, err
	}
	broken := map[chaos.Invariant]bool{}
	for _, v := range r.Violations {
		broken[v.Invariant] = true
	}
	prefix := append([]chaos.Step(nil), plan[:min(failedAt+1, len(plan))]...)
	if prefix[len(prefix)-1].Kind != chaos.Check {
		prefix = append(prefix, chaos.Step{ID: len(plan), Kind: chaos.Check})
	}
	runs := 0
	fails := func(steps []chaos.Step) bool {
		runs++
		cfg.Logf("shrink run %d: %d steps", runs, len(steps))
		sr, _, err := runOnce(ctx, cfg, steps, fmt.Sprintf("shrink-%d", runs))
		if err != nil || sr == nil {
			return false
		}
		for _, v := range sr.Violations {
			if broken[v.Invariant] {
				return true
			}
		}
		return false
	}
	r.Shrunk, r.ShrinkRuns = chaos.Shrink(prefix, fails, cfg.ShrinkBudget)
	return r, nil
}

// runOnce runs steps against a fresh hub and agents in dir/name and
// returns the report and the index of the step where it stopped.
func runOnce(ctx context.Context, cfg Config, steps []chaos.Step, name string) (*chaos.Report, int, error) {
	opts := cfg.Options
	opts.Dir = filepath.Join(cfg.Dir, name)
	env, err := Start(ctx, opts)
	if err != nil {
		return nil, 0, err
	}
	defer env.Close()
	i, err := env.Run(ctx, steps)
	r := env.Report()
	r.Seed = cfg.Seed
	return &r, i, err
}
