package artifact

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/memory"
)

// recordingStore is a memory store that records the order of manifest
// pushes (by artifact type) and tags.
type recordingStore struct {
	*memory.Store
	mu     sync.Mutex
	events []string
}

func (s *recordingStore) Push(ctx context.Context, desc ocispec.Descriptor, r io.Reader) error {
	if desc.MediaType == ocispec.MediaTypeImageManifest {
		s.mu.Lock()
		s.events = append(s.events, "manifest "+desc.ArtifactType)
		s.mu.Unlock()
	}
	return s.Store.Push(ctx, desc, r)
}

func (s *recordingStore) Tag(ctx context.Context, desc ocispec.Descriptor, ref string) error {
	s.mu.Lock()
	s.events = append(s.events, "tag "+ref)
	s.mu.Unlock()
	return s.Store.Tag(ctx, desc, ref)
}

func TestPushAttachesProfileBeforeTag(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeTree(t, src, map[string][]byte{"model.onnx": randBytes(3, 5000)})
	store := &recordingStore{Store: memory.New()}
	opts := testOpts("1.0.0")
	opts.Profile = []byte(`{"version": 1}`)
	desc, err := Push(ctx, store, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"manifest " + ArtifactTypeModel, "manifest " + ArtifactTypeChunkIndex, "manifest " + ArtifactTypeDriftProfile, "tag 1.0.0"}
	if strings.Join(store.events, ", ") != strings.Join(want, ", ") {
		t.Fatalf("push order %q, want %q", store.events, want)
	}
	ref, b, err := LatestProfile(ctx, store, desc)
	if err != nil || !bytes.Equal(b, opts.Profile) {
		t.Fatalf("LatestProfile = %q, %v", b, err)
	}
	if !ref.Created.Equal(opts.Created) || ref.Layer.Digest != digest.FromBytes(opts.Profile) {
		t.Errorf("profile ref %+v", ref)
	}
	info, err := Inspect(ctx, store, "1.0.0", nil)
	if err != nil || info.Profile == nil || info.Profile.Digest != ref.Digest {
		t.Fatalf("Inspect profile = %+v, %v", info.Profile, err)
	}

	// The same files and profile again: nothing changes.
	store.events = nil
	if again, err := Push(ctx, store, src, opts); err != nil || again.Digest != desc.Digest {
		t.Fatalf("re-push = %v, %v", again.Digest, err)
	}
	if refs, _ := Profiles(ctx, store, desc); len(refs) != 1 || refs[0].Digest != ref.Digest {
		t.Fatalf("profiles after re-push: %+v", refs)
	}
	// The same files with another profile: refused, the profile stays.
	opts.Profile = []byte(`{"version": 1, "other": true}`)
	if _, err := Push(ctx, store, src, opts); !errors.Is(err, ErrProfileExists) {
		t.Fatalf("re-push with another profile: err = %v, want ErrProfileExists", err)
	}
	if _, b, _ := LatestProfile(ctx, store, desc); string(b) != `{"version": 1}` {
		t.Fatalf("profile changed to %q", b)
	}
	// A memory store cannot delete: replacing is refused before anything is pushed.
	if _, err := PushProfile(ctx, store, desc, opts.Profile, ProfilePushOptions{Replace: true}); err == nil || !strings.Contains(err.Error(), "cannot delete") {
		t.Fatalf("replace on a store without deletes: %v", err)
	}
	if refs, _ := Profiles(ctx, store, desc); len(refs) != 1 {
		t.Fatalf("%d profiles after a refused replace", len(refs))
	}
}

