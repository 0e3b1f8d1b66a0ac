package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/hubclient"
)

// failedRollout marks d's rollout of its resolved version failed.
func failedRollout(d *v1alpha1.ModelDeployment) *v1alpha1.ModelDeployment {
	d.Status.Rollout = &v1alpha1.RolloutStatus{Phase: v1alpha1.RolloutFailed, Target: v1alpha1.RolloutVersion{Version: d.Status.ResolvedVersion},
		Message: "gate failed in wave 1: cluster a: serving: bad"}
	return d
}

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
		{"rollout failed", failedRollout(dep(1, 1, metav1.ConditionTrue, row("a", v1alpha1.PhaseActive, "1.0.0"))),
			false, "detector 1.1.0: rollout failed: gate failed in wave 1: cluster a: serving: bad"},
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

// TestRolloutCommands steers a Canary rollout through the CLI: status shows the waves and
// each cluster's part; pause holds it, resume and promote move it on; abort refuses when no
// rollout is under way.
func TestRolloutCommands(t *testing.T) {
	hubArgs := registryHub(t)
	url, admin := hubArgs[1], hubArgs[3]
	dir := zooDir(t, "mlp")
	mustCLI(t, append(hubArgs, "model", "push", dir, "--name", "fashion", "--version", "1.0.0")...)
	mustCLI(t, append(hubArgs, "model", "push", dir, "--name", "fashion", "--version", "1.1.0")...)
	c, err := hubclient.New(url, hubclient.Options{Token: admin})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.CreateJoinToken(t.Context(), time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"ship-1", "ship-2", "ship-3"} {
		if _, err := c.Join(t.Context(), tok.Token, name, map[string]string{"tier": "edge"}); err != nil {
			t.Fatal(err)
		}
	}
	spec := func(version string) string {
		p := filepath.Join(t.TempDir(), "d.yaml")
		os.WriteFile(p, []byte(`apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata: {name: fashion}
spec:
  model: {name: fashion, version: "`+version+`"}
  clusterSelectors: [{matchLabels: {tier: edge}}]
  rollout: {strategy: Canary, maxUnavailable: 1, bakeTime: 1h}
`), 0o644)
		return p
	}
	mustCLI(t, append(hubArgs, "apply", "-f", spec("1.0.0"))...)
	failCLI(t, "no rollout is under way: the last one is Succeeded (1.0.0)", append(hubArgs, "rollout", "abort", "fashion")...)

	mustCLI(t, append(hubArgs, "apply", "-f", spec("1.1.0"))...)
	out := mustCLI(t, append(hubArgs, "rollout", "status", "fashion")...)
	for _, want := range []string{"version:  1.1.0 (stable 1.0.0)", "rollout:  Progressing, wave 1: 0 updated", "waves:    1 cluster(s) each",
		"ship-1   1     Updating  1.1.0", "ship-2   -     Pending   1.0.0"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if out := mustCLI(t, append(hubArgs, "rollout", "pause", "fashion")...); !strings.Contains(out, "rollout of 1.1.0: Paused") {
		t.Errorf("pause:\n%s", out)
	}
	mustCLI(t, append(hubArgs, "rollout", "resume", "fashion")...)
	if out := mustCLI(t, append(hubArgs, "rollout", "promote", "fashion")...); !strings.Contains(out, "rollout of 1.1.0: Succeeded") {
		t.Errorf("promote:\n%s", out)
	}
	var d v1alpha1.ModelDeployment
	if err := c.Get(t.Context(), "modeldeployments", "fashion", &d); err != nil {
		t.Fatal(err)
	}
	for _, r := range d.Status.Clusters {
		if r.DesiredVersion != "1.1.0" {
			t.Errorf("after promote, %s desires %s", r.Cluster, r.DesiredVersion)
		}
	}
	if out := mustCLI(t, append(hubArgs, "rollout", "status", "fashion", "-o", "json")...); !strings.Contains(out, `"phase": "Succeeded"`) {
		t.Errorf("status -o json:\n%s", out)
	}
}
