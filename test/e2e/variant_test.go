package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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

// TestVariantsPerCluster: two agents whose clusters declare different memory get, from
// one deployment, the variant of the version each can hold, and only that variant's bytes
// cross each one's link.
func TestVariantsPerCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub and two agents")
	}
	h := startHub(t)
	for name, memory := range map[string]string{"edge-small": "16Mi", "edge-big": "64Gi"} {
		applyYAML(t, h, fmt.Sprintf("apiVersion: ml.outpost.dev/v1alpha1\nkind: Cluster\nmetadata: {name: %s, labels: {tier: edge}}\nspec:\n  capacity: {memory: %s}\n", name, memory))
	}
	fullDigest, int8Digest, int8Size := pushWithInt8(t, h, "w", 7)

	tok := joinToken(t, h, "1h")
	agents := map[string]*agentProc{}
	for _, name := range []string{"edge-small", "edge-big"} {
		a := newAgent(t, h, name, "tier=edge", tok)
		a.start()
		agents[name] = a
	}
	applyYAML(t, h, deployment("w", "w", "1.0.0", "tier: edge", "  variantPolicy: {maxMemoryPercent: 25}\n"))

	activeDigest := func(a *agentProc) string {
		for _, m := range a.status().Models {
			if m.Deployment == "w" && m.ActiveVersion == "1.0.0" {
				return m.ActiveDigest
			}
		}
		return ""
	}
	for name, want := range map[string]string{"edge-small": int8Digest, "edge-big": fullDigest} {
		a := agents[name]
		testenv.WaitFor(t, 60*time.Second, name+" active at "+want, func() bool { return activeDigest(a) == want })
	}
	smallDown, bigDown := agents["edge-small"].link.Stats().Down, agents["edge-big"].link.Stats().Down
	t.Logf("edge-small fetched %d bytes (int8: %d), edge-big %d (full: %d)", smallDown, int8Size, bigDown, weightsSize)
	if smallDown > int64(int8Size)+weightsSize/4 {
		t.Errorf("edge-small: %d bytes crossed its link, more than the int8 variant (%d) and some overhead: it fetched the full model", smallDown, int8Size)
	}
	if bigDown < weightsSize {
		t.Errorf("edge-big: %d bytes crossed its link, less than the full model's %d", bigDown, weightsSize)
	}

	// The agents' reports reach the hub: each row shows the variant sent
	// and the one the agent reports active.
	var wide string
	rows := []*regexp.Regexp{regexp.MustCompile(`\bw\s+w\s+edge-big\s+1\.0\.0\s+original\s+1\.0\.0\s+[^(\s].*Active`),
		regexp.MustCompile(`\bw\s+w\s+edge-small\s+1\.0\.0\s+int8\s+1\.0\.0 \(int8\)\s.*Active`)}
	testenv.WaitFor(t, 30*time.Second, "both rows active", func() bool {
		wide = h.mustRun("get", "modeldeployment", "w", "-o", "wide")
		return rows[0].MatchString(wide) && rows[1].MatchString(wide)
	})
	d := hubDeployment(t, h, "w")
	for _, r := range d.Status.Clusters {
		if want := map[string]string{"edge-small": "int8"}[r.Cluster]; r.ActiveVariant != want {
			t.Errorf("%s: active variant %q, want %q", r.Cluster, r.ActiveVariant, want)
		}
		if r.Cluster == "edge-small" && !strings.Contains(r.VariantReason, "original needs at least its size, 8.0 MiB memory, limit 4.0 MiB (25% of 16.0 MiB)") {
			t.Errorf("edge-small's reason: %q", r.VariantReason)
		}
	}
}

