package cli

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/ort"
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
		mb, err := os.ReadFile(filepath.Join(out, v+".json"))
		if err != nil {
			t.Fatal(err)
		}
		meta, err := artifact.ParseVariantMeta(mb) // what model push --variant-meta reads
		if err != nil || meta.Name != v || meta.Accuracy == nil || *meta.Accuracy < 0.8 ||
			meta.Latency.GoBatch32Ms <= 0 || len(meta.Operators) == 0 || (os.Getenv(ort.EnvLib) != "") != (meta.Latency.ONNXRuntimeBatch32Ms > 0) {
			t.Errorf("%s.json: %+v (err %v)", v, meta, err)
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
		{[]string{model, "--data", data, "--student", "0"}, "student hidden size 0"},
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

// model compress NAME@VERSION pulls the version from the hub and pushes the variants within
// the budget as its variants, which model show then lists; --dry-run pushes nothing.
func TestModelCompressVersion(t *testing.T) {
	hub := registryHub(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "fmnist")
	mustCLI(t, "fl", "example-data", data, "--shard", "1/1")
	mustCLI(t, append(hub, "model", "push", zooDir(t, "mlp"), "--name", "fmnist", "--version", "1.0.0")...)
	dry := mustCLI(t, append(hub, "model", "compress", "fmnist@1.0.0", "--data", data, "--recipes", "fp16", "--dry-run")...)
	if !strings.Contains(dry, "fp16") || strings.Contains(dry, "pushed") {
		t.Errorf("dry run said:\n%s", dry)
	}
	if show := mustCLI(t, append(hub, "model", "show", "fmnist@1.0.0")...); strings.Contains(show, "fp16") {
		t.Errorf("a dry run pushed a variant:\n%s", show)
	}
	out := mustCLI(t, append(hub, "model", "compress", "fmnist@1.0.0", "--data", data, "--recipes", "fp16,int8")...)
	for _, v := range []string{"fp16", "int8"} {
		if !regexp.MustCompile(`pushed fmnist@1.0.0 variant ` + v + ` sha256:[0-9a-f]{64}`).MatchString(out) {
			t.Errorf("compress did not say it pushed %s:\n%s", v, out)
		}
	}
	show := mustCLI(t, append(hub, "model", "show", "fmnist@1.0.0")...)
	if !regexp.MustCompile(`\n\s+int8\s+202.\d KiB\s+0\.\d+\s+`).MatchString(show) || !strings.Contains(show, "int8-static") {
		t.Errorf("model show does not list the int8 variant with its accuracy and method:\n%s", show)
	}
	pulled := filepath.Join(dir, "pulled")
	mustCLI(t, append(hub, "model", "pull", "fmnist@1.0.0", pulled, "--variant", "int8")...)
	if b, err := os.ReadFile(filepath.Join(pulled, "model.onnx")); err != nil || len(b) > 250000 {
		t.Errorf("the pulled int8 variant: %d bytes, %v", len(b), err)
	}
	failCLI(t, "fmnist@9.9.9", append(hub, "model", "compress", "fmnist@9.9.9", "--data", data, "--recipes", "fp16")...)
}
