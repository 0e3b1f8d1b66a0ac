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
// dataset-fashion-mnist; with -short or under the race detector, the
// embedded subset's 1,000 (make test runs the whole set without it).
func testSet(t *testing.T) *dataset.Set {
	t.Helper()
	if testing.Short() || raceEnabled {
		_, te, err := dataset.FashionSubset()
		if err != nil {
			t.Fatal(err)
		}
		return te
	}
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

// samples returns every image of ds, one after the other.
func samples(ds *dataset.Set) []float32 {
	per := ds.Dim()
	x := make([]float32, ds.Len()*per)
	for i := range ds.Len() {
		ds.Sample(i, x[i*per:(i+1)*per])
	}
	return x
}

// goOutputs runs m in the Go runtime on samples x, armnnBatch at a time.
func goOutputs(t *testing.T, m *onnxpb.ModelProto, x []float32) []float32 {
	t.Helper()
	s, err := interp.LoadProto(m)
	if err != nil {
		t.Fatal(err)
	}
	in := s.Inputs()[0]
	shape := append([]int{armnnBatch}, in.Shape[1:]...)
	per := armnnBatch
	for _, d := range in.Shape[1:] {
		per *= d
	}
	var out []float32
	for from := 0; from < len(x); from += per {
		res, err := s.Run(context.Background(), map[string]*interp.Tensor{in.Name: interp.FromFloat32(x[from:from+per], shape...)})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res[s.Outputs()[0].Name].F32...)
	}
	return out
}

// armnnOutputs runs the TensorFlow Lite model b with Arm NN (CpuRef) on
// samples x (NHWC), and returns its outputs and Arm NN's version.
func armnnOutputs(t *testing.T, b []byte, x []float32) ([]float32, string) {
	t.Helper()
	py := testenv.Python(t, "pyarmnn, numpy", "python3 with pyarmnn not found (Debian python3-pyarmnn and libarmnn-cpuref-backend22; scripts/debian-deps.sh installs them)")
	dir := t.TempDir()
	model, in, out := filepath.Join(dir, "m.tflite"), filepath.Join(dir, "in.f32"), filepath.Join(dir, "out.f32")
	if err := os.WriteFile(model, b, 0o644); err != nil {
		t.Fatal(err)
	}
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
// runtime, on the 10,000 test images (1,000 with -short): within 1e-4 for float, the same
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
				// A Fashion-MNIST image's NHWC order is its NCHW order: one
				// channel.
				x := samples(te)
				want := goOutputs(t, m, x)
				got, version := armnnOutputs(t, b, x)
				if len(got) != len(want) {
					t.Fatalf("Arm NN gave %d values, want %d", len(got), len(want))
				}
				k := len(want) / te.Len()
				maxDiff, same, right, goRight := 0.0, 0, 0, 0
				for i := range te.Len() {
					a, g := argmax(got[i*k:(i+1)*k]), argmax(want[i*k:(i+1)*k])
					if a == g {
						same++
					}
					if a == int(te.Labels[i]) {
						right++
					}
					if g == int(te.Labels[i]) {
						goRight++
					}
				}
				for i := range got {
					maxDiff = max(maxDiff, math.Abs(float64(got[i])-float64(want[i])))
				}
				onnxBytes, _ := onnx.Marshal(m)
				agree := float64(same) / float64(te.Len())
				t.Logf("%s %s: ONNX %d bytes, TensorFlow Lite %d bytes; Arm NN %s vs Go runtime on %d images: max |diff| %.3g, same argmax %.2f%%; accuracy %.2f%% (Go runtime %.2f%%)",
					name, tc.name, len(onnxBytes), len(b), version, te.Len(), maxDiff, 100*agree,
					100*float64(right)/float64(te.Len()), 100*float64(goRight)/float64(te.Len()))
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

// Every operator Convert writes in float (synthetic's) runs in Arm NN
// as the ONNX model runs in the Go runtime, within 1e-4, on random images.
func TestArmNNRunsEveryOperator(t *testing.T) {
	m := synthetic(t)
	b, err := Convert(m, Options{Batch: armnnBatch})
	if err != nil {
		t.Fatal(err)
	}
	_, ops := opsOf(t, b)
	t.Logf("operators: %v", ops)
	imgs := randomImages(2*armnnBatch, 3, 8, 8, 3)
	nchw, nhwc := imgs.x, imgs.nhwc(3, 8, 8)
	want := goOutputs(t, m, nchw)
	got, version := armnnOutputs(t, b, nhwc)
	if len(got) != len(want) {
		t.Fatalf("Arm NN gave %d values, want %d", len(got), len(want))
	}
	maxDiff := 0.0
	for i := range got {
		maxDiff = max(maxDiff, math.Abs(float64(got[i])-float64(want[i])))
	}
	t.Logf("Arm NN %s vs Go runtime on %d random images: max |diff| %.3g", version, imgs.Len(), maxDiff)
	if maxDiff > 1e-4 {
		t.Errorf("max |armnn - go| = %.3g, want at most 1e-4", maxDiff)
	}
}

// The int8 operators (per-channel DEPTHWISE_CONV_2D and CONV_2D, int8
// pooling, QUANTIZE, DEQUANTIZE) run in Arm NN as the QDQ model runs in
// the Go runtime, on random images: the logits differ by no more than
// quantization itself moves them (the QDQ model from the float one). The
// int8 model rounds each layer's output where the QDQ model rounds after
// the pooling that follows, so they differ by a quantum here and there;
// a wrong scale or channel axis would move them by far more.
func TestArmNNRunsInt8Operators(t *testing.T) {
	fm, m := syntheticInt8(t, randomImages(256, 3, 8, 8, 7))
	b, err := Convert(m, Options{Batch: armnnBatch})
	if err != nil {
		t.Fatal(err)
	}
	_, ops := opsOf(t, b)
	t.Logf("operators: %v", ops)
	imgs := randomImages(5*armnnBatch, 3, 8, 8, 9)
	want := goOutputs(t, m, imgs.x)
	float := goOutputs(t, fm, imgs.x)
	got, version := armnnOutputs(t, b, imgs.nhwc(3, 8, 8))
	if len(got) != len(want) {
		t.Fatalf("Arm NN gave %d values, want %d", len(got), len(want))
	}
	maxDiff, noise, lo, hi := 0.0, 0.0, math.Inf(1), math.Inf(-1)
	for i := range got {
		maxDiff = max(maxDiff, math.Abs(float64(got[i])-float64(want[i])))
		noise = max(noise, math.Abs(float64(float[i])-float64(want[i])))
		lo, hi = min(lo, float64(want[i])), max(hi, float64(want[i]))
	}
	t.Logf("Arm NN %s vs Go runtime on %d random images: logits in [%.3g, %.3g], max |diff| %.3g; quantization moves them by %.3g",
		version, imgs.Len(), lo, hi, maxDiff, noise)
	if maxDiff > noise {
		t.Errorf("max |armnn - go| = %.3g, more than quantization's %.3g", maxDiff, noise)
	}
}
