package kube

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/hub/hubtest"
	"outpost.dev/outpost/internal/versions"
)

// TestRegistryResolve resolves constraints against a real hub's registry.
func TestRegistryResolve(t *testing.T) {
	h := hubtest.New(t)
	src := t.TempDir()
	descs := map[string]string{}
	for i, v := range []string{"1.0.0", "1.2.0", "2.0.0", "1.3.0-rc.1"} {
		dir := filepath.Join(src, v)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "model.onnx"), []byte(strings.Repeat("w", 100+i)), 0o644)
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{}`), 0o644)
		descs[v] = h.Push(dir, "m", v).Digest.String()
	}
	host := strings.TrimPrefix(hubtest.URL, "http://")
	r := &Registry{Host: host, PlainHTTP: true, Client: &orasauth.Client{Client: h.Client,
		Credential: orasauth.StaticCredential(host, orasauth.Credential{Username: "outpost", Password: h.Admin})}}
	tests := []struct {
		constraint string
		want       string
		size       int64
	}{
		{"^1", "1.2.0", 101 + 2},
		{"1.0.0", "1.0.0", 100 + 2},
		{">=1", "2.0.0", 102 + 2},
		{"1.3.0-rc.1", "1.3.0-rc.1", 103 + 2},
	}
	for _, tt := range tests {
		got, err := r.Resolve(t.Context(), "m", tt.constraint)
		if err != nil {
			t.Fatalf("%s: %v", tt.constraint, err)
		}
		if want := (Resolved{Version: tt.want, Digest: descs[tt.want], Size: tt.size}); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, want %s %s size %d", tt.constraint, got, tt.want, descs[tt.want], tt.size)
		}
	}
	if _, err := r.Resolve(t.Context(), "m", "^3"); !errors.Is(err, versions.ErrNoMatch) {
		t.Errorf("^3: %v, want no match", err)
	}
	if _, err := r.Resolve(t.Context(), "absent", "^1"); err == nil {
		t.Error("a model the registry lacks resolved")
	}
	if _, err := r.Resolve(t.Context(), "Bad Name", "^1"); err == nil || !strings.Contains(err.Error(), "Bad Name") {
		t.Errorf("a bad model name: %v", err)
	}
}

// TestRegistryVariants lists a version's variants in a real hub's registry
// as the hub does: all of them, or only those signed by a trusted key.
func TestRegistryVariants(t *testing.T) {
	h := hubtest.New(t)
	ctx := t.Context()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "model.onnx"), []byte(strings.Repeat("w", 4000)), 0o644)
	desc := h.Push(dir, "m", "1.0.0")
	repo := h.Repo("models/m")
	pub, priv, err := artifact.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	push := func(name string, n int, acc float64) ocispec.Descriptor {
		t.Helper()
		src := filepath.Join(t.TempDir(), "model.onnx")
		os.WriteFile(src, []byte(strings.Repeat("q", n)), 0o644)
		d, err := artifact.PushVariant(ctx, repo, src, artifact.VariantPushOptions{Name: "m", Version: "1.0.0",
			Meta: artifact.VariantMeta{Name: name, Accuracy: &acc, PeakMemoryBytes: 3 * int64(n)}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	i8, f16 := push("int8", 1000, 0.875), push("fp16", 2000, 0.9)
	if _, err := artifact.Sign(ctx, repo, i8, "models/m:1.0.0 variant int8", priv); err != nil {
		t.Fatal(err)
	}
	host := strings.TrimPrefix(hubtest.URL, "http://")
	r := &Registry{Host: host, PlainHTTP: true, Trusted: []ed25519.PublicKey{pub}, Client: &orasauth.Client{Client: h.Client,
		Credential: orasauth.StaticCredential(host, orasauth.Credential{Username: "outpost", Password: h.Admin})}}
	res, err := r.Resolve(ctx, "m", "^1")
	if err != nil || res.Digest != desc.Digest.String() {
		t.Fatalf("resolve: %+v, %v", res, err)
	}
	all, err := r.Variants(ctx, "m", res, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Name != "fp16" || all[0].Digest != f16.Digest.String() || all[1].Name != "int8" || all[1].Digest != i8.Digest.String() ||
		all[1].Accuracy != "0.875" || all[1].PeakMemoryBytes != 3000 || all[1].SizeBytes <= 1000 {
		t.Fatalf("variants %+v", all)
	}
	signed, err := r.Variants(ctx, "m", res, true)
	if err != nil || len(signed) != 1 || signed[0].Name != "int8" {
		t.Fatalf("signed variants %+v, %v; want int8 alone", signed, err)
	}
	if _, err := r.Variants(ctx, "m", Resolved{Version: "1.0.0", Digest: "sha256:abc"}, false); err == nil {
		t.Error("a bad digest listed variants")
	}
	// What the controller records, the agent reads back whole.
	back, err := ParseVariants(FormatVariants(all))
	if err != nil || !reflect.DeepEqual(back, all) {
		t.Fatalf("read back %+v, %v", back, err)
	}
}
