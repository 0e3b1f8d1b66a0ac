package artifact_test

import (
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"oras.land/oras-go/v2/registry/remote"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/models"
	"outpost.dev/outpost/internal/registry"
	"outpost.dev/outpost/internal/store"
)

// testRepo serves the hub's registry (with the model tag policy) on a
// loopback server and opens models/<name> on it.
func testRepo(t *testing.T, name string) *remote.Repository {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(t.Context(), filepath.Join(dir, "reg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg, err := registry.New(t.Context(), registry.Options{Root: filepath.Join(dir, "oci"), DB: db.SQL(), CheckTag: models.CheckTag})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	repo, err := remote.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/models/" + name)
	if err != nil {
		t.Fatal(err)
	}
	repo.PlainHTTP = true
	return repo
}

// TestProfileRoundTripRegistry attaches, finds, fetches and replaces
// reference profiles on the hub's registry, through its referrers API.
func TestProfileRoundTripRegistry(t *testing.T) {
	ctx := t.Context()
	repo := testRepo(t, "fashion")
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "model.onnx"), []byte("not really onnx"), 0o644); err != nil {
		t.Fatal(err)
	}
	first := []byte(`{"version":1,"samples":10}`)
	t0 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	desc, err := artifact.Push(ctx, repo, src, artifact.PushOptions{Name: "fashion", Version: "1.0.0", Profile: first, Created: t0})
	if err != nil {
		t.Fatal(err)
	}
	ref, b, err := artifact.LatestProfile(ctx, repo, desc)
	if err != nil || string(b) != string(first) {
		t.Fatalf("LatestProfile = %q, %v", b, err)
	}
	if ref.Descriptor.ArtifactType != artifact.ArtifactTypeDriftProfile {
		t.Errorf("referrer artifact type %q", ref.Descriptor.ArtifactType)
	}

	// A second profile is refused without Replace and changes nothing.
	second := []byte(`{"version":1,"samples":20}`)
	_, err = artifact.PushProfile(ctx, repo, desc, second, artifact.ProfilePushOptions{Created: t0.Add(time.Hour)})
	var exists *artifact.ProfileExistsError
	if !errors.As(err, &exists) || exists.Digest != ref.Digest || !errors.Is(err, artifact.ErrProfileExists) {
		t.Fatalf("second profile: err = %v", err)
	}
	if refs, _ := artifact.Profiles(ctx, repo, desc); len(refs) != 1 {
		t.Fatalf("%d profiles after a refused push", len(refs))
	}
	// The same bytes again are a no-op.
	if d, err := artifact.PushProfile(ctx, repo, desc, first, artifact.ProfilePushOptions{}); err != nil || d.Digest != ref.Digest {
		t.Fatalf("same profile again = %s, %v", d.Digest, err)
	}

	// Replace: the new one is the only one left.
	newDesc, err := artifact.PushProfile(ctx, repo, desc, second, artifact.ProfilePushOptions{Replace: true, Created: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	refs, err := artifact.Profiles(ctx, repo, desc)
	if err != nil || len(refs) != 1 || refs[0].Digest != newDesc.Digest {
		t.Fatalf("profiles after replace = %+v, %v", refs, err)
	}
	if _, b, err := artifact.LatestProfile(ctx, repo, desc); err != nil || string(b) != string(second) {
		t.Fatalf("LatestProfile after replace = %q, %v", b, err)
	}
	if _, err := repo.Resolve(ctx, ref.Digest.String()); err == nil {
		t.Error("the replaced profile's referrer still resolves")
	}
	// The version itself did not change.
	if d, err := repo.Resolve(ctx, "1.0.0"); err != nil || d.Digest != desc.Digest {
		t.Fatalf("version moved: %v %v", d.Digest, err)
	}
	info, err := artifact.Inspect(ctx, repo, "1.0.0", nil)
	if err != nil || info.Profile == nil || info.Profile.Digest != newDesc.Digest || !info.Profile.Created.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Inspect profile = %+v, %v", info.Profile, err)
	}
}

func TestPullPaths(t *testing.T) {
	ctx := t.Context()
	repo := testRepo(t, "two")
	src := t.TempDir()
	for name, body := range map[string]string{"model.onnx": "onnx bytes", "big.bin": "other bytes"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := artifact.Push(ctx, repo, src, artifact.PushOptions{Name: "two", Version: "1.0.0"}); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	m, err := artifact.Pull(ctx, repo, "1.0.0", dst, artifact.PullOptions{Paths: []string{"model.onnx"}})
	if err != nil || len(m.Files) != 1 {
		t.Fatalf("Pull = %+v, %v", m, err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "model.onnx")); err != nil || string(b) != "onnx bytes" {
		t.Fatalf("model.onnx = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "big.bin")); !os.IsNotExist(err) {
		t.Errorf("big.bin pulled: %v", err)
	}
	if _, err := artifact.Pull(ctx, repo, "1.0.0", t.TempDir(), artifact.PullOptions{Paths: []string{"missing.onnx"}}); err == nil || !strings.Contains(err.Error(), `no file "missing.onnx"`) {
		t.Fatalf("missing path: %v", err)
	}
}
