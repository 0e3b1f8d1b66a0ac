package bundle

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"

	"outpost.dev/outpost/internal/durable"
)

// Writer writes an OCI image layout into a folder that takes its final
// name only once the bundle is whole (Finish): a create killed half way
// leaves DIR.partial, which the next Create replaces.
type Writer struct {
	dir, tmp string
	store    *oci.Store
	blobs    []Blob
	seen     map[digest.Digest]bool
}

// Create starts a layout to be named dir. dir must not exist.
func Create(ctx context.Context, dir string) (*Writer, error) {
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("bundle %s exists already", dir)
	}
	tmp := dir + ".partial"
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("bundle: remove %s: %w", tmp, err)
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	s, err := oci.NewWithContext(ctx, tmp)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	return &Writer{dir: dir, tmp: tmp, store: s, seen: map[digest.Digest]bool{}}, nil
}

// Push adds a blob or manifest, read from r and checked against desc.
// A manifest is named in index.json by its digest.
func (w *Writer) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	if w.seen[desc.Digest] {
		return nil
	}
	if err := w.store.Push(ctx, desc, r); err != nil {
		return fmt.Errorf("bundle: add %s: %w", desc.Digest, err)
	}
	w.seen[desc.Digest] = true
	w.blobs = append(w.blobs, Blob{Digest: desc.Digest, Size: desc.Size})
	return nil
}

// Tag names a pushed manifest tag in index.json.
func (w *Writer) Tag(ctx context.Context, desc ocispec.Descriptor, tag string) error {
	if err := w.store.Tag(ctx, desc, tag); err != nil {
		return fmt.Errorf("bundle: tag %s: %w", tag, err)
	}
	return nil
}

// Has reports whether d was pushed.
func (w *Writer) Has(d digest.Digest) bool { return w.seen[d] }

// Blobs lists what was pushed, in order: the blobs of the Contents.
func (w *Writer) Blobs() []Blob { return append([]Blob(nil), w.blobs...) }

// Finish adds the bundle's own manifest, whose layer is the signed
// Contents envelope env, tags it Tag, syncs every file and gives the
// layout its name.
func (w *Writer) Finish(ctx context.Context, env []byte, created time.Time) error {
	envDesc := ocispec.Descriptor{MediaType: MediaTypeEnvelope, Digest: digest.FromBytes(env), Size: int64(len(env))}
	if err := w.store.Push(ctx, envDesc, bytes.NewReader(env)); err != nil {
		return fmt.Errorf("bundle: add contents: %w", err)
	}
	desc, err := oras.PackManifest(ctx, w.store, oras.PackManifestVersion1_1, ArtifactType, oras.PackManifestOptions{
		Layers:              []ocispec.Descriptor{envDesc},
		ManifestAnnotations: map[string]string{ocispec.AnnotationCreated: created.UTC().Format(time.RFC3339)},
	})
	if err != nil {
		return fmt.Errorf("bundle: pack manifest: %w", err)
	}
	if err := w.Tag(ctx, desc, Tag); err != nil {
		return err
	}
	if err := syncTree(w.tmp); err != nil {
		return fmt.Errorf("bundle: sync: %w", err)
	}
	if err := os.Rename(w.tmp, w.dir); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	return durable.SyncDir(filepath.Dir(w.dir))
}

// syncTree fsyncs every file and folder under root.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return durable.SyncDir(p)
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}

// Layout is an outbound bundle whose signature and structure were verified.
type Layout struct {
	// Dir is the layout's folder.
	Dir string
	// Contents is its signed table.
	Contents *Contents
	// KeyID names the key that signed it.
	KeyID string
	// Store reads its blobs (verify each against its digest as you read it).
	Store oras.ReadOnlyGraphTarget
	// Private says the layout is one Stage unpacked (every blob checked
	// against its digest as it was written, the files fsynced) on the
	// importer's own file system: CopyTo links its blobs into place
	// instead of reading and writing them again.
	Private bool

	sizes map[digest.Digest]int64
}

// BlobPath is the file of blob d in the layout.
func BlobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// readBlob reads blob desc of the layout in dir, checking its size and digest.
func readBlob(dir string, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if err := checkBlob(Blob{Digest: desc.Digest, Size: desc.Size}, "blob"); err != nil {
		return nil, err
	}
	if desc.Size > limit {
		return nil, fmt.Errorf("%w: blob %s of %d bytes, above %d", ErrMalformed, desc.Digest, desc.Size, limit)
	}
	b, err := os.ReadFile(BlobPath(dir, desc.Digest))
	if err != nil {
		return nil, fmt.Errorf("%w: blob %s: %v", ErrMalformed, desc.Digest, err)
	}
	if int64(len(b)) != desc.Size || digest.FromBytes(b) != desc.Digest {
		return nil, fmt.Errorf("%w: blob %s", ErrDigest, desc.Digest)
	}
	return b, nil
}

