package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"

	"outpost.dev/outpost/internal/durable"
)

// maxLayoutManifest bounds a manifest pushed into or read from the layout.
const maxLayoutManifest = 4 << 20

// Layout is the engine's OCI image layout: oci-layout, index.json, and
// blobs/sha256/<hex>. Step outputs that are data or models are blobs of it,
// named by their digest; models a register step records are ModelPack
// artifacts whose tags are "REPOSITORY:VERSION" in index.json's
// org.opencontainers.image.ref.name annotations. A blob appears under its
// digest only once it is whole, verified and fsynced, and index.json is
// replaced whole (temp file, fsync, rename), so a crash never leaves half
// of either. It is safe for concurrent use.
type Layout struct {
	root string

	mu sync.Mutex
	// manifests are index.json's entries, tagged or not, in order.
	manifests []ocispec.Descriptor
	// preds maps a blob to the manifests that reference it (as config,
	// layer or subject).
	preds map[digest.Digest][]ocispec.Descriptor
}

// openLayout opens the layout at root, creating it if needed.
func openLayout(root string) (*Layout, error) {
	if err := os.MkdirAll(filepath.Join(root, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("layout: %w", err)
	}
	l := &Layout{root: root, preds: map[digest.Digest][]ocispec.Descriptor{}}
	lf := filepath.Join(root, ocispec.ImageLayoutFile)
	if _, err := os.Stat(lf); errors.Is(err, fs.ErrNotExist) {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := durable.WriteFile(lf, b, 0o644); err != nil {
			return nil, fmt.Errorf("layout: %w", err)
		}
	}
	b, err := os.ReadFile(filepath.Join(root, ocispec.ImageIndexFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return l, l.saveIndex()
	case err != nil:
		return nil, fmt.Errorf("layout: %w", err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("layout: %s: %w", ocispec.ImageIndexFile, err)
	}
	for _, d := range idx.Manifests {
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("layout: %s: %w", ocispec.ImageIndexFile, err)
		}
		l.manifests = append(l.manifests, d)
		if err := l.indexManifest(d); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Path is the layout's folder.
func (l *Layout) Path() string { return l.root }

// BlobPath is where blob d lives (whether or not it exists).
func (l *Layout) BlobPath(d digest.Digest) string {
	return filepath.Join(l.root, "blobs", d.Algorithm().String(), d.Encoded())
}

// Has reports whether the layout holds blob d.
func (l *Layout) Has(d digest.Digest) bool {
	if d.Validate() != nil {
		return false
	}
	fi, err := os.Stat(l.BlobPath(d))
	return err == nil && fi.Mode().IsRegular()
}

// PutFile copies the file at path into the layout and returns its digest.
func (l *Layout) PutFile(path string) (digest.Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return l.put(f, "", -1)
}

// PutBytes stores b and returns its digest.
func (l *Layout) PutBytes(b []byte) (digest.Digest, error) {
	return l.put(bytes.NewReader(b), digest.FromBytes(b), int64(len(b)))
}

// put streams r into a temporary file, checks it against want and size
// when they are set, fsyncs it and renames it to its digest.
func (l *Layout) put(r io.Reader, want digest.Digest, size int64) (digest.Digest, error) {
	if want != "" && l.Has(want) {
		return want, nil
	}
	dir := filepath.Join(l.root, "blobs", "sha256")
	f, err := os.CreateTemp(dir, ".ingest-*")
	if err != nil {
		return "", fmt.Errorf("layout: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly once renamed
	var d digest.Digest
	if want != "" {
		err = durable.Copy(f, r, size, want, nil)
		d = want
	} else {
		w := durable.NewWriter(f)
		if _, err = io.Copy(w, r); err == nil {
			err = w.Sync()
		}
		d = w.Digest()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o444)
	}
	if err == nil && !l.Has(d) {
		if err = os.Rename(tmp, l.BlobPath(d)); err == nil {
			err = durable.SyncDir(dir)
		}
	}
	if err != nil {
		return "", fmt.Errorf("layout: store blob: %w", err)
	}
	return d, nil
}

// Repository returns the view of the layout as one repository (such as
// edge/<cluster>/<model>): an oras.GraphTarget whose tags are that
// repository's. Blobs are shared by every repository.
func (l *Layout) Repository(name string) *Repository { return &Repository{l: l, name: name} }

// indexManifest records what manifest d references. l.mu held or not yet shared.
func (l *Layout) indexManifest(d ocispec.Descriptor) error {
	if d.MediaType != ocispec.MediaTypeImageManifest {
		return nil
	}
	b, err := l.readBlob(d.Digest, maxLayoutManifest)
	if err != nil {
		return fmt.Errorf("layout: manifest %s: %w", d.Digest, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("layout: manifest %s: %w", d.Digest, err)
	}
	pred := ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size, ArtifactType: m.ArtifactType, Annotations: m.Annotations}
	add := func(s digest.Digest) {
		if !slices.ContainsFunc(l.preds[s], func(x ocispec.Descriptor) bool { return x.Digest == d.Digest }) {
			l.preds[s] = append(l.preds[s], pred)
		}
	}
	add(m.Config.Digest)
	for _, ly := range m.Layers {
		add(ly.Digest)
	}
	if m.Subject != nil {
		add(m.Subject.Digest)
	}
	return nil
}

// readBlob reads blob d of at most limit bytes, verified.
func (l *Layout) readBlob(d digest.Digest, limit int64) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(l.BlobPath(d))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("blob %s above the %d byte limit", d, limit)
	}
	if got := digest.FromBytes(b); got != d {
		return nil, fmt.Errorf("blob %s is corrupt (digest %s)", d, got)
	}
	return b, nil
}

// saveIndex writes index.json whole. l.mu held.
func (l *Layout) saveIndex() error {
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: l.manifests,
	}
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(l.root, ocispec.ImageIndexFile), b, 0o644); err != nil {
		return fmt.Errorf("layout: %w", err)
	}
	return nil
}

// Tags returns the tags of repository repo, sorted.
func (l *Layout) Tags(repo string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var tags []string
	for _, m := range l.manifests {
		if r, tag, ok := strings.Cut(m.Annotations[ocispec.AnnotationRefName], ":"); ok && r == repo {
			tags = append(tags, tag)
		}
	}
	sort.Strings(tags)
	return tags
}

// Repository is one repository of a Layout. It implements oras.GraphTarget
// (and so serves as the source of oras.Copy and oras.ExtendedCopy, to
// upload an edge-produced version to the hub).
type Repository struct {
	l    *Layout
	name string
}

var _ oras.GraphTarget = (*Repository)(nil)

// Name is the repository's name.
func (r *Repository) Name() string { return r.name }

// Fetch opens blob target, verifying its size.
func (r *Repository) Fetch(ctx context.Context, target ocispec.Descriptor) (io.ReadCloser, error) {
	if err := target.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", target.Digest, errdef.ErrInvalidDigest)
	}
	f, err := os.Open(r.l.BlobPath(target.Digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", target.Digest, errdef.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Size() != target.Size {
		err = fmt.Errorf("blob %s is %d bytes, want %d", target.Digest, fi.Size(), target.Size)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Exists reports whether the layout holds target.
func (r *Repository) Exists(ctx context.Context, target ocispec.Descriptor) (bool, error) {
	return r.l.Has(target.Digest), nil
}

// Push stores content described by expected, verified. A manifest is
// recorded in index.json, untagged.
func (r *Repository) Push(ctx context.Context, expected ocispec.Descriptor, content io.Reader) error {
	if err := expected.Digest.Validate(); err != nil {
		return fmt.Errorf("%s: %w", expected.Digest, errdef.ErrInvalidDigest)
	}
	if r.l.Has(expected.Digest) {
		return fmt.Errorf("%s: %w", expected.Digest, errdef.ErrAlreadyExists)
	}
	if isManifest(expected.MediaType) && expected.Size > maxLayoutManifest {
		return fmt.Errorf("manifest of %d bytes: %w", expected.Size, errdef.ErrSizeExceedsLimit)
	}
	if _, err := r.l.put(content, expected.Digest, expected.Size); err != nil {
		return err
	}
	if !isManifest(expected.MediaType) {
		return nil
	}
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	if slices.ContainsFunc(r.l.manifests, func(d ocispec.Descriptor) bool { return d.Digest == expected.Digest }) {
		return nil
	}
	d := ocispec.Descriptor{MediaType: expected.MediaType, ArtifactType: expected.ArtifactType, Digest: expected.Digest, Size: expected.Size}
	if err := r.l.indexManifest(d); err != nil {
		return err
	}
	r.l.manifests = append(r.l.manifests, d)
	return r.l.saveIndex()
}

func isManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == ocispec.MediaTypeImageIndex
}

// Resolve returns the manifest a tag of the repository, or a digest, names.
func (r *Repository) Resolve(ctx context.Context, reference string) (ocispec.Descriptor, error) {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	if d, err := digest.Parse(reference); err == nil {
		for _, m := range r.l.manifests {
			if m.Digest == d {
				return plain(m), nil
			}
		}
		return ocispec.Descriptor{}, fmt.Errorf("%s: %w", reference, errdef.ErrNotFound)
	}
	ref := r.name + ":" + reference
	for _, m := range r.l.manifests {
		if m.Annotations[ocispec.AnnotationRefName] == ref {
			return plain(m), nil
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("%s: %w", ref, errdef.ErrNotFound)
}

// plain is d without index.json's annotations.
func plain(d ocispec.Descriptor) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: d.MediaType, ArtifactType: d.ArtifactType, Digest: d.Digest, Size: d.Size}
}

// Tag points tag reference of the repository at desc, a manifest the
// layout holds.
func (r *Repository) Tag(ctx context.Context, desc ocispec.Descriptor, reference string) error {
	if reference == "" || strings.ContainsAny(reference, ":@/") {
		return fmt.Errorf("tag %q: %w", reference, errdef.ErrInvalidReference)
	}
	if !r.l.Has(desc.Digest) {
		return fmt.Errorf("%s: %w", desc.Digest, errdef.ErrNotFound)
	}
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	ref := r.name + ":" + reference
	ms := r.l.manifests[:0:0]
	for _, m := range r.l.manifests {
		switch {
		case m.Annotations[ocispec.AnnotationRefName] == ref:
			// the tag moves
		case m.Digest == desc.Digest && m.Annotations[ocispec.AnnotationRefName] == "":
			// the untagged entry gives way to the tagged one
		default:
			ms = append(ms, m)
		}
	}
	d := plain(desc)
	d.Annotations = map[string]string{ocispec.AnnotationRefName: ref}
	if err := r.l.indexManifest(d); err != nil {
		return err
	}
	r.l.manifests = append(ms, d)
	return r.l.saveIndex()
}

// Predecessors returns the manifests that reference node.
func (r *Repository) Predecessors(ctx context.Context, node ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	return slices.Clone(r.l.preds[node.Digest]), nil
}

// Tags lists the repository's tags after last, as registry.TagLister does.
func (r *Repository) Tags(ctx context.Context, last string, fn func(tags []string) error) error {
	var out []string
	for _, t := range r.l.Tags(r.name) {
		if t > last {
			out = append(out, t)
		}
	}
	return fn(out)
}
