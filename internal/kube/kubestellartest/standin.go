// Package kubestellartest is a test double for KubeStellar: a stand-in for
// its binding, transport and status return, written from the KubeStellar
// 0.30 documentation (BindingPolicy, StatusCollector, CombinedStatus and
// singleton status return) and OCM's ManagedCluster, for tests and
// benchmarks that cannot install KubeStellar itself. It is not KubeStellar
// and does not try to be: it polls instead of watching, evaluates only
// path expressions (inventory.name, returned.status, obj.metadata.name)
// in StatusCollectors, and ignores filters, aggregation, namespace
// selectors, customization and createOnly.
//
// Each pass it reads the BindingPolicies and ManagedClusters of the WDS
// (which doubles as the ITS), selects the WECs whose ManagedCluster labels
// match a policy's clusterSelectors, copies the objects its downsync
// clauses select into those WECs (and deletes what is no longer selected),
// copies a WEC object's status back into the WDS object when singleton
// status is wanted and exactly one WEC is selected, and writes a
// CombinedStatus per (object, BindingPolicy) from the StatusCollectors the
// policy names.
package kubestellartest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"outpost.dev/outpost/internal/kube"
)

// CRDs is the folder of the minimal KubeStellar and OCM CRDs the stand-in
// reads and writes, for envtest's CRDDirectoryPaths.
func CRDs() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "crds")
}

var (
	bindingPolicies  = kube.BindingPolicyGVK.GroupVersion().WithResource("bindingpolicies")
	statusCollectors = kube.StatusCollectorGVK.GroupVersion().WithResource("statuscollectors")
	combinedStatuses = kube.CombinedStatusGVK.GroupVersion().WithResource("combinedstatuses")
	managedClusters  = kube.ManagedClusterGVK.GroupVersion().WithResource("managedclusters")
	namespaces       = corev1.SchemeGroupVersion.WithResource("namespaces")
)

// WEC is a workload execution cluster the stand-in delivers to: its
// inventory name (its ManagedCluster's) and its apiserver.
type WEC struct {
	Name   string
	Config *rest.Config
}

// StandIn is the stand-in. Create it with New, run it with Run.
type StandIn struct {
	wds      dynamic.Interface
	disc     discovery.DiscoveryInterface
	wecs     map[string]dynamic.Interface
	interval time.Duration
	log      *slog.Logger

	mu        sync.Mutex
	cut       map[string]bool
	delivered map[string]map[objKey]bool           // WEC -> objects it holds from the stand-in
	returned  map[string]map[objKey]map[string]any // WEC -> object -> status last read there
	copied    map[objKey]map[string]any            // object -> the WEC status last copied into it
	passes    int
}

// objKey names a workload object.
type objKey struct {
	gvr       schema.GroupVersionResource
	namespace string
	name      string
}

// New returns a stand-in reading the WDS (and ITS) at wds and delivering
// to wecs every interval.
func New(wds *rest.Config, wecs []WEC, interval time.Duration, log *slog.Logger) (*StandIn, error) {
	d, err := dynamic.NewForConfig(wds)
	if err != nil {
		return nil, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(wds)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	s := &StandIn{wds: d, disc: disc, wecs: map[string]dynamic.Interface{}, interval: interval, log: log,
		cut: map[string]bool{}, copied: map[objKey]map[string]any{}, delivered: map[string]map[objKey]bool{}, returned: map[string]map[objKey]map[string]any{}}
	for _, w := range wecs {
		c, err := dynamic.NewForConfig(w.Config)
		if err != nil {
			return nil, err
		}
		s.wecs[w.Name] = c
		s.delivered[w.Name] = map[objKey]bool{}
		s.returned[w.Name] = map[objKey]map[string]any{}
	}
	return s, nil
}

// Cut cuts the WEC off from the WDS, or heals the cut: while cut, nothing
// is delivered to it or read from it, and what it holds stays, as OCM's
// work agent keeps the delivered objects of a cluster it cannot reach.
func (s *StandIn) Cut(wec string, cut bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cut[wec] = cut
}

// Passes counts the passes done.
func (s *StandIn) Passes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.passes
}

