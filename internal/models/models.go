// Package models indexes the model versions a hub's registry holds: which
// versions of a model exist, which one a semver constraint resolves to, and
// whether a version carries a valid signature from a trusted key.
package models

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/hub"
	"outpost.dev/outpost/internal/registry"
	"outpost.dev/outpost/internal/versions"
)

// RepoPrefix is the repository prefix under which fleet-wide models live: models/<name>.
// Models produced at the edge live under edge/<cluster>/<name>; v1alpha1.ModelRepository
// maps a name to its repository.
const RepoPrefix = v1alpha1.ModelRepositoryPrefix

// maxEnvelopeBytes bounds a signature envelope read from the registry.
const maxEnvelopeBytes = 1 << 20

// Registry is what the index reads from the hub's registry.
type Registry interface {
	Tags(ctx context.Context, repo string) ([]string, error)
	Resolve(ctx context.Context, repo, reference string) (ocispec.Descriptor, error)
	Manifest(ctx context.Context, repo string, d digest.Digest) ([]byte, ocispec.Descriptor, error)
	Referrers(ctx context.Context, repo string, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error)
	OpenBlob(ctx context.Context, repo string, d digest.Digest) (*os.File, int64, error)
	Tombstone(ctx context.Context, repo, tag string) (registry.Tombstone, error)
}

// Index resolves model versions for deployments. It is safe for concurrent use.
type Index struct {
	reg Registry

	mu      sync.RWMutex
	trusted []ed25519.PublicKey
}

// NewIndex returns an index of the models in reg that trusts the given signing keys.
func NewIndex(reg Registry, trusted []ed25519.PublicKey) *Index {
	return &Index{reg: reg, trusted: slices.Clone(trusted)}
}

// SetTrusted replaces the signing keys the index trusts. Resolutions that
// start afterwards use them; the caller recomputes what depends on them
// (hub.Server.ModelsChanged).
func (x *Index) SetTrusted(keys []ed25519.PublicKey) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.trusted = slices.Clone(keys)
}

// Trusted returns the signing keys the index trusts now.
func (x *Index) Trusted() []ed25519.PublicKey {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return slices.Clone(x.trusted)
}

// Affects reports whether a registry event can change what a deployment
// resolves to: a model version tagged, moved or deleted, or a signature
// attached, or a variant pushed or deleted. Pushing blobs, other untagged
// manifests or chunk indexes cannot.
func Affects(ev registry.Event) bool {
	if !strings.HasPrefix(ev.Repo, RepoPrefix) {
		return false
	}
	return ev.Tag != "" || ev.Deleted || ev.ArtifactType == artifact.ArtifactTypeSignature || ev.ArtifactType == artifact.ArtifactTypeVariant
}

// ResolveModel picks the highest version of model name that matches
// constraint; with requireSigned only versions with a valid signature from a
// trusted key count.
func (x *Index) ResolveModel(ctx context.Context, name, constraint string, requireSigned bool) (hub.ResolvedModel, error) {
	reg := x.reg
	repo, err := v1alpha1.ModelRepository(name)
	if err != nil {
		return hub.ResolvedModel{}, err
	}
	tags, err := reg.Tags(ctx, repo)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return hub.ResolvedModel{}, fmt.Errorf("model %q not found in the registry", name)
		}
		return hub.ResolvedModel{}, fmt.Errorf("list versions of model %q: %w", name, err)
	}
	var candidates []string
	for _, t := range tags {
		if validVersion(t) {
			candidates = append(candidates, t)
		}
	}
	var unsigned []string
	for len(candidates) > 0 {
		v, err := versions.Resolve(constraint, candidates)
		if err != nil {
			break
		}
		desc, err := reg.Resolve(ctx, repo, v)
		if err != nil {
			return hub.ResolvedModel{}, fmt.Errorf("resolve %s:%s: %w", repo, v, err)
		}
		if !requireSigned || x.signed(ctx, reg, repo, desc.Digest) {
			size, err := artifactSize(ctx, reg, repo, desc)
			if err != nil {
				return hub.ResolvedModel{}, err
			}
			variants, err := x.variants(ctx, reg, repo, desc.Digest, requireSigned)
			if err != nil {
				return hub.ResolvedModel{}, err
			}
			return hub.ResolvedModel{Version: v, Digest: desc.Digest.String(), Size: size, Variants: variants}, nil
		}
		unsigned = append(unsigned, v)
		candidates = remove(candidates, v)
	}
	if len(unsigned) > 0 {
		return hub.ResolvedModel{}, fmt.Errorf("model %q: no version matching %q has a valid signature from a trusted key (unsigned: %s)",
			name, constraint, strings.Join(unsigned, ", "))
	}
	if validVersion(constraint) {
		// An exact version that is gone: say so, rather than only that it does not exist.
		ts, err := reg.Tombstone(ctx, repo, constraint)
		if err == nil {
			return hub.ResolvedModel{}, fmt.Errorf("model %q version %s was deleted from the registry at %s (it named %s); a deleted version is never offered again: deploy another version",
				name, constraint, ts.Deleted.Format(time.RFC3339), ts.Digest)
		}
		if !errors.Is(err, registry.ErrNotFound) {
			return hub.ResolvedModel{}, fmt.Errorf("model %q version %s: %w", name, constraint, err)
		}
	}
	return hub.ResolvedModel{}, fmt.Errorf("model %q has no version matching %q (have: %s)", name, constraint, strings.Join(tags, ", "))
}

