package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/zoo"
)

// fashionTest is the embedded Fashion-MNIST test subset's images (1000).
const fashionTest = "../../internal/dataset/testdata/fashion-test-images-idx3-ubyte.gz"

// discovered is what 'oras discover --format json' prints, reduced.
type discovered struct {
	Referrers []struct {
		Digest       string `json:"digest"`
		ArtifactType string `json:"artifactType"`
	} `json:"referrers"`
}

// TestReferenceProfileOras: a reference profile pushed with the model is an
// ordinary OCI referrer: the oras CLI discovers it, and its blob is the
// profile.
func TestReferenceProfileOras(t *testing.T) {
	oras := testenv.PeerEnv(t, "OUTPOST_ORAS", "the oras CLI")
	h := startHub(t)
	m, b, err := zoo.Get("mlp")
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, m.File), b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := h.mustRun("model", "push", src, "--name", "fashion", "--version", "1.0.0", "--reference", fashionTest)
	if !strings.Contains(out, "with its reference profile (1000 samples, 21 features)") {
		t.Fatalf("push: %s", out)
	}
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
	discover := func() discovered {
		t.Helper()
		var d discovered
		raw := orasRun("discover", h.addr+"/models/fashion:1.0.0", "--artifact-type", artifact.ArtifactTypeDriftProfile, "--format", "json")
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("oras discover: %v\n%s", err, raw)
		}
		return d
	}
	d := discover()
	if len(d.Referrers) != 1 || d.Referrers[0].ArtifactType != artifact.ArtifactTypeDriftProfile {
		t.Fatalf("oras discover: %+v", d)
	}
	var man struct {
		Layers []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		} `json:"layers"`
	}
	raw := orasRun("manifest", "fetch", h.addr+"/models/fashion@"+d.Referrers[0].Digest)
	if err := json.Unmarshal(raw, &man); err != nil || len(man.Layers) != 1 || man.Layers[0].MediaType != artifact.ArtifactTypeDriftProfile {
		t.Fatalf("profile manifest: %v\n%s", err, raw)
	}
	blob := filepath.Join(t.TempDir(), "profile.json")
	orasRun("blob", "fetch", h.addr+"/models/fashion@"+man.Layers[0].Digest, "--output", blob)
	pb, err := os.ReadFile(blob)
	if err != nil {
		t.Fatal(err)
	}
	p, err := drift.DecodeProfile(pb)
	if err != nil || p.Samples() != 1000 {
		t.Fatalf("profile from oras: %v", err)
	}

	// Another profile replaces it only when asked; oras sees one either way.
	ref := filepath.Join(t.TempDir(), "ref-images-idx3-ubyte.gz")
	if err := os.WriteFile(ref, mustRead(t, "../../internal/dataset/testdata/fashion-train-images-idx3-ubyte.gz"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := h.run("drift", "profile", "fashion@1.0.0", ref); err == nil || !strings.Contains(out, "pass --replace") {
		t.Fatalf("a second profile without --replace: %v\n%s", err, out)
	}
	h.mustRun("drift", "profile", "fashion@1.0.0", ref, "--replace")
	if again := discover(); len(again.Referrers) != 1 || again.Referrers[0].Digest == d.Referrers[0].Digest {
		t.Fatalf("after --replace: %+v", again)
	}
	if show := h.mustRun("model", "show", "fashion@1.0.0"); !regexp.MustCompile(`Samples:\s+6000\n`).MatchString(show) {
		t.Fatalf("show after --replace:\n%s", show)
	}

	// Offline, no hub: a data set against itself does not drift.
	out = h.mustRun("drift", "compare", fashionTest, fashionTest, "-o", "json")
	var c struct {
		Drifted  bool              `json:"drifted"`
		Features []json.RawMessage `json:"features"`
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.Drifted || len(c.Features) != 784 {
		t.Fatalf("compare: %v drifted %v, %d features", err, c.Drifted, len(c.Features))
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
