package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// 'model show -o json' lists a version's variants with their metadata, and a
// variant is signed and verified on its own. (Pushing, listing and pulling
// variants as a user types them: testdata/script/model_variant.txtar.)
func TestModelVariantJSONAndSignatures(t *testing.T) {
	hub := registryHub(t)
	full, int8Dir, fp16 := t.TempDir(), t.TempDir(), t.TempDir()
	writeModelFiles(t, full, "full precision weights ")
	for dir, b := range map[string]string{int8Dir: strings.Repeat("q8", 5000), fp16: strings.Repeat("h", 20000)} {
		if err := os.WriteFile(filepath.Join(dir, "model.onnx"), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	meta := filepath.Join(t.TempDir(), "int8.json")
	if err := os.WriteFile(meta, []byte(`{"name":"int8","accuracy":0.87,"operators":["DequantizeLinear","MatMulInteger"]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	mustCLI(t, append(hub, "model", "push", full, "--name", "fmnist", "--version", "1.0.0")...)
	mustCLI(t, append(hub, "model", "push", int8Dir, "--name", "fmnist", "--version", "1.0.0", "--variant-meta", meta)...)
	mustCLI(t, append(hub, "model", "push", fp16, "--name", "fmnist", "--version", "1.0.0", "--variant", "fp16")...)

	var js struct {
		Variants []struct {
			Meta struct {
				Name      string   `json:"name"`
				SizeBytes int64    `json:"sizeBytes"`
				Accuracy  *float64 `json:"accuracy"`
				Operators []string `json:"operators"`
			} `json:"meta"`
			Digest string `json:"digest"`
		} `json:"variants"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, append(hub, "model", "show", "fmnist@1.0.0", "-o", "json")...)), &js); err != nil {
		t.Fatal(err)
	}
	if len(js.Variants) != 2 || js.Variants[0].Meta.Name != "fp16" || js.Variants[0].Meta.Accuracy != nil ||
		js.Variants[1].Meta.Name != "int8" || js.Variants[1].Meta.SizeBytes != 10000 || *js.Variants[1].Meta.Accuracy != 0.87 ||
		len(js.Variants[1].Meta.Operators) != 2 || !strings.HasPrefix(js.Variants[1].Digest, "sha256:") {
		t.Errorf("show -o json variants: %+v", js.Variants)
	}

	// A variant is signed and verified on its own: the version's signature does not cover it.
	key := filepath.Join(t.TempDir(), "release")
	mustCLI(t, "keygen", "--out", key)
	if out := mustCLI(t, append(hub, "model", "sign", "fmnist@1.0.0", "--variant", "int8", "--key", key+".key")...); !strings.HasPrefix(out, "signed fmnist@1.0.0 variant int8 "+js.Variants[1].Digest) {
		t.Errorf("sign variant said %q", out)
	}
	mustCLI(t, append(hub, "model", "verify", "fmnist@1.0.0", "--variant", "int8", "--key", key+".pub")...)
	failCLI(t, "fmnist@1.0.0 variant fp16 "+js.Variants[0].Digest+": no valid signature", append(hub, "model", "verify", "fmnist@1.0.0", "--variant", "fp16", "--key", key+".pub")...)
	failCLI(t, "no valid signature", append(hub, "model", "verify", "fmnist@1.0.0", "--key", key+".pub")...)
	failCLI(t, `no such variant "int4"`, append(hub, "model", "sign", "fmnist@1.0.0", "--variant", "int4", "--key", key+".key")...)
}
