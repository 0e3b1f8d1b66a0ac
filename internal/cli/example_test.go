package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/fl"
	"outpost.dev/outpost/internal/zoo"
)

// TestModelExample writes each example model and an input image, and checks
// them against the zoo and the dataset they come from; the mlp and cnn are
// said to be, and are, initial models of FederatedJobs of their arch.
func TestModelExample(t *testing.T) {
	_, test, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	for name, arch := range map[string]string{"mlp": "mlp", "cnn": "cnn", "mlp-int8": ""} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "my-model")
			input := filepath.Join(t.TempDir(), "image.json")
			out, errOut, code := runCLI(t, "model", "example", dir, "--name", name, "--input", input, "--image", "7")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			_, want, err := zoo.Get(name)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("model.onnx is not the zoo's %s (err %v)", name, err)
			}
			var x []float32
			b, err := os.ReadFile(input)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &x); err != nil {
				t.Fatal(err)
			}
			img := test.Image(7)
			if len(x) != len(img) {
				t.Fatalf("input has %d values, want %d", len(x), len(img))
			}
			for i, v := range x {
				if v != float32(img[i])/255 {
					t.Fatalf("input[%d] = %v, want pixel %d/255", i, v, img[i])
				}
			}
			said := "a FederatedJob of spec.model.arch " + arch + " can start from it\n"
			if arch == "" {
				if strings.Contains(out, "FederatedJob") {
					t.Errorf("output offers %s to federated learning:\n%s", name, out)
				}
				for _, a := range []string{"mlp", "cnn"} {
					if _, _, err := fl.ReadONNX(a, got); err == nil {
						t.Errorf("%s reads as an initial model of arch %s", name, a)
					}
				}
			} else if !strings.Contains(out, said) {
				t.Errorf("output does not say %q:\n%s", said, out)
			} else if spec, _, err := fl.ReadONNX(arch, got); err != nil || spec.Arch != arch {
				t.Errorf("%s does not read as an initial model of arch %s: %v", name, arch, err)
			}
			label := dataset.FashionClasses[test.Labels[7]]
			if !strings.Contains(out, "test image 7") || !strings.Contains(out, label) {
				t.Errorf("output does not name test image 7, a %s:\n%s", label, out)
			}
		})
	}
}

func TestModelExampleRefusals(t *testing.T) {
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	taken := filepath.Join(t.TempDir(), "image.json")
	if err := os.WriteFile(taken, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown model", []string{"model", "example", filepath.Join(t.TempDir(), "m"), "--name", "resnet"}, `no example model "resnet" (there are: mlp, cnn, mlp-int8)`},
		{"folder not empty", []string{"model", "example", full}, "is not empty"},
		{"input exists", []string{"model", "example", filepath.Join(t.TempDir(), "m"), "--input", taken}, "exists"},
		{"image out of range", []string{"model", "example", filepath.Join(t.TempDir(), "m"), "--input", filepath.Join(t.TempDir(), "i.json"), "--image", "1000"}, "images 0 to 999"},
		{"no folder", []string{"model", "example"}, "accepts 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			failCLI(t, tt.want, tt.args...)
		})
	}
	if b, _ := os.ReadFile(taken); string(b) != "keep" {
		t.Errorf("an existing --input file was overwritten: %q", b)
	}
	out, _, code := runCLI(t, "model", "example", "--list")
	if code != 0 || !strings.Contains(out, "mlp-int8") || !strings.Contains(out, "TEST ACCURACY") {
		t.Errorf("--list: exit %d:\n%s", code, out)
	}
}
