package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/testenv"
)

// kill9 kills the hub with SIGKILL mid-whatever: no chance to clean up.
func (h *hub) kill9() {
	h.cmd.Process.Signal(syscall.SIGKILL)
	h.cmd.Wait()
}

// restart starts the hub again on its data directory and address.
func (h *hub) restart() {
	h.t.Helper()
	ready := filepath.Join(h.t.TempDir(), "ready")
	h.cmd = exec.Command(outpostBin, "hub", "serve", "--data", h.dir, "--ready-file", ready)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	if err := h.cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	testenv.WaitFor(h.t, 30*time.Second, "hub restarted", func() bool {
		b, err := os.ReadFile(ready)
		return err == nil && string(b) == h.addr
	})
}

// federatedJob reads a FederatedJob through the CLI.
func federatedJob(t *testing.T, h *hub, name string) v1alpha1.FederatedJob {
	t.Helper()
	var j v1alpha1.FederatedJob
	if err := json.Unmarshal([]byte(h.mustRun("get", "federatedjob", name, "-o", "json")), &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// TestFederatedHubKill9 kills a real hub with SIGKILL while a federated job's round is under
// way, and starts it again: the job resumes from its last stored step (the round goes on, or
// is abandoned at its timeout and run again) and ends with one model version per round, no
// round twice.
func TestFederatedHubKill9(t *testing.T) {
	h := startHub(t)
	model := filepath.Join(t.TempDir(), "initial")
	h.mustRun("model", "example", model)
	h.mustRun("model", "push", model, "--name", "fmnist", "--version", "1.0.0")
	tok := joinToken(t, h, "1h")
	var agents []*agentProc
	for i, name := range []string{"site-a", "site-b", "site-c"} {
		data := filepath.Join(t.TempDir(), "data")
		h.mustRun("fl", "example-data", filepath.Join(data, "fmnist"), "--shard", fmt.Sprintf("%d/3", i+1))
		a := newAgent(t, h, name, "fl=on", tok, "--pipeline-data", data)
		a.start()
		agents = append(agents, a)
	}
	const rounds = 4
	applyYAML(t, h, fmt.Sprintf(`apiVersion: ml.outpost.dev/v1alpha1
kind: FederatedJob
metadata: {name: fmnist-fl}
spec:
  model: {name: fmnist, version: 1.0.0}
  clusterSelectors: [{matchLabels: {fl: "on"}}]
  data: {path: fmnist}
  rounds: %d
  clients: {min: 3, roundTimeout: 15s}
  training: {epochs: 1, batchSize: 32, learningRate: "0.05"}
`, rounds))
	// Kill the hub once round 2 is under way (round 1's model is out, round 2's assignments
	// too), start it again, and again in round 3.
	for _, after := range []int32{1, 2} {
		testenv.WaitFor(t, 2*time.Minute, fmt.Sprintf("round %d under way", after+1), func() bool {
			j := federatedJob(t, h, "fmnist-fl")
			return j.Status.Round >= after && j.Status.Phase == v1alpha1.FederatedRunning
		})
		h.kill9()
		h.restart()
	}
	var j v1alpha1.FederatedJob
	testenv.WaitFor(t, 3*time.Minute, "the job ends", func() bool {
		j = federatedJob(t, h, "fmnist-fl")
		return j.Status.Phase.Finished()
	})
	if j.Status.Phase != v1alpha1.FederatedSucceeded || j.Status.Round != rounds || len(j.Status.Rounds) != rounds {
		t.Fatalf("job %s at round %d with %d rounds: %s", j.Status.Phase, j.Status.Round, len(j.Status.Rounds), j.Status.Message)
	}
	for i, r := range j.Status.Rounds {
		if int(r.Round) != i+1 || r.Participants != 3 || r.Version != v1alpha1.RoundVersion(i+1) {
			t.Errorf("round row %d: %+v", i, r)
		}
	}
	// One version per round, each with its lineage.
	list := h.mustRun("model", "list")
	if !regexp.MustCompile(fmt.Sprintf(`(?m)^fmnist-fl +%d +%s`, rounds, regexp.QuoteMeta(v1alpha1.RoundVersion(rounds)))).MatchString(list) {
		t.Errorf("model list, want fmnist-fl with %d versions, the latest %s:\n%s", rounds, v1alpha1.RoundVersion(rounds), list)
	}
	lineage := h.mustRun("model", "lineage", "fmnist-fl@"+v1alpha1.RoundVersion(rounds))
	if strings.Count(lineage, "produced by:  federatedjob/fmnist-fl") != rounds {
		t.Errorf("lineage of the last round's model:\n%s", lineage)
	}
	for _, a := range agents {
		if a.status().outboxRecords() != 0 {
			t.Errorf("agent %s still holds outbox records", a.name)
		}
	}
}
