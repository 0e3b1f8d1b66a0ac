package pipeline

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/pipeline/cond"
)

// This file is the pure core of the engine: the state machine of a run's
// graph, free of I/O and clocks (the time is an argument), as the agent's
// version guard is. The executor (loop.go) asks Decide what to do after
// every change and does it.

// Retry defaults, as api/v1alpha1 documents them.
const (
	DefaultBackoff    = 10 * time.Second
	DefaultMaxBackoff = 5 * time.Minute
)

// StepState is what the core knows of one step of a run.
type StepState struct {
	// Phase is the step's phase: Pending until an attempt starts, Running
	// while one runs, then Succeeded, Failed or Skipped.
	Phase v1alpha1.RunPhase
	// Busy is true while the executor holds a Pending step: preparing it,
	// or waiting for the scheduler to start it.
	Busy bool
	// Outputs are the step's outputs once it succeeded.
	Outputs map[string]string
	// RetryAt is when a Pending step whose last attempt failed may start
	// again; zero for a step that never failed.
	RetryAt time.Time
}

// inProgress reports whether the executor holds the step.
func (s StepState) inProgress() bool { return s.Phase == v1alpha1.RunRunning || s.Busy }

// Verdict is the core's decision to finish a step without running it.
type Verdict struct {
	// Step is the step's index in the spec.
	Step int
	// Phase is Skipped or Failed.
	Phase v1alpha1.RunPhase
	// Message says why.
	Message string
}

// Plan is what Decide asks the executor to do now.
type Plan struct {
	// Finish are the steps that end without running, in the order decided:
	// skipped (their condition is false, they need a skipped step's output,
	// or an earlier step failed) or failed (their condition cannot be
	// evaluated).
	Finish []Verdict
	// Ready are the steps to prepare and submit to the scheduler, in
	// topological order.
	Ready []int
	// Wake is the earliest time a step waiting to retry may start; zero
	// when none waits.
	Wake time.Time
	// Phase is the run's phase once Finish is applied: Pending while no
	// step started, Running, then Succeeded or Failed.
	Phase v1alpha1.RunPhase
	// Message explains a failed run.
	Message string
}

// Done reports whether the run is over.
func (p Plan) Done() bool { return p.Phase.Finished() }

// Decide returns what to do with a run of spec (valid) whose steps are in
// states (one per step, in spec order) at time now. It is pure: the
// executor applies the plan and calls it again after every change.
//
// A step is ready when every step it needs (Needs) finished, none of them
// failed, and its retry time has come. It is skipped when its condition is
// false, when it reads an output (an input or its condition) of a skipped
// step, or when another step of the run failed: a run stops starting steps
// at its first failure and lets the running ones finish (fail fast). A
// step that only dependsOn a skipped step runs.
func Decide(spec *v1alpha1.PipelineSpec, states []StepState, now time.Time) Plan {
	n := len(spec.Steps)
	st := slices.Clone(states)
	var plan Plan
	failed := -1
	for i := range st {
		if st[i].Phase == v1alpha1.RunFailed {
			failed = i
			break
		}
	}
	finish := func(i int, phase v1alpha1.RunPhase, msg string) {
		st[i].Phase = phase
		plan.Finish = append(plan.Finish, Verdict{Step: i, Phase: phase, Message: msg})
		if phase == v1alpha1.RunFailed && failed < 0 {
			failed = i
		}
	}
	index := make(map[string]int, n)
	for i, s := range spec.Steps {
		index[s.Name] = i
	}
	for _, i := range topoOrder(spec, index) {
		s := st[i]
		if s.Phase.Finished() || s.inProgress() {
			continue
		}
		if failed >= 0 {
			finish(i, v1alpha1.RunSkipped, fmt.Sprintf("not run: step %q failed", spec.Steps[failed].Name))
			continue
		}
		reads := readsFrom(&spec.Steps[i])
		wait, skippedBy := false, ""
		for _, need := range spec.Needs(i) {
			switch st[index[need]].Phase {
			case v1alpha1.RunSucceeded:
			case v1alpha1.RunSkipped:
				if reads[need] && skippedBy == "" {
					skippedBy = need
				}
			default:
				wait = true
			}
		}
		switch {
		case skippedBy != "":
			finish(i, v1alpha1.RunSkipped, fmt.Sprintf("skipped: it reads an output of step %q, which was skipped", skippedBy))
			continue
		case wait:
			continue
		case s.RetryAt.After(now):
			if plan.Wake.IsZero() || s.RetryAt.Before(plan.Wake) {
				plan.Wake = s.RetryAt
			}
			continue
		}
		if w := spec.Steps[i].When; w != "" {
			ok, err := evalWhen(w, st, index)
			switch {
			case err != nil:
				finish(i, v1alpha1.RunFailed, "condition "+err.Error())
				continue
			case !ok:
				finish(i, v1alpha1.RunSkipped, "skipped: condition is false: "+w)
				continue
			}
		}
		plan.Ready = append(plan.Ready, i)
	}
	plan.Phase, plan.Message = runPhase(spec, st, len(plan.Ready) > 0)
	return plan
}

