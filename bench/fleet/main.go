// Command fleet measures one hub serving a large fleet: it starts a hub
// process and runs N simulated agents in this process that speak the real
// agent protocol (join with a join token, long-poll the cluster's desired
// state, fetch the manifest and chunk index, report), then deploys a model
// to all of them and pushes a new version, and measures how long the fleet
// takes to converge and what the hub spends on it: CPU seconds and resident
// memory (from /proc), in all and per cluster.
//
// The simulated agents do not fetch model files: bytes are not the point
// here (bench/sync measures them). Everything else a real agent sends the
// hub, they send: a report at start, on every change and every
// -report-interval, and a long-poll always open.
//
//	go run ./bench/fleet -agents 1000
//
// It needs ./bin/outpost (make build). Linux only (/proc).
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"oras.land/oras-go/v2/registry/remote"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/bench/benchhub"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/hubclient"
)

func main() {
	var (
		agents         = flag.Int("agents", 1000, "simulated agents (clusters)")
		joinConc       = flag.Int("join-concurrency", 16, "joins in flight at once")
		pollTimeout    = flag.Duration("poll-timeout", 30*time.Second, "long-poll timeout (the agent's default)")
		reportInterval = flag.Duration("report-interval", 10*time.Second, "periodic report interval (the agent's default)")
		idle           = flag.Duration("idle", 10*time.Second, "how long to measure the hub with the fleet idle")
		timeout        = flag.Duration("timeout", 5*time.Minute, "limit for each phase")
		outpost        = flag.String("outpost", "bin/outpost", "outpost binary")
	)
	flag.Parse()
	// Ctrl-C cancels ctx, which stops the hub and the other child processes.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *agents < 1 {
		fail(errors.New("-agents must be at least 1"))
	}
	f := &fleet{n: *agents, joinConc: max(*joinConc, 1), pollTimeout: *pollTimeout, reportInterval: *reportInterval,
		idle: *idle, timeout: *timeout, outpost: benchhub.AbsPath(*outpost)}
	if err := f.run(ctx); err != nil {
		fail(err)
	}
}

type fleet struct {
	n, joinConc                       int
	pollTimeout, reportInterval, idle time.Duration
	timeout                           time.Duration
	outpost                           string
	dir                               string
	hub                               *benchhub.Hub
	client                            *http.Client // shared by every simulated agent, as one process
	admin                             *hubclient.Client
	sims                              []*sim
	target                            atomic.Pointer[string] // the version the fleet converges to now
	converged, received               atomic.Int64
	errs                              atomic.Int64
	lastErr                           atomic.Pointer[string]
	reports, polls, fetches           atomic.Int64
}

