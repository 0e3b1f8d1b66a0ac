// Package pipeline is the edge pipeline engine: it runs the steps of
// Pipelines (prepare data, train, fine-tune, evaluate, register, deploy,
// any command) inside the process that hosts it, the edge agent or the
// offline `outpost pipeline run`, with no pod per step and no hub needed.
//
// The engine keeps runs and steps in its own SQLite database (runs.db,
// one transaction per change, so kill -9 at any moment leaves it
// consistent), step outputs that are data or models as content-addressed
// blobs of its OCI image layout (oci/), each step's log in logs/RUN/STEP.log
// and training checkpoints in ckpt/. Run resumes the unfinished runs it
// finds: finished steps are not run again, and a training step resumes
// from the checkpoint of its last finished epoch.
//
// The state machine of a run's graph is pure (Decide, RetryAfter, Inputs)
// and tested directly; the executor (Run) applies it. Each ready step is
// a job of the edge scheduler (internal/schedule), which decides when it
// starts and with how much of the machine. A step whose type, params and
// inputs did not change since a run that succeeded is not run again: its
// outputs come from the cache (StepStatus.Cached).
//
// What the engine needs of its host (the served model of a deployment,
// activating a new version) is the small Host interface; it knows nothing
// of the agent.
package pipeline

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/schedule"
)

// Labels and annotations of the PipelineRuns the engine reports.
const (
	// LabelPipeline names the run's Pipeline.
	LabelPipeline = "ml.outpost.dev/pipeline"
	// AnnotationGeneration is the generation of the Pipeline the run executes.
	AnnotationGeneration = "ml.outpost.dev/pipeline-generation"
	// AnnotationRunNumber is the run's number on its cluster (1, 2, ...).
	AnnotationRunNumber = "ml.outpost.dev/run-number"
)

// Files and folders under Options.Dir.
const (
	dbFile     = "runs.db"
	lockFile   = "engine.lock"
	layoutDir  = "oci"
	logsDir    = "logs"
	ckptDir    = "ckpt"
	workDir    = "work"
	stepLogExt = ".log"
)

// Options configure an Engine.
type Options struct {
	// Dir is the engine's folder, such as AGENTDIR/pipelines. Required.
	Dir string
	// Cluster is the cluster's name: register steps record models in the
	// repository edge/<Cluster>/<model>. Required.
	Cluster string
	// Data is the folder dataset steps read when neither their path param
	// nor their run's RunOptions.Data names one (the agent's local data).
	Data string
	// Host is what the engine needs of its host. Without one, steps that
	// read a deployment's model or deploy fail, saying so.
	Host Host
	// Feedback gives dataset steps whose path is feedback:DEPLOYMENT the
	// labelled samples that came back for the deployment's requests; nil
	// fails such steps, saying so.
	Feedback FeedbackSource
	// Clock is the clock of timeouts, retries and status times; nil is the
	// real clock.
	Clock clock.Clock
	// Logger receives the engine's own log; nil discards it.
	Logger *slog.Logger
	// Capacity is the machine the scheduler places steps on. A zero
	// Allocatable is the machine's cores and memory (DetectCapacity).
	Capacity schedule.Config
	// OnUpdate, if set, is called with the run after every change of its
	// state (for the agent's outbox), one call at a time. It must not block
	// for long (the executor waits for it), nor call Start or MarkUploaded
	// (which call it).
	OnUpdate func(*v1alpha1.PipelineRun)
	// Runtime runs models for evaluate steps; nil is the Go runtime.
	Runtime engine.Runtime
	// LogLimit bounds each step's log file (default DefaultLogLimit).
	LogLimit int64
	// CgroupParent, if set, is a cgroup v2 folder delegated to the engine
	// (such as a systemd unit's with Delegate=yes) under which each exec
	// step's command gets a cgroup of its own. Without it the engine tries
	// its own cgroup, and falls back to rlimits.
	CgroupParent string

	// types, if set, replaces implementations of step types (tests).
	types map[v1alpha1.StepType]stepType
	// afterEpoch, if set, is called after a training step saved the
	// checkpoint of an epoch (tests).
	afterEpoch func(ctx context.Context, step string, epoch int)
	// scheduler, if set, makes the executor's scheduler (tests).
	scheduler func(schedule.Config) scheduler
}

