// Package hub is the hub server: the resource REST API, per-cluster desired state for agents,
// and the composition with the OCI registry. Every change of a Cluster, ModelDeployment,
// Pipeline or PipelineRun re-places the deployments and pipelines and recomputes each
// cluster's desired state in the same SQLite transaction; a cluster's document gets a new
// revision only when its content changes.
package hub

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/placement"
	"outpost.dev/outpost/internal/store"
)

// DefaultMaxBodyBytes is the request body limit when Config.MaxBodyBytes is zero.
const DefaultMaxBodyBytes = 1 << 20

// ModelResolver finds model versions in the registry.
type ModelResolver interface {
	// ResolveModel picks the highest version of model name matching constraint (exact or semver range);
	// with requireSigned only versions with a valid signature from a trusted key count.
	ResolveModel(ctx context.Context, name, constraint string, requireSigned bool) (ResolvedModel, error)
}

// ResolvedModel is a model version found by a ModelResolver.
type ResolvedModel struct {
	// Version is the semantic version (registry tag).
	Version string
	// Digest is the manifest digest.
	Digest string
	// Size is the total size of the model's files in bytes.
	Size int64
	// Variants are the version's variants, by name (with a valid signature, where one is
	// required).
	Variants []v1alpha1.ModelVariant
}

// Config configures a Server.
type Config struct {
	// DB is the hub's store. Required.
	DB *store.DB
	// BundleKey signs outbound bundles (see bundles.go); its public key is
	// sent to every cluster at join. Nil: the hub makes no bundles.
	BundleKey ed25519.PrivateKey
	// Registry serves the OCI distribution API under /v2/; it authorizes its own requests.
	Registry http.Handler
	// Models resolves deployment versions. Without it every ModelDeployment is refused.
	Models ModelResolver
	// Authorize is called for every API request, with write true for PUT, POST and DELETE. It
	// returns an error wrapping auth.ErrUnauthenticated or auth.ErrForbidden to refuse. Nil allows all.
	Authorize func(r *http.Request, write bool) error
	// RequireSignature makes every deployment accept only signed versions.
	RequireSignature bool
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
	// MaxBodyBytes limits request bodies (resources, join requests, agent reports); zero means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Records holds the handler of each kind of agent outbox record the hub
	// applies (POST clusters/{name}/outbox), beside the hub's own (drift
	// windows, drift.RecordKind; notes from the edge, v1alpha1.RecordKindNote;
	// pipeline run updates, v1alpha1.RecordKindPipelineRun); a handler here replaces the hub's of its kind. A record of another kind
	// is refused, and its agent drops and counts it.
	Records map[string]RecordHandler
	// OfflineAfter is how long a cluster's agent may stay silent before the hub marks the
	// cluster's link Disconnected; zero means DefaultOfflineAfter, negative never.
	OfflineAfter time.Duration
	// OfflineCheckInterval is how often the hub looks for silent clusters; zero means a
	// quarter of OfflineAfter, at most 5 s.
	OfflineCheckInterval time.Duration
	// Clock is the hub's clock for join token expiry, last-seen and last-contact times,
	// offline marking, long-poll timeouts and alert retries; nil means the system clock.
	Clock clock.Clock
	// AlertWebhooks are the http or https URLs the hub POSTs an Alertmanager webhook message
	// (version 4) to when the drift alarm of a deployment with spec.monitoring.alert is raised
	// or resolved in a cluster. Alerts wait in the store until their receiver answers 2xx.
	AlertWebhooks []string
	// ExternalURL is the hub's URL as its clients reach it, for the links in alerts.
	ExternalURL string
	// Federated reads federated jobs' initial models and publishes their rounds' global
	// models; nil refuses every FederatedJob.
	Federated FederatedModels
	// FederatedInterval is how often the hub moves federated jobs on by its clock (round
	// deadlines, publishing) while one is under way, besides after each report and each
	// applied job; zero means DefaultFederatedInterval.
	FederatedInterval time.Duration
	// Compressor makes and pushes the variants CompressionPolicies ask for; nil: policies
	// are stored but nothing is compressed.
	Compressor ModelCompressor
	// CompressionInterval is how often the hub looks for versions to compress besides when
	// a model changes and when a policy is applied; zero means DefaultCompressionInterval.
	CompressionInterval time.Duration
	// RolloutInterval is how often the hub moves Canary rollouts on (bake times, silent
	// clusters) while one is under way, besides after changes and agents' reports; zero
	// means DefaultRolloutInterval.
	RolloutInterval time.Duration
}