// TestVariantBundle: a sneakernet bundle carries each cluster's variant, not the full model,
// and one bundle for two clusters given different variants of one version serves both.
func TestVariantBundle(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub and imports bundles into two agents")
	}
	g := &airgap{h: startHub(t), src: t.TempDir()}
	h := g.h
	applyYAML(t, h, "apiVersion: ml.outpost.dev/v1alpha1\nkind: Cluster\nmetadata: {name: sub-small, labels: {tier: air}}\nspec:\n  capacity: {memory: 16Mi}\n")
	tok := joinToken(t, h, "1h")
	small, big := g.joinOffline(t, "sub-small", tok), g.joinOffline(t, "sub-big", tok)
	v := g.push(t, 0) // 8 MiB
	int8Dir := filepath.Join(t.TempDir(), "int8")
	os.MkdirAll(int8Dir, 0o755)
	int8Bytes := make([]byte, weightsSize/4)
	rng := rand.New(rand.NewPCG(9, 9))
	for i := range int8Bytes {
		int8Bytes[i] = byte(rng.Uint32())
	}
	os.WriteFile(filepath.Join(int8Dir, "weights.bin"), int8Bytes, 0o644)
	out := h.mustRun("model", "push", int8Dir, "--name", "w", "--version", v, "--variant", "int8")
	int8Digest := strings.TrimSpace(out[strings.LastIndex(out, " ")+1:])
	applyYAML(t, h, deployment("w", "w", v, "tier: air", "  variantPolicy: {maxMemoryPercent: 25}\n"))

	usb := t.TempDir()
	alone := filepath.Join(usb, "small")
	h.mustRun("bundle", "create", "--cluster", "sub-small", "--out", alone)
	if n := dirSize(t, alone); n >= weightsSize/2 {
		t.Fatalf("sub-small's bundle carries %d bytes: more than its 2 MiB variant", n)
	}
	both := filepath.Join(usb, "both")
	h.mustRun("bundle", "create", "--cluster", "sub-small", "--cluster", "sub-big", "--out", both)
	for _, a := range []*agentProc{small, big} {
		mustOutpost(t, "bundle", "import", both, "--data", a.dir)
	}
	digestOf := func(a *agentProc) string {
		for _, m := range a.status().Models {
			if m.Deployment == "w" && m.ActiveVersion == v {
				return m.ActiveDigest
			}
		}
		return ""
	}
	if got := digestOf(small); got != int8Digest {
		t.Errorf("sub-small serves %q after import, want the int8 variant %s", got, int8Digest)
	}
	if got := digestOf(big); got == "" || got == int8Digest {
		t.Errorf("sub-big serves %q after import, want the full model", got)
	}
	checkBlobs(t, small)
	checkBlobs(t, big)
}

// pushWithInt8 pushes model name 1.0.0, weightsSize bytes, and an int8
// variant of it a quarter that size (drawn from seed; accuracy 0.9, peak
// memory 3 MiB), and returns their manifest digests and the variant's size.
func pushWithInt8(t *testing.T, h *hub, name string, seed uint64) (fullDigest, int8Digest string, int8Size int) {
	t.Helper()
	full, small := filepath.Join(t.TempDir(), "full"), filepath.Join(t.TempDir(), "int8")
	writeWeights(t, full, 0)
	int8Bytes := make([]byte, weightsSize/4)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range int8Bytes {
		int8Bytes[i] = byte(rng.Uint32())
	}
	if err := os.MkdirAll(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(small, "weights.bin"), int8Bytes, 0o644); err != nil {
		t.Fatal(err)
	}
	meta := filepath.Join(t.TempDir(), "int8.json")
	if err := os.WriteFile(meta, []byte(`{"name":"int8","method":"dynamic-quantization","accuracy":0.9,"peakMemoryBytes":3145728}`), 0o644); err != nil {
		t.Fatal(err)
	}
	lastWord := func(out string) string { return strings.TrimSpace(out[strings.LastIndex(out, " ")+1:]) }
	fullDigest = lastWord(h.mustRun("model", "push", full, "--name", name, "--version", "1.0.0"))
	int8Digest = lastWord(h.mustRun("model", "push", small, "--name", name, "--version", "1.0.0", "--variant-meta", meta))
	return fullDigest, int8Digest, len(int8Bytes)
}
