// Package schedule is the edge scheduler of pipeline steps: a pure state
// machine that decides which steps start, with how much of the cluster, which
// are preempted, and when training is throttled to keep serving's latency
// within its target. It does no I/O and reads no clock: the caller passes the
// time, so it runs the same on a simulated clock.
//
// The caller (internal/pipeline's executor) Submits jobs, calls Schedule
// whenever something changed (a job submitted or finished, serving latency
// observed, a timer fired: Wake says when) and acts on the decisions it
// returns, in order.
//
// The rules, which docs/pipelines.md explains to users:
//
//   - Admission. A job starts only when what it gets fits in the cluster's
//     Allocatable less ServingReserve less what running jobs hold, in every
//     amount (CPU by requests, memory, each accelerator type): nothing is
//     ever over-committed.
//   - Order. Waiting jobs are taken by effective priority, Priority plus one
//     for every Config.Aging waited since Submitted, highest first; ties by
//     Submitted, then ID.
//   - Backfill with a reservation. A job that cannot start does not at first
//     hold back the jobs after it: any that fits in what is left starts. The
//     first job in the order that cannot start and has waited
//     Config.ReserveAfter holds a reservation: the jobs after it may only
//     take what it does not need (its minimum is set aside from what is
//     free, amount by amount), so that what it lacks is only taken by jobs
//     before it and comes as running jobs end. One job at a time holds it, as
//     in EASY backfilling: reserving for every long-waiting job would hold the
//     cluster to strict order, and small jobs would queue behind large ones.
//     With aging, every job comes to the head of the queue and then starts:
//     none starves.
//   - Preemption. A job that cannot start may preempt running ClassTraining
//     jobs whose Priority is strictly lower than its own and whose effective
//     priority when they started was lower than its own now, lowest first
//     and as few as make room for its minimum. ClassOther jobs are never
//     preempted. The caller stops a preempted job and Submits it again with
//     its original Submitted, so that it keeps its age: the strict order on
//     Priority means two jobs never preempt each other in turn, and each
//     restart starts the job with a higher effective priority, so that in the
//     end newcomers preempt it no more.
//   - Adaptation. A job with a Min starts with less than its Request when the
//     whole of it does not fit but its minimum does, with the most that fits;
//     Decision.Adapted says so. It keeps that grant until it ends.
//   - Throttling. When serving's p99 latency (ObserveServing) is over
//     Config.ServingTarget, each Schedule after such an observation halves the
//     CPU of the running training jobs (not below Config.ThrottleFloor), and
//     no training job starts until the p99 falls below UnthrottleRatio (80%)
//     of the target. Each observation below that gives every throttled job
//     back half of the CPU it lacks (all of it once that is no more than the
//     floor), as soon as the CPU is free: the grant climbs back in steps
//     rather than at once, so that serving settles between 80% and 100% of
//     the target instead of swinging over and under it. Throttled CPU goes
//     back to the pool in the meantime.
package schedule

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Resources is an amount of a cluster's resources.
type Resources struct {
	// MilliCPU is thousandths of a core.
	MilliCPU int64
	// Memory is bytes.
	Memory int64
	// Accelerators counts devices by type ("nvidia.com/gpu").
	Accelerators map[string]int64
}

// Class is what a job is, for throttling and preemption.
type Class int

// Job classes.
const (
	// ClassOther is any step that is neither throttled nor preempted.
	ClassOther Class = iota
	// ClassTraining is a training step: it checkpoints, so it may be
	// preempted (and resumes from its checkpoint) and is throttled when
	// serving's latency rises.
	ClassTraining
)