// Server is the hub server.
type Server struct {
	cfg   Config
	db    *store.DB
	log   *slog.Logger
	clock clock.Clock
	life  context.Context // ends long-polls when the server's context ends
	// mu serialises resolution and reconciliation so that a slower resolution never
	// overwrites a newer one.
	mu sync.Mutex
	// reports feeds agent reports to the group-commit loop (storeReports).
	reports chan *pendingReport
	// alertClient delivers alerts; alertsDone is closed when delivery stops.
	alertClient *http.Client
	alertsDone  chan struct{}
	// loops counts the background loops New started, for Wait.
	loops sync.WaitGroup
	// metrics are served on GET /metrics.
	metrics *metrics
	// deployments holds the deployments the group commits wrote last.
	deployments deploymentCache
	// rolloutKick asks the rollout watcher to look now.
	rolloutKick chan struct{}
	// fl keeps federated jobs' coordinators between steps and wakes their loop.
	fl *flCache
	// compressKick asks the compression loop to look now.
	compressKick chan struct{}
}

// New returns a Server and reconciles the stored state once: it re-resolves every
// ModelDeployment and recomputes every desired state, so a hub that stopped between a change
// and its consequences catches up. It starts the watcher that marks silent clusters
// Disconnected. Long-polls and the watcher end when ctx ends.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DB == nil {
		return nil, errors.New("hub: Config.DB is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OfflineAfter == 0 {
		cfg.OfflineAfter = DefaultOfflineAfter
	}
	if cfg.OfflineCheckInterval <= 0 {
		cfg.OfflineCheckInterval = min(cfg.OfflineAfter/4, maxOfflineCheckInterval)
	}
	if err := checkWebhooks(cfg.AlertWebhooks); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	s := &Server{cfg: cfg, db: cfg.DB, log: cfg.Logger, clock: clock.OrReal(cfg.Clock), life: ctx, reports: make(chan *pendingReport), rolloutKick: make(chan struct{}, 1),
		alertClient: &http.Client{Timeout: alertTimeout}, alertsDone: make(chan struct{}), fl: newFLCache(),
		compressKick: make(chan struct{}, 1)}
	s.metrics = newMetrics(s)
	s.cfg.Records = builtinRecords()
	s.cfg.Records[drift.RecordKind] = s.applyDriftWindow
	s.cfg.Records[v1alpha1.RecordKindPipelineRun] = s.applyPipelineRun
	s.cfg.Records[v1alpha1.RecordKindFederated] = s.applyFederated
	maps.Copy(s.cfg.Records, cfg.Records)
	if err := s.ModelsChanged(ctx); err != nil {
		return nil, fmt.Errorf("hub: initial reconcile: %w", err)
	}
	s.loops.Go(func() { s.storeReports(ctx) })
	// Alerts queued before a restart are delivered even if no webhook is configured now.
	s.loops.Go(func() { s.deliverAlerts(ctx) })
	if cfg.OfflineAfter > 0 {
		s.loops.Go(func() { s.watchLinks(ctx, cfg.OfflineCheckInterval) })
	}
	if cfg.RolloutInterval <= 0 {
		cfg.RolloutInterval = DefaultRolloutInterval
	}
	s.loops.Go(func() { s.watchRollouts(ctx, cfg.RolloutInterval) })
	if cfg.Federated != nil {
		if cfg.FederatedInterval <= 0 {
			cfg.FederatedInterval = DefaultFederatedInterval
		}
		s.loops.Go(func() { s.watchFederated(ctx, cfg.FederatedInterval) })
	}
	if cfg.Compressor != nil {
		if cfg.CompressionInterval <= 0 {
			cfg.CompressionInterval = DefaultCompressionInterval
		}
		s.loops.Go(func() { s.watchCompression(ctx, cfg.CompressionInterval) })
	}
	return s, nil
}

// Wait returns once the background loops New started (storing reports, delivering alerts,
// watching links, rollouts and federated jobs, compressing) have stopped, which they do when the
// context given to New ends: a caller that closes the database after Wait knows no loop
// still uses it.
func (s *Server) Wait() { s.loops.Wait() }

