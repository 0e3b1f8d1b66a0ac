package models

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/fl"
	"outpost.dev/outpost/internal/hub"
	"outpost.dev/outpost/internal/registry"
)

// MaxInitialModelBytes bounds the model file a federated job starts from.
const MaxInitialModelBytes = 256 << 20

// FederatedRegistry is what Federated reads from and writes to: the hub's registry.
type FederatedRegistry interface {
	Writer
	TagManifest(ctx context.Context, repo, tag string, d digest.Digest) error
}

// Federated reads federated jobs' initial models from the hub's registry and pushes their
// rounds' global models there as ONNX model versions with their lineage, signed with the
// hub's key.
type Federated struct {
	reg FederatedRegistry
	key ed25519.PrivateKey
}

var _ hub.FederatedModels = (*Federated)(nil)

// NewFederated returns a Federated over reg that signs with key (nil: unsigned).
func NewFederated(reg FederatedRegistry, key ed25519.PrivateKey) *Federated {
	return &Federated{reg: reg, key: key}
}

// Initial reads version of model name: the ONNX file of a model of arch that internal/train
// exported (an MLP for arch mlp, the CNN for arch cnn).
func (f *Federated) Initial(ctx context.Context, name, version, arch string) (fl.ModelSpec, [][]float32, hub.ResolvedModel, error) {
	repo, err := v1alpha1.ModelRepository(name)
	if err != nil {
		return fl.ModelSpec{}, nil, hub.ResolvedModel{}, err
	}
	desc, err := f.reg.Resolve(ctx, repo, version)
	if err != nil {
		return fl.ModelSpec{}, nil, hub.ResolvedModel{}, fmt.Errorf("model %s:%s: %w", name, version, err)
	}
	mb, _, err := f.reg.Manifest(ctx, repo, desc.Digest)
	if err != nil {
		return fl.ModelSpec{}, nil, hub.ResolvedModel{}, err
	}
	m, err := artifact.ParseManifest(mb)
	if err != nil {
		return fl.ModelSpec{}, nil, hub.ResolvedModel{}, err
	}
	files, err := artifact.ModelFiles(m)
	if err != nil {
		return fl.ModelSpec{}, nil, hub.ResolvedModel{}, err
	}
	var onnx *artifact.File
	var size int64
	for i := range files {
		size += files[i].Size
		if strings.HasSuffix(files[i].Path, ".onnx") {
			if onnx != nil {
				return fl.ModelSpec{}, nil, hub.ResolvedModel{}, fmt.Errorf("model %s:%s has more than one ONNX file", name, version)
			}
			onnx = &files[i]
		}
	}
	if onnx == nil {
		return fl.ModelSpec{}, nil, hub.ResolvedModel{}, fmt.Errorf("model %s:%s has no ONNX file", name, version)
	}
	if onnx.Size > MaxInitialModelBytes {
		return fl.ModelSpec{}, nil, hub.ResolvedModel{}, fmt.Errorf("model %s:%s: %s is %d bytes, at most %d", name, version, onnx.Path, onnx.Size, MaxInitialModelBytes)
	}
	b, err := readFile(ctx, f.reg, repo, onnx.Digest)
	if err != nil {
		return fl.ModelSpec{}, nil, hub.ResolvedModel{}, err
	}
	spec, w, err := fl.ReadONNX(arch, b)
	if err != nil {
		return fl.ModelSpec{}, nil, hub.ResolvedModel{}, fmt.Errorf("model %s:%s (arch %s): %w", name, version, arch, err)
	}
	return spec, w, hub.ResolvedModel{Version: version, Digest: desc.Digest.String(), Size: size}, nil
}

