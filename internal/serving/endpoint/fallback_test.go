package endpoint

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
	"outpost.dev/outpost/internal/onnx/ort"
	"outpost.dev/outpost/internal/serving"
	"outpost.dev/outpost/internal/testenv"
)

// A deployment whose runtime is auto, of a model that needs an operator
// the Go runtime lacks (Det), is served by the real ONNX Runtime of
// --onnxruntime-lib and answers right; the same model with runtime go does
// not serve, and says which operator is missing.
func TestAutoFallsBackToONNXRuntime(t *testing.T) {
	lib := os.Getenv(ort.EnvLib)
	if lib == "" {
		testenv.MissingPeer(t, ort.ErrNoLibrary.Error())
	}
	b, err := onnx.NewBuilder("det", 13).
		Input("x", onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(2), onnx.D(2)).
		Node("Det", "det", []string{"x"}, []string{"y"}).
		Output("y", onnxpb.TensorProto_FLOAT, onnx.P("N")).
		Marshal()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := Start(t.Context(), Config{REST: "127.0.0.1:0", ONNXRuntimeLib: lib,
		Serving: serving.Config{Logger: slog.New(slog.DiscardHandler)}})
	if noCgo(err) {
		t.Skip("built without cgo: no ONNX Runtime")
	}
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"model.onnx": file}
	srv.Sync(t.Context(), []serving.Model{
		{Deployment: "auto", Model: "det", Version: "1.0.0", Digest: "sha256:1", Files: files,
			Serving: v1alpha1.Serving{Runtime: v1alpha1.RuntimeAuto}},
		{Deployment: "go", Model: "det", Version: "1.0.0", Digest: "sha256:1", Files: files,
			Serving: v1alpha1.Serving{Runtime: v1alpha1.RuntimeGo}},
	})
	status := func() map[string]serving.ModelStatus {
		m := map[string]serving.ModelStatus{}
		for _, st := range srv.Status() {
			m[st.Deployment] = st
		}
		return m
	}
	testenv.WaitFor(t, 30*time.Second, "both deployments loaded or failed", func() bool {
		st := status()
		return st["auto"].State != "" && st["auto"].State != serving.StateLoading &&
			st["go"].State != "" && st["go"].State != serving.StateLoading
	})
	st := status()
	if a := st["auto"]; a.State != serving.StateReady || a.Runtime != "onnxruntime" {
		t.Fatalf("auto: %+v, want Ready on onnxruntime", a)
	}
	if g := st["go"]; g.State != serving.StateFailed || !strings.Contains(g.Error, "unsupported operators: Det (node det)") {
		t.Fatalf("go: %+v, want Failed naming Det", g)
	}

	body := `{"inputs":[{"name":"x","shape":[2,2,2],"datatype":"FP32","data":[3,1,2,4, 1,2,3,4]}]}`
	resp, err := http.Post(srv.Endpoints().REST+"/v2/models/auto/infer", "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	var r struct {
		Outputs []struct {
			Data []float64 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(answer, &r); err != nil || len(r.Outputs) != 1 || len(r.Outputs[0].Data) != 2 {
		t.Fatalf("%s: %s (%v)", resp.Status, answer, err)
	}
	if d := r.Outputs[0].Data; abs(d[0]-10) > 1e-4 || abs(d[1]+2) > 1e-4 {
		t.Errorf("determinants %v, want [10 -2]", d)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
