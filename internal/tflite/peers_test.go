package tflite

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/compress"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/onnxpb"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/zoo"
)

// armnnBatch is the batch size of the models the Arm NN check runs.
const armnnBatch = 100

// testSet is Fashion-MNIST's whole test set (10,000 images) from Debian's
// dataset-fashion-mnist.
func testSet(t *testing.T) *dataset.Set {
	t.Helper()
	te, err := dataset.ReadFashionDir(dataset.DebianFashionDir, "t10k")
	if errors.Is(err, os.ErrNotExist) {
		testenv.MissingPeer(t, "Fashion-MNIST not found in "+dataset.DebianFashionDir+" (Debian dataset-fashion-mnist; scripts/debian-deps.sh installs it)")
	}
	if err != nil {
		t.Fatal(err)
	}
	if te.Len() != 10000 {
		t.Fatalf("%d test images, want 10000", te.Len())
	}
	return te
}

func zooModel(t testing.TB, name string) *onnxpb.ModelProto {
	t.Helper()
	_, data, err := zoo.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// int8Model is zoo model name quantized by internal/compress, activations
// calibrated (min-max) on 512 images of the embedded training subset.
func int8Model(t testing.TB, name string) *onnxpb.ModelProto {
	t.Helper()
	m := zooModel(t, name)
	tr, _, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	r, err := compress.Calibrate(context.Background(), m, tr, 512, compress.Calibration{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := compress.QuantizeInt8(m, r)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// goOutputs runs m in the Go runtime on every image of ds.
func goOutputs(t *testing.T, m *onnxpb.ModelProto, ds *dataset.Set) []float32 {
	t.Helper()
	s, err := interp.LoadProto(m)
	if err != nil {
		t.Fatal(err)
	}
	in := s.Inputs()[0]
	shape := append([]int{armnnBatch}, in.Shape[1:]...)
	per := ds.Dim()
	var out []float32
	x := make([]float32, armnnBatch*per)
	for from := 0; from < ds.Len(); from += armnnBatch {
		for i := range armnnBatch {
			ds.Sample(from+i, x[i*per:(i+1)*per])
		}
		res, err := s.Run(context.Background(), map[string]*interp.Tensor{in.Name: interp.FromFloat32(x, shape...)})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res[s.Outputs()[0].Name].F32...)
	}
	return out
}

// armnnOutputs runs the TensorFlow Lite model b with Arm NN (CpuRef) on
// every image of ds, and returns its outputs and Arm NN's version.
func armnnOutputs(t *testing.T, b []byte, ds *dataset.Set) ([]float32, string) {
	t.Helper()
	py := testenv.Python(t, "pyarmnn, numpy", "python3 with pyarmnn not found (Debian python3-pyarmnn and libarmnn-cpuref-backend22; scripts/debian-deps.sh installs them)")
	dir := t.TempDir()
	model, in, out := filepath.Join(dir, "m.tflite"), filepath.Join(dir, "in.f32"), filepath.Join(dir, "out.f32")
	if err := os.WriteFile(model, b, 0o644); err != nil {
		t.Fatal(err)
	}
	per := ds.Dim()
	x := make([]float32, ds.Len()*per)
	for i := range ds.Len() {
		ds.Sample(i, x[i*per:(i+1)*per])
	}
	// An image's NHWC order is its NCHW order: one channel.
	if err := os.WriteFile(in, float32Bytes(x), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "testdata/armnn_run.py", model, in, out)
	msg, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("Arm NN: %v\n%s", err, msg)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	y := make([]float32, len(raw)/4)
	for i := range y {
		y[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	version := ""
	for _, l := range strings.Split(string(msg), "\n") {
		if v, ok := strings.CutPrefix(l, "armnn "); ok {
			version = v
		}
	}
	if pkg, err := exec.Command("dpkg-query", "-W", "-f=${Version}", "python3-pyarmnn").Output(); err == nil {
		version += " (Debian python3-pyarmnn " + string(pkg) + ")"
	}
	return y, version
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// The zoo's MLP and CNN, float and int8 (QDQ from internal/compress),
// converted to TensorFlow Lite, give in Arm NN's TensorFlow Lite parser
// on its reference backend the outputs the ONNX models give in the Go
// runtime, on the 10,000 test images: within 1e-4 for float, the same
// argmax on at least 99.5% of them for int8.
func TestArmNNAgreesWithGoRuntime(t *testing.T) {
	te := testSet(t)
	for _, tc := range []struct {
		name  string
		model func(testing.TB, string) *onnxpb.ModelProto
		int8  bool
	}{
		{"float", zooModel, false},
		{"int8", int8Model, true},
	} {
		for _, name := range []string{"mlp", "cnn"} {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				m := tc.model(t, name)
				b, err := Convert(m, Options{Batch: armnnBatch})
				if err != nil {
					t.Fatal(err)
				}
				want := goOutputs(t, m, te)
				got, version := armnnOutputs(t, b, te)
				if len(got) != len(want) {
					t.Fatalf("Arm NN gave %d values, want %d", len(got), len(want))
				}
				k := len(want) / te.Len()
				maxDiff, same := 0.0, 0
				for i := range te.Len() {
					if argmax(got[i*k:(i+1)*k]) == argmax(want[i*k:(i+1)*k]) {
						same++
					}
				}
				for i := range got {
					maxDiff = max(maxDiff, math.Abs(float64(got[i])-float64(want[i])))
				}
				onnxBytes, _ := onnx.Marshal(m)
				agree := float64(same) / float64(te.Len())
				t.Logf("%s %s: ONNX %d bytes, TensorFlow Lite %d bytes; Arm NN %s vs Go runtime on %d images: max |diff| %.3g, same argmax %.2f%%",
					name, tc.name, len(onnxBytes), len(b), version, te.Len(), maxDiff, 100*agree)
				if !tc.int8 && maxDiff > 1e-4 {
					t.Errorf("max |armnn - go| = %.3g, want at most 1e-4", maxDiff)
				}
				if tc.int8 && agree < 0.995 {
					t.Errorf("same argmax on %.2f%% of the images, want at least 99.5%%", 100*agree)
				}
			})
		}
	}
}
