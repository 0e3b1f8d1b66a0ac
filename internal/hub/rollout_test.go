package hub

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
)

// canaryYAML is a Canary deployment of resnet at version to every cluster.
func canaryYAML(version string, extra string) string {
	return fmt.Sprintf(`apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: det
%s
spec:
  model: {name: resnet, version: %q}
  clusterSelectors: [{}]
  rollout: {strategy: Canary, maxUnavailable: 2, bakeTime: 1m, silentAfter: 5m}
`, extra, version)
}

// rolloutFleet is a hub on a fake clock with joined clusters and their credentials.
type rolloutFleet struct {
	*agentEnv
	creds map[string]string
}

func newRolloutFleet(t *testing.T, names ...string) *rolloutFleet {
	e := newAgentEnv(t, nil)
	e.models.set("resnet", "2.1.0", false)
	jt := e.createToken(3600, "")
	f := &rolloutFleet{agentEnv: e, creds: map[string]string{}}
	for _, n := range names {
		f.creds[n] = e.mustJoin(jt.Token, n, nil)
	}
	return f
}

// report has cluster say it serves active (with err, if any) and was given desired.
func (f *rolloutFleet) report(cluster, desired, active, err string) {
	f.t.Helper()
	m := v1alpha1.ModelReport{Deployment: "det", Model: "resnet", DesiredVersion: desired, ActiveVersion: active,
		Phase: v1alpha1.PhaseActive, Error: err}
	r := f.postJSON("/clusters/"+cluster+"/report", f.creds[cluster],
		v1alpha1.AgentReport{Kind: v1alpha1.KindAgentReport, Cluster: cluster, Models: []v1alpha1.ModelReport{m}})
	if r.code != http.StatusOK {
		f.t.Fatalf("report = %d %s", r.code, r.body)
	}
}

// want returns the model each cluster's desired state gives deployment det.
func (f *rolloutFleet) want(cluster string) v1alpha1.DesiredModel {
	f.t.Helper()
	_, b, err := f.db.DesiredState(f.t.Context(), cluster)
	if err != nil {
		f.t.Fatal(err)
	}
	var ds v1alpha1.DesiredState
	if err := json.Unmarshal(b, &ds); err != nil {
		f.t.Fatal(err)
	}
	for _, m := range ds.Models {
		if m.Deployment == "det" {
			return m
		}
	}
	return v1alpha1.DesiredModel{}
}

func (f *rolloutFleet) versions(names ...string) string {
	var out []string
	for _, n := range names {
		out = append(out, n+"="+f.want(n).Version)
	}
	return strings.Join(out, " ")
}

func (f *rolloutFleet) advance(d time.Duration) {
	f.t.Helper()
	f.clock.Advance(d)
	if _, err := f.srv.AdvanceRollouts(f.t.Context()); err != nil {
		f.t.Fatal(err)
	}
}

