package artifact

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
)

// ErrNoProfile is returned by LatestProfile when a model version has no
// reference profile.
var ErrNoProfile = errors.New("no reference profile")

// ErrProfileExists is matched (errors.Is) by the error PushProfile returns
// when the version already has another reference profile and replacing it
// was not asked for.
var ErrProfileExists = errors.New("model version already has a reference profile")

// ProfileExistsError reports a version that already has a different
// reference profile. It matches ErrProfileExists.
type ProfileExistsError struct {
	// Digest is the existing profile's referrer manifest.
	Digest digest.Digest
}

func (e *ProfileExistsError) Error() string {
	return fmt.Sprintf("the model version already has another reference profile (%s): replace it explicitly", e.Digest)
}

// Is makes errors.Is(err, ErrProfileExists) true.
func (e *ProfileExistsError) Is(target error) bool { return target == ErrProfileExists }

// ProfileRef describes a reference profile attached to a model version.
type ProfileRef struct {
	// Digest is the profile's referrer manifest.
	Digest digest.Digest `json:"digest"`
	// Layer describes the profile blob: the encoded profile.
	Layer ocispec.Descriptor `json:"layer"`
	// Created is when it was attached (from the referrer's annotation).
	Created time.Time `json:"created,omitzero"`
	// Error says why the referrer is unusable (a malformed manifest); its
	// Layer is then empty.
	Error string `json:"error,omitempty"`
	// Descriptor is the referrer manifest's descriptor.
	Descriptor ocispec.Descriptor `json:"-"`
}

// ProfilePushOptions tune PushProfile.
type ProfilePushOptions struct {
	// Replace deletes every other profile of the version once the new one
	// is attached; without it, a version with another profile is refused.
	Replace bool
	// Created is the attachment time recorded in the referrer; zero means
	// now.
	Created time.Time
}

// PushProfile attaches profile, an encoded reference profile (internal/drift's
// JSON encoding, which this package does not interpret), to the model
// manifest described by manifestDesc as a referrer of artifact type
// ArtifactTypeDriftProfile. A version holds one profile: if it already has
// one with the same bytes PushProfile changes nothing and returns it; if it
// has another, PushProfile returns a *ProfileExistsError unless
// opts.Replace is set, in which case the new profile is attached first and
// the others are deleted after (dst must then be able to delete). The
// caller validates the profile before pushing it.
func PushProfile(ctx context.Context, dst oras.GraphTarget, manifestDesc ocispec.Descriptor, profile []byte, opts ProfilePushOptions) (ocispec.Descriptor, error) {
	if len(profile) == 0 {
		return ocispec.Descriptor{}, errors.New("push profile: empty profile")
	}
	if len(profile) > MaxProfileBytes {
		return ocispec.Descriptor{}, fmt.Errorf("push profile: %d bytes, above the %d byte limit", len(profile), MaxProfileBytes)
	}
	layer := ocispec.Descriptor{MediaType: ArtifactTypeDriftProfile, Digest: digest.FromBytes(profile), Size: int64(len(profile))}
	existing, err := Profiles(ctx, dst, manifestDesc)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	var others []ProfileRef
	for _, p := range existing {
		if p.Error == "" && p.Layer.Digest == layer.Digest && p.Layer.Size == layer.Size {
			if len(existing) == 1 || !opts.Replace {
				return p.Descriptor, nil
			}
			continue
		}
		others = append(others, p)
	}
	if len(others) > 0 && !opts.Replace {
		return ocispec.Descriptor{}, &ProfileExistsError{Digest: others[0].Digest}
	}
	deleter, canDelete := dst.(content.Deleter)
	if len(others) > 0 && !canDelete {
		return ocispec.Descriptor{}, errors.New("push profile: the target cannot delete the profile to replace")
	}
	var desc ocispec.Descriptor
	if i := slices.IndexFunc(existing, func(p ProfileRef) bool { return p.Error == "" && p.Layer.Digest == layer.Digest }); i >= 0 {
		desc = existing[i].Descriptor
	} else {
		created := opts.Created
		if created.IsZero() {
			created = time.Now()
		}
		ann := map[string]string{AnnotationCreated: created.UTC().Truncate(time.Second).Format(time.RFC3339)}
		if desc, err = pushReferrer(ctx, dst, manifestDesc, ArtifactTypeDriftProfile, layer, profile, ann); err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("push profile: %w", err)
		}
	}
	// The new profile is in place before the old ones go: a reader always
	// finds one.
	for _, p := range others {
		if err := deleter.Delete(ctx, p.Descriptor); err != nil {
			return desc, fmt.Errorf("push profile: delete the replaced profile %s: %w", p.Digest, err)
		}
	}
	return desc, nil
}

