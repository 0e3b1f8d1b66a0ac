package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/placement"
	"outpost.dev/outpost/internal/store"
)

// placePipelines reads every pipeline and run and places the pipelines on clusters.
func (s *Server) placePipelines(ctx context.Context, tx *store.Tx, clusters []v1alpha1.Cluster) ([]v1alpha1.Pipeline, placement.PipelineAssignment, error) {
	pobjs, err := tx.List(ctx, v1alpha1.KindPipeline, nil)
	if err != nil {
		return nil, placement.PipelineAssignment{}, err
	}
	pls := make([]v1alpha1.Pipeline, len(pobjs))
	for i, o := range pobjs {
		pls[i] = *o.(*v1alpha1.Pipeline)
	}
	var runs []v1alpha1.PipelineRun
	if len(pls) > 0 {
		robjs, err := tx.List(ctx, v1alpha1.KindPipelineRun, nil)
		if err != nil {
			return nil, placement.PipelineAssignment{}, err
		}
		runs = make([]v1alpha1.PipelineRun, len(robjs))
		for i, o := range robjs {
			runs[i] = *o.(*v1alpha1.PipelineRun)
		}
	}
	a, err := placement.Pipelines(pls, runs, clusters)
	if err != nil {
		s.log.WarnContext(ctx, "placement skipped pipelines", "err", err)
	}
	return pls, a, nil
}

// setPipelineRows stores p's status with one row per selected cluster, keeping what the
// hub heard of each cluster's runs, and the generation it describes. Nothing is written
// when nothing changed.
func setPipelineRows(ctx context.Context, tx *store.Tx, p *v1alpha1.Pipeline, selected []string) error {
	old := make(map[string]v1alpha1.PipelineClusterStatus, len(p.Status.Clusters))
	for _, r := range p.Status.Clusters {
		old[r.Cluster] = r
	}
	var rows []v1alpha1.PipelineClusterStatus
	for _, c := range selected { // sorted
		r, ok := old[c]
		if !ok {
			r = v1alpha1.PipelineClusterStatus{Cluster: c}
		}
		rows = append(rows, *r.DeepCopy())
	}
	if p.Status.ObservedGeneration == p.Generation && equality.Semantic.DeepEqual(rows, p.Status.Clusters) {
		return nil
	}
	cp := p.DeepCopy()
	cp.Status.Clusters, cp.Status.ObservedGeneration = rows, p.Generation
	_, _, err := tx.UpdateStatus(ctx, cp)
	return err
}

// reselectPipelines adds or removes cluster's row in the pipelines that now select it or no
// longer do; a is placed on that cluster alone.
func reselectPipelines(ctx context.Context, tx *store.Tx, pls []v1alpha1.Pipeline, a placement.PipelineAssignment, cluster string) error {
	for i := range pls {
		p := &pls[i]
		sel, ok := a.Selected[p.Name]
		if !ok {
			continue
		}
		var selected []string
		had := false
		for _, r := range p.Status.Clusters {
			if r.Cluster == cluster {
				had = true
				continue
			}
			selected = append(selected, r.Cluster)
		}
		if had == (len(sel) == 1) {
			continue
		}
		if len(sel) == 1 {
			selected = append(selected, cluster)
			slices.Sort(selected)
		}
		if err := setPipelineRows(ctx, tx, p, selected); err != nil {
			return err
		}
	}
	return nil
}

// selectedClusters returns the clusters that p selects.
func selectedClusters(ctx context.Context, tx *store.Tx, p *v1alpha1.Pipeline) ([]v1alpha1.Cluster, error) {
	objs, err := tx.List(ctx, v1alpha1.KindCluster, nil)
	if err != nil {
		return nil, err
	}
	all := make([]v1alpha1.Cluster, len(objs))
	for i, o := range objs {
		all[i] = *o.(*v1alpha1.Cluster)
	}
	names, err := placement.Select(p.Spec.ClusterSelectors, all)
	if err != nil {
		return nil, err
	}
	var out []v1alpha1.Cluster
	for _, c := range all {
		if slices.Contains(names, c.Name) {
			out = append(out, c)
		}
	}
	return out, nil
}

// checkPipeline refuses a pipeline with a step that no selected cluster can hold, as far as
// the clusters reported their capacity.
func checkPipeline(ctx context.Context, tx *store.Tx, p *v1alpha1.Pipeline) error {
	selected, err := selectedClusters(ctx, tx, p)
	if err != nil {
		return err
	}
	errs := placement.PipelineFits(&p.Spec, selected)
	if len(errs) == 0 {
		return nil
	}
	return &v1alpha1.InvalidError{Kind: v1alpha1.KindPipeline, Name: p.Name, Errs: errs}
}

