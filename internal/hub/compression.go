package hub

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/store"
)

// ModelCompressor makes and pushes the variants CompressionPolicies ask for, in the hub's
// registry.
type ModelCompressor interface {
	// Versions lists every version of every model in the registry.
	Versions(ctx context.Context) ([]ModelVersion, error)
	// Compress makes a variant of the version by each of the policy's recipes, measures
	// them on its data and pushes those within its accuracy budget as variants of the
	// version. It returns what it pushed, or an error saying why nothing was (no variant
	// within the budget among them).
	Compress(ctx context.Context, req CompressionRequest) ([]v1alpha1.CompressedVariant, error)
}

// ModelVersion is a version of a model in the registry.
type ModelVersion struct {
	// Model is the model's name (repository models/<Model>); Version its tag; Digest its
	// manifest's digest.
	Model, Version, Digest string
}

// CompressionRequest asks a ModelCompressor to compress one version for one policy.
type CompressionRequest struct {
	// Policy is the policy's name.
	Policy string
	// Spec is the policy's spec.
	Spec v1alpha1.CompressionPolicySpec
	// Version is the version to compress.
	Version ModelVersion
}

// compressionTask is a version a policy has yet to compress.
type compressionTask struct {
	policy, uid string
	version     ModelVersion
}

// compressionWork returns the versions each policy has yet to compress, policies in name
// order and versions in the order given: those of the models a policy matches that its
// status has no row for, and those whose row says Compressing, whose compression a
// restart of the hub cut short (the hub compresses one version at a time and decides
// between compressions). A version whose row says Done or Failed is not compressed again.
func compressionWork(policies []*v1alpha1.CompressionPolicy, versions []ModelVersion) []compressionTask {
	policies = slices.Clone(policies)
	slices.SortFunc(policies, func(a, b *v1alpha1.CompressionPolicy) int { return cmp.Compare(a.Name, b.Name) })
	var out []compressionTask
	for _, p := range policies {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, v := range versions {
			if !p.Spec.Matches(v.Model) {
				continue
			}
			if r := findCompressed(p.Status.Versions, v.Model, v.Version); r >= 0 && p.Status.Versions[r].Phase != v1alpha1.CompressionCompressing {
				continue
			}
			out = append(out, compressionTask{policy: p.Name, uid: string(p.UID), version: v})
		}
	}
	return out
}

// findCompressed returns the index of the row of model@version in rows, or -1.
func findCompressed(rows []v1alpha1.CompressedVersion, model, version string) int {
	return slices.IndexFunc(rows, func(r v1alpha1.CompressedVersion) bool { return r.Model == model && r.Version == version })
}

// setCompressed puts row into rows, in place of the row of its version or appended, and
// drops the rows of versions no longer in the registry (present, when not nil, says which
// are), so that a policy's status stays as long as the registry's list of its versions.
func setCompressed(rows []v1alpha1.CompressedVersion, row v1alpha1.CompressedVersion, present func(model, version string) bool) []v1alpha1.CompressedVersion {
	out := make([]v1alpha1.CompressedVersion, 0, len(rows)+1)
	replaced := false
	for _, r := range rows {
		switch {
		case r.Model == row.Model && r.Version == row.Version:
			out = append(out, row)
			replaced = true
		case present == nil || present(r.Model, r.Version):
			out = append(out, r)
		}
	}
	if !replaced {
		out = append(out, row)
	}
	return out
}

// DefaultCompressionInterval is how often the hub looks for versions to compress besides
// when a model changes in the registry and when a policy is applied.
const DefaultCompressionInterval = 10 * time.Minute

// wakeCompression asks the compression loop to look now.
func (s *Server) wakeCompression() {
	select {
	case s.compressKick <- struct{}{}:
	default:
	}
}

