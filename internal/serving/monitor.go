package serving

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/onnx/interp"
)

// Drift monitoring at the edge (docs/drift.md). Each version a deployment
// serves with spec.monitoring on, and with a reference profile that fits
// the model, gets a monitor. After every successful inference, on either
// transport, the request path hands the monitor the request's input tensor
// and the model's output tensor, by reference: both are made for the
// request and nothing writes to them once the model ran. The hand-over
// never waits: the monitor's queue is bounded in requests and in bytes,
// and a request that does not fit is dropped from monitoring and counted.
// One goroutine per monitor drains the queue into tumbling windows
// (drift.Windower, by count and by time on the server's clock), and on each
// closed window runs drift.Detect against the reference (through a
// drift.Detector, which sorts the reference's sketches once), steps the
// alarm's hysteresis and hands a drift.WindowReport to Config.Windows.

// Defaults of the monitor's queue.
const (
	// DefaultMonitorQueue is how many requests may wait for a monitor
	// when Config.MonitorQueue is 0.
	DefaultMonitorQueue = 256
	// DefaultMonitorQueueBytes bounds the tensor bytes waiting for a
	// monitor when Config.MonitorQueueBytes is 0.
	DefaultMonitorQueueBytes = 32 << 20
)

// WindowSink receives the report of every window a monitor closes, one
// call at a time per monitor. The agent puts each report in its outbox
// for the hub. An error is logged and counted; the window is not sent
// again.
type WindowSink interface {
	PutWindow(ctx context.Context, rep drift.WindowReport) error
}

// DriftStatus is the drift monitoring of a deployment's current version.
type DriftStatus struct {
	// Version is the version monitored.
	Version string `json:"version"`
	// Windows is how many windows closed since monitoring began.
	Windows uint64 `json:"windows"`
	// Verdict and Reason are the last window's; empty before the first.
	Verdict drift.Verdict `json:"verdict,omitempty"`
	Reason  string        `json:"reason,omitempty"`
	// LastWindow is when the last window closed.
	LastWindow time.Time `json:"lastWindow,omitzero"`
	// Alarm is whether the drift alarm is raised, and Since when it last
	// changed, or when monitoring began if it never did.
	Alarm bool      `json:"alarm"`
	Since time.Time `json:"since"`
	// Samples counts the samples monitored.
	Samples uint64 `json:"samples"`
	// Dropped counts the requests not monitored because the queue was
	// full, Skipped those whose tensors the monitor could not summarise
	// (not FP32, or not of the reference's shapes).
	Dropped uint64 `json:"dropped,omitempty"`
	Skipped uint64 `json:"skipped,omitempty"`
	// Invalid counts the NaN and infinite feature values seen, which the
	// summaries count apart and no test sees.
	Invalid uint64 `json:"invalid,omitempty"`
	// Lost counts the windows Config.Windows refused.
	Lost uint64 `json:"lost,omitempty"`
	// Feedback is how the version did on the labelled samples kept for
	// feedback, when the deployment keeps them (spec.monitoring.feedbackSamples).
	Feedback *FeedbackStatus `json:"feedback,omitempty"`
	// FeedbackLost counts the requests with ids that could not be kept.
	FeedbackLost uint64 `json:"feedbackLost,omitempty"`
	// Busy is the time the monitor spent working (summarising, keeping
	// requests, closing windows) since monitoring began, by the wall
	// clock: its cost, to set against the requests' own. On a machine
	// short of CPU it includes waits for one, so it bounds the monitor's
	// CPU time from above.
	Busy time.Duration `json:"busyNanos,omitempty"`
}

// monitorSource is what a monitor was built from, to tell when the
// deployment's monitoring changed for the same version.
type monitorSource struct {
	monitoring *v1alpha1.Monitoring
	reference  string
}

func sourceOf(am Model) monitorSource {
	return monitorSource{monitoring: am.Monitoring.DeepCopy(), reference: am.Reference}
}

func (m monitorSource) same(o monitorSource) bool {
	return m.reference == o.reference && reflect.DeepEqual(m.monitoring, o.monitoring)
}

// monitorJob is one request handed to a monitor.
type monitorJob struct {
	in, out *interp.Tensor
	id      string // the request's id, "" if it had none
	at      time.Time
	size    int64
	// flushed, when set, makes the job a marker: the monitor closes it
	// once it reaches it (see flush).
	flushed chan struct{}
}

