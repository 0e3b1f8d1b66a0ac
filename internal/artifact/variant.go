package artifact

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"
)

// ArtifactTypeVariant is the artifactType of a variant manifest: a ModelPack
// model (config, one raw layer per file) whose subject is the model version
// it is a variant of.
const ArtifactTypeVariant = "application/vnd.outpost.model-variant.v1+json"

// ErrVariantExists is matched (errors.Is) by the error PushVariant returns
// when the version already has a variant of that name with other content.
var ErrVariantExists = errors.New("model version already has a variant of that name")

// ErrNoVersion is matched by the error PushVariant returns when the model
// version it would attach a variant to does not exist.
var ErrNoVersion = errors.New("model version does not exist")

// ErrNoVariant is matched by the error ResolveVariant returns when the
// version has no variant of that name.
var ErrNoVariant = errors.New("no such variant")

// VariantPushOptions describe a variant being pushed.
type VariantPushOptions struct {
	// Name and Version name the model version the variant belongs to; it
	// must exist in the target. Required.
	Name, Version string
	// Meta is what the variant is and costs; Meta.Name is required.
	// SizeBytes, when zero, is set from the files, and otherwise must
	// equal their total size.
	Meta VariantMeta
	// Format overrides the model format derived from file extensions.
	Format string
	// Created is the creation time; zero means now. It is ignored when
	// deciding whether a variant pushed again is the same content.
	Created time.Time
	// Chunking sets the chunk index parameters; zero means
	// ChunkParamsForSize of the largest file.
	Chunking ChunkParams
	// Progress, if set, is called as file bytes are uploaded.
	Progress func(done, total int64)
}

// Variant is one variant of a model version, as listed by Variants.
type Variant struct {
	// Meta is what the variant is and costs.
	Meta VariantMeta `json:"meta"`
	// Digest is the variant manifest's digest.
	Digest digest.Digest `json:"digest"`
	// Descriptor describes the variant manifest.
	Descriptor ocispec.Descriptor `json:"-"`
	// Files are the variant's files.
	Files []File `json:"files"`
	// Created is when it was pushed.
	Created time.Time `json:"created,omitzero"`
}

// PushVariant packs src (a model file or folder) into a variant of the model
// version opts.Name@opts.Version held in dst, the model's repository: a
// model artifact of its own (raw layers, config, chunk index) of artifact
// type ArtifactTypeVariant whose subject is the version's manifest, so that
// the referrers API lists it and the version's tag still names the full
// model. Nothing is pushed when the version is missing (ErrNoVersion), the
// metadata is invalid, or the version has a variant of that name with other
// files or metadata (ErrVariantExists); the same variant pushed again
// changes nothing and returns the existing manifest.
func PushVariant(ctx context.Context, dst oras.GraphTarget, src string, opts VariantPushOptions) (ocispec.Descriptor, error) {
	if err := ValidateName(opts.Name); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := ValidateVersion(opts.Version); err != nil {
		return ocispec.Descriptor{}, err
	}
	meta := opts.Meta
	meta.Operators = sortedOperators(meta.Operators)
	if err := meta.Validate(); err != nil {
		return ocispec.Descriptor{}, err
	}
	subject, err := dst.Resolve(ctx, opts.Version)
	if errors.Is(err, errdef.ErrNotFound) {
		return ocispec.Descriptor{}, fmt.Errorf("%w: model %s has no version %s: push the model first", ErrNoVersion, opts.Name, opts.Version)
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("resolve %s: %w", opts.Version, err)
	}
	sm, _, err := readModelManifest(ctx, dst, subject)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("model %s version %s: %w", opts.Name, opts.Version, err)
	}
	subject = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: sm.ArtifactType, Digest: subject.Digest, Size: subject.Size}

	local, files, idx, err := hashModel(ctx, src, opts.Chunking)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	total := totalSize(files)
	switch {
	case meta.SizeBytes == 0:
		meta.SizeBytes = total
	case meta.SizeBytes != total:
		return ocispec.Descriptor{}, fmt.Errorf("variant sizeBytes %d: the files hold %d bytes", meta.SizeBytes, total)
	}
	created := opts.Created
	if created.IsZero() {
		created = time.Now()
	}
	created = created.UTC().Truncate(time.Second)
	format := opts.Format
	if format == "" {
		format = formatOf(files)
	}
	layers, cfgDesc, cfgBytes, err := modelLayers(files, opts.Name, opts.Version, format, "", created)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	ann := meta.Annotations()
	ann[AnnotationName] = opts.Name
	ann[AnnotationVersion] = opts.Version
	ann[AnnotationCreated] = created.Format(time.RFC3339)
	m, mb, mDesc, err := variantManifest(subject, cfgDesc, layers, ann)
	if err != nil {
		return ocispec.Descriptor{}, err
	}

	existing, err := Variants(ctx, dst, subject)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("list variants of %s@%s: %w", opts.Name, opts.Version, err)
	}
	for _, v := range existing {
		if v.Meta.Name != meta.Name {
			continue
		}
		old, _, err := readModelManifest(ctx, dst, v.Descriptor)
		if err != nil || !sameContent(old, m) {
			return ocispec.Descriptor{}, fmt.Errorf("%w: %s@%s already has variant %s (digest %s) with other content",
				ErrVariantExists, opts.Name, opts.Version, meta.Name, v.Digest)
		}
		if opts.Progress != nil {
			opts.Progress(total, total)
		}
		if _, err := pushChunkIndex(ctx, dst, v.Descriptor, idx); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("push chunk index: %w", err)
		}
		return v.Descriptor, nil
	}

	if err := pushFiles(ctx, dst, local, layers, opts.Progress); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := pushIfAbsent(ctx, dst, cfgDesc, cfgBytes); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push config: %w", err)
	}
	// The variant's chunk index goes up before the variant itself: a
	// variant becomes visible when its manifest names the version, and an
	// agent must find its index then.
	if _, err := pushChunkIndex(ctx, dst, mDesc, idx); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push chunk index: %w", err)
	}
	if err := pushIfAbsent(ctx, dst, mDesc, mb); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push variant manifest: %w", err)
	}
	return mDesc, nil
}