// watchCompression compresses, one at a time, the versions policies have yet to compress,
// until ctx ends; then it waits for a model change, an applied policy or interval.
func (s *Server) watchCompression(ctx context.Context, interval time.Duration) {
	for {
		for ctx.Err() == nil {
			did, err := s.CompressNext(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.ErrorContext(ctx, "compression policies", "err", err)
			}
			if !did || err != nil {
				break
			}
		}
		t := s.clock.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-s.compressKick:
			t.Stop()
		}
	}
}

// CompressNext compresses the first version a policy has yet to compress (see
// compressionWork) and records the outcome in the policy's status: Compressing while it
// runs, then Done with the variants pushed or Failed with the reason. It reports whether
// there was one. Without a Config.Compressor there never is.
func (s *Server) CompressNext(ctx context.Context) (bool, error) {
	if s.cfg.Compressor == nil {
		return false, nil
	}
	objs, _, err := s.db.List(ctx, v1alpha1.KindCompressionPolicy, nil)
	if err != nil || len(objs) == 0 {
		return false, err
	}
	policies := make([]*v1alpha1.CompressionPolicy, len(objs))
	for i, o := range objs {
		policies[i] = o.(*v1alpha1.CompressionPolicy)
	}
	versions, err := s.cfg.Compressor.Versions(ctx)
	if err != nil {
		return false, err
	}
	work := compressionWork(policies, versions)
	if len(work) == 0 {
		return false, nil
	}
	t := work[0]
	present := func(model, version string) bool {
		return slices.ContainsFunc(versions, func(v ModelVersion) bool { return v.Model == model && v.Version == version })
	}
	row := v1alpha1.CompressedVersion{Model: t.version.Model, Version: t.version.Version, Digest: t.version.Digest,
		Phase: v1alpha1.CompressionCompressing}
	spec, err := s.recordCompression(ctx, t, row, present)
	if errors.Is(err, errPolicyGone) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	s.log.InfoContext(ctx, "compressing", "policy", t.policy, "model", t.version.Model, "version", t.version.Version)
	pushed, cerr := s.cfg.Compressor.Compress(ctx, CompressionRequest{Policy: t.policy, Spec: spec, Version: t.version})
	if ctx.Err() != nil {
		return false, ctx.Err() // cut short: the row stays Compressing, and is compressed again
	}
	row.Phase, row.Variants = v1alpha1.CompressionDone, pushed
	if cerr != nil {
		row.Phase, row.Variants, row.Reason = v1alpha1.CompressionFailed, nil, truncate(cerr.Error(), 1024)
		s.log.WarnContext(ctx, "compression failed", "policy", t.policy, "model", t.version.Model, "version", t.version.Version, "err", cerr)
	}
	if _, err := s.recordCompression(ctx, t, row, present); err != nil && !errors.Is(err, errPolicyGone) {
		return false, err
	}
	return true, nil
}

// errPolicyGone: the policy of a task was deleted, or deleted and created again.
var errPolicyGone = errors.New("compression policy deleted")

// recordCompression sets row in the status of t's policy and returns its spec.
func (s *Server) recordCompression(ctx context.Context, t compressionTask, row v1alpha1.CompressedVersion, present func(model, version string) bool) (v1alpha1.CompressionPolicySpec, error) {
	var spec v1alpha1.CompressionPolicySpec
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		o, err := tx.Get(ctx, v1alpha1.KindCompressionPolicy, t.policy)
		if errors.Is(err, store.ErrNotFound) {
			return errPolicyGone
		}
		if err != nil {
			return err
		}
		p := o.DeepCopyObject().(*v1alpha1.CompressionPolicy)
		if string(p.UID) != t.uid {
			return errPolicyGone
		}
		now := metav1.NewTime(s.clock.Now())
		row.Updated = &now
		p.Status.Versions = setCompressed(p.Status.Versions, row, present)
		spec = p.Spec
		_, _, err = tx.UpdateStatus(ctx, p)
		return err
	})
	return spec, err
}