// Job is a step waiting to run or running.
type Job struct {
	// ID names the job uniquely (run/step).
	ID string
	// Priority orders jobs: higher first.
	Priority int32
	// Submitted is when the job entered the queue; aging counts from it. A
	// job submitted again after a preemption keeps its first Submitted.
	Submitted time.Time
	// Request is what the job asks for.
	Request Resources
	// Min, if not zero, is the least the job can run with: the scheduler may
	// start it with less than Request, down to Min, and says so in the
	// decision's Adapted. Each amount counts on its own: one that is zero (or
	// not below Request's) means the job needs all it asked of that one.
	Min Resources
	// Class is the job's class.
	Class Class
}

// Action is what a Decision asks the caller to do.
type Action int

// Actions.
const (
	// Start the job with Granted resources.
	Start Action = iota
	// Preempt the running job: stop it (it resumes from its checkpoint when
	// it starts again) and Submit it again.
	Preempt
	// Throttle the running training job to Granted (fewer threads) to bring
	// serving's latency back within its target.
	Throttle
	// Unthrottle gives the throttled job back CPU, up to Granted: all it
	// started with or, while serving's latency settles, part of it.
	Unthrottle
)

// Decision is one thing the caller must do.
type Decision struct {
	// Action is what to do.
	Action Action
	// JobID is the job concerned.
	JobID string
	// For, on a Preempt, is the job the preemption makes room for; it is
	// started by a later decision of the same Schedule.
	For string
	// Granted is what the job may use from now on.
	Granted Resources
	// Adapted, if not empty, says how the job was adapted ("memory 512Mi of
	// 1Gi asked"), for the step's status.
	Adapted string
	// Reason says why, for logs and status.
	Reason string
}

// Config describes the cluster a Scheduler places jobs on.
type Config struct {
	// Allocatable is what the cluster offers.
	Allocatable Resources
	// ServingReserve is what serving keeps for itself; jobs never get it.
	ServingReserve Resources
	// Aging raises a waiting job's effective priority by one for every
	// Aging it has waited, so that no job waits for ever; 0 means no aging.
	Aging time.Duration
	// ServingTarget is the serving p99 latency to keep; 0 turns throttling off.
	ServingTarget time.Duration
	// ReserveAfter is how long a job that cannot start waits before it may
	// hold the reservation: the jobs after it in the queue may no longer
	// take what it needs (see the package's documentation). 0 means
	// DefaultReserveAfter; a negative value never reserves (pure backfill,
	// which can starve large jobs).
	ReserveAfter time.Duration
	// ThrottleFloor is the least MilliCPU throttling leaves a training job;
	// 0 means DefaultThrottleFloor.
	ThrottleFloor int64
}

// Defaults of Config.
const (
	DefaultReserveAfter        = 5 * time.Minute
	DefaultThrottleFloor int64 = 100
)

// UnthrottleRatio is the share of Config.ServingTarget that serving's p99
// must fall below before training is unthrottled and started again: the
// hysteresis that keeps throttling from flapping.
const UnthrottleRatio = 0.8

// RunningJob is a job the scheduler started that has not finished.
type RunningJob struct {
	// Job is the job as submitted.
	Job Job
	// Granted is what it may use now.
	Granted Resources
	// Started is when Schedule started it.
	Started time.Time
	// Throttled reports whether its CPU is below what it started with.
	Throttled bool
}

// placed is a running job: what it has now and what it started with.
type placed struct {
	job     Job
	granted Resources
	full    Resources
	started time.Time
	// eff is the job's effective priority when it started.
	eff int64
	// credit is the MilliCPU a throttled job may take back when it is free.
	credit int64
}

// Scheduler is the pure edge scheduler. It is not safe for concurrent use.
type Scheduler struct {
	cfg     Config
	queue   []Job // in submission order
	running map[string]*placed
	// over is set while serving's p99 is over target (until it falls below
	// UnthrottleRatio of it): training is held back.
	over bool
	// tighten is set by an observation over target: the next Schedule
	// halves the training jobs' CPU.
	tighten bool
	// loosen is set by an observation under UnthrottleRatio of the target:
	// the next Schedule lets throttled jobs take back half of what they lack.
	loosen bool
}

