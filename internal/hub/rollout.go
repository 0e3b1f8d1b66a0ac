package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/placement"
	"outpost.dev/outpost/internal/rollout"
	"outpost.dev/outpost/internal/store"
)

// DefaultRolloutInterval is Config.RolloutInterval when zero.
const DefaultRolloutInterval = time.Second

// AlertRolloutFailed is the alertname of a rollout stopped at a failed gate.
const AlertRolloutFailed = "RolloutFailed"

// rolling reports whether d has a rollout the clock or the agents' reports may move on: a
// Canary rollout in progress or paused, or a resolved version its rollout has not started.
func rolling(d *v1alpha1.ModelDeployment) bool {
	st := d.Status.Rollout
	if d.Status.ResolvedVersion == "" {
		return false
	}
	if st == nil || st.Target.Version != d.Status.ResolvedVersion || st.Target.Digest != d.Status.ResolvedDigest {
		// A version not started yet; but one whose gate failed is never started.
		return st == nil || !slices.Contains(st.FailedVersions, d.Status.ResolvedVersion)
	}
	return st.Phase == v1alpha1.RolloutProgressing || st.Phase == v1alpha1.RolloutPaused
}

// stepRollouts runs the rollout controller of every deployment in deps over clusters (every
// Cluster) and stores the states that changed, replacing deps' entries with what it stored.
// It reports whether any cluster's version changed, when desired states must be rewritten.
func (s *Server) stepRollouts(ctx context.Context, tx *store.Tx, deps []v1alpha1.ModelDeployment, clusters []v1alpha1.Cluster) (bool, error) {
	now := s.clock.Now()
	moved := false
	for i := range deps {
		d := &deps[i]
		if d.Status.ResolvedVersion == "" {
			continue
		}
		selected, err := placement.Select(d.Spec.ClusterSelectors, clusters)
		if err != nil {
			continue // placement reports it
		}
		in := rolloutClusters(d, selected, clusters)
		target := v1alpha1.RolloutVersion{Version: d.Status.ResolvedVersion, Digest: d.Status.ResolvedDigest, SizeBytes: d.Status.ResolvedSizeBytes,
			Variants: d.Status.ResolvedVariants}
		old := d.Status.Rollout
		st, events := rollout.Step(old, target, rollout.PolicyOf(d), in, now)
		if equality.Semantic.DeepEqual(old, st) {
			continue
		}
		for _, name := range selected {
			a, ra, _ := rollout.Assign(old, name)
			b, rb, _ := rollout.Assign(st, name)
			if a.Version != b.Version || a.Digest != b.Digest || (ra == nil) != (rb == nil) {
				moved = true
				break
			}
		}
		nd := d.DeepCopy()
		nd.Status.Rollout = st
		setRolloutCondition(nd)
		o, _, err := tx.UpdateStatus(ctx, nd)
		if err != nil {
			return false, err
		}
		deps[i] = *o.(*v1alpha1.ModelDeployment)
		if rolling(&deps[i]) {
			s.kickRollouts()
		}
		for _, e := range events {
			s.logRollout(ctx, d, e)
			if e.Kind == rollout.EventGateFailed {
				if err := s.queueRolloutAlert(ctx, tx, nd, e, now); err != nil {
					return false, err
				}
			}
		}
	}
	return moved, nil
}

// rolloutClusters is what the rollout controller needs of each selected cluster: its labels,
// whether it is a canary, when the hub last heard from it, and its row's report.
func rolloutClusters(d *v1alpha1.ModelDeployment, selected []string, clusters []v1alpha1.Cluster) []rollout.Cluster {
	byName := make(map[string]*v1alpha1.Cluster, len(clusters))
	for i := range clusters {
		byName[clusters[i].Name] = &clusters[i]
	}
	rows := make(map[string]*v1alpha1.ClusterDeploymentStatus, len(d.Status.Clusters))
	for i := range d.Status.Clusters {
		rows[d.Status.Clusters[i].Cluster] = &d.Status.Clusters[i]
	}
	var canary labels.Selector
	if c := d.Spec.Rollout.Canary; c != nil && c.Selector != nil {
		if sel, err := metav1.LabelSelectorAsSelector(c.Selector); err == nil {
			canary = sel
		}
	}
	out := make([]rollout.Cluster, 0, len(selected))
	for _, name := range selected {
		c := byName[name]
		rc := rollout.Cluster{Name: name, Labels: c.Labels}
		if canary != nil {
			rc.Canary = canary.Matches(labels.Set(c.Labels))
		}
		if ls := c.Status.Link.LastSeen; ls != nil {
			rc.LastSeen = ls.Time
		}
		if r := rows[name]; r != nil {
			rc.Active, rc.Phase, rc.Error, rc.Health, rc.Drift = r.ActiveVersion, r.Phase, r.Error, r.Health, r.Drift
		}
		out = append(out, rc)
	}
	return out
}

