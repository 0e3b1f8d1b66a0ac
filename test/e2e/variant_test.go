package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/testenv"
)

// TestVariantOras: a variant pushed with 'outpost model push --variant' is an
// ordinary OCI referrer of its version: the oras CLI discovers it with its
// metadata, pulls its files by digest, and still pulls the full model from
// the version's tag.
func TestVariantOras(t *testing.T) {
	oras := testenv.PeerEnv(t, "OUTPOST_ORAS", "the oras CLI")
	h := startHub(t)
	full, int8Dir := t.TempDir(), t.TempDir()
	fullBytes, int8Bytes := strings.Repeat("full precision ", 20000), strings.Repeat("q8", 20000)
	if err := os.WriteFile(filepath.Join(full, "model.onnx"), []byte(fullBytes), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(int8Dir, "model.onnx"), []byte(int8Bytes), 0o644); err != nil {
		t.Fatal(err)
	}
	meta := filepath.Join(t.TempDir(), "int8.json")
	if err := os.WriteFile(meta, []byte(`{"name":"int8","method":"dynamic-quantization","accuracy":0.87,"peakMemoryBytes":1048576}`), 0o644); err != nil {
		t.Fatal(err)
	}
	h.mustRun("model", "push", full, "--name", "fashion", "--version", "1.0.0")
	out := h.mustRun("model", "push", int8Dir, "--name", "fashion", "--version", "1.0.0", "--variant-meta", meta)
	if !strings.HasPrefix(out, "pushed fashion@1.0.0 variant int8 sha256:") {
		t.Fatalf("push variant: %s", out)
	}
	variantDigest := strings.TrimSpace(out[strings.LastIndex(out, " ")+1:])

	orasRun := func(args ...string) []byte {
		t.Helper()
		args = append(args, "--ca-file", h.caFile(), "-u", "outpost", "-p", h.token())
		out, err := exec.Command(oras, args...).Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("oras %s: %v\n%s", args[0], err, stderr)
		}
		return out
	}
	raw := orasRun("discover", h.addr+"/models/fashion:1.0.0", "--artifact-type", artifact.ArtifactTypeVariant, "--format", "json")
	var d struct {
		Referrers []struct {
			Digest       string            `json:"digest"`
			ArtifactType string            `json:"artifactType"`
			Annotations  map[string]string `json:"annotations"`
		} `json:"referrers"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("oras discover: %v\n%s", err, raw)
	}
	if len(d.Referrers) != 1 || d.Referrers[0].Digest != variantDigest || d.Referrers[0].ArtifactType != artifact.ArtifactTypeVariant {
		t.Fatalf("oras discover: %s", raw)
	}
	if ann := d.Referrers[0].Annotations; ann[artifact.AnnotationVariant] != "int8" || ann[artifact.AnnotationVariantAccuracy] != "0.87" ||
		ann[artifact.AnnotationVariantSize] != "40000" {
		t.Fatalf("oras discover annotations: %v", ann)
	}

	// The tag is the full model; the variant pulls by its digest.
	pull := func(ref string) string {
		t.Helper()
		dir := t.TempDir()
		orasRun("pull", ref, "--output", dir)
		b, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got := pull(h.addr + "/models/fashion:1.0.0"); got != fullBytes {
		t.Fatalf("oras pull of the version gave %d bytes, not the full model", len(got))
	}
	if got := pull(h.addr + "/models/fashion@" + variantDigest); got != int8Bytes {
		t.Fatalf("oras pull of the variant gave %d bytes, not the variant", len(got))
	}
}
