package artifact_test

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/artifact"
)

func ptr[T any](v T) *T { return &v }

// seeded returns n bytes that depend on seed.
func seeded(seed uint64, n int) []byte {
	b := make([]byte, n)
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A variant is an artifact of its own, attached to its version as a
// referrer: the version's tag still names the full model, the variant's
// files, chunk index and metadata are found through the version, and bad
// pushes change nothing.
func TestVariantPushListPull(t *testing.T) {
	ctx := t.Context()
	repo := testRepo(t, "fashion")
	full, small := t.TempDir(), t.TempDir()
	writeFiles(t, full, map[string][]byte{"model.onnx": seeded(1, 200_000), "labels.json": []byte(`["a"]`)})
	writeFiles(t, small, map[string][]byte{"model.onnx": seeded(2, 50_000), "labels.json": []byte(`["a"]`)})
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	meta := artifact.VariantMeta{Name: "int8", Method: "dynamic-quantization", Params: map[string]string{"per-channel": "true"},
		Accuracy: ptr(0.87), PeakMemoryBytes: 3 << 20, Operators: []string{"QLinearMatMul", "DequantizeLinear", "QLinearMatMul"},
		Latency: artifact.VariantLatency{GoBatch1Ms: 0.5, ONNXRuntimeBatch32Ms: 2.25}}

	_, err := artifact.PushVariant(ctx, repo, small, artifact.VariantPushOptions{Name: "fashion", Version: "1.0.0", Meta: meta})
	if !errors.Is(err, artifact.ErrNoVersion) {
		t.Fatalf("variant of a missing version: %v", err)
	}
	fullDesc, err := artifact.Push(ctx, repo, full, artifact.PushOptions{Name: "fashion", Version: "1.0.0", Created: t0})
	if err != nil {
		t.Fatal(err)
	}
	vDesc, err := artifact.PushVariant(ctx, repo, small, artifact.VariantPushOptions{Name: "fashion", Version: "1.0.0", Meta: meta, Created: t0})
	if err != nil {
		t.Fatal(err)
	}
	if tagged, err := repo.Resolve(ctx, "1.0.0"); err != nil || tagged.Digest != fullDesc.Digest {
		t.Fatalf("the tag moved: %v %v", tagged.Digest, err)
	}
	vs, err := artifact.Variants(ctx, repo, fullDesc)
	if err != nil || len(vs) != 1 {
		t.Fatalf("variants %+v %v", vs, err)
	}
	v := vs[0]
	if v.Digest != vDesc.Digest || v.Meta.Name != "int8" || v.Meta.SizeBytes != 50_000+5 || *v.Meta.Accuracy != 0.87 ||
		strings.Join(v.Meta.Operators, " ") != "DequantizeLinear QLinearMatMul" || v.Meta.Latency.ONNXRuntimeBatch32Ms != 2.25 ||
		v.Meta.Params["per-channel"] != "true" || !v.Created.Equal(t0) {
		t.Fatalf("variant %+v", v)
	}
	if _, err := artifact.FetchChunkIndex(ctx, repo, vDesc); err != nil {
		t.Fatalf("the variant has no chunk index: %v", err)
	}

	// Pushing the same variant again (another creation time) is a no-op;
	// other files under the same name are refused.
	again, err := artifact.PushVariant(ctx, repo, small, artifact.VariantPushOptions{Name: "fashion", Version: "1.0.0", Meta: meta})
	if err != nil || again.Digest != vDesc.Digest {
		t.Fatalf("push again: %v %v", again.Digest, err)
	}
	writeFiles(t, small, map[string][]byte{"model.onnx": seeded(3, 50_000)})
	if _, err := artifact.PushVariant(ctx, repo, small, artifact.VariantPushOptions{Name: "fashion", Version: "1.0.0", Meta: meta}); !errors.Is(err, artifact.ErrVariantExists) {
		t.Fatalf("duplicate variant name: %v", err)
	}
	bad := meta
	bad.Accuracy = ptr(1.5)
	if _, err := artifact.PushVariant(ctx, repo, small, artifact.VariantPushOptions{Name: "fashion", Version: "1.0.0", Meta: bad}); err == nil || !strings.Contains(err.Error(), "accuracy") {
		t.Fatalf("bad metadata: %v", err)
	}
	bad = meta
	bad.Name, bad.SizeBytes = "fp16", 7
	if _, err := artifact.PushVariant(ctx, repo, small, artifact.VariantPushOptions{Name: "fashion", Version: "1.0.0", Meta: bad}); err == nil || !strings.Contains(err.Error(), "sizeBytes 7") {
		t.Fatalf("wrong size: %v", err)
	}
	if vs, _ := artifact.Variants(ctx, repo, fullDesc); len(vs) != 1 {
		t.Fatalf("refused pushes left variants: %+v", vs)
	}

	// The full model pulls as before; the variant pulls by name.
	dir := t.TempDir()
	m, err := artifact.Pull(ctx, repo, "1.0.0", dir, artifact.PullOptions{})
	if err != nil || m.Descriptor.Digest != fullDesc.Digest {
		t.Fatalf("pull full: %v", err)
	}
	got, err := artifact.ResolveVariant(ctx, repo, "1.0.0", "int8")
	if err != nil || got.Digest != vDesc.Digest {
		t.Fatalf("resolve variant: %v", err)
	}
	vdir := t.TempDir()
	if _, err := artifact.Pull(ctx, repo, got.Digest.String(), vdir, artifact.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(vdir, "model.onnx"))
	if err != nil || string(b) != string(seeded(2, 50_000)) {
		t.Fatalf("variant bytes: %v", err)
	}
	if _, err := artifact.ResolveVariant(ctx, repo, "1.0.0", "fp16"); !errors.Is(err, artifact.ErrNoVariant) || !strings.Contains(err.Error(), "int8") {
		t.Fatalf("missing variant: %v", err)
	}
}

func TestVariantMetaValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		meta artifact.VariantMeta
		want string // "" valid, else part of the error
	}{
		{"minimal", artifact.VariantMeta{Name: "fp16"}, ""},
		{"full", artifact.VariantMeta{Name: "int8", Method: "static/minmax", Params: map[string]string{"calib": "100"}, SizeBytes: 10,
			Accuracy: ptr(0.0), PeakMemoryBytes: 5, Operators: []string{"Gemm", "com.microsoft:QGemm"}}, ""},
		{"no name", artifact.VariantMeta{}, `variant name ""`},
		{"upper name", artifact.VariantMeta{Name: "INT8"}, `variant name "INT8"`},
		{"original", artifact.VariantMeta{Name: "original"}, "names the full model"},
		{"method", artifact.VariantMeta{Name: "a", Method: "x y"}, "variant method"},
		{"param key", artifact.VariantMeta{Name: "a", Params: map[string]string{"a b": "1"}}, "variant params: invalid key"},
		{"param value", artifact.VariantMeta{Name: "a", Params: map[string]string{"a": "\n"}}, `value of "a"`},
		{"size", artifact.VariantMeta{Name: "a", SizeBytes: -1}, "sizeBytes -1"},
		{"accuracy", artifact.VariantMeta{Name: "a", Accuracy: ptr(-0.1)}, "accuracy -0.1"},
		{"accuracy nan", artifact.VariantMeta{Name: "a", Accuracy: ptr(math.NaN())}, "accuracy NaN"},
		{"latency", artifact.VariantMeta{Name: "a", Latency: artifact.VariantLatency{GoBatch32Ms: -1}}, "latency.goBatch32Ms"},
		{"latency inf", artifact.VariantMeta{Name: "a", Latency: artifact.VariantLatency{ONNXRuntimeBatch1Ms: math.Inf(1)}}, "latency.onnxruntimeBatch1Ms"},
		{"memory", artifact.VariantMeta{Name: "a", PeakMemoryBytes: -3}, "peakMemoryBytes -3"},
		{"operator", artifact.VariantMeta{Name: "a", Operators: []string{"Gemm,Add"}}, "operators[0]"},
		{"operators unsorted", artifact.VariantMeta{Name: "a", Operators: []string{"Relu", "Add"}}, "sorted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.meta.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				back, err := artifact.VariantMetaFromAnnotations(tt.meta.Annotations())
				if err != nil {
					t.Fatalf("annotations do not read back: %v", err)
				}
				a, _ := json.Marshal(tt.meta)
				b, _ := json.Marshal(back)
				if string(a) != string(b) {
					t.Fatalf("round trip:\n%s\n%s", a, b)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseVariantMeta(t *testing.T) {
	m, err := artifact.ParseVariantMeta([]byte(`{"name":"int8","method":"dynamic-quantization","accuracy":0.9,
		"latency":{"goBatch1Ms":1.5},"peakMemoryBytes":1048576,"operators":["MatMulInteger"]}`))
	if err != nil || m.Name != "int8" || *m.Accuracy != 0.9 || m.Latency.GoBatch1Ms != 1.5 {
		t.Fatalf("%+v %v", m, err)
	}
	for in, want := range map[string]string{
		`{"name":"int8","acuracy":0.9}`: `unknown field "acuracy"`,
		`{"name":"int8"} {}`:            "trailing data",
		`{"name":"int8","accuracy":2}`:  "accuracy 2",
		`[]`:                            "cannot unmarshal array",
	} {
		if _, err := artifact.ParseVariantMeta([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want %q", in, err, want)
		}
	}
}

// FuzzVariantMeta reads variant metadata from outside (a JSON file, a
// registry's annotations): it never panics, and what it accepts is valid
// and reads back from its own annotations.
func FuzzVariantMeta(f *testing.F) {
	f.Add([]byte(`{"name":"int8","accuracy":0.5,"params":{"a":"b"},"operators":["Add","Mul"]}`), "int8", "12", "0.5", "Add,Mul", `{"k":"v"}`, "1.5")
	f.Add([]byte(`{}`), "", "-1", "nan", ",", `[]`, "inf")
	f.Fuzz(func(t *testing.T, js []byte, name, size, acc, ops, params, lat string) {
		check := func(m artifact.VariantMeta) {
			if err := m.Validate(); err != nil {
				t.Fatalf("accepted invalid metadata: %v", err)
			}
			back, err := artifact.VariantMetaFromAnnotations(m.Annotations())
			if err != nil {
				t.Fatalf("accepted metadata does not read back: %v", err)
			}
			a, _ := json.Marshal(m)
			b, _ := json.Marshal(back)
			if string(a) != string(b) {
				t.Fatalf("round trip:\n%s\n%s", a, b)
			}
		}
		if m, err := artifact.ParseVariantMeta(js); err == nil {
			check(m)
		}
		ann := map[string]string{artifact.AnnotationVariant: name, artifact.AnnotationVariantSize: size,
			artifact.AnnotationVariantAccuracy: acc, artifact.AnnotationVariantOperators: ops, artifact.AnnotationVariantParams: params,
			artifact.AnnotationVariantLatencyPrefix + "go.batch1-ms": lat}
		if m, err := artifact.VariantMetaFromAnnotations(ann); err == nil {
			check(m)
		}
	})
}
