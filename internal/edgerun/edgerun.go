// Package edgerun runs an edge agent's pipelines: the runs the hub
// requests, the runs schedules and triggers start (a deployment's drift
// alarm, a new version activated), with or without a hub, on the pipeline
// engine of internal/pipeline. It is the glue between the agent (desired
// state, outbox, local deployment and upload of models produced here) and
// the engine, which know nothing of each other: the agent keeps syncing
// and serving with no runtime in it, and the engine runs steps with no
// agent in it.
//
// Every change of a run goes into the agent's outbox as a pipeline.run
// record; every model version a run registers goes up to the cluster's
// edge repository, resumably and once, when the hub can be reached.
package edgerun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/durable"
	"outpost.dev/outpost/internal/outbox"
	"outpost.dev/outpost/internal/pipeline"
)

// Dir is the engine's folder under the agent's data directory.
const Dir = "pipelines"

// DefaultData is the folder, under the agent's data directory, that
// dataset steps read when they name no path.
const DefaultData = "data"

// firedFile keeps, by pipeline, when its schedule last fired.
const firedFile = "schedules.json"

// Defaults of Options.
const (
	DefaultInterval   = 10 * time.Second
	DefaultRetryBase  = time.Second
	DefaultRetryMax   = 30 * time.Second
	maxLogTailRequest = v1alpha1.MaxStepLogTailBytes
)

// Options configure a Runner.
type Options struct {
	// Data is the folder dataset steps read when they name no path; empty
	// means AGENTDIR/data.
	Data string
	// Interval is how often the runner looks again with nothing to wake it
	// (default DefaultInterval).
	Interval time.Duration
	// RetryBase and RetryMax bound the backoff of failed uploads.
	RetryBase, RetryMax time.Duration
	// Clock is the clock of schedules and backoff; nil is the real clock.
	Clock clock.Clock
	// Logger receives the runner's logs; nil discards them.
	Logger *slog.Logger
}

// Runner runs an agent's pipelines. Create it with New before the agent
// runs (its OnEvent and the engine's OnUpdate and Host point at it), then
// Run it beside the agent and the engine.
type Runner struct {
	agent *agent.Agent
	eng   *pipeline.Engine
	dir   string
	opts  Options
	clock clock.Clock
	log   *slog.Logger

	wake chan struct{}

	mu     sync.Mutex
	events []agent.Event
	seq    int64
}

// New returns a Runner for the agent whose data directory is agentDir. Wire
// it with Attach once the agent and the engine exist: the agent's
// Config.OnEvent is r.Event, the engine's Options.Host is r and its
// Options.OnUpdate is r.Updated.
func New(agentDir string, opts Options) *Runner {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = DefaultRetryBase
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = DefaultRetryMax
	}
	if opts.Data == "" {
		opts.Data = filepath.Join(agentDir, DefaultData)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{dir: filepath.Join(agentDir, Dir), opts: opts, clock: clock.OrReal(opts.Clock), log: log,
		wake: make(chan struct{}, 1)}
}

// EngineDir is the folder the engine of this runner lives in.
func (r *Runner) EngineDir() string { return r.dir }

// DataDir is the folder of local data dataset steps read by default: the
// engine's Options.Data.
func (r *Runner) DataDir() string { return r.opts.Data }

// Attach gives the runner its agent and engine.
func (r *Runner) Attach(a *agent.Agent, e *pipeline.Engine) {
	r.agent, r.eng = a, e
}

// Event is the agent's Config.OnEvent: an event that may trigger runs.
func (r *Runner) Event(ev agent.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	r.signal()
}

// Poke makes the runner look at the desired pipelines again now, as after
// the agent applied a new desired state.
func (r *Runner) Poke() { r.signal() }

