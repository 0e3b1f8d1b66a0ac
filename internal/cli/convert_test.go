package cli

import (
	"os"
	"path/filepath"
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
