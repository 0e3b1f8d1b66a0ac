package driftref

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/zoo"
)

// fashionTest is the embedded Fashion-MNIST test subset's images file.
const fashionTest = "../dataset/testdata/fashion-test-images-idx3-ubyte.gz"

// zooModel writes the zoo model called name into a folder and returns the folder.
func zooModel(t *testing.T, name string) string {
	t.Helper()
	m, b, err := zoo.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, m.File), b)
	writeFile(t, filepath.Join(dir, "README.md"), []byte("# "+name+"\n"))
	return dir
}

func fashion(t *testing.T, n int) *Data {
	t.Helper()
	d, err := ReadPath(fashionTest, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		d.Values = d.Values[:n*d.Width()]
	}
	return d
}

func TestComputeProfileMLP(t *testing.T) {
	ctx := t.Context()
	model, err := FindModel(zooModel(t, "mlp"))
	if err != nil {
		t.Fatal(err)
	}
	data := fashion(t, 0)
	if data.Samples() != 1000 || !slices.Equal(data.Shape, []int{28, 28}) || !data.Bytes {
		t.Fatalf("data: %d samples of %v", data.Samples(), data.Shape)
	}
	p, err := ComputeProfile(ctx, engine.Go{}, model, data, ProfileOptions{Batch: 300})
	if err != nil {
		t.Fatal(err)
	}
	spec := p.Spec()
	c := spec.Config
	if !slices.Equal(c.InputShape, []int{784}) || !slices.Equal(c.OutputShape, []int{10}) || c.Inputs != drift.InputsImage || c.Outputs != drift.OutputsProbabilities {
		t.Fatalf("config %+v", c)
	}
	if p.Samples() != 1000 {
		t.Errorf("%d samples, want 1000", p.Samples())
	}
	var names []string
	for _, f := range spec.Features {
		names = append(names, f.Name)
	}
	if len(names) != 2+drift.DefaultProjections+10+1 || names[0] != "in.mean" || names[len(names)-1] != "out.class" {
		t.Errorf("features %v", names)
	}

	// The input summary is of the pixels scaled to [0, 1], as the model
	// sees them: its mean is the mean of the images' means.
	want := 0.0
	for i := range data.Samples() {
		s := 0.0
		for _, v := range data.Sample(i) {
			s += float64(float32(v) * float32(1.0/255))
		}
		want += s / 784
	}
	want /= 1000
	if got := p.Numeric(p.Index("in.mean")).Mean(); math.Abs(got-want) > 1e-9 {
		t.Errorf("in.mean mean %v, want %v", got, want)
	}
	// The predicted classes are the model's own, counted.
	set := classCounts(t, model, data)
	if got := p.Categorical(p.Index("out.class")).Counts(); !slices.Equal(got, set) {
		t.Errorf("class counts %v, want %v", got, set)
	}
	// Histograms were filled in the second pass, at the first's quantiles.
	n := p.Numeric(p.Index("out.p[3]"))
	var sum uint64
	for _, h := range n.Histogram() {
		sum += h
	}
	if len(n.Edges()) < 2 || sum != n.Count() {
		t.Errorf("out.p[3]: %d edges, histogram of %d for %d values", len(n.Edges()), sum, n.Count())
	}

	// The encoding decodes, and the same model and data give the same bytes.
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := drift.DecodeProfile(b); err != nil {
		t.Fatalf("decode: %v", err)
	}
	again, err := ComputeProfile(ctx, engine.Go{}, model, data, ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(again)
	if !bytes.Equal(b, b2) {
		t.Error("two profiles of the same model and data differ")
	}
}

// classCounts runs the model and counts its predicted classes.
func classCounts(t *testing.T, model string, data *Data) []uint64 {
	t.Helper()
	sess, err := engine.Go{}.Load(t.Context(), model)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	counts := make([]uint64, 10)
	x := make([]float32, 784)
	for i := range data.Samples() {
		for j, v := range data.Sample(i) {
			x[j] = float32(v) / 255
		}
		out, err := sess.Run(t.Context(), map[string]*interp.Tensor{zoo.InputName: interp.FromFloat32(x, 1, 784)})
		if err != nil {
			t.Fatal(err)
		}
		y := out[zoo.OutputName].F32
		best := 0
		for k, v := range y {
			if v > y[best] {
				best = k
			}
		}
		counts[best]++
	}
	return counts
}

func TestProfileOfAnotherModelRefused(t *testing.T) {
	ctx := t.Context()
	data := fashion(t, 100)
	mlp, err := ComputeProfile(ctx, engine.Go{}, filepath.Join(zooModel(t, "mlp"), "mlp.onnx"), data, ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cnn, err := ComputeProfile(ctx, engine.Go{}, filepath.Join(zooModel(t, "cnn"), "cnn.onnx"), data, ProfileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := cnn.Spec().Config.InputShape; !slices.Equal(got, []int{1, 28, 28}) {
		t.Fatalf("cnn input shape %v", got)
	}
	err = mlp.Compatible(cnn)
	if err == nil || err.Error() != "incompatible profiles: input shape [1 28 28], want [784]" {
		t.Fatalf("Compatible = %v", err)
	}
	// A window of the MLP's own is compatible.
	if err := mlp.Compatible(mlp.Empty(3)); err != nil {
		t.Fatal(err)
	}
}

func TestComputeProfileRefusesBadInput(t *testing.T) {
	ctx := t.Context()
	model := filepath.Join(zooModel(t, "mlp"), "mlp.onnx")
	good := fashion(t, 10)
	tests := []struct {
		name  string
		model string
		data  *Data
		opts  ProfileOptions
		want  string
	}{
		{"wrong width", model, &Data{Shape: []int{100}, Values: make([]float64, 300)}, ProfileOptions{}, `input "input" takes samples of shape [784] (784 values); the data's have 100 (shape [100])`},
		{"no samples", model, &Data{Shape: []int{784}}, ProfileOptions{}, "no samples"},
		{"not a model", filepath.Join(t.TempDir(), "missing.onnx"), good, ProfileOptions{}, "load model missing.onnx"},
		{"unknown outputs", model, good, ProfileOptions{Outputs: "scores"}, `outputs "scores"`},
		{"infinite scale", model, good, ProfileOptions{Scale: math.Inf(1)}, "scale"},
		{"too many bins", model, good, ProfileOptions{Bins: 100000}, "bins"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ComputeProfile(ctx, engine.Go{}, tt.model, tt.data, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestFindModel(t *testing.T) {
	dir := t.TempDir()
	if _, err := FindModel(dir); err == nil || !strings.Contains(err.Error(), "no .onnx file") {
		t.Fatalf("empty folder: %v", err)
	}
	writeFile(t, filepath.Join(dir, "a.onnx"), []byte("x"))
	if p, err := FindModel(dir); err != nil || filepath.Base(p) != "a.onnx" {
		t.Fatalf("one model: %q %v", p, err)
	}
	writeFile(t, filepath.Join(dir, "b.onnx"), []byte("x"))
	if _, err := FindModel(dir); err == nil || !strings.Contains(err.Error(), "2 .onnx files (a.onnx, b.onnx)") {
		t.Fatalf("two models: %v", err)
	}
	if _, err := FindModel(filepath.Join(dir, "none")); !os.IsNotExist(err) {
		t.Fatalf("missing: %v", err)
	}
}

func TestDetectOutputs(t *testing.T) {
	tests := []struct {
		name string
		y    []float32
		w    int
		want drift.OutputMode
	}{
		{"softmax rows", []float32{0.2, 0.8, 0.5, 0.5}, 2, drift.OutputsProbabilities},
		{"rows not summing to 1", []float32{0.2, 0.7, 0.5, 0.5}, 2, drift.OutputsLogits},
		{"negative scores", []float32{-1, 2, 0.5, 0.5}, 2, drift.OutputsLogits},
		{"one probability", []float32{0.1, 0.9, 0.4}, 1, drift.OutputsProbabilities},
		{"one logit", []float32{0.1, 1.9, -0.4}, 1, drift.OutputsLogits},
		{"NaN", []float32{float32(math.NaN()), 1}, 2, drift.OutputsLogits},
	}
	for _, tt := range tests {
		if got := detectOutputs(tt.y, tt.w); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}
