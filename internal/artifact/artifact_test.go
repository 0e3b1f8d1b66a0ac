package artifact

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
)

func testFiles() map[string][]byte {
	return map[string][]byte{
		"model.onnx":                randBytes(1, 3<<20+123),
		"config.json":               []byte(`{"hidden": 16}`),
		"tokenizer/tokenizer.json":  []byte(`{"vocab": []}`),
		"tokenizer/deep/merges.txt": []byte("a b\n"),
		"README.md":                 []byte("# model\n"),
		"scripts/pre.py":            []byte("print(1)\n"),
		"empty.txt":                 {},
	}
}

func testOpts(version string) PushOptions {
	return PushOptions{
		Name:       "resnet",
		Version:    version,
		Parent:     "resnet:0.9.0",
		ProducedBy: "pipelinerun/train-7",
		Metrics:    map[string]string{"accuracy": "0.91", "f1": "0.88"},
		Created:    time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Chunking:   smallParams,
	}
}

func TestPushPullRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	files := testFiles()
	writeTree(t, src, files)
	store := memory.New()

	var lastDone, lastTotal int64
	opts := testOpts("1.2.0")
	opts.Progress = func(done, total int64) { lastDone, lastTotal = done, total }
	desc, err := Push(ctx, store, src, opts)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, b := range files {
		want += int64(len(b))
	}
	if lastDone != want || lastTotal != want {
		t.Errorf("progress ended at %d/%d, want %d/%d", lastDone, lastTotal, want, want)
	}

	// Manifest shape: ModelPack types, one raw layer per file with both path
	// annotations, Outpost annotations.
	mb, err := content.FetchAll(ctx, store, desc)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseManifest(mb)
	if err != nil {
		t.Fatal(err)
	}
	if m.ArtifactType != ArtifactTypeModel || m.Config.MediaType != MediaTypeModelConfig {
		t.Errorf("artifactType %q config %q", m.ArtifactType, m.Config.MediaType)
	}
	if len(m.Layers) != len(files) {
		t.Fatalf("%d layers, want %d", len(m.Layers), len(files))
	}
	wantTypes := map[string]string{
		"model.onnx": MediaTypeModelWeightRaw, "config.json": MediaTypeModelWeightConfigRaw,
		"README.md": MediaTypeModelDocRaw, "scripts/pre.py": MediaTypeModelCodeRaw,
	}
	for _, l := range m.Layers {
		p := l.Annotations[AnnotationFilepath]
		if l.Annotations[AnnotationTitle] != p || files[p] == nil {
			t.Errorf("layer annotations %v", l.Annotations)
		}
		if w, ok := wantTypes[p]; ok && l.MediaType != w {
			t.Errorf("%s: media type %s, want %s", p, l.MediaType, w)
		}
	}
	for k, v := range map[string]string{
		AnnotationName: "resnet", AnnotationVersion: "1.2.0", AnnotationCreated: "2025-01-02T03:04:05Z",
		AnnotationParent: "resnet:0.9.0", AnnotationProducedBy: "pipelinerun/train-7", AnnotationMetricPrefix + "accuracy": "0.91",
	} {
		if m.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, m.Annotations[k], v)
		}
	}

	dst := filepath.Join(t.TempDir(), "out")
	model, err := Pull(ctx, store, "1.2.0", dst, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := readTree(t, dst)
	if len(got) != len(files) {
		t.Fatalf("pulled %d files, want %d", len(got), len(files))
	}
	for p, b := range files {
		if !bytes.Equal(got[p], b) {
			t.Errorf("%s differs after pull", p)
		}
	}
	if model.Name != "resnet" || model.Version != "1.2.0" || model.Descriptor.Digest != desc.Digest {
		t.Errorf("model = %+v", model)
	}

	info, err := Inspect(ctx, store, "1.2.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "resnet" || info.Version != "1.2.0" || info.Format != "onnx" || !info.HasChunkIndex ||
		info.Lineage.Parent != "resnet:0.9.0" || info.Lineage.ProducedBy != "pipelinerun/train-7" ||
		info.Metrics["f1"] != "0.88" || !info.Created.Equal(opts.Created) || len(info.Files) != len(files) {
		t.Errorf("inspect = %+v", info)
	}
	if info.Size <= want+desc.Size {
		t.Errorf("inspect size %d, want above files+manifest %d", info.Size, want+desc.Size)
	}

	idx, err := FetchChunkIndex(ctx, store, desc)
	if err != nil {
		t.Fatal(err)
	}
	fc := idx.File("model.onnx")
	if fc == nil || fc.Size != int64(len(files["model.onnx"])) || len(fc.Chunks) < 10 || idx.Params != smallParams {
		t.Fatalf("chunk index entry %+v", fc)
	}
	w := files["model.onnx"]
	for _, c := range fc.Chunks {
		if digest.FromBytes(w[c.Offset:c.Offset+c.Length]) != c.Digest {
			t.Fatalf("chunk at %d: digest does not match file bytes", c.Offset)
		}
	}
}

func TestPushSingleFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeTree(t, dir, map[string][]byte{"m.safetensors": randBytes(5, 1000)})
	store := memory.New()
	if _, err := Push(ctx, store, filepath.Join(dir, "m.safetensors"), testOpts("0.1.0")); err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(ctx, store, "0.1.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Files) != 1 || info.Files[0].Path != "m.safetensors" || info.Format != "safetensors" {
		t.Fatalf("inspect = %+v", info)
	}
}

