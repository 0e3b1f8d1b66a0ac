package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
)

// ChunkIndexVersion is the only chunk index format version.
const ChunkIndexVersion = 1

// ErrNoChunkIndex is returned by FetchChunkIndex when a model has no valid
// chunk index referrer.
var ErrNoChunkIndex = errors.New("no chunk index")

// ChunkIndex lists the content-defined chunks of every file of a model.
type ChunkIndex struct {
	Version int          `json:"version"`
	Params  ChunkParams  `json:"params"`
	Files   []FileChunks `json:"files"`
}

// FileChunks lists the chunks of one file, in order. The chunks are
// contiguous, start at offset 0 and cover exactly Size bytes.
type FileChunks struct {
	Path   string        `json:"path"`
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
	Chunks []Chunk       `json:"chunks"`
}

// Chunk is a byte range of a file and the sha256 digest of its bytes.
type Chunk struct {
	Offset int64         `json:"offset"`
	Length int64         `json:"length"`
	Digest digest.Digest `json:"digest"`
}

// File returns the entry for path, or nil.
func (x *ChunkIndex) File(path string) *FileChunks {
	for i := range x.Files {
		if x.Files[i].Path == path {
			return &x.Files[i]
		}
	}
	return nil
}

// ParseChunkIndex decodes and strictly validates a chunk index: known
// version, sane params, safe unique paths, well-formed sha256 digests, and
// chunks contiguous from offset 0 covering exactly each file's size, each
// between Min and Max bytes except the last, which may be shorter.
func ParseChunkIndex(b []byte) (*ChunkIndex, error) {
	if len(b) > MaxChunkIndexBytes {
		return nil, fmt.Errorf("chunk index is %d bytes, above the %d byte limit", len(b), MaxChunkIndexBytes)
	}
	var x ChunkIndex
	if err := decodeStrict(b, &x); err != nil {
		return nil, fmt.Errorf("decode chunk index: %w", err)
	}
	if err := x.Validate(); err != nil {
		return nil, err
	}
	return &x, nil
}

// Validate checks the invariants described at ParseChunkIndex.
func (x *ChunkIndex) Validate() error {
	if x.Version != ChunkIndexVersion {
		return fmt.Errorf("unsupported chunk index version %d", x.Version)
	}
	if err := x.Params.Validate(); err != nil {
		return err
	}
	if len(x.Files) > MaxFiles {
		return fmt.Errorf("chunk index lists %d files, above the %d limit", len(x.Files), MaxFiles)
	}
	paths := make([]string, 0, len(x.Files))
	for i := range x.Files {
		f := &x.Files[i]
		if err := ValidatePath(f.Path); err != nil {
			return fmt.Errorf("chunk index: %w", err)
		}
		paths = append(paths, f.Path)
		if err := validateSHA256(f.Digest); err != nil {
			return fmt.Errorf("chunk index file %q: %w", f.Path, err)
		}
		if f.Size < 0 {
			return fmt.Errorf("chunk index file %q: negative size", f.Path)
		}
		var off int64
		for j, c := range f.Chunks {
			if c.Offset != off {
				return fmt.Errorf("chunk index file %q: chunk %d at offset %d, want %d", f.Path, j, c.Offset, off)
			}
			last := j == len(f.Chunks)-1
			if c.Length > int64(x.Params.Max) || c.Length < 1 || (!last && c.Length < int64(x.Params.Min)) {
				return fmt.Errorf("chunk index file %q: chunk %d length %d outside [%d, %d]", f.Path, j, c.Length, x.Params.Min, x.Params.Max)
			}
			if err := validateSHA256(c.Digest); err != nil {
				return fmt.Errorf("chunk index file %q: chunk %d: %w", f.Path, j, err)
			}
			off += c.Length
			if off > f.Size {
				return fmt.Errorf("chunk index file %q: chunks extend past size %d", f.Path, f.Size)
			}
		}
		if off != f.Size {
			return fmt.Errorf("chunk index file %q: chunks cover %d of %d bytes", f.Path, off, f.Size)
		}
	}
	if err := checkPathSet(paths); err != nil {
		return fmt.Errorf("chunk index: %w", err)
	}
	return nil
}

// validateSHA256 checks that d is a well-formed sha256 digest.
func validateSHA256(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("invalid digest %q: %w", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("digest %q is not sha256", d)
	}
	return nil
}

// decodeStrict decodes one JSON value, rejecting unknown fields and trailing
// data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON value")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

// fileHasher computes a file's sha256 digest and its chunk list in one pass.
type fileHasher struct {
	chunker *Chunker
	h       hash.Hash
	ch      hash.Hash
}

func newFileHasher(p ChunkParams) (*fileHasher, error) {
	c, err := NewChunker(nil, p)
	if err != nil {
		return nil, err
	}
	return &fileHasher{chunker: c, h: sha256.New(), ch: sha256.New()}, nil
}

