package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/zoo"
)

// rolloutSpec is a Canary deployment of model "cls" at version to the edge tier: waves of
// at most 3 clusters, region by region, a short bake and silence for a test.
func rolloutSpec(version string) string {
	return deployment("cls", "cls", version, "tier: edge", `  rollout:
    strategy: Canary
    maxUnavailable: 3
    waveOrder: region
    bakeTime: 2s
    silentAfter: 8s
    progressDeadline: 90s
`)
}

// watchRollout polls the hub's view of deployment cls until done says so, and returns the
// most clusters it saw switching at once and the waves it saw.
func watchRollout(t *testing.T, h *hub, limit time.Duration, done func(*v1alpha1.RolloutStatus) bool) (maxUpdating int, waves int32) {
	t.Helper()
	testenv.WaitFor(t, limit, "rollout of cls", func() bool {
		st := hubDeployment(t, h, "cls").Status.Rollout
		if st == nil {
			return false
		}
		n := 0
		for _, e := range st.Clusters {
			if e.State == v1alpha1.RolloutClusterUpdating {
				n++
			}
		}
		maxUpdating, waves = max(maxUpdating, n), max(waves, st.Wave)
		return done(st)
	})
	return maxUpdating, waves
}

// TestCanaryRolloutFleet runs a hub and ten agents behind simulated links, two of them
// partitioned: a good version reaches the connected ones wave by wave, never more than a
// wave's size switching at once, and a partitioned one that returns gets it; a version that
// fails to load stops at its canary, which is rolled back while no other cluster ever gets
// it; the last partitioned cluster returns after the failure and gets the good version.
func TestCanaryRolloutFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub and ten agents for about a minute")
	}
	h := startHub(t, "--offline-after", "5s")
	tok := joinToken(t, h, "1h")
	var agents []*agentProc
	for i := range 10 {
		a := newAgent(t, h, fmt.Sprintf("ship-%02d", i), fmt.Sprintf("tier=edge,region=r%d", i%2), tok)
		a.start()
		agents = append(agents, a)
	}
	m, onnx, err := zoo.Get("mlp")
	if err != nil {
		t.Fatal(err)
	}
	push := func(version string, model []byte) {
		t.Helper()
		dir := filepath.Join(t.TempDir(), version)
		os.MkdirAll(dir, 0o755)
		if err := os.WriteFile(filepath.Join(dir, m.File), model, 0o644); err != nil {
			t.Fatal(err)
		}
		h.mustRun("model", "push", dir, "--name", "cls", "--version", version)
	}
	waitOn := func(v string, as ...*agentProc) {
		t.Helper()
		for _, a := range as {
			testenv.WaitFor(t, 60*time.Second, a.name+" serving "+v, func() bool {
				s := a.status()
				return s.active("cls") == v && s.errorOf("cls") == ""
			})
		}
	}
	push("1.0.0", onnx)
	applyYAML(t, h, rolloutSpec("1.0.0"))
	waitOn("1.0.0", agents...)

	// Two clusters drop off; a good version rolls out to the others wave by wave.
	away1, away2 := agents[8], agents[9]
	away1.link.Partition(true)
	away2.link.Partition(true)
	push("1.1.0", onnx)
	applyYAML(t, h, rolloutSpec("1.1.0"))
	maxUpd, waves := watchRollout(t, h, 120*time.Second, func(st *v1alpha1.RolloutStatus) bool {
		return st.Target.Version == "1.1.0" && st.Phase == v1alpha1.RolloutSucceeded
	})
	t.Logf("1.1.0: %d waves, at most %d clusters switching at once", waves, maxUpd)
	if maxUpd > 3 {
		t.Errorf("%d clusters switching at once, maxUnavailable is 3", maxUpd)
	}
	// Canary, then region r0 and r1 in waves of at most three: at least four waves.
	if waves < 4 {
		t.Errorf("%d waves for 8 clusters in waves of 3 after a canary, region by region", waves)
	}
	st := hubDeployment(t, h, "cls").Status.Rollout
	if st.Skipped != 2 {
		t.Errorf("skipped %d clusters, want the 2 partitioned", st.Skipped)
	}
	waitOn("1.1.0", agents[:8]...)
	for _, a := range []*agentProc{away1, away2} {
		if v := a.status().active("cls"); v != "1.0.0" {
			t.Fatalf("partitioned %s serves %s", a.name, v)
		}
	}
	// One returns and gets the promoted version.
	away1.link.Partition(false)
	waitOn("1.1.0", away1)

	// What a cluster serves reaches the hub as the health the gates compare.
	var c0 v1alpha1.Cluster
	if err := json.Unmarshal([]byte(h.mustRun("get", "cluster", agents[0].name, "-o", "json")), &c0); err != nil || c0.Status.Endpoints == nil {
		t.Fatalf("cluster %s: %v %+v", agents[0].name, err, c0.Status.Endpoints)
	}
	for _, b := range imageRequests(t, 0, 30*50, 1) {
		resp, err := http.Post(c0.Status.Endpoints.REST+"/v2/models/cls/infer", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("infer: %s", resp.Status)
		}
	}
	testenv.WaitFor(t, 30*time.Second, "the hub's row of "+agents[0].name+" counts its requests", func() bool {
		for _, r := range hubDeployment(t, h, "cls").Status.Clusters {
			if r.Cluster == agents[0].name && r.Health != nil && r.Health.Version == "1.1.0" && r.Health.Requests >= 30 {
				t.Logf("%s health: %+v", r.Cluster, *r.Health)
				return r.Health.Errors == 0 && r.Health.P99Micros > 0
			}
		}
		return false
	})

	// A version that does not load stops at its canary and is rolled back.
	push("1.2.0", []byte("this is not an ONNX model"))
	applyYAML(t, h, rolloutSpec("1.2.0"))
	seen := map[string]bool{}
	watchRollout(t, h, 90*time.Second, func(st *v1alpha1.RolloutStatus) bool {
		for _, a := range agents[:9] {
			if a.status().active("cls") == "1.2.0" {
				seen[a.name] = true
			}
		}
		return st.Target.Version == "1.2.0" && st.Phase == v1alpha1.RolloutFailed
	})
	d := hubDeployment(t, h, "cls")
	c := meta.FindStatusCondition(d.Status.Conditions, v1alpha1.ConditionRolloutFailed)
	if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "wave 1") {
		t.Fatalf("RolloutFailed condition: %+v", c)
	}
	t.Logf("1.2.0: %s; clusters that served it: %v", c.Message, seen)
	if len(seen) > 1 {
		t.Errorf("the bad version reached %d clusters, more than its canary: %v", len(seen), seen)
	}
	rolled := 0
	for _, e := range d.Status.Rollout.Clusters {
		if e.State == v1alpha1.RolloutClusterRolledBack {
			rolled++
			if e.RollbackReason == "" {
				t.Errorf("%s rolled back without a reason", e.Cluster)
			}
		}
	}
	if rolled != 1 {
		t.Errorf("%d clusters rolled back, want the canary alone", rolled)
	}
	waitOn("1.1.0", agents[:9]...)
	// The cluster away through it all returns and gets the good version, not the bad one.
	away2.link.Partition(false)
	waitOn("1.1.0", away2)
	for _, a := range agents {
		if s := a.status(); s.active("cls") != "1.1.0" {
			t.Errorf("%s ends on %s", a.name, s.active("cls"))
		}
	}
	out := h.mustRun("rollout", "status", "cls")
	if !strings.Contains(out, "rollout:  Failed") || !strings.Contains(out, "RolledBack") {
		t.Errorf("rollout status:\n%s", out)
	}
}
