package artifact

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
)

// PromoteOptions describe the version a promotion makes.
type PromoteOptions struct {
	// Name and Version are the promoted version's model name and semver version (its tag in
	// the destination). Required.
	Name, Version string
	// Parent is what the promoted version's lineage names as its parent: the source
	// version, such as "edge/ship-1/fmnist@1.0.0". Required.
	Parent string
	// From is the source's repository in the destination's registry (edge/ship-1/fmnist),
	// from which the files are mounted rather than uploaded again. Empty, or a destination
	// that cannot mount, copies them.
	From string
	// Annotations are set on the promoted version beside those it carries over; they may
	// not set the keys Promote writes itself.
	Annotations map[string]string
	// Created is the promoted version's creation time; zero means now.
	Created time.Time
	// Key, if set, signs the promoted version (SubjectName naming it in the statement)
	// before it is tagged, so that no agent ever sees it unsigned.
	Key         ed25519.PrivateKey
	SubjectName string
}

// Promotion is what Promote did.
type Promotion struct {
	// Descriptor is the promoted version's manifest.
	Descriptor ocispec.Descriptor
	// Source is the source version's manifest.
	Source ocispec.Descriptor
	// Existed is true when the version was there already, the same: nothing was pushed
	// but what it lacked (a chunk index, the signature asked for).
	Existed bool
	// Files is the number of files; Copied those whose bytes went over the wire again
	// because the destination did not mount them.
	Files, Copied int
	// Signed is true when the version was signed now.
	Signed bool
}

// Promote makes the model version ref of src a version of the model opts.Name in dst,
// with the same files: each file's blob is mounted from opts.From when dst can mount
// (a registry, such as the hub's, links the blob it holds; nothing is uploaded), else
// copied. The promoted version carries the source's metrics and lineage annotations
// (data set, cluster, pipeline, run), names opts.Parent as its parent and is produced by
// "promote"; it has a chunk index (the source's, whose files are the same, or one computed
// from the files) and, with opts.Key, a signature, both attached before the tag.
//
// A version opts.Version that dst holds already with the same files and lineage is left
// as it is (Existed), given what it lacks; one with other content is refused with a
// *VersionExistsError.
func Promote(ctx context.Context, src oras.ReadOnlyGraphTarget, ref string, dst oras.GraphTarget, opts PromoteOptions) (Promotion, error) {
	if err := ValidateName(opts.Name); err != nil {
		return Promotion{}, err
	}
	if err := ValidateVersion(opts.Version); err != nil {
		return Promotion{}, err
	}
	if opts.Parent == "" {
		return Promotion{}, errors.New("promote: the parent is required")
	}
	for k := range opts.Annotations {
		switch k {
		case AnnotationName, AnnotationVersion, AnnotationCreated, AnnotationParent, AnnotationProducedBy:
			return Promotion{}, fmt.Errorf("annotation %q is set by promote", k)
		}
	}
	srcDesc, m, files, err := resolveModel(ctx, src, ref)
	if err != nil {
		return Promotion{}, err
	}
	if !isModelManifest(m) {
		return Promotion{}, fmt.Errorf("promote %s: %w: only a model version (ModelPack) is promoted", ref, ErrNotModel)
	}
	created := opts.Created
	if created.IsZero() {
		created = time.Now()
	}
	created = created.UTC().Truncate(time.Second)

	// The config: the source's, naming the promoted version.
	cb, err := fetchLimited(ctx, src, m.Config, MaxManifestBytes)
	if err != nil {
		return Promotion{}, fmt.Errorf("fetch model config: %w", err)
	}
	var cfg ModelConfig
	if err := json.Unmarshal(cb, &cfg); err != nil {
		return Promotion{}, fmt.Errorf("decode model config: %w", err)
	}
	cfg.Descriptor = ModelDescriptor{Name: opts.Name, Version: opts.Version, CreatedAt: &created}
	cfgBytes, err := json.Marshal(cfg)
	if err != nil {
		return Promotion{}, err
	}
	cfgDesc := ocispec.Descriptor{MediaType: MediaTypeModelConfig, Digest: digest.FromBytes(cfgBytes), Size: int64(len(cfgBytes))}

	ann := maps.Clone(m.Annotations)
	if ann == nil {
		ann = map[string]string{}
	}
	maps.Copy(ann, opts.Annotations)
	ann[AnnotationName] = opts.Name
	ann[AnnotationVersion] = opts.Version
	ann[AnnotationCreated] = created.Format(time.RFC3339)
	ann[AnnotationParent] = opts.Parent
	ann[AnnotationProducedBy] = ProducedByPromote
	layers := make([]ocispec.Descriptor, len(m.Layers))
	for i, l := range m.Layers {
		layers[i] = ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size, Annotations: maps.Clone(l.Annotations)}
	}
	nm, mb, mDesc, err := modelManifest(cfgDesc, layers, ann)
	if err != nil {
		return Promotion{}, err
	}
	p := Promotion{Source: srcDesc, Files: len(files), Descriptor: mDesc}

	existing, same, err := checkExistingTag(ctx, dst, PushOptions{Name: opts.Name, Version: opts.Version}, nm)
	if err != nil {
		return Promotion{}, err
	}
	if same {
		p.Descriptor, p.Existed = existing, true
	} else {
		if p.Copied, err = mountLayers(ctx, src, dst, opts.From, layers); err != nil {
			return Promotion{}, err
		}
		if err := pushIfAbsent(ctx, dst, cfgDesc, cfgBytes); err != nil {
			return Promotion{}, fmt.Errorf("push config: %w", err)
		}
		if err := pushIfAbsent(ctx, dst, p.Descriptor, mb); err != nil {
			return Promotion{}, fmt.Errorf("push manifest: %w", err)
		}
	}
	// The chunk index, the reference profile and the signature go up before
	// the tag, as Push's do.
	if err := promoteChunkIndex(ctx, src, srcDesc, dst, p.Descriptor, files); err != nil {
		return Promotion{}, err
	}
	if err := promoteProfile(ctx, src, srcDesc, dst, p.Descriptor); err != nil {
		return Promotion{}, err
	}
	if opts.Key != nil {
		if p.Signed, err = signOnce(ctx, dst, p.Descriptor, opts.SubjectName, opts.Key); err != nil {
			return Promotion{}, err
		}
	}
	if !p.Existed {
		if err := dst.Tag(ctx, p.Descriptor, opts.Version); err != nil {
			return Promotion{}, fmt.Errorf("tag %s: %w", opts.Version, err)
		}
	}
	return p, nil
}

