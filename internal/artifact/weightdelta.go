package artifact

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"outpost.dev/outpost/internal/weightdelta"
)

// Weight deltas: a referrer of a model version that declares its parent,
// with one layer per file that changed, each a weightdelta of the file
// against the parent's file of the same path. A holder of the parent's file
// rebuilds the new one from it and the delta, and checks the result against
// the digest the version's manifest gives.
const (
	// ArtifactTypeWeightDelta is the artifactType of a weight delta referrer.
	ArtifactTypeWeightDelta = "application/vnd.outpost.weight-delta.v1"
	// MediaTypeWeightDelta is the media type of each of its layers.
	MediaTypeWeightDelta = "application/vnd.outpost.weight-delta.v1.opwd"
	// AnnotationDeltaParent, on the referrer, is the digest of the parent
	// version's manifest.
	AnnotationDeltaParent = "ml.outpost.dev/delta.parent"
	// AnnotationDeltaBase and AnnotationDeltaBaseSize, on a layer, are the
	// digest and size of the parent's file the delta applies to;
	// AnnotationDeltaTarget is the digest of the file it makes (its path is
	// the layer's AnnotationTitle).
	AnnotationDeltaBase     = "ml.outpost.dev/delta.base"
	AnnotationDeltaBaseSize = "ml.outpost.dev/delta.base-size"
	AnnotationDeltaTarget   = "ml.outpost.dev/delta.target"
	// MaxWeightDeltas bounds the layers of one weight delta referrer.
	MaxWeightDeltas = 4096
)

// FileDelta is the weight delta of one file of a version.
type FileDelta struct {
	// Path is the file's path in the version; Target its digest and size.
	Path       string
	Target     digest.Digest
	TargetSize int64
	// Base and BaseSize name the parent's file the delta applies to.
	Base     digest.Digest
	BaseSize int64
	// Blob is the delta's layer.
	Blob ocispec.Descriptor
}

// DeltaPair is a file of a version and the parent's file it may be
// encoded against.
type DeltaPair struct {
	File, Base File
}

// DeltaPairs pairs each file of a version with the parent's file of the same
// path, or, when each has one file, those two; files that did not change
// (same digest) are left out. It is pure.
func DeltaPairs(files, parent []File) []DeltaPair {
	var out []DeltaPair
	if len(files) == 1 && len(parent) == 1 {
		if files[0].Digest != parent[0].Digest {
			out = append(out, DeltaPair{files[0], parent[0]})
		}
		return out
	}
	for _, f := range files {
		i := slices.IndexFunc(parent, func(p File) bool { return p.Path == f.Path })
		if i >= 0 && parent[i].Digest != f.Digest {
			out = append(out, DeltaPair{f, parent[i]})
		}
	}
	return out
}

// EncodedDelta is a file's delta with its bytes, ready to push.
type EncodedDelta struct {
	FileDelta
	Data []byte
}

// EncodeWeightDeltas encodes the delta of each pair whose delta is smaller
// than the file it makes; read returns a file's bytes by digest.
func EncodeWeightDeltas(ctx context.Context, pairs []DeltaPair, read func(digest.Digest) ([]byte, error)) ([]EncodedDelta, error) {
	var out []EncodedDelta
	for _, p := range pairs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		base, err := read(p.Base.Digest)
		if err != nil {
			return nil, fmt.Errorf("read %s of the parent: %w", p.Base.Path, err)
		}
		target, err := read(p.File.Digest)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p.File.Path, err)
		}
		d, err := weightdelta.Encode(base, target)
		if err != nil {
			return nil, fmt.Errorf("delta of %s: %w", p.File.Path, err)
		}
		if int64(len(d)) >= p.File.Size {
			continue
		}
		out = append(out, EncodedDelta{Data: d, FileDelta: FileDelta{
			Path: p.File.Path, Target: p.File.Digest, TargetSize: p.File.Size,
			Base: p.Base.Digest, BaseSize: p.Base.Size,
			Blob: ocispec.Descriptor{MediaType: MediaTypeWeightDelta, Digest: digest.FromBytes(d), Size: int64(len(d))},
		}})
	}
	return out, nil
}