// hashFile streams the file at name through the chunker.
func (fh *fileHasher) hashFile(ctx context.Context, name, rel string) (FileChunks, error) {
	f, err := os.Open(name)
	if err != nil {
		return FileChunks{}, err
	}
	defer f.Close()
	fc, err := fh.hashReader(ctx, f)
	fc.Path = rel
	return fc, err
}

func (fh *fileHasher) hashReader(ctx context.Context, r io.Reader) (FileChunks, error) {
	fh.h.Reset()
	fh.chunker.Reset(r)
	fc := FileChunks{Chunks: []Chunk{}}
	var sum [sha256.Size]byte
	for {
		if err := ctx.Err(); err != nil {
			return fc, err
		}
		data, err := fh.chunker.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fc, err
		}
		fh.h.Write(data)
		fh.ch.Reset()
		fh.ch.Write(data)
		fc.Chunks = append(fc.Chunks, Chunk{
			Offset: fc.Size,
			Length: int64(len(data)),
			Digest: digest.NewDigestFromBytes(digest.SHA256, fh.ch.Sum(sum[:0])),
		})
		fc.Size += int64(len(data))
	}
	fc.Digest = digest.NewDigestFromBytes(digest.SHA256, fh.h.Sum(sum[:0]))
	return fc, nil
}

// ChunkReader computes the FileChunks of the bytes read from r, with an
// empty Path. It is what Push records for each file.
func ChunkReader(ctx context.Context, r io.Reader, p ChunkParams) (FileChunks, error) {
	fh, err := newFileHasher(p)
	if err != nil {
		return FileChunks{}, err
	}
	return fh.hashReader(ctx, r)
}

// pushChunkIndex pushes idx as a referrer of subject and returns the
// referrer manifest descriptor. The referrer carries no timestamp, so the
// same index pushed twice is the same manifest.
func pushChunkIndex(ctx context.Context, dst oras.Target, subject ocispec.Descriptor, idx *ChunkIndex) (ocispec.Descriptor, error) {
	b, err := json.Marshal(idx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	layer := ocispec.Descriptor{MediaType: ArtifactTypeChunkIndex, Digest: digest.FromBytes(b), Size: int64(len(b))}
	return pushReferrer(ctx, dst, subject, ArtifactTypeChunkIndex, layer, b, nil)
}

// FetchChunkIndex returns the chunk index attached to the model manifest
// described by manifestDesc. Only an index whose files match the manifest's
// layers (same paths, digests and sizes) is accepted; ErrNoChunkIndex is
// returned when there is none.
func FetchChunkIndex(ctx context.Context, src oras.ReadOnlyGraphTarget, manifestDesc ocispec.Descriptor) (*ChunkIndex, error) {
	_, files, err := readModelManifest(ctx, src, manifestDesc)
	if err != nil {
		return nil, err
	}
	refs, err := referrers(ctx, src, manifestDesc, ArtifactTypeChunkIndex)
	if err != nil {
		return nil, fmt.Errorf("list chunk index referrers: %w", err)
	}
	var lastErr error
	for _, ref := range refs {
		idx, err := fetchChunkIndexReferrer(ctx, src, ref)
		if err == nil {
			err = idx.matches(files)
		}
		if err != nil {
			lastErr = err
			continue
		}
		return idx, nil
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoChunkIndex, lastErr)
	}
	return nil, ErrNoChunkIndex
}

func fetchChunkIndexReferrer(ctx context.Context, src oras.ReadOnlyTarget, ref ocispec.Descriptor) (*ChunkIndex, error) {
	rb, err := fetchLimited(ctx, src, ref, MaxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("fetch chunk index manifest: %w", err)
	}
	rm, err := ParseManifest(rb)
	if err != nil {
		return nil, err
	}
	if len(rm.Layers) != 1 || rm.Layers[0].MediaType != ArtifactTypeChunkIndex {
		return nil, fmt.Errorf("chunk index manifest %s: want one %s layer", ref.Digest, ArtifactTypeChunkIndex)
	}
	b, err := fetchLimited(ctx, src, rm.Layers[0], MaxChunkIndexBytes)
	if err != nil {
		return nil, fmt.Errorf("fetch chunk index: %w", err)
	}
	return ParseChunkIndex(b)
}

// matches checks that the index describes exactly the model's files.
func (x *ChunkIndex) matches(files []File) error {
	if len(files) != len(x.Files) {
		return fmt.Errorf("chunk index lists %d files, manifest has %d", len(x.Files), len(files))
	}
	for _, f := range files {
		fc := x.File(f.Path)
		if fc == nil {
			return fmt.Errorf("chunk index lacks file %q", f.Path)
		}
		if fc.Digest != f.Digest || fc.Size != f.Size {
			return fmt.Errorf("chunk index entry for %q does not match the manifest layer", f.Path)
		}
	}
	return nil
}
