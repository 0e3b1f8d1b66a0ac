package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/drift"
)

// profileResult is what fetching a version's reference profile found: the
// verified profile blob (digest empty when the version has none), or why
// the version's profile is unusable.
type profileResult struct {
	digest digest.Digest
	data   []byte
	err    error
}

// fetchProfile fetches the newest reference profile of the model manifest
// desc, checked against its digest and decoded to check it is a profile.
func (a *Agent) fetchProfile(ctx context.Context, src oras.ReadOnlyGraphTarget, desc ocispec.Descriptor, model, version string) profileResult {
	ref, b, err := artifact.LatestProfile(ctx, src, desc)
	switch {
	case errors.Is(err, artifact.ErrNoProfile), errors.Is(err, errdef.ErrUnsupported):
		return profileResult{}
	case err != nil:
		return profileResult{err: fmt.Errorf("reference profile of %s@%s: %w", model, version, err)}
	}
	return checkProfile(ref, b, model, version)
}

// checkProfile decodes a fetched profile to check it.
func checkProfile(ref artifact.ProfileRef, b []byte, model, version string) profileResult {
	if _, err := drift.DecodeProfile(b); err != nil {
		return profileResult{err: fmt.Errorf("reference profile of %s@%s is malformed (%s): %w", model, version, ref.Digest, err)}
	}
	return profileResult{digest: ref.Layer.Digest, data: b}
}

// referencePath returns the cached reference profile of a manifest, its
// digest verified, or "" when it has none or its blob is damaged.
func (a *Agent) referencePath(rec manifestRecord) string {
	if rec.ProfileDigest == "" {
		return ""
	}
	d := digest.Digest(rec.ProfileDigest)
	if _, err := a.cache.readBlob(d, artifact.MaxProfileBytes); err != nil {
		a.log.Warn("cached reference profile unusable", "model", rec.Model, "version", rec.Version, "err", err)
		return ""
	}
	return a.cache.blobPath(d)
}

// profileLoop looks again, every ProfileInterval, for the reference
// profiles of the versions served: one attached after the version was
// fetched, or one that replaced it.
func (a *Agent) profileLoop(ctx context.Context) {
	for clock.Sleep(ctx, a.clock, a.cfg.ProfileInterval) {
		seen := map[string]bool{}
		for _, m := range a.Active() {
			if seen[m.Digest] {
				continue
			}
			seen[m.Digest] = true
			if err := a.refreshProfile(ctx, m.Digest); err != nil && ctx.Err() == nil {
				a.log.Debug("look for a reference profile", "model", m.Model, "version", m.Version, "err", err)
			}
		}
	}
}

// refreshProfile brings the cached reference profile of manifest dg up to
// date with the hub's: a new or replaced profile is fetched, checked,
// cached and handed to the active models of that version. A malformed one
// is recorded as the version's profile error, and the profile held before
// (if any) stays. An error means the hub could not be asked.
func (a *Agent) refreshProfile(ctx context.Context, dg string) error {
	a.gcMu.RLock()
	defer a.gcMu.RUnlock()
	rec, ok, err := a.state.manifest(ctx, dg)
	if err != nil || !ok {
		return err
	}
	repo, err := a.repository(rec.Model)
	if err != nil {
		return err
	}
	r, err := a.remoteRepo(repo)
	if err != nil {
		return err
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(dg), Size: rec.Size}
	refs, err := artifact.Profiles(ctx, r, desc)
	if err != nil {
		return err
	}
	why := ""
	profile := rec.ProfileDigest
	switch {
	case len(refs) == 0:
		// None (any earlier error was the fetch's, or of a profile since deleted).
	case refs[0].Error == "" && refs[0].Layer.Digest.String() == rec.ProfileDigest:
		// The one held.
	default:
		b, err := artifact.FetchProfile(ctx, r, refs[0])
		if err != nil && refs[0].Error == "" {
			return err
		}
		res := profileResult{err: err}
		if err == nil {
			res = checkProfile(refs[0], b, rec.Model, rec.Version)
		} else {
			res.err = fmt.Errorf("reference profile of %s@%s: %w", rec.Model, rec.Version, err)
		}
		if res.err != nil {
			why = res.err.Error()
			break
		}
		if err := a.cache.putBlob(res.digest, res.data); err != nil {
			return err
		}
		profile = res.digest.String()
	}
	if profile == rec.ProfileDigest && why == rec.ProfileError {
		return nil
	}
	if err := a.state.setProfile(ctx, dg, profile, why); err != nil {
		return err
	}
	if why != "" {
		a.log.Warn("reference profile unusable", "model", rec.Model, "version", rec.Version, "err", why)
	}
	if profile == rec.ProfileDigest {
		a.signal(a.reportNow)
		return nil
	}
	rec.ProfileDigest = profile
	path := a.referencePath(rec)
	a.mu.Lock()
	for dep, m := range a.active {
		if m.Digest == dg {
			m.Reference = path
			a.active[dep] = m
		}
	}
	a.mu.Unlock()
	a.log.Info("reference profile updated", "model", rec.Model, "version", rec.Version, "profile", profile)
	a.activeChanged()
	a.signal(a.reportNow)
	return nil
}
