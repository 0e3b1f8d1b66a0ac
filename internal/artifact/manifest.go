package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
)

// ErrNotModel is returned when a manifest is neither a ModelPack model nor an
// artifact whose layers all name a file.
var ErrNotModel = errors.New("not a model artifact")

// File is one file of a model: one raw layer.
type File struct {
	Path      string        `json:"path"`
	Size      int64         `json:"size"`
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
}

// ModelConfig is the ModelPack model config blob
// (application/vnd.cncf.model.config.v1+json), reduced to the fields Outpost
// writes; unknown fields are ignored when reading.
type ModelConfig struct {
	Descriptor ModelDescriptor `json:"descriptor"`
	ModelFS    ModelFS         `json:"modelfs"`
	Config     ModelExecConfig `json:"config"`
}

// ModelDescriptor is the general information about a model.
type ModelDescriptor struct {
	Name      string     `json:"name,omitempty"`
	Version   string     `json:"version,omitempty"`
	CreatedAt *time.Time `json:"createdAt,omitempty"`
}

// ModelFS lists the layer digests of the model, in layer order.
type ModelFS struct {
	Type    string          `json:"type"`
	DiffIDs []digest.Digest `json:"diffIds"`
}

// ModelExecConfig holds the technical metadata of the model.
type ModelExecConfig struct {
	Format    string `json:"format,omitempty"`
	ParamSize string `json:"paramSize,omitempty"`
}

// ParseManifest decodes and validates an OCI image manifest read from
// outside: size limit, schemaVersion 2, image manifest media type, and
// well-formed config, layer and subject descriptors.
func ParseManifest(b []byte) (*ocispec.Manifest, error) {
	if len(b) > MaxManifestBytes {
		return nil, fmt.Errorf("manifest is %d bytes, above the %d byte limit", len(b), MaxManifestBytes)
	}
	var m ocispec.Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode manifest: trailing data")
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("invalid manifest: schemaVersion %d, want 2", m.SchemaVersion)
	}
	if m.MediaType != "" && m.MediaType != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("invalid manifest: media type %q, want %s", m.MediaType, ocispec.MediaTypeImageManifest)
	}
	if err := validateDescriptor(m.Config); err != nil {
		return nil, fmt.Errorf("invalid manifest config: %w", err)
	}
	if len(m.Layers) > MaxFiles {
		return nil, fmt.Errorf("invalid manifest: %d layers, above the %d limit", len(m.Layers), MaxFiles)
	}
	for i, l := range m.Layers {
		if err := validateDescriptor(l); err != nil {
			return nil, fmt.Errorf("invalid manifest layer %d: %w", i, err)
		}
	}
	if m.Subject != nil {
		if err := validateDescriptor(*m.Subject); err != nil {
			return nil, fmt.Errorf("invalid manifest subject: %w", err)
		}
	}
	return &m, nil
}

func validateDescriptor(d ocispec.Descriptor) error {
	if d.MediaType == "" {
		return errors.New("missing media type")
	}
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("invalid digest %q: %w", d.Digest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("negative size %d", d.Size)
	}
	return nil
}

// isModelManifest reports whether m is a ModelPack model manifest.
func isModelManifest(m *ocispec.Manifest) bool {
	return m.ArtifactType == ArtifactTypeModel || m.Config.MediaType == MediaTypeModelConfig
}

// layerPath returns the file path a layer names, from the model-spec
// filepath annotation or the OCI title annotation.
func layerPath(l ocispec.Descriptor) (string, bool, error) {
	fp, okF := l.Annotations[AnnotationFilepath]
	title, okT := l.Annotations[AnnotationTitle]
	switch {
	case okF && okT && fp != title:
		return "", false, fmt.Errorf("layer %s: filepath %q and title %q disagree", l.Digest, fp, title)
	case okF:
		return fp, true, nil
	case okT:
		return title, true, nil
	}
	return "", false, nil
}

// ModelFiles validates m as a model (or a plain artifact whose layers all
// name files) and returns its files in layer order. Paths are validated and
// checked for duplicates.
func ModelFiles(m *ocispec.Manifest) ([]File, error) {
	model := isModelManifest(m)
	if !model && len(m.Layers) == 0 {
		return nil, ErrNotModel
	}
	files := make([]File, 0, len(m.Layers))
	paths := make([]string, 0, len(m.Layers))
	for _, l := range m.Layers {
		p, ok, err := layerPath(l)
		if err != nil {
			return nil, err
		}
		if !ok {
			if !model {
				return nil, fmt.Errorf("%w: layer %s names no file", ErrNotModel, l.Digest)
			}
			return nil, fmt.Errorf("model layer %s has no %s annotation", l.Digest, AnnotationFilepath)
		}
		if err := ValidatePath(p); err != nil {
			return nil, err
		}
		if l.Annotations[annotationORASUnpack] == "true" || (strings.HasPrefix(l.MediaType, "application/vnd.cncf.model.") && strings.Contains(l.MediaType, ".tar")) {
			return nil, fmt.Errorf("file %q: archive layer media type %q is not supported", p, l.MediaType)
		}
		if err := validateSHA256(l.Digest); err != nil {
			return nil, fmt.Errorf("file %q: %w", p, err)
		}
		files = append(files, File{Path: p, Size: l.Size, Digest: l.Digest, MediaType: l.MediaType})
		paths = append(paths, p)
	}
	if err := checkPathSet(paths); err != nil {
		return nil, err
	}
	return files, nil
}

