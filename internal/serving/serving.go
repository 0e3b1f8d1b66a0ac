// Package serving answers inference requests for the models an edge agent
// holds, over the KServe Open Inference Protocol v2: its REST API (JSON
// tensors and the binary tensor data extension) and its gRPC API
// (inference.GRPCInferenceService). Both transports share the model
// lookup, the request checks and their messages, and the sessions.
//
// A Server keeps one session per deployment. When the agent activates a new
// version, the Server loads it in the background with the runtime the
// deployment asks for, makes it current atomically, and closes the previous
// session only once the requests it was serving have finished: requests
// never fail because of a swap. The Server loads only what the agent lists
// as active, and the agent activates only versions whose files it verified.
//
// A deployment with drift monitoring gets a monitor per version served
// (monitor.go): every answered request is summarised, off the request
// path, into windows compared with the version's reference profile, whose
// reports leave through Config.Windows.
package serving

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
)

// errNoONNX is a model that has no ONNX file to serve.
var errNoONNX = errors.New("the model has no .onnx file")

// Model states reported in ModelStatus.
const (
	StateLoading = "Loading"
	StateReady   = "Ready"
	StateFailed  = "Failed"
)

// DefaultMaxRequestBytes bounds request bodies when Config.MaxRequestBytes is 0.
const DefaultMaxRequestBytes = 64 << 20

// Config configures a Server.
type Config struct {
	// Go is the pure-Go runtime; nil means engine.Go{}.
	Go engine.Runtime
	// ONNXRuntime is the ONNX Runtime, nil when its library is not available.
	ONNXRuntime engine.Runtime
	// Version is reported in the server metadata.
	Version string
	// MaxRequestBytes bounds request bodies; 0 means DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// MaxInflightBytes bounds the bytes that inference requests hold at
	// once, on both transports together: bodies and gRPC messages, the
	// copies decoding makes, decoded inputs and outputs (see budget.go). A
	// request that does not fit in what is left is refused at once (REST
	// 429 with Retry-After, gRPC RESOURCE_EXHAUSTED), one that needs more
	// than all of it with 413 (RESOURCE_EXHAUSTED). 0 means
	// DefaultInflightMultiple times MaxRequestBytes.
	MaxInflightBytes int64
	// Clock times the quiet after a burst of requests; nil means the system
	// clock.
	Clock clock.Clock
	// ReturnMemory, called once a burst of requests is over (the bytes in
	// flight reached a quarter of MaxInflightBytes, then stayed below it
	// for a second), gives the memory the burst took back to the operating
	// system; nil means two collections and debug.FreeOSMemory.
	ReturnMemory func()
	// OnStatus, if set, receives every model's status after each change,
	// one call at a time and in order. It must not call the Server.
	OnStatus func([]ModelStatus)
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
	// PortHost is the host on which a deployment that asks for a port of
	// its own (spec.serving.port) is served, beside the main endpoint; ""
	// opens no such port and says so in the deployment's status.
	PortHost string
	// Windows, if set, receives the report of every window that drift
	// monitoring closes (see monitor.go); nil keeps them in status only.
	Windows WindowSink
	// MonitorQueue bounds the requests waiting for a deployment's drift
	// monitor; 0 means DefaultMonitorQueue. MonitorQueueBytes bounds their
	// tensors' bytes; 0 means DefaultMonitorQueueBytes. Requests that do
	// not fit are not monitored, and counted.
	MonitorQueue      int
	MonitorQueueBytes int64
	// Feedback, if set, keeps the requests with ids of the deployments
	// whose spec.monitoring.feedbackSamples asks for it, and their labels
	// (feedback.go); nil keeps none, and the feedback endpoint refuses.
	Feedback FeedbackStore
	// Agent, if set, gives GET /metrics the agent's figures: its outbox,
	// applied revision, last contact and each deployment's sync progress.
	Agent AgentSource
}

