package bundle

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"outpost.dev/outpost/api/v1alpha1"
)

func key(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func blob(s string) Blob { return Blob{Digest: digest.FromString(s), Size: int64(len(s))} }

func TestPlan(t *testing.T) {
	a, b := blob("a"), blob("b")
	c1, c2, c3 := blob("c1"), blob("c2"), blob("c3")
	file := Blob{Digest: digest.FromString("file"), Size: 6}
	parent := Blob{Digest: digest.FromString("parent"), Size: 6}
	withChunks := Need{Blob: file, Chunks: []Blob{c1, c2, c3}}
	small := DeltaOption{Base: parent, Blob: Blob{Digest: digest.FromString("delta"), Size: 3}}
	tiny := DeltaOption{Base: parent, Blob: Blob{Digest: digest.FromString("tiny delta"), Size: 1}}
	large := DeltaOption{Base: parent, Blob: Blob{Digest: digest.FromString("large delta"), Size: 5}}
	withDelta := func(ds ...DeltaOption) Need { n := withChunks; n.Deltas = ds; return n }
	heldParent := map[digest.Digest]bool{parent.Digest: true}
	tests := []struct {
		name       string
		need       []Need
		held       map[digest.Digest]bool
		heldChunks map[digest.Digest]bool
		whole      []Blob
		packs      []PackPlan
		deltas     []DeltaPlan
	}{
		{"nothing held", []Need{{Blob: a}, {Blob: b}}, nil, nil, []Blob{a, b}, nil, nil},
		{"held left out", []Need{{Blob: a}, {Blob: b}}, map[digest.Digest]bool{a.Digest: true}, nil, []Blob{b}, nil, nil},
		{"shared once", []Need{{Blob: a}, {Blob: b}, {Blob: a}}, nil, nil, []Blob{a, b}, nil, nil},
		{"file held whole", []Need{withChunks}, map[digest.Digest]bool{file.Digest: true}, nil, nil, nil, nil},
		{"some chunks held: a pack", []Need{withChunks}, nil, map[digest.Digest]bool{c1.Digest: true},
			nil, []PackPlan{{File: file, Missing: []Blob{c2, c3}}}, nil},
		{"every chunk held: an empty pack", []Need{withChunks}, nil, map[digest.Digest]bool{c1.Digest: true, c2.Digest: true, c3.Digest: true},
			nil, []PackPlan{{File: file}}, nil},
		{"no chunk held: whole", []Need{withChunks}, nil, map[digest.Digest]bool{a.Digest: true}, []Blob{file}, nil, nil},
		{"no chunk index: whole", []Need{{Blob: file}}, nil, map[digest.Digest]bool{c1.Digest: true}, []Blob{file}, nil, nil},
		{"delta smaller than the file", []Need{withDelta(small)}, heldParent, nil, nil, nil, []DeltaPlan{{File: file, DeltaOption: small}}},
		{"delta smaller than the pack", []Need{withDelta(tiny)}, heldParent, map[digest.Digest]bool{c1.Digest: true},
			nil, nil, []DeltaPlan{{File: file, DeltaOption: tiny}}},
		{"pack smaller than the delta", []Need{withDelta(large)}, heldParent, map[digest.Digest]bool{c1.Digest: true, c2.Digest: true},
			nil, []PackPlan{{File: file, Missing: []Blob{c3}}}, nil},
		{"the smallest of two deltas", []Need{withDelta(small, tiny)}, heldParent, nil, nil, nil, []DeltaPlan{{File: file, DeltaOption: tiny}}},
		{"base not held: whole", []Need{withDelta(small)}, nil, nil, []Blob{file}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			whole, packs, deltas := Plan(tt.need, tt.held, tt.heldChunks)
			if !reflect.DeepEqual(whole, tt.whole) || !reflect.DeepEqual(packs, tt.packs) || !reflect.DeepEqual(deltas, tt.deltas) {
				t.Errorf("Plan = %v, %v, %v; want %v, %v, %v", whole, packs, deltas, tt.whole, tt.packs, tt.deltas)
			}
		})
	}
}

