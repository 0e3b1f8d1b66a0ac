package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/memory"
)

// randBytes returns n deterministic pseudo-random bytes.
func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// writeTree writes files (slash paths) under dir.
func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for p, b := range files {
		name := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree reads every regular file under dir, keyed by slash path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dirEntries lists the names directly in dir.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// testLayer is a layer crafted by a test.
type testLayer struct {
	mediaType   string
	data        []byte
	annotations map[string]string
}

// pushCrafted pushes a manifest with the given layers to s and tags it.
func pushCrafted(t *testing.T, s *memory.Store, tag, artifactType string, layers []testLayer) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	push := func(d ocispec.Descriptor, b []byte) {
		if ok, _ := s.Exists(ctx, d); ok {
			return
		}
		if err := s.Push(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	push(ocispec.DescriptorEmptyJSON, ocispec.DescriptorEmptyJSON.Data)
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: ocispec.DescriptorEmptyJSON.Digest, Size: 2},
	}
	for _, l := range layers {
		d := ocispec.Descriptor{MediaType: l.mediaType, Digest: digest.FromBytes(l.data), Size: int64(len(l.data)), Annotations: l.annotations}
		push(d, l.data)
		m.Layers = append(m.Layers, d)
	}
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	push(d, mb)
	if err := s.Tag(ctx, d, tag); err != nil {
		t.Fatal(err)
	}
	return d
}

// corruptingStore serves one blob with a flipped byte.
type corruptingStore struct {
	*memory.Store
	bad digest.Digest
}

func (c *corruptingStore) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := c.Store.Fetch(ctx, d)
	if err != nil || d.Digest != c.bad {
		return rc, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	b[len(b)/2] ^= 0xff
	return io.NopCloser(bytes.NewReader(b)), nil
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// pushCraftedModelWithoutIndex pushes a one-file model manifest with no
// chunk index and returns its descriptor.
func pushCraftedModelWithoutIndex(ctx context.Context, s *memory.Store) (ocispec.Descriptor, error) {
	data := []byte("other model")
	l := ocispec.Descriptor{MediaType: MediaTypeModelWeightRaw, Digest: digest.FromBytes(data), Size: int64(len(data)),
		Annotations: map[string]string{AnnotationFilepath: "w.onnx"}}
	if err := s.Push(ctx, l, bytes.NewReader(data)); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := pushIfAbsent(ctx, s, ocispec.DescriptorEmptyJSON, ocispec.DescriptorEmptyJSON.Data); err != nil {
		return ocispec.Descriptor{}, err
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactTypeModel,
		Config:       ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: ocispec.DescriptorEmptyJSON.Digest, Size: 2},
		Layers:       []ocispec.Descriptor{l},
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	return d, pushIfAbsent(ctx, s, d, mb)
}
