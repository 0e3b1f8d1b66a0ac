package models

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/registry"
)

// Writer is the registry WriteWeightDeltas reads the versions from and
// attaches their deltas to.
type Writer interface {
	Registry
	PutBlob(ctx context.Context, repo string, b []byte) (digest.Digest, error)
	PutManifest(ctx context.Context, repo, mediaType string, body []byte) (ocispec.Descriptor, error)
}

// MaxDeltaFileBytes bounds the files WriteWeightDeltas encodes: a delta
// holds both versions of a file in memory.
const MaxDeltaFileBytes = 2 << 30

// WriteWeightDeltas attaches to the model version a registry event tags the
// weight deltas of its changed files against the parent version it
// declares (artifact.AnnotationParent), when the registry holds the parent
// and the version has none yet. It does nothing for other events, and
// returns (true, nil) when it attached deltas.
func WriteWeightDeltas(ctx context.Context, reg Writer, ev registry.Event) (bool, error) {
	if ev.Tag == "" || ev.Deleted || ev.ArtifactType != artifact.ArtifactTypeModel || !isModelRepo(ev.Repo) {
		return false, nil
	}
	mb, desc, err := reg.Manifest(ctx, ev.Repo, ev.Digest)
	if err != nil {
		return false, fmt.Errorf("read manifest %s: %w", ev.Digest, err)
	}
	m, err := artifact.ParseManifest(mb)
	if err != nil {
		return false, err
	}
	parentRef := m.Annotations[artifact.AnnotationParent]
	if parentRef == "" {
		return false, nil
	}
	if refs, err := reg.Referrers(ctx, ev.Repo, ev.Digest, artifact.ArtifactTypeWeightDelta); err != nil {
		return false, err
	} else if len(refs) > 0 {
		return false, nil
	}
	parentRepo, parentDesc, err := resolveParent(ctx, reg, ev.Repo, parentRef)
	if err != nil {
		return false, err
	}
	pb, _, err := reg.Manifest(ctx, parentRepo, parentDesc.Digest)
	if err != nil {
		return false, fmt.Errorf("read parent manifest: %w", err)
	}
	pm, err := artifact.ParseManifest(pb)
	if err != nil {
		return false, fmt.Errorf("parent %s: %w", parentRef, err)
	}
	files, err := artifact.ModelFiles(m)
	if err != nil {
		return false, err
	}
	parentFiles, err := artifact.ModelFiles(pm)
	if err != nil {
		return false, fmt.Errorf("parent %s: %w", parentRef, err)
	}
	pairs := artifact.DeltaPairs(files, parentFiles)
	deltas, err := artifact.EncodeWeightDeltas(ctx, pairs, func(d digest.Digest) ([]byte, error) {
		b, err := readFile(ctx, reg, ev.Repo, d)
		if err != nil && parentRepo != ev.Repo {
			b, err = readFile(ctx, reg, parentRepo, d)
		}
		return b, err
	})
	if err != nil || len(deltas) == 0 {
		return false, err
	}
	fds := make([]artifact.FileDelta, len(deltas))
	for i, d := range deltas {
		if _, err := reg.PutBlob(ctx, ev.Repo, d.Data); err != nil {
			return false, err
		}
		fds[i] = d.FileDelta
	}
	if _, err := reg.PutBlob(ctx, ev.Repo, ocispec.DescriptorEmptyJSON.Data); err != nil {
		return false, err
	}
	body, err := artifact.WeightDeltaManifest(ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}, parentDesc.Digest, fds)
	if err != nil {
		return false, err
	}
	if _, err := reg.PutManifest(ctx, ev.Repo, ocispec.MediaTypeImageManifest, body); err != nil {
		return false, fmt.Errorf("attach weight deltas: %w", err)
	}
	return true, nil
}

// isModelRepo reports whether repo holds models: models/NAME or
// edge/CLUSTER/NAME.
func isModelRepo(repo string) bool {
	return strings.HasPrefix(repo, RepoPrefix) || strings.HasPrefix(repo, v1alpha1.EdgeRepositoryPrefix)
}

// resolveParent finds the manifest a parent annotation names: NAME@VERSION
// (edge/CLUSTER/NAME@VERSION) or a digest in the version's own repository.
func resolveParent(ctx context.Context, reg Registry, repo, ref string) (string, ocispec.Descriptor, error) {
	if d, err := digest.Parse(ref); err == nil {
		desc, err := reg.Resolve(ctx, repo, d.String())
		return repo, desc, err
	}
	name, version, ok := strings.Cut(ref, "@")
	if !ok {
		return "", ocispec.Descriptor{}, fmt.Errorf("parent %q: want NAME@VERSION or a digest", ref)
	}
	prepo, err := v1alpha1.ModelRepository(name)
	if err != nil {
		return "", ocispec.Descriptor{}, fmt.Errorf("parent %q: %w", ref, err)
	}
	desc, err := reg.Resolve(ctx, prepo, version)
	if err != nil {
		return "", ocispec.Descriptor{}, fmt.Errorf("parent %q: %w", ref, err)
	}
	return prepo, desc, nil
}

// readFile reads a model file's blob, bounded by MaxDeltaFileBytes.
func readFile(ctx context.Context, reg Registry, repo string, d digest.Digest) ([]byte, error) {
	f, size, err := reg.OpenBlob(ctx, repo, d)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > MaxDeltaFileBytes {
		return nil, fmt.Errorf("%s: %d bytes, above the %d a delta is made of", d, size, MaxDeltaFileBytes)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, err
	}
	return b, nil
}
