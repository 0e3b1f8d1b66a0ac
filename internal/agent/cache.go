package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/durable"
)

// cache is the agent's OCI image layout: oci-layout, index.json listing the
// cached model manifests, and blobs/sha256/<hex> holding manifests, config
// blobs, chunk indexes, signature envelopes, reference profiles and whole
// model files. A blob appears under its digest only after it was verified
// and fsynced, so a blob that exists is whole.
type cache struct {
	root string
}

// openCache creates the layout under root if needed.
func openCache(root string) (*cache, error) {
	if err := os.MkdirAll(filepath.Join(root, "blobs", "sha256"), 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c := &cache{root: root}
	layout := filepath.Join(root, ocispec.ImageLayoutFile)
	if _, err := os.Stat(layout); errors.Is(err, fs.ErrNotExist) {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := durable.WriteFile(layout, b, 0o600); err != nil {
			return nil, fmt.Errorf("cache: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, ocispec.ImageIndexFile)); errors.Is(err, fs.ErrNotExist) {
		if err := c.writeIndex(nil); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// blobPath is where the blob with digest d lives.
func (c *cache) blobPath(d digest.Digest) string {
	return filepath.Join(c.root, "blobs", d.Algorithm().String(), d.Encoded())
}

// has reports whether the blob d is in the cache with the given size (any
// size when size < 0).
func (c *cache) has(d digest.Digest, size int64) bool {
	if d.Validate() != nil {
		return false
	}
	fi, err := os.Stat(c.blobPath(d))
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

// putBlob verifies b against d and stores it.
func (c *cache) putBlob(d digest.Digest, b []byte) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if got := digest.SHA256.FromBytes(b); got != d {
		return fmt.Errorf("cache: blob digest mismatch: got %s, want %s", got, d)
	}
	if c.has(d, int64(len(b))) {
		return nil
	}
	return durable.WriteFile(c.blobPath(d), b, 0o600)
}

// putChecked writes blob d with what fill writes, which must check that
// it is d's bytes (fill's error leaves nothing): through a temporary file,
// fsynced, then renamed.
func (c *cache) putChecked(d digest.Digest, fill func(io.Writer) error) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	dst := c.blobPath(d)
	f, err := os.CreateTemp(filepath.Dir(dst), ".fill-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	w := durable.NewRawWriter(f)
	if err := fill(w); err != nil {
		return err
	}
	if err := w.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(dst))
}

// readBlob reads blob d of at most limit bytes and verifies it.
func (c *cache) readBlob(d digest.Digest, limit int64) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	f, err := os.Open(c.blobPath(d))
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("cache: read %s: %w", d, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("cache: blob %s above the %d byte limit", d, limit)
	}
	if got := digest.SHA256.FromBytes(b); got != d {
		return nil, fmt.Errorf("cache: blob %s is corrupt (digest %s)", d, got)
	}
	return b, nil
}

// verifyFile checks that blob d exists with the given size and, when
// rehash is set, that its bytes still hash to d.
func (c *cache) verifyFile(d digest.Digest, size int64, rehash bool) error {
	f, err := os.Open(c.blobPath(d))
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != size {
		return fmt.Errorf("blob %s is %d bytes, want %d", d, fi.Size(), size)
	}
	if !rehash {
		return nil
	}
	v := d.Verifier()
	if _, err := io.Copy(v, f); err != nil {
		return err
	}
	if !v.Verified() {
		return fmt.Errorf("blob %s is corrupt", d)
	}
	return nil
}

// indexEntry is a model manifest listed in index.json.
type indexEntry struct {
	Digest  digest.Digest
	Size    int64
	Model   string
	Version string
}

// writeIndex replaces index.json with the given manifests.
func (c *cache) writeIndex(entries []indexEntry) error {
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{},
	}
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].Model != entries[j].Model {
			return entries[i].Model < entries[j].Model
		}
		return entries[i].Version < entries[j].Version
	})
	for _, e := range entries {
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{
			MediaType:    ocispec.MediaTypeImageManifest,
			ArtifactType: artifact.ArtifactTypeModel,
			Digest:       e.Digest,
			Size:         e.Size,
			Annotations: map[string]string{
				ocispec.AnnotationRefName: e.Model + ":" + e.Version,
				artifact.AnnotationName:   e.Model,
				ocispec.AnnotationVersion: e.Version,
			},
		})
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	if err := durable.WriteFile(filepath.Join(c.root, ocispec.ImageIndexFile), b, 0o600); err != nil {
		return fmt.Errorf("cache: write index: %w", err)
	}
	return nil
}