// ModelStatus is how one deployment is served.
type ModelStatus struct {
	// Deployment is the ModelDeployment name, the name requests use.
	Deployment string `json:"deployment"`
	// Model is the model name.
	Model string `json:"model"`
	// Version is the version that answers requests; empty while none does.
	Version string `json:"version,omitempty"`
	// Runtime is the runtime serving Version.
	Runtime string `json:"runtime,omitempty"`
	// State is Loading, Ready or Failed. A model whose newer version failed
	// to load stays Ready with the previous version and reports the error.
	State string `json:"state"`
	// Error is why the active version does not serve, if it does not, or
	// why the deployment's own port is not open.
	Error string `json:"error,omitempty"`
	// Port is the deployment's own inference port, when it asked for one
	// and it is open.
	Port int32 `json:"port,omitempty"`
	// Drift is the drift monitoring of Version, when it is monitored.
	Drift *DriftStatus `json:"drift,omitempty"`
}

// Model is a model version to serve, as the agent activated it: every file
// of it is in the agent's cache and verified.
type Model struct {
	// Deployment is the ModelDeployment name, the name requests use.
	Deployment string
	// Model is the model name.
	Model string
	// Version is the version to serve.
	Version string
	// Digest is its manifest digest: a new digest is a new version to load.
	Digest string
	// Files maps each file's path in the model to the verified local file
	// holding it.
	Files map[string]string
	// Serving is the deployment's serving settings: its runtime, and its own
	// port if it asks for one.
	Serving v1alpha1.Serving
	// Monitoring is the deployment's drift monitoring; nil turns it off.
	Monitoring *v1alpha1.Monitoring
	// Reference is the path of the version's reference profile, an encoded
	// drift.Profile the agent verified; empty when the version has none.
	Reference string
}

// Server serves the active models. Create it with New.
type Server struct {
	cfg Config
	log *slog.Logger
	lim Limits // what one inference request may hold, on every transport
	// budget bounds what all inference requests hold at once, on every transport.
	budget *budget

	mu      sync.RWMutex
	models  map[string]*model // by deployment
	synced  bool
	closed  bool
	loads   sync.WaitGroup
	statMu  sync.Mutex // serializes OnStatus calls
	version string
	ports   *ports
	clock   clock.Clock
	metrics *metrics

	monMu  sync.Mutex
	mons   map[*monitor]struct{} // every running monitor
	stamps map[string]*stamps    // by deployment and version
	monWG  sync.WaitGroup        // the monitors' goroutines
}

// model is one deployment's serving state; its fields are guarded by Server.mu.
type model struct {
	deployment string
	name       string
	cur        *session // answers requests; nil until a version loaded
	target     string   // digest of the version wanted (loading or loaded)
	targetVer  string
	gen        uint64 // increases with every new target
	cancel     context.CancelFunc
	loading    bool
	err        string
}

// session is a loaded version, reference-counted by the requests using it.
type session struct {
	engine.Session
	version, digest, runtime string
	inputs, outputs          []interp.ValueInfo

	refs      atomic.Int64
	retired   atomic.Bool
	closeOnce sync.Once
	closed    chan struct{}
	log       *slog.Logger

	// mon is the version's drift monitor, nil when it has none; monErr
	// says why monitoring is off when the deployment asks for it, and
	// monFrom what mon was built from. monErr and monFrom are guarded by
	// Server.mu.
	mon     atomic.Pointer[monitor]
	monErr  string
	monFrom monitorSource

	// health counts the version's requests, errors and latencies.
	health health
}

func newSession(s engine.Session, version, digest, runtime string, log *slog.Logger) *session {
	return &session{Session: s, version: version, digest: digest, runtime: runtime,
		inputs: s.Inputs(), outputs: s.Outputs(), closed: make(chan struct{}), log: log}
}

// release ends one request's use of the session.
func (s *session) release() {
	if s.refs.Add(-1) == 0 && s.retired.Load() {
		s.close()
	}
}

// retire marks the session replaced: no new request acquires it, and it is
// closed once the last request using it released it.
func (s *session) retire() {
	s.retired.Store(true)
	if s.refs.Load() == 0 {
		s.close()
	}
}

func (s *session) close() {
	s.closeOnce.Do(func() {
		s.mon.Load().stop()
		if err := s.Session.Close(); err != nil {
			s.log.Warn("close session", "version", s.version, "err", err)
		}
		close(s.closed)
	})
}

// returnMemory gives the memory freed after a burst back to the operating
// system. The first collection moves what sync.Pools hold (gRPC's receive
// buffers among them) to their victim caches, the second, in
// debug.FreeOSMemory, drops them.
func returnMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}