// variants lists the variants of the version whose manifest is d, by name,
// the newest of a name where there are several; with requireSigned only
// those with a valid signature from a trusted key. A variant whose manifest
// or metadata is malformed is left out, and so is, of a version with an ONNX
// file, a variant without one (a TensorFlow Lite conversion, for other
// runtimes): agents serve the ONNX file, so a deployment never sends it.
func (x *Index) variants(ctx context.Context, reg Registry, repo string, d digest.Digest, requireSigned bool) ([]v1alpha1.ModelVariant, error) {
	refs, err := reg.Referrers(ctx, repo, d, artifact.ArtifactTypeVariant)
	if err != nil {
		return nil, fmt.Errorf("list variants of %s@%s: %w", repo, d, err)
	}
	if len(refs) == 0 {
		return nil, nil
	}
	needONNX := false
	if b, _, err := reg.Manifest(ctx, repo, d); err == nil {
		if m, err := artifact.ParseManifest(b); err == nil {
			needONNX = servesONNX(m)
		}
	}
	type found struct {
		v       v1alpha1.ModelVariant
		created string
	}
	byName := map[string]found{}
	for _, ref := range refs {
		b, _, err := reg.Manifest(ctx, repo, ref.Digest)
		if err != nil {
			continue
		}
		m, err := artifact.ParseManifest(b)
		if err != nil || m.ArtifactType != artifact.ArtifactTypeVariant || m.Subject == nil || m.Subject.Digest != d {
			continue
		}
		meta, err := artifact.VariantMetaFromAnnotations(m.Annotations)
		if err != nil || needONNX && !servesONNX(m) {
			continue
		}
		if requireSigned && !x.signed(ctx, reg, repo, ref.Digest) {
			continue
		}
		size := int64(len(b)) + m.Config.Size
		for _, l := range m.Layers {
			size += l.Size
		}
		v := v1alpha1.ModelVariant{Name: meta.Name, Digest: ref.Digest.String(), SizeBytes: size, PeakMemoryBytes: meta.PeakMemoryBytes}
		if meta.Accuracy != nil {
			v.Accuracy = strconv.FormatFloat(*meta.Accuracy, 'f', -1, 64)
		}
		created := m.Annotations[artifact.AnnotationCreated]
		if old, ok := byName[meta.Name]; ok && (old.created > created || old.created == created && old.v.Digest < v.Digest) {
			continue
		}
		byName[meta.Name] = found{v, created}
	}
	out := make([]v1alpha1.ModelVariant, 0, len(byName))
	for _, f := range byName {
		out = append(out, f.v)
	}
	slices.SortFunc(out, func(a, b v1alpha1.ModelVariant) int { return strings.Compare(a.Name, b.Name) })
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// signed reports whether the manifest d carries a valid signature from a trusted key.
func (x *Index) signed(ctx context.Context, reg Registry, repo string, d digest.Digest) bool {
	trusted := x.Trusted()
	if len(trusted) == 0 {
		return false
	}
	refs, err := reg.Referrers(ctx, repo, d, artifact.ArtifactTypeSignature)
	if err != nil {
		return false
	}
	for _, ref := range refs {
		b, _, err := reg.Manifest(ctx, repo, ref.Digest)
		if err != nil {
			continue
		}
		var m ocispec.Manifest
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		for _, l := range m.Layers {
			env, err := readBlob(ctx, reg, repo, l.Digest)
			if err != nil {
				continue
			}
			if _, err := artifact.VerifyEnvelope(env, d, trusted); err == nil {
				return true
			}
		}
	}
	return false
}

func readBlob(ctx context.Context, reg Registry, repo string, d digest.Digest) ([]byte, error) {
	rc, size, err := reg.OpenBlob(ctx, repo, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > maxEnvelopeBytes {
		return nil, fmt.Errorf("blob %s: %d bytes is too large for a signature", d, size)
	}
	return io.ReadAll(io.LimitReader(rc, maxEnvelopeBytes))
}

// artifactSize is the manifest's size plus its config and layers.
func artifactSize(ctx context.Context, reg Registry, repo string, desc ocispec.Descriptor) (int64, error) {
	b, _, err := reg.Manifest(ctx, repo, desc.Digest)
	if err != nil {
		return 0, fmt.Errorf("read manifest %s: %w", desc.Digest, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	total := int64(len(b)) + m.Config.Size
	for _, l := range m.Layers {
		total += l.Size
	}
	return total, nil
}

// CheckTag is the registry's tag policy for model repositories (models/NAME, and
// edge/CLUSTER/NAME for models produced at the edge): a tag must be a semver
// version that the manifest's version and name annotations, where present,
// agree with, and a version, once pushed, names one manifest forever: it never
// moves to other content, and once deleted it may only be pushed again with the
// manifest it named (which restores it). Other repositories are left alone.
func CheckTag(ctx context.Context, c registry.TagChange) error {
	model, ok := v1alpha1.ModelNameOfRepository(c.Repo)
	if !ok {
		if strings.HasPrefix(c.Repo, v1alpha1.ModelRepositoryPrefix) || strings.HasPrefix(c.Repo, v1alpha1.EdgeRepositoryPrefix) {
			return fmt.Errorf("repository %s holds no model: models live in models/NAME, and those produced at the edge in edge/CLUSTER/NAME", c.Repo)
		}
		return nil
	}
	name := model.String()
	if !validVersion(c.Tag) {
		return fmt.Errorf("tag %q of %s is not a semver version (such as 1.2.0): model versions are semver", c.Tag, c.Repo)
	}
	// The manifest's own annotations, where it has them, must agree with
	// where it is tagged: agents check them against the desired state.
	if v, ok := c.New.Annotations[artifact.AnnotationVersion]; ok && v != c.Tag {
		return fmt.Errorf("%s version %s: the manifest says it is version %s (%s): tag it %s, or push it anew as %s",
			name, c.Tag, v, artifact.AnnotationVersion, v, c.Tag)
	}
	if n, ok := c.New.Annotations[artifact.AnnotationName]; ok && n != model.Name {
		return fmt.Errorf("%s version %s: the manifest says it is model %q (%s)", name, c.Tag, n, artifact.AnnotationName)
	}
	if c.Old.Digest != "" && c.Old.Digest != c.New.Digest {
		return fmt.Errorf("%s version %s already exists with different content (digest %s): push a new version instead",
			name, c.Tag, c.Old.Digest)
	}
	if c.Old.Digest == "" && c.Deleted != "" && c.Deleted != c.New.Digest {
		return fmt.Errorf("%s version %s was deleted; it named %s, and a version never names other content: push it as a new version",
			name, c.Tag, c.Deleted)
	}
	return nil
}

func remove(xs []string, v string) []string {
	out := xs[:0:0]
	for _, x := range xs {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

func validVersion(s string) bool {
	_, err := versions.Parse(s)
	return err == nil
}

// servesONNX reports whether the model artifact m holds an ONNX file an agent serves.
func servesONNX(m *ocispec.Manifest) bool {
	files, err := artifact.ModelFiles(m)
	if err != nil {
		return false
	}
	_, err = artifact.ServedONNX(files)
	return err == nil
}