// ModelsChanged re-resolves every ModelDeployment and recomputes the desired state of every
// cluster. Call it when a model version, tag or signature changes in the registry. A
// deployment that no longer resolves keeps its last resolved version and reports
// Resolved=False. It must not be called while holding a lock the ModelResolver needs.
func (s *Server) ModelsChanged(ctx context.Context) error {
	defer s.wakeCompression()
	s.mu.Lock()
	defer s.mu.Unlock()
	objs, _, err := s.db.List(ctx, v1alpha1.KindModelDeployment, nil)
	if err != nil {
		return err
	}
	type outcome struct {
		res ResolvedModel
		err error
	}
	results := make(map[string]outcome, len(objs))
	for _, o := range objs {
		d := o.(*v1alpha1.ModelDeployment)
		res, err := s.resolve(ctx, d)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		results[d.Name] = outcome{res, err}
	}
	return s.db.Update(ctx, func(tx *store.Tx) error {
		for name, r := range results {
			o, err := tx.Get(ctx, v1alpha1.KindModelDeployment, name)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			d := o.DeepCopyObject().(*v1alpha1.ModelDeployment)
			setResolved(d, r.res, r.err)
			if _, _, err := tx.UpdateStatus(ctx, d); err != nil {
				return err
			}
		}
		return s.reconcile(ctx, tx)
	})
}

// requireSigned reports whether d accepts only signed versions.
func (s *Server) requireSigned(d *v1alpha1.ModelDeployment) bool {
	return s.cfg.RequireSignature || d.Spec.RequireSignature
}

// resolve asks the ModelResolver for d's version.
func (s *Server) resolve(ctx context.Context, d *v1alpha1.ModelDeployment) (ResolvedModel, error) {
	if s.cfg.Models == nil {
		return ResolvedModel{}, errors.New("no model registry is configured")
	}
	signed := s.requireSigned(d)
	res, err := s.cfg.Models.ResolveModel(ctx, d.Spec.Model.Name, d.Spec.Model.Version, signed)
	if err == nil && res.Version == "" {
		err = errors.New("resolver returned no version")
	}
	if err != nil {
		if signed {
			return ResolvedModel{}, fmt.Errorf("no version of model %q matching %q has a valid signature from a trusted key: %w",
				d.Spec.Model.Name, d.Spec.Model.Version, err)
		}
		return ResolvedModel{}, fmt.Errorf("no version of model %q matches %q: %w", d.Spec.Model.Name, d.Spec.Model.Version, err)
	}
	return res, nil
}

// resolutionError reports a failed resolution as a validation error of spec.model.version.
func resolutionError(d *v1alpha1.ModelDeployment, err error) error {
	return &v1alpha1.InvalidError{Kind: v1alpha1.KindModelDeployment, Name: d.Name, Errs: field.ErrorList{
		field.Invalid(field.NewPath("spec", "model", "version"), d.Spec.Model.Version, err.Error()),
	}}
}

// setResolved records a resolution outcome in d's status. A failure keeps the last resolved version.
func setResolved(d *v1alpha1.ModelDeployment, res ResolvedModel, err error) {
	c := metav1.Condition{Type: v1alpha1.ConditionResolved, ObservedGeneration: d.Generation}
	if err != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, "ResolutionFailed", truncate(err.Error(), 1024)
	} else {
		d.Status.ResolvedVersion, d.Status.ResolvedDigest, d.Status.ResolvedSizeBytes = res.Version, res.Digest, res.Size
		d.Status.ResolvedVariants = res.Variants
		c.Status, c.Reason = metav1.ConditionTrue, "Resolved"
		c.Message = fmt.Sprintf("%s %s resolved to %s", d.Spec.Model.Name, d.Spec.Model.Version, res.Version)
	}
	d.Status.ObservedGeneration = d.Generation
	meta.SetStatusCondition(&d.Status.Conditions, c)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// reconcile places every deployment from its stored resolution, writes each cluster's desired
// state (a new revision only where the document changed), removes the documents of deleted
// clusters, and refreshes each deployment's per-cluster status rows and Placed condition.
func (s *Server) reconcile(ctx context.Context, tx *store.Tx) error {
	cobjs, err := tx.List(ctx, v1alpha1.KindCluster, nil)
	if err != nil {
		return err
	}
	clusters := make([]v1alpha1.Cluster, len(cobjs))
	for i, o := range cobjs {
		clusters[i] = *o.(*v1alpha1.Cluster)
	}
	deps, a, err := s.place(ctx, tx, clusters, true)
	if err != nil {
		return err
	}
	pls, pa, err := s.placePipelines(ctx, tx, clusters)
	if err != nil {
		return err
	}
	for _, c := range clusters {
		if err := s.writeDesired(ctx, tx, &c, a.Models[c.Name], pa.Pipelines[c.Name]); err != nil {
			return err
		}
	}
	have, err := tx.DesiredStateClusters(ctx)
	if err != nil {
		return err
	}
	for _, name := range have {
		if _, ok := a.Models[name]; !ok {
			if err := tx.DeleteDesiredState(ctx, name); err != nil {
				return err
			}
		}
	}
	for i := range deps {
		selected, ok := a.Selected[deps[i].Name]
		if !ok {
			continue
		}
		if err := s.setPlaced(ctx, tx, &deps[i], selected, a.Variants[deps[i].Name]); err != nil {
			return err
		}
	}
	for i := range pls {
		selected, ok := pa.Selected[pls[i].Name]
		if !ok {
			continue
		}
		if err := setPipelineRows(ctx, tx, &pls[i], selected); err != nil {
			return err
		}
	}
	return nil
}