// setRolloutCondition sets d's RolloutFailed condition from its rollout state.
func setRolloutCondition(d *v1alpha1.ModelDeployment) {
	st := d.Status.Rollout
	if st == nil {
		return
	}
	c := metav1.Condition{Type: v1alpha1.ConditionRolloutFailed, ObservedGeneration: d.Generation,
		Status: metav1.ConditionFalse, Reason: string(st.Phase), Message: truncate(st.Message, 1024)}
	if st.Phase == v1alpha1.RolloutFailed {
		c.Status, c.Reason = metav1.ConditionTrue, "GateFailed"
		if strings.Contains(st.Message, "aborted") {
			c.Reason = "Aborted"
		}
	}
	if c.Message == "" {
		c.Message = string(st.Phase)
	}
	meta.SetStatusCondition(&d.Status.Conditions, c)
}

// logRollout logs one thing a rollout did.
func (s *Server) logRollout(ctx context.Context, d *v1alpha1.ModelDeployment, e rollout.Event) {
	level := slog.LevelInfo
	switch e.Kind {
	case rollout.EventGateFailed, rollout.EventRolledBack:
		level = slog.LevelWarn
	case rollout.EventSucceeded:
		if e.Wave == 0 {
			level = slog.LevelDebug // the first version, or strategy All: no rollout to speak of
		}
	}
	args := []any{"deployment", d.Name, "version", e.Version, "event", string(e.Kind)}
	if e.Wave > 0 {
		args = append(args, "wave", e.Wave)
	}
	if e.Cluster != "" {
		args = append(args, "cluster", e.Cluster)
	}
	if e.Reason != "" {
		args = append(args, "reason", e.Reason)
	}
	s.log.Log(ctx, level, "rollout", args...)
}

// queueRolloutAlert queues, for every alert webhook, the alert of a failed rollout gate.
func (s *Server) queueRolloutAlert(ctx context.Context, tx *store.Tx, d *v1alpha1.ModelDeployment, e rollout.Event, now time.Time) error {
	if len(s.cfg.AlertWebhooks) == 0 {
		return nil
	}
	labels := map[string]string{"alertname": AlertRolloutFailed, "deployment": d.Name, "model": d.Spec.Model.Name,
		"version": e.Version, "severity": alertSeverity}
	annotations := map[string]string{
		"summary":     fmt.Sprintf("Rollout of %s %s stopped (deployment %s)", d.Spec.Model.Name, e.Version, d.Name),
		"description": e.Reason,
	}
	group := map[string]string{"alertname": AlertRolloutFailed, "deployment": d.Name}
	var generator string
	if base := strings.TrimSuffix(s.cfg.ExternalURL, "/"); base != "" {
		generator = base + v1alpha1.APIPath + "/" + v1alpha1.PluralModelDeployments + "/" + url.PathEscape(d.Name)
	}
	m := WebhookMessage{
		Version: "4", GroupKey: groupKey(group), Status: AlertFiring, Receiver: AlertReceiver,
		GroupLabels: group, CommonLabels: labels, CommonAnnotations: annotations, ExternalURL: s.cfg.ExternalURL,
		Alerts: []WebhookAlert{{Status: AlertFiring, Labels: labels, Annotations: annotations, StartsAt: now.UTC(),
			GeneratorURL: generator, Fingerprint: fingerprint(labels)}},
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode alert: %w", err)
	}
	for _, u := range s.cfg.AlertWebhooks {
		if err := tx.EnqueueAlert(ctx, store.QueuedAlert{URL: u, Fingerprint: m.Alerts[0].Fingerprint, Status: m.Status, Payload: b}); err != nil {
			return err
		}
	}
	return nil
}