func (f *fleet) run(ctx context.Context) error {
	nofile, err := raiseNoFile()
	if err != nil {
		return err
	}
	if need := uint64(3*f.n + 256); nofile < need {
		return fmt.Errorf("open files limit is %d; %d agents need about %d (ulimit -n)", nofile, f.n, need)
	}
	if f.dir, err = os.MkdirTemp("", "outpost-bench-fleet-"); err != nil {
		return err
	}
	defer os.RemoveAll(f.dir)
	if f.hub, err = benchhub.Start(ctx, f.outpost, f.dir); err != nil {
		return err
	}
	defer f.hub.Stop()
	if f.client, err = newClient(f.hub.CAFile); err != nil {
		return err
	}
	if f.admin, err = f.hub.Client(); err != nil {
		return err
	}
	// A small model: the simulated agents fetch its manifest and chunk index only.
	v1, v2 := filepath.Join(f.dir, "v1"), filepath.Join(f.dir, "v2")
	if err := writeModel(v1, 1); err != nil {
		return err
	}
	if err := writeModel(v2, 2); err != nil {
		return err
	}
	if _, err := f.hub.Run(ctx, "model", "push", v1, "--name", "fleet", "--version", "1.0.0"); err != nil {
		return err
	}
	join, err := f.hub.Run(ctx, "cluster", "token", "create", "--ttl", "2h", "--description", "bench/fleet")
	if err != nil {
		return err
	}
	joinToken := strings.TrimSpace(join)
	base := usage(f.hub.Pid)
	fmt.Printf("hub pid %d, %.1f MiB resident before any cluster; %d simulated agents; open files limit %d\n",
		f.hub.Pid, base.rssMiB(), f.n, nofile)

	// 1. Join.
	fmt.Printf("joining %d clusters, %d at a time ...\n", f.n, f.joinConc)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	u0, t0 := usage(f.hub.Pid), time.Now()
	f.sims = make([]*sim, f.n)
	sem := make(chan struct{}, f.joinConc)
	var joinErr atomic.Pointer[error]
	var jwg sync.WaitGroup
	for i := range f.sims {
		s := &sim{f: f, i: i, name: fmt.Sprintf("edge-%04d", i), trigger: make(chan struct{}, 1)}
		f.sims[i] = s
		sem <- struct{}{}
		jwg.Add(1)
		go func() {
			defer jwg.Done()
			defer func() { <-sem }()
			if err := s.join(runCtx, joinToken); err != nil {
				joinErr.CompareAndSwap(nil, &err)
			}
		}()
		if joinErr.Load() != nil {
			break
		}
	}
	jwg.Wait()
	if e := joinErr.Load(); e != nil {
		return *e
	}
	joinD, u1 := time.Since(t0), usage(f.hub.Pid)
	joinCPU := u1.cpu - u0.cpu
	// The agents start once all have joined, so that the join figures are the cost of
	// joining alone, not of joining while the fleet polls and reports.
	fmt.Printf("  joined in %.2fs; hub CPU %.2fs (%.2f ms per join), %.1f MiB resident\n",
		joinD.Seconds(), joinCPU, 1000*joinCPU/float64(f.n), u1.rssMiB())
	fmt.Println("starting every agent's long-poll and reports ...")
	ts := time.Now()
	for _, s := range f.sims {
		wg.Add(1)
		go func() { defer wg.Done(); s.run(runCtx) }()
	}
	// Wait until every agent has reported once and has a long-poll open, then let the
	// hub settle before measuring it idle.
	if err := f.waitFor(func() bool { return f.started() == f.n }, "every agent reported and polling", func() string {
		return fmt.Sprintf("%d of %d agents reported and polling", f.started(), f.n)
	}); err != nil {
		return err
	}
	us := usage(f.hub.Pid)
	fmt.Printf("  every agent reported and polling after %.2fs; hub CPU %.2fs, %.1f MiB resident\n",
		time.Since(ts).Seconds(), us.cpu-u1.cpu, us.rssMiB())
	time.Sleep(2 * time.Second)
	ui0, ti0, r0 := usage(f.hub.Pid), time.Now(), f.reports.Load()
	time.Sleep(f.idle)
	ui1, idleD, idleReports := usage(f.hub.Pid), time.Since(ti0), f.reports.Load()-r0
	idleCPU := ui1.cpu - ui0.cpu
	fmt.Printf("  idle %.0fs: hub CPU %.2fs (%.0f%% of one CPU), %d reports (%.1f/s, %.1f ms hub CPU each)\n",
		idleD.Seconds(), idleCPU, 100*idleCPU/idleD.Seconds(), idleReports, float64(idleReports)/idleD.Seconds(),
		1000*idleCPU/max(float64(idleReports), 1))

	// 2. Deploy v1 to every cluster.
	fmt.Println("deploying fleet ^1.0 (1.0.0) to every cluster ...")
	dep1, err := f.converge("1.0.0", func() error { return f.deploy(ctx, "^1.0") })
	if err != nil {
		return err
	}
	// 3. Push v2: the deployment follows ^1.0 to it.
	fmt.Println("pushing 1.1.0 ...")
	var pushD time.Duration
	dep2, err := f.converge("1.1.0", func() error {
		start := time.Now()
		_, err := f.hub.Run(ctx, "model", "push", v2, "--name", "fleet", "--version", "1.1.0", "--parent", "fleet@1.0.0")
		pushD = time.Since(start)
		return err
	})
	if err != nil {
		return err
	}
	rows, err := f.activeRows(ctx, "1.1.0")
	if err != nil {
		return err
	}
	end := usage(f.hub.Pid)

	n := float64(f.n)
	fmt.Printf("\n%d simulated agents against one hub process (%s, %d CPUs)\n", f.n, runtimeDesc(), runtime.NumCPU())
	fmt.Printf("each agent: its own join and credential, a long-poll always open (timeout %s), a report at start,\n", f.pollTimeout)
	fmt.Printf("on every change and every %s; on a new desired state it fetches the manifest, config and chunk index\n", f.reportInterval)
	fmt.Printf("(not the model files) and reports Active. Shared HTTP/1.1 transport, one connection per request in flight.\n\n")
	fmt.Printf("%-34s %10s %12s %14s\n", "phase", "seconds", "hub CPU s", "CPU ms/cluster")
	fmt.Printf("%-34s %10.2f %12.2f %14.2f\n", fmt.Sprintf("join (%d at a time)", f.joinConc), joinD.Seconds(), joinCPU, 1000*joinCPU/n)
	fmt.Printf("%-34s %10.2f %12.2f %14.2f   %.1f%% of one CPU; %d reports (%.0f/s)\n", "idle (long-polls, periodic reports)",
		idleD.Seconds(), idleCPU, 1000*idleCPU/n, 100*idleCPU/idleD.Seconds(), idleReports, float64(idleReports)/idleD.Seconds())
	for _, c := range []struct {
		name string
		r    convergence
	}{{"deploy 1.0.0 to all", dep1}, {"push 1.1.0, all follow ^1.0", dep2}} {
		fmt.Printf("%-34s %10.2f %12.2f %14.2f\n", c.name, c.r.all.Seconds(), c.r.cpu, 1000*c.r.cpu/n)
	}
	fmt.Println("\nconvergence: from the apply (or the start of the push) until the hub acknowledged every agent's Active report")
	fmt.Printf("%-30s %10s %10s %10s %10s\n", "", "p50 s", "p90 s", "p99 s", "max s")
	for _, c := range []struct {
		name string
		r    convergence
	}{{"1.0.0 received", dep1}, {"1.0.0 reported Active", dep1}, {"1.1.0 received", dep2}, {"1.1.0 reported Active", dep2}} {
		d := c.r.active
		if strings.HasSuffix(c.name, "received") {
			d = c.r.recv
		}
		fmt.Printf("%-30s %10.2f %10.2f %10.2f %10.2f\n", c.name, pct(d, 50), pct(d, 90), pct(d, 99), pct(d, 100))
	}
	fmt.Printf("(the push of 1.1.0 itself, a CLI process, took %.2fs of its convergence time)\n", pushD.Seconds())
	fmt.Printf("\nhub memory: %.1f MiB resident before joins, %.1f MiB after (peak %.1f MiB): %.1f KiB per cluster\n",
		base.rssMiB(), end.rssMiB(), end.hwmMiB(), (end.rss-base.rss)/1024/n)
	fmt.Printf("hub CPU over the whole run: %.2f s, %.2f ms per cluster\n", end.cpu-base.cpu, 1000*(end.cpu-base.cpu)/n)
	fmt.Printf("the hub's ModelDeployment shows %d of %d clusters Active on 1.1.0\n", rows, f.n)
	fmt.Printf("agent requests: %d reports, %d desired-state answers, %d manifest+index fetches; %d errors%s\n",
		f.reports.Load(), f.polls.Load(), f.fetches.Load(), f.errs.Load(), f.lastError())
	if rows != f.n {
		return fmt.Errorf("the hub shows %d of %d clusters Active on 1.1.0", rows, f.n)
	}
	return nil
}

