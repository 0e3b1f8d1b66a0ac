// Package agent is the edge agent: it joins the hub, long-polls its
// cluster's desired state, and keeps a local cache of the desired model
// versions, fetching only the chunks it lacks, verifying every byte and
// activating a version only once all of it is in the cache. It keeps
// serving its last active versions with no hub, and reports its state to
// the hub whenever it can.
//
// The version guard (guard.go) is pure; state lives in SQLite (DIR/agent.db),
// blobs in an OCI image layout (DIR/cache).
package agent

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/durable"
	"outpost.dev/outpost/internal/hubclient"
	"outpost.dev/outpost/internal/outbox"

	"github.com/opencontainers/go-digest"
	"golang.org/x/time/rate"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/transfer"
	"outpost.dev/outpost/internal/window"
)

// Defaults of Config.
const (
	DefaultKeepVersions   = 2
	DefaultPollTimeout    = 30 * time.Second
	DefaultReportInterval = 10 * time.Second
	DefaultRetryBase      = time.Second
	DefaultRetryMax       = 2 * time.Minute
	// DefaultReconnectMax caps the wait between attempts to reach a hub that
	// does not answer at all (down, or the link cut): trying costs nothing
	// there, and the agent notices the hub back within it.
	DefaultReconnectMax = 10 * time.Second
	// DefaultProfileInterval is how often the agent looks again for the
	// reference profiles of the versions it serves.
	DefaultProfileInterval = 10 * time.Minute
)

// Files and folders of the data directory.
const (
	dbFile         = "agent.db"
	credentialFile = "credential"
	cacheDir       = "cache"
)

// Config configures an Agent.
type Config struct {
	// Dir is the data directory: agent.db, cache/ and credential.
	Dir string
	// Hub is the hub's base URL, https://HOST:PORT. Empty means the one
	// recorded in Dir.
	Hub string
	// Name is the cluster name. Empty means the one recorded in Dir.
	Name string
	// Labels are sent when joining.
	Labels map[string]string
	// JoinToken is the bootstrap token used when Dir holds no credential
	// (or the hub no longer accepts it).
	JoinToken string
	// Credential, if set, is used instead of joining (tests, pre-provisioned agents).
	Credential string
	// TLS configures connections to the hub; nil means the system roots.
	TLS *tls.Config
	// HTTPClient, if set, is used for every request to the hub instead of
	// one built from TLS.
	HTTPClient *http.Client
	// MaxBandwidth caps the bytes per second of model transfers; 0 means unlimited.
	MaxBandwidth int64
	// TrustedKeys verify model signatures.
	TrustedKeys []ed25519.PublicKey
	// RequireSignature makes every model need a valid signature from a
	// trusted key before activation, whatever its deployment says.
	RequireSignature bool
	// KeepVersions is how many previous versions per deployment garbage
	// collection keeps for rollback; 0 means DefaultKeepVersions, negative none.
	KeepVersions int
	// PollTimeout is the long-poll timeout.
	PollTimeout time.Duration
	// ReportInterval is how often a report is sent when nothing changes.
	ReportInterval time.Duration
	// RetryBase and RetryMax bound the backoff between attempts to reach the
	// hub and to reconcile a failing model.
	RetryBase, RetryMax time.Duration
	// ReconnectMax caps the backoff instead of RetryMax while the hub does
	// not answer at all (no connection); 0 means DefaultReconnectMax, and
	// it is never above RetryMax. A hub that answers busy (429, 503) is
	// still left alone for up to RetryMax or its Retry-After.
	ReconnectMax time.Duration
	// ProfileInterval is how often the agent asks the hub for the reference
	// profile of each version it serves, to pick up one attached or replaced
	// after the version was fetched; 0 means DefaultProfileInterval.
	ProfileInterval time.Duration
	// ImportWatchInterval is how often the running agent looks for a desired
	// state applied, or versions activated, by a bundle import run in another
	// process; 0 means DefaultImportWatchInterval.
	ImportWatchInterval time.Duration
	// VerifyOnStart re-hashes every active file at start instead of
	// checking sizes only.
	VerifyOnStart bool
	// Accelerators are the declared accelerators.
	Accelerators []v1alpha1.Accelerator
	// Memory is the declared memory of the cluster in bytes, reported as
	// its capacity and what variant policies hold a variant's memory
	// against; 0 measures the machine's.
	Memory int64
	// AgentVersion is reported to the hub.
	AgentVersion string
	// Parallel is how many range requests run at once per file; 0 means the transfer default.
	Parallel int
	// Logger receives the agent's logs; nil means slog.Default().
	Logger *slog.Logger
	// OnActive, if set, is called after the set of active versions changed
	// (a version activated, a deployment removed). It must return quickly;
	// the caller reads Active anew.
	OnActive func()
	// OutboxBudget bounds the payload bytes of the records waiting in the
	// outbox for the hub; 0 means outbox.DefaultBudget.
	OutboxBudget int64
	// OutboxMerge holds, by record kind, how two records merge into one
	// when the outbox budget fills (see internal/outbox).
	OutboxMerge map[string]outbox.MergeFunc
	// OnEvent, if set, is told of the events that may start pipeline runs:
	// a deployment's drift alarm raised (at every SetDrift while it is),
	// a version fetched and activated. It must return quickly.
	OnEvent func(Event)
	// OnApplied, if set, is called after a desired state document was
	// applied (DesiredPipelines may have changed). It must return quickly.
	OnApplied func()
	// Desired, if set, is where desired state comes from instead of the
	// hub's long-poll, such as the ModelDeployments KubeStellar delivered
	// into this cluster. The hub is still joined for its registry.
	Desired DesiredSource
	// Reports, if set, takes the agent's reports instead of the hub, such
	// as the status of those ModelDeployments.
	Reports ReportSink
	// FederatedData is the folder a federated job's relative data path is read from (the
	// local data never leaves the cluster); empty means Dir/data.
	FederatedData string
	// Clock times the agent's polls, reports, retries, backoff and
	// bandwidth limit, and stamps its state; nil means the system clock.
	Clock clock.Clock
}