// rolloutResolution is placement's view of d's rollout: each cluster's version now. While
// the resolved version's rollout has not started, or is refused (its gate failed before),
// every cluster keeps what the last rollout gives it.
func rolloutResolution(d *v1alpha1.ModelDeployment) placement.Resolution {
	r := placement.ResolutionFromStatus(d)
	if st := d.Status.Rollout; st != nil && st.Target.Version != "" {
		r.Cluster = func(name string) (placement.ClusterVersion, bool) { return clusterVersion(st, name) }
	}
	return r
}

func clusterVersion(st *v1alpha1.RolloutStatus, name string) (placement.ClusterVersion, bool) {
	v, rb, ok := rollout.Assign(st, name)
	if !ok {
		return placement.ClusterVersion{}, false
	}
	return placement.ClusterVersion{Version: v.Version, Digest: v.Digest, SizeBytes: v.SizeBytes, Rollback: rb, Variants: v.Variants}, true
}

// rowVersion is the version d's rollout gives cluster, or the resolved version.
func rowVersion(d *v1alpha1.ModelDeployment, cluster string) string {
	if st := d.Status.Rollout; st != nil {
		if v, _, ok := rollout.Assign(st, cluster); ok && v.Version != "" {
			return v.Version
		}
	}
	return d.Status.ResolvedVersion
}

// watchRollouts moves rollouts on as time passes and agents report, until ctx ends. It
// holds a timer only while a rollout is under way, so that an idle hub's clock has none.
func (s *Server) watchRollouts(ctx context.Context, every time.Duration) {
	for {
		busy, err := s.AdvanceRollouts(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "advance rollouts", "err", err)
		}
		if !busy && err == nil {
			select {
			case <-ctx.Done():
				return
			case <-s.rolloutKick:
			}
			continue
		}
		// While a rollout runs, reports kick the controller at most every rolloutSpacing: a
		// wave of reports arriving in many group commits costs a few runs, not one each.
		t := s.clock.NewTimer(min(every, rolloutSpacing))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		if every > rolloutSpacing {
			t = s.clock.NewTimer(every - rolloutSpacing)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C():
			case <-s.rolloutKick:
				t.Stop()
			}
		}
	}
}

// rolloutSpacing is the least time between two runs of the rollout controller while a
// rollout runs.
const rolloutSpacing = 250 * time.Millisecond

// kickRollouts asks the rollout watcher to look now.
func (s *Server) kickRollouts() {
	select {
	case s.rolloutKick <- struct{}{}:
	default:
	}
}

// AdvanceRollouts runs the rollout controller of every deployment with a rollout under way
// once, and rewrites the desired states of the clusters whose version it changed. It reports
// whether a rollout is still under way. The hub calls it every Config.RolloutInterval while
// one is, and after changes and agents' reports.
func (s *Server) AdvanceRollouts(ctx context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	objs, _, err := s.db.List(ctx, v1alpha1.KindModelDeployment, nil)
	if err != nil {
		return false, err
	}
	busy := false
	for _, o := range objs {
		busy = busy || rolling(o.(*v1alpha1.ModelDeployment))
	}
	if !busy {
		return false, nil
	}
	busy = false
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		dobjs, err := tx.List(ctx, v1alpha1.KindModelDeployment, nil)
		if err != nil {
			return err
		}
		var deps []v1alpha1.ModelDeployment
		for _, o := range dobjs {
			if d := o.(*v1alpha1.ModelDeployment); rolling(d) {
				deps = append(deps, *d)
			}
		}
		cobjs, err := tx.List(ctx, v1alpha1.KindCluster, nil)
		if err != nil {
			return err
		}
		clusters := make([]v1alpha1.Cluster, len(cobjs))
		for i, o := range cobjs {
			clusters[i] = *o.(*v1alpha1.Cluster)
		}
		moved, err := s.stepRollouts(ctx, tx, deps, clusters)
		if err != nil {
			return err
		}
		busy = false
		for i := range deps {
			busy = busy || rolling(&deps[i])
		}
		if !moved {
			return nil
		}
		return s.reconcile(ctx, tx)
	})
	return busy, err
}
