package artifact_test

import (
	"crypto/ed25519"
	"errors"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/registry/remote"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/models"
	"outpost.dev/outpost/internal/registry"
	"outpost.dev/outpost/internal/store"
)

// uploads counts the bytes clients send the registry in blob uploads.
type uploads struct {
	next  http.Handler
	bytes atomic.Int64
}

func (u *uploads) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.Contains(r.URL.Path, "/blobs/uploads") && r.Body != nil {
		r.Body = countingBody{r.Body, &u.bytes}
	}
	u.next.ServeHTTP(w, r)
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// testRegistry serves the hub's registry with the model tag policy and returns a function
// opening its repositories, and the upload counter.
func testRegistry(t *testing.T) (func(name string) *remote.Repository, *uploads) {
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
	up := &uploads{next: reg}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	return func(name string) *remote.Repository {
		repo, err := remote.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		repo.PlainHTTP = true
		return repo
	}, up
}

// edgeVersion pushes a model produced by a pipeline run on ship-1 into target.
func edgeVersion(t *testing.T, target oras.Target, version string, seed uint64) string {
	t.Helper()
	src := t.TempDir()
	r := rand.New(rand.NewPCG(seed, seed))
	weights := make([]byte, 3<<20)
	for i := range weights {
		weights[i] = byte(r.Uint32())
	}
	for name, b := range map[string][]byte{"model.onnx": weights, "labels.json": []byte(`["a","b"]`)} {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := artifact.Push(t.Context(), target, src, artifact.PushOptions{
		Profile: []byte(`{"profile":"of the data it was made for"}`),
		Name:    "fmnist", Version: version, Parent: "fmnist@1.0.0", ProducedBy: artifact.ProducedByPipelineRun("retrain", "retrain-7"),
		Metrics: map[string]string{"accuracy": "0.91", "loss": "0.27"},
		Annotations: map[string]string{artifact.AnnotationDataset: "sha256:" + strings.Repeat("d", 64), artifact.AnnotationCluster: "ship-1",
			artifact.AnnotationPipeline: "retrain", artifact.AnnotationRun: "retrain-7"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func TestPromote(t *testing.T) {
	ctx := t.Context()
	repo, up := testRegistry(t)
	edge, fleet := repo("edge/ship-1/fmnist"), repo("models/fmnist")
	src := edgeVersion(t, edge, "1.0.0", 1)
	before := up.bytes.Load()
	if before < 3<<20 {
		t.Fatalf("the counter saw %d bytes of the edge version's upload", before)
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := artifact.PromoteOptions{Name: "fmnist", Version: "2.0.0", Parent: "edge/ship-1/fmnist@1.0.0", From: "edge/ship-1/fmnist",
		Key: key, SubjectName: "models/fmnist:2.0.0", Created: time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)}
	p, err := artifact.Promote(ctx, edge, "1.0.0", fleet, opts)
	if err != nil {
		t.Fatal(err)
	}
	if p.Existed || p.Files != 2 || p.Copied != 0 || !p.Signed {
		t.Errorf("promotion %+v", p)
	}
	// Mounted, not uploaded: the files' 3 MiB never crossed the wire again.
	if sent := up.bytes.Load() - before; sent > 64<<10 {
		t.Errorf("promotion uploaded %d bytes", sent)
	}
	info, err := artifact.Inspect(ctx, fleet, "2.0.0", []ed25519.PublicKey{key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	srcInfo, err := artifact.Inspect(ctx, edge, "1.0.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantLineage := artifact.Lineage{Parent: "edge/ship-1/fmnist@1.0.0", ProducedBy: "promote", Dataset: "sha256:" + strings.Repeat("d", 64),
		Cluster: "ship-1", Pipeline: "retrain", Run: "retrain-7"}
	if info.Name != "fmnist" || info.Version != "2.0.0" || info.Lineage != wantLineage ||
		!maps.Equal(info.Metrics, srcInfo.Metrics) || !info.HasChunkIndex || !info.Signed() || !info.Created.Equal(opts.Created) {
		t.Errorf("promoted %+v", info)
	}
	for i, f := range info.Files {
		if f != srcInfo.Files[i] {
			t.Errorf("file %d: %+v, want %+v", i, f, srcInfo.Files[i])
		}
	}
	mb, err := content.FetchAll(ctx, fleet, p.Descriptor)
	if err != nil {
		t.Fatal(err)
	}
	m, err := artifact.ParseManifest(mb)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{artifact.AnnotationDataset: "sha256:" + strings.Repeat("d", 64), artifact.AnnotationCluster: "ship-1",
		artifact.AnnotationPipeline: "retrain", artifact.AnnotationRun: "retrain-7"} {
		if m.Annotations[k] != want {
			t.Errorf("annotation %s = %q, want %q", k, m.Annotations[k], want)
		}
	}
	// It carries the edge version's reference profile: clusters monitor it
	// against the data it was made for.
	if _, pb, err := artifact.LatestProfile(ctx, fleet, p.Descriptor); err != nil || string(pb) != `{"profile":"of the data it was made for"}` {
		t.Errorf("promoted version's profile: %q, %v", pb, err)
	}
	// The promoted version pulls as any other, every byte checked.
	dir := t.TempDir()
	if _, err := artifact.Pull(ctx, fleet, "2.0.0", dir, artifact.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"model.onnx", "labels.json"} {
		a, _ := os.ReadFile(filepath.Join(src, f))
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if string(a) != string(b) {
			t.Errorf("%s differs", f)
		}
	}

	// Again: the same version, nothing to do.
	again, err := artifact.Promote(ctx, edge, "1.0.0", fleet, opts)
	if err != nil || !again.Existed || again.Descriptor.Digest != p.Descriptor.Digest || again.Signed {
		t.Errorf("promote again = %+v, %v", again, err)
	}
	// Another edge version to the same fleet version: refused.
	edgeVersion(t, edge, "1.1.0", 2)
	other := opts
	other.Parent = "edge/ship-1/fmnist@1.1.0"
	_, err = artifact.Promote(ctx, edge, "1.1.0", fleet, other)
	var exists *artifact.VersionExistsError
	if !errors.As(err, &exists) || exists.Digest != p.Descriptor.Digest {
		t.Errorf("promote other content to 2.0.0 = %v", err)
	}
	// The same files from another edge version are another lineage: refused too.
	_, err = artifact.Promote(ctx, edge, "1.0.0", fleet, artifact.PromoteOptions{Name: "fmnist", Version: "2.0.0", Parent: "edge/ship-1/fmnist@9.9.9"})
	if !errors.Is(err, artifact.ErrVersionExists) {
		t.Errorf("promote with another parent = %v", err)
	}
	for _, bad := range []artifact.PromoteOptions{
		{Name: "Bad", Version: "1.0.0", Parent: "x"},
		{Name: "fmnist", Version: "latest", Parent: "x"},
		{Name: "fmnist", Version: "3.0.0"},
		{Name: "fmnist", Version: "3.0.0", Parent: "x", Annotations: map[string]string{artifact.AnnotationProducedBy: "me"}},
	} {
		if _, err := artifact.Promote(ctx, edge, "1.0.0", fleet, bad); err == nil {
			t.Errorf("promote %+v succeeded", bad)
		}
	}
	if _, err := fleet.Resolve(ctx, "3.0.0"); err == nil {
		t.Error("a refused promotion left a version")
	}
}

// A source without a chunk index (copied without its referrers) and a destination that
// cannot mount: the files are copied and the index computed, the same as Push's.
func TestPromoteComputesChunkIndex(t *testing.T) {
	ctx := t.Context()
	withIndex := memory.New()
	edgeVersion(t, withIndex, "1.0.0", 3)
	bare := memory.New()
	if _, err := oras.Copy(ctx, withIndex, "1.0.0", bare, "1.0.0", oras.DefaultCopyOptions); err != nil {
		t.Fatal(err)
	}
	srcDesc, err := bare.Resolve(ctx, "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := artifact.FetchChunkIndex(ctx, bare, srcDesc); !errors.Is(err, artifact.ErrNoChunkIndex) {
		t.Fatalf("the copy has a chunk index: %v", err)
	}
	dst := memory.New()
	p, err := artifact.Promote(ctx, bare, "1.0.0", dst, artifact.PromoteOptions{Name: "fmnist", Version: "1.0.0", Parent: "edge/ship-1/fmnist@1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	if p.Copied != 2 {
		t.Errorf("copied %d files, want 2", p.Copied)
	}
	got, err := artifact.FetchChunkIndex(ctx, dst, p.Descriptor)
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := withIndex.Resolve(ctx, "1.0.0")
	want, err := artifact.FetchChunkIndex(ctx, withIndex, orig)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Files) != len(want.Files) || got.Params != want.Params {
		t.Fatalf("computed index %+v, want %+v", got, want)
	}
	for i := range got.Files {
		if got.Files[i].Digest != want.Files[i].Digest || len(got.Files[i].Chunks) != len(want.Files[i].Chunks) {
			t.Errorf("file %d: %d chunks, want %d", i, len(got.Files[i].Chunks), len(want.Files[i].Chunks))
		}
	}
}
