package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/placement"
	"outpost.dev/outpost/internal/store"
)

// Limits of drift windows at the hub.
const (
	// MaxDriftReportBytes bounds one drift window report: a window of a
	// few dozen features is a few kilobytes, one of the most features a
	// report may have (4,096) about a megabyte.
	MaxDriftReportBytes = 4 << 20
	// DefaultDriftWindowLimit is how many windows GET .../drift answers
	// without a limit; MaxDriftWindowLimit the most it answers.
	DefaultDriftWindowLimit = 100
	MaxDriftWindowLimit     = store.DriftWindowRetention
	// maxConditionClusters bounds the clusters a DriftDetected message names.
	maxConditionClusters = 10
)

// Reasons of the DriftDetected condition.
const (
	ReasonDriftAlarm   = "DriftAlarm"
	ReasonNoDriftAlarm = "NoDriftAlarm"
)

// applyDriftWindow is the RecordHandler of drift.RecordKind: it stores the
// window a cluster's agent reports and folds it into the deployment's
// status row of that cluster. A malformed or oversized report, one about a
// deployment that does not exist or does not select the cluster, is
// refused, and nothing is written.
func (s *Server) applyDriftWindow(ctx context.Context, tx *store.Tx, cluster string, rec v1alpha1.OutboxRecord) error {
	if len(rec.Payload) > MaxDriftReportBytes {
		return fmt.Errorf("%w: drift report is %d bytes, at most %d", ErrRefused, len(rec.Payload), MaxDriftReportBytes)
	}
	rep, err := drift.DecodeWindowReport(rec.Payload)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	o, err := tx.Get(ctx, v1alpha1.KindModelDeployment, rep.Deployment)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: drift report of deployment %q: no such ModelDeployment", ErrRefused, rep.Deployment)
	}
	if err != nil {
		return err
	}
	d := o.DeepCopyObject().(*v1alpha1.ModelDeployment)
	i := rowIndex(d, cluster)
	if i < 0 {
		return fmt.Errorf("%w: drift report of deployment %q: the deployment does not select cluster %q", ErrRefused, rep.Deployment, cluster)
	}
	err = tx.PutDriftWindow(ctx, store.DriftWindow{
		Cluster: cluster, Deployment: rep.Deployment, Version: rep.Version,
		First: rep.First, Last: rep.Last, Windows: rep.Windows, Start: rep.Start, End: rep.End,
		Samples: rep.Samples, Verdict: string(rep.Verdict), Alarm: rep.Alarm, Report: rec.Payload,
	})
	if err != nil {
		return err
	}
	row := &d.Status.Clusters[i]
	old := row.Drift
	var newest bool
	row.Drift, newest = foldDrift(old, rep)
	setDriftCondition(d)
	if newest {
		c := windowChange(d, cluster, old, row.Drift, rep)
		if err := s.queueDriftAlerts(ctx, tx, c); err != nil {
			return err
		}
		if c.raised() {
			if err := s.requestDriftRuns(ctx, tx, d.Name, cluster, c.when); err != nil {
				return err
			}
		}
	}
	_, _, err = tx.UpdateStatus(ctx, d)
	return err
}

// raised reports whether the change raised the alarm of its version.
func (c driftChange) raised() bool {
	return c.next != nil && c.next.Alarm && (c.old == nil || !c.old.Alarm || c.next.Version != c.old.Version)
}