// Publish pushes p as models/<p.Name>:<p.Version>, a model.onnx of p.Model's arch as
// internal/train exports it, with p's lineage, and signs it with the hub's key unless it
// carries that key's signature already.
func (f *Federated) Publish(ctx context.Context, p hub.FederatedPublication) (hub.ResolvedModel, error) {
	onnx, err := fl.MarshalONNX(p.Model, p.Weights, p.Name)
	if err != nil {
		return hub.ResolvedModel{}, fmt.Errorf("model %s:%s: %w", p.Name, p.Version, err)
	}
	dir, err := os.MkdirTemp("", "outpost-fl-publish-")
	if err != nil {
		return hub.ResolvedModel{}, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), onnx, 0o600); err != nil {
		return hub.ResolvedModel{}, err
	}
	repo, err := v1alpha1.ModelRepository(p.Name)
	if err != nil {
		return hub.ResolvedModel{}, err
	}
	dst := &repoTarget{reg: f.reg, repo: repo}
	metrics := map[string]string{"participants": strconv.Itoa(p.Participants), "round": strconv.Itoa(p.Round)}
	if p.Accuracy > 0 {
		metrics["round-start-accuracy"] = strconv.FormatFloat(p.Accuracy, 'f', 4, 64)
	}
	if p.Epsilon > 0 {
		metrics["epsilon"] = strconv.FormatFloat(p.Epsilon, 'f', 4, 64)
	}
	desc, err := artifact.Push(ctx, dst, dir, artifact.PushOptions{
		Name: lastComponent(p.Name), Version: p.Version, Parent: p.Parent, ProducedBy: "federatedjob/" + p.Job,
		Metrics: metrics, Format: "onnx",
		Annotations: map[string]string{artifact.AnnotationFederatedJob: p.Job, artifact.AnnotationFederatedRound: strconv.Itoa(p.Round)},
	})
	if err != nil {
		return hub.ResolvedModel{}, err
	}
	if f.key != nil {
		sigs, err := artifact.Signatures(ctx, dst, desc, []ed25519.PublicKey{f.key.Public().(ed25519.PublicKey)})
		if err != nil {
			return hub.ResolvedModel{}, err
		}
		signed := false
		for _, s := range sigs {
			signed = signed || s.Valid
		}
		if !signed {
			if _, err := artifact.Sign(ctx, dst, desc, repo+":"+p.Version, f.key); err != nil {
				return hub.ResolvedModel{}, err
			}
		}
	}
	return hub.ResolvedModel{Version: p.Version, Digest: desc.Digest.String(), Size: int64(len(onnx))}, nil
}

// lastComponent is the last path component of a model name.
func lastComponent(name string) string {
	if i := strings.LastIndex(name, "/"); i >= 0 {
		return name[i+1:]
	}
	return name
}

// repoTarget is one repository of the hub's registry as an oras.GraphTarget.
type repoTarget struct {
	reg  FederatedRegistry
	repo string
}

var _ oras.GraphTarget = (*repoTarget)(nil)

// isManifest reports whether desc is a manifest or index.
func isManifest(desc ocispec.Descriptor) bool {
	return desc.MediaType == ocispec.MediaTypeImageManifest || desc.MediaType == ocispec.MediaTypeImageIndex
}

func (t *repoTarget) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	if isManifest(desc) {
		b, _, err := t.reg.Manifest(ctx, t.repo, desc.Digest)
		if err != nil {
			return nil, notFound(err)
		}
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	f, _, err := t.reg.OpenBlob(ctx, t.repo, desc.Digest)
	if err != nil {
		return nil, notFound(err)
	}
	return f, nil
}

func (t *repoTarget) Exists(ctx context.Context, desc ocispec.Descriptor) (bool, error) {
	rc, err := t.Fetch(ctx, desc)
	if errors.Is(err, errdef.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, rc.Close()
}

func (t *repoTarget) Push(ctx context.Context, expected ocispec.Descriptor, r io.Reader) error {
	b, err := io.ReadAll(io.LimitReader(r, expected.Size+1))
	if err != nil {
		return err
	}
	if int64(len(b)) != expected.Size || digest.FromBytes(b) != expected.Digest {
		return fmt.Errorf("push %s: content does not match its descriptor", expected.Digest)
	}
	if isManifest(expected) {
		_, err = t.reg.PutManifest(ctx, t.repo, expected.MediaType, b)
		return err
	}
	_, err = t.reg.PutBlob(ctx, t.repo, b)
	return err
}

func (t *repoTarget) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	d, err := t.reg.Resolve(ctx, t.repo, ref)
	return d, notFound(err)
}

func (t *repoTarget) Tag(ctx context.Context, desc ocispec.Descriptor, ref string) error {
	return t.reg.TagManifest(ctx, t.repo, ref, desc.Digest)
}

func (t *repoTarget) Predecessors(ctx context.Context, node ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	return t.reg.Referrers(ctx, t.repo, node.Digest, "")
}

// notFound maps the registry's not-found to oras's.
func notFound(err error) error {
	if errors.Is(err, registry.ErrNotFound) {
		return fmt.Errorf("%w: %w", errdef.ErrNotFound, err)
	}
	return err
}