// ParseIndex decodes a layout's index.json and returns the descriptor of
// the bundle's own manifest (tagged Tag) and of the others.
func ParseIndex(b []byte) (bundle ocispec.Descriptor, others []ocispec.Descriptor, err error) {
	var idx ocispec.Index
	if len(b) > MaxDocBytes {
		return bundle, nil, fmt.Errorf("%w: index.json of %d bytes", ErrMalformed, len(b))
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return bundle, nil, fmt.Errorf("%w: index.json: %v", ErrMalformed, err)
	}
	if idx.SchemaVersion != 2 {
		return bundle, nil, fmt.Errorf("%w: index.json: schemaVersion %d", ErrMalformed, idx.SchemaVersion)
	}
	found := 0
	for _, m := range idx.Manifests {
		if err := checkBlob(Blob{Digest: m.Digest, Size: m.Size}, "index.json"); err != nil {
			return bundle, nil, err
		}
		if m.Annotations[ocispec.AnnotationRefName] == Tag {
			bundle = m
			found++
			continue
		}
		others = append(others, m)
	}
	if found != 1 {
		return bundle, nil, fmt.Errorf("%w: index.json names %d manifests tagged %q, want 1 (not an outpost bundle?)", ErrMalformed, found, Tag)
	}
	return bundle, others, nil
}

// Open verifies the layout in dir: its index, its bundle manifest and the
// signature of its Contents by one of trusted; and that every other
// manifest index.json names is listed in the Contents. It does not read
// the blobs: Layout.Copy verifies each as it copies it.
func Open(ctx context.Context, dir string, trusted []ed25519.PublicKey) (*Layout, error) {
	lb, err := os.ReadFile(filepath.Join(dir, ocispec.ImageLayoutFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not an OCI image layout: %v", ErrMalformed, dir, err)
	}
	var ol ocispec.ImageLayout
	if err := json.Unmarshal(lb, &ol); err != nil || ol.Version != ocispec.ImageLayoutVersion {
		return nil, fmt.Errorf("%w: %s: oci-layout version %q", ErrMalformed, dir, ol.Version)
	}
	ib, err := os.ReadFile(filepath.Join(dir, ocispec.ImageIndexFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	bdesc, others, err := ParseIndex(ib)
	if err != nil {
		return nil, err
	}
	mb, err := readBlob(dir, bdesc, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("bundle manifest: %w", err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, fmt.Errorf("%w: bundle manifest: %v", ErrMalformed, err)
	}
	if m.ArtifactType != ArtifactType || len(m.Layers) != 1 || m.Layers[0].MediaType != MediaTypeEnvelope {
		return nil, fmt.Errorf("%w: bundle manifest: want artifact type %s with one %s layer", ErrMalformed, ArtifactType, MediaTypeEnvelope)
	}
	env, err := readBlob(dir, m.Layers[0], MaxDocBytes)
	if err != nil {
		return nil, fmt.Errorf("bundle contents: %w", err)
	}
	payload, keyID, err := Verify(env, PayloadContents, trusted)
	if err != nil {
		return nil, fmt.Errorf("bundle contents: %w", err)
	}
	c, err := ParseContents(payload)
	if err != nil {
		return nil, err
	}
	sizes := make(map[digest.Digest]int64, len(c.Blobs))
	for _, b := range c.Blobs {
		sizes[b.Digest] = b.Size
	}
	for _, o := range others {
		if s, ok := sizes[o.Digest]; !ok || s != o.Size {
			return nil, fmt.Errorf("%w: index.json names manifest %s, which the signed contents do not list", ErrMalformed, o.Digest)
		}
	}
	st, err := oci.NewFromFS(ctx, os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &Layout{Dir: dir, Contents: c, KeyID: keyID, Store: st, sizes: sizes}, nil
}

// Listed reports whether the signed contents list blob d, with its size.
func (l *Layout) Listed(d digest.Digest) (int64, bool) {
	s, ok := l.sizes[d]
	return s, ok
}

// ReadSmall reads a listed blob of at most limit bytes, verified.
func (l *Layout) ReadSmall(d digest.Digest, limit int64) ([]byte, error) {
	s, ok := l.sizes[d]
	if !ok {
		return nil, fmt.Errorf("%w: blob %s is not in the bundle", ErrIncomplete, d)
	}
	return readBlob(l.Dir, ocispec.Descriptor{Digest: d, Size: s}, limit)
}

// CopyTo copies listed blob d into the file dst (through a temp file in
// its folder, fsynced, verified against d, then renamed).
func (l *Layout) CopyTo(d digest.Digest, dst string) error {
	s, ok := l.sizes[d]
	if !ok {
		return fmt.Errorf("%w: blob %s is not in the bundle", ErrIncomplete, d)
	}
	src, err := os.Open(BlobPath(l.Dir, d))
	if err != nil {
		return fmt.Errorf("%w: blob %s: %v", ErrIncomplete, d, err)
	}
	defer src.Close()
	if l.Private {
		if err := linkBlob(src, BlobPath(l.Dir, d), dst, s); err == nil || errors.Is(err, ErrDigest) {
			return err
		}
	}
	f, err := os.CreateTemp(filepath.Dir(dst), ".bundle-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := durable.Copy(f, src, s, d, nil); err != nil {
		f.Close()
		return fmt.Errorf("blob %s: %w: %v", d, ErrDigest, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(dst))
}

// linkBlob links the blob file src (at path), verified when it was
// unpacked, to dst once it has its size. An error wrapping ErrDigest means
// it does not; any other, that linking failed (another file system): copy
// instead.
func linkBlob(src *os.File, path, dst string, size int64) error {
	st, err := src.Stat()
	if err != nil {
		return err
	}
	if st.Size() != size {
		return fmt.Errorf("blob %s: %d bytes, want %d: %w", path, st.Size(), size, ErrDigest)
	}
	if err := os.Link(path, dst); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return durable.SyncDir(filepath.Dir(dst))
}
