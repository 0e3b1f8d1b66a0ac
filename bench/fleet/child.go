package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"oras.land/oras-go/v2/registry/remote"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/hubclient"
)

// member is one simulated agent as the parent hands it to a child.
type member struct {
	I    int    `json:"i"`
	Name string `json:"name"`
	Cred string `json:"cred"`
}

// childConfig is what a child process needs, from its flags.
type childConfig struct {
	hub, caFile, members string
	idleConns            int
	pollTimeout          time.Duration
	reportInterval       time.Duration
}

// agentBackoff is the agent's backoff between attempts with its default
// settings (agent.DefaultRetryBase, agent.DefaultRetryMax).
var agentBackoff = clock.Backoff{Base: agent.DefaultRetryBase, Max: agent.DefaultRetryMax}

// child runs the simulated agents listed in cfg.members until its stdin
// ends, taking commands from stdin and writing events to stdout.
func runChild(ctx context.Context, cfg childConfig) error {
	b, err := os.ReadFile(cfg.members)
	if err != nil {
		return err
	}
	var members []member
	if err := json.Unmarshal(b, &members); err != nil {
		return fmt.Errorf("%s: %w", cfg.members, err)
	}
	client, err := newClient(cfg.caFile, cfg.idleConns, handshakesPerProcess)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &childFleet{cfg: cfg, client: client, out: json.NewEncoder(os.Stdout), st: stats{Errors: map[string]int64{}, Last: map[string]string{}}}
	for _, m := range members {
		h, err := hubclient.New("https://"+cfg.hub, hubclient.Options{HTTPClient: client, Token: m.Cred, Attempts: 1})
		if err != nil {
			return err
		}
		c.sims = append(c.sims, &sim{c: c, i: m.I, name: m.Name, cred: m.Cred, hub: h, trigger: make(chan struct{}, 1)})
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.emitStats()
			}
		}
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var cmd command
		if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
			return fmt.Errorf("command %q: %w", in.Text(), err)
		}
		switch cmd.Op {
		case "start":
			for _, s := range c.sims {
				wg.Add(1)
				go func() { defer wg.Done(); s.run(ctx) }()
			}
		case "target":
			for _, s := range c.sims {
				s.recv.Store(false)
				s.active.Store(false)
			}
			c.t0.Store(cmd.T0)
			v := cmd.Version
			c.target.Store(&v)
			c.emit(event{Ev: "target", Version: v})
		default:
			return fmt.Errorf("unknown command %q", cmd.Op)
		}
	}
	c.emitStats()
	return in.Err()
}

// childFleet is the agents of one child process.
type childFleet struct {
	cfg    childConfig
	client *http.Client // shared by the child's agents, as one process
	sims   []*sim
	target atomic.Pointer[string] // the version the fleet converges to now
	t0     atomic.Int64           // unix ns of the current rollout's start

	mu  sync.Mutex // guards out and st
	out *json.Encoder
	st  stats
}

func (c *childFleet) emit(ev event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.out.Encode(ev)
}

func (c *childFleet) emitStats() {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	_ = c.out.Encode(event{Ev: "stats", Stats: &st})
}

func (c *childFleet) count(what *int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	*what++
}

func (c *childFleet) fail(err error) {
	k := statusOf(err)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.Errors[k]++
	c.st.Last[k] = err.Error()
}

// since is the time since the current rollout began, in ns.
func (c *childFleet) since() int64 { return time.Now().UnixNano() - c.t0.Load() }

// sim is one simulated agent: what it sends the hub, and how it retries, are
// the agent's (internal/agent).
type sim struct {
	c       *childFleet
	i       int
	name    string
	cred    string
	hub     *hubclient.Client // with the cluster's credential, on the child's HTTP client
	trigger chan struct{}

	ready, reported atomic.Bool // a desired-state answer came; a report was acknowledged
	announced       atomic.Bool // the parent was told both
	recv, active    atomic.Bool // the current rollout's version was received; acknowledged Active

	mu      sync.Mutex
	applied int64
	models  []v1alpha1.ModelReport
	digests map[string]string // deployment -> active digest
	cached  []v1alpha1.CachedArtifact
}

func (s *sim) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.reportLoop(ctx) }()
	s.pollLoop(ctx)
	wg.Wait()
}

func (s *sim) announce() {
	if s.ready.Load() && s.reported.Load() && s.announced.CompareAndSwap(false, true) {
		s.c.emit(event{Ev: "ready", I: s.i})
	}
}

// pollLoop long-polls desired state after the applied revision, as the
// agent's poll loop does: after a failure it waits the agent's backoff, or
// the hub's Retry-After when longer.
func (s *sim) pollLoop(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		s.mu.Lock()
		after := s.applied
		s.mu.Unlock()
		ds, err := s.hub.DesiredState(ctx, s.name, after, s.c.cfg.pollTimeout)
		if err != nil {
			if ctx.Err() == nil {
				s.c.fail(err)
				failures++
				sleep(ctx, hubclient.RetryDelay(err, agentBackoff, failures, mrand.Float64()))
			}
			continue
		}
		failures = 0
		s.ready.Store(true)
		s.announce()
		if ds == nil { // nothing newer within the poll timeout
			continue
		}
		s.c.count(&s.c.st.Polls)
		s.apply(ctx, ds)
	}
}

