package artifact

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestDeltaPairs(t *testing.T) {
	f := func(path, content string) File {
		return File{Path: path, Digest: digest.FromString(content), Size: int64(len(content))}
	}
	for _, tc := range []struct {
		name          string
		files, parent []File
		want          []string // paths paired
	}{
		{"changed file by path", []File{f("a", "1"), f("b", "2")}, []File{f("a", "0"), f("b", "2")}, []string{"a"}},
		{"new file has no base", []File{f("a", "1"), f("c", "3")}, []File{f("a", "0"), f("b", "2")}, []string{"a"}},
		{"one file each, renamed", []File{f("new.onnx", "1")}, []File{f("old.onnx", "0")}, []string{"new.onnx"}},
		{"unchanged", []File{f("a", "1")}, []File{f("a", "1")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, p := range DeltaPairs(tc.files, tc.parent) {
				got = append(got, p.File.Path)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("paired %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWeightDeltaRoundTrip(t *testing.T) {
	base := bytes.Repeat([]byte{1, 2, 3, 4}, 1000)
	target := bytes.Clone(base)
	target[5], target[401] = 9, 9
	files := []File{{Path: "w.bin", Digest: digest.FromBytes(target), Size: int64(len(target))}}
	pairs := DeltaPairs(files, []File{{Path: "w.bin", Digest: digest.FromBytes(base), Size: int64(len(base))}})
	byDigest := map[digest.Digest][]byte{digest.FromBytes(base): base, digest.FromBytes(target): target}
	enc, err := EncodeWeightDeltas(context.Background(), pairs, func(d digest.Digest) ([]byte, error) { return byDigest[d], nil })
	if err != nil || len(enc) != 1 {
		t.Fatalf("EncodeWeightDeltas: %v, %d deltas", err, len(enc))
	}
	subject := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("v2"), Size: 10}
	body, err := WeightDeltaManifest(subject, digest.FromString("v1"), []FileDelta{enc[0].FileDelta})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseWeightDeltas(body, files)
	if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], enc[0].FileDelta) {
		t.Fatalf("ParseWeightDeltas = %+v, %v; want %+v", got, err, enc[0].FileDelta)
	}
	apply := func(base, delta []byte) ([]byte, error) {
		var out bytes.Buffer
		err := ApplyWeightDelta(&out, bytes.NewReader(base), bytes.NewReader(delta), got[0])
		return out.Bytes(), err
	}
	out, err := apply(base, enc[0].Data)
	if err != nil || !bytes.Equal(out, target) {
		t.Fatalf("ApplyWeightDelta: %v", err)
	}
	// The wrong base makes the wrong bytes, which the digest catches.
	if _, err := apply(target, enc[0].Data); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("ApplyWeightDelta on the wrong base = %v", err)
	}
	if _, err := apply(base, append(bytes.Clone(enc[0].Data), 0)); err == nil || !strings.Contains(err.Error(), "more bytes") {
		t.Errorf("ApplyWeightDelta of altered delta bytes = %v", err)
	}

	// Refusals.
	edit := func(fn func(m *ocispec.Manifest)) []byte {
		var m ocispec.Manifest
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		fn(&m)
		b, _ := json.Marshal(m)
		return b
	}
	for _, tc := range []struct {
		name, want string
		body       []byte
	}{
		{"another artifact type", "artifact type", edit(func(m *ocispec.Manifest) { m.ArtifactType = ArtifactTypeChunkIndex })},
		{"file the version lacks", "does not have", edit(func(m *ocispec.Manifest) { m.Layers[0].Annotations[AnnotationTitle] = "other.bin" })},
		{"target of another content", "does not have", edit(func(m *ocispec.Manifest) {
			m.Layers[0].Annotations[AnnotationDeltaTarget] = digest.FromString("x").String()
		})},
		{"bad base digest", "malformed", edit(func(m *ocispec.Manifest) { m.Layers[0].Annotations[AnnotationDeltaBase] = "sha256:zz" })},
		{"bad base size", "malformed", edit(func(m *ocispec.Manifest) { m.Layers[0].Annotations[AnnotationDeltaBaseSize] = "-1" })},
		{"wrong media type", "malformed", edit(func(m *ocispec.Manifest) { m.Layers[0].MediaType = "text/plain" })},
		{"not JSON", "", []byte("{")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseWeightDeltas(tc.body, files); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseWeightDeltas = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func FuzzParseWeightDeltas(f *testing.F) {
	files := []File{{Path: "w.bin", Digest: digest.FromString("t"), Size: 4}}
	fd := FileDelta{Path: "w.bin", Target: digest.FromString("t"), Base: digest.FromString("b"), BaseSize: 4,
		Blob: ocispec.Descriptor{MediaType: MediaTypeWeightDelta, Digest: digest.FromString("d"), Size: 3}}
	good, _ := WeightDeltaManifest(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("s")}, digest.FromString("p"), []FileDelta{fd})
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		ds, err := ParseWeightDeltas(b, files)
		if err != nil {
			return
		}
		for _, d := range ds {
			if d.Path != "w.bin" || d.Target != files[0].Digest || d.TargetSize != 4 {
				t.Fatalf("accepted a delta for a file the version lacks: %+v", d)
			}
		}
	})
}
