package models

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
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

// deleteManifest deletes ref (a version or a digest) of models/name over the
// registry API, as an operator retiring a version would.
func deleteManifest(t *testing.T, host, name, ref string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodDelete, "http://"+host+"/v2/"+RepoPrefix+name+"/manifests/"+ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE %s@%s: %s", name, ref, resp.Status)
	}
}

// TestDeletedVersionsStayDeleted: a deleted version is offered nowhere, and
// names its digest forever: other content under it is refused, saying why,
// while the same manifest again restores it.
func TestDeletedVersionsStayDeleted(t *testing.T) {
	ctx := context.Background()
	reg, host := testHub(t)
	created := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	push := func(version, content string) (ocispec.Descriptor, error) {
		repo, err := remote.NewRepository(host + "/" + RepoPrefix + "gone")
		if err != nil {
			t.Fatal(err)
		}
		repo.PlainHTTP = true
		src := filepath.Join(t.TempDir(), "model.onnx")
		os.WriteFile(src, []byte(content), 0o644)
		return artifact.Push(ctx, repo, src, artifact.PushOptions{Name: "gone", Version: version, Created: created})
	}
	d100, err := push("1.0.0", "one")
	if err != nil {
		t.Fatal(err)
	}
	d110, err := push("1.1.0", "one-one")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := push("1.2.0", "one-two"); err != nil {
		t.Fatal(err)
	}
	deleteManifest(t, host, "gone", "1.0.0")              // the tag alone
	deleteManifest(t, host, "gone", d110.Digest.String()) // the manifest, and with it its tag

	x := NewIndex(reg, nil)
	for _, v := range []string{"1.0.0", "1.1.0"} {
		_, err := x.ResolveModel(ctx, "gone", v, false)
		if err == nil || !strings.Contains(err.Error(), "version "+v+" was deleted") {
			t.Errorf("resolve deleted %s: %v, want it to say the version was deleted", v, err)
		}
	}
	if got, err := x.ResolveModel(ctx, "gone", "<1.2.0", false); err == nil {
		t.Errorf("a range resolved to deleted version %s", got.Version)
	}
	if got, err := x.ResolveModel(ctx, "gone", ">=1.0.0", false); err != nil || got.Version != "1.2.0" {
		t.Errorf("resolve >=1.0.0 = %+v, %v; want 1.2.0", got, err)
	}
	tags, err := reg.Tags(ctx, RepoPrefix+"gone")
	if err != nil || strings.Join(tags, ",") != "1.2.0" {
		t.Errorf("tags %v, %v", tags, err)
	}

	for _, v := range []string{"1.0.0", "1.1.0"} {
		_, err := push(v, "other content")
		if err == nil || !strings.Contains(err.Error(), "was deleted") || !strings.Contains(err.Error(), "push it as a new version") {
			t.Errorf("push other content as deleted %s: %v", v, err)
		}
	}
	// The very same manifest restores the version.
	again, err := push("1.0.0", "one")
	if err != nil || again.Digest != d100.Digest {
		t.Fatalf("push the same manifest as deleted 1.0.0: %v %v", again.Digest, err)
	}
	if got, err := x.ResolveModel(ctx, "gone", "1.0.0", false); err != nil || got.Digest != d100.Digest.String() {
		t.Errorf("restored 1.0.0 resolves to %+v, %v", got, err)
	}
}

// annotated is a manifest descriptor with the model name and version annotations.
func annotated(name, version string) ocispec.Descriptor {
	return ocispec.Descriptor{Digest: "sha256:cccc", Annotations: map[string]string{
		artifact.AnnotationName: name, artifact.AnnotationVersion: version}}
}

// TestRetagRefused tags an existing version's manifest as another version,
// which its annotations contradict.
func TestRetagRefused(t *testing.T) {
	_, host := testHub(t)
	repo, d := pushVersion(t, host, "retag", "1.0.0", "one")
	err := repo.Tag(context.Background(), d, "2.0.0")
	if err == nil || !strings.Contains(err.Error(), "the manifest says it is version 1.0.0") {
		t.Fatalf("tagging 1.0.0 as 2.0.0: %v", err)
	}
	if _, err := repo.Resolve(context.Background(), "2.0.0"); err == nil {
		t.Fatal("the refused tag exists")
	}
}

func TestCheckTag(t *testing.T) {
	a := ocispec.Descriptor{Digest: "sha256:aaaa"}
	b := ocispec.Descriptor{Digest: "sha256:bbbb"}
	tests := []struct {
		name, repo, tag string
		old, new        ocispec.Descriptor
		deleted         digest.Digest
		wantErr         string
	}{
		{"new version", "models/x", "1.0.0", ocispec.Descriptor{}, a, "", ""},
		{"same content again", "models/x", "1.0.0", a, a, "", ""},
		{"moving a version", "models/x", "1.0.0", a, b, "", "already exists with different content"},
		{"not semver", "models/x", "latest", ocispec.Descriptor{}, a, "", "not a semver version"},
		{"v prefix", "models/x", "v1.0.0", ocispec.Descriptor{}, a, "", "not a semver version"},
		{"deleted version, other content", "models/x", "1.0.0", ocispec.Descriptor{}, b, a.Digest, "x version 1.0.0 was deleted; it named sha256:aaaa"},
		{"deleted version, same content", "models/x", "1.0.0", ocispec.Descriptor{}, a, a.Digest, ""},
		{"other repositories are free", "conformance/test", "latest", a, b, "", ""},
		{"other repositories may reuse tags", "conformance/test", "latest", ocispec.Descriptor{}, b, a.Digest, ""},
		{"version annotation agrees", "models/x", "1.0.0", ocispec.Descriptor{}, annotated("x", "1.0.0"), "", ""},
		{"version annotation disagrees", "models/x", "1.0.1", ocispec.Descriptor{}, annotated("x", "1.0.0"), "",
			`x version 1.0.1: the manifest says it is version 1.0.0 (org.opencontainers.image.version)`},
		{"name annotation disagrees", "models/x", "1.0.0", ocispec.Descriptor{}, annotated("y", "1.0.0"), "",
			`x version 1.0.0: the manifest says it is model "y" (ml.outpost.dev/name)`},
		{"other repositories may tag anything", "conformance/test", "latest", ocispec.Descriptor{}, annotated("y", "1.0.0"), "", ""},
		{"an edge version", "edge/ship-1/x", "1.0.0", ocispec.Descriptor{}, annotated("x", "1.0.0"), "", ""},
		{"an edge version is semver", "edge/ship-1/x", "latest", ocispec.Descriptor{}, a, "", "not a semver version"},
		{"an edge version does not move", "edge/ship-1/x", "1.0.0", a, b, "", "edge/ship-1/x version 1.0.0 already exists"},
		{"an edge version names its model", "edge/ship-1/x", "1.0.0", ocispec.Descriptor{}, annotated("y", "1.0.0"), "",
			`edge/ship-1/x version 1.0.0: the manifest says it is model "y"`},
		{"no model under edge/", "edge/ship-1", "1.0.0", ocispec.Descriptor{}, a, "", "holds no model"},
		{"no edge model under models/", "models/edge/ship-1/x", "1.0.0", ocispec.Descriptor{}, a, "", "holds no model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckTag(context.Background(), registry.TagChange{Repo: tt.repo, Tag: tt.tag, Old: tt.old, Deleted: tt.deleted, New: tt.new})
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
		{"variant pushed", registry.Event{Repo: "models/x", ArtifactType: artifact.ArtifactTypeVariant}, true},
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