// Run makes a pass every interval until ctx ends; a failed pass is logged.
func (s *StandIn) Run(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		if err := s.Pass(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("kubestellar stand-in pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// binding is what one BindingPolicy binds: objects to WECs.
type binding struct {
	policy     *unstructured.Unstructured
	wecs       []string
	objects    map[objKey]*unstructured.Unstructured
	collectors map[objKey][]string
	singleton  map[objKey]bool
}

// Pass makes one pass: bind, deliver, return status.
func (s *StandIn) Pass(ctx context.Context) error {
	inv, err := s.inventory(ctx)
	if err != nil {
		return err
	}
	bps, err := s.wds.Resource(bindingPolicies).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list bindingpolicies: %w", err)
	}
	var bindings []binding
	want := map[string]map[objKey]*unstructured.Unstructured{}
	for i := range bps.Items {
		b, err := s.bind(ctx, &bps.Items[i], inv)
		if err != nil {
			s.log.Warn("bindingpolicy not bound", "name", bps.Items[i].GetName(), "err", err)
			continue
		}
		bindings = append(bindings, b)
		for _, w := range b.wecs {
			if want[w] == nil {
				want[w] = map[objKey]*unstructured.Unstructured{}
			}
			for k, o := range b.objects {
				want[w][k] = o
			}
		}
	}
	var errs []error
	for name, c := range s.wecs {
		s.mu.Lock()
		cut := s.cut[name]
		s.mu.Unlock()
		if cut {
			continue
		}
		errs = append(errs, s.deliver(ctx, name, c, want[name]))
	}
	errs = append(errs, s.returnStatus(ctx, bindings))
	s.mu.Lock()
	s.passes++
	s.mu.Unlock()
	return errors.Join(errs...)
}

// inventory returns the labels of the ManagedClusters that have a WEC.
func (s *StandIn) inventory(ctx context.Context) (map[string]labels.Set, error) {
	l, err := s.wds.Resource(managedClusters).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list managedclusters: %w", err)
	}
	inv := map[string]labels.Set{}
	for _, mc := range l.Items {
		if _, ok := s.wecs[mc.GetName()]; ok && mc.GetDeletionTimestamp() == nil {
			inv[mc.GetName()] = labels.Set(mc.GetLabels())
		}
	}
	return inv, nil
}

// bind resolves one BindingPolicy: the WECs its clusterSelectors match and
// the objects its downsync clauses select.
func (s *StandIn) bind(ctx context.Context, bp *unstructured.Unstructured, inv map[string]labels.Set) (binding, error) {
	var spec kube.BindingPolicySpec
	raw, _, _ := unstructured.NestedMap(bp.Object, "spec")
	if err := decode(raw, &spec); err != nil {
		return binding{}, err
	}
	b := binding{policy: bp, objects: map[objKey]*unstructured.Unstructured{}, collectors: map[objKey][]string{}, singleton: map[objKey]bool{}}
	for name, set := range inv {
		for i := range spec.ClusterSelectors {
			sel, err := metav1.LabelSelectorAsSelector(&spec.ClusterSelectors[i])
			if err != nil {
				return binding{}, fmt.Errorf("clusterSelectors[%d]: %w", i, err)
			}
			if sel.Matches(set) {
				b.wecs = append(b.wecs, name)
				break
			}
		}
	}
	sort.Strings(b.wecs)
	topSingleton, _, _ := unstructured.NestedBool(bp.Object, "spec", "wantSingletonReportedState")
	for i, cl := range spec.Downsync {
		if cl.APIGroup == nil {
			return binding{}, fmt.Errorf("downsync[%d]: the stand-in needs an apiGroup", i)
		}
		for _, res := range cl.Resources {
			gvr, err := s.resource(*cl.APIGroup, res)
			if err != nil {
				return binding{}, fmt.Errorf("downsync[%d]: %w", i, err)
			}
			l, err := s.wds.Resource(gvr).List(ctx, metav1.ListOptions{})
			if err != nil {
				return binding{}, fmt.Errorf("downsync[%d]: list %s: %w", i, gvr, err)
			}
			for j := range l.Items {
				o := &l.Items[j]
				if o.GetDeletionTimestamp() != nil || !matches(cl, o) {
					continue
				}
				k := objKey{gvr: gvr, namespace: o.GetNamespace(), name: o.GetName()}
				b.objects[k] = o
				b.collectors[k] = append(b.collectors[k], cl.StatusCollectors...)
				b.singleton[k] = b.singleton[k] || cl.WantSingletonReportedState || topSingleton
			}
		}
	}
	return b, nil
}

// resource maps an API group and resource to a served version.
func (s *StandIn) resource(group, resource string) (schema.GroupVersionResource, error) {
	groups, err := s.disc.ServerGroups()
	if err != nil {
		return schema.GroupVersionResource{}, err
	}
	for _, g := range groups.Groups {
		if g.Name == group {
			return schema.GroupVersionResource{Group: group, Version: g.PreferredVersion.Version, Resource: resource}, nil
		}
	}
	return schema.GroupVersionResource{}, fmt.Errorf("API group %q not served", group)
}

// matches tests a downsync clause's object criteria the stand-in knows.
func matches(cl kube.DownsyncPolicyClause, o *unstructured.Unstructured) bool {
	if len(cl.ObjectNames) > 0 && !slices.Contains(cl.ObjectNames, "*") && !slices.Contains(cl.ObjectNames, o.GetName()) {
		return false
	}
	if len(cl.Namespaces) > 0 && !slices.Contains(cl.Namespaces, "*") && !slices.Contains(cl.Namespaces, o.GetNamespace()) {
		return false
	}
	if len(cl.ObjectSelectors) == 0 {
		return true
	}
	for i := range cl.ObjectSelectors {
		sel, err := metav1.LabelSelectorAsSelector(&cl.ObjectSelectors[i])
		if err == nil && sel.Matches(labels.Set(o.GetLabels())) {
			return true
		}
	}
	return false
}

// deliver makes WEC name hold exactly the objects in want that the
// stand-in delivers: a copy of each with its spec, labels and annotations,
// without status, owner references or finalizers.
func (s *StandIn) deliver(ctx context.Context, name string, c dynamic.Interface, want map[objKey]*unstructured.Unstructured) error {
	var errs []error
	for k, o := range want {
		cp := deliveryCopy(o)
		ri := c.Resource(k.gvr).Namespace(k.namespace)
		cur, err := ri.Get(ctx, k.name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			if k.namespace != "" {
				s.ensureNamespace(ctx, c, k.namespace)
			}
			if _, err := ri.Create(ctx, cp, metav1.CreateOptions{}); err != nil {
				errs = append(errs, fmt.Errorf("wec %s: create %s %s: %w", name, k.gvr.Resource, k.name, err))
				continue
			}
		case err != nil:
			errs = append(errs, fmt.Errorf("wec %s: get %s %s: %w", name, k.gvr.Resource, k.name, err))
			continue
		default:
			if reflect.DeepEqual(cur.Object["spec"], cp.Object["spec"]) && reflect.DeepEqual(cur.GetLabels(), cp.GetLabels()) &&
				reflect.DeepEqual(cur.GetAnnotations(), cp.GetAnnotations()) {
				break
			}
			cp.SetResourceVersion(cur.GetResourceVersion())
			if _, err := ri.Update(ctx, cp, metav1.UpdateOptions{}); err != nil {
				errs = append(errs, fmt.Errorf("wec %s: update %s %s: %w", name, k.gvr.Resource, k.name, err))
				continue
			}
		}
		s.mu.Lock()
		s.delivered[name][k] = true
		s.mu.Unlock()
	}
	s.mu.Lock()
	var gone []objKey
	for k := range s.delivered[name] {
		if want[k] == nil {
			gone = append(gone, k)
		}
	}
	s.mu.Unlock()
	for _, k := range gone {
		err := c.Resource(k.gvr).Namespace(k.namespace).Delete(ctx, k.name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("wec %s: delete %s %s: %w", name, k.gvr.Resource, k.name, err))
			continue
		}
		s.mu.Lock()
		delete(s.delivered[name], k)
		delete(s.returned[name], k)
		s.mu.Unlock()
	}
	return errors.Join(errs...)
}