// requestDriftRuns requests the runs of the pipelines whose Drift trigger
// of deployment fires at the hub for cluster's alarm raised at since
// (placement.DriftRuns), and puts them into their clusters' desired state.
// A run requested before (the same alarm, reported again) is left alone;
// one the hub cannot place (its cluster lacks the room) is logged and
// skipped: the alarm's window is stored all the same.
func (s *Server) requestDriftRuns(ctx context.Context, tx *store.Tx, deployment, cluster string, since time.Time) error {
	pobjs, err := tx.List(ctx, v1alpha1.KindPipeline, nil)
	if err != nil || len(pobjs) == 0 {
		return err
	}
	pls := make([]v1alpha1.Pipeline, len(pobjs))
	for i, o := range pobjs {
		pls[i] = *o.(*v1alpha1.Pipeline)
	}
	cobjs, err := tx.List(ctx, v1alpha1.KindCluster, nil)
	if err != nil {
		return err
	}
	clusters := make([]v1alpha1.Cluster, len(cobjs))
	var driftLabels map[string]string
	for i, o := range cobjs {
		clusters[i] = *o.(*v1alpha1.Cluster)
		if clusters[i].Name == cluster {
			driftLabels = clusters[i].Labels
		}
	}
	runs, err := placement.DriftRuns(pls, clusters, deployment, cluster, driftLabels, since)
	if err != nil {
		s.log.WarnContext(ctx, "drift runs", "deployment", deployment, "cluster", cluster, "err", err)
	}
	targets := map[string]bool{}
	for i := range runs {
		r := &runs[i]
		if _, err := tx.Get(ctx, v1alpha1.KindPipelineRun, r.Name); err == nil {
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := checkRun(ctx, tx, r); err != nil {
			s.log.WarnContext(ctx, "drift run not requested", "run", r.Name, "cluster", r.Spec.Cluster, "err", err)
			continue
		}
		if _, _, err := tx.Apply(ctx, r); err != nil {
			return err
		}
		targets[r.Spec.Cluster] = true
		s.log.InfoContext(ctx, "drift run requested", "run", r.Name, "pipeline", r.Spec.Pipeline, "cluster", r.Spec.Cluster,
			"deployment", deployment, "drifting", cluster)
	}
	for i := range clusters {
		if targets[clusters[i].Name] {
			if err := s.reconcileCluster(ctx, tx, &clusters[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// windowChange is the change of d's drift alarm in cluster from old to
// next, which rep made the newest.
func windowChange(d *v1alpha1.ModelDeployment, cluster string, old, next *v1alpha1.DriftStatus, rep drift.WindowReport) driftChange {
	c := driftChange{d: d, cluster: cluster, old: old, next: next, when: rep.End, why: "the agent cleared it"}
	if old != nil && old.Alarm != next.Alarm && next.Since != nil {
		c.when = next.Since.Time
	}
	if old != nil && old.Version != next.Version {
		c.why = "the cluster serves version " + next.Version + " now"
	}
	features := strings.Join(next.DriftedFeatures, ", ")
	if more := int(next.DriftedFeatureCount) - len(next.DriftedFeatures); more > 0 {
		features += fmt.Sprintf(" and %d more", more)
	}
	if features == "" {
		features = "none in the last window"
	}
	reason := rep.Reason
	if reason == "" {
		reason = string(rep.Verdict)
	}
	c.description = fmt.Sprintf("The drift alarm of deployment %s (model %s %s) was raised on cluster %s: %s. Drifted features: %s.",
		d.Name, d.Spec.Model.Name, next.Version, cluster, reason, features)
	return c
}

// rowIndex returns the index of cluster's row in d's status, or -1.
func rowIndex(d *v1alpha1.ModelDeployment, cluster string) int {
	for i, r := range d.Status.Clusters {
		if r.Cluster == cluster {
			return i
		}
	}
	return -1
}

// foldDrift returns the drift summary of a row that showed old (nil for
// none) once the hub received rep, and whether rep is now the window it
// shows. The newest window wins: one that ends no later than the window
// shown (late, or merged from older windows) is only counted, if it is of
// the same version. old is not modified.
func foldDrift(old *v1alpha1.DriftStatus, rep drift.WindowReport) (*v1alpha1.DriftStatus, bool) {
	end := metav1.NewMicroTime(rep.End.Truncate(time.Microsecond))
	if old != nil && !end.After(old.LastWindowEnd.Time) {
		if rep.Version != old.Version {
			return old, false
		}
		next := old.DeepCopy()
		next.Windows += int64(rep.Windows)
		return next, false
	}
	next := &v1alpha1.DriftStatus{
		Version: rep.Version, State: driftState(rep.Verdict), Alarm: rep.Alarm,
		LastWindowEnd: end, Windows: int64(rep.Windows),
	}
	if old != nil && old.Version == rep.Version {
		next.Windows += old.Windows
	}
	switch {
	case !rep.AlarmChanged.IsZero():
		next.Since = &metav1.Time{Time: rep.AlarmChanged.UTC().Truncate(time.Second)}
	case old != nil && old.Alarm == rep.Alarm && old.Since != nil:
		next.Since = old.Since.DeepCopy()
	default:
		next.Since = &metav1.Time{Time: rep.End.UTC().Truncate(time.Second)}
	}
	for _, f := range rep.Features {
		if !f.Drifted {
			continue
		}
		if len(next.DriftedFeatures) < v1alpha1.MaxDriftedFeatureNames {
			next.DriftedFeatures = append(next.DriftedFeatures, f.Name)
		}
		next.DriftedFeatureCount++
	}
	return next, true
}

// driftState maps a drift verdict to a status state.
func driftState(v drift.Verdict) v1alpha1.DriftState {
	switch v {
	case drift.VerdictDrift:
		return v1alpha1.DriftStateDrift
	case drift.VerdictNoDrift:
		return v1alpha1.DriftStateNoDrift
	}
	return v1alpha1.DriftStateInsufficientData
}

// setDriftCondition sets d's DriftDetected condition from its rows: True
// while any selected cluster's drift alarm is raised, naming them; False
// when none is; absent while no cluster has sent a drift window.
func setDriftCondition(d *v1alpha1.ModelDeployment) {
	var alarmed []string
	reporting := 0
	for _, r := range d.Status.Clusters {
		if r.Drift == nil {
			continue
		}
		reporting++
		if r.Drift.Alarm {
			alarmed = append(alarmed, r.Cluster)
		}
	}
	if reporting == 0 {
		meta.RemoveStatusCondition(&d.Status.Conditions, v1alpha1.ConditionDriftDetected)
		return
	}
	c := metav1.Condition{Type: v1alpha1.ConditionDriftDetected, ObservedGeneration: d.Generation}
	if len(alarmed) == 0 {
		c.Status, c.Reason = metav1.ConditionFalse, ReasonNoDriftAlarm
		c.Message = fmt.Sprintf("no drift alarm in the %d cluster(s) that sent drift windows", reporting)
	} else {
		names := strings.Join(alarmed[:min(len(alarmed), maxConditionClusters)], ", ")
		if more := len(alarmed) - maxConditionClusters; more > 0 {
			names += fmt.Sprintf(" and %d more", more)
		}
		c.Status, c.Reason = metav1.ConditionTrue, ReasonDriftAlarm
		c.Message = fmt.Sprintf("drift alarm raised in %d cluster(s): %s", len(alarmed), names)
	}
	meta.SetStatusCondition(&d.Status.Conditions, c)
}

// handleDriftWindows answers the stored drift windows of a deployment,
// newest first (GET modeldeployments/{name}/drift?cluster=C&limit=N).
func (s *Server) handleDriftWindows(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	name := r.PathValue("name")
	q := r.URL.Query()
	limit := DefaultDriftWindowLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxDriftWindowLimit {
			s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest,
				fmt.Sprintf("limit: %q is not a number between 1 and %d", v, MaxDriftWindowLimit), nil)
			return
		}
		limit = n
	}
	cluster := q.Get("cluster")
	list := v1alpha1.DriftWindowList{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindDriftWindowList,
		Deployment: name, Cluster: cluster, Items: []v1alpha1.DriftWindow{}}
	err := s.db.View(ctx, func(tx *store.Tx) error {
		if _, err := tx.Get(ctx, v1alpha1.KindModelDeployment, name); err != nil {
			return err
		}
		ws, err := tx.DriftWindows(ctx, name, cluster, limit)
		for _, w := range ws {
			list.Items = append(list.Items, v1alpha1.DriftWindow{
				Cluster: w.Cluster, Version: w.Version, First: w.First, Last: w.Last, Windows: w.Windows,
				Start: metav1.NewTime(w.Start), End: metav1.NewTime(w.End), Samples: w.Samples,
				Verdict: w.Verdict, Alarm: w.Alarm, Received: metav1.NewTime(w.Received), Report: w.Report,
			})
		}
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSONOrYAML(w, r, http.StatusOK, list)
}
