package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
)

// DefaultResync is how often the controller resolves each deployment's
// version constraint again, to pick up versions pushed since.
const DefaultResync = time.Minute

// Workers is how many deployments the controller reconciles at once.
const Workers = 4

// Resolver resolves a model's version constraint to a registry version
// and its variants; with requireSigned only versions and variants with a
// valid signature from a trusted key count. Registry is one.
type Resolver interface {
	Resolve(ctx context.Context, model, constraint string, requireSigned bool) (Resolved, error)
}

// ControllerConfig configures the hub controller.
type ControllerConfig struct {
	// WDS reaches the workload description space: ModelDeployments,
	// Clusters, BindingPolicies, StatusCollectors and CombinedStatuses.
	WDS *rest.Config
	// ITS reaches the inventory and transport space, whose ManagedClusters
	// are mirrored into Cluster objects in the WDS; nil means the WDS.
	ITS *rest.Config
	// Resolver resolves version constraints.
	Resolver Resolver
	// RequireSignature resolves, for every deployment, only to versions and
	// variants with a valid signature from a trusted key, as a hub with
	// --require-signature does; a deployment's spec.requireSignature does
	// so for it alone.
	RequireSignature bool
	// Resync is how often each deployment is resolved again; 0 means DefaultResync.
	Resync time.Duration
	// Logger receives the controller's logs; nil means slog.Default().
	Logger *slog.Logger
	// Clock stamps conditions; nil means the system clock.
	Clock clock.Clock
}

// NewScheme returns a scheme with Outpost's kinds and Kubernetes' own.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// RunController runs the hub controller until ctx ends: for each
// ModelDeployment in the WDS it resolves the version constraint, records
// the resolution on the object, writes its BindingPolicy and folds the
// status KubeStellar returns into its rows; it mirrors the ITS's
// ManagedClusters into Cluster objects and keeps the StatusCollector the
// BindingPolicies name.
func RunController(ctx context.Context, cfg ControllerConfig) error {
	if cfg.WDS == nil {
		return errors.New("controller: no WDS")
	}
	if cfg.Resolver == nil {
		return errors.New("controller: no registry to resolve versions")
	}
	if cfg.Resync <= 0 {
		cfg.Resync = DefaultResync
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	scheme, err := NewScheme()
	if err != nil {
		return err
	}
	logger := logr.FromSlogHandler(cfg.Logger.Handler())
	mgr, err := ctrl.NewManager(cfg.WDS, manager.Options{
		Scheme:     scheme,
		Logger:     logger,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Client:     client.Options{Cache: &client.CacheOptions{Unstructured: true}},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	its := cluster.Cluster(mgr)
	if cfg.ITS != nil {
		c, err := cluster.New(cfg.ITS, func(o *cluster.Options) {
			o.Scheme, o.Logger = scheme, logger
		})
		if err != nil {
			return fmt.Errorf("controller: ITS: %w", err)
		}
		if err := mgr.Add(c); err != nil {
			return fmt.Errorf("controller: %w", err)
		}
		its = c
	}
	r := &deploymentReconciler{c: mgr.GetClient(), cfg: cfg, clock: clock.OrReal(cfg.Clock), log: cfg.Logger}
	bp := newObject(BindingPolicyGVK)
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("modeldeployments").
		WithOptions(controller.Options{MaxConcurrentReconciles: Workers}).
		For(&v1alpha1.ModelDeployment{}).
		Owns(bp).
		Watches(newObject(CombinedStatusGVK), handler.EnqueueRequestsFromMapFunc(combinedStatusOwner)).
		Watches(&v1alpha1.Cluster{}, handler.EnqueueRequestsFromMapFunc(r.allDeployments)).
		Complete(r); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	m := &mirrorReconciler{its: its.GetClient(), wds: mgr.GetClient(), log: cfg.Logger}
	mc := newObject(ManagedClusterGVK)
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("managedclusters").
		WatchesRawSource(source.Kind(its.GetCache(), client.Object(mc), &handler.EnqueueRequestForObject{})).
		Complete(m); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		return ensureStatusCollector(ctx, mgr.GetClient())
	})); err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	return mgr.Start(ctx)
}

// combinedStatusOwner maps a CombinedStatus to the ModelDeployment it
// reports on, from KubeStellar's labels.
func combinedStatusOwner(_ context.Context, o client.Object) []reconcile.Request {
	l := o.GetLabels()
	if l[LabelStatusGroup] != v1alpha1.GroupName || l[LabelStatusResource] != v1alpha1.PluralModelDeployments || l[LabelStatusName] == "" {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: l[LabelStatusName]}}}
}

