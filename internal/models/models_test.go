package models

import (
	"context"
	"crypto/ed25519"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/registry"
	"outpost.dev/outpost/internal/store"
)

// testHub serves a real registry over loopback HTTP, with CheckTag as the
// hub sets it, and returns it with its address.
func testHub(t *testing.T) (*registry.Registry, string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg, err := registry.New(ctx, registry.Options{Root: filepath.Join(dir, "oci"), DB: db.SQL(), CheckTag: CheckTag})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return reg, u.Host
}

func pushVersion(t *testing.T, host, name, version, content string) (*remote.Repository, ocispec.Descriptor) {
	t.Helper()
	repo, err := remote.NewRepository(host + "/" + RepoPrefix + name)
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	src := filepath.Join(t.TempDir(), "model.onnx")
	os.WriteFile(src, []byte(content), 0o644)
	desc, err := artifact.Push(context.Background(), repo, src, artifact.PushOptions{Name: name, Version: version})
	if err != nil {
		t.Fatalf("push %s@%s: %v", name, version, err)
	}
	return repo, desc
}

func TestResolveModel(t *testing.T) {
	ctx := context.Background()
	reg, host := testHub(t)
	pub, priv, _ := artifact.GenerateKey()
	_, otherPriv, _ := artifact.GenerateKey()
	repo, d100 := pushVersion(t, host, "det", "1.0.0", "one")
	_, d110 := pushVersion(t, host, "det", "1.1.0", "one-one")
	_, d200 := pushVersion(t, host, "det", "2.0.0", "two")
	if _, err := artifact.Sign(ctx, repo, d100, "models/det:1.0.0", priv); err != nil {
		t.Fatal(err)
	}
	// 1.1.0 is signed, but by a key the hub does not trust.
	if _, err := artifact.Sign(ctx, repo, d110, "models/det:1.1.0", otherPriv); err != nil {
		t.Fatal(err)
	}

	x := NewIndex(reg, []ed25519.PublicKey{pub})
	tests := []struct {
		name, model, constraint string
		signed                  bool
		want                    ocispec.Descriptor
		wantErr                 string
	}{
		{"highest in range", "det", "^1.0", false, d110, ""},
		{"exact", "det", "2.0.0", false, d200, ""},
		{"any", "det", ">=1.0.0", false, d200, ""},
		{"signed only skips untrusted and unsigned", "det", ">=1.0.0", true, d100, ""},
		{"no match", "det", "3.x", false, ocispec.Descriptor{}, "no version matching"},
		{"nothing signed in range", "det", "2.x", true, ocispec.Descriptor{}, "no version matching \"2.x\" has a valid signature"},
		{"unknown model", "nope", "1.0.0", false, ocispec.Descriptor{}, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := x.ResolveModel(ctx, tt.model, tt.constraint, tt.signed)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != tt.want.Digest.String() || got.Size <= tt.want.Size {
				t.Errorf("got %+v, want digest %s and a size above the manifest's", got, tt.want.Digest)
			}
		})
	}

	// With no trusted keys, nothing counts as signed.
	none := NewIndex(reg, nil)
	if _, err := none.ResolveModel(ctx, "det", "1.0.0", true); err == nil {
		t.Fatal("resolved a signed-only version with no trusted keys")
	}
}

func TestCheckTag(t *testing.T) {
	a := ocispec.Descriptor{Digest: "sha256:aaaa"}
	b := ocispec.Descriptor{Digest: "sha256:bbbb"}
	tests := []struct {
		name, repo, tag string
		old, new        ocispec.Descriptor
		wantErr         string
	}{
		{"new version", "models/x", "1.0.0", ocispec.Descriptor{}, a, ""},
		{"same content again", "models/x", "1.0.0", a, a, ""},
		{"moving a version", "models/x", "1.0.0", a, b, "already exists with different content"},
		{"not semver", "models/x", "latest", ocispec.Descriptor{}, a, "not a semver version"},
		{"v prefix", "models/x", "v1.0.0", ocispec.Descriptor{}, a, "not a semver version"},
		{"other repositories are free", "conformance/test", "latest", a, b, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckTag(context.Background(), tt.repo, tt.tag, tt.old, tt.new, nil)
			if (err != nil) != (tt.wantErr != "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestAffects(t *testing.T) {
	tests := []struct {
		name string
		ev   registry.Event
		want bool
	}{
		{"version tagged", registry.Event{Repo: "models/x", Tag: "1.0.0"}, true},
		{"version deleted", registry.Event{Repo: "models/x", Deleted: true}, true},
		{"signature attached", registry.Event{Repo: "models/x", ArtifactType: artifact.ArtifactTypeSignature}, true},
		{"chunk index attached", registry.Event{Repo: "models/x", ArtifactType: artifact.ArtifactTypeChunkIndex}, false},
		{"untagged manifest", registry.Event{Repo: "models/x", Digest: "sha256:aa"}, false},
		{"another repository", registry.Event{Repo: "conformance/x", Tag: "1.0.0"}, false},
	}
	for _, tt := range tests {
		if got := Affects(tt.ev); got != tt.want {
			t.Errorf("%s: Affects = %v, want %v", tt.name, got, tt.want)
		}
	}
}