// ActiveModel is a model version the agent serves.
type ActiveModel struct {
	// Deployment is the ModelDeployment name.
	Deployment string `json:"deployment"`
	// Model is the model name.
	Model string `json:"model"`
	// Version is the active version.
	Version string `json:"version"`
	// Digest is its manifest digest.
	Digest string `json:"digest"`
	// Files maps each file's path in the model to the verified blob holding it.
	Files map[string]string `json:"files"`
	// Serving is the deployment's serving configuration.
	Serving v1alpha1.Serving `json:"serving,omitzero"`
	// Monitoring is the deployment's drift monitoring; nil when it has none.
	Monitoring *v1alpha1.Monitoring `json:"monitoring,omitempty"`
	// ActivatedAt is when the version became active.
	ActivatedAt time.Time `json:"activatedAt"`
	// Reference is the version's reference profile in the cache
	// (internal/drift's encoding, decoded and checked when it was fetched,
	// its digest verified again when it was loaded), the baseline of drift
	// monitoring; empty while the version has no usable one.
	Reference string `json:"reference,omitempty"`
}

// Agent is an edge agent. Create it with New, run it with Run.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	state *stateDB
	cache *cache
	clock clock.Clock

	limiter *rate.Limiter
	// windows are the transfer windows of the applied desired state; nil for none. Guarded by mu.
	windows *window.Schedule
	// health reads what the inference server's versions answered; nil when none serves.
	// Guarded by mu.
	health  func() map[string]v1alpha1.ServingHealth
	src     *routingSource
	fetcher *transfer.Fetcher
	link    linkEstimator

	ready     chan struct{}
	readyOnce sync.Once
	wake      chan struct{} // asks the reconcile loop for a pass
	reportNow chan struct{} // asks the report loop for a report
	sendNow   chan struct{} // asks the outbox loop to send
	flWake    chan struct{} // asks the federated learning loop to look
	reach     *reachability // wakes loops backing off when the hub answers again
	outbox    *outbox.Outbox

	// gcMu is held shared by each model sync and exclusively by garbage collection.
	gcMu sync.RWMutex
	// files serialises the fetches of each file between syncs.
	files fileLocks

	mu         sync.Mutex
	hub        *hubclient.Client
	name       string
	credential string
	active     map[string]ActiveModel
	unservable map[string]string // deployment -> why its active version cannot be served
	workers    map[string]*worker
	retries    map[string]retry
	indexes    map[digest.Digest]*artifact.ChunkIndex
	noIndex    map[string]time.Time // manifest -> when first seen without a chunk index
	gcDirty    bool
}

// worker is a running sync of one deployment.
type worker struct {
	digest string
	cancel func()
}

// retry is a deployment's backoff after a failed sync.
type retry struct {
	digest   string
	attempts int
	next     time.Time
	// permanent is set when the digest can never sync (permanentFailure):
	// it is not tried again until the desired digest changes.
	permanent bool
}

// permanentFailure reports whether a sync failed in a way that trying the
// same digest again cannot change: the hub's blob is not the size its
// manifest says.
func permanentFailure(err error) bool {
	return errors.Is(err, transfer.ErrSizeMismatch)
}

