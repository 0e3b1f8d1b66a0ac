package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/placement"
	"outpost.dev/outpost/internal/variant"
)

// SourceWEC names the ModelDeployments of a WEC as a desired state source
// in the agent's logs.
const SourceWEC agent.Source = "kubernetes"

// modelDeployments is the resource of ModelDeployments.
var modelDeployments = v1alpha1.SchemeGroupVersion.WithResource(v1alpha1.PluralModelDeployments)

// WEC is the agent's side of KubeStellar in a workload execution cluster:
// it watches the ModelDeployments KubeStellar delivered into the cluster
// and makes them the agent's desired state (agent.DesiredSource), and it
// writes the agent's row into each one's status (agent.ReportSink), which
// KubeStellar returns to the WDS. Cut off from the WDS, the delivered
// objects stay (OCM's work agent keeps them) and so does the desired state.
//
// A document's revision is the highest resourceVersion the watch saw, an
// etcd revision of the WEC's apiserver: it grows with every change there.
//
// Each model of a document is the variant of its version that the
// deployment's variant policy chooses for this cluster, from the facts
// SetFacts gives (the agent's own memory, CPU and link estimate), as the
// hub chooses for each cluster in standalone mode; the choice and its
// reason go into the cluster's status row.
type WEC struct {
	cluster  string
	dyn      dynamic.Interface
	informer cache.SharedIndexInformer
	log      *slog.Logger

	mu        sync.Mutex
	changed   chan struct{} // closed at the next change
	maxRV     int64
	last      []v1alpha1.DesiredModel
	lastRev   int64
	delivered bool
	facts     func() variant.Facts
	used      variant.Facts         // the facts the variants were last chosen with
	choices   map[string]VariantRow // by deployment, of the last document
}

// NewWEC returns the source and sink of the agent of cluster, reading the
// WEC through cfg. Start it before use.
func NewWEC(cfg *rest.Config, cluster string, log *slog.Logger) (*WEC, error) {
	if cluster == "" {
		return nil, errors.New("kube: no cluster name: the agent's --name is its ManagedCluster's name")
	}
	if log == nil {
		log = slog.Default()
	}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = warningLog{log}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	f := dynamicinformer.NewDynamicSharedInformerFactory(dyn, 0)
	w := &WEC{cluster: cluster, dyn: dyn, informer: f.ForResource(modelDeployments).Informer(), log: log, changed: make(chan struct{})}
	if _, err := w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { w.saw(o) },
		UpdateFunc: func(_, o any) { w.saw(o) },
		DeleteFunc: func(o any) { w.saw(o) },
	}); err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	return w, nil
}

// Start runs the watch until ctx ends. It does not wait for the WEC's
// apiserver: Desired returns nothing until the first list is in, and the
// agent serves from its cache meanwhile.
func (w *WEC) Start(ctx context.Context) {
	go w.informer.Run(ctx.Done())
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), w.informer.HasSynced) {
			w.saw(nil)
		}
	}()
}

// SetFacts gives the WEC what reads the agent's facts of its cluster, the
// same numbers its reports carry (agent.Agent.Facts); without it every
// fact is unknown, which no limit of a variant policy holds against. Call
// it before the agent runs.
func (w *WEC) SetFacts(f func() variant.Facts) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.facts = f
}

// factsNow returns the facts to choose variants with: the ones the last
// choice used until the cluster's facts moved enough to choose again
// (placement.FactsMoved), so that a wobbling link estimate does not flip a
// deployment between variants.
func (w *WEC) factsNow() variant.Facts {
	w.mu.Lock()
	f := w.facts
	w.mu.Unlock()
	if f == nil {
		return variant.Facts{}
	}
	now := f()
	w.mu.Lock()
	defer w.mu.Unlock()
	if placement.FactsMoved(w.used, now) {
		w.used = now
	}
	return w.used
}