// deliveryCopy is the object as the transport delivers it.
func deliveryCopy(o *unstructured.Unstructured) *unstructured.Unstructured {
	cp := &unstructured.Unstructured{Object: map[string]any{}}
	for k, v := range o.Object {
		if k != "metadata" && k != "status" {
			cp.Object[k] = v
		}
	}
	cp = cp.DeepCopy()
	cp.SetName(o.GetName())
	cp.SetNamespace(o.GetNamespace())
	cp.SetLabels(o.GetLabels())
	cp.SetAnnotations(o.GetAnnotations())
	return cp
}

// ensureNamespace creates a namespace in a WEC if it lacks it.
func (s *StandIn) ensureNamespace(ctx context.Context, c dynamic.Interface, ns string) {
	n := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}}
	_, _ = c.Resource(namespaces).Create(ctx, n, metav1.CreateOptions{})
}

// returnStatus reads the status of every bound object in the WECs that are
// not cut off, writes singleton status and CombinedStatus objects.
func (s *StandIn) returnStatus(ctx context.Context, bindings []binding) error {
	var errs []error
	// Read what each WEC reports of each object it holds.
	for name, c := range s.wecs {
		s.mu.Lock()
		cut := s.cut[name]
		held := make([]objKey, 0, len(s.delivered[name]))
		for k := range s.delivered[name] {
			held = append(held, k)
		}
		s.mu.Unlock()
		if cut {
			continue
		}
		for _, k := range held {
			o, err := c.Resource(k.gvr).Namespace(k.namespace).Get(ctx, k.name, metav1.GetOptions{})
			if err != nil {
				if !apierrors.IsNotFound(err) {
					errs = append(errs, err)
				}
				continue
			}
			st, _, _ := unstructured.NestedMap(o.Object, "status")
			s.mu.Lock()
			s.returned[name][k] = st
			s.mu.Unlock()
		}
	}
	// Singleton status: the qualified WEC set of each object, over all policies.
	qualified := map[objKey]map[string]bool{}
	objects := map[objKey]*unstructured.Unstructured{}
	for _, b := range bindings {
		for k, o := range b.objects {
			objects[k] = o
			if !b.singleton[k] {
				continue
			}
			if qualified[k] == nil {
				qualified[k] = map[string]bool{}
			}
			for _, w := range b.wecs {
				qualified[k][w] = true
			}
		}
	}
	for k, o := range objects {
		errs = append(errs, s.singleton(ctx, k, o, qualified[k]))
	}
	for _, b := range bindings {
		for k, o := range b.objects {
			if len(b.collectors[k]) > 0 {
				errs = append(errs, s.combine(ctx, b, k, o))
			}
		}
	}
	return errors.Join(errs...)
}