// variantManifest builds a variant manifest of subject with config cfg,
// layers and annotations ann, and returns it with its bytes and descriptor.
func variantManifest(subject, cfg ocispec.Descriptor, layers []ocispec.Descriptor, ann map[string]string) (*ocispec.Manifest, []byte, ocispec.Descriptor, error) {
	subj := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	m := &ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactTypeVariant,
		Config:       cfg,
		Layers:       layers,
		Subject:      &subj,
		Annotations:  ann,
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, nil, ocispec.Descriptor{}, err
	}
	return m, mb, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ArtifactTypeVariant,
		Digest: digest.FromBytes(mb), Size: int64(len(mb))}, nil
}

// Variants lists the variants of the model manifest subject, sorted by
// name, then newest first. A referrer whose manifest or metadata is
// malformed, or whose subject is not subject, is left out: variants are
// read from outside.
func Variants(ctx context.Context, src oras.ReadOnlyGraphTarget, subject ocispec.Descriptor) ([]Variant, error) {
	refs, err := referrers(ctx, src, subject, ArtifactTypeVariant)
	if err != nil {
		return nil, err
	}
	out := make([]Variant, 0, len(refs))
	for _, ref := range refs {
		v, err := readVariant(ctx, src, ref, subject.Digest)
		if err != nil {
			continue
		}
		out = append(out, v)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Meta.Name != out[j].Meta.Name {
			return out[i].Meta.Name < out[j].Meta.Name
		}
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].Digest < out[j].Digest
	})
	return out, nil
}

// readVariant reads and checks one variant referrer of subject.
func readVariant(ctx context.Context, src oras.ReadOnlyGraphTarget, ref ocispec.Descriptor, subject digest.Digest) (Variant, error) {
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: ArtifactTypeVariant, Digest: ref.Digest, Size: ref.Size}
	m, files, err := readModelManifest(ctx, src, desc)
	if err != nil {
		return Variant{}, err
	}
	if m.ArtifactType != ArtifactTypeVariant || m.Subject == nil || m.Subject.Digest != subject {
		return Variant{}, fmt.Errorf("variant %s: not a variant of %s", ref.Digest, subject)
	}
	meta, err := VariantMetaFromAnnotations(m.Annotations)
	if err != nil {
		return Variant{}, fmt.Errorf("variant %s: %w", ref.Digest, err)
	}
	v := Variant{Meta: meta, Digest: ref.Digest, Descriptor: desc, Files: files}
	if t, err := time.Parse(time.RFC3339, m.Annotations[AnnotationCreated]); err == nil {
		v.Created = t
	}
	return v, nil
}

// ResolveVariant resolves ref (a version tag or digest) in src and returns
// its variant called name (the newest, should there be several).
func ResolveVariant(ctx context.Context, src oras.ReadOnlyGraphTarget, ref, name string) (Variant, error) {
	desc, _, _, err := resolveModel(ctx, src, ref)
	if err != nil {
		return Variant{}, err
	}
	vs, err := Variants(ctx, src, desc)
	if err != nil {
		return Variant{}, fmt.Errorf("list variants: %w", err)
	}
	var names []string
	for _, v := range vs {
		if v.Meta.Name == name {
			return v, nil
		}
		names = append(names, v.Meta.Name)
	}
	if len(names) == 0 {
		return Variant{}, fmt.Errorf("%w %q: the version has no variants", ErrNoVariant, name)
	}
	return Variant{}, fmt.Errorf("%w %q (variants: %v)", ErrNoVariant, name, names)
}