// blobFile is a file under blobs/sha256.
type blobFile struct {
	// Name is the file name.
	Name string
	// Digest is the blob digest the file is (or is being assembled as).
	Digest digest.Digest
	// Partial is set for temporary files of transfers in progress.
	Partial bool
}

// listBlobs lists the files under blobs/sha256.
func (c *cache) listBlobs() ([]blobFile, error) {
	ents, err := os.ReadDir(filepath.Join(c.root, "blobs", "sha256"))
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	var out []blobFile
	for _, e := range ents {
		name := e.Name()
		hexPart, _, partial := strings.Cut(name, ".")
		d := digest.NewDigestFromEncoded(digest.SHA256, hexPart)
		if d.Validate() != nil {
			continue
		}
		out = append(out, blobFile{Name: name, Digest: d, Partial: partial})
	}
	return out, nil
}

// remove deletes a file under blobs/sha256.
func (c *cache) remove(name string) error {
	err := os.Remove(filepath.Join(c.root, "blobs", "sha256", name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// chunkLoc is where a verified chunk lies in the cache.
type chunkLoc struct {
	Path           string
	Offset, Length int64
}

// chunkMap maps chunk digests to a location in a cached file, from the
// chunk indexes of cached manifests; only files whose blob is whole count.
func chunkMap(indexes []*artifact.ChunkIndex, fileAt func(d digest.Digest, size int64) (string, bool)) map[digest.Digest]chunkLoc {
	m := map[digest.Digest]chunkLoc{}
	for _, x := range indexes {
		if x == nil {
			continue
		}
		for _, f := range x.Files {
			path, ok := fileAt(f.Digest, f.Size)
			if !ok {
				continue
			}
			for _, ch := range f.Chunks {
				if _, dup := m[ch.Digest]; !dup {
					m[ch.Digest] = chunkLoc{Path: path, Offset: ch.Offset, Length: ch.Length}
				}
			}
		}
	}
	return m
}

// keepManifests is the garbage collection rule: the manifests a deployment
// serves or is fetching, and the keep most recent previous versions of each
// deployment (removed deployments included), stay.
func keepManifests(deps []deploymentRow, hist []historyEntry, keep int) map[string]bool {
	kept := map[string]bool{}
	active := map[string]string{}
	for _, d := range deps {
		if d.ActiveDigest != "" {
			kept[d.ActiveDigest] = true
			active[d.Name] = d.ActiveDigest
		}
		if d.Desired.Digest != "" {
			kept[d.Desired.Digest] = true
		}
	}
	// hist is newest first.
	prev := map[string]map[string]bool{}
	for _, h := range hist {
		if h.Digest == active[h.Deployment] {
			continue
		}
		seen := prev[h.Deployment]
		if seen == nil {
			seen = map[string]bool{}
			prev[h.Deployment] = seen
		}
		if seen[h.Digest] || len(seen) >= keep {
			continue
		}
		seen[h.Digest] = true
		kept[h.Digest] = true
	}
	return kept
}

// gcPlan returns the cached manifests to forget and the blob files to
// delete: every manifest not kept, and every blob (whole or partial) that
// no kept manifest references.
func gcPlan(manifests []manifestRecord, kept map[string]bool, blobs []blobFile) (dropManifests []string, dropBlobs []string) {
	ref := map[digest.Digest]bool{}
	for _, m := range manifests {
		if !kept[m.Digest] {
			dropManifests = append(dropManifests, m.Digest)
			continue
		}
		for _, d := range []string{m.Digest, m.ConfigDigest, m.ChunkIndexDigest, m.SignatureDigest, m.ProfileDigest} {
			if d != "" {
				ref[digest.Digest(d)] = true
			}
		}
		for _, f := range m.Files {
			ref[digest.Digest(f.Digest)] = true
		}
	}
	// A desired manifest not fetched yet has no record; nothing of it is on disk
	// except partial files, which its digest alone cannot name. Keep partials of
	// any kept file and drop the rest.
	for _, b := range blobs {
		if !ref[b.Digest] {
			dropBlobs = append(dropBlobs, b.Name)
		}
	}
	sort.Strings(dropManifests)
	sort.Strings(dropBlobs)
	return dropManifests, dropBlobs
}