func TestPushWithoutProfileHasNone(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeTree(t, src, map[string][]byte{"model.onnx": randBytes(4, 5000)})
	store := memory.New()
	desc, err := Push(ctx, store, src, testOpts("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := LatestProfile(ctx, store, desc); !errors.Is(err, ErrNoProfile) {
		t.Fatalf("err = %v, want ErrNoProfile", err)
	}
	if info, err := Inspect(ctx, store, "1.0.0", nil); err != nil || info.Profile != nil {
		t.Fatalf("Inspect profile = %+v, %v", info.Profile, err)
	}
	// The same files pushed again with a profile: the version gets it.
	opts := testOpts("1.0.0")
	opts.Profile = []byte("{}")
	if again, err := Push(ctx, store, src, opts); err != nil || again.Digest != desc.Digest {
		t.Fatalf("re-push with a profile = %s, %v", again.Digest, err)
	}
	if _, b, err := LatestProfile(ctx, store, desc); err != nil || string(b) != "{}" {
		t.Fatalf("LatestProfile = %q, %v", b, err)
	}
}

func TestPushProfileRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeTree(t, src, map[string][]byte{"model.onnx": randBytes(5, 5000)})
	store := memory.New()
	tests := []struct {
		name    string
		profile []byte
		want    string
	}{
		{"empty", []byte{}, "want 1 to"},
		{"too large", make([]byte, MaxProfileBytes+1), "want 1 to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOpts("1.0.0")
			opts.Profile = tt.profile
			if _, err := Push(ctx, store, src, opts); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if _, err := store.Resolve(ctx, "1.0.0"); err == nil {
				t.Fatal("a version was tagged")
			}
		})
	}
}

func TestProfileManifestChecks(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeTree(t, src, map[string][]byte{"model.onnx": randBytes(6, 5000)})
	store := memory.New()
	desc, err := Push(ctx, store, src, testOpts("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := pushCraftedModelWithoutIndex(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	profile := []byte(`{"p": 1}`)
	layer := ocispec.Descriptor{MediaType: ArtifactTypeDriftProfile, Digest: digest.FromBytes(profile), Size: int64(len(profile))}
	good, err := pushReferrer(ctx, store, desc, ArtifactTypeDriftProfile, layer, profile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := profileManifest(ctx, store, desc, good); err != nil {
		t.Fatalf("good referrer: %v", err)
	}
	// A referrer of another manifest is not this version's profile.
	if _, err := profileManifest(ctx, store, other, good); err == nil || !strings.Contains(err.Error(), "not a referrer of") {
		t.Fatalf("other subject: %v", err)
	}
	// A referrer with a layer of another type is listed with its error, and
	// fetching it fails; a fresh profile still goes on top of it.
	wrong := ocispec.Descriptor{MediaType: "application/json", Digest: layer.Digest, Size: layer.Size}
	if _, err := pushReferrer(ctx, store, other, ArtifactTypeDriftProfile, wrong, profile, map[string]string{AnnotationCreated: "2030-01-01T00:00:00Z"}); err != nil {
		t.Fatal(err)
	}
	refs, err := Profiles(ctx, store, other)
	if err != nil || len(refs) != 1 || !strings.Contains(refs[0].Error, "want one "+ArtifactTypeDriftProfile+" layer") {
		t.Fatalf("Profiles = %+v, %v", refs, err)
	}
	if _, _, err := LatestProfile(ctx, store, other); err == nil {
		t.Fatal("a malformed profile referrer was fetched")
	}
	// A layer larger than the limit is refused before it is read.
	big := ProfileRef{Digest: good.Digest, Layer: ocispec.Descriptor{MediaType: ArtifactTypeDriftProfile, Digest: layer.Digest, Size: MaxProfileBytes + 1}}
	if _, err := FetchProfile(ctx, store, big); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized profile: %v", err)
	}
	// Bytes that do not match the layer's digest are refused.
	lying := ProfileRef{Digest: good.Digest, Layer: ocispec.Descriptor{MediaType: ArtifactTypeDriftProfile, Digest: digest.FromString("other"), Size: layer.Size}}
	if _, err := FetchProfile(ctx, store, lying); err == nil {
		t.Fatal("a profile with a wrong digest was fetched")
	}
}