// runPhase is the phase of a run whose steps are in st; ready says some
// step is about to start.
func runPhase(spec *v1alpha1.PipelineSpec, st []StepState, ready bool) (v1alpha1.RunPhase, string) {
	started, done := ready, true
	for _, s := range st {
		if !s.Phase.Finished() {
			done = false
		}
		if s.Phase != v1alpha1.RunPending || s.Busy {
			started = true
		}
	}
	if !done {
		if started {
			return v1alpha1.RunRunning, ""
		}
		return v1alpha1.RunPending, ""
	}
	for i, s := range st {
		if s.Phase == v1alpha1.RunFailed {
			return v1alpha1.RunFailed, fmt.Sprintf("step %q failed", spec.Steps[i].Name)
		}
	}
	return v1alpha1.RunSucceeded, ""
}

// evalWhen evaluates a step's condition against the outputs of the steps
// in st.
func evalWhen(when string, st []StepState, index map[string]int) (bool, error) {
	e, err := cond.Parse(when)
	if err != nil {
		return false, fmt.Errorf("%q: %w", when, err)
	}
	ok, err := e.Eval(func(r cond.Ref) (string, bool) {
		i, found := index[r.Step]
		if !found {
			return "", false
		}
		v, found := st[i].Outputs[r.Output]
		return v, found
	})
	if err != nil {
		return false, fmt.Errorf("%q: %w", when, err)
	}
	return ok, nil
}

// readsFrom returns the steps whose outputs step st reads, through its
// inputs or its condition.
func readsFrom(st *v1alpha1.PipelineStep) map[string]bool {
	reads := map[string]bool{}
	for _, v := range st.Inputs {
		if r, err := cond.ParseRef(v); err == nil {
			reads[r.Step] = true
		}
	}
	if st.When != "" {
		if e, err := cond.Parse(st.When); err == nil {
			for _, r := range e.Refs() {
				reads[r.Step] = true
			}
		}
	}
	return reads
}

// topoOrder returns the steps' indexes so that every step comes after the
// steps it needs, ties in spec order. The spec must be valid (acyclic).
func topoOrder(spec *v1alpha1.PipelineSpec, index map[string]int) []int {
	n := len(spec.Steps)
	needs := make([][]int, n)
	for i := range spec.Steps {
		for _, name := range spec.Needs(i) {
			if j, ok := index[name]; ok {
				needs[i] = append(needs[i], j)
			}
		}
	}
	order := make([]int, 0, n)
	placed := make([]bool, n)
	for len(order) < n {
		progress := false
		for i := range n {
			if placed[i] {
				continue
			}
			ready := true
			for _, j := range needs[i] {
				if !placed[j] {
					ready = false
					break
				}
			}
			if ready {
				placed[i] = true
				order = append(order, i)
				progress = true
			}
		}
		if !progress { // a cycle: validation refuses these; keep the rest in spec order
			for i := range n {
				if !placed[i] {
					placed[i] = true
					order = append(order, i)
				}
			}
		}
	}
	return order
}

// RetryAfter decides, for a step whose attempt just failed for the
// failures-th time (counting this one), whether it is tried again and
// when: while failures does not exceed its retry limit, after its backoff
// (default 10s) doubled for each failure after the first, at most its
// maxBackoff (default 5m).
func RetryAfter(st *v1alpha1.PipelineStep, failures int32, now time.Time) (time.Time, bool) {
	if st.Retries == nil || failures < 1 || failures > st.Retries.Limit {
		return time.Time{}, false
	}
	backoff, ceiling := DefaultBackoff, DefaultMaxBackoff
	if st.Retries.Backoff != nil {
		backoff = st.Retries.Backoff.Duration
	}
	if st.Retries.MaxBackoff != nil {
		ceiling = st.Retries.MaxBackoff.Duration
	}
	d := backoff
	for k := int32(1); k < failures && d < ceiling; k++ {
		d *= 2
	}
	return now.Add(min(d, ceiling)), true
}

// ErrNoOutput is wrapped by Inputs' error when a step an input reads has
// no such output.
var ErrNoOutput = errors.New("no such output")

// Inputs returns the values of step i's inputs (artifact digests or
// values) from the outputs of the steps in states.
func Inputs(spec *v1alpha1.PipelineSpec, i int, states []StepState) (map[string]string, error) {
	st := &spec.Steps[i]
	out := make(map[string]string, len(st.Inputs))
	for name, ref := range st.Inputs {
		r, err := cond.ParseRef(ref)
		if err != nil {
			return nil, fmt.Errorf("input %s: %w", name, err)
		}
		j := slices.IndexFunc(spec.Steps, func(s v1alpha1.PipelineStep) bool { return s.Name == r.Step })
		if j < 0 {
			return nil, fmt.Errorf("input %s: no step %q", name, r.Step)
		}
		v, ok := states[j].Outputs[r.Output]
		if !ok {
			return nil, fmt.Errorf("input %s: step %q: output %q: %w", name, r.Step, r.Output, ErrNoOutput)
		}
		out[name] = v
	}
	return out, nil
}