func TestCommon(t *testing.T) {
	a, b, c := digest.FromString("a"), digest.FromString("b"), digest.FromString("c")
	set := func(ds ...digest.Digest) map[digest.Digest]bool {
		m := map[digest.Digest]bool{}
		for _, d := range ds {
			m[d] = true
		}
		return m
	}
	tests := []struct {
		name string
		sets []map[digest.Digest]bool
		want map[digest.Digest]bool
	}{
		{"none", nil, set()},
		{"one cluster", []map[digest.Digest]bool{set(a, b)}, set(a, b)},
		{"what both hold", []map[digest.Digest]bool{set(a, b), set(b, c)}, set(b)},
		{"one holds nothing", []map[digest.Digest]bool{set(a, b), set()}, set()},
	}
	for _, tt := range tests {
		if got := Common(tt.sets...); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Common = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestAcked(t *testing.T) {
	exp := map[int64][]string{1: {"a"}, 2: {"b", "c"}, 3: {"d"}}
	keys, seqs := Acked(exp, 2)
	if !reflect.DeepEqual(keys, []string{"a", "b", "c"}) || !reflect.DeepEqual(seqs, []int64{1, 2}) {
		t.Errorf("Acked = %v %v", keys, seqs)
	}
	if keys, _ := Acked(exp, 0); keys != nil {
		t.Errorf("Acked(0) = %v, want none", keys)
	}
}

func TestVerify(t *testing.T) {
	pub, priv := key(t)
	other, _ := key(t)
	env, err := Sign(PayloadContents, []byte(`{"x":1}`), priv)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Replace(env, []byte(`"payload":"ey`), []byte(`"payload":"fy`), 1)
	tests := []struct {
		name    string
		env     []byte
		typ     string
		keys    []ed25519.PublicKey
		wantErr error
	}{
		{"good", env, PayloadContents, []ed25519.PublicKey{pub}, nil},
		{"other hub", env, PayloadContents, []ed25519.PublicKey{other}, ErrSignature},
		{"no key pinned", env, PayloadContents, nil, ErrSignature},
		{"other type", env, PayloadParts, []ed25519.PublicKey{pub}, ErrMalformed},
		{"payload changed", flipped, PayloadContents, []ed25519.PublicKey{pub}, ErrSignature},
		{"not json", []byte("{"), PayloadContents, []ed25519.PublicKey{pub}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, id, err := Verify(tt.env, tt.typ, tt.keys)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify: err %v, want %v", err, tt.wantErr)
			}
			if err == nil && (string(p) != `{"x":1}` || id != KeyID(pub)) {
				t.Errorf("Verify = %q %s", p, id)
			}
		})
	}
}

func TestContentsValidate(t *testing.T) {
	ok := func() Contents {
		return Contents{ID: "b1", Clusters: []ClusterState{{Cluster: "c1", Desired: v1alpha1.DesiredState{Cluster: "c1"}}}, Blobs: []Blob{blob("a")}}
	}
	tests := []struct {
		name   string
		change func(*Contents)
		bad    bool
	}{
		{"ok", func(*Contents) {}, false},
		{"no id", func(c *Contents) { c.ID = "" }, true},
		{"no cluster", func(c *Contents) { c.Clusters = nil }, true},
		{"cluster twice", func(c *Contents) { c.Clusters = append(c.Clusters, c.Clusters[0]) }, true},
		{"other cluster's state", func(c *Contents) { c.Clusters[0].Desired.Cluster = "c2" }, true},
		{"blob twice", func(c *Contents) { c.Blobs = append(c.Blobs, c.Blobs[0]) }, true},
		{"bad digest", func(c *Contents) { c.Blobs[0].Digest = "sha256:00" }, true},
		{"negative size", func(c *Contents) { c.Blobs[0].Size = -1 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.change(&c)
			if err := c.Validate(); (err != nil) != tt.bad {
				t.Errorf("Validate = %v, want error %v", err, tt.bad)
			}
		})
	}
	c := ok()
	if _, err := c.For("c2"); !errors.Is(err, ErrOtherCluster) {
		t.Errorf("For(c2) = %v, want ErrOtherCluster", err)
	}
}

func TestPartsValidate(t *testing.T) {
	d := digest.FromString("x")
	tests := []struct {
		name string
		p    Parts
		bad  bool
	}{
		{"ok", Parts{Bundle: "b", Size: 15, Parts: []Part{{"p.1", 0, 10, d}, {"p.2", 10, 5, d}}}, false},
		{"gap", Parts{Bundle: "b", Size: 15, Parts: []Part{{"p.1", 0, 10, d}, {"p.2", 11, 4, d}}}, true},
		{"short", Parts{Bundle: "b", Size: 16, Parts: []Part{{"p.1", 0, 10, d}, {"p.2", 10, 5, d}}}, true},
		{"path", Parts{Bundle: "b", Size: 10, Parts: []Part{{"../p", 0, 10, d}}}, true},
		{"same name", Parts{Bundle: "b", Size: 20, Parts: []Part{{"p", 0, 10, d}, {"p", 10, 10, d}}}, true},
		{"none", Parts{Bundle: "b"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.p.Validate(); (err != nil) != tt.bad {
				t.Errorf("Validate = %v, want error %v", err, tt.bad)
			}
		})
	}
}