// New opens the data directory and loads the last active versions, which
// Active returns at once: it contacts no hub.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if cfg.Dir == "" {
		return nil, errors.New("agent: no data directory")
	}
	if cfg.KeepVersions == 0 {
		cfg.KeepVersions = DefaultKeepVersions
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = DefaultPollTimeout
	}
	if cfg.ReportInterval <= 0 {
		cfg.ReportInterval = DefaultReportInterval
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = DefaultRetryBase
	}
	if cfg.ProfileInterval <= 0 {
		cfg.ProfileInterval = DefaultProfileInterval
	}
	if cfg.ImportWatchInterval <= 0 {
		cfg.ImportWatchInterval = DefaultImportWatchInterval
	}
	if cfg.RetryMax < cfg.RetryBase {
		cfg.RetryMax = max(DefaultRetryMax, cfg.RetryBase)
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = DefaultReconnectMax
	}
	cfg.ReconnectMax = min(max(cfg.ReconnectMax, cfg.RetryBase), cfg.RetryMax)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := privateDir(cfg.Dir); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	st, err := openPrivateState(ctx, filepath.Join(cfg.Dir, dbFile))
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	c, err := openCache(filepath.Join(cfg.Dir, cacheDir))
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	a := &Agent{
		cfg: cfg, log: cfg.Logger, state: st, cache: c, clock: clock.OrReal(cfg.Clock),
		ready: make(chan struct{}), wake: make(chan struct{}, 1), reportNow: make(chan struct{}, 1), sendNow: make(chan struct{}, 1), flWake: make(chan struct{}, 1), reach: newReachability(),
		active: map[string]ActiveModel{}, unservable: map[string]string{},
		workers: map[string]*worker{}, retries: map[string]retry{}, indexes: map[digest.Digest]*artifact.ChunkIndex{},
		noIndex: map[string]time.Time{},
	}
	if a.outbox, err = outbox.Open(ctx, st.db, outbox.Options{Budget: cfg.OutboxBudget, Merge: cfg.OutboxMerge, Clock: a.clock, WriteLock: &st.writeMu}); err != nil {
		st.Close()
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.limiter = newLimiter(cfg.MaxBandwidth)
	if err := a.loadIdentity(ctx); err != nil {
		st.Close()
		return nil, err
	}
	if err := a.loadActive(ctx); err != nil {
		st.Close()
		return nil, err
	}
	if err := a.loadWindows(ctx); err != nil {
		st.Close()
		return nil, err
	}
	return a, nil
}

// newLimiter returns the link's bandwidth limiter: bps bytes a second, or no limit for 0.
// Transfer windows change its limit as they open and close.
func newLimiter(bps int64) *rate.Limiter {
	l := rate.NewLimiter(rate.Inf, 1<<20)
	setLimit(l, bps)
	return l
}

// setLimit sets l to bps bytes a second (0: no limit), with a burst of a quarter second's
// bytes between 32 KiB and 1 MiB.
func setLimit(l *rate.Limiter, bps int64) {
	if bps <= 0 {
		if l.Limit() != rate.Inf {
			l.SetLimit(rate.Inf)
		}
		return
	}
	if l.Limit() == rate.Limit(bps) {
		return
	}
	l.SetBurst(int(min(max(bps/4, 32<<10), 1<<20)))
	l.SetLimit(rate.Limit(bps))
}

// loadIdentity loads the credential, checks the cluster name and hub
// against those recorded in the data directory and records them on first
// use. Until the directory holds a credential (a join succeeded) the
// recorded name is provisional: a start whose join was refused leaves a
// directory the next start may give another name, hub or token.
func (a *Agent) loadIdentity(ctx context.Context) error {
	a.credential = a.cfg.Credential
	if a.credential == "" {
		b, err := os.ReadFile(filepath.Join(a.cfg.Dir, credentialFile))
		switch {
		case err == nil:
			a.credential = strings.TrimSpace(string(b))
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("agent: read credential: %w", err)
		}
	}
	name, err := a.state.meta(ctx, metaCluster)
	if err != nil {
		return err
	}
	hub, err := a.state.meta(ctx, metaHub)
	if err != nil {
		return err
	}
	switch {
	case a.cfg.Name == "" && name == "":
		return errors.New("agent: no cluster name: pass --name on first start")
	case a.cfg.Name != "" && name != "" && a.cfg.Name != name && a.credential != "":
		return fmt.Errorf("agent: data directory %s belongs to cluster %q, not %q", a.cfg.Dir, name, a.cfg.Name)
	case a.cfg.Name != "" && a.cfg.Name != name:
		if name != "" {
			a.log.Info("data directory not joined yet: taking the new cluster name", "was", name, "name", a.cfg.Name)
		}
		name = a.cfg.Name
		if err := a.state.setMeta(ctx, metaCluster, name); err != nil {
			return err
		}
	}
	if a.cfg.Hub != "" && a.cfg.Hub != hub {
		hub = strings.TrimRight(a.cfg.Hub, "/")
		if err := a.state.setMeta(ctx, metaHub, hub); err != nil {
			return err
		}
	}
	a.name = name
	if hub != "" {
		// The agent's loops retry with their own backoff: one attempt per call.
		h, err := hubclient.New(hub, hubclient.Options{TLS: a.cfg.TLS, HTTPClient: a.cfg.HTTPClient, Attempts: 1, Clock: a.clock})
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		a.hub = h
	}
	if a.hub != nil {
		a.hub.SetToken(a.credential)
		base := a.hub.BaseURL()
		a.src = &routingSource{base: transfer.HTTPSource{Client: a.hub.HTTPClient(), BaseURL: base.Scheme + "://" + base.Host, Token: a.credential}, repos: map[digest.Digest]string{}}
		a.fetcher = transfer.NewFetcher(a.src, transfer.Options{
			Parallel: a.cfg.Parallel, Limiter: a.limiter, Logger: a.log,
			Backoff: clock.Backoff{Base: a.cfg.RetryBase / 4, Max: a.cfg.RetryMax},
			Clock:   a.clock,
		})
	}
	return nil
}

