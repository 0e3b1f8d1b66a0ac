package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/artifact"
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

// servedONNX picks the file the agent serves, as serving's modelFile does.
func TestServedONNX(t *testing.T) {
	files := func(paths ...string) []artifact.File {
		var fs []artifact.File
		for _, p := range paths {
			fs = append(fs, artifact.File{Path: p})
		}
		return fs
	}
	tests := []struct {
		files   []artifact.File
		want    string
		wantErr string
	}{
		{files: files("config.json", "net.ONNX"), want: "net.ONNX"},
		{files: files("a.onnx", "sub/model.onnx"), want: "sub/model.onnx"},
		{files: files("a.onnx", "b.onnx"), wantErr: "several .onnx files and none is model.onnx"},
		{files: files("weights.bin"), wantErr: "no ONNX file"},
		{files: nil, wantErr: "no ONNX file"},
	}
	for _, tt := range tests {
		f, err := servedONNX(tt.files)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("servedONNX(%v) = %v, %v; want an error with %q", tt.files, f, err, tt.wantErr)
			}
			continue
		}
		if err != nil || f.Path != tt.want {
			t.Errorf("servedONNX(%v) = %v, %v; want %s", tt.files, f, err, tt.want)
		}
	}
}