func (f *fleet) lastError() string {
	if e := f.lastErr.Load(); e != nil {
		return " (last: " + *e + ")"
	}
	return ""
}

func (f *fleet) started() int {
	k := 0
	for _, s := range f.sims {
		if s.ready.Load() && s.reported.Load() {
			k++
		}
	}
	return k
}

// convergence is one rollout's measurement.
type convergence struct {
	recv, active []time.Duration // per agent, since the start
	all          time.Duration   // until the last Active report was acknowledged
	cpu          float64         // hub CPU seconds meanwhile
}

// converge sets the target version, runs start, and waits until every agent
// has had its Active report for version acknowledged.
func (f *fleet) converge(version string, start func() error) (convergence, error) {
	for _, s := range f.sims {
		s.recvAt.Store(0)
		s.activeAt.Store(0)
	}
	f.converged.Store(0)
	f.received.Store(0)
	u0 := usage(f.hub.Pid)
	t0 := time.Now()
	for _, s := range f.sims {
		s.t0.Store(t0.UnixNano())
	}
	f.target.Store(&version)
	if err := start(); err != nil {
		return convergence{}, err
	}
	err := f.waitFor(func() bool { return f.converged.Load() == int64(f.n) }, "every agent Active on "+version, func() string {
		u := usage(f.hub.Pid)
		return fmt.Sprintf("%s received by %d, Active on %d; hub CPU %.1fs since the start, %.1f MiB resident",
			version, f.received.Load(), f.converged.Load(), u.cpu-u0.cpu, u.rssMiB())
	})
	all, u1 := time.Since(t0), usage(f.hub.Pid)
	if err != nil {
		return convergence{}, fmt.Errorf("%w: %d received it, %d Active; hub CPU %.1fs meanwhile%s",
			err, f.received.Load(), f.converged.Load(), u1.cpu-u0.cpu, f.lastError())
	}
	c := convergence{all: all, cpu: u1.cpu - u0.cpu}
	fmt.Printf("  %s Active on all %d after %.2fs; hub CPU %.2fs (%.2f ms per cluster), %.1f MiB resident\n",
		version, f.n, all.Seconds(), c.cpu, 1000*c.cpu/float64(f.n), u1.rssMiB())
	for _, s := range f.sims {
		c.recv = append(c.recv, time.Duration(s.recvAt.Load()))
		c.active = append(c.active, time.Duration(s.activeAt.Load()))
	}
	return c, nil
}