// WeightDeltaManifest returns the referrer manifest of deltas of the version
// subject against its parent's manifest parent.
func WeightDeltaManifest(subject ocispec.Descriptor, parent digest.Digest, deltas []FileDelta) ([]byte, error) {
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactTypeWeightDelta,
		Config:       ocispec.DescriptorEmptyJSON,
		Subject:      &ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size},
		Annotations:  map[string]string{AnnotationDeltaParent: parent.String()},
	}
	m.Config.Data = nil
	for _, d := range deltas {
		l := d.Blob
		l.Annotations = map[string]string{
			AnnotationTitle:         d.Path,
			AnnotationDeltaTarget:   d.Target.String(),
			AnnotationDeltaBase:     d.Base.String(),
			AnnotationDeltaBaseSize: strconv.FormatInt(d.BaseSize, 10),
		}
		m.Layers = append(m.Layers, l)
	}
	return json.Marshal(m)
}

// ParseWeightDeltas reads a weight delta referrer manifest and returns the
// deltas it lists for the files of the version it describes: a layer for a
// file the version does not have, or with a malformed annotation, is an
// error.
func ParseWeightDeltas(b []byte, files []File) ([]FileDelta, error) {
	m, err := ParseManifest(b)
	if err != nil {
		return nil, err
	}
	if m.ArtifactType != ArtifactTypeWeightDelta {
		return nil, fmt.Errorf("weight delta manifest: artifact type %q", m.ArtifactType)
	}
	if len(m.Layers) > MaxWeightDeltas {
		return nil, fmt.Errorf("weight delta manifest: %d layers, above %d", len(m.Layers), MaxWeightDeltas)
	}
	var out []FileDelta
	for i, l := range m.Layers {
		fd := FileDelta{Path: l.Annotations[AnnotationTitle], Blob: ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}}
		var perr error
		if fd.Target, perr = digest.Parse(l.Annotations[AnnotationDeltaTarget]); perr == nil {
			fd.Base, perr = digest.Parse(l.Annotations[AnnotationDeltaBase])
		}
		if perr == nil {
			fd.BaseSize, perr = strconv.ParseInt(l.Annotations[AnnotationDeltaBaseSize], 10, 64)
		}
		if perr == nil {
			perr = l.Digest.Validate()
		}
		if perr != nil || l.MediaType != MediaTypeWeightDelta || l.Size < 0 || fd.BaseSize < 0 {
			return nil, fmt.Errorf("weight delta manifest: layer %d malformed (%v)", i, perr)
		}
		j := slices.IndexFunc(files, func(f File) bool { return f.Path == fd.Path })
		if j < 0 || files[j].Digest != fd.Target {
			return nil, fmt.Errorf("weight delta manifest: layer %d makes %s %s, which the version does not have", i, fd.Path, fd.Target)
		}
		fd.TargetSize = files[j].Size
		out = append(out, fd)
	}
	return out, nil
}

// FetchWeightDeltas returns the weight deltas attached to the model version
// manifestDesc names, from the first usable referrer; none when it has none.
func FetchWeightDeltas(ctx context.Context, src oras.ReadOnlyGraphTarget, manifestDesc ocispec.Descriptor) ([]FileDelta, error) {
	_, files, err := readModelManifest(ctx, src, manifestDesc)
	if err != nil {
		return nil, err
	}
	refs, err := referrers(ctx, src, manifestDesc, ArtifactTypeWeightDelta)
	if err != nil {
		return nil, fmt.Errorf("list weight delta referrers: %w", err)
	}
	var lastErr error
	for _, ref := range refs {
		b, err := fetchLimited(ctx, src, ref, MaxManifestBytes)
		if err != nil {
			lastErr = err
			continue
		}
		ds, err := ParseWeightDeltas(b, files)
		if err != nil {
			lastErr = err
			continue
		}
		return ds, nil
	}
	return nil, lastErr
}

// ApplyWeightDelta writes to w the file fd rebuilds from the parent's file
// base and the delta read from delta, a block at a time, and checks what it
// wrote against fd's size and digest; on an error the caller discards what
// w received.
func ApplyWeightDelta(w io.Writer, base io.ReaderAt, delta io.Reader, fd FileDelta) error {
	v := digest.SHA256.Digester()
	n, err := weightdelta.DecodeTo(io.MultiWriter(w, v.Hash()), base, delta, fd.TargetSize)
	if err != nil {
		return fmt.Errorf("weight delta of %s: %w", fd.Path, err)
	}
	if n != fd.TargetSize || v.Digest() != fd.Target {
		return fmt.Errorf("weight delta of %s: the rebuilt file does not match its digest %s", fd.Path, fd.Target)
	}
	return nil
}