// monitor watches one version of one deployment. Create it with
// Server.newMonitor; stop it with stop.
type monitor struct {
	deployment, model, version, digest string
	input, output                      string // the tensors monitored
	ref                                *drift.Profile
	policy                             drift.Policy
	detector                           *drift.Detector // of ref and policy
	samplesPer                         int             // drift.WindowConfig.Samples
	period                             time.Duration
	sink                               WindowSink
	clock                              clock.Clock
	log                                *slog.Logger
	notify                             func()
	feedback                           FeedbackStore // where requests with ids are kept, when keepLimit > 0
	keepLimit                          int           // spec.monitoring.feedbackSamples

	queue    chan monitorJob
	queued   atomic.Int64 // bytes in the queue
	maxBytes int64
	stopped  atomic.Bool
	stopCh   chan struct{}
	stopOnce sync.Once
	done     chan struct{}
	dropped  atomic.Uint64
	skipped  atomic.Uint64
	// feedbackLost counts the requests with ids that could not be kept.
	feedbackLost atomic.Uint64
	// busy is the time, in nanoseconds, the monitor's goroutine spent
	// working: summarising, keeping requests, closing windows.
	busy atomic.Int64

	// Owned by the monitor's goroutine.
	win   *drift.Windower
	alarm drift.Alarm
	times *stamps // the times of its Observe calls

	mu         sync.Mutex // guards st and report
	st         DriftStatus
	report     *drift.WindowReport // the last window's
	byVerdict  map[drift.Verdict]uint64
	sinkErrors uint64
}

// stamps hands out the times at which the monitors of one deployment's
// version observe requests: each later than the last, so that every window
// starts at its own instant, and its report has a key of its own
// (drift.WindowReport.Key), across the monitors a server starts for the
// version.
type stamps struct {
	mu   sync.Mutex
	last time.Time
}

// next returns at, or the instant after the last time handed out if at is
// not later.
func (s *stamps) next(at time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !at.After(s.last) {
		at = s.last.Add(time.Nanosecond)
	}
	s.last = at
	return at
}

// monitorPolicy is the drift.Policy and the windows of a deployment's
// spec.monitoring, with its documented defaults (docs/api.md).
func monitorPolicy(m *v1alpha1.Monitoring) (drift.Policy, drift.WindowConfig, error) {
	p := drift.DefaultPolicy()
	p.Alpha = m.AlphaValue()
	switch c := m.CorrectionValue(); c {
	case v1alpha1.CorrectionBonferroni:
		p.Correction = drift.Bonferroni
	case v1alpha1.CorrectionBenjaminiHochberg:
		p.Correction = drift.BenjaminiHochberg
	default:
		return p, drift.WindowConfig{}, fmt.Errorf("unknown correction %q", c)
	}
	p.MinSamples = uint64(m.MinSamplesValue())
	p.PSIThreshold = m.PSIThresholdValue()
	p.Hysteresis = drift.Hysteresis{Raise: m.RaiseAfterValue(), Clear: m.ClearAfterValue(), Cooldown: m.CooldownValue()}
	if err := p.Validate(); err != nil {
		return p, drift.WindowConfig{}, err
	}
	return p, drift.WindowConfig{Samples: m.WindowSamplesValue(), Duration: m.WindowDurationValue()}, nil
}

// tickPeriod is how often a monitor checks whether its open window's time
// ran out: a twentieth of the window's duration, within [100ms, 30s].
func tickPeriod(d time.Duration) time.Duration {
	if d <= 0 {
		return 30 * time.Second
	}
	return min(max(d/20, 100*time.Millisecond), 30*time.Second)
}

