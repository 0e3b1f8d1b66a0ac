package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"outpost.dev/outpost/internal/testenv"
)

// TestOrasRoundTrip pushes, pulls, lists and attaches with the oras CLI against the registry.
func TestOrasRoundTrip(t *testing.T) {
	oras := testenv.PeerEnv(t, "OUTPOST_ORAS", "the oras CLI binary")
	const token = "oras-token"
	e := newEnv(t, Options{Authorize: passwordAuth(token, false)})
	u, err := url.Parse(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	run := func(dir string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		full := append(append([]string{}, args...), "--plain-http", "-u", "x", "--password-stdin")
		cmd := exec.CommandContext(ctx, oras, full...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "HOME="+home, "DOCKER_CONFIG="+filepath.Join(home, ".docker"))
		cmd.Stdin = strings.NewReader(token)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("oras %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
		}
		return string(out)
	}
	src, dst := t.TempDir(), t.TempDir()
	files := map[string][]byte{
		"model.onnx":  randBytes(t, 3<<20+17),
		"config.json": []byte(`{"labels":["cat","dog"]}`),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ref := u.Host + "/models/demo:1.0.0"
	run(src, "push", "--artifact-type", "application/vnd.outpost.test.model", ref,
		"model.onnx:application/octet-stream", "config.json:application/json")
	run(dst, "pull", "-o", dst, ref)
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dst, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("pulled %s differs (%v)", name, err)
		}
	}
	if tags := run(src, "repo", "tags", u.Host+"/models/demo"); strings.TrimSpace(tags) != "1.0.0" {
		t.Errorf("repo tags: %q", tags)
	}
	if err := os.WriteFile(filepath.Join(src, "sig.json"), []byte(`{"sig":"abc"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	run(src, "attach", "--artifact-type", "application/vnd.outpost.signature.v1+json", ref, "sig.json:application/vnd.dsse.envelope.v1+json")
	out := run(src, "discover", "--format", "json", "--artifact-type", "application/vnd.outpost.signature.v1+json", ref)
	var disc struct {
		Referrers []struct {
			Digest       digest.Digest `json:"digest"`
			ArtifactType string        `json:"artifactType"`
		} `json:"referrers"`
	}
	if err := json.Unmarshal([]byte(out), &disc); err != nil {
		t.Fatalf("discover output %q: %v", out, err)
	}
	if len(disc.Referrers) != 1 || disc.Referrers[0].ArtifactType != "application/vnd.outpost.signature.v1+json" {
		t.Fatalf("discover: %s", out)
	}
	ctx := context.Background()
	desc, err := e.reg.Resolve(ctx, "models/demo", "1.0.0")
	if err != nil || desc.ArtifactType != "application/vnd.outpost.test.model" {
		t.Fatalf("Resolve: %+v %v", desc, err)
	}
	refs, err := e.reg.Referrers(ctx, "models/demo", desc.Digest, "application/vnd.outpost.signature.v1+json")
	if err != nil || len(refs) != 1 || refs[0].Digest != disc.Referrers[0].Digest {
		t.Fatalf("Referrers: %+v %v", refs, err)
	}
}
