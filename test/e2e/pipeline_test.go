package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/zoo"
)

// retrainPipeline fine-tunes the model a deployment serves on the
// cluster's own data and, only if it does better there than the served
// version, registers and deploys it.
const retrainPipeline = `apiVersion: ml.outpost.dev/v1alpha1
kind: Pipeline
metadata: {name: retrain}
spec:
  clusterSelectors: [{matchLabels: {tier: edge}}]
  steps:
  - {name: data, type: dataset, params: {split: "0.8", seed: "1"}}
  - {name: base, type: evaluate, inputs: {data: steps.data.outputs.test}, params: {deployment: fashion}}
  - name: tune
    type: finetune
    inputs: {data: steps.data.outputs.train}
    params: {deployment: fashion, epochs: "5", lastLayers: "2"}
    resources: {cpu: "1", memory: 512Mi}
  - {name: eval, type: evaluate, inputs: {data: steps.data.outputs.test, model: steps.tune.outputs.model}}
  - name: register
    type: register
    when: steps.eval.outputs.accuracy > steps.base.outputs.accuracy
    inputs: {model: steps.tune.outputs.model}
    params: {model: fashion}
  - {name: deploy, type: deploy, inputs: {version: steps.register.outputs.version}, params: {deployment: fashion}}
`

// writeDarkData writes the cluster's own labelled data: the embedded
// Fashion-MNIST subset, darker (pixels times 0.5), as Debian ships the
// files, so that a model fine-tuned on it does better on it than the one
// served.
func writeDarkData(t *testing.T, dir string) {
	t.Helper()
	train, test, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, magic uint32, dims []int, data []byte) {
		var b bytes.Buffer
		binary.Write(&b, binary.BigEndian, magic)
		for _, d := range dims {
			binary.Write(&b, binary.BigEndian, uint32(d))
		}
		b.Write(data)
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []struct {
		prefix string
		set    *dataset.Set
	}{{"train", train}, {"t10k", test}} {
		dark := make([]byte, len(s.set.Images))
		for i, p := range s.set.Images {
			dark[i] = p / 2
		}
		write(s.prefix+"-images-idx3-ubyte", 0x803, []int{s.set.Len(), s.set.Rows, s.set.Cols}, dark)
		write(s.prefix+"-labels-idx1-ubyte", 0x801, []int{s.set.Len()}, s.set.Labels)
	}
}

// pipelineRun reads a PipelineRun from the hub; ok is false while the hub has none.
func pipelineRun(t *testing.T, h *hub, name string) (v1alpha1.PipelineRun, bool) {
	t.Helper()
	out, err := h.run("get", "pipelinerun", name, "-o", "json")
	var r v1alpha1.PipelineRun
	if err != nil || json.Unmarshal([]byte(out), &r) != nil {
		return r, false
	}
	return r, true
}

func waitFashion(t *testing.T, a *agentProc, v string) {
	t.Helper()
	testenv.WaitFor(t, 60*time.Second, a.name+" serving fashion "+v, func() bool { return a.status().active("fashion") == v })
}

func localRun(t *testing.T, a *agentProc, name string) string {
	t.Helper()
	out, _ := exec.Command(outpostBin, "pipeline", "describe", name, "--dir", a.dir).CombinedOutput()
	return string(out)
}

