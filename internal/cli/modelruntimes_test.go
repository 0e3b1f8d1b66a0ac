package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"testing"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// detModel writes a model folder whose model.onnx needs Det, an operator
// ONNX Runtime has and the Go runtime lacks.
func detModel(t *testing.T) string {
	t.Helper()
	b, err := onnx.NewBuilder("det", 13).
		Input("x", onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(2), onnx.D(2)).
		Node("Det", "det", []string{"x"}, []string{"y"}).
		Output("y", onnxpb.TensorProto_FLOAT, onnx.P("N")).
		Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// 'outpost model show' says which runtimes can serve a version, from the
// operators of the ONNX file an agent would serve.
func TestModelShowRuntimes(t *testing.T) {
	h := registryHub(t)
	noONNX := t.TempDir()
	os.WriteFile(filepath.Join(noONNX, "weights.bin"), []byte("not a model"), 0o644)
	for _, p := range []struct{ dir, name string }{
		{zooDir(t, "cnn"), "cnn"}, {detModel(t), "det"}, {noONNX, "weights"},
	} {
		mustCLI(t, append(h, "model", "push", p.dir, "--name", p.name, "--version", "1.0.0")...)
	}
	tests := []struct {
		ref  string
		want []string
	}{
		{"cnn@1.0.0", []string{`(?m)^Runtimes:\s+go, onnxruntime$`,
			`(?m)^Operators:\s+Conv, Flatten, Gemm, MaxPool, Relu, Softmax \(opset 13\)$`}},
		{"det@1.0.0", []string{`(?m)^Runtimes:\s+onnxruntime \(the Go runtime lacks Det\)$`,
			`(?m)^Operators:\s+Det \(opset 13\)$`}},
		{"weights", []string{`(?m)^Runtimes:\s+unknown: no ONNX file: the agent syncs the version but does not serve it$`}},
	}
	for _, tt := range tests {
		out := mustCLI(t, append(h, "model", "show", tt.ref)...)
		for _, re := range tt.want {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("model show %s lacks %s:\n%s", tt.ref, re, out)
			}
		}
	}

	out := mustCLI(t, append(h, "model", "show", "det@1.0.0", "-o", "json")...)
	var show struct {
		Serving struct {
			File      string   `json:"file"`
			Runtimes  []string `json:"runtimes"`
			GoMissing []string `json:"goMissing"`
		} `json:"serving"`
	}
	if err := json.Unmarshal([]byte(out), &show); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := struct {
		File      string   `json:"file"`
		Runtimes  []string `json:"runtimes"`
		GoMissing []string `json:"goMissing"`
	}{"model.onnx", []string{"onnxruntime"}, []string{"Det"}}
	if !reflect.DeepEqual(show.Serving, want) {
		t.Errorf("model show -o json serving %+v, want %+v", show.Serving, want)
	}
}