// New returns a Server with no models; Sync or Watch give it the active ones.
func New(cfg Config) *Server {
	if cfg.Go == nil {
		cfg.Go = engine.Go{}
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	cfg.MaxInflightBytes = inflightTotal(cfg.MaxInflightBytes, cfg.MaxRequestBytes)
	if cfg.ReturnMemory == nil {
		cfg.ReturnMemory = returnMemory
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, lim: Limits{}.withDefaults(), models: map[string]*model{}, version: cfg.Version,
		clock: clock.OrReal(cfg.Clock), budget: newBudget(cfg.MaxInflightBytes, clock.OrReal(cfg.Clock), cfg.ReturnMemory)}
	s.metrics = newMetrics(s)
	s.ports = newPorts(cfg.PortHost, func(dep string) http.Handler { return onlyDeployment(dep, s.Handler()) }, cfg.Logger)
	return s
}

// Watch calls Sync with active() now and after every signal on changed,
// until ctx ends. Reading the active set anew on each signal keeps the
// Server in step with the agent however signals coalesce.
func (s *Server) Watch(ctx context.Context, active func() []Model, changed <-chan struct{}) {
	for {
		s.Sync(ctx, active())
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// Sync makes the served models those of active: a deployment with a new
// version loads it in the background (its current version keeps serving
// until the new one is ready), and a deployment no longer active stops
// serving once its in-flight requests finished. ctx bounds the loads.
func (s *Server) Sync(ctx context.Context, active []Model) {
	var retired []*session
	type remonitor struct {
		m    *model
		sess *session
		am   Model
	}
	var remonitors []remonitor
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.synced = true
	seen := make(map[string]bool, len(active))
	ports := map[string]int32{}
	for _, am := range active {
		seen[am.Deployment] = true
		if am.Serving.Port != nil {
			ports[am.Deployment] = *am.Serving.Port
		}
		m := s.models[am.Deployment]
		if m == nil {
			m = &model{deployment: am.Deployment}
			s.models[am.Deployment] = m
		}
		m.name = am.Model
		if m.target == am.Digest {
			if c := m.cur; c != nil && c.digest == am.Digest && !c.monFrom.same(sourceOf(am)) {
				remonitors = append(remonitors, remonitor{m, c, am})
			}
			continue
		}
		if m.cancel != nil {
			m.cancel()
		}
		m.gen++
		m.target, m.targetVer, m.loading, m.err = am.Digest, am.Version, true, ""
		lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		m.cancel = cancel
		s.loads.Add(1)
		go s.load(lctx, m, am, m.gen)
	}
	for name, m := range s.models {
		if seen[name] {
			continue
		}
		if m.cancel != nil {
			m.cancel()
		}
		if m.cur != nil {
			retired = append(retired, m.cur)
			s.log.Info("stopped serving", "deployment", name, "version", m.cur.version)
		}
		delete(s.models, name)
	}
	s.mu.Unlock()
	for _, r := range retired {
		r.retire()
	}
	for _, r := range remonitors {
		// The deployment's monitoring changed, not its version.
		mon, err := s.newMonitor(ctx, r.sess, r.am)
		s.mu.Lock()
		if s.closed || r.m.cur != r.sess || s.models[r.am.Deployment] != r.m {
			s.mu.Unlock()
			mon.stop()
			continue
		}
		old := r.sess.setMonitor(mon, err, r.am)
		s.mu.Unlock()
		old.stop()
	}
	s.ports.sync(ctx, ports)
	s.notify()
}

// setMonitor makes mon the session's monitor, built from am (err: why
// there is none), and returns the one it replaces. Server.mu must be held.
func (s *session) setMonitor(mon *monitor, err error, am Model) *monitor {
	s.monErr, s.monFrom = "", sourceOf(am)
	if err != nil {
		s.monErr = "drift monitoring off: " + err.Error()
		s.log.Warn("drift monitoring off", "err", err)
	}
	return s.mon.Swap(mon)
}

// load loads am in the background and makes it current if it is still wanted.
func (s *Server) load(ctx context.Context, m *model, am Model, gen uint64) {
	defer s.loads.Done()
	log := s.log.With("deployment", am.Deployment, "model", am.Model, "version", am.Version)
	sess, rt, err := s.open(ctx, am, log)
	var cur *session
	if err == nil {
		cur = newSession(sess, am.Version, am.Digest, rt, log)
		mon, merr := s.newMonitor(ctx, cur, am)
		cur.setMonitor(mon, merr, am) // cur is not shared yet
	}
	s.mu.Lock()
	if m.gen != gen || s.models[am.Deployment] != m || s.closed {
		s.mu.Unlock()
		if cur != nil {
			cur.mon.Load().stop()
			if cerr := sess.Close(); cerr != nil {
				log.Warn("close superseded session", "err", cerr)
			}
		}
		return
	}
	m.cancel()
	m.cancel, m.loading = nil, false
	if err != nil {
		m.err = fmt.Sprintf("load %s@%s: %v", am.Model, am.Version, err)
		if m.cur != nil {
			m.err += fmt.Sprintf(" (still serving %s)", m.cur.version)
		}
		s.mu.Unlock()
		if errors.Is(err, errNoONNX) {
			// Models in other formats are synced and cached for other runtimes.
			log.Info("not serving the model", "reason", err)
		} else {
			log.Error("model cannot be served", "err", err)
		}
		s.notify()
		return
	}
	old := m.cur
	m.cur = cur
	m.err = ""
	s.mu.Unlock()
	if old != nil {
		old.retire()
		log.Info("swapped in", "runtime", rt, "from", old.version)
	} else {
		log.Info("serving", "runtime", rt)
	}
	s.notify()
}

// open loads the model file of am with the runtime its deployment asks for.
func (s *Server) open(ctx context.Context, am Model, log *slog.Logger) (engine.Session, string, error) {
	file, err := modelFile(am.Files)
	if err != nil {
		return nil, "", err
	}
	ort := s.cfg.ONNXRuntime
	switch am.Serving.Runtime {
	case v1alpha1.RuntimeGo:
		sess, err := s.cfg.Go.Load(ctx, file)
		return sess, s.cfg.Go.Name(), err
	case v1alpha1.RuntimeONNXRuntime:
		if ort == nil {
			return nil, "", errors.New("runtime onnxruntime requested but ONNX Runtime is not available (set --onnxruntime-lib or OUTPOST_ONNXRUNTIME_LIB)")
		}
		sess, err := ort.Load(ctx, file)
		return sess, ort.Name(), err
	case v1alpha1.RuntimeAuto, "":
		// The Go runtime, unless the model needs what only ONNX Runtime has.
		sess, gerr := s.cfg.Go.Load(ctx, file)
		if gerr == nil {
			return sess, s.cfg.Go.Name(), nil
		}
		if !errors.Is(gerr, interp.ErrUnsupported) {
			return nil, "", gerr
		}
		if ort == nil {
			return nil, "", fmt.Errorf("%w (ONNX Runtime is not available)", gerr)
		}
		log.Info("go runtime cannot load the model, using ONNX Runtime", "reason", gerr)
		sess, err := ort.Load(ctx, file)
		if err != nil {
			return nil, "", fmt.Errorf("go runtime: %v; onnxruntime: %w", gerr, err)
		}
		return sess, ort.Name(), nil
	}
	return nil, "", fmt.Errorf("unknown runtime %q", am.Serving.Runtime)
}

// modelFile picks the ONNX file of a model version: its only .onnx file, or
// model.onnx among several.
func modelFile(files map[string]string) (string, error) {
	var onnx []string
	for p := range files {
		if strings.EqualFold(path.Ext(p), ".onnx") {
			onnx = append(onnx, p)
		}
	}
	sort.Strings(onnx)
	switch {
	case len(onnx) == 1:
		return files[onnx[0]], nil
	case len(onnx) == 0:
		return "", errNoONNX
	}
	for _, p := range onnx {
		if path.Base(p) == "model.onnx" {
			return files[p], nil
		}
	}
	return "", fmt.Errorf("the model has several .onnx files (%s) and none is model.onnx", strings.Join(onnx, ", "))
}

// notify passes the current status to Config.OnStatus.
func (s *Server) notify() {
	if s.cfg.OnStatus == nil {
		return
	}
	s.statMu.Lock()
	defer s.statMu.Unlock()
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		// The last windows that monitors report while the server closes
		// would otherwise record that nothing is served.
		return
	}
	s.cfg.OnStatus(s.Status())
}

// Status returns every model's status, sorted by deployment.
func (s *Server) Status() []ModelStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]ModelStatus, 0, len(s.models))
	for _, m := range s.models {
		st := ModelStatus{Deployment: m.deployment, Model: m.name, Error: m.err}
		var portErr string
		if st.Port, portErr = s.ports.status(m.deployment); portErr != "" {
			st.Error = strings.TrimPrefix(st.Error+"; "+portErr, "; ")
		}
		switch {
		case m.cur != nil:
			st.Version, st.Runtime, st.State = m.cur.version, m.cur.runtime, StateReady
			if mon := m.cur.mon.Load(); mon != nil {
				ds := mon.status()
				st.Drift = &ds
			}
			if m.cur.monErr != "" {
				st.Error = strings.TrimPrefix(st.Error+"; "+m.cur.monErr, "; ")
			}
		case m.loading:
			st.State = StateLoading
		default:
			st.State = StateFailed
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b ModelStatus) int { return strings.Compare(a.Deployment, b.Deployment) })
	return out
}