// ensureStatusCollector creates or updates the StatusCollector every
// BindingPolicy of the controller names.
func ensureStatusCollector(ctx context.Context, c client.Client) error {
	spec, err := toUnstructured(StatusCollector())
	if err != nil {
		return err
	}
	sc := newObject(StatusCollectorGVK)
	sc.SetName(StatusCollectorName)
	_, err = controllerutil.CreateOrUpdate(ctx, c, sc, func() error {
		sc.Object["spec"] = spec
		return nil
	})
	if err != nil {
		return fmt.Errorf("controller: statuscollector %s: %w", StatusCollectorName, err)
	}
	return nil
}

// deploymentReconciler reconciles one ModelDeployment.
type deploymentReconciler struct {
	c     client.Client
	cfg   ControllerConfig
	clock clock.Clock
	log   *slog.Logger

	mu       sync.Mutex
	resolved map[resolveKey]resolution
}

// resolveKey is what one registry answer serves: a model, a constraint, and
// whether only signed versions and variants count.
type resolveKey struct {
	model, constraint string
	signed            bool
}

// resolution is the registry's answer to a constraint, and when it came.
type resolution struct {
	res Resolved
	err error
	at  time.Time
}

// resolve asks the registry, or reuses its answer to the same model,
// constraint and signature requirement from less than Resync ago: a
// deployment is reconciled at every status change, and the registry need
// not hear of each.
func (r *deploymentReconciler) resolve(ctx context.Context, model, constraint string, signed bool) (Resolved, error) {
	key := resolveKey{model, constraint, signed}
	now := r.clock.Now()
	r.mu.Lock()
	if r.resolved == nil {
		r.resolved = map[resolveKey]resolution{}
	}
	got, ok := r.resolved[key]
	if ok && now.Sub(got.at) >= r.cfg.Resync {
		ok = false
		delete(r.resolved, key)
	}
	r.mu.Unlock()
	if ok {
		return got.res, got.err
	}
	res, err := r.cfg.Resolver.Resolve(ctx, model, constraint, signed)
	if ctx.Err() == nil {
		r.mu.Lock()
		for k, v := range r.resolved {
			if now.Sub(v.at) >= r.cfg.Resync {
				delete(r.resolved, k) // no deployment asked for it since
			}
		}
		r.resolved[key] = resolution{res: res, err: err, at: now}
		r.mu.Unlock()
	}
	return res, err
}

// allDeployments enqueues every ModelDeployment: the inventory changed.
func (r *deploymentReconciler) allDeployments(ctx context.Context, _ client.Object) []reconcile.Request {
	var l v1alpha1.ModelDeploymentList
	if err := r.c.List(ctx, &l); err != nil {
		r.log.Error("list modeldeployments", "err", err)
		return nil
	}
	reqs := make([]reconcile.Request, len(l.Items))
	for i := range l.Items {
		reqs[i] = reconcile.Request{NamespacedName: types.NamespacedName{Name: l.Items[i].Name}}
	}
	return reqs
}

// Reconcile implements reconcile.Reconciler: it reads what Decide needs,
// asks it, and writes what differs.
func (r *deploymentReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var md v1alpha1.ModelDeployment
	if err := r.c.Get(ctx, req.NamespacedName, &md); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	bpName := BindingPolicyName(md.Name)
	if md.DeletionTimestamp != nil {
		if !controllerutil.ContainsFinalizer(&md, Finalizer) {
			return reconcile.Result{}, nil
		}
		bp := newObject(BindingPolicyGVK)
		bp.SetName(bpName)
		if err := r.c.Delete(ctx, bp); err != nil && !apierrors.IsNotFound(err) {
			return reconcile.Result{}, fmt.Errorf("delete bindingpolicy %s: %w", bpName, err)
		}
		controllerutil.RemoveFinalizer(&md, Finalizer)
		return reconcile.Result{}, r.c.Update(ctx, &md)
	}
	var clusters v1alpha1.ClusterList
	if err := r.c.List(ctx, &clusters); err != nil {
		return reconcile.Result{}, err
	}
	css := newList(CombinedStatusGVK)
	if err := r.c.List(ctx, css, client.InNamespace(CombinedStatusNamespace), client.MatchingLabels{
		LabelStatusGroup: v1alpha1.GroupName, LabelStatusResource: v1alpha1.PluralModelDeployments, LabelStatusName: md.Name,
	}); err != nil {
		return reconcile.Result{}, err
	}
	combined := make([]CombinedStatus, 0, len(css.Items))
	for i := range css.Items {
		var cs CombinedStatus
		if err := fromUnstructured(&css.Items[i], &cs); err != nil {
			r.log.Warn("combinedstatus does not parse", "name", css.Items[i].GetName(), "err", err)
			continue
		}
		combined = append(combined, cs)
	}
	returned, errs := ReturnedRows(&md.Status, combined)
	for _, err := range errs {
		r.log.Warn("returned status skipped", "deployment", md.Name, "err", err)
	}
	res, resErr := r.resolve(ctx, md.Spec.Model.Name, md.Spec.Model.Version, r.cfg.RequireSignature || md.Spec.RequireSignature)
	if resErr != nil {
		r.log.Warn("cannot resolve", "deployment", md.Name, "model", md.Spec.Model.Name, "version", md.Spec.Model.Version, "err", resErr)
	}
	p, err := Decide(&md, clusters.Items, res, resErr, returned, r.clock.Now())
	if err != nil {
		return reconcile.Result{}, reconcile.TerminalError(err)
	}
	// The object first: its finalizer and resolution.
	patch := client.MergeFrom(md.DeepCopy())
	changed := controllerutil.AddFinalizer(&md, Finalizer)
	for k, v := range p.Annotations {
		if md.Annotations[k] != v {
			if md.Annotations == nil {
				md.Annotations = map[string]string{}
			}
			md.Annotations[k] = v
			changed = true
		}
	}
	if changed {
		if err := r.c.Patch(ctx, &md, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("record resolution: %w", err)
		}
	}
	if err := r.writeBindingPolicy(ctx, &md, p); err != nil {
		return reconcile.Result{}, err
	}
	if !equality.Semantic.DeepEqual(md.Status, p.Status) {
		md.Status = p.Status
		if err := r.c.Status().Update(ctx, &md); err != nil {
			return reconcile.Result{}, fmt.Errorf("update status: %w", err)
		}
	}
	return reconcile.Result{RequeueAfter: r.cfg.Resync}, nil
}