// newMonitor starts the monitor of sess, the version am of a deployment:
// nil when am has no monitoring. The error says why monitoring is off
// although am asks for it: no reference, or one that is unreadable,
// malformed or of another model. Serving goes on either way.
func (s *Server) newMonitor(ctx context.Context, sess *session, am Model) (*monitor, error) {
	if am.Monitoring == nil {
		return nil, nil
	}
	policy, wcfg, err := monitorPolicy(am.Monitoring)
	if err != nil {
		return nil, fmt.Errorf("spec.monitoring: %w", err)
	}
	if am.Reference == "" {
		return nil, fmt.Errorf("version %s has no reference profile", am.Version)
	}
	data, err := os.ReadFile(am.Reference)
	if err != nil {
		return nil, fmt.Errorf("reference profile: %w", err)
	}
	ref, err := drift.DecodeProfile(data)
	if err != nil {
		return nil, fmt.Errorf("reference profile: %w", err)
	}
	in, out, fcfg, err := monitoredTensors(sess.inputs, sess.outputs, ref.Spec().Config)
	if err != nil {
		return nil, err
	}
	f, err := drift.NewFeaturizer(fcfg)
	if err != nil {
		return nil, fmt.Errorf("reference profile: %w", err)
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(am.Deployment + "\x00" + am.Version))
	win, err := drift.NewWindower(f, ref, wcfg, h.Sum64())
	if err != nil {
		return nil, fmt.Errorf("the reference profile does not fit the model: %w", err)
	}
	det, err := drift.NewDetector(ref, policy)
	if err != nil {
		return nil, fmt.Errorf("spec.monitoring: %w", err)
	}
	queue, maxBytes := s.cfg.MonitorQueue, s.cfg.MonitorQueueBytes
	if queue <= 0 {
		queue = DefaultMonitorQueue
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMonitorQueueBytes
	}
	clk := clock.OrReal(s.cfg.Clock)
	m := &monitor{
		deployment: am.Deployment, model: am.Model, version: am.Version, digest: am.Digest,
		input: in, output: out, ref: ref, policy: policy, detector: det, samplesPer: wcfg.Samples, period: tickPeriod(wcfg.Duration),
		sink: s.cfg.Windows, clock: clk, notify: s.notify,
		feedback: s.cfg.Feedback, keepLimit: int(am.Monitoring.FeedbackSamples),
		log:   s.log.With("deployment", am.Deployment, "model", am.Model, "version", am.Version),
		queue: make(chan monitorJob, queue), maxBytes: maxBytes, stopCh: make(chan struct{}), done: make(chan struct{}),
		win: win, st: DriftStatus{Version: am.Version, Since: clk.Now()}, byVerdict: map[drift.Verdict]uint64{},
	}
	s.monMu.Lock()
	if s.mons == nil {
		s.mons, s.stamps = map[*monitor]struct{}{}, map[string]*stamps{}
	}
	s.mons[m] = struct{}{}
	key := am.Deployment + "\x00" + am.Version
	if s.stamps[key] == nil {
		s.stamps[key] = &stamps{}
	}
	m.times = s.stamps[key]
	s.monMu.Unlock()
	s.monWG.Add(1)
	go func() {
		defer s.monWG.Done()
		defer func() {
			s.monMu.Lock()
			delete(s.mons, m)
			s.monMu.Unlock()
		}()
		m.run(context.WithoutCancel(ctx))
	}()
	m.log.Info("monitoring drift", "windowSamples", wcfg.Samples, "windowDuration", wcfg.Duration, "features", len(ref.Spec().Features))
	return m, nil
}

// monitoredTensors picks the model's input and output that a reference of
// configuration rc describes, and returns rc with the model's per-sample
// shapes: the model's single input, and its single FP32 output (or the one
// of the reference's size among several). A dynamic dimension takes the
// reference's size; each request's shapes are checked again.
func monitoredTensors(inputs, outputs []interp.ValueInfo, rc drift.FeaturizerConfig) (string, string, drift.FeaturizerConfig, error) {
	if len(inputs) != 1 {
		return "", "", rc, fmt.Errorf("the model has %d inputs: drift monitoring watches models of one input", len(inputs))
	}
	in := inputs[0]
	if in.DType != interp.Float32 {
		return "", "", rc, fmt.Errorf("input %q is %s: only FP32 inputs and outputs are monitored", in.Name, DatatypeName(in.DType))
	}
	var fp32 []interp.ValueInfo
	for _, o := range outputs {
		if o.DType == interp.Float32 {
			fp32 = append(fp32, o)
		}
	}
	var out interp.ValueInfo
	switch {
	case len(fp32) == 0:
		return "", "", rc, errors.New("the model has no FP32 output: only FP32 inputs and outputs are monitored")
	case len(fp32) == 1:
		out = fp32[0]
	default:
		for _, o := range fp32 {
			if o.Shape != nil && len(o.Shape) == len(rc.OutputShape)+1 && fits(o.Shape[1:], rc.OutputShape) {
				if out.Name != "" {
					return "", "", rc, fmt.Errorf("the model has several FP32 outputs of the reference's shape (%s, %s)", out.Name, o.Name)
				}
				out = o
			}
		}
		if out.Name == "" {
			return "", "", rc, fmt.Errorf("none of the model's FP32 outputs has the reference's shape %v", rc.OutputShape)
		}
	}
	var err error
	if rc.InputShape, err = perSample("input", in, rc.InputShape); err != nil {
		return "", "", rc, err
	}
	if rc.OutputShape, err = perSample("output", out, rc.OutputShape); err != nil {
		return "", "", rc, err
	}
	return in.Name, out.Name, rc, nil
}

