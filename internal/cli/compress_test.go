package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/compress"
	"outpost.dev/outpost/internal/onnx/interp"
)

// model compress as a user types it: an example model and example data, a
// table with the Pareto front, the variants within the budget written and
// loadable; and each bad input refused with nothing written.
func TestModelCompress(t *testing.T) {
	dir := t.TempDir()
	model, data := filepath.Join(dir, "mlp"), filepath.Join(dir, "fmnist")
	if _, errOut, code := runCLI(t, "model", "example", model); code != 0 {
		t.Fatal(errOut)
	}
	if _, errOut, code := runCLI(t, "fl", "example-data", data, "--shard", "1/1"); code != 0 {
		t.Fatal(errOut)
	}
	out := filepath.Join(dir, "variants")
	stdout, stderr, code := runCLI(t, "model", "compress", model, "--data", data, "--recipes", "fp16,int8", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"VARIANT", "full", "fp16", "int8-static", "0.501x", "*"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "[2/2] int8") || !strings.Contains(stderr, "2 variants within 1 points written") {
		t.Errorf("stderr: %s", stderr)
	}
	for _, v := range []string{"fp16", "int8"} {
		b, err := os.ReadFile(filepath.Join(out, v, "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := interp.Load(b); err != nil {
			t.Errorf("%s does not load: %v", v, err)
		}
		var c compress.Candidate
		mb, err := os.ReadFile(filepath.Join(out, v, "variant.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(mb, &c); err != nil || c.Name != v || c.Bytes != len(b) || c.Accuracy < 0.8 {
			t.Errorf("%s variant.json: %+v (err %v)", v, c, err)
		}
	}

	garbage := filepath.Join(dir, "garbage.onnx")
	os.WriteFile(garbage, []byte("not a model"), 0o644)
	refused := filepath.Join(dir, "refused")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{model}, "--data is required"},
		{[]string{model, "--data", data, "--recipes", "int8,zip"}, `unknown recipe "zip"`},
		{[]string{garbage, "--data", data}, "garbage.onnx"},
		{[]string{model, "--data", filepath.Join(dir, "nowhere")}, "nowhere"},
		{[]string{model, "--data", data, "--out", out}, "not empty"},
		{[]string{model, "--data", data, "--recipes", "int8", "--max-accuracy-drop", "0", "--out", refused}, "no variant within 0 points"},
	} {
		_, stderr, code := runCLI(t, append([]string{"model", "compress"}, tt.args...)...)
		if code == 0 || !strings.Contains(stderr, tt.want) {
			t.Errorf("compress %v: exit %d, stderr %q, want %q", tt.args, code, stderr, tt.want)
		}
	}
	if _, err := os.Stat(refused); !os.IsNotExist(err) {
		t.Errorf("a refused search wrote %s (%v)", refused, err)
	}
}
