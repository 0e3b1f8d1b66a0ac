package models

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/compress"
	"outpost.dev/outpost/internal/hub"
	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/onnxpb"
	"outpost.dev/outpost/internal/pipeline"
)

// CompressRegistry is what Compressor reads from and writes to: the hub's registry.
type CompressRegistry interface {
	FederatedRegistry
	Repositories(ctx context.Context, prefix string) ([]string, error)
}

// Compressor makes the variants CompressionPolicies ask for: it reads a version's served
// ONNX file from the hub's registry, searches internal/compress's recipes on the policy's
// data, and pushes the variants within the policy's budget as variants of the version,
// signed with the hub's key.
type Compressor struct {
	reg CompressRegistry
	key ed25519.PrivateKey
}

var _ hub.ModelCompressor = (*Compressor)(nil)

// NewCompressor returns a Compressor over reg that signs with key (nil: unsigned).
func NewCompressor(reg CompressRegistry, key ed25519.PrivateKey) *Compressor {
	return &Compressor{reg: reg, key: key}
}

// evalShare is the share of a data set without a test split held out to measure variants,
// as `outpost model compress` holds out by default.
const evalShare = 0.2

// Versions lists the versions of every model under models/.
func (c *Compressor) Versions(ctx context.Context) ([]hub.ModelVersion, error) {
	repos, err := c.reg.Repositories(ctx, RepoPrefix)
	if err != nil {
		return nil, err
	}
	var out []hub.ModelVersion
	for _, repo := range repos {
		tags, err := c.reg.Tags(ctx, repo)
		if err != nil {
			return nil, fmt.Errorf("list versions of %s: %w", repo, err)
		}
		for _, tag := range tags {
			if !validVersion(tag) {
				continue
			}
			desc, err := c.reg.Resolve(ctx, repo, tag)
			if err != nil {
				continue // untagged meanwhile
			}
			out = append(out, hub.ModelVersion{Model: strings.TrimPrefix(repo, RepoPrefix), Version: tag, Digest: desc.Digest.String()})
		}
	}
	return out, nil
}

// Compress makes, measures and pushes the variants of req's version within the policy's
// budget. It pushes nothing when no variant is within it, and says so. A version that has
// variants the policy made before (a policy deleted and applied again) is not compressed
// again: Compress returns those.
func (c *Compressor) Compress(ctx context.Context, req hub.CompressionRequest) ([]v1alpha1.CompressedVariant, error) {
	v := req.Version
	repo, err := v1alpha1.ModelRepository(v.Model)
	if err != nil {
		return nil, err
	}
	dst := &repoTarget{reg: c.reg, repo: repo}
	m, desc, size, err := c.servedModel(ctx, repo, v.Version)
	if err != nil {
		return nil, err
	}
	if done, err := policyVariants(ctx, dst, desc, req.Policy, size); err != nil || len(done) > 0 {
		return done, err // made before: a policy deleted and applied again
	}
	spec := req.Spec
	recipes, err := compress.SelectRecipes(spec.RecipeNames())
	if err != nil {
		return nil, err
	}
	tr, te, err := pipeline.ReadDataset(spec.Data.Path, spec.Data.Format)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	if te == nil {
		if tr, te, err = compress.HoldOut(tr, evalShare); err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
	}
	budget := spec.MaxAccuracyDropValue()
	cs, err := compress.Search(ctx, m, recipes, compress.Data{Train: tr, Eval: te, Calibration: spec.CalibrationValue()}, budget, nil)
	if err != nil {
		return nil, err
	}
	var kept []compress.Candidate
	for _, cand := range cs[1:] {
		if cand.Within && cand.Skipped == "" {
			kept = append(kept, cand)
		}
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("no variant within %s points of the version's accuracy", strconv.FormatFloat(budget, 'f', 1, 64))
	}
	slices.SortStableFunc(kept, func(a, b compress.Candidate) int { return a.Bytes - b.Bytes })
	dir, err := os.MkdirTemp("", "outpost-compress-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := make([]v1alpha1.CompressedVariant, 0, len(kept))
	for _, cand := range kept {
		src := filepath.Join(dir, cand.Name)
		if err := os.MkdirAll(src, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(src, "model.onnx"), cand.Model, 0o600); err != nil {
			return nil, err
		}
		desc, err := artifact.PushVariant(ctx, dst, src, artifact.VariantPushOptions{Name: lastComponent(v.Model), Version: v.Version,
			Meta: CandidateMeta(cand, map[string]string{"policy": req.Policy})})
		if err != nil {
			return nil, fmt.Errorf("push variant %s: %w", cand.Name, err)
		}
		if c.key != nil {
			if _, err := artifact.Sign(ctx, dst, desc, repo+":"+v.Version+" variant "+cand.Name, c.key); err != nil {
				return nil, fmt.Errorf("sign variant %s: %w", cand.Name, err)
			}
		}
		out = append(out, v1alpha1.CompressedVariant{Name: cand.Name, SizeRatio: strconv.FormatFloat(cand.Ratio, 'f', 3, 64),
			AccuracyDrop: strconv.FormatFloat(cand.Drop, 'f', 2, 64)})
	}
	return out, nil
}

// errNotONNX: a version holds no ONNX model the runtimes load.
var errNotONNX = errors.New("not an ONNX model")

// servedModel reads the ONNX file of repo:version the agents serve: its only .onnx file,
// or model.onnx among several.
// It returns the model, the version's manifest descriptor and the file's size.
func (c *Compressor) servedModel(ctx context.Context, repo, version string) (*onnxpb.ModelProto, ocispec.Descriptor, int64, error) {
	desc, err := c.reg.Resolve(ctx, repo, version)
	if err != nil {
		return nil, desc, 0, fmt.Errorf("%s:%s: %w", repo, version, err)
	}
	m, size, err := c.readServed(ctx, repo, desc)
	return m, desc, size, err
}

// readServed reads the served ONNX file of the version whose manifest is desc.
func (c *Compressor) readServed(ctx context.Context, repo string, desc ocispec.Descriptor) (*onnxpb.ModelProto, int64, error) {
	mb, _, err := c.reg.Manifest(ctx, repo, desc.Digest)
	if err != nil {
		return nil, 0, err
	}
	man, err := artifact.ParseManifest(mb)
	if err != nil {
		return nil, 0, err
	}
	files, err := artifact.ModelFiles(man)
	if err != nil {
		return nil, 0, err
	}
	f, err := artifact.ServedONNX(files)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", errNotONNX, err)
	}
	if f.Size > interp.MaxModelBytes {
		return nil, 0, fmt.Errorf("%s is %d bytes, more than the %d the runtimes load", f.Path, f.Size, interp.MaxModelBytes)
	}
	b, err := readFile(ctx, c.reg, repo, f.Digest)
	if err != nil {
		return nil, 0, err
	}
	m, err := onnx.Unmarshal(b)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %w", errNotONNX, f.Path, err)
	}
	if _, err := interp.LoadProto(m); err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %w", errNotONNX, f.Path, err)
	}
	return m, f.Size, nil
}