// waitFor waits until cond holds, printing progress every 15 seconds.
func (f *fleet) waitFor(cond func() bool, what string, progress func() string) error {
	start := time.Now()
	deadline, next := start.Add(f.timeout), start.Add(15*time.Second)
	for !cond() {
		now := time.Now()
		if now.After(deadline) {
			return fmt.Errorf("%s: not within %s", what, f.timeout)
		}
		if now.After(next) {
			fmt.Printf("  %3.0fs: %s\n", now.Sub(start).Seconds(), progress())
			next = next.Add(15 * time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// deploy applies the fleet deployment, selecting every cluster by label.
func (f *fleet) deploy(ctx context.Context, version string) error {
	return benchhub.Deploy(ctx, f.admin, "fleet", "fleet", version, map[string]string{"bench": "fleet"})
}

// activeRows counts the rows of the fleet deployment that show version Active.
func (f *fleet) activeRows(ctx context.Context, version string) (int, error) {
	var d v1alpha1.ModelDeployment
	if err := f.admin.Get(ctx, v1alpha1.PluralModelDeployments, "fleet", &d); err != nil {
		return 0, err
	}
	k := 0
	for _, r := range d.Status.Clusters {
		if r.Phase == v1alpha1.PhaseActive && r.ActiveVersion == version {
			k++
		}
	}
	return k, nil
}

func (f *fleet) fail(err error) {
	f.errs.Add(1)
	s := err.Error()
	f.lastErr.Store(&s)
}

// sim is one simulated agent.
type sim struct {
	f        *fleet
	i        int
	name     string
	cred     string
	hub      *hubclient.Client // with the cluster's credential, on the shared HTTP client
	trigger  chan struct{}
	ready    atomic.Bool // a desired state answer came
	reported atomic.Bool // a report was acknowledged

	mu       sync.Mutex
	applied  int64
	models   []v1alpha1.ModelReport
	active   map[string]string // deployment -> digest
	cached   []v1alpha1.CachedArtifact
	t0       atomic.Int64 // unix ns of the current rollout's start
	recvAt   atomic.Int64 // since t0, ns; 0 until received
	activeAt atomic.Int64 // since t0, ns; 0 until acknowledged
}

func (s *sim) join(ctx context.Context, token string) error {
	h, err := hubclient.New("https://"+s.f.hub.Addr, hubclient.Options{HTTPClient: s.f.client, Attempts: 1})
	if err != nil {
		return err
	}
	resp, err := h.Join(ctx, token, s.name, map[string]string{"bench": "fleet", "zone": fmt.Sprintf("z%d", s.i%10)})
	if err != nil {
		return fmt.Errorf("join %s: %w", s.name, err)
	}
	s.cred = resp.Credential
	h.SetToken(s.cred)
	s.hub = h
	return nil
}

func (s *sim) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.reportLoop(ctx) }()
	s.pollLoop(ctx)
	wg.Wait()
}

// pollLoop long-polls desired state after the applied revision, as the agent does.
func (s *sim) pollLoop(ctx context.Context) {
	for ctx.Err() == nil {
		s.mu.Lock()
		after := s.applied
		s.mu.Unlock()
		ds, err := s.hub.DesiredState(ctx, s.name, after, s.f.pollTimeout)
		if err != nil {
			if ctx.Err() == nil {
				s.f.fail(err)
				sleep(ctx, time.Second)
			}
			continue
		}
		s.ready.Store(true)
		if ds == nil { // nothing newer within the poll timeout
			continue
		}
		s.f.polls.Add(1)
		s.apply(ctx, ds)
	}
}

// apply takes a desired state: for each model not active at its digest,
// fetch the manifest, its config and its chunk index, then mark it Active.
func (s *sim) apply(ctx context.Context, ds *v1alpha1.DesiredState) {
	target := s.f.target.Load()
	for _, m := range ds.Models {
		if target != nil && m.Version == *target && s.recvAt.CompareAndSwap(0, time.Now().UnixNano()-s.t0.Load()) {
			s.f.received.Add(1)
		}
	}
	s.mu.Lock()
	if ds.Revision <= s.applied {
		s.mu.Unlock()
		return
	}
	s.applied = ds.Revision
	active := s.active
	s.mu.Unlock()
	var rows []v1alpha1.ModelReport
	var cached []v1alpha1.CachedArtifact
	next := map[string]string{}
	for _, m := range ds.Models {
		row := v1alpha1.ModelReport{Deployment: m.Deployment, Model: m.Model, DesiredVersion: m.Version, Phase: v1alpha1.PhaseActive, ActiveVersion: m.Version}
		if active[m.Deployment] != m.Digest {
			for attempt := 1; ; attempt++ {
				err := s.fetchManifest(ctx, m)
				if err == nil {
					break
				}
				s.f.fail(err)
				if ctx.Err() != nil || attempt == 5 {
					row.Phase, row.ActiveVersion, row.Error = v1alpha1.PhaseFailed, "", err.Error()
					break
				}
				sleep(ctx, time.Duration(attempt)*time.Second)
			}
		}
		if row.Phase == v1alpha1.PhaseActive {
			next[m.Deployment] = m.Digest
			cached = append(cached, v1alpha1.CachedArtifact{Digest: m.Digest, Model: m.Model, Version: m.Version, SizeBytes: m.SizeBytes})
		}
		rows = append(rows, row)
	}
	s.mu.Lock()
	s.models, s.active, s.cached = rows, next, cached
	s.mu.Unlock()
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// fetchManifest fetches what the agent fetches before the model's chunks:
// the manifest by digest, its config blob, and the chunk index referrer.
func (s *sim) fetchManifest(ctx context.Context, m v1alpha1.DesiredModel) error {
	s.f.fetches.Add(1)
	host := s.f.hub.Addr
	r, err := remote.NewRepository(host + "/models/" + m.Model)
	if err != nil {
		return err
	}
	r.Client = &orasauth.Client{Client: s.f.client, Cache: orasauth.NewCache(),
		Credential: orasauth.StaticCredential(host, orasauth.Credential{Username: "outpost", Password: s.cred})}
	_, rc, err := r.FetchReference(ctx, m.Digest)
	if err != nil {
		return fmt.Errorf("manifest of %s: %w", m.Version, err)
	}
	mb, err := io.ReadAll(io.LimitReader(rc, artifact.MaxManifestBytes+1))
	rc.Close()
	if err != nil {
		return err
	}
	if got := digest.SHA256.FromBytes(mb); got.String() != m.Digest {
		return fmt.Errorf("manifest digest %s, want %s", got, m.Digest)
	}
	man, err := artifact.ParseManifest(mb)
	if err != nil {
		return err
	}
	crc, err := r.Blobs().Fetch(ctx, man.Config)
	if err != nil {
		return fmt.Errorf("config of %s: %w", m.Version, err)
	}
	io.Copy(io.Discard, crc)
	crc.Close()
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(m.Digest), Size: int64(len(mb))}
	if _, err := artifact.FetchChunkIndex(ctx, r, desc); err != nil {
		return fmt.Errorf("chunk index of %s: %w", m.Version, err)
	}
	return nil
}

// reportLoop reports at start, after each change (coalesced for 200ms, as
// the agent does) and every report interval, starting at a random phase.
func (s *sim) reportLoop(ctx context.Context) {
	if !sleep(ctx, time.Duration(mrand.Int64N(int64(s.f.reportInterval)))/10) {
		return
	}
	tick := time.NewTicker(s.f.reportInterval)
	defer tick.Stop()
	for {
		s.report(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.trigger:
			if !sleep(ctx, 200*time.Millisecond) {
				return
			}
			select {
			case <-s.trigger:
			default:
			}
		}
	}
}

var (
	capCPU = resource.MustParse("4")
	capMem = resource.MustParse("8Gi")
	capDsk = resource.MustParse("200Gi")
)

func (s *sim) report(ctx context.Context) {
	s.mu.Lock()
	rep := &v1alpha1.AgentReport{
		APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindAgentReport, Cluster: s.name, AppliedRevision: s.applied,
		Status: v1alpha1.ClusterStatus{
			Capacity:        v1alpha1.Capacity{CPU: &capCPU, Memory: &capMem, Disk: &capDsk},
			Link:            v1alpha1.LinkStatus{BandwidthBps: 10 << 20, RTTMillis: 1},
			CachedArtifacts: s.cached,
			AgentVersion:    "bench-fleet",
		},
		Models:     s.models,
		ReportedAt: metav1.NewTime(time.Now().UTC().Truncate(time.Second)),
	}
	target := s.f.target.Load()
	active := false
	for _, m := range s.models {
		active = active || (target != nil && m.ActiveVersion == *target && m.Phase == v1alpha1.PhaseActive)
	}
	s.mu.Unlock()
	if _, err := s.hub.Report(ctx, rep); err != nil {
		if ctx.Err() == nil {
			s.f.fail(err)
		}
		return
	}
	s.f.reports.Add(1)
	s.reported.Store(true)
	// Count it only if the rollout it reports on is still the current one: a report
	// sent before the next rollout began may be acknowledged after.
	if active && s.f.target.Load() == target && s.activeAt.CompareAndSwap(0, time.Now().UnixNano()-s.t0.Load()) {
		s.f.converged.Add(1)
	}
}

// newClient is the HTTP client every simulated agent shares: HTTP/1.1 like
// the agent, no cap on connections (each open long-poll holds one), and a
// large idle pool so that reports reuse connections.
func newClient(caFile string) (*http.Client, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no certificate", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 0, 4096
	tr.ResponseHeaderTimeout = 5 * time.Minute
	return &http.Client{Transport: tr}, nil
}

// hubUsage is the hub process's CPU time and memory.
type hubUsage struct {
	cpu      float64 // user+system seconds
	rss, hwm float64 // bytes
}

func (u hubUsage) rssMiB() float64 { return u.rss / (1 << 20) }
func (u hubUsage) hwmMiB() float64 { return u.hwm / (1 << 20) }

// usage reads /proc/pid/stat (utime, stime) and /proc/pid/status (VmRSS, VmHWM).
func usage(pid int) hubUsage {
	var u hubUsage
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name, which is in parentheses and may hold spaces.
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			fs := strings.Fields(s[i+1:])
			// fs[0] is field 3 (state); utime and stime are fields 14 and 15.
			if len(fs) > 12 {
				ut, _ := strconv.ParseFloat(fs[11], 64)
				st, _ := strconv.ParseFloat(fs[12], 64)
				u.cpu = (ut + st) / clockTicks
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			for key, dst := range map[string]*float64{"VmRSS:": &u.rss, "VmHWM:": &u.hwm} {
				if v, ok := strings.CutPrefix(l, key); ok {
					kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
					*dst = kb * 1024
				}
			}
		}
	}
	return u
}

// clockTicks is USER_HZ, 100 on Linux on every architecture Go supports.
const clockTicks = 100

// raiseNoFile raises the soft open-files limit to the hard limit (the hub,
// started afterwards, inherits it) and returns it.
func raiseNoFile() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, err
		}
	}
	return l.Cur, nil
}

// writeModel writes a small model: 1 MiB of random weights and a config.
func writeModel(dir string, seed byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	w := make([]byte, 1<<20)
	rand.Read(w)
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), w, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), []byte(fmt.Sprintf(`{"seed": %d}`+"\n", seed)), 0o644)
}

func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return math.NaN()
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))].Seconds()
}

func runtimeDesc() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			}
		}
	}
	return "unknown CPU"
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "fleet:", err)
	os.Exit(1)
}
