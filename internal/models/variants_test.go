package models

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/artifact"
)

// The index resolves a version with its variants, as pushed to the registry, sorted by
// name; with a signature required, only the variants signed by a trusted key count.
func TestResolveModelVariants(t *testing.T) {
	ctx := context.Background()
	reg, host := testHub(t)
	pub, priv, _ := artifact.GenerateKey()
	repo, d := pushVersion(t, host, "det", "1.0.0", "full weights, a good many bytes of them")
	if _, err := artifact.Sign(ctx, repo, d, "models/det:1.0.0", priv); err != nil {
		t.Fatal(err)
	}
	pushVariant := func(name, content string, acc float64, peak int64) artifact.Variant {
		t.Helper()
		file := "model.onnx"
		if strings.HasSuffix(name, "tflite") {
			file = "model.tflite"
		}
		src := filepath.Join(t.TempDir(), file)
		os.WriteFile(src, []byte(content), 0o644)
		desc, err := artifact.PushVariant(ctx, repo, src, artifact.VariantPushOptions{Name: "det", Version: "1.0.0",
			Meta: artifact.VariantMeta{Name: name, Accuracy: &acc, PeakMemoryBytes: peak}, Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		return artifact.Variant{Digest: desc.Digest, Descriptor: desc}
	}
	i8 := pushVariant("int8", "int8 weights", 0.875, 1<<20)
	f16 := pushVariant("fp16", "fp16 weights, more", 0.9, 2<<20)
	pushVariant("tflite", "a flatbuffer, small", 0.9, 1<<10) // for other runtimes: never a candidate
	if _, err := artifact.Sign(ctx, repo, i8.Descriptor, "models/det:1.0.0 variant int8", priv); err != nil {
		t.Fatal(err)
	}

	x := NewIndex(reg, []ed25519.PublicKey{pub})
	got, err := x.ResolveModel(ctx, "det", "1.0.0", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Variants) != 2 || got.Variants[0].Name != "fp16" || got.Variants[0].Digest != f16.Digest.String() ||
		got.Variants[1].Name != "int8" || got.Variants[1].Accuracy != "0.875" || got.Variants[1].PeakMemoryBytes != 1<<20 ||
		got.Variants[1].SizeBytes <= int64(len("int8 weights")) {
		t.Fatalf("variants %+v", got.Variants)
	}
	signed, err := x.ResolveModel(ctx, "det", "1.0.0", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(signed.Variants) != 1 || signed.Variants[0].Digest != i8.Digest.String() {
		t.Fatalf("signed variants %+v, want int8 alone", signed.Variants)
	}

	// Over the distribution API (the KubeStellar controller's way to the
	// registry), the index answers the same.
	rx := NewIndex(&Remote{Host: host, PlainHTTP: true}, []ed25519.PublicKey{pub})
	for _, requireSigned := range []bool{false, true} {
		want := got
		if requireSigned {
			want = signed
		}
		remote, err := rx.ResolveModel(ctx, "det", "1.0.0", requireSigned)
		if err != nil {
			t.Fatalf("remote, signed %v: %v", requireSigned, err)
		}
		if !reflect.DeepEqual(remote, want) {
			t.Errorf("remote, signed %v: %+v, want %+v", requireSigned, remote, want)
		}
	}
	if _, err := rx.ResolveModel(ctx, "absent", "^1", false); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("a model the remote registry lacks: %v", err)
	}
}