// loadActive marks the last active version of every deployment as serving,
// after checking its files are in the cache (their sizes, or their bytes
// with VerifyOnStart).
func (a *Agent) loadActive(ctx context.Context) error {
	rows, err := a.state.deployments(ctx)
	if err != nil {
		return err
	}
	for _, r := range rows {
		if r.ActiveDigest == "" {
			continue
		}
		am, err := a.activeModel(ctx, r, a.cfg.VerifyOnStart)
		if err != nil {
			why := fmt.Sprintf("cached files of %s@%s unusable: %v", r.ActiveModel, r.ActiveVersion, err)
			a.log.Error("active version cannot be served", "deployment", r.Name, "err", why)
			a.unservable[r.Name] = why
			continue
		}
		a.active[r.Name] = am
		a.log.Info("serving from cache", "deployment", r.Name, "model", am.Model, "version", am.Version)
	}
	return nil
}

// activeModel builds the ActiveModel of a deployment's active version,
// checking its files in the cache.
func (a *Agent) activeModel(ctx context.Context, r deploymentRow, rehash bool) (ActiveModel, error) {
	rec, ok, err := a.state.manifest(ctx, r.ActiveDigest)
	if err != nil {
		return ActiveModel{}, err
	}
	if !ok {
		return ActiveModel{}, fmt.Errorf("manifest %s is not in the cache", r.ActiveDigest)
	}
	am := ActiveModel{
		Deployment: r.Name, Model: r.ActiveModel, Version: r.ActiveVersion, Digest: r.ActiveDigest,
		Files: map[string]string{}, ActivatedAt: r.ActivatedAt,
	}
	if r.Desired.Digest == r.ActiveDigest || r.Desired.Model == r.ActiveModel {
		am.Serving = r.Desired.Serving
		am.Monitoring = r.Desired.Monitoring.DeepCopy()
	}
	for _, f := range rec.Files {
		d := digest.Digest(f.Digest)
		if err := a.cache.verifyFile(d, f.Size, rehash); err != nil {
			return ActiveModel{}, fmt.Errorf("file %s: %w", f.Path, err)
		}
		am.Files[f.Path] = a.cache.blobPath(d)
	}
	am.Reference = a.referencePath(rec)
	return am, nil
}

// Name is the cluster name.
func (a *Agent) Name() string { return a.name }

// Active returns the model versions the agent serves, sorted by deployment.
func (a *Agent) Active() []ActiveModel {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]ActiveModel, 0, len(a.active))
	for _, m := range a.active {
		files := make(map[string]string, len(m.Files))
		for k, v := range m.Files {
			files[k] = v
		}
		m.Files = files
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Deployment < out[j].Deployment })
	return out
}

// Ready is closed once the agent holds a credential and its loops run.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Close closes the agent's database. Call it after Run returned.
func (a *Agent) Close() error { return a.state.Close() }

// Apply runs a desired state document from src through the version guard
// and, when it is newer than the applied one, records it and starts
// reconciling. A stale document is refused and counted; a document with
// the applied revision changes nothing.
func (a *Agent) Apply(ctx context.Context, doc *v1alpha1.DesiredState, src Source) (Decision, error) {
	res, err := a.state.applyDoc(ctx, doc, src, a.clock.Now())
	if err != nil {
		return Decision{}, err
	}
	d := res.Decision
	switch d.Verdict {
	case RejectStale:
		a.log.Warn("refused stale desired state", "source", src, "revision", doc.Revision, "rejectedStale", res.RejectedStale, "reason", d.Reason)
		a.signal(a.reportNow)
	case RejectInvalid:
		a.log.Error("refused invalid desired state", "source", src, "reason", d.Reason)
	case Apply:
		a.log.Info("applied desired state", "source", src, "revision", doc.Revision, "models", len(doc.Models))
		a.setWindows(doc.Transfer)
		for _, p := range d.Plans {
			switch {
			case p.Step == StepNone:
				a.remonitor(p.Want)
			case p.Step == StepRefuse:
				a.log.Error("refused version", "deployment", p.Deployment, "err", p.Error)
			case p.Step == StepKeepLocal:
				a.log.Info("keeping the version produced on this cluster", "deployment", p.Deployment,
					"active", p.Active.Version, "desired", p.Want.Version)
			case p.Step == StepRemove:
				a.deactivate(p.Deployment)
			case p.Rollback != "":
				a.log.Warn("rolled back by the hub", "deployment", p.Deployment, "from", p.Active.Version, "to", p.Want.Version, "reason", p.Rollback)
			case p.Downgrade:
				a.log.Warn("downgrade allowed by deployment", "deployment", p.Deployment, "from", p.Active.Version, "to", p.Want.Version)
			case p.VariantSwitch:
				a.log.Info("switching variant of the active version", "deployment", p.Deployment, "version", p.Want.Version,
					"variant", cmp.Or(p.Want.Variant, artifact.OriginalVariant), "digest", p.Want.Digest)
			}
		}
		a.signal(a.wake)
		a.signal(a.reportNow)
		a.signal(a.flWake)
		if a.cfg.OnApplied != nil {
			a.cfg.OnApplied()
		}
	}
	return d, nil
}