// checkRun refuses a run the hub could not place: of a pipeline or on a cluster that does
// not exist, on a cluster its pipeline does not select, or with a step the cluster cannot
// hold. A run applied again unchanged is not checked again, and its pipeline and cluster
// cannot change.
func checkRun(ctx context.Context, tx *store.Tx, r *v1alpha1.PipelineRun) error {
	sp := field.NewPath("spec")
	refuse := func(errs ...*field.Error) error {
		return &v1alpha1.InvalidError{Kind: v1alpha1.KindPipelineRun, Name: r.Name, Errs: errs}
	}
	switch o, err := tx.Get(ctx, v1alpha1.KindPipelineRun, r.Name); {
	case err == nil:
		old := o.(*v1alpha1.PipelineRun)
		if old.Spec.Pipeline != r.Spec.Pipeline {
			return refuse(field.Forbidden(sp.Child("pipeline"), fmt.Sprintf(
				"run %q executes pipeline %q; a run's pipeline does not change: create another run", r.Name, old.Spec.Pipeline)))
		}
		if old.Spec.Cluster != r.Spec.Cluster {
			return refuse(field.Forbidden(sp.Child("cluster"), fmt.Sprintf(
				"run %q runs on cluster %q; a run's cluster does not change: create another run", r.Name, old.Spec.Cluster)))
		}
		return nil
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	po, err := tx.Get(ctx, v1alpha1.KindPipeline, r.Spec.Pipeline)
	if errors.Is(err, store.ErrNotFound) {
		return refuse(field.NotFound(sp.Child("pipeline"), r.Spec.Pipeline))
	}
	if err != nil {
		return err
	}
	p := po.(*v1alpha1.Pipeline)
	co, err := tx.Get(ctx, v1alpha1.KindCluster, r.Spec.Cluster)
	if errors.Is(err, store.ErrNotFound) {
		return refuse(field.NotFound(sp.Child("cluster"), r.Spec.Cluster))
	}
	if err != nil {
		return err
	}
	c := co.(*v1alpha1.Cluster)
	names, err := placement.Select(p.Spec.ClusterSelectors, []v1alpha1.Cluster{*c})
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return refuse(field.Invalid(sp.Child("cluster"), r.Spec.Cluster,
			fmt.Sprintf("pipeline %q does not select cluster %q (its clusterSelectors: %s)", p.Name, c.Name, describeSelectors(p.Spec.ClusterSelectors))))
	}
	if errs := placement.RunFits(&p.Spec, p.Name, c); len(errs) > 0 {
		return refuse(errs...)
	}
	return nil
}

// describeSelectors writes selectors briefly, for messages.
func describeSelectors(sels []metav1.LabelSelector) string {
	if len(sels) == 0 {
		return "none, so it selects no cluster"
	}
	out := make([]string, len(sels))
	for i := range sels {
		s, err := metav1.LabelSelectorAsSelector(&sels[i])
		switch {
		case err != nil:
			out[i] = "invalid"
		case s.Empty():
			out[i] = "{} (every cluster)"
		default:
			out[i] = "{" + s.String() + "}"
		}
	}
	return strings.Join(out, " or ")
}

