package interp

import (
	"context"
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// fuzzSeeds are small valid models covering the loader's paths.
func fuzzSeeds(t testing.TB) [][]byte {
	_, mlp := mlpModel(t, 6, 4, 3)
	shape := &onnxpb.TensorProto{Name: proto.String("shape"), DataType: proto.Int32(7), Dims: []int64{2}, Int64Data: []int64{-1, 2}}
	b := onnx.NewBuilder("shapes", 13).Input("x", onnxpb.TensorProto_FLOAT, onnx.P("n"), onnx.D(2)).
		Input("k", onnxpb.TensorProto_INT64, onnx.D(3)).
		Float32("w", []float32{1, 2, 3, 4}, 2, 2).
		Node("Constant", "c", nil, []string{"s2"}, &onnxpb.AttributeProto{Name: proto.String("value"), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: shape}).
		Node("MatMul", "mm", []string{"x", "w"}, []string{"y"}).
		Node("Transpose", "t", []string{"y"}, []string{"yt"}, onnx.AttrInts("perm", 1, 0)).
		Node("Reshape", "r", []string{"yt", "s2"}, []string{"z"}).
		Node("Concat", "cat", []string{"z", "x"}, []string{"c1"}, onnx.AttrInt("axis", 0)).
		Node("Softmax", "sm", []string{"c1"}, []string{"p"}, onnx.AttrInt("axis", -1)).
		Node("Cast", "cast", []string{"k"}, []string{"kf"}, onnx.AttrInt("to", 1)).
		Node("Div", "d", []string{"k", "k"}, []string{"kk"}).
		Output("p", onnxpb.TensorProto_FLOAT).Output("kf", onnxpb.TensorProto_FLOAT, onnx.D(3)).Output("kk", onnxpb.TensorProto_INT64)
	shapes, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	chain, err := shapeChain(onnx.P("n"), onnx.D(3), onnx.D(4)).
		Node("Constant", "pads", nil, []string{"pads"}, int64Const(0, 1, 0, 0, 1, 0)).
		Node("Pad", "pad", []string{"x", "pads"}, []string{"xp"}, onnx.AttrString("mode", "reflect")).
		Node("Slice", "slice", []string{"xp", "axes", "minus1", "axes"}, []string{"xs"}).
		Output("xs", onnxpb.TensorProto_FLOAT).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	qdq, _ := qdqModel(t, rand.New(rand.NewPCG(1, 2)), qdqCase{op: "Gemm", k: 3, n: 2, xType: Uint8, perCol: true, bias: []int{2}, xShape: []int{2, 3}})
	qconv, _ := qdqConvModel(t, rand.New(rand.NewPCG(3, 4)), qdqConvCase{c: 2, m: 3, k: 3, xType: Uint8, zx: 5, perChannel: true,
		bias: true, pad: 1, relu: true, pool: true, xShape: []int{1, 2, 4, 4}})
	return [][]byte{mlp, shapes, chain, qdq, qconv}
}

// fuzzInputs makes small inputs for a model's declared inputs (dynamic
// dimensions 2), or reports false when they would be large.
func fuzzInputs(m *Model) (map[string]*Tensor, bool) {
	in := map[string]*Tensor{}
	for _, vi := range m.Inputs() {
		shape := []int{2}
		if vi.Shape != nil {
			shape = make([]int, len(vi.Shape))
			dims := make([]int64, len(vi.Shape))
			for i, d := range vi.Shape {
				shape[i] = max(d, 0)
				if d < 0 {
					shape[i] = 2
				}
				dims[i] = int64(shape[i])
			}
			if n, err := checkedSize(dims); err != nil || n > 4096 {
				return nil, false
			}
		}
		t := New(vi.DType, shape...)
		for i := range t.F32 {
			t.F32[i] = float32(i%7) - 3
		}
		for i := range t.I64 {
			t.I64[i] = int64(i%5) + 1
		}
		for i := range t.I32 {
			t.I32[i] = int32(i%5) + 1
		}
		in[vi.Name] = t
	}
	return in, true
}

// FuzzLoad feeds mutated models to Load and runs those that load on small
// inputs: any outcome but a panic (or a hang) is fine.
func FuzzLoad(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Load(data)
		if err != nil {
			return
		}
		_ = m.Outputs()
		in, ok := fuzzInputs(m)
		if !ok {
			return
		}
		_, _ = m.Run(context.Background(), in)
	})
}

func TestFuzzSeedsRun(t *testing.T) {
	for i, s := range fuzzSeeds(t) {
		m, err := Load(s)
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		in, ok := fuzzInputs(m)
		if !ok {
			t.Fatalf("seed %d: inputs too large", i)
		}
		if _, err := m.Run(context.Background(), in); err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
	}
}