// reconcileCluster is reconcile after a change to one cluster alone (it joined, or rejoined
// with other labels), or to the runs requested of it. Placement decides each cluster on its
// own labels (placement.DesiredStates, placement.Pipelines), so no other cluster's desired
// state can change: it writes this cluster's desired state and adds or removes its row in
// the deployments and pipelines that now select it or no longer do. That costs
// O(deployments + pipelines) where reconcile costs O(clusters x deployments): at 1,000
// clusters, a join no longer rewrites every desired state and every deployment's status.
func (s *Server) reconcileCluster(ctx context.Context, tx *store.Tx, c *v1alpha1.Cluster) error {
	deps, a, err := s.place(ctx, tx, []v1alpha1.Cluster{*c}, false)
	if err != nil {
		return err
	}
	pls, pa, err := s.placePipelines(ctx, tx, []v1alpha1.Cluster{*c})
	if err != nil {
		return err
	}
	if err := s.writeDesired(ctx, tx, c, a.Models[c.Name], pa.Pipelines[c.Name]); err != nil {
		return err
	}
	if err := reselectPipelines(ctx, tx, pls, pa, c.Name); err != nil {
		return err
	}
	for i := range deps {
		d := &deps[i]
		sel, ok := a.Selected[d.Name]
		if !ok {
			continue
		}
		var selected []string
		had, variantMoved := false, false
		choices := make(map[string]placement.VariantChoice, len(d.Status.Clusters)+1)
		for _, r := range d.Status.Clusters {
			if r.Cluster == c.Name {
				had = true
				ch := a.Variants[d.Name][c.Name]
				variantMoved = r.Variant != ch.Name || r.VariantReason != ch.Reason
				continue
			}
			selected = append(selected, r.Cluster)
			if r.Variant != "" {
				choices[r.Cluster] = placement.VariantChoice{Name: r.Variant, Reason: r.VariantReason}
			}
		}
		if ch, ok := a.Variants[d.Name][c.Name]; ok {
			choices[c.Name] = ch
		}
		if len(sel) == 1 {
			selected = append(selected, c.Name)
		}
		if had == (len(sel) == 1) && !(had && variantMoved) {
			continue // still selected with the same variant, or still not: its row, if any, stands
		}
		if err := s.setPlaced(ctx, tx, d, selected, choices); err != nil {
			return err
		}
	}
	return nil
}

// place reads every deployment and places them on clusters from their stored resolutions
// and rollouts. With step (clusters is then every Cluster), it runs each deployment's
// rollout controller first, so that a newly resolved version reaches its clusters only as
// its rollout allows.
func (s *Server) place(ctx context.Context, tx *store.Tx, clusters []v1alpha1.Cluster, step bool) ([]v1alpha1.ModelDeployment, placement.Assignment, error) {
	dobjs, err := tx.List(ctx, v1alpha1.KindModelDeployment, nil)
	if err != nil {
		return nil, placement.Assignment{}, err
	}
	deps := make([]v1alpha1.ModelDeployment, len(dobjs))
	for i, o := range dobjs {
		deps[i] = *o.(*v1alpha1.ModelDeployment)
	}
	if step {
		if _, err := s.stepRollouts(ctx, tx, deps, clusters); err != nil {
			return nil, placement.Assignment{}, err
		}
	}
	resolved := make(map[string]placement.Resolution, len(deps))
	for i := range deps {
		resolved[deps[i].Name] = rolloutResolution(&deps[i])
	}
	a, err := placement.DesiredStates(deps, clusters, resolved, s.cfg.RequireSignature)
	if err != nil {
		s.log.WarnContext(ctx, "placement skipped deployments", "err", err)
	}
	return deps, a, nil
}