func (r *Runner) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// ActiveModel returns the ONNX file of the version a deployment serves
// (pipeline.Host).
func (r *Runner) ActiveModel(_ context.Context, deployment string) (pipeline.ModelRef, error) {
	for _, m := range r.agent.Active() {
		if m.Deployment != deployment {
			continue
		}
		paths := make([]string, 0, len(m.Files))
		for p := range m.Files {
			if strings.HasSuffix(p, ".onnx") {
				paths = append(paths, p)
			}
		}
		slices.Sort(paths)
		if len(paths) == 0 {
			return pipeline.ModelRef{}, fmt.Errorf("deployment %q serves %s@%s, which has no .onnx file", deployment, m.Model, m.Version)
		}
		return pipeline.ModelRef{Name: m.Model, Version: m.Version, Digest: m.Digest, Path: m.Files[paths[0]]}, nil
	}
	return pipeline.ModelRef{}, fmt.Errorf("deployment %q serves nothing on this cluster", deployment)
}

// Deploy activates a version a run registered (pipeline.Host), through the
// agent's version guard.
func (r *Runner) Deploy(ctx context.Context, deployment string, m pipeline.Model) (string, error) {
	lv, err := r.localVersion(ctx, m)
	if err != nil {
		return "", err
	}
	lv.Deployment = deployment
	return r.agent.DeployLocal(ctx, lv)
}

var _ pipeline.Host = (*Runner)(nil)

// localVersion finds a registered model in the engine's layout.
func (r *Runner) localVersion(ctx context.Context, m pipeline.Model) (agent.LocalVersion, error) {
	name, err := v1alpha1.ParseModelName(m.Repository)
	if err != nil {
		return agent.LocalVersion{}, err
	}
	repo := r.eng.Layout().Repository(m.Repository)
	desc, err := repo.Resolve(ctx, m.Digest)
	if err != nil {
		return agent.LocalVersion{}, fmt.Errorf("model %s:%s: %w", m.Repository, m.Version, err)
	}
	return agent.LocalVersion{Model: name.Name, Version: m.Version, Manifest: desc, Store: repo}, nil
}

// Updated is the engine's OnUpdate: it puts the run's new state into the
// agent's outbox, with its steps' log tails and a sequence number that
// orders the updates at the hub.
func (r *Runner) Updated(run *v1alpha1.PipelineRun) {
	ctx := context.Background()
	up := run.DeepCopy()
	r.mu.Lock()
	seq := max(r.clock.Now().UnixNano(), r.seq+1)
	r.seq = seq
	r.mu.Unlock()
	up.Status.Sequence = seq
	for i := range up.Status.Steps {
		st := &up.Status.Steps[i]
		if st.Phase == v1alpha1.RunPending {
			continue
		}
		if tail, err := r.eng.LogTail(up.Name, st.Name, maxLogTailRequest); err == nil {
			st.LogTail = tail
		}
	}
	b, err := json.Marshal(up)
	if err != nil {
		r.log.Error("encode pipeline run", "run", up.Name, "err", err)
		return
	}
	prio := outbox.PriorityLogs
	if up.Status.Phase.Finished() {
		prio = outbox.PriorityMetrics
	}
	rec := outbox.Record{Key: fmt.Sprintf("pipelinerun/%s/%020d", up.Name, seq), Kind: v1alpha1.RecordKindPipelineRun,
		Priority: prio, Payload: b}
	if _, err := r.agent.Outbox().Put(ctx, rec); err != nil {
		r.log.Error("queue pipeline run update", "run", up.Name, "err", err)
	}
}

// Run starts the runs PlanRuns decides on whenever the desired state, an
// event or a schedule calls for it, and uploads the versions runs
// registered, until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	if r.agent == nil || r.eng == nil {
		return errors.New("edgerun: Run before Attach")
	}
	timer := r.clock.NewTimer(0)
	defer timer.Stop()
	var retry uploadRetry
	for {
		next := r.startRuns(ctx)
		if !r.clock.Now().Before(retry.after) {
			err := r.upload(ctx)
			if ctx.Err() != nil {
				err = nil
			}
			retry.record(err, r.clock.Now(), r.backoff)
			if err != nil {
				r.log.Warn("upload of models produced here failed; will retry", "retryIn",
					clock.Until(r.clock, retry.after).Round(time.Millisecond), "err", err)
			}
		}
		timer.Reset(loopWait(r.clock.Now(), r.opts.Interval, next, retry.after))
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-timer.C():
		}
	}
}

