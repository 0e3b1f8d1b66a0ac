package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/serving"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/train"
)

func TestRequestFromArray(t *testing.T) {
	meta := func(shape ...int) *serving.ModelMetadata {
		return &serving.ModelMetadata{Name: "m", Inputs: []serving.TensorMetadata{{Name: "x", Datatype: "FP32", Shape: shape}}}
	}
	tests := []struct {
		name, data string
		meta       *serving.ModelMetadata
		want       string // the request, or the error
	}{
		{"nested batch", `[[1,2],[3,4],[5,6]]`, meta(-1, 2), `{"inputs":[{"data":[1,2,3,4,5,6],"datatype":"FP32","name":"x","shape":[3,2]}]}`},
		{"one sample", `[1,2]`, meta(-1, 2), `{"inputs":[{"data":[1,2],"datatype":"FP32","name":"x","shape":[1,2]}]}`},
		{"flat batch", `[1,2,3,4]`, meta(-1, 2), `{"inputs":[{"data":[1,2,3,4],"datatype":"FP32","name":"x","shape":[2,2]}]}`},
		{"flat image", `[1,2,3,4,5,6]`, meta(-1, 1, 2, 3), `{"inputs":[{"data":[1,2,3,4,5,6],"datatype":"FP32","name":"x","shape":[1,1,2,3]}]}`},
		{"static shape", `[9007199254740993]`, &serving.ModelMetadata{Inputs: []serving.TensorMetadata{{Name: "i", Datatype: "INT64", Shape: []int{1}}}},
			`{"inputs":[{"data":[9007199254740993],"datatype":"INT64","name":"i","shape":[1]}]}`},
		{"count does not fit", `[1,2,3]`, meta(-1, 2), "3 values for input \"x\" of shape [-1 2]: the count does not fit the shape"},
		{"ragged", `[[1,2],[3]]`, meta(-1, 2), "ragged array"},
		{"two inputs", `[1]`, &serving.ModelMetadata{Name: "m", Inputs: make([]serving.TensorMetadata, 2)}, "model m has 2 inputs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := requestFromArray([]byte(tt.data), tt.meta)
			if err != nil {
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %v, want %q", err, tt.want)
				}
				return
			}
			if string(got) != tt.want {
				t.Errorf("request %s\nwant    %s", got, tt.want)
			}
		})
	}
}

// TestInferCommand serves a small MLP exported by internal/train with the
// Go runtime and runs 'outpost infer' against it.
func TestInferCommand(t *testing.T) {
	m := train.NewMLP([]int{4, 8, 3}, 3)
	b, err := m.MarshalONNX("tiny")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "blob")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := serving.New(serving.Config{Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	srv.Sync(context.Background(), []serving.Model{{Deployment: "tiny", Model: "tiny-mlp", Version: "0.1.0", Digest: "sha256:1",
		Files: map[string]string{"model.onnx": path}}})
	testenv.WaitFor(t, 30*time.Second, "the model loaded", srv.Ready)
	x := []float32{0.1, 0.9, 0.3, 0.5, 1, 0, 0, 0.2}
	p := m.Predict(x)
	argmax := func(row []float32) int {
		best := 0
		for i, v := range row {
			if v > row[best] {
				best = i
			}
		}
		return best
	}
	arrayFile := filepath.Join(dir, "x.json")
	if err := os.WriteFile(arrayFile, []byte(`[[0.1,0.9,0.3,0.5],[1,0,0,0.2]]`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runCLI(t, "infer", "tiny", "--input", arrayFile, "--server", ts.URL)
	if code != 0 {
		t.Fatalf("infer = %d: %s", code, errOut)
	}
	for i := range 2 {
		if want := fmt.Sprintf("[%d]  argmax %d", i, argmax(p[3*i:3*i+3])); !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasPrefix(out, "Server:  "+ts.URL+"\nModel:   tiny\nVersion: 0.1.0") || !strings.Contains(out, "Output probabilities (FP32 [2 3])") {
		t.Errorf("output:\n%s", out)
	}

	reqFile := filepath.Join(dir, "req.json")
	if err := os.WriteFile(reqFile, []byte(`{"id":"q","inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[0.1,0.9,0.3,0.5]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, "infer", "tiny-mlp", "--input", reqFile, "--server", ts.URL, "--version", "0.1.0", "-o", "json")
	var r serving.InferResponse
	var probs []float32
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || r.ID != "q" || json.Unmarshal(r.Outputs[0].Data, &probs) != nil || len(probs) != 3 {
		t.Fatalf("infer -o json = %d %s %s", code, out, errOut)
	}

	_, errOut, code = runCLI(t, "infer", "nope", "--input", reqFile, "--server", ts.URL)
	if code == 0 || !strings.Contains(errOut, ts.URL+`: 404 Not Found: unknown model "nope"`) {
		t.Errorf("unknown model: %d %q", code, errOut)
	}
	_, errOut, code = runCLI(t, "infer", "tiny", "--input", reqFile, "--server", "http://127.0.0.1:1")
	if code == 0 || !strings.Contains(errOut, "no inference endpoint answers at http://127.0.0.1:1: ") {
		t.Errorf("no server: %d %q", code, errOut)
	}
}