// singleton keeps the executing-count label of an object whose singleton
// status is wanted and, with exactly one qualified WEC, copies that WEC's
// status into it.
func (s *StandIn) singleton(ctx context.Context, k objKey, o *unstructured.Unstructured, qualified map[string]bool) error {
	ri := s.wds.Resource(k.gvr).Namespace(k.namespace)
	l := o.GetLabels()
	count, has := l[kube.LabelExecutingCount]
	switch {
	case qualified == nil && has:
		delete(l, kube.LabelExecutingCount)
	case qualified != nil && count != strconv.Itoa(len(qualified)):
		if l == nil {
			l = map[string]string{}
		}
		l[kube.LabelExecutingCount] = strconv.Itoa(len(qualified))
	default:
		l = nil
	}
	if l != nil {
		o = o.DeepCopy()
		o.SetLabels(l)
		u, err := ri.Update(ctx, o, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("executing-count of %s %s: %w", k.gvr.Resource, k.name, err)
		}
		o = u
	}
	if len(qualified) != 1 {
		return nil
	}
	var wec string
	for w := range qualified {
		wec = w
	}
	s.mu.Lock()
	st, ok := s.returned[wec][k]
	s.mu.Unlock()
	if !ok || st == nil {
		return nil
	}
	// KubeStellar writes the status back when the WEC's status changes
	// (a WorkStatus event), not whenever the WDS object's differs.
	s.mu.Lock()
	last := s.copied[k]
	s.mu.Unlock()
	if reflect.DeepEqual(last, st) {
		return nil
	}
	o = o.DeepCopy()
	o.Object["status"] = st
	if _, err := ri.UpdateStatus(ctx, o, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("singleton status of %s %s: %w", k.gvr.Resource, k.name, err)
	}
	s.mu.Lock()
	s.copied[k] = st
	s.mu.Unlock()
	return nil
}

