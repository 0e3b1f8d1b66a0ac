package cli

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
)

func TestRolloutOf(t *testing.T) {
	dep := func(gen, observed int64, resolved metav1.ConditionStatus, rows ...v1alpha1.ClusterDeploymentStatus) *v1alpha1.ModelDeployment {
		d := &v1alpha1.ModelDeployment{}
		d.Generation = gen
		d.Spec.Model.Name = "detector"
		d.Status.ObservedGeneration = observed
		d.Status.ResolvedVersion = "1.1.0"
		d.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionResolved, Status: resolved, Message: "no version matching ^9"}}
		d.Status.Clusters = rows
		return d
	}
	row := func(c string, p v1alpha1.ClusterPhase, v string) v1alpha1.ClusterDeploymentStatus {
		return v1alpha1.ClusterDeploymentStatus{Cluster: c, Phase: p, ActiveVersion: v}
	}
	tests := []struct {
		name    string
		d       *v1alpha1.ModelDeployment
		done    bool
		summary string
	}{
		{"all active", dep(2, 2, metav1.ConditionTrue, row("a", v1alpha1.PhaseActive, "1.1.0"), row("b", v1alpha1.PhaseActive, "1.1.0")),
			true, "detector 1.1.0: Active on 2 of 2 clusters"},
		{"one still on the old version", dep(2, 2, metav1.ConditionTrue, row("a", v1alpha1.PhaseActive, "1.1.0"), row("b", v1alpha1.PhaseActive, "1.0.0")),
			false, "detector 1.1.0: Active on 1 of 2 clusters (1 still on 1.0.0)"},
		{"fetching and pending", dep(1, 1, metav1.ConditionTrue, row("a", v1alpha1.PhaseFetching, ""), row("b", "", ""), row("c", v1alpha1.PhaseActive, "1.1.0")),
			false, "detector 1.1.0: Active on 1 of 3 clusters (1 Fetching, 1 Pending)"},
		{"no cluster yet", dep(1, 1, metav1.ConditionTrue), false, "detector 1.1.0: selects no cluster yet"},
		{"generation not observed", dep(3, 2, metav1.ConditionTrue, row("a", v1alpha1.PhaseActive, "1.1.0")),
			false, "detector: the hub has not yet resolved generation 3"},
		{"not resolved", dep(1, 1, metav1.ConditionFalse, row("a", v1alpha1.PhaseActive, "1.1.0")),
			false, "detector: not resolved: no version matching ^9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rolloutOf(tt.d)
			if r.done != tt.done || r.summary != tt.summary {
				t.Errorf("rolloutOf = %v %q, want %v %q", r.done, r.summary, tt.done, tt.summary)
			}
		})
	}
}
