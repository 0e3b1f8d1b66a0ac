package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
)

func hx(s string) string { return digest.FromString(s).String() }

func TestKeepManifests(t *testing.T) {
	deps := []deploymentRow{
		{Name: "a", ActiveDigest: hx("a3"), Desired: v1alpha1.DesiredModel{Digest: hx("a3")}},
		{Name: "b", ActiveDigest: hx("b1"), Desired: v1alpha1.DesiredModel{Digest: hx("b2")}}, // fetching b2
	}
	// Newest first, as stateDB.history returns it.
	hist := []historyEntry{
		{Deployment: "a", Digest: hx("a3")},
		{Deployment: "b", Digest: hx("b1")},
		{Deployment: "a", Digest: hx("a2")},
		{Deployment: "a", Digest: hx("a1")},
		{Deployment: "a", Digest: hx("a2")}, // re-activated earlier: counted once
		{Deployment: "c", Digest: hx("c2")}, // c was removed
		{Deployment: "c", Digest: hx("c1")},
		{Deployment: "a", Digest: hx("a0")},
		{Deployment: "c", Digest: hx("c0")},
	}
	tests := []struct {
		keep int
		want []string
	}{
		{0, []string{"a3", "b1", "b2"}},
		{1, []string{"a3", "a2", "b1", "b2", "c2"}},
		{2, []string{"a3", "a2", "a1", "b1", "b2", "c2", "c1"}},
		{9, []string{"a3", "a2", "a1", "a0", "b1", "b2", "c2", "c1", "c0"}},
	}
	for _, tt := range tests {
		got := keepManifests(deps, hist, tt.keep)
		want := map[string]bool{}
		for _, w := range tt.want {
			want[hx(w)] = true
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("keep %d: got %d manifests, want %v", tt.keep, len(got), tt.want)
		}
		// The active versions are always kept.
		if !got[hx("a3")] || !got[hx("b1")] {
			t.Errorf("keep %d: an active version is not kept", tt.keep)
		}
	}
}

func TestGCPlan(t *testing.T) {
	shared := hx("shared weights")
	mans := []manifestRecord{
		{Digest: hx("m-old"), ConfigDigest: hx("cfg-old"), ChunkIndexDigest: hx("idx-old"), ProfileDigest: hx("prof-old"),
			Files: []fileRecord{{Path: "w", Digest: hx("w-old")}, {Path: "c", Digest: shared}}},
		{Digest: hx("m-new"), ConfigDigest: hx("cfg-new"), ChunkIndexDigest: hx("idx-new"), SignatureDigest: hx("sig-new"), ProfileDigest: hx("prof-new"),
			Files: []fileRecord{{Path: "w", Digest: hx("w-new")}, {Path: "c", Digest: shared}}},
	}
	kept := map[string]bool{hx("m-new"): true}
	blob := func(s string, partial bool) blobFile {
		d := digest.Digest(s)
		name := d.Encoded()
		if partial {
			name += ".part"
		}
		return blobFile{Name: name, Digest: d, Partial: partial}
	}
	blobs := []blobFile{
		blob(hx("m-old"), false), blob(hx("cfg-old"), false), blob(hx("idx-old"), false), blob(hx("w-old"), false),
		blob(hx("prof-old"), false), blob(shared, false),
		blob(hx("m-new"), false), blob(hx("cfg-new"), false), blob(hx("idx-new"), false), blob(hx("sig-new"), false),
		blob(hx("prof-new"), false),
		blob(hx("w-new"), true), // being assembled
		blob(hx("stray"), true),
	}
	dropM, dropB := gcPlan(mans, kept, blobs)
	if !reflect.DeepEqual(dropM, []string{hx("m-old")}) {
		t.Errorf("dropped manifests %v", dropM)
	}
	want := map[string]bool{}
	for _, s := range []string{hx("m-old"), hx("cfg-old"), hx("idx-old"), hx("w-old"), hx("prof-old")} {
		want[digest.Digest(s).Encoded()] = true
	}
	want[digest.Digest(hx("stray")).Encoded()+".part"] = true
	got := map[string]bool{}
	for _, b := range dropB {
		got[b] = true
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("dropped blobs %v, want %v", got, want)
	}
}