// remonitor gives the active version of want's deployment want's drift
// monitoring, when only that changed: the inference server then monitors
// the version anew, without waiting for the next version.
func (a *Agent) remonitor(want v1alpha1.DesiredModel) {
	a.mu.Lock()
	am, ok := a.active[want.Deployment]
	changed := ok && am.Digest == want.Digest && !reflect.DeepEqual(am.Monitoring, want.Monitoring)
	if changed {
		am.Monitoring = want.Monitoring.DeepCopy()
		a.active[want.Deployment] = am
		a.log.Info("drift monitoring changed", "deployment", want.Deployment, "version", am.Version)
	}
	a.mu.Unlock()
	if changed {
		a.activeChanged()
	}
}

// deactivate stops serving a removed deployment.
func (a *Agent) deactivate(dep string) {
	a.mu.Lock()
	m, ok := a.active[dep]
	if ok {
		a.log.Info("deactivated", "deployment", dep, "model", m.Model, "version", m.Version)
	}
	delete(a.active, dep)
	delete(a.unservable, dep)
	a.gcDirty = true
	a.mu.Unlock()
	if ok {
		a.activeChanged()
	}
}

// activeChanged tells Config.OnActive that the active versions changed.
// a.mu must not be held.
func (a *Agent) activeChanged() {
	if a.cfg.OnActive != nil {
		a.cfg.OnActive()
	}
}

func (a *Agent) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run joins the hub if needed, then long-polls the desired state,
// reconciles and reports until ctx ends. With the hub unreachable it keeps
// serving and retries with backoff. It returns an error only when it cannot
// work at all, such as a refused join token.
func (a *Agent) Run(ctx context.Context) error {
	if a.hub == nil {
		return errors.New("agent: no hub address: pass --hub on first start")
	}
	if err := a.ensureJoined(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() { a.pollLoop(ctx) })
	wg.Go(func() { a.reconcileLoop(ctx) })
	wg.Go(func() { a.reportLoop(ctx) })
	wg.Go(func() { a.sendLoop(ctx) })
	wg.Go(func() { a.profileLoop(ctx) })
	wg.Go(func() { a.importWatchLoop(ctx) })
	wg.Go(func() { a.federatedLoop(ctx) })
	a.readyOnce.Do(func() { close(a.ready) })
	wg.Wait()
	return nil
}

// Join joins the hub unless the data directory holds a credential, as Run
// does first: for a cluster provisioned at a depot, which then has no
// link and is kept up to date by bundles.
func (a *Agent) Join(ctx context.Context) error {
	if a.hub == nil {
		return errors.New("agent: no hub address to join")
	}
	return a.ensureJoined(ctx)
}

