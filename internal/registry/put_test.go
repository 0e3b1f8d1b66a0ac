package registry

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestPutInProcess: blobs and manifests stored through the Go API are what
// the HTTP API serves, a referrer so stored is listed, the change is
// reported, and a manifest naming a blob the repository lacks is refused
// with nothing stored.
func TestPutInProcess(t *testing.T) {
	var mu sync.Mutex
	var last Event
	e := newEnv(t, Options{OnChange: func(_ context.Context, ev Event) { mu.Lock(); last = ev; mu.Unlock() }})
	ctx := t.Context()
	subject := e.makeImage("models/a", "", nil, []byte("weights"))
	if resp, b := e.putManifest("models/a", "1.0.0", subject.manifest); resp.StatusCode != http.StatusCreated {
		t.Fatalf("put subject: %d %s", resp.StatusCode, b)
	}
	layer := []byte("a delta")
	d, err := e.reg.PutBlob(ctx, "models/a", layer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reg.PutBlob(ctx, "models/a", ocispec.DescriptorEmptyJSON.Data); err != nil {
		t.Fatal(err)
	}
	if resp, b := e.req(http.MethodGet, "/v2/models/a/blobs/"+d.String(), nil); resp.StatusCode != http.StatusOK || string(b) != "a delta" {
		t.Fatalf("blob put in process: %d %q", resp.StatusCode, b)
	}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, ArtifactType: "application/x.test",
		Config:  ocispec.Descriptor{MediaType: ocispec.MediaTypeEmptyJSON, Digest: ocispec.DescriptorEmptyJSON.Digest, Size: 2},
		Layers:  []ocispec.Descriptor{{MediaType: "application/x.layer", Digest: d, Size: int64(len(layer))}},
		Subject: &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: subject.digest, Size: int64(len(subject.manifest))},
	}
	body, _ := json.Marshal(m)
	desc, err := e.reg.PutManifest(ctx, "models/a", ocispec.MediaTypeImageManifest, body)
	if err != nil {
		t.Fatal(err)
	}
	refs, err := e.reg.Referrers(ctx, "models/a", subject.digest, "application/x.test")
	if err != nil || len(refs) != 1 || refs[0].Digest != desc.Digest {
		t.Fatalf("referrers after PutManifest: %v %v", refs, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if last.Digest != desc.Digest || last.Subject != subject.digest {
		t.Errorf("last event %+v, want the referrer's", last)
	}

	m.Layers[0].Digest = digest.FromString("absent")
	bad, _ := json.Marshal(m)
	if _, err := e.reg.PutManifest(ctx, "models/a", ocispec.MediaTypeImageManifest, bad); err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("PutManifest naming a missing blob = %v", err)
	}
	if _, err := e.reg.PutBlob(ctx, "Not A Repo", layer); err == nil {
		t.Error("PutBlob took an invalid repository name")
	}
}

// TestTagManifest: a manifest stored in process is tagged as a PUT by tag would: the tag
// policy is asked, the change is reported, and the HTTP API resolves the tag.
func TestTagManifest(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	e := newEnv(t, Options{
		OnChange: func(_ context.Context, ev Event) { mu.Lock(); events = append(events, ev); mu.Unlock() },
		CheckTag: func(_ context.Context, c TagChange) error {
			if c.Tag == "forbidden" {
				return errors.New("not this one")
			}
			return nil
		},
	})
	ctx := t.Context()
	img := e.makeImage("models/a", "", nil, []byte("weights"))
	if _, err := e.reg.PutManifest(ctx, "models/a", ocispec.MediaTypeImageManifest, img.manifest); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.TagManifest(ctx, "models/a", "1.0.0", img.digest); err != nil {
		t.Fatal(err)
	}
	if resp, _ := e.req(http.MethodHead, "/v2/models/a/manifests/1.0.0", nil); resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != img.digest.String() {
		t.Fatalf("HEAD 1.0.0: %d %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	mu.Lock()
	if n := len(events); n == 0 || events[n-1].Tag != "1.0.0" || events[n-1].Digest != img.digest {
		t.Errorf("events %+v, want the tag's", events)
	}
	mu.Unlock()
	for _, tc := range []struct {
		tag  string
		d    digest.Digest
		want string
	}{
		{"forbidden", img.digest, "not this one"},
		{"bad tag!", img.digest, "invalid tag"},
		{"2.0.0", digest.FromString("absent"), "not found"},
	} {
		if err := e.reg.TagManifest(ctx, "models/a", tc.tag, tc.d); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("TagManifest(%q) = %v, want an error with %q", tc.tag, err, tc.want)
		}
	}
	if resp, _ := e.req(http.MethodHead, "/v2/models/a/manifests/forbidden", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a refused tag resolves: %d", resp.StatusCode)
	}
}