// fits reports whether a model's per-sample shape, where -1 is any size,
// fits want.
func fits(shape, want []int) bool {
	if len(shape) != len(want) {
		return false
	}
	for i, d := range shape {
		if d >= 0 && d != want[i] {
			return false
		}
	}
	return true
}

// perSample returns the per-sample shape of v, a tensor of shape [batch,
// sample...]: its own dimensions, the reference's where they are dynamic.
func perSample(what string, v interp.ValueInfo, ref []int) ([]int, error) {
	if v.Shape == nil {
		return ref, nil
	}
	if len(v.Shape) < 2 {
		return nil, fmt.Errorf("%s %q has shape %s: drift monitoring needs a batch dimension first", what, v.Name, shapeString(v.Shape))
	}
	s := append([]int(nil), v.Shape[1:]...)
	for i, d := range s {
		if d < 0 {
			if len(ref) != len(s) {
				return nil, fmt.Errorf("%s %q has shape %s; the reference's is [batch %v]", what, v.Name, shapeString(v.Shape), ref)
			}
			s[i] = ref[i]
		}
	}
	return s, nil
}

// offer hands one request's tensors to the monitor, without waiting: when
// the queue is full, in requests or in bytes, the request is dropped from
// monitoring and counted.
func (m *monitor) offer(in, out *interp.Tensor, id string, at time.Time) {
	if m.stopped.Load() {
		m.dropped.Add(1)
		return
	}
	if in == nil || out == nil || in.DType != interp.Float32 || out.DType != interp.Float32 {
		m.skipped.Add(1)
		return
	}
	size := 4 * int64(len(in.F32)+len(out.F32))
	if m.queued.Add(size) > m.maxBytes {
		m.queued.Add(-size)
		m.dropped.Add(1)
		return
	}
	if m.keepLimit == 0 || m.feedback == nil {
		id = ""
	}
	select {
	case m.queue <- monitorJob{in: in, out: out, id: id, at: at, size: size}:
	default:
		m.queued.Add(-size)
		m.dropped.Add(1)
	}
}

// stop asks the monitor to observe what waits in its queue, close its open
// window (reported if it holds MinSamples samples) and end. It does not
// wait.
func (m *monitor) stop() {
	if m == nil {
		return
	}
	m.stopOnce.Do(func() {
		m.stopped.Store(true)
		close(m.stopCh)
	})
}

// run is the monitor's goroutine.
func (m *monitor) run(ctx context.Context) {
	defer close(m.done)
	tick := m.clock.NewTicker(m.period)
	defer tick.Stop()
	for {
		select {
		case j := <-m.queue:
			m.queued.Add(-j.size)
			t0 := time.Now()
			m.handle(ctx, j)
			m.busy.Add(int64(time.Since(t0)))
		case <-tick.C():
			if w, ok := m.win.Tick(m.clock.Now()); ok {
				t0 := time.Now()
				m.closed(ctx, w)
				m.busy.Add(int64(time.Since(t0)))
			}
		case <-m.stopCh:
		drain:
			for {
				select {
				case j := <-m.queue:
					m.queued.Add(-j.size)
					m.handle(ctx, j)
				default:
					break drain
				}
			}
			if w, ok := m.win.Close(m.clock.Now()); ok {
				if w.Profile.Samples() >= m.policy.MinSamples {
					m.closed(ctx, w)
				} else {
					m.log.Debug("last window not reported: too few samples", "samples", w.Profile.Samples(), "minSamples", m.policy.MinSamples)
				}
			}
			return
		}
	}
}