// writeBindingPolicy creates or updates md's BindingPolicy, owned by md.
func (r *deploymentReconciler) writeBindingPolicy(ctx context.Context, md *v1alpha1.ModelDeployment, p Plan) error {
	spec, err := toUnstructured(p.BindingPolicy)
	if err != nil {
		return err
	}
	bp := newObject(BindingPolicyGVK)
	bp.SetName(p.BindingPolicyName)
	op, err := controllerutil.CreateOrUpdate(ctx, r.c, bp, func() error {
		bp.Object["spec"] = spec
		bp.SetOwnerReferences([]metav1.OwnerReference{{
			APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindModelDeployment, Name: md.Name, UID: md.UID,
			Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
		}})
		return nil
	})
	if err != nil {
		return fmt.Errorf("bindingpolicy %s: %w", p.BindingPolicyName, err)
	}
	if op != controllerutil.OperationResultNone {
		r.log.Info("bindingpolicy written", "deployment", md.Name, "bindingpolicy", p.BindingPolicyName, "op", op, "clusters", len(p.Selected))
	}
	return nil
}

// mirrorReconciler mirrors one ManagedCluster of the ITS into a Cluster
// of the WDS: same name, same labels.
type mirrorReconciler struct {
	its, wds client.Client
	log      *slog.Logger
}

// Reconcile implements reconcile.Reconciler.
func (m *mirrorReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	mc := newObject(ManagedClusterGVK)
	err := m.its.Get(ctx, req.NamespacedName, mc)
	gone := apierrors.IsNotFound(err) || (err == nil && mc.GetDeletionTimestamp() != nil)
	if err != nil && !gone {
		return reconcile.Result{}, err
	}
	var c v1alpha1.Cluster
	cerr := m.wds.Get(ctx, req.NamespacedName, &c)
	if cerr != nil && !apierrors.IsNotFound(cerr) {
		return reconcile.Result{}, cerr
	}
	exists := cerr == nil
	if gone {
		if exists && c.Labels[LabelManagedCluster] == "true" {
			m.log.Info("cluster left the inventory", "cluster", c.Name)
			return reconcile.Result{}, client.IgnoreNotFound(m.wds.Delete(ctx, &c))
		}
		return reconcile.Result{}, nil
	}
	want := MirrorLabels(mc)
	if !exists {
		c = v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: req.Name, Labels: want}}
		m.log.Info("cluster joined the inventory", "cluster", c.Name, "labels", want)
		return reconcile.Result{}, m.wds.Create(ctx, &c)
	}
	if equality.Semantic.DeepEqual(c.Labels, want) {
		return reconcile.Result{}, nil
	}
	c.Labels = want
	m.log.Info("cluster labels changed", "cluster", c.Name, "labels", want)
	return reconcile.Result{}, m.wds.Update(ctx, &c)
}

// MirrorLabels are the labels of the Cluster mirroring mc: its own, and
// LabelManagedCluster.
func MirrorLabels(mc *unstructured.Unstructured) map[string]string {
	l := map[string]string{}
	for k, v := range mc.GetLabels() {
		l[k] = v
	}
	l[LabelManagedCluster] = "true"
	return l
}