// fetchLimited fetches a blob of at most limit bytes, verifying its size and
// digest. The descriptor size is checked before anything is allocated.
func fetchLimited(ctx context.Context, src content.Fetcher, desc ocispec.Descriptor, limit int64) ([]byte, error) {
	if desc.Size < 0 || desc.Size > limit {
		return nil, fmt.Errorf("blob %s is %d bytes, above the %d byte limit", desc.Digest, desc.Size, limit)
	}
	if err := desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("invalid digest %q: %w", desc.Digest, err)
	}
	return content.FetchAll(ctx, src, desc)
}

// referrers lists the referrers of desc with the given artifact type, using
// the registry's referrers API where there is one.
func referrers(ctx context.Context, src content.ReadOnlyGraphStorage, desc ocispec.Descriptor, artifactType string) ([]ocispec.Descriptor, error) {
	refs, err := registry.Referrers(ctx, src, desc, artifactType)
	if err != nil {
		return nil, err
	}
	// A store without the referrers API cannot filter by artifact type.
	out := refs[:0]
	for _, r := range refs {
		if artifactType == "" || r.ArtifactType == artifactType {
			out = append(out, r)
		}
	}
	return out, nil
}

// pushIfAbsent pushes b as desc unless dst already has it.
func pushIfAbsent(ctx context.Context, dst content.Storage, desc ocispec.Descriptor, b []byte) error {
	ok, err := dst.Exists(ctx, desc)
	if err != nil {
		return fmt.Errorf("check %s: %w", desc.Digest, err)
	}
	if ok {
		return nil
	}
	if err := dst.Push(ctx, desc, bytes.NewReader(b)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return fmt.Errorf("push %s: %w", desc.Digest, err)
	}
	return nil
}

// pushReferrer pushes an artifact manifest with one layer (b, described by
// layer) and the empty config, whose subject is subject.
func pushReferrer(ctx context.Context, dst oras.Target, subject ocispec.Descriptor, artifactType string, layer ocispec.Descriptor, b []byte, annotations map[string]string) (ocispec.Descriptor, error) {
	if err := pushIfAbsent(ctx, dst, ocispec.DescriptorEmptyJSON, ocispec.DescriptorEmptyJSON.Data); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := pushIfAbsent(ctx, dst, layer, b); err != nil {
		return ocispec.Descriptor{}, err
	}
	subj := ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: ocispec.DescriptorEmptyJSON.Digest, Size: ocispec.DescriptorEmptyJSON.Size},
		Layers:       []ocispec.Descriptor{layer},
		Subject:      &subj,
		Annotations:  annotations,
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: artifactType, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	if err := pushIfAbsent(ctx, dst, desc, mb); err != nil {
		return ocispec.Descriptor{}, err
	}
	return desc, nil
}

// resolveModel resolves ref in src and reads, checks and parses the model
// manifest it names, with the model's files.
func resolveModel(ctx context.Context, src oras.ReadOnlyTarget, ref string) (ocispec.Descriptor, *ocispec.Manifest, []File, error) {
	desc, err := src.Resolve(ctx, ref)
	if err != nil {
		return ocispec.Descriptor{}, nil, nil, fmt.Errorf("resolve %s: %w", ref, err)
	}
	m, files, err := readModelManifest(ctx, src, desc)
	if err != nil {
		return ocispec.Descriptor{}, nil, nil, err
	}
	desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: m.ArtifactType, Digest: desc.Digest, Size: desc.Size}
	return desc, m, files, nil
}

// readModelManifest fetches the manifest desc names, bounded, and parses it
// and its files.
func readModelManifest(ctx context.Context, src content.Fetcher, desc ocispec.Descriptor) (*ocispec.Manifest, []File, error) {
	mb, err := fetchLimited(ctx, src, desc, MaxManifestBytes)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch manifest %s: %w", desc.Digest, err)
	}
	m, err := ParseManifest(mb)
	if err != nil {
		return nil, nil, err
	}
	files, err := ModelFiles(m)
	if err != nil {
		return nil, nil, err
	}
	return m, files, nil
}
