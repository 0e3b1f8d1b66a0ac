package models_test

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/compress"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/hub"
	"outpost.dev/outpost/internal/hub/hubtest"
	"outpost.dev/outpost/internal/models"
	"outpost.dev/outpost/internal/registry"
	"outpost.dev/outpost/internal/zoo"
)

// The recipes a CompressionPolicy may name are internal/compress's.
func TestCompressionRecipeNames(t *testing.T) {
	var names []string
	for _, r := range compress.Recipes() {
		names = append(names, r.Name)
	}
	if got := v1alpha1.CompressionRecipeNames(); !slices.Equal(got, names) {
		t.Errorf("api recipes %v, internal/compress's %v", got, names)
	}
}

// fashionData writes part of the built-in Fashion-MNIST subset to a folder, as
// `outpost fl example-data` does.
func fashionData(t *testing.T) string {
	t.Helper()
	tr, te, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	first := func(n int) []int {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	dir := filepath.Join(t.TempDir(), "fmnist")
	if err := dataset.WriteDir(dir, "train", tr.Pick(first(2000))); err != nil {
		t.Fatal(err)
	}
	if err := dataset.WriteDir(dir, "t10k", te.Pick(first(1000))); err != nil {
		t.Fatal(err)
	}
	return dir
}

// modelDir writes a model folder holding file name with content b.
func modelDir(t *testing.T, name string, b []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A hub with a CompressionPolicy compresses each version of a matching model pushed to it:
// it pushes the variants within the budget, signed with its key, and records them in the
// policy's status. A version it cannot compress (not ONNX, data missing) is recorded as
// Failed, with the reason, and nothing is pushed, as is one no variant of is within the
// budget; a bad policy is refused, naming the field.
func TestCompressionPolicy(t *testing.T) {
	_, key, err := artifact.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	h := hubtest.New(t, func(c *hub.Config) {
		c.Compressor = models.NewCompressor(c.Registry.(*registry.Registry), key)
	})
	data := fashionData(t)
	_, mlp, err := zoo.Get("mlp")
	if err != nil {
		t.Fatal(err)
	}

	code, body := h.API(http.MethodPut, "/compressionpolicies/bad", "application/yaml", []byte(`apiVersion: ml.outpost.dev/v1alpha1
kind: CompressionPolicy
metadata: {name: bad}
spec: {models: [fashion], data: {path: `+data+`}, maxAccuracyDrop: "lots"}
`))
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "spec.maxAccuracyDrop") {
		t.Errorf("bad policy: %d %s, want 422 naming spec.maxAccuracyDrop", code, body)
	}
	if code, _ := h.API(http.MethodGet, "/compressionpolicies/bad", "", nil); code != http.StatusNotFound {
		t.Errorf("bad policy stored: GET says %d", code)
	}

	h.Apply("compressionpolicies", "shrink", `apiVersion: ml.outpost.dev/v1alpha1
kind: CompressionPolicy
metadata: {name: shrink}
spec:
  models: [fashion]
  data: {path: `+data+`, format: idx}
  maxAccuracyDrop: "1.0"
  recipes: [fp16, int8]
  calibration: 256
`)
	h.Apply("compressionpolicies", "nodata", `apiVersion: ml.outpost.dev/v1alpha1
kind: CompressionPolicy
metadata: {name: nodata}
spec:
  models: [other]
  data: {path: `+filepath.Join(t.TempDir(), "missing")+`}
`)
	h.Apply("compressionpolicies", "strict", `apiVersion: ml.outpost.dev/v1alpha1
kind: CompressionPolicy
metadata: {name: strict}
spec: {models: [strict], data: {path: `+data+`}, maxAccuracyDrop: "0", recipes: [int8]}
`)
	desc := h.Push(modelDir(t, "model.onnx", mlp), "fashion", "1.0.0")
	strictDesc := h.Push(modelDir(t, "model.onnx", mlp), "strict", "1.0.0")
	notONNX := h.Push(modelDir(t, "weights.bin", []byte("not a model")), "fashion", "1.1.0")
	other := h.Push(modelDir(t, "model.onnx", mlp), "other", "1.0.0")

	shrink := waitPolicy(t, h, "shrink", 2)
	done, failed := shrink.Status.Versions[0], shrink.Status.Versions[1]
	if done.Version != "1.0.0" {
		done, failed = failed, done
	}
	if done.Model != "fashion" || done.Phase != v1alpha1.CompressionDone || done.Digest != desc.Digest.String() || done.Reason != "" {
		t.Errorf("fashion@1.0.0: %+v", done)
	}
	t.Logf("fashion@1.0.0: %+v", done.Variants)
	var names []string
	for _, v := range done.Variants {
		names = append(names, v.Name)
		if v.SizeRatio == "" || v.AccuracyDrop == "" {
			t.Errorf("variant %+v lacks its measurements", v)
		}
	}
	if !slices.Equal(names, []string{"int8", "fp16"}) { // smallest first
		t.Errorf("variants %v, want int8, fp16", names)
	}
	repo := h.Repo("models/fashion")
	vs, err := artifact.Variants(t.Context(), repo, desc)
	if err != nil {
		t.Fatal(err)
	}
	var pushed []string
	for _, v := range vs {
		pushed = append(pushed, v.Meta.Name)
		if v.Meta.Params["policy"] != "shrink" || v.Meta.Accuracy == nil {
			t.Errorf("variant %s: %+v", v.Meta.Name, v.Meta)
		}
		sigs, err := artifact.Signatures(t.Context(), repo, v.Descriptor, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)})
		if err != nil || !slices.ContainsFunc(sigs, func(s artifact.SignatureInfo) bool { return s.Valid }) {
			t.Errorf("variant %s is not signed with the hub's key: %+v %v", v.Meta.Name, sigs, err)
		}
	}
	slices.Sort(pushed)
	if !slices.Equal(pushed, []string{"fp16", "int8"}) {
		t.Errorf("registry has variants %v, want fp16, int8", pushed)
	}

	if failed.Version != "1.1.0" || failed.Phase != v1alpha1.CompressionFailed || !strings.Contains(failed.Reason, "not an ONNX model") || len(failed.Variants) > 0 {
		t.Errorf("fashion@1.1.0: %+v", failed)
	}
	if vs, err := artifact.Variants(t.Context(), repo, notONNX); err != nil || len(vs) > 0 {
		t.Errorf("fashion@1.1.0 has variants %v (%v)", vs, err)
	}

	nodata := waitPolicy(t, h, "nodata", 1)
	if r := nodata.Status.Versions[0]; r.Model != "other" || r.Phase != v1alpha1.CompressionFailed || !strings.HasPrefix(r.Reason, "data: ") {
		t.Errorf("other@1.0.0: %+v", r)
	}
	if vs, err := artifact.Variants(t.Context(), h.Repo("models/other"), other); err != nil || len(vs) > 0 {
		t.Errorf("other@1.0.0 has variants %v (%v)", vs, err)
	}

	strict := waitPolicy(t, h, "strict", 1)
	if r := strict.Status.Versions[0]; r.Phase != v1alpha1.CompressionFailed || r.Reason != "no variant within 0.0 points of the version's accuracy" {
		t.Errorf("strict@1.0.0 (int8 loses 0.2 points): %+v", r)
	}
	if vs, err := artifact.Variants(t.Context(), h.Repo("models/strict"), strictDesc); err != nil || len(vs) > 0 {
		t.Errorf("strict@1.0.0 has variants %v (%v)", vs, err)
	}

	// Failed versions are not tried again; nothing is left to do.
	if did, err := h.Server.CompressNext(t.Context()); did || err != nil {
		t.Errorf("CompressNext after all versions were handled: %v, %v", did, err)
	}

	// The policy applied again finds the variants it made and pushes none again.
	if code, body := h.API(http.MethodDelete, "/compressionpolicies/shrink", "", nil); code != http.StatusOK {
		t.Fatalf("delete: %d %s", code, body)
	}
	h.Apply("compressionpolicies", "shrink", `apiVersion: ml.outpost.dev/v1alpha1
kind: CompressionPolicy
metadata: {name: shrink}
spec: {models: [fashion], data: {path: `+data+`}, recipes: [fp16, int8]}
`)
	again := waitPolicy(t, h, "shrink", 2)
	for _, r := range again.Status.Versions {
		if r.Version != "1.0.0" {
			continue
		}
		var names []string
		for _, v := range r.Variants {
			names = append(names, v.Name)
		}
		if r.Phase != v1alpha1.CompressionDone || !slices.Equal(names, []string{"int8", "fp16"}) || r.Variants[0].SizeRatio == "" {
			t.Errorf("fashion@1.0.0 again: %+v", r)
		}
	}
	if vs, err := artifact.Variants(t.Context(), repo, desc); err != nil || len(vs) != 2 {
		t.Errorf("after the policy was applied again, %d variants (%v), want the 2", len(vs), err)
	}
}

// waitPolicy waits until n versions of policy name are Done or Failed and returns it.
func waitPolicy(t *testing.T, h *hubtest.Hub, name string, n int) *v1alpha1.CompressionPolicy {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, body := h.API(http.MethodGet, "/compressionpolicies/"+name, "", nil)
		if code != http.StatusOK {
			t.Fatalf("get %s: %d %s", name, code, body)
		}
		var p v1alpha1.CompressionPolicy
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		finished := 0
		for _, r := range p.Status.Versions {
			if r.Phase == v1alpha1.CompressionDone || r.Phase == v1alpha1.CompressionFailed {
				finished++
			}
		}
		if finished >= n {
			return &p
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy %s: %d of %d versions handled after 2m: %+v", name, finished, n, p.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
