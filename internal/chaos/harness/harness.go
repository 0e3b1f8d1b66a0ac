// Package harness runs the fault campaign's plans (internal/chaos) against
// real processes: a hub (`outpost hub serve`) and agents (`outpost agent`),
// each agent behind its own simulated link (internal/linksim), all links
// through one HTTPS proxy in front of the hub that records the desired
// states the hub serves and can answer with stale ones, send outbox batches
// twice or drop their answers. It runs each step, samples every agent's
// local state while it runs, and at each check heals every fault, waits for
// the agents to converge and checks the invariants; Campaign adds the plan
// from a seed, the report and the shrinking of a failing plan.
package harness

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/chaos"
	"outpost.dev/outpost/internal/clientconfig"
	"outpost.dev/outpost/internal/hubclient"
	"outpost.dev/outpost/internal/linksim"
	"outpost.dev/outpost/internal/pki"
	"outpost.dev/outpost/internal/zoo"
)

// Options configures an Env.
type Options struct {
	// Outpost is the outpost binary. Required.
	Outpost string
	// Dir is a scratch directory for the run. Required.
	Dir string
	// Agents is the number of agents (default 3).
	Agents int
	// DiskFull is how disks are filled: DiskAuto (the default), DiskTmpfs,
	// DiskFsize or DiskOff.
	DiskFull string
	// ConvergeWithin bounds the wait for convergence at a check (default 90s).
	ConvergeWithin time.Duration
	// PollTimeout is the agents' --poll-timeout (default 3s).
	PollTimeout time.Duration
	// SampleEvery is how often every agent's state is sampled (default 200ms).
	SampleEvery time.Duration
	// StopAfter, if set, ends a run at the first check after this time.
	StopAfter time.Time
	// Logf, if set, receives progress lines.
	Logf func(format string, args ...any)
}

