package pipeline

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/schedule"
)

// This file is the executor: one goroutine (Run) owns the live runs and
// the scheduler, applies Decide's plans, and hands each step to a
// goroutine of its own to prepare (inputs, cache) and run.

// Causes of a cancelled attempt.
type (
	// timeoutError ends an attempt that ran longer than its step's timeout.
	timeoutError struct{ d time.Duration }
	// preemptedError ends an attempt the scheduler preempted.
	preemptedError struct{ reason string }
)

func (t timeoutError) Error() string   { return "timed out after " + t.d.String() }
func (p preemptedError) Error() string { return "preempted: " + p.reason }

// errStopping ends the attempts that run when Run returns.
var errStopping = errors.New("the engine stopped")

// slot is where an attempt is.
type slot int

const (
	preparing slot = iota // reading inputs, looking up the cache
	queued                // submitted to the scheduler
	running               // started
)

// live is a run the executor is running.
type live struct {
	row   *runRow
	steps []stepRow
	busy  map[int]*attempt
}

// states returns the core's view of the run's steps.
func (r *live) states() []StepState {
	out := make([]StepState, len(r.steps))
	for i, s := range r.steps {
		out[i] = StepState{Phase: s.phase, Busy: r.busy[i] != nil, Outputs: s.outputs, RetryAt: parseTime(s.retryAt)}
	}
	return out
}

// attempt is a step the executor holds: preparing, queued or running.
type attempt struct {
	run    *live
	idx    int
	slot   slot
	env    *stepEnv
	impl   stepType
	job    schedule.Job
	ctx    context.Context // the running attempt's
	cancel context.CancelCauseFunc
	cpu    atomic.Int64
	log    *stepLog
}

func (a *attempt) name() string { return a.run.row.spec.Steps[a.idx].Name }

// event is what a step's goroutine tells the executor.
type event struct {
	a *attempt
	// prepared is true for the end of preparation, false for the end of a run.
	prepared bool
	// hit holds the cached outputs of a prepared step that need not run.
	hit *cacheEntry
	// outputs are a successful run's outputs.
	outputs map[string]string
	err     error
}

// scheduler is what the executor needs of internal/schedule's Scheduler.
type scheduler interface {
	Submit(j schedule.Job)
	Finish(id string)
	ObserveServing(p99 time.Duration)
	Schedule(now time.Time) []schedule.Decision
	// Wake says when to call Schedule again with nothing else happening
	// (a waiting job's priority ages, a reservation begins).
	Wake(now time.Time) (time.Time, bool)
}

// executor is the state of Run.
type executor struct {
	e        *Engine
	sched    scheduler
	runs     map[string]*live
	jobs     map[string]*attempt // by job ID: queued and running
	events   chan event
	base     context.Context // attempts' parent: not cancelled when Run's context is
	stopping bool
	pending  int // goroutines that will send an event
	wakeAt   time.Time
}

// Run executes runs until ctx ends: first the unfinished runs it finds in
// the database (a step that was running when the process died starts
// again, from its checkpoint), then those Start records. When ctx ends it
// stops the running steps (they resume when Run runs again) and returns
// nil. Only one Run per engine folder runs at a time, across processes.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.running {
		e.mu.Unlock()
		return errors.New("pipeline: Run is running already")
	}
	e.running = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.running = false
		e.mu.Unlock()
	}()
	lock, err := e.lockRun()
	if err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	defer lock.Close()
	x := &executor{
		e:      e,
		sched:  newScheduler(e.opts),
		runs:   map[string]*live{},
		jobs:   map[string]*attempt{},
		events: make(chan event, 16),
		base:   context.WithoutCancel(ctx),
	}
	return x.loop(ctx)
}

// newScheduler returns the scheduler of the executor.
func newScheduler(opts Options) scheduler {
	if opts.scheduler != nil {
		return opts.scheduler(opts.Capacity)
	}
	return schedule.New(opts.Capacity)
}

// RescanInterval is how often the executor looks in its database for runs
// another process started.
const RescanInterval = 2 * time.Second