// applyPipelineRun is the RecordHandler of v1alpha1.RecordKindPipelineRun: an update of a
// run from the cluster that runs it. It creates the run if the hub does not have it (a run
// the agent started: scheduled, triggered or local), or replaces its status when the
// update's sequence is above the one the hub holds (an older update arriving late changes
// nothing), and sets the pipeline's row of the cluster to the newest run. A run that finishes
// leaves the cluster's desired state. A malformed run, a run of another cluster, one that
// contradicts the hub's run of that name, or one claiming models outside the cluster's own
// repositories is refused, and nothing is written.
func (s *Server) applyPipelineRun(ctx context.Context, tx *store.Tx, cluster string, rec v1alpha1.OutboxRecord) error {
	run, err := v1alpha1.ParsePipelineRunRecord(rec.Payload)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if run.Spec.Cluster != cluster {
		return fmt.Errorf("%w: pipeline run %q is of cluster %q, and cluster %q sent it", ErrRefused, run.Name, run.Spec.Cluster, cluster)
	}
	prefix := v1alpha1.EdgeRepositories(cluster)
	for i, m := range run.Status.Models {
		if !strings.HasPrefix(m.Repository, prefix) {
			return fmt.Errorf("%w: pipeline run %q: status.models[%d].repository %q: a cluster registers models under %s only",
				ErrRefused, run.Name, i, m.Repository, prefix)
		}
	}
	var old *v1alpha1.PipelineRun
	switch o, err := tx.Get(ctx, v1alpha1.KindPipelineRun, run.Name); {
	case err == nil:
		old = o.(*v1alpha1.PipelineRun)
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	if old != nil && (old.Spec.Pipeline != run.Spec.Pipeline || old.Spec.Cluster != run.Spec.Cluster) {
		return fmt.Errorf("%w: pipeline run %q executes pipeline %q on cluster %q at the hub, not pipeline %q on cluster %q",
			ErrRefused, run.Name, old.Spec.Pipeline, old.Spec.Cluster, run.Spec.Pipeline, run.Spec.Cluster)
	}
	if old != nil && !newerUpdate(&run.Status, &old.Status) {
		return nil // an older update that arrived late
	}
	created := old == nil
	if created {
		r := &v1alpha1.PipelineRun{Spec: run.Spec}
		r.Name = run.Name
		if r.Spec.Trigger == "" {
			r.Spec.Trigger = v1alpha1.TriggeredLocal // the hub did not request it
		}
		o, _, err := tx.Apply(ctx, r)
		if err != nil {
			return err
		}
		old = o.(*v1alpha1.PipelineRun)
	}
	next := old.DeepCopy()
	next.Status = run.Status
	if _, _, err := tx.UpdateStatus(ctx, next); err != nil {
		return err
	}
	if err := s.setRunRow(ctx, tx, next); err != nil {
		return err
	}
	if !created && old.Status.Phase.Finished() == next.Status.Phase.Finished() {
		return nil // the cluster's desired state names the same runs
	}
	co, err := tx.Get(ctx, v1alpha1.KindCluster, cluster)
	if err != nil {
		return err
	}
	return s.reconcileCluster(ctx, tx, co.(*v1alpha1.Cluster))
}

// newerUpdate reports whether a run's status update next is newer than the status the hub
// holds: its sequence is higher. Updates without sequences (both zero) are taken in the
// order they arrive.
func newerUpdate(next, held *v1alpha1.PipelineRunStatus) bool {
	return next.Sequence > held.Sequence || next.Sequence == 0 && held.Sequence == 0
}

// setRunRow sets the row of run's cluster in its pipeline's status to run, when the
// pipeline exists and selects the cluster, and run is the newest run there: the run the row
// names already, or one that started no earlier (by the cluster's clock) than it.
func (s *Server) setRunRow(ctx context.Context, tx *store.Tx, run *v1alpha1.PipelineRun) error {
	o, err := tx.Get(ctx, v1alpha1.KindPipeline, run.Spec.Pipeline)
	if errors.Is(err, store.ErrNotFound) {
		return nil // a local pipeline, or one deleted since
	}
	if err != nil {
		return err
	}
	p := o.(*v1alpha1.Pipeline)
	i := slices.IndexFunc(p.Status.Clusters, func(r v1alpha1.PipelineClusterStatus) bool { return r.Cluster == run.Spec.Cluster })
	if i < 0 {
		return nil // the pipeline does not select the cluster (any longer)
	}
	row := &p.Status.Clusters[i]
	if row.LastRun != "" && row.LastRun != run.Name {
		switch lo, err := tx.Get(ctx, v1alpha1.KindPipelineRun, row.LastRun); {
		case err == nil:
			if !startedNoEarlier(run, lo.(*v1alpha1.PipelineRun)) {
				return nil
			}
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	now := metav1.NewTime(s.clock.Now().UTC().Truncate(time.Second))
	row.LastRun, row.LastUpdate = run.Name, &now
	row.Phase = run.Status.Phase
	if row.Phase == "" {
		row.Phase = v1alpha1.RunPending
	}
	_, _, err = tx.UpdateStatus(ctx, p)
	return err
}

// startedNoEarlier reports whether run a started no earlier than run b. A run that has not
// started yet is later than one that has; of two that have not, the one reported now is.
func startedNoEarlier(a, b *v1alpha1.PipelineRun) bool {
	as, bs := a.Status.StartTime, b.Status.StartTime
	switch {
	case as == nil:
		return true
	case bs == nil:
		return true
	}
	return !as.Before(bs)
}