// mountLayers gives dst each layer's blob: mounted from the repository from where dst can
// mount, else copied from src. It returns how many were copied.
func mountLayers(ctx context.Context, src oras.ReadOnlyTarget, dst oras.Target, from string, layers []ocispec.Descriptor) (int, error) {
	mounter, canMount := dst.(registry.Mounter)
	copied := 0
	for _, l := range layers {
		desc := ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size}
		ok, err := dst.Exists(ctx, desc)
		if err != nil {
			return copied, fmt.Errorf("check %s: %w", l.Digest, err)
		}
		if ok {
			continue
		}
		fetch := func() (io.ReadCloser, error) {
			copied++
			return src.Fetch(ctx, desc)
		}
		if canMount && from != "" {
			if err := mounter.Mount(ctx, desc, from, fetch); err != nil {
				return copied, fmt.Errorf("mount %s from %s: %w", l.Digest, from, err)
			}
			continue
		}
		rc, err := fetch()
		if err != nil {
			return copied, fmt.Errorf("fetch %s: %w", l.Digest, err)
		}
		err = dst.Push(ctx, desc, rc)
		rc.Close()
		if err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
			return copied, fmt.Errorf("copy %s: %w", l.Digest, err)
		}
	}
	return copied, nil
}

// promoteChunkIndex attaches to the promoted manifest the source's chunk index, which
// describes the same files, or one computed from the files when the source has none; a
// promoted version that has one already is left alone.
func promoteChunkIndex(ctx context.Context, src oras.ReadOnlyGraphTarget, srcDesc ocispec.Descriptor, dst oras.GraphTarget, desc ocispec.Descriptor, files []File) error {
	if _, err := FetchChunkIndex(ctx, dst, desc); err == nil {
		return nil
	}
	idx, err := FetchChunkIndex(ctx, src, srcDesc)
	if errors.Is(err, ErrNoChunkIndex) {
		idx, err = computeChunkIndex(ctx, src, files)
	}
	if err != nil {
		return fmt.Errorf("chunk index: %w", err)
	}
	if _, err := pushChunkIndex(ctx, dst, desc, idx); err != nil {
		return fmt.Errorf("push chunk index: %w", err)
	}
	return nil
}

// promoteProfile attaches the source version's reference profile, if it has
// one, to the promoted version: its clusters monitor it against the data it
// was made for.
func promoteProfile(ctx context.Context, src oras.ReadOnlyGraphTarget, srcDesc ocispec.Descriptor, dst oras.GraphTarget, desc ocispec.Descriptor) error {
	_, b, err := LatestProfile(ctx, src, srcDesc)
	switch {
	case errors.Is(err, ErrNoProfile):
		return nil
	case err != nil:
		return fmt.Errorf("reference profile: %w", err)
	}
	if _, err := PushProfile(ctx, dst, desc, b, ProfilePushOptions{}); err != nil {
		return fmt.Errorf("push reference profile: %w", err)
	}
	return nil
}

// computeChunkIndex chunks each file as src serves it, checking its digest.
func computeChunkIndex(ctx context.Context, src oras.ReadOnlyTarget, files []File) (*ChunkIndex, error) {
	var largest int64
	for _, f := range files {
		largest = max(largest, f.Size)
	}
	params := ChunkParamsForSize(largest)
	idx := &ChunkIndex{Version: ChunkIndexVersion, Params: params, Files: make([]FileChunks, 0, len(files))}
	for _, f := range files {
		rc, err := src.Fetch(ctx, ocispec.Descriptor{MediaType: f.MediaType, Digest: f.Digest, Size: f.Size})
		if err != nil {
			return nil, fmt.Errorf("fetch %s: %w", f.Path, err)
		}
		fc, err := ChunkReader(ctx, rc, params)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("chunk %s: %w", f.Path, err)
		}
		if fc.Digest != f.Digest || fc.Size != f.Size {
			return nil, fmt.Errorf("file %s: read %s (%d bytes), want %s (%d bytes)", f.Path, fc.Digest, fc.Size, f.Digest, f.Size)
		}
		fc.Path = f.Path
		idx.Files = append(idx.Files, fc)
	}
	return idx, nil
}

// signOnce signs desc with key unless it carries a valid signature of that key already.
func signOnce(ctx context.Context, dst oras.GraphTarget, desc ocispec.Descriptor, subjectName string, key ed25519.PrivateKey) (bool, error) {
	sigs, err := Signatures(ctx, dst, desc, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)})
	if err != nil && !errors.Is(err, errdef.ErrUnsupported) {
		return false, err
	}
	for _, s := range sigs {
		if s.Valid {
			return false, nil
		}
	}
	if _, err := Sign(ctx, dst, desc, subjectName, key); err != nil {
		return false, err
	}
	return true, nil
}