// ensureJoined joins the hub unless a credential is held, retrying while
// the hub is unreachable. A join the hub refuses is an error.
func (a *Agent) ensureJoined(ctx context.Context) error {
	a.mu.Lock()
	have := a.credential != ""
	a.mu.Unlock()
	if have {
		return nil
	}
	if a.cfg.JoinToken == "" {
		return errors.New("agent: not joined yet: pass --join-token (from 'outpost cluster token create')")
	}
	for attempt := 1; ; attempt++ {
		err := a.join(ctx)
		if err == nil {
			return nil
		}
		if code := hubclient.Code(err); code >= 400 && code < 500 && code != http.StatusTooManyRequests && code != http.StatusRequestTimeout {
			return err
		}
		a.log.Warn("cannot reach hub to join, retrying", "err", err)
		if !clock.Sleep(ctx, a.clock, a.backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// join exchanges the join token for a credential and stores it (0600).
func (a *Agent) join(ctx context.Context) error {
	pub, err := a.bundleKey()
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	resp, err := a.hub.JoinRequest(ctx, v1alpha1.JoinRequest{Token: a.cfg.JoinToken, Cluster: a.name, Labels: a.cfg.Labels, BundleKey: pub.Public().(ed25519.PublicKey)})
	if err != nil {
		return fmt.Errorf("join hub as %s: %w", a.name, err)
	}
	if len(resp.BundleKey) == ed25519.PublicKeySize {
		if err := a.state.setMeta(ctx, metaHubBundleKey, base64.StdEncoding.EncodeToString(resp.BundleKey)); err != nil {
			return fmt.Errorf("agent: pin the hub's bundle key: %w", err)
		}
	}
	cred := resp.Credential
	if err := durable.WriteFile(filepath.Join(a.cfg.Dir, credentialFile), []byte(cred+"\n"), 0o600); err != nil {
		return fmt.Errorf("agent: store credential: %w", err)
	}
	if err := os.Chmod(filepath.Join(a.cfg.Dir, credentialFile), 0o600); err != nil {
		return fmt.Errorf("agent: store credential: %w", err)
	}
	a.mu.Lock()
	a.credential = cred
	a.hub.SetToken(cred)
	a.src.setToken(cred)
	a.mu.Unlock()
	a.log.Info("joined hub", "cluster", a.name, "hub", a.hub.BaseURL().String())
	return nil
}

// backoff is the wait before the attempt-th retry: exponential with
// jitter, capped at RetryMax.
func (a *Agent) backoff(attempt int) time.Duration {
	return clock.Backoff{Base: a.cfg.RetryBase, Max: a.cfg.RetryMax}.Delay(attempt, rand.Float64())
}

// retryDelay is the wait before trying the hub again after err, the
// attempt-th failure in a row: the backoff, or the time a busy hub asked
// for (Retry-After) when that is longer (hubclient.RetryDelay). While the
// hub does not answer at all the backoff stops growing at ReconnectMax, so
// that an agent notices a hub back soon after it is.
func (a *Agent) retryDelay(err error, attempt int) time.Duration {
	return retryDelay(err, clock.Backoff{Base: a.cfg.RetryBase, Max: a.cfg.RetryMax}, a.cfg.ReconnectMax, attempt, rand.Float64())
}

// retryDelay is Agent.retryDelay with the draw u in [0, 1) given.
func retryDelay(err error, b clock.Backoff, reconnectMax time.Duration, attempt int, u float64) time.Duration {
	if hubclient.Code(err) == 0 {
		b.Max = min(b.Max, reconnectMax)
	}
	return hubclient.RetryDelay(err, b, attempt, u)
}

// hubBusy reports whether err is the hub's answer that it cannot serve the
// request now (429 Too Many Requests, 503 Service Unavailable).
func hubBusy(err error) bool {
	code := hubclient.Code(err)
	return code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable
}

// pollLoop asks the desired state source (Config.Desired, or the hub's
// long-poll) for what is newer than the applied revision and applies what
// comes, through the version guard. After a
// failure it backs off, but polls again as soon as the hub answers any
// request when the failure was no answer at all, and at once after joining
// again when the hub no longer knew its credential or its cluster.
func (a *Agent) pollLoop(ctx context.Context) {
	src, fromHub := a.cfg.Desired, false
	if src == nil {
		src, fromHub = hubSource{hub: a.hub, cluster: a.name, timeout: a.cfg.PollTimeout}, true
	}
	failures := 0
	rejoined := false // the last poll failed, and the agent joined again
	for ctx.Err() == nil {
		applied, err := a.state.applied(ctx)
		if err != nil {
			a.log.Error("read state", "err", err)
			clock.Sleep(ctx, a.clock, a.backoff(1))
			continue
		}
		start := a.clock.Now()
		back := a.reach.wait()
		doc, err := src.Desired(ctx, applied.Revision)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			if hubclient.Code(err) == 0 && fromHub {
				a.reach.failed()
			}
			if code := hubclient.Code(err); fromHub && (code == http.StatusUnauthorized || code == http.StatusNotFound) && a.cfg.JoinToken != "" {
				// The credential is refused, or the cluster is gone (deleted
				// while the agent polled): the hub no longer knows it.
				a.log.Warn("hub refused the credential or no longer has the cluster, joining again", "err", err)
				jerr := a.join(ctx)
				if jerr != nil {
					a.log.Error("join again", "err", jerr)
				}
				if jerr == nil && !rejoined {
					// Poll with the new credential now; a second refusal
					// in a row backs off as any failure does.
					rejoined = true
					continue
				}
			}
			rejoined = false
			a.log.Warn("cannot poll desired state", "err", err, "failures", failures)
			a.retryWait(ctx, a.retryDelay(err, failures), err, back)
			continue
		}
		rejoined = false
		if failures > 0 {
			a.log.Info("hub reachable again")
			a.signal(a.reportNow)
		}
		failures = 0
		if fromHub {
			a.contact(ctx)
		}
		if doc == nil {
			continue
		}
		if rtt := clock.Since(a.clock, start); rtt < time.Second && fromHub {
			a.link.observeRTT(rtt)
		}
		if _, err := a.Apply(ctx, doc, src.Source()); err != nil {
			a.log.Error("apply desired state", "err", err)
			clock.Sleep(ctx, a.clock, a.backoff(1))
		}
	}
}

// contact records that the hub answered; when it had not answered a
// request before, the loops backing off from it try again at once.
func (a *Agent) contact(ctx context.Context) {
	if a.reach.answered() {
		a.log.Info("hub answers again")
		a.mu.Lock()
		now := a.clock.Now()
		for name, rt := range a.retries {
			if !rt.permanent {
				rt.next = now
				a.retries[name] = rt
			}
		}
		a.mu.Unlock()
		a.signal(a.wake)
	}
	if err := a.state.setMeta(ctx, metaLastContact, formatTime(a.clock.Now())); err != nil {
		a.log.Error("record contact", "err", err)
	}
}

// retryWait waits d after a request to the hub failed with err, or less:
// when err carries no answer from the hub, it ends as soon as the hub
// answers again (back, taken from a.reach before the request). An answer
// that said no (a status code) waits all of d. It reports whether ctx is
// still alive.
func (a *Agent) retryWait(ctx context.Context, d time.Duration, err error, back <-chan struct{}) bool {
	if hubclient.Code(err) != 0 {
		back = nil
	}
	t := a.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C():
		return true
	case <-back:
		return ctx.Err() == nil
	case <-ctx.Done():
		return false
	}
}

// reconcileLoop starts a sync for every deployment whose desired version is
// not served, retrying failures with backoff, and collects garbage when no
// sync runs.
func (a *Agent) reconcileLoop(ctx context.Context) {
	done := make(chan string, 16)
	var wg sync.WaitGroup
	defer func() {
		a.mu.Lock()
		for _, w := range a.workers {
			w.cancel()
		}
		a.mu.Unlock()
		wg.Wait()
	}()
	for {
		next := a.reconcileOnce(ctx, &wg, done)
		var timer <-chan time.Time
		var t clock.Timer
		if !next.IsZero() {
			t = a.clock.NewTimer(max(clock.Until(a.clock, next), 10*time.Millisecond))
			timer = t.C()
		}
		select {
		case <-ctx.Done():
		case <-a.wake:
		case <-done:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// reconcileOnce starts the syncs needed now and returns when the next
// retry is due (zero if none).
func (a *Agent) reconcileOnce(ctx context.Context, wg *sync.WaitGroup, done chan<- string) time.Time {
	rows, err := a.state.deployments(ctx)
	if err != nil {
		a.log.Error("read state", "err", err)
		return a.clock.Now().Add(a.backoff(1))
	}
	removed := false
	defer func() {
		if removed {
			a.activeChanged()
		}
	}()
	a.mu.Lock()
	defer a.mu.Unlock()
	present := map[string]bool{}
	var next time.Time
	now := a.clock.Now()
	open, capBps, change := true, int64(0), time.Time{}
	if a.windows != nil {
		open, capBps, change = a.windows.At(now)
	}
	urgent := false
	for _, r := range rows {
		present[r.Name] = true
		_, serving := a.active[r.Name]
		need := r.Desired.Digest != r.ActiveDigest || !serving
		if PlanModel(r.deployed(), r.Desired).Step.keepsActive() {
			need = false
		}
		w := a.workers[r.Name]
		if w != nil && (w.digest != r.Desired.Digest || !need) {
			w.cancel()
		}
		if need && r.Desired.Urgent {
			urgent = true
		}
		if !need || w != nil {
			continue
		}
		if !open && !r.Desired.Urgent {
			// Bulk bytes wait for the transfer window; an urgent version does not.
			continue
		}
		if rt, ok := a.retries[r.Name]; ok && rt.digest == r.Desired.Digest && (rt.permanent || now.Before(rt.next)) {
			if !rt.permanent && (next.IsZero() || rt.next.Before(next)) {
				next = rt.next
			}
			continue
		}
		wctx, cancelCause := context.WithCancelCause(ctx)
		cancel := func() { cancelCause(nil) }
		a.workers[r.Name] = &worker{digest: r.Desired.Digest, cancel: cancel}
		want := r.Desired
		if !want.Urgent && !change.IsZero() {
			// The window closes: the fetch stops there and resumes when it opens.
			wg.Add(1)
			go func() {
				defer wg.Done()
				a.closeAt(wctx, change, cancelCause)
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			err := a.sync(wctx, want)
			if errors.Is(context.Cause(wctx), errWindowClosed) && ctx.Err() == nil {
				a.windowClosed(want)
			} else {
				a.finish(ctx, want, err)
			}
			select {
			case done <- want.Deployment:
			default:
			}
		}()
	}
	// Inside a window its cap holds, outside it the outside cap; an urgent version takes
	// the link at the agent's own limit.
	limit := a.cfg.MaxBandwidth
	if a.windows != nil && !urgent && capBps > 0 && (limit <= 0 || capBps < limit) {
		limit = capBps
	}
	setLimit(a.limiter, limit)
	if !change.IsZero() && (next.IsZero() || change.Before(next)) {
		next = change
	}
	for name, w := range a.workers {
		if !present[name] {
			w.cancel()
		}
	}
	for name := range a.active {
		if !present[name] {
			delete(a.active, name)
			a.gcDirty = true
			removed = true
		}
	}
	if len(a.workers) == 0 && a.gcDirty {
		a.gcDirty = false
		go a.collectGarbage(context.WithoutCancel(ctx))
	}
	return next
}

// errWindowClosed is the cause of a fetch stopped by the end of its transfer window.
var errWindowClosed = errors.New("the transfer window closed")

// closeAt cancels ctx with errWindowClosed at t, unless it ends before.
func (a *Agent) closeAt(ctx context.Context, t time.Time, cancel context.CancelCauseFunc) {
	tm := a.clock.NewTimer(max(clock.Until(a.clock, t), 0))
	defer tm.Stop()
	select {
	case <-tm.C():
		cancel(errWindowClosed)
	case <-ctx.Done():
	}
}

// windowClosed records a sync stopped by the end of its transfer window: not a failure;
// what it fetched stays, and it resumes when the window opens.
func (a *Agent) windowClosed(want v1alpha1.DesiredModel) {
	a.mu.Lock()
	if w := a.workers[want.Deployment]; w != nil && w.digest == want.Digest {
		delete(a.workers, want.Deployment)
	}
	a.mu.Unlock()
	a.log.Info("transfer window closed: the fetch resumes when it opens", "deployment", want.Deployment, "version", want.Version)
	a.signal(a.reportNow)
}

// finish records the outcome of a sync.
func (a *Agent) finish(ctx context.Context, want v1alpha1.DesiredModel, err error) {
	a.mu.Lock()
	if w := a.workers[want.Deployment]; w != nil && w.digest == want.Digest {
		delete(a.workers, want.Deployment)
	}
	if err == nil {
		delete(a.retries, want.Deployment)
		a.gcDirty = true
		a.mu.Unlock()
		a.signal(a.reportNow)
		a.signal(a.sendNow)
		a.event(Event{Type: v1alpha1.TriggerNewVersion, Deployment: want.Deployment, Version: want.Version})
		return
	}
	if ctx.Err() != nil {
		a.mu.Unlock()
		return
	}
	if errors.Is(err, errSuperseded) || errors.Is(err, context.Canceled) {
		// Another version is desired, or none: the partial files of this
		// one go at the next garbage collection, once no sync runs.
		a.gcDirty = true
		a.mu.Unlock()
		return
	}
	rt := a.retries[want.Deployment]
	if rt.digest != want.Digest {
		rt = retry{digest: want.Digest}
	}
	rt.attempts++
	rt.permanent = permanentFailure(err)
	rt.next = a.clock.Now().Add(a.backoff(rt.attempts))
	a.retries[want.Deployment] = rt
	a.mu.Unlock()
	level, phase := slog.LevelError, v1alpha1.PhaseFailed
	if errors.Is(err, artifact.ErrNoChunkIndex) {
		// Waiting for the chunk index to be attached: not a failure yet.
		level, phase = slog.LevelInfo, v1alpha1.PhasePending
	}
	errText := err.Error()
	if rt.permanent {
		errText += fmt.Sprintf(" (not retried: %s@%s is broken in the hub's registry; deploy another version)", want.Model, want.Version)
		a.log.Error("sync failed for good", "deployment", want.Deployment, "model", want.Model, "version", want.Version, "err", err)
	} else {
		a.log.Log(ctx, level, "sync failed", "deployment", want.Deployment, "model", want.Model, "version", want.Version,
			"attempt", rt.attempts, "retryIn", clock.Until(a.clock, rt.next).Round(time.Millisecond), "err", err)
	}
	row, ok, gerr := getDeployment(ctx, a.state.db, want.Deployment)
	fetched, total := int64(0), int64(0)
	if gerr == nil && ok {
		fetched, total = row.BytesFetched, row.BytesTotal
	}
	if err := a.state.setProgress(ctx, want.Deployment, want.Digest, phase, fetched, total, errText, a.clock.Now()); err != nil {
		a.log.Error("record failure", "err", err)
	}
	a.signal(a.reportNow)
}

// collectGarbage deletes cached manifests and blobs that no deployment
// serves, fetches or keeps as one of its KeepVersions previous versions.
// It never runs while a sync runs.
func (a *Agent) collectGarbage(ctx context.Context) {
	if !a.gcMu.TryLock() {
		a.mu.Lock()
		a.gcDirty = true
		a.mu.Unlock()
		return
	}
	defer a.gcMu.Unlock()
	if err := a.gc(ctx); err != nil {
		a.log.Error("garbage collection", "err", err)
	}
}

func (a *Agent) gc(ctx context.Context) error {
	deps, err := a.state.deployments(ctx)
	if err != nil {
		return err
	}
	hist, err := a.state.history(ctx)
	if err != nil {
		return err
	}
	mans, err := a.state.manifests(ctx)
	if err != nil {
		return err
	}
	blobs, err := a.cache.listBlobs()
	if err != nil {
		return err
	}
	kept := keepManifests(deps, hist, max(a.cfg.KeepVersions, 0))
	dropMans, dropBlobs := gcPlan(mans, kept, blobs)
	// Forget manifests first: a crash between the two steps leaves unreferenced blobs, never
	// a manifest whose blobs are gone.
	if err := a.state.deleteManifests(ctx, dropMans); err != nil {
		return err
	}
	if err := a.writeIndex(ctx); err != nil {
		return err
	}
	var freed int
	for _, name := range dropBlobs {
		if err := a.cache.remove(name); err != nil {
			a.log.Warn("remove blob", "blob", name, "err", err)
			continue
		}
		freed++
	}
	a.mu.Lock()
	a.indexes = map[digest.Digest]*artifact.ChunkIndex{}
	a.mu.Unlock()
	if len(dropMans)+freed > 0 {
		a.log.Info("garbage collected", "manifests", len(dropMans), "blobs", freed)
	}
	return nil
}

// writeIndex rewrites the cache's index.json from the cached manifests.
func (a *Agent) writeIndex(ctx context.Context) error {
	mans, err := a.state.manifests(ctx)
	if err != nil {
		return err
	}
	entries := make([]indexEntry, 0, len(mans))
	for _, m := range mans {
		entries = append(entries, indexEntry{Digest: digest.Digest(m.Digest), Size: m.Size, Model: m.Model, Version: m.Version})
	}
	return a.cache.writeIndex(entries)
}