// combine writes the CombinedStatus of (object, policy): one result per
// StatusCollector, a row per selected WEC.
func (s *StandIn) combine(ctx context.Context, b binding, k objKey, o *unstructured.Unstructured) error {
	ns := k.namespace
	if ns == "" {
		ns = kube.CombinedStatusNamespace
	}
	s.ensureNamespace(ctx, s.wds, ns)
	cs := kube.CombinedStatus{}
	objView := o.DeepCopy().Object
	delete(objView, "status")
	for _, name := range b.collectors[k] {
		sc, err := s.wds.Resource(statusCollectors).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("statuscollector %s: %w", name, err)
		}
		var spec kube.StatusCollectorSpec
		raw, _, _ := unstructured.NestedMap(sc.Object, "spec")
		if err := decode(raw, &spec); err != nil {
			return fmt.Errorf("statuscollector %s: %w", name, err)
		}
		if spec.Filter != "" || len(spec.GroupBy) > 0 || len(spec.CombinedFields) > 0 {
			return fmt.Errorf("statuscollector %s: the stand-in evaluates select only", name)
		}
		res := kube.NamedStatusCombination{Name: name}
		for _, e := range spec.Select {
			res.ColumnNames = append(res.ColumnNames, e.Name)
		}
		limit := spec.Limit
		if limit <= 0 {
			limit = 20
		}
		for _, w := range b.wecs {
			if int64(len(res.Rows)) >= limit {
				break
			}
			s.mu.Lock()
			st := s.returned[w][k]
			s.mu.Unlock()
			vars := map[string]any{
				"inventory": map[string]any{"name": w},
				"obj":       objView,
				"returned":  map[string]any{"status": jsonOrNil(st)},
			}
			row := kube.StatusCombinationRow{}
			for _, e := range spec.Select {
				x, err := evalPath(e.Def, vars)
				if err != nil {
					return fmt.Errorf("statuscollector %s: select %s: %w", name, e.Name, err)
				}
				v, err := kube.NewValue(x)
				if err != nil {
					return err
				}
				row.Columns = append(row.Columns, v)
			}
			res.Rows = append(res.Rows, row)
		}
		cs.Results = append(cs.Results, res)
	}
	results, err := toJSONMap(cs)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: map[string]any{"results": results["results"]}}
	u.SetGroupVersionKind(kube.CombinedStatusGVK)
	u.SetNamespace(ns)
	u.SetName(string(o.GetUID()) + "." + string(b.policy.GetUID()))
	u.SetLabels(map[string]string{
		kube.LabelStatusGroup: k.gvr.Group, kube.LabelStatusResource: k.gvr.Resource,
		kube.LabelStatusNamespace: k.namespace, kube.LabelStatusName: k.name, kube.LabelStatusBindingPolicy: b.policy.GetName(),
	})
	ri := s.wds.Resource(combinedStatuses).Namespace(ns)
	cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = ri.Create(ctx, u, metav1.CreateOptions{})
		return err
	case err != nil:
		return err
	}
	if reflect.DeepEqual(cur.Object["results"], u.Object["results"]) {
		return nil
	}
	u.SetResourceVersion(cur.GetResourceVersion())
	_, err = ri.Update(ctx, u, metav1.UpdateOptions{})
	return err
}

// jsonOrNil is st, or nil for an absent status.
func jsonOrNil(st map[string]any) any {
	if st == nil {
		return nil
	}
	return st
}

// evalPath evaluates a dotted path such as returned.status over vars; a
// missing field is null. Anything else is an error.
func evalPath(expr string, vars map[string]any) (any, error) {
	parts := strings.Split(strings.TrimSpace(expr), ".")
	for _, p := range parts {
		if p == "" || strings.ContainsAny(p, " ()[]=!<>&|+-*/?:'\"") {
			return nil, fmt.Errorf("expression %q: the stand-in evaluates dotted paths only", expr)
		}
	}
	var cur any = vars
	for _, p := range parts {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, nil
		}
		cur = m[p]
	}
	return cur, nil
}

// decode decodes an unstructured map into v.
func decode(m map[string]any, v any) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// toJSONMap encodes v as an unstructured map.
func toJSONMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}