// RunOptions tune one run.
type RunOptions struct {
	// Data is the local folder that dataset steps without a path param read.
	Data string `json:"data,omitempty"`
	// NoCache runs every step, even those whose outputs the cache holds.
	NoCache bool `json:"noCache,omitempty"`
}

// Engine runs pipelines. Its methods are safe for concurrent use.
type Engine struct {
	opts    Options
	clock   clock.Clock
	log     *slog.Logger
	db      *db
	layout  *Layout
	runtime engine.Runtime
	types   map[v1alpha1.StepType]stepType

	// wake tells Run that something changed: a run started, serving's
	// latency was observed.
	wake chan struct{}

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced after every change of a run
	running  bool
	p99      time.Duration // serving latency not yet given to the scheduler
	p99New   bool
	updateMu sync.Mutex // one OnUpdate call at a time
}

// Open opens the engine's folder, creating it if needed. Run executes the
// runs; the other methods work without it (to read runs another process
// executes).
func Open(ctx context.Context, opts Options) (*Engine, error) {
	if opts.Dir == "" {
		return nil, errors.New("pipeline: no folder given")
	}
	if opts.Cluster == "" {
		return nil, errors.New("pipeline: no cluster name given")
	}
	for _, d := range []string{opts.Dir, filepath.Join(opts.Dir, logsDir), filepath.Join(opts.Dir, ckptDir), filepath.Join(opts.Dir, workDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("pipeline: %w", err)
		}
	}
	layout, err := openLayout(filepath.Join(opts.Dir, layoutDir))
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	d, err := openDB(ctx, filepath.Join(opts.Dir, dbFile))
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	e := &Engine{
		opts:    opts,
		clock:   clock.OrReal(opts.Clock),
		log:     opts.Logger,
		db:      d,
		layout:  layout,
		runtime: opts.Runtime,
		types:   stepTypes(),
		wake:    make(chan struct{}, 1),
		changed: make(chan struct{}),
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.runtime == nil {
		e.runtime = engine.Go{}
	}
	for t, impl := range opts.types {
		e.types[t] = impl
	}
	if e.opts.Capacity.Allocatable.MilliCPU == 0 && e.opts.Capacity.Allocatable.Memory == 0 {
		e.opts.Capacity.Allocatable = DetectCapacity()
	}
	return e, nil
}

// Close closes the database. Run must have returned.
func (e *Engine) Close() error { return e.db.close() }

// Dir is the engine's folder.
func (e *Engine) Dir() string { return e.opts.Dir }

// Layout is the engine's OCI image layout, which holds step artifacts and
// the model versions register steps recorded (Layout().Repository(repo)
// is the source to upload one from).
func (e *Engine) Layout() *Layout { return e.layout }

// Start records a new run of spec, the spec of generation generation of
// Pipeline pipeline, named name, started by trigger (v1alpha1.TriggeredManual,
// ...; "" is Local). Run executes it. Starting a name that exists starts
// nothing and returns that run, so a caller that retries after a crash
// never runs a pipeline twice; a name that exists for another pipeline is
// an error.
func (e *Engine) Start(ctx context.Context, name, pipeline string, generation int64, spec *v1alpha1.PipelineSpec, trigger string, opts RunOptions) (*v1alpha1.PipelineRun, error) {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return nil, fmt.Errorf("run name %q: %s", name, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Subdomain(pipeline); len(msgs) > 0 {
		return nil, fmt.Errorf("pipeline name %q: %s", pipeline, strings.Join(msgs, "; "))
	}
	if errs := spec.Validate(field.NewPath("spec")); len(errs) > 0 {
		return nil, fmt.Errorf("pipeline %s: %w", pipeline, errs.ToAggregate())
	}
	if trigger == "" {
		trigger = v1alpha1.TriggeredLocal
	}
	if opts.Data != "" {
		abs, err := filepath.Abs(opts.Data)
		if err != nil {
			return nil, err
		}
		opts.Data = abs
	}
	created := false
	err := e.db.tx(ctx, func(tx *sql.Tx) error {
		old, err := getRun(ctx, tx, name)
		switch {
		case err == nil:
			if old.pipeline != pipeline {
				return fmt.Errorf("run %q exists already, of pipeline %q", name, old.pipeline)
			}
			return nil
		case !errors.Is(err, errNoRun):
			return err
		}
		created = true
		_, err = insertRun(ctx, tx, &runRow{name: name, pipeline: pipeline, generation: generation, trigger: trigger,
			cluster: e.opts.Cluster, spec: *spec.DeepCopy(), opts: opts, phase: v1alpha1.RunPending, created: fmtTime(e.clock.Now())})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("start run %s: %w", name, err)
	}
	if created {
		e.log.Info("run started", "run", name, "pipeline", pipeline, "trigger", trigger)
		e.poke()
		e.updated(ctx, name)
	}
	return e.Get(ctx, name)
}

// poke wakes Run.
func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// ObserveServing gives the scheduler serving's latest p99 latency, so that
// it throttles training when serving slows.
func (e *Engine) ObserveServing(p99 time.Duration) {
	e.mu.Lock()
	e.p99, e.p99New = p99, true
	e.mu.Unlock()
	e.poke()
}

// Get returns run name.
func (e *Engine) Get(ctx context.Context, name string) (*v1alpha1.PipelineRun, error) {
	r, err := getRun(ctx, e.db.sql, name)
	if err != nil {
		return nil, err
	}
	return e.build(ctx, r)
}

// IsNotFound reports whether err says a run does not exist.
func IsNotFound(err error) bool { return errors.Is(err, errNoRun) }

// List returns every run, newest first.
func (e *Engine) List(ctx context.Context) ([]*v1alpha1.PipelineRun, error) {
	rows, err := listRuns(ctx, e.db.sql, false)
	if err != nil {
		return nil, err
	}
	out := make([]*v1alpha1.PipelineRun, 0, len(rows))
	for _, r := range rows {
		pr, err := e.build(ctx, r)
		if err != nil {
			return nil, err
		}
		out = append(out, pr)
	}
	return out, nil
}

// build makes the PipelineRun of row r.
func (e *Engine) build(ctx context.Context, r *runRow) (*v1alpha1.PipelineRun, error) {
	steps, err := getSteps(ctx, e.db.sql, r.number)
	if err != nil {
		return nil, err
	}
	models, err := getModels(ctx, e.db.sql, r.number, false)
	if err != nil {
		return nil, err
	}
	pr := &v1alpha1.PipelineRun{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindPipelineRun},
		ObjectMeta: metav1.ObjectMeta{
			Name:              r.name,
			Labels:            map[string]string{LabelPipeline: r.pipeline},
			Annotations:       map[string]string{AnnotationGeneration: strconv.FormatInt(r.generation, 10), AnnotationRunNumber: strconv.FormatInt(r.number, 10)},
			CreationTimestamp: metav1.NewTime(parseTime(r.created)),
		},
		Spec: v1alpha1.PipelineRunSpec{Pipeline: r.pipeline, Cluster: r.cluster, Trigger: r.trigger},
		Status: v1alpha1.PipelineRunStatus{
			Phase: r.phase, StartTime: metaTime(r.started), CompletionTime: metaTime(r.completed), Message: r.message,
		},
	}
	for _, s := range steps {
		pr.Status.Steps = append(pr.Status.Steps, v1alpha1.StepStatus{
			Name: s.name, Phase: s.phase, Attempts: s.attempts, Cached: s.cached,
			StartTime: metaTime(s.started), CompletionTime: metaTime(s.completed),
			Outputs: s.outputs, Adapted: s.adapted, Message: s.message,
		})
	}
	for _, m := range models {
		pr.Status.Models = append(pr.Status.Models, v1alpha1.ProducedModel{Repository: m.repository, Version: m.version, Digest: m.digest, Uploaded: m.uploaded})
	}
	return pr, nil
}

// Wait waits until run name is over and returns it.
func (e *Engine) Wait(ctx context.Context, name string) (*v1alpha1.PipelineRun, error) {
	return e.Follow(ctx, name, nil)
}

// ErrBusy is wrapped by Run's error when another process runs this
// engine folder's pipelines (the agent): runs Started here are then
// executed there, and Follow shows their progress all the same.
var ErrBusy = errors.New("pipelines busy")

// followPoll is how often Follow reads a run that another process may be
// executing.
const followPoll = 500 * time.Millisecond

// Follow waits until run name finished, like Wait, calling fn (if set) with
// the run whenever its state changed, whichever process executes it.
func (e *Engine) Follow(ctx context.Context, name string, fn func(*v1alpha1.PipelineRun)) (*v1alpha1.PipelineRun, error) {
	tick := e.clock.NewTicker(followPoll)
	defer tick.Stop()
	var last *v1alpha1.PipelineRun
	for {
		e.mu.Lock()
		changed := e.changed
		e.mu.Unlock()
		r, err := e.Get(ctx, name)
		if err != nil {
			return nil, err
		}
		if fn != nil && (last == nil || !equality.Semantic.DeepEqual(last.Status, r.Status)) {
			fn(r)
		}
		last = r
		if r.Status.Phase.Finished() {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-changed:
		case <-tick.C():
		}
	}
}

// updated tells OnUpdate and Wait that run name changed.
func (e *Engine) updated(ctx context.Context, name string) {
	e.mu.Lock()
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
	if e.opts.OnUpdate == nil {
		return
	}
	r, err := e.Get(context.WithoutCancel(ctx), name)
	if err != nil {
		e.log.Warn("read run for its update", "run", name, "err", err)
		return
	}
	e.updateMu.Lock()
	defer e.updateMu.Unlock()
	e.opts.OnUpdate(r)
}

// logPath is the log file of a step of a run.
func (e *Engine) logPath(run, step string) string {
	return filepath.Join(e.opts.Dir, logsDir, run, step+stepLogExt)
}

// Logs opens the log of step of run: every attempt's lines, timestamped.
func (e *Engine) Logs(ctx context.Context, run, step string) (io.ReadCloser, error) {
	r, err := e.Get(ctx, run)
	if err != nil {
		return nil, err
	}
	known := false
	for _, s := range r.Status.Steps {
		known = known || s.Name == step
	}
	if !known {
		return nil, fmt.Errorf("run %s has no step %q", run, step)
	}
	f, err := os.Open(e.logPath(run, step))
	if errors.Is(err, os.ErrNotExist) {
		return io.NopCloser(strings.NewReader("")), nil
	}
	return f, err
}

// LogTail returns about the last n bytes of a step's log, whole lines: a
// summary for run records.
func (e *Engine) LogTail(run, step string, n int64) (string, error) {
	s, err := tailFile(e.logPath(run, step), n)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	return s, err
}

// PendingUploads returns the model versions register steps recorded that
// MarkUploaded has not marked yet, oldest first. Each is a ModelPack
// artifact in Layout().Repository(m.Repository), tagged m.Version.
func (e *Engine) PendingUploads(ctx context.Context) ([]Model, error) {
	rows, err := getModels(ctx, e.db.sql, 0, true)
	if err != nil {
		return nil, err
	}
	out := make([]Model, 0, len(rows))
	for _, m := range rows {
		out = append(out, e.model(m))
	}
	return out, nil
}

func (e *Engine) model(m modelRow) Model {
	return Model{Repository: m.repository, Version: m.version, Digest: m.digest, File: e.layout.BlobPath(digestOf(m.file)),
		Run: m.runName, Uploaded: m.uploaded}
}

// MarkUploaded records that the hub holds version of repo; the run that
// registered it is updated (ProducedModel.Uploaded).
func (e *Engine) MarkUploaded(ctx context.Context, repo, version string) error {
	var runName string
	err := e.db.tx(ctx, func(tx *sql.Tx) error {
		m, err := getModel(ctx, tx, repo, version)
		if err != nil {
			return err
		}
		if m == nil {
			return fmt.Errorf("no model %s:%s was registered here", repo, version)
		}
		runName = m.runName
		_, err = tx.ExecContext(ctx, `UPDATE models SET uploaded = 1 WHERE repository = ? AND version = ?`, repo, version)
		return err
	})
	if err != nil {
		return fmt.Errorf("mark uploaded: %w", err)
	}
	e.updated(ctx, runName)
	return nil
}

// Busy reports whether another process (the agent) runs this engine
// folder's pipelines now: runs Started here are then executed there.
func (e *Engine) Busy() bool {
	e.mu.Lock()
	running := e.running
	e.mu.Unlock()
	if running {
		return false
	}
	f, err := e.lockRun()
	if err != nil {
		return errors.Is(err, ErrBusy)
	}
	f.Close()
	return false
}

// lockRun takes the engine folder's run lock, so that two processes never
// execute the same runs.
func (e *Engine) lockRun() (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(e.opts.Dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another process (the agent, or another 'outpost pipeline run') runs the pipelines of %s", ErrBusy, e.opts.Dir)
		}
		return nil, err
	}
	return f, nil
}