// uploadRetry is the state of the uploads' retries: failures in a row,
// and when to try again (zero: at the next turn of the loop).
type uploadRetry struct {
	failures int
	after    time.Time
}

// record updates s for an upload that ended at now with err (nil: it
// succeeded), backoff giving the delay after n failures in a row. A
// success clears the retry time: one left set, and past, would make every
// later wait of the loop a millisecond, a busy loop.
func (s *uploadRetry) record(err error, now time.Time, backoff func(n int) time.Duration) {
	if err == nil {
		*s = uploadRetry{}
		return
	}
	s.failures++
	s.after = now.Add(backoff(s.failures))
}

// loopWait is how long the loop sleeps at now: interval, or less until
// the next schedule fires or the upload is retried (zero times: none), at
// least a millisecond.
func loopWait(now time.Time, interval time.Duration, times ...time.Time) time.Duration {
	wait := interval
	for _, t := range times {
		if !t.IsZero() {
			wait = min(wait, max(t.Sub(now), time.Millisecond))
		}
	}
	return wait
}

func (r *Runner) backoff(failures int) time.Duration {
	return clock.Backoff{Base: r.opts.RetryBase, Max: r.opts.RetryMax}.Delay(failures, rand.Float64())
}

// startRuns starts what PlanRuns decides, and returns when a schedule
// fires next.
func (r *Runner) startRuns(ctx context.Context) time.Time {
	pipes, err := r.agent.DesiredPipelines(ctx)
	if err != nil {
		r.log.Error("read desired pipelines", "err", err)
		return time.Time{}
	}
	r.mu.Lock()
	events := r.events
	r.events = nil
	r.mu.Unlock()
	lastFire := r.readFired()
	starts, fired, next := PlanRuns(pipes, lastFire, events, r.clock.Now())
	byName := map[string]*v1alpha1.DesiredPipeline{}
	for i := range pipes {
		byName[pipes[i].Name] = &pipes[i]
	}
	for _, s := range starts {
		p := byName[s.Pipeline]
		// Dataset steps read the engine's data folder (Options.Data, DataDir).
		if _, err := r.eng.Start(ctx, s.Name, p.Name, p.Generation, &p.Spec, s.Trigger, pipeline.RunOptions{}); err != nil {
			r.log.Error("start pipeline run", "run", s.Name, "pipeline", s.Pipeline, "err", err)
		}
	}
	if !maps.EqualFunc(fired, lastFire, time.Time.Equal) {
		if b, err := json.Marshal(fired); err == nil {
			if err := durable.WriteFile(filepath.Join(r.dir, firedFile), b, 0o600); err != nil {
				r.log.Error("record pipeline schedules", "err", err)
			}
		}
	}
	return next
}

func (r *Runner) readFired() map[string]time.Time {
	m := map[string]time.Time{}
	b, err := os.ReadFile(filepath.Join(r.dir, firedFile))
	if err == nil {
		_ = json.Unmarshal(b, &m)
	}
	return m
}

// upload uploads every model version a run registered that the hub does
// not hold yet, and marks it uploaded.
func (r *Runner) upload(ctx context.Context) error {
	pending, err := r.eng.PendingUploads(ctx)
	if err != nil || len(pending) == 0 {
		return err
	}
	for _, m := range pending {
		lv, err := r.localVersion(ctx, m)
		if err != nil {
			return err
		}
		st, err := r.agent.UploadLocal(ctx, lv)
		if err != nil {
			return fmt.Errorf("%s:%s: %w", m.Repository, m.Version, err)
		}
		if err := r.eng.MarkUploaded(ctx, m.Repository, m.Version); err != nil {
			return err
		}
		r.log.Info("uploaded a model produced here", "repository", m.Repository, "version", m.Version,
			"run", m.Run, "blobs", st.Blobs, "bytes", st.Bytes)
	}
	return nil
}