// handle is the monitor's work for one job: keeping the request for
// feedback, and observing it.
func (m *monitor) handle(ctx context.Context, j monitorJob) {
	if j.flushed != nil {
		close(j.flushed)
		return
	}
	if j.id != "" {
		m.keep(ctx, j)
	}
	m.observe(ctx, j)
}

// observe adds one request's samples to the windows. It feeds the
// windower so that each call opens at most one window, each call at a
// time later than the last (stamps): every window then starts at its own
// instant, which keys its report uniquely (drift.WindowReport.Key), even
// when one batch fills several windows.
func (m *monitor) observe(ctx context.Context, j monitorJob) {
	b := drift.Batch{Input: j.in.F32, InputShape: j.in.Shape, Output: j.out.F32, OutputShape: j.out.Shape}
	n := 0
	if len(b.InputShape) > 0 {
		n = b.InputShape[0]
	}
	if n <= 0 || len(b.OutputShape) == 0 || b.OutputShape[0] != n || len(b.Input)%n != 0 || len(b.Output)%n != 0 {
		m.skipped.Add(1)
		return
	}
	perIn, perOut := len(b.Input)/n, len(b.Output)/n
	for lo := 0; lo < n; {
		hi := n
		if m.samplesPer > 0 {
			filled := 0
			if p := m.win.Open(); p != nil {
				filled = int(p.Samples())
			}
			hi = min(n, lo+m.samplesPer-filled)
		}
		at := m.times.next(j.at)
		part := b
		if lo > 0 || hi < n {
			part = drift.Batch{
				Input: b.Input[lo*perIn : hi*perIn], InputShape: append([]int{hi - lo}, b.InputShape[1:]...),
				Output: b.Output[lo*perOut : hi*perOut], OutputShape: append([]int{hi - lo}, b.OutputShape[1:]...),
			}
		}
		closed, err := m.win.Observe(at, part)
		if err != nil {
			// Only the first part can fail: the shapes are the request's.
			m.skipped.Add(1)
			m.log.Debug("request not monitored", "err", err)
			return
		}
		for _, w := range closed {
			m.closed(ctx, w)
		}
		m.mu.Lock()
		m.st.Samples += uint64(hi - lo)
		m.mu.Unlock()
		lo = hi
	}
}

// closed detects drift in a closed window, steps the alarm, and hands the
// window's report to the sink.
func (m *monitor) closed(ctx context.Context, w drift.Window) {
	res, err := m.detector.Detect(w.Profile)
	if err != nil {
		// The window is an empty copy of the reference: unreachable.
		m.log.Error("drift detection failed", "err", err)
		return
	}
	was := m.alarm.Active
	m.alarm = m.policy.Hysteresis.Step(m.alarm, res.Verdict, w.End)
	rep := drift.NewWindowReport(m.deployment, m.model, m.version, m.digest, w, res, m.alarm)
	var invalid uint64
	for _, f := range rep.Features {
		invalid += f.Invalid
	}
	lost := false
	if m.sink != nil {
		if err := m.sink.PutWindow(ctx, rep); err != nil {
			lost = true
			m.log.Error("drift window not stored", "window", w.First, "start", w.Start, "err", err)
		}
	}
	switch {
	case m.alarm.Active && !was:
		m.log.Warn("drift alarm raised", "window", w.First, "reason", res.Reason)
	case !m.alarm.Active && was:
		m.log.Info("drift alarm cleared", "window", w.First, "reason", res.Reason)
	}
	m.mu.Lock()
	m.st.Windows++
	m.st.Verdict, m.st.Reason, m.st.LastWindow = res.Verdict, res.Reason, w.End
	m.st.Alarm = m.alarm.Active
	if !m.alarm.Changed.IsZero() {
		m.st.Since = m.alarm.Changed
	}
	m.st.Invalid += invalid
	if lost {
		m.st.Lost++
	}
	m.byVerdict[res.Verdict]++
	m.report = &rep
	m.mu.Unlock()
	m.notify()
}

// status returns the monitor's state.
func (m *monitor) status() DriftStatus {
	m.mu.Lock()
	st := m.st
	m.mu.Unlock()
	st.Dropped, st.Skipped, st.FeedbackLost = m.dropped.Load(), m.skipped.Load(), m.feedbackLost.Load()
	st.Busy = time.Duration(m.busy.Load())
	st.Feedback = m.feedbackStatus() // reads the store: not under mu, which the monitor's goroutine takes
	return st
}
