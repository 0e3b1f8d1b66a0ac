package fl

import (
	"errors"
	"time"
)

// Output is what one step of the coordinator produces: the assignments
// that changed (the adapter writes each as the cluster's desired state,
// after storing Published when there is one), the model it published, and
// events for the job's status and log.
type Output struct {
	Assignments []Assignment `json:"assignments,omitempty"`
	Published   *GlobalModel `json:"published,omitempty"`
	Events      []Event      `json:"events,omitempty"`
}

// Event is something that happened to the job, in a human sentence.
type Event struct {
	Time    time.Time `json:"time"`
	Round   int       `json:"round"`
	Kind    string    `json:"kind"` // started, aggregated, abandoned, refused, done, failed
	Message string    `json:"message"`
}

// JobState is where the job stands.
type JobState string

// Job states.
const (
	Waiting JobState = "waiting" // for MinClients online clusters
	Running JobState = "running"
	Done    JobState = "done"
	Failed  JobState = "failed"
)

// Status is the job's status, for the resource's status field.
type Status struct {
	State   JobState  `json:"state"`
	Round   int       `json:"round"` // rounds aggregated so far
	Attempt int       `json:"attempt,omitempty"`
	Phase   Phase     `json:"phase,omitempty"`
	Model   ModelRef  `json:"model"`
	Epsilon float64   `json:"epsilon,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Plans   []Plan    `json:"plans,omitempty"`
	History []Summary `json:"history,omitempty"`
}

// Plan is the local work and encoding chosen for a cluster, and why.
type Plan struct {
	Cluster    string   `json:"cluster"`
	LocalSteps int      `json:"localSteps"`
	Encoding   Encoding `json:"encoding"`
	Reason     string   `json:"reason"`
}

// Summary is one aggregated round.
type Summary struct {
	Round        int     `json:"round"`
	Participants int     `json:"participants"`
	Dropped      int     `json:"dropped,omitempty"`
	Loss         float64 `json:"loss"`
	Accuracy     float64 `json:"accuracy"`
	Epsilon      float64 `json:"epsilon,omitempty"`
	// UploadBytes is the sum of the updates' encoded sizes.
	UploadBytes int64 `json:"uploadBytes"`
}

// Errors the coordinator refuses reports with; each refusal leaves its
// state unchanged.
var (
	ErrRefused = errors.New("fl: report refused")
)

// Coordinator is a federated job's round protocol at the hub: a pure state
// machine driven by reports (Handle) and time (Tick). It does no I/O and
// reads no clock: the caller passes the time, persists Snapshot after every
// step that returned output, and delivers the output.
type Coordinator struct {
	st state
}

// New starts a job from its initial model's weights (see Weights).
func New(spec JobSpec, initial [][]float32, now time.Time) (*Coordinator, Output, error) {
	return nil, Output{}, errors.New("fl: not implemented")
}

// Handle takes one report from a cluster. A report that breaks the
// protocol is refused with an error wrapping ErrRefused and changes
// nothing.
func (c *Coordinator) Handle(now time.Time, r Report) (Output, error) {
	return Output{}, errors.New("fl: not implemented")
}

// Tick moves the job on at time now: phases that timed out close, rounds
// start when enough clusters are online.
func (c *Coordinator) Tick(now time.Time) Output {
	return Output{}
}

// Status returns the job's status.
func (c *Coordinator) Status() Status { return Status{} }

// Global returns the current global model.
func (c *Coordinator) Global() GlobalModel { return GlobalModel{} }

// Assignments returns the current assignment of every cluster known.
func (c *Coordinator) Assignments() []Assignment { return nil }

// Snapshot is the coordinator's whole state, JSON-serialisable.
type Snapshot struct {
	State state `json:"state"`
}

// Snapshot returns a copy of the state, to persist.
func (c *Coordinator) Snapshot() Snapshot { return Snapshot{} }

// Restore rebuilds a coordinator from a snapshot.
func Restore(s Snapshot) (*Coordinator, error) {
	return nil, errors.New("fl: not implemented")
}

type state struct{}