// writeDesired stores a cluster's desired state document, with the cluster's transfer
// policy; the store moves its revision only when the document changed.
func (s *Server) writeDesired(ctx context.Context, tx *store.Tx, c *v1alpha1.Cluster, models []v1alpha1.DesiredModel,
	pipelines []v1alpha1.DesiredPipeline) error {
	cluster := c.Name
	federated, err := s.desiredFederated(ctx, tx, c)
	if err != nil {
		return err
	}
	doc, err := json.Marshal(v1alpha1.DesiredState{
		APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindDesiredState, Cluster: cluster, Models: models, Pipelines: pipelines,
		Federated: federated, Transfer: c.Spec.Transfer,
	})
	if err != nil {
		return fmt.Errorf("encode desired state: %w", err)
	}
	rev, changed, err := tx.SetDesiredState(ctx, cluster, doc)
	if err != nil {
		return err
	}
	if changed {
		s.log.DebugContext(ctx, "desired state changed", "cluster", cluster, "revision", rev)
	}
	return nil
}

// placedCondition is the Placed condition of a deployment that selects n clusters.
func placedCondition(d *v1alpha1.ModelDeployment, n int) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionPlaced, ObservedGeneration: d.Generation}
	if n > 0 {
		c.Status, c.Reason = metav1.ConditionTrue, "Placed"
		c.Message = fmt.Sprintf("selected %d cluster(s)", n)
	} else {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, "NoMatchingClusters", "no cluster matches the clusterSelectors"
	}
	return c
}

// setPlaced stores d's status with one row per selected cluster, its Placed condition, and
// its DriftDetected condition over the rows kept. A drift alarm raised in a cluster no longer
// selected is resolved.
func (s *Server) setPlaced(ctx context.Context, tx *store.Tx, d *v1alpha1.ModelDeployment, selected []string,
	variants map[string]placement.VariantChoice) error {
	d = d.DeepCopy()
	old := d.Status.Clusters
	d.Status.Clusters = clusterRows(d, selected, variants)
	meta.SetStatusCondition(&d.Status.Conditions, placedCondition(d, len(selected)))
	setDriftCondition(d)
	for _, r := range old {
		if rowIndex(d, r.Cluster) < 0 {
			err := s.queueDriftAlerts(ctx, tx, driftChange{d: d, cluster: r.Cluster, old: r.Drift, when: s.clock.Now(),
				why: "the deployment no longer selects the cluster"})
			if err != nil {
				return err
			}
		}
	}
	_, _, err := tx.UpdateStatus(ctx, d)
	return err
}

// clusterRows returns one status row per selected cluster, with the variant chosen for it
// (variants, by cluster), keeping what agents reported about the desired version; a row whose
// desired version or variant changes becomes Pending again.
func clusterRows(d *v1alpha1.ModelDeployment, selected []string, variants map[string]placement.VariantChoice) []v1alpha1.ClusterDeploymentStatus {
	old := make(map[string]v1alpha1.ClusterDeploymentStatus, len(d.Status.Clusters))
	for _, r := range d.Status.Clusters {
		old[r.Cluster] = r
	}
	rows := make([]v1alpha1.ClusterDeploymentStatus, 0, len(selected))
	for _, name := range selected {
		r, ok := old[name]
		want := rowVersion(d, name)
		ch := variants[name]
		if !ok || r.DesiredVersion != want || r.Variant != ch.Name {
			// A new version (or variant) is pending until the agent reports on it; what it
			// serves, when it last reported, the drift and health of what it serves still hold.
			total := d.Status.ResolvedSizeBytes
			if ch.SizeBytes > 0 {
				total = ch.SizeBytes
			}
			r = v1alpha1.ClusterDeploymentStatus{Cluster: name, Phase: v1alpha1.PhasePending, BytesTotal: total,
				ActiveVersion: r.ActiveVersion, LastContact: r.LastContact, Runtime: r.Runtime, Drift: r.Drift, Health: r.Health}
		}
		r.DesiredVersion = want
		r.Variant, r.VariantReason = ch.Name, ch.Reason
		rows = append(rows, *r.DeepCopy())
	}
	slices.SortFunc(rows, func(a, b v1alpha1.ClusterDeploymentStatus) int {
		switch {
		case a.Cluster < b.Cluster:
			return -1
		case a.Cluster > b.Cluster:
			return 1
		}
		return 0
	})
	if len(rows) == 0 {
		return nil
	}
	return rows
}