// New returns a Scheduler for the cluster cfg describes.
func New(cfg Config) *Scheduler {
	cfg.Allocatable = cfg.Allocatable.clone()
	cfg.ServingReserve = cfg.ServingReserve.clone()
	if cfg.ReserveAfter == 0 {
		cfg.ReserveAfter = DefaultReserveAfter
	}
	if cfg.ThrottleFloor <= 0 {
		cfg.ThrottleFloor = DefaultThrottleFloor
	}
	return &Scheduler{cfg: cfg, running: map[string]*placed{}}
}

// Submit queues a job. A job of the same ID already queued is replaced; one
// running is forgotten, as if it had finished. The caller submits a
// preempted job again with its original Submitted.
func (s *Scheduler) Submit(j Job) {
	j.Request = j.Request.clone()
	j.Min = j.Min.clone()
	delete(s.running, j.ID)
	for i := range s.queue {
		if s.queue[i].ID == j.ID {
			s.queue = slices.Delete(s.queue, i, i+1)
			break
		}
	}
	s.queue = append(s.queue, j)
}

// Finish releases what a running job holds, or drops a queued one. An
// unknown ID is ignored.
func (s *Scheduler) Finish(id string) {
	delete(s.running, id)
	s.queue = slices.DeleteFunc(s.queue, func(j Job) bool { return j.ID == id })
}

// ObserveServing records serving's latest p99 latency. Over
// Config.ServingTarget, the next Schedule throttles training further; below
// UnthrottleRatio of it, training may start again and the next Schedule
// gives throttled jobs back part of their CPU. Nothing changes without a
// target.
func (s *Scheduler) ObserveServing(p99 time.Duration) {
	t := s.cfg.ServingTarget
	switch {
	case t <= 0:
	case p99 > t:
		s.over, s.tighten, s.loosen = true, true, false
	case float64(p99) < UnthrottleRatio*float64(t):
		s.over, s.tighten, s.loosen = false, false, true
	}
}

// Throttling reports whether serving is over its target: training jobs are
// throttled and none starts.
func (s *Scheduler) Throttling() bool { return s.over }

// Fits reports whether a job asking r could ever run on the cluster.
func (s *Scheduler) Fits(r Resources) bool { return le(r.clone(), s.capacity()) }

// CanRun reports whether j could ever run on the cluster, adapted down to
// its Min if need be. A queued job that cannot is never started.
func (s *Scheduler) CanRun(j Job) bool { return le(minimum(j), s.capacity()) }

// capacity is what jobs may ever have: Allocatable less ServingReserve.
func (s *Scheduler) capacity() Resources { return sub(s.cfg.Allocatable, s.cfg.ServingReserve) }

// Free returns what no running job holds: Allocatable less ServingReserve
// less every running job's grant.
func (s *Scheduler) Free() Resources {
	free := s.capacity()
	for _, p := range s.running {
		free = sub(free, p.granted)
	}
	return free
}

// Running returns the running jobs, by ID.
func (s *Scheduler) Running() []RunningJob {
	out := make([]RunningJob, 0, len(s.running))
	for _, p := range s.running {
		j := p.job
		j.Request, j.Min = j.Request.clone(), j.Min.clone()
		out = append(out, RunningJob{Job: j, Granted: p.granted.clone(), Started: p.started,
			Throttled: p.granted.MilliCPU < p.full.MilliCPU})
	}
	slices.SortFunc(out, func(a, b RunningJob) int { return strings.Compare(a.Job.ID, b.Job.ID) })
	return out
}

// Queued returns the waiting jobs in the order Schedule considers them at
// now: by effective priority, then Submitted, then ID.
func (s *Scheduler) Queued(now time.Time) []Job {
	out := s.ranked(now)
	for i := range out {
		out[i].Request, out[i].Min = out[i].Request.clone(), out[i].Min.clone()
	}
	return out
}

