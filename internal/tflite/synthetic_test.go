package tflite

import (
	"context"
	"math/rand/v2"
	"testing"

	"outpost.dev/outpost/internal/compress"
	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// synthetic is a small model that uses every operator Convert knows in
// float, on a 3-channel image: a depthwise Conv (fused Relu), an
// AveragePool, an Add of a per-channel constant, a MaxPool with SAME
// padding, a 1x1 Conv without bias, a Flatten read by a Relu (so in
// ONNX's order, by a TRANSPOSE), a Gemm with transB, an Add of two values
// and a Softmax.
func synthetic(t testing.TB) *onnxpb.ModelProto {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	rnd := func(n int, scale float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = scale * (2*r.Float32() - 1)
		}
		return v
	}
	f := onnxpb.TensorProto_FLOAT
	m, err := onnx.NewBuilder("synthetic", 13).
		Input("image", f, onnx.P("N"), onnx.D(3), onnx.D(8), onnx.D(8)).
		Float32("dw.weight", rnd(6*9, 0.5), 6, 1, 3, 3).Float32("dw.bias", rnd(6, 0.1), 6).
		Float32("shift", rnd(6, 0.5), 6, 1, 1).
		Float32("pw.weight", rnd(4*6, 0.5), 4, 6, 1, 1).
		Float32("fc.weight", rnd(10*64, 0.3), 10, 64).Float32("fc.bias", rnd(10, 0.1), 10).
		Node("Conv", "dw", []string{"image", "dw.weight", "dw.bias"}, []string{"dw"},
			onnx.AttrInt("group", 3), onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("pads", 1, 1, 1, 1)).
		Node("Relu", "dw_relu", []string{"dw"}, []string{"dw_relu"}).
		Node("AveragePool", "avg", []string{"dw_relu"}, []string{"avg"}, onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2)).
		Node("Add", "shifted", []string{"avg", "shift"}, []string{"shifted"}).
		Node("MaxPool", "max", []string{"shifted"}, []string{"max"}, onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrString("auto_pad", "SAME_UPPER")).
		Node("Conv", "pw", []string{"max", "pw.weight"}, []string{"pw"}).
		Node("Flatten", "flat", []string{"pw"}, []string{"flat"}).
		Node("Relu", "flat_relu", []string{"flat"}, []string{"flat_relu"}).
		Node("Gemm", "fc", []string{"flat_relu", "fc.weight", "fc.bias"}, []string{"fc"}, onnx.AttrInt("transB", 1)).
		Node("Add", "twice", []string{"fc", "fc"}, []string{"twice"}).
		Node("Softmax", "softmax", []string{"twice"}, []string{"probabilities"}, onnx.AttrInt("axis", 1)).
		Output("probabilities", f, onnx.P("N"), onnx.D(10)).
		Model()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func syntheticBytes(t testing.TB) []byte {
	b, err := onnx.Marshal(synthetic(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// syntheticInt8 is a small CNN for the int8 path: a depthwise Conv and
// MaxPool (in integers), a 1x1 Conv and an AveragePool (in float: an
// average does not keep the range, so the model gives the Conv no output
// scale), Flatten and Gemm, whose logits it returns, quantized by internal/compress with ranges calibrated on
// cal. It returns the float model and the quantized one.
func syntheticInt8(t testing.TB, cal compress.Dataset) (*onnxpb.ModelProto, *onnxpb.ModelProto) {
	t.Helper()
	r := rand.New(rand.NewPCG(5, 6))
	rnd := func(n int, scale float32) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = scale * (2*r.Float32() - 1)
		}
		return v
	}
	f := onnxpb.TensorProto_FLOAT
	m, err := onnx.NewBuilder("synthetic-int8", 13).
		Input("image", f, onnx.P("N"), onnx.D(3), onnx.D(8), onnx.D(8)).
		Float32("dw.weight", rnd(6*9, 0.5), 6, 1, 3, 3).Float32("dw.bias", rnd(6, 0.1), 6).
		Float32("pw.weight", rnd(8*6, 0.5), 8, 6, 1, 1).Float32("pw.bias", rnd(8, 0.1), 8).
		Float32("fc.weight", rnd(32*10, 0.3), 32, 10).Float32("fc.bias", rnd(10, 0.1), 10).
		Node("Conv", "dw", []string{"image", "dw.weight", "dw.bias"}, []string{"dw"},
			onnx.AttrInt("group", 3), onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("pads", 1, 1, 1, 1)).
		Node("Relu", "dw_relu", []string{"dw"}, []string{"dw_relu"}).
		Node("MaxPool", "max1", []string{"dw_relu"}, []string{"max1"}, onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2)).
		Node("Conv", "pw", []string{"max1", "pw.weight", "pw.bias"}, []string{"pw"}).
		Node("Relu", "pw_relu", []string{"pw"}, []string{"pw_relu"}).
		Node("AveragePool", "avg", []string{"pw_relu"}, []string{"avg"}, onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2)).
		Node("Flatten", "flat", []string{"avg"}, []string{"flat"}).
		Node("Gemm", "fc", []string{"flat", "fc.weight", "fc.bias"}, []string{"logits"}).
		Output("logits", f, onnx.P("N"), onnx.D(10)).
		Model()
	if err != nil {
		t.Fatal(err)
	}
	ranges, err := compress.Calibrate(context.Background(), m, cal, 0, compress.Calibration{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := compress.QuantizeInt8(m, ranges)
	if err != nil {
		t.Fatal(err)
	}
	return m, q
}

// images is a set of random NCHW images, all of label 0.
type images struct {
	x   []float32
	dim int
}

func randomImages(n, c, h, w int, seed uint64) *images {
	r := rand.New(rand.NewPCG(seed, seed+1))
	s := &images{x: make([]float32, n*c*h*w), dim: c * h * w}
	for i := range s.x {
		s.x[i] = r.Float32()
	}
	return s
}

func (s *images) Len() int { return len(s.x) / s.dim }
func (s *images) Dim() int { return s.dim }
func (s *images) Sample(i int, dst []float32) int {
	copy(dst, s.x[i*s.dim:(i+1)*s.dim])
	return 0
}

// nhwc returns s's images in NHWC order.
func (s *images) nhwc(c, h, w int) []float32 {
	out := make([]float32, len(s.x))
	for i := range s.Len() {
		for ch := range c {
			for y := range h {
				for z := range w {
					out[((i*h+y)*w+z)*c+ch] = s.x[((i*c+ch)*h+y)*w+z]
				}
			}
		}
	}
	return out
}