func (o *Options) defaults() {
	if o.Agents <= 0 {
		o.Agents = 3
	}
	if o.ConvergeWithin <= 0 {
		o.ConvergeWithin = 90 * time.Second
	}
	if o.PollTimeout <= 0 {
		o.PollTimeout = 3 * time.Second
	}
	if o.SampleEvery <= 0 {
		o.SampleEvery = 200 * time.Millisecond
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// Env is a running hub, proxy and agents.
type Env struct {
	opts      Options
	hubDir    string
	hubConfig string
	hubAddr   string
	hubDebug  string
	caFile    string
	keyFile   string
	pubFile   string
	srcDir    string
	hubLog    string
	joinToken string
	hub       *proc
	hubBase   *chaos.ProcStats
	admin     *hubclient.Client
	proxy     *proxy
	agents    []*agentProc
	byName    map[string]int
	disks     *disks
	world     *chaos.World
	http      *http.Client
	cnn       []byte

	stopSampler context.CancelFunc
	samplerDone chan struct{}

	mu         sync.Mutex
	mon        *chaos.Monitor
	violations []chaos.Violation
	report     chaos.Report
	last       []chaos.Sample
	accepted   [][]string // note keys accepted into each agent's outbox
	applied    []int      // notes of each agent at the hub, at the last check
}

// agentProc is one agent: its link, data directory and process.
type agentProc struct {
	i       int
	name    string
	root    string // the agent's file system (a tmpfs of its own, or a folder)
	data    string
	ready   string
	logPath string
	serve   string
	debug   string // --debug-listen
	link    *linksim.Link
	p       *proc
	base    *chaos.ProcStats // at the first check of this process
	// sampling is held from reading the agent's state to checking it, so
	// that the monitor sees the samples in the order they were taken.
	sampling sync.Mutex
}

// Start initialises and starts a hub, the proxy and opts.Agents agents,
// each joined with its InitialLabels, and starts sampling their states.
func Start(ctx context.Context, opts Options) (_ *Env, err error) {
	opts.defaults()
	if opts.Outpost == "" || opts.Dir == "" {
		return nil, errors.New("harness: Options.Outpost and Options.Dir are required")
	}
	_, cnn, err := zoo.Get("cnn")
	if err != nil {
		return nil, err
	}
	e := &Env{
		opts: opts, hubDir: filepath.Join(opts.Dir, "hub"), hubConfig: filepath.Join(opts.Dir, "client.yaml"),
		keyFile: filepath.Join(opts.Dir, "signing.key"), pubFile: filepath.Join(opts.Dir, "signing.pub"),
		srcDir: filepath.Join(opts.Dir, "src"), hubLog: filepath.Join(opts.Dir, "hub.log"),
		byName: map[string]int{}, world: chaos.NewWorld(opts.Agents), mon: chaos.NewMonitor(), cnn: cnn,
		http: &http.Client{Timeout: 5 * time.Second},
	}
	e.report.Agents = opts.Agents
	e.report.Faults, e.report.Operations, e.report.Skipped = map[chaos.Kind]int{}, map[chaos.Kind]int{}, map[chaos.Kind]int{}
	e.last = make([]chaos.Sample, opts.Agents)
	e.accepted = make([][]string, opts.Agents)
	e.applied = make([]int, opts.Agents)
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	if e.hubAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	if e.hubDebug, err = freeAddr(); err != nil {
		return nil, err
	}
	if _, err := e.cli(ctx, "hub", "init", "--data", e.hubDir, "--listen", e.hubAddr, "--context-name", "chaos"); err != nil {
		return nil, err
	}
	e.caFile = filepath.Join(e.hubDir, "pki", "ca.crt")
	if _, err := e.cli(ctx, "keygen", "--out", strings.TrimSuffix(e.keyFile, ".key")); err != nil {
		return nil, err
	}
	pub, err := os.ReadFile(e.pubFile)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(e.hubDir, "trusted-keys", "chaos.pub"), pub, 0o644); err != nil {
		return nil, err
	}
	if err := e.startHub(ctx); err != nil {
		return nil, err
	}
	if err := e.connect(); err != nil {
		return nil, err
	}
	jt, err := e.admin.CreateJoinToken(ctx, 7*24*time.Hour, "fault campaign")
	if err != nil {
		return nil, fmt.Errorf("join token: %w", err)
	}
	e.joinToken = jt.Token
	roots := make([]string, opts.Agents)
	for i := range roots {
		roots[i] = filepath.Join(opts.Dir, fmt.Sprintf("edge-%d", i))
	}
	if e.disks, err = newDisks(opts.DiskFull, roots); err != nil {
		return nil, err
	}
	e.report.DiskFull = e.disks.mode
	for i := range opts.Agents {
		a := &agentProc{i: i, name: fmt.Sprintf("edge-%d", i), root: roots[i], data: filepath.Join(roots[i], "data"),
			ready: filepath.Join(opts.Dir, fmt.Sprintf("edge-%d.ready", i)), logPath: filepath.Join(opts.Dir, fmt.Sprintf("edge-%d.log", i))}
		if a.link, err = linksim.Listen(e.proxy.addr(), linksim.Options{}); err != nil {
			return nil, err
		}
		if a.serve, err = freeAddr(); err != nil {
			return nil, err
		}
		if a.debug, err = freeAddr(); err != nil {
			return nil, err
		}
		e.agents = append(e.agents, a)
		e.byName[a.name] = i
	}
	for _, a := range e.agents {
		if err := e.startAgent(ctx, a); err != nil {
			return nil, err
		}
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.stopSampler, e.samplerDone = cancel, make(chan struct{})
	go e.sampleLoop(sctx)
	return e, nil
}

// connect makes the admin client and the proxy, once the hub has written
// its PKI.
func (e *Env) connect() error {
	cfg, err := clientconfig.Load(e.hubConfig)
	if err != nil {
		return err
	}
	c, ok := cfg.Context("")
	if !ok || c.Token == "" {
		return fmt.Errorf("no admin token in %s", e.hubConfig)
	}
	caPEM, err := os.ReadFile(e.caFile)
	if err != nil {
		return err
	}
	caKey, err := os.ReadFile(filepath.Join(e.hubDir, "pki", "ca.key"))
	if err != nil {
		return err
	}
	clientTLS, err := pki.ClientTLS(caPEM)
	if err != nil {
		return err
	}
	if e.admin, err = hubclient.New("https://"+e.hubAddr, hubclient.Options{Token: c.Token, TLS: clientTLS}); err != nil {
		return err
	}
	pair, err := pki.IssueServer(pki.Pair{CertPEM: caPEM, KeyPEM: caKey}, []string{"127.0.0.1"}, time.Now())
	if err != nil {
		return err
	}
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		return err
	}
	if e.proxy, err = newProxy("https://"+e.hubAddr, cert, clientTLS); err != nil {
		return err
	}
	e.proxy.onDoc = e.onDoc
	e.proxy.onViolation = func(cluster, detail string) {
		e.violate(chaos.Violation{Invariant: chaos.OutboxTwice, Agent: e.index(cluster), Detail: detail})
	}
	return nil
}

// Close stops everything and unmounts what was mounted.
func (e *Env) Close() {
	if e.stopSampler != nil {
		e.stopSampler()
		<-e.samplerDone
	}
	for _, a := range e.agents {
		if a.p != nil {
			a.p.kill()
		}
		a.link.Close()
	}
	if e.hub != nil {
		e.hub.kill()
	}
	if e.proxy != nil {
		e.proxy.close()
	}
	if e.disks != nil {
		e.disks.close()
	}
	e.http.CloseIdleConnections()
}

// index is the agent index of a cluster name, or -1.
func (e *Env) index(cluster string) int {
	if i, ok := e.byName[cluster]; ok {
		return i
	}
	return -1
}

// violate records a broken invariant.
func (e *Env) violate(v chaos.Violation) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.violations = append(e.violations, v)
}