// EffectivePriority returns j's priority at now: Priority plus one for every
// Config.Aging since j.Submitted.
func (s *Scheduler) EffectivePriority(j Job, now time.Time) int64 {
	p := int64(j.Priority)
	if s.cfg.Aging > 0 {
		if w := now.Sub(j.Submitted); w > 0 {
			p += int64(w / s.cfg.Aging)
		}
	}
	return p
}

// Wake returns when Schedule should be called again if nothing else
// happens before: the next time a waiting job's effective priority rises
// or its reservation begins. It returns false when no job waits.
func (s *Scheduler) Wake(now time.Time) (time.Time, bool) {
	var next time.Time
	found := false
	consider := func(t time.Time) {
		if t.After(now) && (!found || t.Before(next)) {
			next, found = t, true
		}
	}
	for _, j := range s.queue {
		if a := s.cfg.Aging; a > 0 {
			w := max(now.Sub(j.Submitted), 0)
			consider(j.Submitted.Add((w/a + 1) * a))
		}
		if s.cfg.ReserveAfter > 0 {
			consider(j.Submitted.Add(s.cfg.ReserveAfter))
		}
	}
	return next, found
}

// ranked returns the queue in the order Schedule takes it at now.
func (s *Scheduler) ranked(now time.Time) []Job {
	out := slices.Clone(s.queue)
	slices.SortStableFunc(out, func(a, b Job) int {
		if c := cmp.Compare(s.EffectivePriority(b, now), s.EffectivePriority(a, now)); c != 0 {
			return c
		}
		if c := a.Submitted.Compare(b.Submitted); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// reserves reports whether j, when it cannot start at now and no job before
// it holds the reservation, sets aside its minimum from the jobs after it.
func (s *Scheduler) reserves(j Job, now time.Time) bool {
	return s.cfg.ReserveAfter > 0 && now.Sub(j.Submitted) >= s.cfg.ReserveAfter
}

// Schedule returns what to do now, in order: throttling changes first, then
// for each job started the preemptions that make room for it and its start.
// The jobs preempted are no longer running; those started no longer queued.
func (s *Scheduler) Schedule(now time.Time) []Decision {
	out := s.throttle()
	avail := s.Free()
	started := map[string]bool{}
	reserved := false // one job at a time holds a reservation
	for _, j := range s.ranked(now) {
		if j.Class == ClassTraining && s.over {
			continue // serving first: no training starts while over target
		}
		if !s.CanRun(j) {
			continue // never fits; the caller was to check Fits
		}
		lo := minimum(j)
		var victims []*placed
		if !le(lo, avail) {
			victims = s.victims(j, now, avail, started)
			if victims == nil {
				if !reserved && s.reserves(j, now) {
					avail = reserve(avail, lo)
					reserved = true
				}
				continue
			}
		}
		for _, v := range victims {
			avail = add(avail, v.granted)
			delete(s.running, v.job.ID)
			out = append(out, Decision{Action: Preempt, JobID: v.job.ID, For: j.ID, Granted: v.granted,
				Reason: fmt.Sprintf("preempted for %s (priority %d over %d)", j.ID, j.Priority, v.job.Priority)})
		}
		g := lower(j.Request, avail)
		avail = sub(avail, g)
		started[j.ID] = true
		e := s.EffectivePriority(j, now)
		s.running[j.ID] = &placed{job: j, granted: g, full: g.clone(), started: now, eff: e}
		reason := fmt.Sprintf("priority %d", e)
		if e != int64(j.Priority) {
			reason = fmt.Sprintf("priority %d (%d, aged %d)", e, j.Priority, e-int64(j.Priority))
		}
		out = append(out, Decision{Action: Start, JobID: j.ID, Granted: g.clone(), Adapted: adapted(j, g), Reason: reason})
	}
	s.queue = slices.DeleteFunc(s.queue, func(j Job) bool { return started[j.ID] })
	return out
}

// victims returns the running jobs j may preempt that make room for its
// minimum beside avail, as few and as low as it can, or nil.
func (s *Scheduler) victims(j Job, now time.Time, avail Resources, started map[string]bool) []*placed {
	ej := s.EffectivePriority(j, now)
	var cands []*placed
	for _, p := range s.running {
		if p.job.Class == ClassTraining && p.job.Priority < j.Priority && p.eff < ej && !started[p.job.ID] {
			cands = append(cands, p)
		}
	}
	// Lowest first; of equals, the last started (it loses the least work).
	slices.SortFunc(cands, func(a, b *placed) int {
		if c := cmp.Compare(a.job.Priority, b.job.Priority); c != 0 {
			return c
		}
		if c := cmp.Compare(a.eff, b.eff); c != 0 {
			return c
		}
		if c := b.started.Compare(a.started); c != 0 {
			return c
		}
		return strings.Compare(a.job.ID, b.job.ID)
	})
	lo := minimum(j)
	room := avail
	n := 0
	for n < len(cands) && !le(lo, room) {
		room = add(room, cands[n].granted)
		n++
	}
	if !le(lo, room) {
		return nil
	}
	chosen := slices.Clone(cands[:n])
	// Keep only those needed, dropping the highest first.
	for i := len(chosen) - 1; i >= 0; i-- {
		if le(lo, sub(room, chosen[i].granted)) {
			room = sub(room, chosen[i].granted)
			chosen = slices.Delete(chosen, i, i+1)
		}
	}
	return chosen
}

// throttle halves the running training jobs' CPU after an observation over
// target, or gives it back in steps once serving is under UnthrottleRatio of
// it, as far as the CPU is free.
func (s *Scheduler) throttle() []Decision {
	if s.cfg.ServingTarget <= 0 {
		return nil
	}
	var out []Decision
	jobs := slices.Collect(maps.Values(s.running))
	slices.SortFunc(jobs, func(a, b *placed) int {
		if c := cmp.Compare(b.job.Priority, a.job.Priority); c != 0 {
			return c
		}
		if c := a.job.Submitted.Compare(b.job.Submitted); c != 0 {
			return c
		}
		return strings.Compare(a.job.ID, b.job.ID)
	})
	switch {
	case s.tighten:
		s.tighten = false
		for _, p := range jobs {
			p.credit = 0
			c := p.granted.MilliCPU
			if n := max(c/2, s.cfg.ThrottleFloor); p.job.Class == ClassTraining && n < c {
				p.granted.MilliCPU = n
				out = append(out, Decision{Action: Throttle, JobID: p.job.ID, Granted: p.granted.clone(),
					Adapted: "cpu " + cpuString(n) + " of " + cpuString(p.full.MilliCPU) + " granted",
					Reason:  "serving p99 over target " + s.cfg.ServingTarget.String()})
			}
		}
	case !s.over:
		if s.loosen {
			s.loosen = false
			for _, p := range jobs {
				d := p.full.MilliCPU - p.granted.MilliCPU
				if d > s.cfg.ThrottleFloor {
					d /= 2
				}
				p.credit = max(p.credit, d)
			}
		}
		free := s.Free().MilliCPU
		for _, p := range jobs {
			give := min(p.credit, p.full.MilliCPU-p.granted.MilliCPU, free)
			if give <= 0 {
				continue
			}
			free -= give
			p.credit -= give
			p.granted.MilliCPU += give
			d := Decision{Action: Unthrottle, JobID: p.job.ID, Granted: p.granted.clone(),
				Reason: "serving p99 under " + time.Duration(UnthrottleRatio*float64(s.cfg.ServingTarget)).String()}
			if p.granted.MilliCPU < p.full.MilliCPU {
				d.Adapted = "cpu " + cpuString(p.granted.MilliCPU) + " of " + cpuString(p.full.MilliCPU) + " granted"
			}
			out = append(out, d)
		}
	}
	return out
}
