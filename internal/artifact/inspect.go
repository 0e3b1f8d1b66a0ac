package artifact

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"
)

// Lineage records where a model version came from: its parent version, what
// produced it, and for a version a pipeline produced at the edge, the
// cluster, pipeline, run and the digest of the data set it was trained on.
type Lineage struct {
	Parent     string `json:"parent,omitempty"`
	ProducedBy string `json:"producedBy,omitempty"`
	Dataset    string `json:"dataset,omitempty"`
	Cluster    string `json:"cluster,omitempty"`
	Pipeline   string `json:"pipeline,omitempty"`
	Run        string `json:"run,omitempty"`
	// FederatedJob and FederatedRound name the federated job and round that made the model.
	FederatedJob   string `json:"federatedJob,omitempty"`
	FederatedRound string `json:"federatedRound,omitempty"`
}

// lineageOf reads the lineage annotations of a model manifest.
func lineageOf(ann map[string]string) Lineage {
	return Lineage{Parent: ann[AnnotationParent], ProducedBy: ann[AnnotationProducedBy], Dataset: ann[AnnotationDataset],
		Cluster: ann[AnnotationCluster], Pipeline: ann[AnnotationPipeline], Run: ann[AnnotationRun],
		FederatedJob: ann[AnnotationFederatedJob], FederatedRound: ann[AnnotationFederatedRound]}
}

// ModelInfo describes a model version without fetching its files.
type ModelInfo struct {
	Name          string             `json:"name,omitempty"`
	Version       string             `json:"version,omitempty"`
	Digest        digest.Digest      `json:"digest"`
	Descriptor    ocispec.Descriptor `json:"-"`
	Size          int64              `json:"size"` // manifest + config + layers
	Format        string             `json:"format,omitempty"`
	Files         []File             `json:"files"`
	Lineage       Lineage            `json:"lineage"`
	Metrics       map[string]string  `json:"metrics,omitempty"`
	Created       time.Time          `json:"created,omitzero"`
	Signatures    []SignatureInfo    `json:"signatures"`
	HasChunkIndex bool               `json:"hasChunkIndex"`
	// Profile is the newest reference profile attached, if any.
	Profile *ProfileRef `json:"profile,omitempty"`
}

// Signed reports whether at least one signature verified.
func (mi *ModelInfo) Signed() bool {
	for _, s := range mi.Signatures {
		if s.Valid {
			return true
		}
	}
	return false
}

// Inspect resolves ref (a tag or digest) in src and describes the model:
// name, version, digest, total size, files, format, lineage, metrics,
// creation time, signatures verified against trusted, whether a valid
// chunk index is attached, and the newest reference profile. Where src
// cannot list referrers, Signatures is empty, HasChunkIndex false and
// Profile nil.
func Inspect(ctx context.Context, src oras.ReadOnlyGraphTarget, ref string, trusted []ed25519.PublicKey) (*ModelInfo, error) {
	desc, m, files, err := resolveModel(ctx, src, ref)
	if err != nil {
		return nil, err
	}
	info := &ModelInfo{
		Name:       m.Annotations[AnnotationName],
		Version:    m.Annotations[AnnotationVersion],
		Digest:     desc.Digest,
		Descriptor: desc,
		Size:       desc.Size + m.Config.Size + totalSize(files),
		Files:      files,
		Lineage:    lineageOf(m.Annotations),
		Signatures: []SignatureInfo{},
	}
	for k, v := range m.Annotations {
		if key, ok := strings.CutPrefix(k, AnnotationMetricPrefix); ok {
			if info.Metrics == nil {
				info.Metrics = map[string]string{}
			}
			info.Metrics[key] = v
		}
	}
	if t, err := time.Parse(time.RFC3339, m.Annotations[AnnotationCreated]); err == nil {
		info.Created = t
	}
	if m.Config.MediaType == MediaTypeModelConfig {
		cb, err := fetchLimited(ctx, src, m.Config, MaxManifestBytes)
		if err != nil {
			return nil, fmt.Errorf("fetch model config: %w", err)
		}
		var cfg ModelConfig
		if err := json.Unmarshal(cb, &cfg); err != nil {
			return nil, fmt.Errorf("decode model config: %w", err)
		}
		info.Format = cfg.Config.Format
		if info.Name == "" {
			info.Name = cfg.Descriptor.Name
		}
		if info.Version == "" {
			info.Version = cfg.Descriptor.Version
		}
		if info.Created.IsZero() && cfg.Descriptor.CreatedAt != nil {
			info.Created = *cfg.Descriptor.CreatedAt
		}
	}
	if info.Format == "" {
		info.Format = formatOf(files)
	}

	sigs, err := Signatures(ctx, src, desc, trusted)
	switch {
	case err == nil:
		info.Signatures = sigs
	case !errors.Is(err, errdef.ErrUnsupported):
		return nil, err
	}
	_, err = FetchChunkIndex(ctx, src, desc)
	switch {
	case err == nil:
		info.HasChunkIndex = true
	case !errors.Is(err, ErrNoChunkIndex) && !errors.Is(err, errdef.ErrUnsupported):
		return nil, err
	}
	profiles, err := Profiles(ctx, src, desc)
	switch {
	case err == nil && len(profiles) > 0:
		info.Profile = &profiles[0]
	case err != nil && !errors.Is(err, errdef.ErrUnsupported):
		return nil, err
	}
	return info, nil
}