// policyVariants returns the variants of the version whose manifest is desc that policy
// made before, smallest first, with their size over the version's served file's (size);
// their accuracy drop is not recorded with them.
func policyVariants(ctx context.Context, dst *repoTarget, desc ocispec.Descriptor, policy string, size int64) ([]v1alpha1.CompressedVariant, error) {
	vs, err := artifact.Variants(ctx, dst, desc)
	if err != nil {
		return nil, err
	}
	vs = slices.DeleteFunc(vs, func(v artifact.Variant) bool { return v.Meta.Params["policy"] != policy })
	slices.SortStableFunc(vs, func(a, b artifact.Variant) int { return cmp.Compare(a.Meta.SizeBytes, b.Meta.SizeBytes) })
	var out []v1alpha1.CompressedVariant
	for _, v := range vs {
		if slices.ContainsFunc(out, func(o v1alpha1.CompressedVariant) bool { return o.Name == v.Meta.Name }) {
			continue
		}
		cv := v1alpha1.CompressedVariant{Name: v.Meta.Name}
		if size > 0 && v.Meta.SizeBytes > 0 {
			cv.SizeRatio = strconv.FormatFloat(float64(v.Meta.SizeBytes)/float64(size), 'f', 3, 64)
		}
		out = append(out, cv)
	}
	return out, nil
}

// CandidateMeta is what a variant records of the search's candidate c: the method and its
// parameters (with extra's), the accuracy, and the latency in the Go runtime and, where
// measured, ONNX Runtime, and the most memory the Go runtime took to serve it (the policy's
// memory limit counts that; the original, which no search measured, counts its size).
func CandidateMeta(c compress.Candidate, extra map[string]string) artifact.VariantMeta {
	acc := c.Accuracy
	params := maps.Clone(c.Params)
	if params == nil && len(extra) > 0 {
		params = map[string]string{}
	}
	maps.Copy(params, extra)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return artifact.VariantMeta{Name: c.Name, Method: c.Method, Params: params, Accuracy: &acc,
		Latency: artifact.VariantLatency{GoBatch1Ms: ms(c.Latency1), GoBatch32Ms: ms(c.Latency32),
			ONNXRuntimeBatch1Ms: ms(c.ORTLatency1), ONNXRuntimeBatch32Ms: ms(c.ORTLatency32)},
		PeakMemoryBytes: c.Memory, Operators: c.Ops}
}