// makeLayout writes a bundle layout with one blob of n random bytes and
// one manifest, signed with priv.
func makeLayout(t *testing.T, dir string, priv ed25519.PrivateKey, n int) (payload []byte) {
	t.Helper()
	ctx := context.Background()
	w, err := Create(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, n)
	rand.Read(data)
	ld := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromBytes(data), Size: int64(n)}
	if err := w.Push(ctx, ld, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	cfg := []byte("{}")
	cd := ocispec.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: digest.FromBytes(cfg), Size: 2}
	if err := w.Push(ctx, cd, bytes.NewReader(cfg)); err != nil {
		t.Fatal(err)
	}
	mb := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + cd.Digest.String() + `","size":2},"layers":[{"mediaType":"application/octet-stream","digest":"` + ld.Digest.String() + `","size":` + itoa(n) + `}]}`)
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	if err := w.Push(ctx, md, bytes.NewReader(mb)); err != nil {
		t.Fatal(err)
	}
	if err := w.Tag(ctx, md, "m-1.0.0"); err != nil {
		t.Fatal(err)
	}
	c := Contents{ID: "bundle-" + filepath.Base(dir), Created: time.Unix(1, 0).UTC(), Blobs: w.Blobs(),
		Clusters: []ClusterState{{Cluster: "c1", Desired: v1alpha1.DesiredState{Cluster: "c1", Revision: 7}}}}
	payload, err = jsonMarshal(c)
	if err != nil {
		t.Fatal(err)
	}
	env, err := Sign(PayloadContents, payload, priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Finish(ctx, env, c.Created); err != nil {
		t.Fatal(err)
	}
	return payload
}

