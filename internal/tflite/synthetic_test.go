package tflite

import (
	"math/rand/v2"
	"testing"

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
