package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A variant is pushed beside an existing version, listed by 'model show',
// pulled by name; the version itself still pulls as the full model, and bad
// pushes are refused with an error naming what is wrong and leave nothing.
func TestModelVariantPushShowPull(t *testing.T) {
	hub := registryHub(t)
	full, int8Dir := t.TempDir(), t.TempDir()
	writeModelFiles(t, full, "full precision weights ")
	if err := os.WriteFile(filepath.Join(int8Dir, "model.onnx"), []byte(strings.Repeat("q8", 5000)), 0o644); err != nil {
		t.Fatal(err)
	}
	meta := filepath.Join(t.TempDir(), "int8.json")
	if err := os.WriteFile(meta, []byte(`{"name":"int8","method":"dynamic-quantization","params":{"per-channel":"true"},
		"accuracy":0.87,"latency":{"goBatch1Ms":0.4,"goBatch32Ms":6,"onnxruntimeBatch1Ms":0.1,"onnxruntimeBatch32Ms":1.5},
		"peakMemoryBytes":3145728,"operators":["DequantizeLinear","MatMulInteger"]}`), 0o644); err != nil {
		t.Fatal(err)
	}

	failCLI(t, `model "fmnist" has no versions`, append(hub, "model", "push", int8Dir, "--name", "fmnist", "--version", "1.0.0", "--variant", "int8")...)
	mustCLI(t, append(hub, "model", "push", full, "--name", "fmnist", "--version", "1.0.0")...)
	failCLI(t, "versions of fmnist: 1.0.0", append(hub, "model", "push", int8Dir, "--name", "fmnist", "--version", "2.0.0", "--variant", "int8")...)
	out := mustCLI(t, append(hub, "model", "push", int8Dir, "--name", "fmnist", "--version", "1.0.0", "--variant-meta", meta)...)
	if !regexp.MustCompile(`^pushed fmnist@1.0.0 variant int8 sha256:[0-9a-f]{64}\n$`).MatchString(out) {
		t.Fatalf("push variant said %q", out)
	}
	if again := mustCLI(t, append(hub, "model", "push", int8Dir, "--name", "fmnist", "--version", "1.0.0", "--variant", "int8", "--variant-meta", meta)...); again != out {
		t.Errorf("pushing the same variant again said %q, want %q", again, out)
	}
	fp16 := t.TempDir()
	if err := os.WriteFile(filepath.Join(fp16, "model.onnx"), []byte(strings.Repeat("h", 20000)), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, append(hub, "model", "push", fp16, "--name", "fmnist", "--version", "1.0.0", "--variant", "fp16")...)

	// Refused, and nothing pushed.
	failCLI(t, "already has variant int8", append(hub, "model", "push", fp16, "--name", "fmnist", "--version", "1.0.0", "--variant", "int8")...)
	failCLI(t, `variant name "INT4"`, append(hub, "model", "push", fp16, "--name", "fmnist", "--version", "1.0.0", "--variant", "INT4")...)
	failCLI(t, "--variant fp8, but --variant-meta", append(hub, "model", "push", fp16, "--name", "fmnist", "--version", "1.0.0", "--variant", "fp8", "--variant-meta", meta)...)
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"name":"int4","accuracy":1.3}`), 0o644)
	failCLI(t, "variant accuracy 1.3: want a number from 0 to 1", append(hub, "model", "push", fp16, "--name", "fmnist", "--version", "1.0.0", "--variant-meta", bad)...)
	os.WriteFile(bad, []byte(`{"name":"int4","acuracy":0.3}`), 0o644)
	failCLI(t, `unknown field "acuracy"`, append(hub, "model", "push", fp16, "--name", "fmnist", "--version", "1.0.0", "--variant-meta", bad)...)

	show := mustCLI(t, append(hub, "model", "show", "fmnist@1.0.0")...)
	for _, re := range []string{
		`Variants:\n\s+NAME\s+SIZE\s+ACCURACY\s+PEAK MEMORY\s+LATENCY GO b1/b32\s+LATENCY ORT b1/b32\s+METHOD\s+DIGEST\n`,
		`\n\s+fp16\s+19.5 KiB\s+-\s+-\s+-/-\s+-/-\s+-\s+[0-9a-f]{12}\n`,
		`\n\s+int8\s+9.8 KiB\s+0.87\s+3.0 MiB\s+0.4ms/6ms\s+0.1ms/1.5ms\s+dynamic-quantization\s+[0-9a-f]{12}\n`,
	} {
		if !regexp.MustCompile(re).MatchString(show) {
			t.Errorf("show lacks %s:\n%s", re, show)
		}
	}
	if strings.Contains(show, "int4") {
		t.Errorf("a refused variant is listed:\n%s", show)
	}
	var js struct {
		Variants []struct {
			Meta struct {
				Name      string   `json:"name"`
				SizeBytes int64    `json:"sizeBytes"`
				Operators []string `json:"operators"`
			} `json:"meta"`
		} `json:"variants"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, append(hub, "model", "show", "fmnist@1.0.0", "-o", "json")...)), &js); err != nil {
		t.Fatal(err)
	}
	if len(js.Variants) != 2 || js.Variants[1].Meta.Name != "int8" || js.Variants[1].Meta.SizeBytes != 10000 || len(js.Variants[1].Meta.Operators) != 2 {
		t.Errorf("show -o json variants: %+v", js.Variants)
	}

	pulled := t.TempDir()
	if out := mustCLI(t, append(hub, "model", "pull", "fmnist@1.0.0", pulled, "--variant", "int8")...); !strings.Contains(out, "pulled fmnist@1.0.0 variant int8 (1 file, 9.8 KiB)") {
		t.Errorf("pull variant said %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(pulled, "model.onnx")); err != nil || string(b) != strings.Repeat("q8", 5000) {
		t.Errorf("pulled variant: %v", err)
	}
	if _, err := os.Stat(filepath.Join(pulled, "labels.json")); err == nil {
		t.Error("the variant pulled the full model's labels.json")
	}
	whole := t.TempDir()
	mustCLI(t, append(hub, "model", "pull", "fmnist@1.0.0", whole)...)
	sameFiles(t, full, whole)
	failCLI(t, `no such variant "int4" (variants: [fp16 int8])`, append(hub, "model", "pull", "fmnist@1.0.0", t.TempDir(), "--variant", "int4")...)

	// A variant is signed and verified on its own: the version's signature does not cover it.
	key := filepath.Join(t.TempDir(), "release")
	mustCLI(t, "keygen", "--out", key)
	if out := mustCLI(t, append(hub, "model", "sign", "fmnist@1.0.0", "--variant", "int8", "--key", key+".key")...); !strings.HasPrefix(out, "signed fmnist@1.0.0 variant int8 sha256:") {
		t.Errorf("sign variant said %q", out)
	}
	mustCLI(t, append(hub, "model", "verify", "fmnist@1.0.0", "--variant", "int8", "--key", key+".pub")...)
	failCLI(t, "fmnist@1.0.0 variant fp16 sha256:", append(hub, "model", "verify", "fmnist@1.0.0", "--variant", "fp16", "--key", key+".pub")...)
	failCLI(t, "no valid signature", append(hub, "model", "verify", "fmnist@1.0.0", "--key", key+".pub")...)
}