func TestLayoutOpenAndTamper(t *testing.T) {
	pub, priv := key(t)
	other, _ := key(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "b")
	makeLayout(t, dir, priv, 5000)
	if _, err := os.Stat(dir + ".partial"); err == nil {
		t.Fatal("partial folder left")
	}
	l, err := Open(ctx, dir, []ed25519.PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Contents.For("c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dir, []ed25519.PublicKey{other}); !errors.Is(err, ErrSignature) {
		t.Fatalf("Open with another hub's key = %v, want ErrSignature", err)
	}
	// A flipped byte in a model blob is found when the blob is copied.
	big := l.Contents.Blobs[0]
	p := BlobPath(dir, big.Digest)
	b, _ := os.ReadFile(p)
	b[100] ^= 1
	os.WriteFile(p, b, 0o644)
	if err := l.CopyTo(big.Digest, filepath.Join(t.TempDir(), "x")); !errors.Is(err, ErrDigest) {
		t.Fatalf("CopyTo of a flipped blob = %v, want ErrDigest", err)
	}
	// A changed index.json naming a manifest the contents do not list is refused.
	ib, _ := os.ReadFile(filepath.Join(dir, "index.json"))
	bad := strings.Replace(string(ib), `"manifests":[`, `"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"`+digest.FromString("x").String()+`","size":1},`, 1)
	os.WriteFile(filepath.Join(dir, "index.json"), []byte(bad), 0o644)
	if _, err := Open(ctx, dir, []ed25519.PublicKey{pub}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Open with an unlisted manifest = %v, want ErrMalformed", err)
	}
}

func TestParts(t *testing.T) {
	pub, priv := key(t)
	ctx := context.Background()
	root := t.TempDir()
	layout := filepath.Join(root, "layout")
	makeLayout(t, layout, priv, 20000)
	out := filepath.Join(root, "usb")
	os.Mkdir(out, 0o755)
	p, err := WriteParts(ctx, layout, out, "b", "bundle-1", 4096)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Parts) < 5 {
		t.Fatalf("%d parts, want at least 5", len(p.Parts))
	}
	for _, pt := range p.Parts {
		if pt.Size > 4096 {
			t.Fatalf("part %s of %d bytes", pt.Name, pt.Size)
		}
	}
	pb, _ := jsonMarshal(p)
	env, _ := Sign(PayloadParts, pb, priv)
	pf := filepath.Join(out, PartsFile("b"))
	os.WriteFile(pf, env, 0o644)

	// A trip with some parts only: the rest is reported missing; a later trip completes.
	trip1 := filepath.Join(root, "trip1")
	os.Mkdir(trip1, 0o755)
	os.WriteFile(filepath.Join(trip1, PartsFile("b")), env, 0o644)
	for i := len(p.Parts) - 1; i >= 2; i-- { // any order
		b, _ := os.ReadFile(filepath.Join(out, p.Parts[i].Name))
		os.WriteFile(filepath.Join(trip1, p.Parts[i].Name), b, 0o644)
	}
	stage := filepath.Join(root, "stage")
	if _, err := Stage(ctx, filepath.Join(trip1, PartsFile("b")), stage, []ed25519.PublicKey{pub}); !errors.Is(err, ErrIncomplete) ||
		!strings.Contains(err.Error(), p.Parts[0].Name) {
		t.Fatalf("Stage of a partial trip = %v, want ErrIncomplete naming %s", err, p.Parts[0].Name)
	}
	// A staged part that rots on disk before the next trip is refused, not
	// unpacked, and staged afresh by the trip after.
	staged, _ := filepath.Glob(filepath.Join(stage, "*", p.Parts[3].Name))
	if len(staged) != 1 {
		t.Fatalf("staged copies of %s: %v", p.Parts[3].Name, staged)
	}
	b, _ := os.ReadFile(staged[0])
	b[len(b)/2] ^= 0x01
	os.WriteFile(staged[0], b, 0o600)
	if _, err := Stage(ctx, pf, stage, []ed25519.PublicKey{pub}); !errors.Is(err, ErrDigest) {
		t.Fatalf("Stage over a rotted staged part = %v, want ErrDigest", err)
	}
	if m, _ := filepath.Glob(filepath.Join(stage, "*", "layout")); len(m) > 0 {
		t.Fatalf("a layout was unpacked from a rotted part: %v", m)
	}
	dir, err := Stage(ctx, pf, stage, []ed25519.PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dir, []ed25519.PublicKey{pub}); err != nil {
		t.Fatal(err)
	}
}

func TestPartsTamper(t *testing.T) {
	pub, priv := key(t)
	other, otherPriv := key(t)
	ctx := context.Background()
	root := t.TempDir()
	write := func(name string, priv ed25519.PrivateKey) (string, *Parts) {
		layout := filepath.Join(root, name+"-layout")
		makeLayout(t, layout, priv, 9000)
		out := filepath.Join(root, name)
		os.Mkdir(out, 0o755)
		p, err := WriteParts(ctx, layout, out, "b", name, 4096)
		if err != nil {
			t.Fatal(err)
		}
		pb, _ := jsonMarshal(p)
		env, _ := Sign(PayloadParts, pb, priv)
		os.WriteFile(filepath.Join(out, PartsFile("b")), env, 0o644)
		return out, p
	}
	tests := []struct {
		name    string
		tamper  func(dir string, p *Parts)
		keys    []ed25519.PublicKey
		wantErr error
	}{
		{"flipped byte", func(dir string, p *Parts) {
			f := filepath.Join(dir, p.Parts[1].Name)
			b, _ := os.ReadFile(f)
			b[10] ^= 0x40
			os.WriteFile(f, b, 0o644)
		}, []ed25519.PublicKey{pub}, ErrDigest},
		{"part of another bundle", func(dir string, p *Parts) {
			odir, op := write("other", priv)
			b, _ := os.ReadFile(filepath.Join(odir, op.Parts[0].Name))
			os.WriteFile(filepath.Join(dir, p.Parts[0].Name), b, 0o644)
		}, []ed25519.PublicKey{pub}, ErrDigest},
		{"missing part", func(dir string, p *Parts) { os.Remove(filepath.Join(dir, p.Parts[2].Name)) }, []ed25519.PublicKey{pub}, ErrIncomplete},
		{"signed by another hub", func(string, *Parts) {}, []ed25519.PublicKey{other}, ErrSignature},
		{"list re-signed by another hub", func(dir string, p *Parts) {
			pb, _ := jsonMarshal(p)
			env, _ := Sign(PayloadParts, pb, otherPriv)
			os.WriteFile(filepath.Join(dir, PartsFile("b")), env, 0o644)
		}, []ed25519.PublicKey{pub}, ErrSignature},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, p := write("b"+itoa(i), priv)
			tt.tamper(dir, p)
			stage := filepath.Join(root, "stage"+itoa(i))
			got, err := Stage(ctx, filepath.Join(dir, PartsFile("b")), stage, tt.keys)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Stage = %q, %v; want %v", got, err, tt.wantErr)
			}
			if m, _ := filepath.Glob(filepath.Join(stage, "*", "layout")); len(m) > 0 {
				t.Fatalf("a layout was unpacked: %v", m)
			}
		})
	}
}