// TestPipelineOffline: a cluster cut off from the hub fine-tunes the model
// it serves on its own data, survives a kill -9 in the middle of training
// (finished steps are not run again, training resumes from its last
// epoch's checkpoint), deploys the new version because it evaluates
// better, and, when the link returns, the version and the run reach the
// hub once each, with the version's lineage. Promoted, it becomes the
// fleet's version. The hub runs the pipeline on demand too.
func TestPipelineOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub and an agent that trains")
	}
	h := startHub(t)
	m, b, err := zoo.Get("mlp")
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, m.File), b, 0o644); err != nil {
		t.Fatal(err)
	}
	h.mustRun("model", "push", src, "--name", "fashion", "--version", "1.0.0")
	a := newAgent(t, h, "ship-1", "tier=edge", joinToken(t, h, "1h"))
	data := filepath.Join(t.TempDir(), "data")
	writeDarkData(t, data)
	a.extra = append(a.extra, "--pipeline-data", data)
	a.start()
	applyYAML(t, h, deployment("fashion", "fashion", ">=1.0.0", "tier: edge", ""))
	waitFashion(t, a, "1.0.0")
	applyYAML(t, h, retrainPipeline)
	pipelineFile := filepath.Join(t.TempDir(), "retrain.yaml")
	os.WriteFile(pipelineFile, []byte(retrainPipeline), 0o644)

	// Cut off, an operator at the cluster runs the pipeline: the agent runs it.
	a.link.Partition(true)
	cli := exec.Command(outpostBin, "pipeline", "run", "-f", pipelineFile, "--dir", a.dir, "--name", "retrain-local-1")
	var cliOut testenv.Buffer
	cli.Stdout, cli.Stderr = &cliOut, &cliOut
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	// kill -9 the agent once the fine-tune saved its first epoch.
	testenv.WaitFor(t, 120*time.Second, "the fine-tune's first epoch", func() bool {
		out, _ := exec.Command(outpostBin, "pipeline", "logs", "retrain-local-1", "tune", "--dir", a.dir).Output()
		return strings.Contains(string(out), "epoch 1/5")
	})
	a.kill()
	cli.Process.Kill()
	cli.Wait()
	a.start() // still cut off
	testenv.WaitFor(t, 180*time.Second, "the run finished, offline", func() bool {
		return regexp.MustCompile(`(?m)^Phase:\s+Succeeded`).MatchString(localRun(t, a, "retrain-local-1"))
	})
	desc := localRun(t, a, "retrain-local-1")
	logs, _ := exec.Command(outpostBin, "pipeline", "logs", "retrain-local-1", "tune", "--dir", a.dir).Output()
	if !regexp.MustCompile(`resuming from the checkpoint of epoch [1-4] of 5`).Match(logs) {
		t.Errorf("the fine-tune did not resume from its checkpoint:\n%s", logs)
	}
	for _, step := range []string{"data", "base"} {
		if !regexp.MustCompile(`(?m)^\s*` + step + `\s+Succeeded\s+1\b`).MatchString(desc) {
			t.Errorf("step %s ran again after the restart:\n%s", step, desc)
		}
	}
	edgeVersion := a.status().active("fashion")
	if !strings.HasPrefix(edgeVersion, "1.0.1-edge.") {
		t.Fatalf("active version after the run: %q, want the edge version\n%s", edgeVersion, desc)
	}
	if _, ok := pipelineRun(t, h, "retrain-local-1"); ok {
		t.Fatal("the hub knows of the run while the cluster is cut off")
	}

	// The link returns: the run and the version reach the hub, once.
	a.link.Partition(false)
	testenv.WaitFor(t, 120*time.Second, "the hub has the run with the version uploaded", func() bool {
		r, ok := pipelineRun(t, h, "retrain-local-1")
		return ok && r.Status.Phase == v1alpha1.RunSucceeded && len(r.Status.Models) == 1 && r.Status.Models[0].Uploaded
	})
	r, _ := pipelineRun(t, h, "retrain-local-1")
	if r.Spec.Cluster != "ship-1" || r.Spec.Trigger != v1alpha1.TriggeredLocal || r.Status.Models[0].Version != edgeVersion {
		t.Errorf("hub's run: %+v", r)
	}
	if n := strings.Count(a.log.String(), "uploaded a model produced here"); n != 1 {
		t.Errorf("the version was uploaded %d times", n)
	}
	ref := "edge/ship-1/fashion@" + edgeVersion
	lineage := h.mustRun("model", "lineage", ref)
	for _, want := range []string{"fashion@1.0.0", "retrain-local-1", "retrain", "ship-1", "accuracy"} {
		if !strings.Contains(lineage, want) {
			t.Errorf("lineage lacks %q:\n%s", want, lineage)
		}
	}
	// The cluster's credential writes its own edge repository only.
	cred, err := os.ReadFile(filepath.Join(a.dir, "credential"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(mustRead(t, h.caFile()))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, repo := range []string{"models/fashion", "edge/ship-2/fashion"} {
		req, _ := http.NewRequest(http.MethodPost, h.url()+"/v2/"+repo+"/blobs/uploads/", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(cred)))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("ship-1's credential starting an upload to %s: %s, want 403", repo, resp.Status)
		}
	}

	// Promoted, it is the fleet's 1.1.0: the cluster fetches it (it holds its bytes already).
	h.mustRun("model", "promote", ref, "--to", "fashion@1.1.0")
	waitFashion(t, a, "1.1.0")

	// The hub asks for a run on demand.
	out := h.mustRun("pipeline", "run", "retrain", "--cluster", "ship-1", "--wait", "--timeout", "5m")
	if !strings.Contains(out, "Succeeded") {
		t.Errorf("pipeline run --cluster --wait:\n%s", out)
	}
	if out := h.mustRun("get", "pipelines"); !regexp.MustCompile(`retrain\s+6\b`).MatchString(out) {
		t.Errorf("get pipelines:\n%s", out)
	}
}