// apply takes a desired state: for each model not active at its digest,
// fetch the manifest, its config and its chunk index (retrying as the
// agent retries a failing model: with its backoff, for as long as it
// takes), then mark it Active.
func (s *sim) apply(ctx context.Context, ds *v1alpha1.DesiredState) {
	target := s.c.target.Load()
	for _, m := range ds.Models {
		if target != nil && m.Version == *target && s.recv.CompareAndSwap(false, true) {
			s.c.emit(event{Ev: "recv", I: s.i, Version: m.Version, D: s.c.since()})
		}
	}
	s.mu.Lock()
	if ds.Revision <= s.applied {
		s.mu.Unlock()
		return
	}
	s.applied = ds.Revision
	digests := s.digests
	s.mu.Unlock()
	var rows []v1alpha1.ModelReport
	var cached []v1alpha1.CachedArtifact
	next := map[string]string{}
	for _, m := range ds.Models {
		if digests[m.Deployment] != m.Digest {
			for attempt := 1; ; attempt++ {
				err := s.fetchManifest(ctx, m)
				if err == nil || ctx.Err() != nil {
					break
				}
				s.c.fail(err)
				sleep(ctx, hubclient.RetryDelay(err, agentBackoff, attempt, mrand.Float64()))
			}
		}
		next[m.Deployment] = m.Digest
		cached = append(cached, v1alpha1.CachedArtifact{Digest: m.Digest, Model: m.Model, Version: m.Version, SizeBytes: m.SizeBytes})
		rows = append(rows, v1alpha1.ModelReport{Deployment: m.Deployment, Model: m.Model, DesiredVersion: m.Version,
			Phase: v1alpha1.PhaseActive, ActiveVersion: m.Version})
	}
	s.mu.Lock()
	s.models, s.digests, s.cached = rows, next, cached
	s.mu.Unlock()
	select {
	case s.trigger <- struct{}{}:
	default:
	}
}

// fetchManifest fetches what the agent fetches before the model's chunks:
// the manifest by digest, its config blob, and the chunk index referrer.
func (s *sim) fetchManifest(ctx context.Context, m v1alpha1.DesiredModel) error {
	s.c.count(&s.c.st.Fetches)
	host := s.c.cfg.hub
	r, err := remote.NewRepository(host + "/models/" + m.Model)
	if err != nil {
		return err
	}
	r.Client = &orasauth.Client{Client: s.c.client, Cache: orasauth.NewCache(),
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
	_, _ = io.Copy(io.Discard, crc)
	crc.Close()
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(m.Digest), Size: int64(len(mb))}
	if _, err := artifact.FetchChunkIndex(ctx, r, desc); err != nil {
		return fmt.Errorf("chunk index of %s: %w", m.Version, err)
	}
	return nil
}

// reportLoop reports as the agent's report loop does: at start, after each
// change (coalesced for 200 ms) and every report interval; a report the hub
// was too busy to take (429, 503) is sent again after its Retry-After (or
// the backoff), and none before. The starts are spread over a tenth of the
// interval and the periodic reports over the whole of it, as in a fleet
// whose agents did not all start in the same second.
func (s *sim) reportLoop(ctx context.Context) {
	interval := s.c.cfg.reportInterval
	if !sleep(ctx, time.Duration(mrand.Int64N(int64(interval)))/10) {
		return
	}
	periodic := time.NewTimer(time.Duration(mrand.Int64N(int64(interval))))
	defer periodic.Stop()
	busy := 0
	for {
		err := s.report(ctx)
		if ctx.Err() != nil {
			return
		}
		if code := hubclient.Code(err); code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable {
			busy++
			if !sleep(ctx, hubclient.RetryDelay(err, agentBackoff, busy, mrand.Float64())) {
				return
			}
			continue
		}
		if busy > 0 {
			// The report just sent covers what asked for one while it waited.
			busy = 0
			select {
			case <-periodic.C:
				periodic.Reset(interval)
			default:
			}
			select {
			case <-s.trigger:
			default:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-periodic.C:
			periodic.Reset(interval)
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

func (s *sim) report(ctx context.Context) error {
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
	target := s.c.target.Load()
	active := false
	for _, m := range s.models {
		active = active || (target != nil && m.ActiveVersion == *target && m.Phase == v1alpha1.PhaseActive)
	}
	s.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, time.Minute) // as the agent
	defer cancel()
	if _, err := s.hub.Report(rctx, rep); err != nil {
		if ctx.Err() == nil {
			s.c.fail(err)
		}
		return err
	}
	s.c.count(&s.c.st.Reports)
	s.reported.Store(true)
	s.announce()
	// Count it only if the rollout it reports on is still the current one: a report
	// sent before the next rollout began may be acknowledged after.
	if active && s.c.target.Load() == target && s.active.CompareAndSwap(false, true) {
		s.c.emit(event{Ev: "active", I: s.i, Version: *target, D: s.c.since()})
	}
	return nil
}