func TestLayoutPath(t *testing.T) {
	good := "blobs/sha256/" + digest.FromString("x").Encoded()
	for _, n := range []string{"oci-layout", "index.json", good} {
		if err := LayoutPath(n); err != nil {
			t.Errorf("LayoutPath(%q) = %v", n, err)
		}
	}
	for _, n := range []string{"../x", "/etc/passwd", "blobs/sha256/../../x", "blobs/sha512/" + digest.FromString("x").Encoded(), "blobs/sha256/zz"} {
		if err := LayoutPath(n); err == nil {
			t.Errorf("LayoutPath(%q) accepted", n)
		}
	}
}

func TestMissingChunks(t *testing.T) {
	a, b, c := blob("a"), blob("bb"), blob("ccc")
	tests := []struct {
		name   string
		chunks []Blob
		held   map[digest.Digest]bool
		want   []Blob
		bytes  int64
	}{
		{"none held", []Blob{a, b, c}, nil, []Blob{a, b, c}, 6},
		{"some held", []Blob{a, b, c}, map[digest.Digest]bool{b.Digest: true}, []Blob{a, c}, 4},
		{"repeated once", []Blob{a, a, c}, nil, []Blob{a, c}, 4},
		{"all held", []Blob{a}, map[digest.Digest]bool{a.Digest: true}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n := MissingChunks(tt.chunks, tt.held)
			if !reflect.DeepEqual(got, tt.want) || n != tt.bytes {
				t.Errorf("MissingChunks = %v, %d; want %v, %d", got, n, tt.want, tt.bytes)
			}
		})
	}
}

func TestContentsPacks(t *testing.T) {
	pack := blob("abc")
	ok := func() Contents {
		return Contents{ID: "b", Clusters: []ClusterState{{Cluster: "c", Desired: v1alpha1.DesiredState{Cluster: "c"}}},
			Blobs:  []Blob{pack, blob("delta")},
			Packs:  []Pack{{File: blob("file"), Blob: pack.Digest, Chunks: []Blob{blob("a"), blob("bc")}}},
			Deltas: []Delta{{File: blob("file 2"), Base: blob("file 1"), Blob: blob("delta").Digest}}}
	}
	tests := []struct {
		name   string
		change func(*Contents)
		bad    bool
	}{
		{"ok", func(*Contents) {}, false},
		{"pack blob not listed", func(c *Contents) { c.Blobs = nil }, true},
		{"chunks do not fill the blob", func(c *Contents) { c.Packs[0].Chunks = c.Packs[0].Chunks[:1] }, true},
		{"two packs of one file", func(c *Contents) { c.Packs = append(c.Packs, c.Packs[0]) }, true},
		{"bad chunk digest", func(c *Contents) { c.Packs[0].Chunks[0].Digest = "md5:x" }, true},
		{"delta blob not listed", func(c *Contents) { c.Blobs = c.Blobs[:1] }, true},
		{"a delta and a pack of one file", func(c *Contents) { c.Deltas[0].File = c.Packs[0].File }, true},
		{"bad delta base", func(c *Contents) { c.Deltas[0].Base.Digest = "sha256:short" }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok()
			tt.change(&c)
			if err := c.Validate(); (err != nil) != tt.bad {
				t.Errorf("Validate = %v, want error %v", err, tt.bad)
			}
		})
	}
	c := ok()
	if _, found := c.Pack(blob("file").Digest); !found {
		t.Error("Pack does not find the packed file")
	}
	if _, found := c.Pack(blob("other").Digest); found {
		t.Error("Pack finds a file it does not pack")
	}
	if d, found := c.Delta(blob("file 2").Digest); !found || d.Base != blob("file 1") {
		t.Error("Delta does not find the file carried as a delta")
	}
}