func TestCacheLayout(t *testing.T) {
	root := filepath.Join(t.TempDir(), "cache")
	c, err := openCache(root)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte("hello")
	d := digest.FromBytes(b)
	if err := c.putBlob(digest.FromString("other"), b); err == nil {
		t.Fatal("putBlob accepted bytes that do not match the digest")
	}
	if c.has(digest.FromString("other"), -1) {
		t.Fatal("a refused blob is in the cache")
	}
	if err := c.putBlob(d, b); err != nil {
		t.Fatal(err)
	}
	if !c.has(d, 5) || c.has(d, 4) {
		t.Fatal("has disagrees with the stored blob")
	}
	if got, err := c.readBlob(d, 5); err != nil || string(got) != "hello" {
		t.Fatalf("readBlob %q %v", got, err)
	}
	if _, err := c.readBlob(d, 4); err == nil {
		t.Fatal("readBlob ignored its limit")
	}
	// A corrupted blob is detected by a re-hash, and by readBlob.
	if err := os.WriteFile(c.blobPath(d), []byte("jello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.verifyFile(d, 5, false); err != nil {
		t.Fatalf("size check: %v", err)
	}
	if err := c.verifyFile(d, 5, true); err == nil {
		t.Fatal("re-hash missed a corrupt blob")
	}
	if _, err := c.readBlob(d, 5); err == nil {
		t.Fatal("readBlob returned corrupt bytes")
	}
	if err := c.writeIndex([]indexEntry{{Digest: d, Size: 5, Model: "m", Version: "1.0.0"}}); err != nil {
		t.Fatal(err)
	}
	var idx ocispec.Index
	ib, _ := os.ReadFile(filepath.Join(root, "index.json"))
	if err := json.Unmarshal(ib, &idx); err != nil || len(idx.Manifests) != 1 || idx.Manifests[0].Annotations[ocispec.AnnotationRefName] != "m:1.0.0" {
		t.Fatalf("index.json: %s (%v)", ib, err)
	}
	var layout ocispec.ImageLayout
	lb, _ := os.ReadFile(filepath.Join(root, "oci-layout"))
	if err := json.Unmarshal(lb, &layout); err != nil || layout.Version != ocispec.ImageLayoutVersion {
		t.Fatalf("oci-layout: %s", lb)
	}
	bl, err := c.listBlobs()
	if err != nil || len(bl) != 1 || bl[0].Digest != d {
		t.Fatalf("listBlobs %+v %v", bl, err)
	}
}

func TestChunkMap(t *testing.T) {
	c1, c2, c3 := digest.FromString("c1"), digest.FromString("c2"), digest.FromString("c3")
	idx := &artifact.ChunkIndex{Files: []artifact.FileChunks{
		{Path: "a", Digest: digest.FromString("fa"), Size: 30, Chunks: []artifact.Chunk{{Offset: 0, Length: 10, Digest: c1}, {Offset: 10, Length: 20, Digest: c2}}},
		{Path: "b", Digest: digest.FromString("fb"), Size: 5, Chunks: []artifact.Chunk{{Offset: 0, Length: 5, Digest: c3}}},
	}}
	m := chunkMap([]*artifact.ChunkIndex{idx, nil}, func(d digest.Digest, size int64) (string, bool) {
		return "/blobs/" + d.Encoded(), d == digest.FromString("fa") // only a is whole
	})
	if l, ok := m[c2]; !ok || l.Offset != 10 || l.Length != 20 || l.Path != "/blobs/"+digest.FromString("fa").Encoded() {
		t.Errorf("c2 at %+v %v", l, ok)
	}
	if _, ok := m[c3]; ok {
		t.Error("a chunk of a file not in the cache is offered")
	}
}

// TestApplyDocState checks the guard's decisions as recorded in the state:
// stale documents from any source are counted and change nothing, equal
// revisions are no-ops, refusals and removals are recorded.
func TestApplyDocState(t *testing.T) {
	ctx := t.Context()
	st, err := openState(ctx, filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.setMeta(ctx, metaCluster, "edge-1"); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	apply := func(d *v1alpha1.DesiredState, src Source) applyResult {
		t.Helper()
		r, err := st.applyDoc(ctx, d, src, now)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := apply(doc(5, dm("d", "m", "2.0.0", dgB, false), dm("gone", "m", "1.0.0", dgA, false)), SourceNetwork); r.Decision.Verdict != Apply {
		t.Fatalf("first doc: %v", r.Decision.Verdict)
	}
	for _, w := range []v1alpha1.DesiredModel{dm("d", "m", "2.0.0", dgB, false), dm("gone", "m", "1.0.0", dgA, false)} {
		if _, err := st.activate(ctx, w, now); err != nil {
			t.Fatal(err)
		}
	}
	r := apply(doc(4, dm("d", "m", "1.0.0", dgA, true)), SourceNetwork)
	r = apply(doc(2, dm("d", "m", "1.0.0", dgA, true)), SourceBundle)
	if r.Decision.Verdict != RejectStale || r.RejectedStale != 2 {
		t.Fatalf("stale docs: %v, count %d", r.Decision.Verdict, r.RejectedStale)
	}
	if r := apply(doc(5, dm("d", "m", "9.0.0", dgC, false)), SourceNetwork); r.Decision.Verdict != Unchanged {
		t.Fatalf("same revision: %v", r.Decision.Verdict)
	}
	s, err := readStatus(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if s.AppliedRevision != 5 || s.RejectedStale != 2 || len(s.Models) != 2 || s.Models[0].DesiredVersion != "2.0.0" || s.Models[0].ActiveVersion != "2.0.0" {
		t.Fatalf("after stale and repeated docs: %+v", s)
	}
	// A downgrade without permission is refused and recorded; the removed deployment goes.
	apply(doc(6, dm("d", "m", "1.0.0", dgA, false)), SourceNetwork)
	s, _ = readStatus(ctx, st)
	if len(s.Models) != 1 {
		t.Fatalf("removed deployment still listed: %+v", s.Models)
	}
	m := s.Models[0]
	if m.Phase != v1alpha1.PhaseFailed || m.Error != "downgrade from 2.0.0 to 1.0.0 refused: allowDowngrade is false" || m.ActiveVersion != "2.0.0" || m.BytesOwed != 0 {
		t.Fatalf("refused downgrade: %+v", m)
	}
	// activate re-checks the guard: a refused version cannot be switched to.
	if _, err := st.activate(ctx, dm("d", "m", "1.0.0", dgA, false), now); err == nil {
		t.Fatal("activate switched to a refused downgrade")
	}
	// Allowed: it activates and is flagged.
	apply(doc(7, dm("d", "m", "1.0.0", dgA, true)), SourceNetwork)
	from, err := st.activate(ctx, dm("d", "m", "1.0.0", dgA, true), now)
	if err != nil || from != "2.0.0" {
		t.Fatalf("allowed downgrade: from %q, %v", from, err)
	}
	s, _ = readStatus(ctx, st)
	if m := s.Models[0]; m.ActiveVersion != "1.0.0" || m.DowngradedFrom != "2.0.0" || m.Phase != v1alpha1.PhaseActive || m.Error != "" {
		t.Fatalf("after allowed downgrade: %+v", m)
	}
	rows, conds := modelReports(s.Models, nil, now)
	if len(rows) != 1 || rows[0].ActiveVersion != "1.0.0" || len(conds) != 1 || conds[0].Status != "True" {
		t.Fatalf("report rows %+v conditions %+v", rows, conds)
	}
	hist, _ := st.history(ctx)
	if len(hist) != 3 || hist[0].Version != "1.0.0" || hist[0].DeactivatedAt.IsZero() == false {
		t.Fatalf("history %+v", hist)
	}
}

func TestParseBandwidth(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"", 0, true}, {"1000", 1000, true}, {"10MiB", 10 << 20, true}, {"500KB", 500_000, true},
		{"1.5MB/s", 1_500_000, true}, {"2G", 2 << 30, true}, {"0", 0, false}, {"-1MiB", 0, false}, {"fast", 0, false}, {"NaN", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseBandwidth(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseBandwidth(%q) = %d, %v", tt.in, got, err)
		}
	}
}

func TestParseMemTotal(t *testing.T) {
	n, ok := parseMemTotal([]byte("MemFree: 10 kB\nMemTotal:       16315800 kB\n"))
	if !ok || n != 16315800*1024 {
		t.Fatalf("got %d %v", n, ok)
	}
	if _, ok := parseMemTotal([]byte("nothing")); ok {
		t.Fatal("parsed nothing")
	}
}

// TestStateActiveVariant: the state records which variant of a version is
// active, and the report carries it; switching to the full model of the
// same version clears it.
func TestStateActiveVariant(t *testing.T) {
	ctx := t.Context()
	st, err := openState(ctx, filepath.Join(t.TempDir(), "agent.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.setMeta(ctx, metaCluster, "edge-1"); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	steps := []struct {
		want    v1alpha1.DesiredModel
		variant string
	}{
		{variantOf(dm("d", "m", "2.0.0", dgB, false), "int8"), "int8"},
		{variantOf(dm("d", "m", "2.0.0", dgA, false), artifact.OriginalVariant), ""},
		{variantOf(dm("d", "m", "2.0.0", dgB, false), "int8"), "int8"},
		{dm("d", "m", "2.0.0", dgA, false), ""},
	}
	for i, s := range steps {
		if _, err := st.applyDoc(ctx, doc(int64(i+1), s.want), SourceNetwork, now); err != nil {
			t.Fatal(err)
		}
		if _, err := st.activate(ctx, s.want, now); err != nil {
			t.Fatal(err)
		}
		status, err := readStatus(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		m := status.Models[0]
		if m.ActiveDigest != s.want.Digest || m.ActiveVariant != s.variant {
			t.Fatalf("step %d: active %s variant %q, want %s %q", i, m.ActiveDigest, m.ActiveVariant, s.want.Digest, s.variant)
		}
		rows, _ := modelReports(status.Models, nil, now)
		if rows[0].ActiveVariant != s.variant {
			t.Fatalf("step %d: reported variant %q, want %q", i, rows[0].ActiveVariant, s.variant)
		}
	}
}