// saw records a change the watch delivered and wakes Desired.
func (w *WEC) saw(o any) {
	n := revision(w.informer.LastSyncResourceVersion())
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if u, ok := o.(*unstructured.Unstructured); ok {
		n = max(n, revision(u.GetResourceVersion()))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.maxRV = max(w.maxRV, n)
	close(w.changed)
	w.changed = make(chan struct{})
}

// warningLog logs the apiserver's warnings at debug level.
type warningLog struct{ log *slog.Logger }

// HandleWarningHeader implements rest.WarningHandler.
func (w warningLog) HandleWarningHeader(code int, agent, text string) {
	w.log.Debug("apiserver warning", "code", code, "text", text)
}

// revision reads a resourceVersion as the etcd revision it is; 0 when it
// is not a number.
func revision(rv string) int64 {
	n, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// deployments returns the ModelDeployments the watch holds.
func (w *WEC) deployments() []v1alpha1.ModelDeployment {
	objs := w.informer.GetStore().List()
	mds := make([]v1alpha1.ModelDeployment, 0, len(objs))
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		var md v1alpha1.ModelDeployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &md); err != nil {
			w.log.Warn("modeldeployment does not decode", "name", u.GetName(), "err", err)
			continue
		}
		mds = append(mds, md)
	}
	return mds
}

// Desired implements agent.DesiredSource: the desired state made of the
// delivered deployments, once its revision is above after and its models
// differ from the ones it returned last (a status write changes the
// revision, not the models), or the last one was not applied.
func (w *WEC) Desired(ctx context.Context, after int64) (*v1alpha1.DesiredState, error) {
	for {
		w.mu.Lock()
		ch, rev := w.changed, w.maxRV
		w.mu.Unlock()
		if w.informer.HasSynced() && rev > after {
			doc, rows := DesiredState(w.cluster, rev, w.deployments(), w.factsNow())
			w.mu.Lock()
			for dep, row := range rows {
				if row.Error != "" && w.choices[dep].Error != row.Error {
					w.log.Error("variants of the deployment not read: sending the original model", "deployment", dep, "err", row.Error)
				}
			}
			w.choices = rows
			// Again when the last one was not applied (an error in the
			// agent's state): its revision is still above after.
			fresh := !w.delivered || !reflect.DeepEqual(doc.Models, w.last) || after < w.lastRev
			if fresh {
				w.last, w.lastRev, w.delivered = doc.Models, rev, true
			}
			w.mu.Unlock()
			if fresh {
				return doc, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Source implements agent.DesiredSource.
func (w *WEC) Source() agent.Source { return SourceWEC }

// Report implements agent.ReportSink: each model's row goes into the
// status of its deployment in the WEC, when it changed (StatusStale).
func (w *WEC) Report(ctx context.Context, r *v1alpha1.AgentReport) error {
	var errs []error
	for _, m := range r.Models {
		o, ok, err := w.informer.GetStore().GetByKey(m.Deployment)
		if err != nil || !ok {
			continue // gone from the WEC: nothing to report on
		}
		u := o.(*unstructured.Unstructured)
		var md v1alpha1.ModelDeployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &md); err != nil {
			continue
		}
		w.mu.Lock()
		v := w.choices[m.Deployment]
		w.mu.Unlock()
		next := AgentStatus(&md, r.Cluster, m, v, r.ReportedAt)
		if !StatusStale(md.Status, next) {
			continue
		}
		st, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&next)
		if err != nil {
			return err
		}
		upd := u.DeepCopy()
		upd.Object["status"] = st
		if _, err := w.dyn.Resource(modelDeployments).UpdateStatus(ctx, upd, metav1.UpdateOptions{FieldManager: "outpost-agent"}); err != nil {
			errs = append(errs, fmt.Errorf("status of modeldeployment %s: %w", m.Deployment, err))
		}
	}
	return errors.Join(errs...)
}

var (
	_ agent.DesiredSource = (*WEC)(nil)
	_ agent.ReportSink    = (*WEC)(nil)
)
