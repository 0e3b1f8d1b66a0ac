package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// outpost model convert writes a TensorFlow Lite file from an example
// model, as a user types it, and refuses what it cannot do without
// writing anything.
func TestModelConvert(t *testing.T) {
	dir := t.TempDir()
	if _, errOut, code := runCLI(t, "model", "example", filepath.Join(dir, "cnn"), "--name", "cnn"); code != 0 {
		t.Fatalf("model example: exit %d: %s", code, errOut)
	}
	src := filepath.Join(dir, "cnn", "model.onnx")
	out := filepath.Join(dir, "cnn.tflite")
	stdout, errOut, code := runCLI(t, "model", "convert", src, "--to", "tflite", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 8 || string(b[4:8]) != "TFL3" {
		t.Fatalf("%s is not a TensorFlow Lite file", out)
	}
	if !strings.Contains(stdout, "wrote "+out) {
		t.Errorf("stdout %q does not say what it wrote", stdout)
	}

	if _, _, code := runCLI(t, "model", "example", filepath.Join(dir, "int8"), "--name", "mlp-int8"); code != 0 {
		t.Fatal("model example mlp-int8 failed")
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"existing output", []string{src, "--to", "tflite", "-o", out}, "exists: choose a new file"},
		{"other format", []string{src, "--to", "coreml", "-o", filepath.Join(dir, "x")}, `--to "coreml": the one format is tflite`},
		{"no output", []string{src, "--to", "tflite"}, "-o OUT.tflite is required"},
		{"not ONNX", []string{out, "--to", "tflite", "-o", filepath.Join(dir, "x")}, "onnx: decoding model"},
		{"unsupported operator", []string{filepath.Join(dir, "int8", "model.onnx"), "--to", "tflite", "-o", filepath.Join(dir, "x")},
			"(MatMulInteger): operator not supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := runCLI(t, append([]string{"model", "convert"}, tc.args...)...)
			if code == 0 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q, want an error containing %q", code, errOut, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
				t.Fatal("a refused conversion wrote its output")
			}
		})
	}

	help, _, code := runCLI(t, "model", "convert", "--help")
	if code != 0 || !strings.Contains(help, "outpost model convert ./cnn/model.onnx --to tflite -o cnn.tflite") {
		t.Errorf("--help lacks the example:\n%s", help)
	}
}

// model convert NAME@VERSION pushes the TensorFlow Lite conversion as the version's variant
// (of a variant too), which model pull --variant fetches.
func TestModelConvertVersion(t *testing.T) {
	hub := registryHub(t)
	dir := t.TempDir()
	mustCLI(t, append(hub, "model", "push", zooDir(t, "cnn"), "--name", "fcnn", "--version", "1.0.0")...)
	out := mustCLI(t, append(hub, "model", "convert", "fcnn@1.0.0", "--to", "tflite")...)
	if !regexp.MustCompile(`^pushed fcnn@1.0.0 variant tflite sha256:[0-9a-f]{64}\n$`).MatchString(out) {
		t.Fatalf("convert said %q", out)
	}
	pulled := filepath.Join(dir, "tflite")
	mustCLI(t, append(hub, "model", "pull", "fcnn@1.0.0", pulled, "--variant", "tflite")...)
	b, err := os.ReadFile(filepath.Join(pulled, "model.tflite"))
	if err != nil || len(b) < 8 || string(b[4:8]) != "TFL3" {
		t.Fatalf("the pulled variant is not a TensorFlow Lite file (%d bytes, %v)", len(b), err)
	}
	data := filepath.Join(dir, "fmnist")
	mustCLI(t, "fl", "example-data", data, "--shard", "1/1")
	mustCLI(t, append(hub, "model", "compress", "fcnn@1.0.0", "--data", data, "--recipes", "int8")...)
	out = mustCLI(t, append(hub, "model", "convert", "fcnn@1.0.0", "--variant", "int8", "--to", "tflite")...)
	if !strings.Contains(out, "pushed fcnn@1.0.0 variant int8-tflite") {
		t.Fatalf("convert --variant int8 said %q", out)
	}
	failCLI(t, `no such variant "fp8"`, append(hub, "model", "convert", "fcnn@1.0.0", "--variant", "fp8", "--to", "tflite")...)
	failCLI(t, "a local file has no variants", append(hub, "model", "convert", filepath.Join(pulled, "model.tflite"), "--variant", "int8", "--to", "tflite")...)
}