// Profiles lists the reference profiles attached to the model manifest
// described by manifestDesc, newest first (by their creation annotation,
// then by digest), with their layers read from the referrer manifests. A
// referrer whose manifest is malformed is listed with its Error set.
func Profiles(ctx context.Context, src oras.ReadOnlyGraphTarget, manifestDesc ocispec.Descriptor) ([]ProfileRef, error) {
	refs, err := referrers(ctx, src, manifestDesc, ArtifactTypeDriftProfile)
	if err != nil {
		return nil, fmt.Errorf("list profile referrers: %w", err)
	}
	out := make([]ProfileRef, 0, len(refs))
	for _, r := range refs {
		p := ProfileRef{Digest: r.Digest, Descriptor: r}
		if t, err := time.Parse(time.RFC3339, r.Annotations[AnnotationCreated]); err == nil {
			p.Created = t
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b ProfileRef) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return strings.Compare(string(a.Digest), string(b.Digest))
	})
	// The layer descriptors need the referrer manifests; they are small.
	for i := range out {
		m, err := profileManifest(ctx, src, manifestDesc, out[i].Descriptor)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			out[i].Error = err.Error()
			continue
		}
		out[i].Layer = m.Layers[0]
	}
	return out, nil
}

// LatestProfile returns the newest reference profile of the model manifest
// described by manifestDesc and its bytes, checked against the layer's
// size and digest; ErrNoProfile when there is none.
func LatestProfile(ctx context.Context, src oras.ReadOnlyGraphTarget, manifestDesc ocispec.Descriptor) (ProfileRef, []byte, error) {
	refs, err := Profiles(ctx, src, manifestDesc)
	if err != nil {
		return ProfileRef{}, nil, err
	}
	if len(refs) == 0 {
		return ProfileRef{}, nil, ErrNoProfile
	}
	b, err := FetchProfile(ctx, src, refs[0])
	return refs[0], b, err
}

// FetchProfile fetches the bytes of the profile ref names, at most
// MaxProfileBytes, checked against the layer's size and digest.
func FetchProfile(ctx context.Context, src oras.ReadOnlyTarget, ref ProfileRef) ([]byte, error) {
	if ref.Error != "" {
		return nil, errors.New(ref.Error)
	}
	if ref.Layer.MediaType != ArtifactTypeDriftProfile {
		return nil, fmt.Errorf("profile %s: layer media type %q, want %s", ref.Digest, ref.Layer.MediaType, ArtifactTypeDriftProfile)
	}
	b, err := fetchLimited(ctx, src, ref.Layer, MaxProfileBytes)
	if err != nil {
		return nil, fmt.Errorf("fetch profile %s: %w", ref.Digest, err)
	}
	return b, nil
}

// profileManifest fetches and checks a profile referrer manifest: one layer
// of the profile media type, and the model manifest as its subject.
func profileManifest(ctx context.Context, src content.Fetcher, subject, ref ocispec.Descriptor) (*ocispec.Manifest, error) {
	b, err := fetchLimited(ctx, src, ref, MaxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("fetch profile manifest %s: %w", ref.Digest, err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("profile manifest %s: %w", ref.Digest, err)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != ArtifactTypeDriftProfile {
		return nil, fmt.Errorf("profile manifest %s: want one %s layer", ref.Digest, ArtifactTypeDriftProfile)
	}
	if m.Subject == nil || m.Subject.Digest != subject.Digest {
		return nil, fmt.Errorf("profile manifest %s: not a referrer of %s", ref.Digest, subject.Digest)
	}
	if err := validateSHA256(m.Layers[0].Digest); err != nil {
		return nil, fmt.Errorf("profile manifest %s: %w", ref.Digest, err)
	}
	return m, nil
}