// Ready reports whether the server synced with the agent and no model is
// still loading its first version. A model that failed to load does not
// hold the server back: its own readiness says so.
func (s *Server) Ready() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.synced || s.closed {
		return false
	}
	for _, m := range s.models {
		if m.cur == nil && m.loading {
			return false
		}
	}
	return true
}

// Close stops loading, waits for background loads, and closes every
// session once its in-flight requests finished. Both transports answer
// that no model is known afterwards.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	var retired []*session
	for name, m := range s.models {
		if m.cancel != nil {
			m.cancel()
		}
		if m.cur != nil {
			retired = append(retired, m.cur)
		}
		delete(s.models, name)
	}
	s.mu.Unlock()
	s.ports.close()
	s.loads.Wait()
	for _, r := range retired {
		r.retire()
	}
	// Monitors report their last windows; those of sessions that requests
	// still hold stop too.
	s.monMu.Lock()
	for m := range s.mons {
		m.stop()
	}
	s.monMu.Unlock()
	s.monWG.Wait()
	s.budget.close()
}

// statusError is a request the server cannot answer, with the HTTP status
// that says why (404, 503, ...); the gRPC service maps it to its own codes.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

// acquire returns the session serving name (a deployment, or a model
// served by exactly one deployment) at version ("" for the current one),
// and the deployment's name. The caller must release the session.
func (s *Server) acquire(name, version string) (*session, string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, err := s.lookup(name)
	if err != nil {
		return nil, "", err
	}
	if m.cur == nil {
		why := "loading " + m.targetVer
		if m.err != "" {
			why = m.err
		}
		return nil, "", &statusError{http.StatusServiceUnavailable, fmt.Sprintf("model %q is not ready: %s", name, why)}
	}
	if version != "" && version != m.cur.version {
		return nil, "", &statusError{http.StatusNotFound, fmt.Sprintf("model %q has no version %q: it serves version %s", name, version, m.cur.version)}
	}
	m.cur.refs.Add(1)
	return m.cur, m.deployment, nil
}

// lookup finds a model by deployment name, else by model name when one
// deployment serves it. s.mu must be held.
func (s *Server) lookup(name string) (*model, error) {
	if m, ok := s.models[name]; ok {
		return m, nil
	}
	var deps []string
	var found *model
	for _, m := range s.models {
		if m.name == name {
			deps = append(deps, m.deployment)
			found = m
		}
	}
	switch len(deps) {
	case 0:
		return nil, &statusError{http.StatusNotFound, fmt.Sprintf("unknown model %q", name)}
	case 1:
		return found, nil
	}
	sort.Strings(deps)
	return nil, &statusError{http.StatusNotFound, fmt.Sprintf("model %q is served by several deployments (%s): use a deployment name", name, strings.Join(deps, ", "))}
}

// inflight returns the bytes that inference requests hold now.
func (s *Server) inflight() int64 { return s.budget.inUse() }
