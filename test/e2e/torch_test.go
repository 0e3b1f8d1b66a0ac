package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/zoo/torchzoo"
)

// TestServeTorchExportedCNN does what a new user of issue 15 did: a
// Fashion-MNIST CNN built in PyTorch (conv, ReLU, AvgPool2d with padding,
// so the exporter writes a Pad, MaxPool2d, Linear) and exported with
// torch.onnx.export is pushed with 'outpost model push', deployed with the
// Go runtime, and asked through the agent's OIP v2 REST endpoint; it
// answers PyTorch's output on the same image.
func TestServeTorchExportedCNN(t *testing.T) {
	ctx := context.Background()
	if err := torchzoo.Available(ctx); err != nil {
		testenv.MissingPeer(t, err.Error()+" (scripts/debian-deps.sh installs it)")
	}
	exp, err := torchzoo.Run(ctx, "fashion-cnn", 1, filepath.Join(t.TempDir(), "export"))
	if err != nil {
		t.Fatal(err)
	}
	x, err := exp.Input()
	if err != nil {
		t.Fatal(err)
	}
	want, err := exp.Output()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "fashion-cnn")
	os.MkdirAll(src, 0o755)
	data, err := os.ReadFile(exp.Model())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "model.onnx"), data, 0o644); err != nil {
		t.Fatal(err)
	}

	h := startHub(t)
	edge := newAgent(t, h, "edge-torch", "site=torch", joinToken(t, h, "1h"))
	edge.start()
	h.mustRun("model", "push", src, "--name", "fashion-cnn", "--version", "1.0.0")
	applyYAML(t, h, deployment("fashion", "fashion-cnn", "1.0.0", "site: torch", "  serving: {runtime: go}\n"))
	testenv.WaitFor(t, 60*time.Second, "edge-torch active at 1.0.0", func() bool { return edge.status().active("fashion") == "1.0.0" })

	out, err := exec.Command(outpostBin, "agent", "status", "--data", edge.dir, "-o", "json").Output()
	var st struct {
		Endpoints *v1alpha1.ServingEndpoints `json:"endpoints"`
	}
	if err != nil || json.Unmarshal(out, &st) != nil || st.Endpoints == nil || st.Endpoints.REST == "" {
		t.Fatalf("agent status: %v\n%s", err, out)
	}
	body, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
		"name": torchzoo.InputName, "shape": x.Shape, "datatype": "FP32", "data": x.F32}}})
	url := st.Endpoints.REST + "/v2/models/fashion/infer"
	var answer []byte
	testenv.WaitFor(t, 60*time.Second, "the agent to serve the model (or say why not)", func() bool {
		if e := servingError(t, edge, "fashion"); e != "" {
			t.Fatalf("the agent cannot serve the PyTorch export: %s", e)
		}
		resp, err := http.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		answer, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK
	})
	var r struct {
		Outputs []struct {
			Name     string    `json:"name"`
			Shape    []int     `json:"shape"`
			Datatype string    `json:"datatype"`
			Data     []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(answer, &r); err != nil || len(r.Outputs) != 1 {
		t.Fatalf("answer %s: %v", answer, err)
	}
	o := r.Outputs[0]
	if o.Name != torchzoo.OutputName || fmt.Sprint(o.Shape) != fmt.Sprint(want.Shape) || o.Datatype != "FP32" {
		t.Fatalf("output %s %v %s, want %s %v FP32", o.Name, o.Shape, o.Datatype, torchzoo.OutputName, want.Shape)
	}
	d, err := torchzoo.Compare(o.Data, want.F32, 1e-3, 1e-4)
	if err != nil {
		t.Fatal(err)
	}
	if d.Bad > 0 {
		t.Errorf("the agent answers %v, PyTorch %v: %d values outside rtol 1e-3 / atol 1e-4", o.Data, want.F32, d.Bad)
	}
	testenv.WaitFor(t, 30*time.Second, "the deployment's status to say the Go runtime serves it", func() bool {
		var md v1alpha1.ModelDeployment
		s, _, err := h.runSplit("get", "modeldeployment", "fashion", "-o", "json")
		return err == nil && json.Unmarshal([]byte(s), &md) == nil && len(md.Status.Clusters) == 1 &&
			md.Status.Clusters[0].Runtime == "go"
	})
}

// servingError is why the agent cannot serve deployment, from 'outpost
// agent status -o json'; empty while it can or is still loading.
func servingError(t *testing.T, a *agentProc, deployment string) string {
	t.Helper()
	out, err := exec.Command(outpostBin, "agent", "status", "--data", a.dir, "-o", "json").Output()
	var st struct {
		Models []struct {
			Deployment   string `json:"deployment"`
			ServingError string `json:"servingError"`
		} `json:"models"`
	}
	if err != nil || json.Unmarshal(out, &st) != nil {
		t.Fatalf("agent status %s: %v\n%s", a.name, err, out)
	}
	for _, m := range st.Models {
		if m.Deployment == deployment {
			return m.ServingError
		}
	}
	return ""
}