// Violations returns the broken invariants found so far.
func (e *Env) Violations() []chaos.Violation {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]chaos.Violation(nil), e.violations...)
}

// onDoc gives the monitor a desired-state document the hub served.
func (e *Env) onDoc(cluster string, d v1alpha1.DesiredState) {
	i := e.index(cluster)
	if i < 0 {
		return
	}
	doc := chaos.Doc{Agent: i, Revision: d.Revision}
	for _, m := range d.Models {
		doc.Models = append(doc.Models, chaos.DocModel{Deployment: m.Deployment, Model: m.Model, Version: m.Version,
			Digest: m.Digest, AllowDowngrade: m.AllowDowngrade})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mon.Doc(doc)
}

// cli runs the outpost command line against the hub and returns its output.
func (e *Env) cli(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.opts.Outpost, append([]string{"--config", e.hubConfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("outpost %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// startHub starts the hub process and waits until it serves.
func (e *Env) startHub(ctx context.Context) error {
	ready := filepath.Join(e.opts.Dir, "hub.ready")
	os.Remove(ready)
	p, err := startProc("hub", e.opts.Outpost, []string{"hub", "serve", "--data", e.hubDir, "--ready-file", ready, "--debug-listen", e.hubDebug}, e.hubLog,
		func(p *proc, err error) {
			e.violate(chaos.Violation{Invariant: chaos.Crash, Agent: -1, Detail: fmt.Sprintf("the hub exited: %v\n%s", err, tailFile(e.hubLog, 3000))})
		})
	if err != nil {
		return err
	}
	e.hub, e.hubBase = p, nil
	if _, err := waitFile(ctx, ready, p, 60*time.Second); err != nil {
		return fmt.Errorf("hub: %w\n%s", err, tailFile(e.hubLog, 3000))
	}
	return nil
}

// startAgent starts an agent process and waits until it is ready.
func (e *Env) startAgent(ctx context.Context, a *agentProc) error {
	os.Remove(a.ready)
	labels := chaos.InitialLabels(a.i)
	args := []string{"agent", "--hub", "https://" + a.link.Addr(), "--data", a.data, "--name", a.name,
		"--labels", "region=" + labels["region"] + ",tier=" + labels["tier"], "--ca-file", e.caFile, "--join-token", e.joinToken,
		"--trusted-key", e.pubFile, "--ready-file", a.ready, "--serve", a.serve, "--debug-listen", a.debug,
		"--poll-timeout", e.opts.PollTimeout.String(), "--report-interval", "1s"}
	p, err := startProc(a.name, e.opts.Outpost, args, a.logPath, func(p *proc, err error) {
		e.violate(chaos.Violation{Invariant: chaos.Crash, Agent: a.i, Detail: fmt.Sprintf("the agent exited: %v\n%s", err, tailFile(a.logPath, 3000))})
	})
	if err != nil {
		return err
	}
	a.p, a.base = p, nil
	if _, err := waitFile(ctx, a.ready, p, 60*time.Second); err != nil {
		return fmt.Errorf("agent %s: %w\n%s", a.name, err, tailFile(a.logPath, 3000))
	}
	return e.disks.started(a.i, p.pid())
}

// killAgent kills an agent with SIGKILL. A stale desired state answered
// to it and not yet confirmed is forgotten once it is dead: it may have
// died before it counted the refusal.
func (e *Env) killAgent(a *agentProc) {
	if a.p != nil {
		a.p.kill()
		a.p = nil
	}
	e.proxy.taint(a.name, false)
}

// sampleLoop samples every agent's state until ctx ends.
func (e *Env) sampleLoop(ctx context.Context) {
	defer close(e.samplerDone)
	t := time.NewTicker(e.opts.SampleEvery)
	defer t.Stop()
	for {
		for _, a := range e.agents {
			if _, err := e.sample(ctx, a); err != nil && ctx.Err() == nil {
				e.opts.Logf("sample %s: %v", a.name, err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sample reads an agent's local state, checks it with the monitor and
// keeps it as the agent's latest.
func (e *Env) sample(ctx context.Context, a *agentProc) (chaos.Sample, error) {
	a.sampling.Lock()
	defer a.sampling.Unlock()
	st, err := agent.ReadStatus(ctx, a.data)
	if err != nil {
		return chaos.Sample{}, err
	}
	s := chaos.Sample{Agent: a.i, Applied: st.AppliedRevision, RejectedStale: st.RejectedStale, OutboxRecords: st.Outbox.Records}
	for _, m := range st.Models {
		s.Models = append(s.Models, chaos.ModelState{Deployment: m.Deployment, Model: m.Model, Active: m.ActiveVersion,
			ActiveDigest: m.ActiveDigest, Desired: m.DesiredVersion, DesiredDigest: m.DesiredDigest, Phase: string(m.Phase), Error: m.Error})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.report.Samples++
	e.violations = append(e.violations, e.mon.Sample(s)...)
	e.last[a.i] = s
	return s, nil
}

// writeModel writes the files of model@version: the embedded CNN of the
// model zoo (so that agents can serve it) and weights whose last tenth
// changes from version to version, as fine-tuning the last layers does.
func (e *Env) writeModel(model, version string) (string, error) {
	dir := filepath.Join(e.srcDir, model, version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	n := 256 << 10 // float32s: 1 MiB
	if model != "m" {
		n = 192 << 10
	}
	var seed uint64
	for _, c := range model {
		seed = seed*31 + uint64(c)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	var ma, mi, pa int
	fmt.Sscanf(version, "%d.%d.%d", &ma, &mi, &pa)
	shift := float32(mi*100+pa) * 0.01
	b := make([]byte, 4*n)
	for i := range n {
		w := float32(rng.NormFloat64())
		if i >= n-n/10 {
			w += shift
		}
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(w))
	}
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), b, 0o644); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "model.onnx"), e.cnn, 0o644)
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