func TestPushIdempotentAndReproducible(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeTree(t, src, testFiles())
	store := memory.New()
	first, err := Push(ctx, store, src, testOpts("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	// A re-push with a later timestamp is the same content: no-op.
	opts := testOpts("1.0.0")
	opts.Created = opts.Created.Add(time.Hour)
	again, err := Push(ctx, store, src, opts)
	if err != nil {
		t.Fatalf("re-push of identical files: %v", err)
	}
	if again.Digest != first.Digest {
		t.Fatalf("re-push changed the tag: %s -> %s", first.Digest, again.Digest)
	}
	// The same folder and options give the same manifest in another store.
	other, err := Push(ctx, memory.New(), src, testOpts("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	if other.Digest != first.Digest {
		t.Fatalf("push is not reproducible: %s vs %s", first.Digest, other.Digest)
	}
}

func TestPushDifferentContentRefused(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	files := testFiles()
	writeTree(t, src, files)
	store := memory.New()
	first, err := Push(ctx, store, src, testOpts("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(t *testing.T, opts *PushOptions)
	}{
		{"file bytes", func(t *testing.T, _ *PushOptions) {
			writeTree(t, src, map[string][]byte{"config.json": []byte(`{"hidden": 32}`)})
		}},
		{"metrics", func(_ *testing.T, o *PushOptions) { o.Metrics = map[string]string{"accuracy": "0.5"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeTree(t, src, files)
			opts := testOpts("1.0.0")
			tt.change(t, &opts)
			_, err := Push(ctx, store, src, opts)
			if !errors.Is(err, ErrVersionExists) {
				t.Fatalf("err = %v, want ErrVersionExists", err)
			}
			want := "model resnet version 1.0.0 already exists with different content (digest " + first.Digest.String() + ")"
			if err.Error() != want {
				t.Fatalf("err = %q, want %q", err, want)
			}
			if d, _ := store.Resolve(ctx, "1.0.0"); d.Digest != first.Digest {
				t.Fatal("the tag moved")
			}
		})
	}
}

func TestPushRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	good := t.TempDir()
	writeTree(t, good, map[string][]byte{"a.onnx": []byte("x")})
	outside := t.TempDir()
	writeTree(t, outside, map[string][]byte{"secret": []byte("s")})
	escaping := t.TempDir()
	writeTree(t, escaping, map[string][]byte{"a.onnx": []byte("x")})
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(escaping, "link")); err != nil {
		t.Fatal(err)
	}
	inside := t.TempDir()
	writeTree(t, inside, map[string][]byte{"a.onnx": []byte("x")})
	if err := os.Symlink("a.onnx", filepath.Join(inside, "alias.onnx")); err != nil {
		t.Fatal(err)
	}
	backslash := t.TempDir()
	writeTree(t, backslash, map[string][]byte{`..\x`: []byte("x")})

	tests := []struct {
		name    string
		src     string
		mutate  func(*PushOptions)
		wantErr string
	}{
		{"short version", good, func(o *PushOptions) { o.Version = "1.0" }, `invalid version "1.0"`},
		{"v prefix", good, func(o *PushOptions) { o.Version = "v1.0.0" }, `invalid version "v1.0.0"`},
		{"empty version", good, func(o *PushOptions) { o.Version = "" }, `invalid version ""`},
		{"bad name", good, func(o *PushOptions) { o.Name = "Res Net" }, "invalid model name"},
		{"reserved annotation", good, func(o *PushOptions) { o.Annotations = map[string]string{AnnotationVersion: "x"} }, "set by push"},
		{"bad metric key", good, func(o *PushOptions) { o.Metrics = map[string]string{"a b": "1"} }, "invalid metric key"},
		{"bad chunking", good, func(o *PushOptions) { o.Chunking = ChunkParams{Min: 1, Avg: 2, Max: 3} }, "invalid chunk params"},
		{"escaping symlink", escaping, nil, "points outside"},
		{"backslash name", backslash, nil, "backslash"},
		{"empty folder", t.TempDir(), nil, "no files"},
		{"missing", filepath.Join(good, "nope"), nil, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOpts("1.0.0")
			if tt.mutate != nil {
				tt.mutate(&opts)
			}
			store := memory.New()
			_, err := Push(ctx, store, tt.src, opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			if _, err := store.Resolve(ctx, "1.0.0"); err == nil {
				t.Fatal("a refused push tagged a version")
			}
		})
	}

	// A symlink to a file inside the folder is pushed under the link name.
	store := memory.New()
	if _, err := Push(ctx, store, inside, testOpts("1.0.0")); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if _, err := Pull(ctx, store, "1.0.0", dst, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, dst); string(got["alias.onnx"]) != "x" || len(got) != 2 {
		t.Fatalf("pulled %v", got)
	}
}

func TestPullRefusesUnsafePaths(t *testing.T) {
	ctx := context.Background()
	title := func(p string) map[string]string { return map[string]string{AnnotationTitle: p} }
	tests := []struct {
		name    string
		layers  []testLayer
		wantErr string
	}{
		{"dotdot", []testLayer{{"application/octet-stream", []byte("x"), title("../x")}}, `"../x"`},
		{"inner dotdot", []testLayer{{"application/octet-stream", []byte("x"), title("a/../../x")}}, `"a/../../x"`},
		{"absolute", []testLayer{{"application/octet-stream", []byte("x"), title("/tmp/x")}}, `"/tmp/x"`},
		{"backslash", []testLayer{{"application/octet-stream", []byte("x"), title(`..\..\x`)}}, `"..\\..\\x"`},
		{"drive", []testLayer{{"application/octet-stream", []byte("x"), title("C:x")}}, `"C:x"`},
		{"filepath annotation", []testLayer{{MediaTypeModelWeightRaw, []byte("x"), map[string]string{AnnotationFilepath: "../../etc/passwd"}}}, `"../../etc/passwd"`},
		{"duplicate", []testLayer{
			{"application/octet-stream", []byte("x"), title("a")},
			{"application/octet-stream", []byte("y"), title("a")},
		}, `duplicate file path "a"`},
		{"file and folder", []testLayer{
			{"application/octet-stream", []byte("x"), title("a")},
			{"application/octet-stream", []byte("y"), title("a/b")},
		}, `"a"`},
		{"no path", []testLayer{{"application/octet-stream", []byte("x"), nil}}, "not a model artifact"},
		{"oras folder tarball", []testLayer{{"application/vnd.oci.image.layer.v1.tar+gzip", []byte("x"),
			map[string]string{AnnotationTitle: "d", annotationORASUnpack: "true"}}}, "not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := memory.New()
			pushCrafted(t, store, "v1", "", tt.layers)
			dir := t.TempDir()
			_, err := Pull(ctx, store, "v1", dir, PullOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
			if ents := dirEntries(t, dir); len(ents) != 0 {
				t.Fatalf("dir not clean: %v", ents)
			}
		})
	}
}

func TestPullSymlinkInDirDoesNotEscape(t *testing.T) {
	ctx := context.Background()
	store := memory.New()
	pushCrafted(t, store, "v1", "", []testLayer{{"application/octet-stream", []byte("x"), map[string]string{AnnotationTitle: "a/x"}}})
	dir, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	if _, err := Pull(ctx, store, "v1", dir, PullOptions{}); err == nil {
		t.Fatal("pull wrote through a symlink leading outside the folder")
	}
	if ents := dirEntries(t, outside); len(ents) != 0 {
		t.Fatalf("wrote outside: %v", ents)
	}
}

func TestPullORASArtifact(t *testing.T) {
	// What `oras push repo:v1 a.txt sub/b.bin` produces: no model types,
	// default layer media type, title annotations.
	ctx := context.Background()
	store := memory.New()
	pushCrafted(t, store, "v1", "application/vnd.unknown.artifact.v1", []testLayer{
		{ocispec.MediaTypeImageLayer, []byte("hello"), map[string]string{AnnotationTitle: "a.txt"}},
		{ocispec.MediaTypeImageLayer, randBytes(4, 5000), map[string]string{AnnotationTitle: "sub/b.bin"}},
	})
	dir := t.TempDir()
	if _, err := Pull(ctx, store, "v1", dir, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	got := readTree(t, dir)
	if string(got["a.txt"]) != "hello" || !bytes.Equal(got["sub/b.bin"], randBytes(4, 5000)) {
		t.Fatalf("pulled %d files", len(got))
	}
}

func TestPullCorruptBlobLeavesDirClean(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	files := testFiles()
	writeTree(t, src, files)
	store := memory.New()
	if _, err := Push(ctx, store, src, testOpts("1.0.0")); err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(ctx, store, "1.0.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Corrupt the last file in layer order so earlier ones were already
	// staged when the failure is found.
	i := slices.IndexFunc(info.Files, func(f File) bool { return f.Path == "tokenizer/tokenizer.json" })
	bad := &corruptingStore{Store: store, bad: info.Files[i].Digest}

	dir := t.TempDir()
	writeTree(t, dir, map[string][]byte{"keep.txt": []byte("mine")})
	_, err = Pull(ctx, bad, "1.0.0", dir, PullOptions{})
	if err == nil || !strings.Contains(err.Error(), "digest mismatch") || !strings.Contains(err.Error(), "tokenizer/tokenizer.json") {
		t.Fatalf("err = %v, want a digest mismatch naming the file", err)
	}
	if got := readTree(t, dir); len(got) != 1 || string(got["keep.txt"]) != "mine" {
		t.Fatalf("dir changed: %v", slices.Collect(func(yield func(string) bool) {
			for k := range got {
				if !yield(k) {
					return
				}
			}
		}))
	}
	if ents := dirEntries(t, dir); len(ents) != 1 {
		t.Fatalf("dir holds %v", ents)
	}

	// A folder Pull had to create is removed again.
	fresh := filepath.Join(t.TempDir(), "new")
	if _, err := Pull(ctx, bad, "1.0.0", fresh, PullOptions{}); err == nil {
		t.Fatal("pull of a corrupt blob succeeded")
	}
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("created folder left behind: %v", err)
	}
}

func TestPullSizeMismatch(t *testing.T) {
	// A manifest that claims a layer is shorter than the blob: the extra
	// bytes must be noticed, not silently dropped.
	ctx := context.Background()
	store := memory.New()
	data := []byte("0123456789")
	d := pushCrafted(t, store, "v1", "", []testLayer{{"application/octet-stream", data, map[string]string{AnnotationTitle: "f"}}})
	mb, _ := content.FetchAll(ctx, store, d)
	m, _ := ParseManifest(mb)
	m.Layers[0].Size = 5
	lying := &sizeLyingStore{Store: store, manifest: m, real: map[digest.Digest]int64{digest.FromBytes(data): int64(len(data))}}
	if _, err := Pull(ctx, lying, "v1", t.TempDir(), PullOptions{}); err == nil || !strings.Contains(err.Error(), "size mismatch") {
		t.Fatalf("err = %v, want size mismatch", err)
	}
}

// sizeLyingStore resolves "v1" to a manifest with wrong layer sizes while
// serving the real blobs.
type sizeLyingStore struct {
	*memory.Store
	manifest *ocispec.Manifest
	real     map[digest.Digest]int64
}

func (s *sizeLyingStore) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	if n, ok := s.real[d.Digest]; ok {
		d.Size = n
	}
	return s.Store.Fetch(ctx, d)
}

func (s *sizeLyingStore) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	b, err := jsonMarshal(s.manifest)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if ok, _ := s.Exists(ctx, d); !ok {
		if err := s.Push(ctx, d, bytes.NewReader(b)); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	return d, nil
}

func TestParseManifest(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"valid", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a/b","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`, true},
		{"schema 1", `{"schemaVersion":1,"config":{"mediaType":"a/b","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}}`, false},
		{"index", `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","config":{"mediaType":"a/b","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}}`, false},
		{"bad digest", `{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:zz","size":2}}`, false},
		{"negative size", `{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":-1}}`, false},
		{"layer without media type", `{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}]}`, false},
		{"trailing", `{"schemaVersion":2,"config":{"mediaType":"a/b","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}} {}`, false},
		{"not json", `nope`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseManifest([]byte(tt.in)); (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.cncf.model.manifest.v1+json","config":{"mediaType":"application/vnd.cncf.model.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[{"mediaType":"application/vnd.cncf.model.weight.v1.raw","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2,"annotations":{"org.cncf.model.filepath":"a/b.onnx"}}]}`))
	f.Add([]byte(`{"schemaVersion":2}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		// Whatever parses must be safe to turn into a file list.
		files, err := ModelFiles(m)
		if err != nil {
			return
		}
		for _, fl := range files {
			if ValidatePath(fl.Path) != nil || fl.Size < 0 {
				t.Fatalf("unsafe file accepted: %+v", fl)
			}
		}
	})
}

func TestValidatePath(t *testing.T) {
	good := []string{"a", "a/b.onnx", "dir/sub/file.bin", "..a", "a..b", "a/.hidden", "ünï"}
	bad := []string{"", ".", "..", "../a", "a/..", "a/../b", "/a", "a//b", "a/", "./a", `a\b`, "C:/x", "a\x00b", "a\nb", string([]byte{0xff})}
	for _, p := range good {
		if err := ValidatePath(p); err != nil {
			t.Errorf("ValidatePath(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range bad {
		if err := ValidatePath(p); err == nil {
			t.Errorf("ValidatePath(%q) = nil, want error", p)
		}
	}
}