// TestCanaryRollout drives a Canary rollout through the hub: a good version reaches the
// clusters wave by wave, a silent one is skipped and still gets it; a bad one stops at its
// canary, which is rolled back with a reasoned mark, and reaches no other cluster.
func TestCanaryRollout(t *testing.T) {
	all := []string{"c1", "c2", "c3", "c4"}
	f := newRolloutFleet(t, all...)
	f.applyAsAdmin("modeldeployments", "det", canaryYAML("1.0.0", ""))
	if got := f.versions(all...); got != "c1=1.0.0 c2=1.0.0 c3=1.0.0 c4=1.0.0" {
		t.Fatalf("first version: %s", got)
	}
	for _, c := range all {
		f.report(c, "1.0.0", "1.0.0", "")
	}

	// A good version: the canary first.
	f.applyAsAdmin("modeldeployments", "det", canaryYAML("1.2.0", ""))
	if got := f.versions(all...); got != "c1=1.2.0 c2=1.0.0 c3=1.0.0 c4=1.0.0" {
		t.Fatalf("canary wave: %s", got)
	}
	f.report("c1", "1.2.0", "1.2.0", "")
	f.advance(30 * time.Second)
	if got := f.versions(all...); got != "c1=1.2.0 c2=1.0.0 c3=1.0.0 c4=1.0.0" {
		t.Fatalf("a wave started before the bake time: %s", got)
	}
	// c4 falls silent; c2 and c3 keep reporting.
	for range 6 {
		f.report("c1", "1.2.0", "1.2.0", "")
		f.report("c2", "1.0.0", "1.0.0", "")
		f.report("c3", "1.0.0", "1.0.0", "")
		f.advance(time.Minute)
	}
	if got := f.versions(all...); got != "c1=1.2.0 c2=1.2.0 c3=1.2.0 c4=1.0.0" {
		t.Fatalf("second wave: %s", got)
	}
	f.report("c2", "1.2.0", "1.2.0", "")
	f.report("c3", "1.2.0", "1.2.0", "")
	f.advance(time.Second) // the hub sees both serve it: the bake counts from here
	f.advance(2 * time.Minute)
	d := f.deployment("det")
	if st := d.Status.Rollout; st == nil || st.Phase != v1alpha1.RolloutSucceeded || st.Skipped != 1 {
		t.Fatalf("rollout: %+v", st)
	}
	// The silent cluster gets the promoted version.
	if got := f.versions(all...); got != "c1=1.2.0 c2=1.2.0 c3=1.2.0 c4=1.2.0" {
		t.Fatalf("after the rollout: %s", got)
	}
	for _, c := range all {
		f.report(c, "1.2.0", "1.2.0", "")
	}

	// A bad version: it fails to load on its canary.
	f.applyAsAdmin("modeldeployments", "det", canaryYAML("2.1.0", ""))
	if got := f.versions(all...); got != "c1=2.1.0 c2=1.2.0 c3=1.2.0 c4=1.2.0" {
		t.Fatalf("canary of the bad version: %s", got)
	}
	f.report("c1", "2.1.0", "2.1.0", "serving: load model: not an ONNX model")
	f.advance(time.Second)
	d = f.deployment("det")
	c := findCondition(d.Status.Conditions, v1alpha1.ConditionRolloutFailed)
	if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "not an ONNX model") {
		t.Fatalf("RolloutFailed condition: %+v", c)
	}
	m := f.want("c1")
	if m.Version != "1.2.0" || m.Rollback == nil || !slices.Contains(m.Rollback.From, "2.1.0") || !strings.Contains(m.Rollback.Reason, "not an ONNX model") {
		t.Fatalf("rolled-back canary's desired model: %+v %+v", m, m.Rollback)
	}
	for range 10 {
		f.advance(time.Minute)
	}
	if got := f.versions(all...); got != "c1=1.2.0 c2=1.2.0 c3=1.2.0 c4=1.2.0" {
		t.Fatalf("after the rollback: %s", got)
	}
	for _, n := range []string{"c2", "c3", "c4"} {
		if f.want(n).Rollback != nil {
			t.Errorf("%s was never given the bad version but carries a rollback mark", n)
		}
	}
	for _, row := range f.deployment("det").Status.Clusters {
		if row.DesiredVersion != "1.2.0" {
			t.Errorf("row %s desires %s", row.Cluster, row.DesiredVersion)
		}
	}
}

// TestRolloutCommands checks pause, abort and promote through the deployment's spec and
// annotations.
func TestRolloutCommands(t *testing.T) {
	all := []string{"c1", "c2", "c3"}
	f := newRolloutFleet(t, all...)
	f.applyAsAdmin("modeldeployments", "det", canaryYAML("1.0.0", ""))
	for _, c := range all {
		f.report(c, "1.0.0", "1.0.0", "")
	}
	f.applyAsAdmin("modeldeployments", "det", strings.Replace(canaryYAML("1.2.0", ""), "silentAfter: 5m", "silentAfter: 5m, paused: true", 1))
	if st := f.deployment("det").Status.Rollout; st.Phase != v1alpha1.RolloutPaused || f.versions(all...) != "c1=1.0.0 c2=1.0.0 c3=1.0.0" {
		t.Fatalf("paused: %s %s", st.Phase, f.versions(all...))
	}
	f.applyAsAdmin("modeldeployments", "det", canaryYAML("1.2.0", ""))
	if got := f.versions(all...); got != "c1=1.2.0 c2=1.0.0 c3=1.0.0" {
		t.Fatalf("resumed: %s", got)
	}
	f.applyAsAdmin("modeldeployments", "det", canaryYAML("1.2.0", "  annotations: {rollout.ml.outpost.dev/promote: \"1.2.0\"}"))
	if got := f.versions(all...); got != "c1=1.2.0 c2=1.2.0 c3=1.2.0" {
		t.Fatalf("promoted: %s", got)
	}
	f.applyAsAdmin("modeldeployments", "det", canaryYAML("2.1.0", "  annotations: {rollout.ml.outpost.dev/promote: \"1.2.0\"}"))
	f.report("c1", "2.1.0", "2.1.0", "")
	f.applyAsAdmin("modeldeployments", "det", canaryYAML("2.1.0", "  annotations: {rollout.ml.outpost.dev/abort: \"2.1.0\"}"))
	d := f.deployment("det")
	if d.Status.Rollout.Phase != v1alpha1.RolloutFailed || !strings.Contains(d.Status.Rollout.Message, "aborted") {
		t.Fatalf("aborted: %+v", d.Status.Rollout)
	}
	if m := f.want("c1"); m.Version != "1.2.0" || m.Rollback == nil {
		t.Fatalf("aborted canary: %+v", m)
	}
}