func (x *executor) loop(ctx context.Context) error {
	load := true
	var timer clock.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	// Runs another process Started (outpost pipeline run while the agent
	// runs) are in the database only: look for them now and then.
	rescan := x.e.clock.NewTicker(RescanInterval)
	defer rescan.Stop()
	for {
		if load {
			if err := x.load(ctx); err != nil {
				x.e.log.Error("load runs", "err", err)
			}
			load = false
		}
		x.advanceAll(ctx)
		x.schedule(ctx)
		if t, ok := x.sched.Wake(x.e.clock.Now()); ok && (x.wakeAt.IsZero() || t.Before(x.wakeAt)) {
			x.wakeAt = t
		}
		var timerC <-chan time.Time
		if !x.wakeAt.IsZero() {
			d := max(x.wakeAt.Sub(x.e.clock.Now()), 0)
			if timer == nil {
				timer = x.e.clock.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			timerC = timer.C()
		}
		select {
		case <-ctx.Done():
			x.stop(ctx)
			return nil
		case <-x.e.wake:
			load = true
		case <-rescan.C():
			load = true
		case ev := <-x.events:
			x.pending--
			x.handle(ctx, ev)
		case <-timerC:
		}
		if timer != nil && timerC != nil && !timer.Stop() {
			select { // drain a fired timer so Reset starts afresh
			case <-timer.C():
			default:
			}
		}
	}
}

// load adds the unfinished runs of the database that the executor does not
// run yet. Steps recorded Running were cut by a crash or a stop: they are
// Pending again and start anew (from their checkpoints).
func (x *executor) load(ctx context.Context) error {
	rows, err := listRuns(ctx, x.e.db.sql, true)
	if err != nil {
		return err
	}
	for i := len(rows) - 1; i >= 0; i-- { // oldest first
		r := rows[i]
		if x.runs[r.name] != nil {
			continue
		}
		steps, err := getSteps(ctx, x.e.db.sql, r.number)
		if err != nil {
			return err
		}
		if len(steps) != len(r.spec.Steps) {
			x.e.log.Error("run not resumed: its steps do not match its spec", "run", r.name, "steps", len(steps), "spec", len(r.spec.Steps))
			continue
		}
		var cut []int
		for i := range steps {
			if steps[i].phase == v1alpha1.RunRunning {
				cut = append(cut, i)
			}
		}
		if len(cut) > 0 {
			err := x.e.db.tx(ctx, func(tx *sql.Tx) error {
				for _, i := range cut {
					s := steps[i]
					s.phase, s.message = v1alpha1.RunPending, "interrupted: the process running it stopped; it starts again"
					if err := putStep(ctx, tx, r.number, &s); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, i := range cut {
				steps[i].phase, steps[i].message = v1alpha1.RunPending, "interrupted: the process running it stopped; it starts again"
			}
			x.e.log.Info("resuming run", "run", r.name, "interrupted", len(cut))
		}
		x.runs[r.name] = &live{row: r, steps: steps, busy: map[int]*attempt{}}
	}
	return nil
}

// advanceAll applies Decide to every live run.
func (x *executor) advanceAll(ctx context.Context) {
	x.wakeAt = time.Time{}
	for name, r := range x.runs {
		x.advance(ctx, r)
		if r.row.phase.Finished() && len(r.busy) == 0 {
			delete(x.runs, name)
			x.e.removeAll(filepath.Join(x.e.opts.Dir, ckptDir, name))
			x.e.removeAll(filepath.Join(x.e.opts.Dir, workDir, name))
		}
	}
}

// advance applies Decide's plan to run r: it finishes the steps that will
// not run, prepares the ready ones and records the run's phase.
func (x *executor) advance(ctx context.Context, r *live) {
	if x.stopping {
		return
	}
	now := x.e.clock.Now()
	plan := Decide(&r.row.spec, r.states(), now)
	changed := false
	if len(plan.Finish) > 0 {
		err := x.e.db.tx(ctx, func(tx *sql.Tx) error {
			for _, v := range plan.Finish {
				s := r.steps[v.Step]
				s.phase, s.message, s.completed = v.Phase, v.Message, fmtTime(now)
				if err := putStep(ctx, tx, r.row.number, &s); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			x.e.log.Error("record skipped steps", "run", r.row.name, "err", err)
			return
		}
		for _, v := range plan.Finish {
			s := &r.steps[v.Step]
			s.phase, s.message, s.completed = v.Phase, v.Message, fmtTime(now)
			x.e.log.Info("step finished without running", "run", r.row.name, "step", s.name, "phase", v.Phase, "why", v.Message)
		}
		changed = true
	}
	if !plan.Wake.IsZero() && (x.wakeAt.IsZero() || plan.Wake.Before(x.wakeAt)) {
		x.wakeAt = plan.Wake
	}
	if plan.Phase != r.row.phase || plan.Message != r.row.message {
		row := *r.row
		row.phase, row.message = plan.Phase, plan.Message
		if row.started == "" && plan.Phase != v1alpha1.RunPending {
			row.started = fmtTime(now)
		}
		if plan.Done() {
			row.completed = fmtTime(now)
		}
		if err := x.e.db.tx(ctx, func(tx *sql.Tx) error { return putRunPhase(ctx, tx, &row) }); err != nil {
			x.e.log.Error("record run phase", "run", r.row.name, "err", err)
			return
		}
		*r.row = row
		changed = true
		if plan.Done() {
			x.e.log.Info("run finished", "run", row.name, "phase", row.phase, "message", row.message)
		}
	}
	if changed {
		x.e.updated(ctx, r.row.name)
	}
	for _, i := range plan.Ready {
		x.prepare(ctx, r, i)
	}
}

// prepare hands step i of r to a goroutine that resolves its inputs and
// looks its outputs up in the cache.
func (x *executor) prepare(ctx context.Context, r *live, i int) {
	name := r.row.spec.Steps[i].Name
	log, err := openStepLog(x.e.logPath(r.row.name, name), x.e.opts.LogLimit, x.e.clock)
	if err != nil {
		x.e.log.Error("open step log", "run", r.row.name, "step", name, "err", err)
		return
	}
	impl, ok := x.e.types[r.row.spec.Steps[i].Type]
	a := &attempt{run: r, idx: i, slot: preparing, impl: impl, log: log}
	a.env = x.e.newEnv(r.row, i, r.states(), log)
	a.env.attempt = r.steps[i].attempts + 1
	a.env.cpu = &a.cpu
	r.busy[i] = a
	x.pending++
	go func() {
		ev := event{a: a, prepared: true}
		if !ok {
			ev.err = fmt.Errorf("no implementation of step type %q", r.row.spec.Steps[i].Type)
		} else {
			ev.hit, ev.err = x.e.lookup(x.base, a.env, impl)
		}
		x.events <- ev
	}()
}

// lookup resolves a step's inputs and cache key, and returns the cached
// outputs of an earlier run when they may be used.
func (e *Engine) lookup(ctx context.Context, env *stepEnv, impl stepType) (*cacheEntry, error) {
	in, err := Inputs(&env.run.spec, env.idx, env.states)
	if err != nil {
		return nil, err
	}
	env.inputs = in
	fp := ""
	if impl.fingerprint != nil {
		if fp, err = impl.fingerprint(ctx, env); err != nil {
			return nil, err
		}
	}
	env.cacheKey = cacheKey(env.step, in, env.run.cluster, fp)
	if env.run.opts.NoCache {
		return nil, nil
	}
	hit, err := getCache(ctx, e.db.sql, env.cacheKey)
	if err != nil || hit == nil {
		return nil, err
	}
	if !e.outputsHeld(hit.outputs) || (impl.stillValid != nil && !impl.stillValid(ctx, env, hit.outputs)) {
		return nil, nil
	}
	return hit, nil
}

// handle applies what a step's goroutine reported.
func (x *executor) handle(ctx context.Context, ev event) {
	a := ev.a
	if ev.prepared {
		x.prepared(ctx, a, ev)
		return
	}
	x.sched.Finish(a.job.ID)
	delete(x.jobs, a.job.ID)
	cause := context.Cause(a.ctx)
	var pre preemptedError
	var to timeoutError
	switch {
	case ev.err == nil:
		x.succeed(ctx, a, ev.outputs, false)
	case errors.Is(cause, errStopping):
		x.interrupt(ctx, a, "interrupted: the engine stopped; it starts again when the engine runs")
	case errors.As(cause, &pre):
		x.preempted(ctx, a, pre)
	case errors.As(cause, &to):
		x.fail(ctx, a, to.Error(), true)
	default:
		x.fail(ctx, a, ev.err.Error(), true)
	}
}

// prepared takes a step out of preparation: into the scheduler's queue,
// or straight to its end (cached, failed, too big for the machine).
func (x *executor) prepared(ctx context.Context, a *attempt, ev event) {
	r := a.run
	st := &r.row.spec.Steps[a.idx]
	switch {
	case x.stopping:
		x.release(a)
	case ev.err != nil:
		x.startAttempt(ctx, a, "") // a failed preparation is a failed attempt
		x.fail(ctx, a, ev.err.Error(), true)
	case ev.hit != nil:
		a.log.Printf("cached: the outputs of step %s of run %s, which had the same type, params and inputs", ev.hit.step, ev.hit.run)
		x.succeed(ctx, a, ev.hit.outputs, true)
	default:
		if bad := unfit(&r.row.spec, a.idx, x.e.opts.Capacity); bad != nil {
			x.startAttempt(ctx, a, "")
			x.fail(ctx, a, bad.Error(), false)
			return
		}
		a.job = jobFor(&r.row.spec, a.idx, r.row.name, x.e.clock.Now())
		a.slot = queued
		x.jobs[a.job.ID] = a
		x.sched.Submit(a.job)
		a.log.Printf("queued: asks for %s", describeResources(a.job.Request))
		x.e.log.Debug("step queued", "run", r.row.name, "step", st.Name)
	}
}

// schedule asks the scheduler what to do and does it.
func (x *executor) schedule(ctx context.Context) {
	if x.stopping {
		return
	}
	x.e.mu.Lock()
	p99, fresh := x.e.p99, x.e.p99New
	x.e.p99New = false
	x.e.mu.Unlock()
	if fresh {
		x.sched.ObserveServing(p99)
	}
	for _, d := range x.sched.Schedule(x.e.clock.Now()) {
		a := x.jobs[d.JobID]
		if a == nil {
			x.e.log.Warn("scheduler decision for no job", "job", d.JobID, "action", d.Action)
			continue
		}
		switch d.Action {
		case schedule.Start:
			if a.slot != queued {
				continue
			}
			x.launch(ctx, a, d)
		case schedule.Preempt:
			if a.slot == running {
				a.log.Printf("preempted: %s", d.Reason)
				a.cancel(preemptedError{reason: d.Reason})
			}
		case schedule.Throttle, schedule.Unthrottle:
			if a.slot == running {
				a.cpu.Store(d.Granted.MilliCPU)
				verb := "throttled"
				if d.Action == schedule.Unthrottle {
					verb = "unthrottled"
				}
				a.log.Printf("%s to %s: %s", verb, describeResources(d.Granted), d.Reason)
			}
		}
	}
}

// startAttempt records that an attempt of a step starts.
func (x *executor) startAttempt(ctx context.Context, a *attempt, adapted string) bool {
	r := a.run
	s := r.steps[a.idx]
	s.phase, s.attempts, s.started, s.completed, s.adapted, s.message = v1alpha1.RunRunning, s.attempts+1, fmtTime(x.e.clock.Now()), "", adapted, ""
	s.retryAt = ""
	if err := x.e.db.tx(ctx, func(tx *sql.Tx) error { return putStep(ctx, tx, r.row.number, &s) }); err != nil {
		x.e.log.Error("record step start", "run", r.row.name, "step", s.name, "err", err)
		return false
	}
	r.steps[a.idx] = s
	a.env.attempt = s.attempts
	return true
}

// launch starts a queued attempt with what the scheduler granted.
func (x *executor) launch(ctx context.Context, a *attempt, d schedule.Decision) {
	if !x.startAttempt(ctx, a, d.Adapted) {
		a.cancel = func(error) {}
		x.sched.Finish(a.job.ID)
		delete(x.jobs, a.job.ID)
		x.release(a)
		return
	}
	x.e.updated(ctx, a.run.row.name)
	a.slot = running
	a.cpu.Store(d.Granted.MilliCPU)
	a.env.granted = d.Granted
	actx, cancel := context.WithCancelCause(x.base)
	a.ctx, a.cancel = actx, cancel
	st := a.env.step
	a.log.Printf("attempt %d started: granted %s%s", a.env.attempt, describeResources(d.Granted), adaptedNote(d.Adapted))
	x.pending++
	go func() {
		stopTimer := func() {}
		if st.Timeout != nil {
			t := x.e.clock.NewTimer(st.Timeout.Duration)
			done := make(chan struct{})
			go func() {
				select {
				case <-t.C():
					cancel(timeoutError{st.Timeout.Duration})
				case <-done:
				}
			}()
			stopTimer = func() { t.Stop(); close(done) }
		}
		outputs, err := a.impl.run(actx, a.env)
		stopTimer()
		if err == nil && actx.Err() == nil {
			err = checkOutputs(st, outputs)
		}
		if err == nil && actx.Err() != nil {
			err = context.Cause(actx) // a step that ignored its cancellation still ends cancelled
		}
		x.events <- event{a: a, outputs: outputs, err: err}
	}()
}

// checkOutputs checks that a step produced every output its type declares.
func checkOutputs(st *v1alpha1.PipelineStep, outputs map[string]string) error {
	var want []string
	if st.Type == v1alpha1.StepExec {
		want = st.Exec.Outputs
	} else if info, ok := v1alpha1.LookupStepType(st.Type); ok {
		want = info.Outputs
	}
	for _, o := range want {
		if _, ok := outputs[o]; !ok {
			return fmt.Errorf("the step produced no output %q", o)
		}
	}
	return nil
}

// succeed records a step's success: outputs, the cache entry, the models
// it registered, in one transaction.
func (x *executor) succeed(ctx context.Context, a *attempt, outputs map[string]string, cached bool) {
	r := a.run
	now := x.e.clock.Now()
	s := r.steps[a.idx]
	s.phase, s.outputs, s.cached, s.completed, s.message, s.retryAt = v1alpha1.RunSucceeded, copyOutputs(outputs), cached, fmtTime(now), "", ""
	if !cached {
		s.message = a.env.note
	}
	if cached {
		s.started = fmtTime(now)
	}
	err := x.e.db.tx(ctx, func(tx *sql.Tx) error {
		if err := putStep(ctx, tx, r.row.number, &s); err != nil {
			return err
		}
		if !cached && a.env.cacheKey != "" {
			if err := putCache(ctx, tx, a.env.cacheKey, a.env.step.Type, outputs, r.row.name, s.name, now); err != nil {
				return err
			}
		}
		for i := range a.env.models {
			m := a.env.models[i]
			m.run, m.step = r.row.number, s.name
			if err := putModel(ctx, tx, &m, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		x.e.log.Error("record step success", "run", r.row.name, "step", s.name, "err", err)
		x.interrupt(ctx, a, "interrupted: its success could not be recorded: "+err.Error())
		return
	}
	r.steps[a.idx] = s
	if !cached {
		a.log.Printf("attempt %d succeeded%s", s.attempts, describeOutputs(outputs))
	}
	x.e.log.Info("step succeeded", "run", r.row.name, "step", s.name, "cached", cached)
	x.release(a)
	x.e.removeAll(a.env.ckptDir)
	x.e.updated(ctx, r.row.name)
}

// fail records a failed attempt: retried after its backoff while the
// step's retry limit allows (and retry is true), failed otherwise.
func (x *executor) fail(ctx context.Context, a *attempt, msg string, retry bool) {
	r := a.run
	st := a.env.step
	now := x.e.clock.Now()
	s := r.steps[a.idx]
	s.failures++
	s.completed = fmtTime(now)
	at, again := RetryAfter(st, s.failures, now)
	if again && retry {
		s.phase, s.retryAt = v1alpha1.RunPending, fmtTime(at)
		s.message = fmt.Sprintf("attempt %d failed: %s; retry %d of %d at %s", s.attempts, msg, s.failures, st.Retries.Limit, at.UTC().Format(time.RFC3339))
	} else {
		s.phase, s.message = v1alpha1.RunFailed, msg
	}
	if err := x.e.db.tx(ctx, func(tx *sql.Tx) error { return putStep(ctx, tx, r.row.number, &s) }); err != nil {
		x.e.log.Error("record step failure", "run", r.row.name, "step", s.name, "err", err)
	}
	r.steps[a.idx] = s
	a.log.Printf("attempt %d failed: %s", s.attempts, s.message)
	x.e.log.Info("step failed", "run", r.row.name, "step", s.name, "message", s.message)
	x.release(a)
	x.e.updated(ctx, r.row.name)
}

// preempted puts a preempted step back in the scheduler's queue: not a
// failed attempt; it resumes from its checkpoint.
func (x *executor) preempted(ctx context.Context, a *attempt, p preemptedError) {
	r := a.run
	s := r.steps[a.idx]
	s.phase, s.message = v1alpha1.RunPending, p.Error()+"; it resumes from its checkpoint"
	if err := x.e.db.tx(ctx, func(tx *sql.Tx) error { return putStep(ctx, tx, r.row.number, &s) }); err != nil {
		x.e.log.Error("record step preemption", "run", r.row.name, "step", s.name, "err", err)
	}
	r.steps[a.idx] = s
	a.slot = queued
	a.env.models = nil
	x.jobs[a.job.ID] = a
	x.sched.Submit(a.job)
	x.e.updated(ctx, r.row.name)
}

// interrupt leaves a step Pending: it starts again later.
func (x *executor) interrupt(ctx context.Context, a *attempt, msg string) {
	r := a.run
	s := r.steps[a.idx]
	s.phase, s.message = v1alpha1.RunPending, msg
	if err := x.e.db.tx(ctx, func(tx *sql.Tx) error { return putStep(ctx, tx, r.row.number, &s) }); err != nil {
		x.e.log.Error("record step interruption", "run", r.row.name, "step", s.name, "err", err)
	}
	r.steps[a.idx] = s
	a.log.Printf("%s", msg)
	x.release(a)
	x.e.updated(ctx, r.row.name)
}

// release forgets an attempt.
func (x *executor) release(a *attempt) {
	delete(a.run.busy, a.idx)
	a.log.Close()
	x.e.removeAll(a.env.workDir)
}

// stop cancels every attempt and waits for their goroutines.
func (x *executor) stop(ctx context.Context) {
	x.stopping = true
	for _, r := range x.runs {
		for _, a := range r.busy {
			if a.slot == running {
				a.cancel(errStopping)
			}
		}
	}
	for x.pending > 0 {
		ev := <-x.events
		x.pending--
		x.handle(context.WithoutCancel(ctx), ev)
	}
	for _, r := range x.runs {
		for _, a := range r.busy {
			x.release(a) // queued: still Pending in the database
		}
	}
}

// describeResources writes resources as Kubernetes quantities.
func describeResources(r schedule.Resources) string {
	s := fmt.Sprintf("cpu %dm, memory %s", r.MilliCPU, bytesString(r.Memory))
	for k, v := range r.Accelerators {
		s += fmt.Sprintf(", %s %d", k, v)
	}
	return s
}

func adaptedNote(adapted string) string {
	if adapted == "" {
		return ""
	}
	return " (adapted: " + adapted + ")"
}

// describeOutputs lists outputs for a log line.
func describeOutputs(o map[string]string) string {
	if len(o) == 0 {
		return ""
	}
	s := ":"
	for _, k := range sortedKeys(o) {
		s += " " + k + "=" + o[k]
	}
	return s
}
