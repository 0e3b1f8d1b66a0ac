package kube

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/hub/hubtest"
)

// registryOf is a Registry reaching h's registry as its admin, trusting keys.
func registryOf(h *hubtest.Hub, keys ...ed25519.PublicKey) *Registry {
	host := strings.TrimPrefix(hubtest.URL, "http://")
	return &Registry{Host: host, PlainHTTP: true, Trusted: keys, Client: &orasauth.Client{Client: h.Client,
		Credential: orasauth.StaticCredential(host, orasauth.Credential{Username: "outpost", Password: h.Admin})}}
}

// TestRegistryResolve resolves constraints against a real hub's registry,
// as the hub does: the size is the manifest's, its config's and its files'.
func TestRegistryResolve(t *testing.T) {
	h := hubtest.New(t)
	src := t.TempDir()
	descs := map[string]ocispec.Descriptor{}
	for i, v := range []string{"1.0.0", "1.2.0", "2.0.0", "1.3.0-rc.1"} {
		dir := filepath.Join(src, v)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "model.onnx"), []byte(strings.Repeat("w", 100+i)), 0o644)
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{}`), 0o644)
		descs[v] = h.Push(dir, "m", v)
	}
	// size is what the version's manifest says it holds, with the manifest itself.
	size := func(d ocispec.Descriptor) int64 {
		b, err := content.FetchAll(t.Context(), h.Repo("models/m"), d)
		if err != nil {
			t.Fatal(err)
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		n := int64(len(b)) + m.Config.Size
		for _, l := range m.Layers {
			n += l.Size
		}
		return n
	}
	r := registryOf(h)
	for _, tt := range []struct{ constraint, want string }{
		{"^1", "1.2.0"},
		{"1.0.0", "1.0.0"},
		{">=1", "2.0.0"},
		{"1.3.0-rc.1", "1.3.0-rc.1"},
	} {
		got, err := r.Resolve(t.Context(), "m", tt.constraint, false)
		if err != nil {
			t.Fatalf("%s: %v", tt.constraint, err)
		}
		d := descs[tt.want]
		if want := (Resolved{Version: tt.want, Digest: d.Digest.String(), Size: size(d)}); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, want %+v", tt.constraint, got, want)
		}
	}
	if _, err := r.Resolve(t.Context(), "m", "^3", false); err == nil || !strings.Contains(err.Error(), "no version matching") {
		t.Errorf("^3: %v, want no match", err)
	}
	if _, err := r.Resolve(t.Context(), "absent", "^1", false); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("a model the registry lacks: %v", err)
	}
	if _, err := r.Resolve(t.Context(), "Bad Name", "^1", false); err == nil || !strings.Contains(err.Error(), "Bad Name") {
		t.Errorf("a bad model name: %v", err)
	}
}

// TestRegistrySigned resolves as the hub does where signatures are
// required: past an unsigned newer version to the signed one, with only its
// signed variants; without the requirement, the newest and all variants.
func TestRegistrySigned(t *testing.T) {
	h := hubtest.New(t)
	ctx := t.Context()
	pub, priv, err := artifact.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	repo := h.Repo("models/m")
	descs := map[string]ocispec.Descriptor{}
	for _, v := range []string{"1.0.0", "1.1.0"} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "model.onnx"), []byte(strings.Repeat("w", 4000)+v), 0o644)
		descs[v] = h.Push(dir, "m", v)
	}
	if _, err := artifact.Sign(ctx, repo, descs["1.0.0"], "models/m:1.0.0", priv); err != nil {
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
	r := registryOf(h, pub)

	got, err := r.Resolve(ctx, "m", "^1", false)
	if err != nil || got.Version != "1.1.0" || len(got.Variants) != 0 {
		t.Fatalf("unsigned allowed: %+v, %v; want 1.1.0 without variants", got, err)
	}
	got, err = r.Resolve(ctx, "m", "1.0.0", false)
	if err != nil {
		t.Fatal(err)
	}
	all := got.Variants
	if len(all) != 2 || all[0].Name != "fp16" || all[0].Digest != f16.Digest.String() || all[1].Name != "int8" || all[1].Digest != i8.Digest.String() ||
		all[1].Accuracy != "0.875" || all[1].PeakMemoryBytes != 3000 || all[1].SizeBytes <= 1000 {
		t.Fatalf("variants %+v", all)
	}
	got, err = r.Resolve(ctx, "m", "^1", true)
	if err != nil || got.Version != "1.0.0" || got.Digest != descs["1.0.0"].Digest.String() || len(got.Variants) != 1 || got.Variants[0].Name != "int8" {
		t.Fatalf("signed only: %+v, %v; want 1.0.0 with int8 alone", got, err)
	}
	if _, err := registryOf(h).Resolve(ctx, "m", "^1", true); err == nil || !strings.Contains(err.Error(), "no version matching") {
		t.Errorf("signed only, no trusted key: %v", err)
	}
	// What the controller records, the agent reads back whole.
	back, err := ParseVariants(FormatVariants(all))
	if err != nil || !reflect.DeepEqual(back, all) {
		t.Fatalf("read back %+v, %v", back, err)
	}
}
