package pipeline

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/errdef"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/train"
)

// pushModel pushes a small model as version v of repo into l.
func pushModel(t *testing.T, l *Layout, repo, v string) ocispec.Descriptor {
	t.Helper()
	b, err := train.NewMLP([]int{4, 3}, 1).MarshalONNX("m")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	desc, err := artifact.Push(t.Context(), l.Repository(repo), dir, artifact.PushOptions{Name: "m", Version: v, Parent: "m:1.0.0", ProducedBy: "pipelinerun/r1"})
	if err != nil {
		t.Fatal(err)
	}
	return desc
}

// The engine's layout is a valid OCI image layout: oras reads it, tags are
// REPOSITORY:VERSION, referrers (the chunk index) are found, and it all
// survives a reopen.
func TestLayoutIsOCI(t *testing.T) {
	dir := t.TempDir()
	l, err := openLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	desc := pushModel(t, l, "edge/c1/m", "1.0.1-edge.1")
	pushModel(t, l, "edge/c1/other", "0.1.0-edge.1")
	if got := l.Tags("edge/c1/m"); len(got) != 1 || got[0] != "1.0.1-edge.1" {
		t.Fatalf("tags %v", got)
	}
	info, err := artifact.Inspect(t.Context(), l.Repository("edge/c1/m"), "1.0.1-edge.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Lineage.Parent != "m:1.0.0" || info.Lineage.ProducedBy != "pipelinerun/r1" {
		t.Errorf("lineage %+v", info.Lineage)
	}
	if _, err := artifact.FetchChunkIndex(t.Context(), l.Repository("edge/c1/m"), desc); err != nil {
		t.Errorf("chunk index referrer: %v", err)
	}
	if _, err := l.Repository("edge/c1/m").Resolve(t.Context(), "0.1.0-edge.1"); !errors.Is(err, errdef.ErrNotFound) {
		t.Errorf("another repository's tag resolves: %v", err)
	}

	// oras' own OCI store reads the same folder.
	store, err := oci.NewFromFS(context.Background(), os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.Resolve(t.Context(), "edge/c1/m:1.0.1-edge.1")
	if err != nil || got.Digest != desc.Digest {
		t.Fatalf("oras resolves %v, %v; want %s", got.Digest, err, desc.Digest)
	}

	// Reopened, it has the same tags and referrers; a copy to another
	// target (an upload) takes the referrers along.
	l2, err := openLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := l2.Tags("edge/c1/other"); len(got) != 1 {
		t.Fatalf("tags after reopen %v", got)
	}
	dst := memory.New()
	if _, err := oras.ExtendedCopy(t.Context(), l2.Repository("edge/c1/m"), "1.0.1-edge.1", dst, "1.0.1-edge.1", oras.DefaultExtendedCopyOptions); err != nil {
		t.Fatal(err)
	}
	if _, err := artifact.FetchChunkIndex(t.Context(), dst, desc); err != nil {
		t.Errorf("the copy lacks the chunk index: %v", err)
	}
}

func TestLayoutRefusesBadContent(t *testing.T) {
	l, err := openLayout(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := l.Repository("edge/c/m")
	b := []byte("hello")
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes([]byte("other")), Size: 5}
	if err := r.Push(t.Context(), desc, bytes.NewReader(b)); err == nil {
		t.Fatal("a blob that does not match its digest was stored")
	}
	if l.Has(desc.Digest) {
		t.Fatal("a bad blob is in the layout")
	}
	if err := r.Tag(t.Context(), ocispec.Descriptor{Digest: digest.FromBytes(b)}, "1.0.0"); !errors.Is(err, errdef.ErrNotFound) {
		t.Fatalf("tagging what the layout lacks: %v", err)
	}
	if err := r.Tag(t.Context(), ocispec.Descriptor{Digest: digest.FromBytes(b)}, "a:b"); !errors.Is(err, errdef.ErrInvalidReference) {
		t.Fatalf("a tag with a colon: %v", err)
	}
}
