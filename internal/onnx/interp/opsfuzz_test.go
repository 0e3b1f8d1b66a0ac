package interp

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// opsFuzzSeeds are small valid models using the activation, logic,
// arithmetic and reduction operators and a FLOAT16 initializer.
func opsFuzzSeeds(t testing.TB) [][]byte {
	half := &onnxpb.TensorProto{Name: proto.String("h"), DataType: proto.Int32(10), Dims: []int64{3}, RawData: half16(0.5, -1, 2)}
	b := onnx.NewBuilder("ops", 13).
		Input("x", onnxpb.TensorProto_FLOAT, onnx.P("n"), onnx.D(3)).
		Input("k", onnxpb.TensorProto_INT64, onnx.D(1)).
		Input("ax", onnxpb.TensorProto_INT64, onnx.D(1)).
		Float32("lo", []float32{-1}).
		Node("Add", "add", []string{"x", "h"}, []string{"xa"}).
		Node("Clip", "clip", []string{"xa", "lo"}, []string{"c"}).
		Node("LeakyRelu", "lrelu", []string{"c"}, []string{"l"}, onnx.AttrFloat("alpha", 0.1)).
		Node("ReduceSum", "rsum", []string{"l", "ax"}, []string{"rs"}, onnx.AttrInt("keepdims", 1)).
		Node("ReduceMax", "rmax", []string{"l"}, []string{"rm"}, onnx.AttrInts("axes", -1), onnx.AttrInt("keepdims", 0)).
		Node("Greater", "gt", []string{"l", "rs"}, []string{"g"}).
		Node("Where", "where", []string{"g", "l", "rs"}, []string{"w"}).
		Node("Pow", "pow", []string{"w", "k"}, []string{"p"}).
		Node("Max", "max", []string{"p", "w", "rs"}, []string{"mx"}).
		Node("TopK", "topk", []string{"mx", "k"}, []string{"tv", "ti"}).
		Node("CumSum", "cum", []string{"tv", "ax"}, []string{"cs"}, onnx.AttrInt("reverse", 1)).
		Node("ArgMax", "am", []string{"x"}, []string{"a"}, onnx.AttrInt("axis", 1)).
		Node("Mod", "mod", []string{"ti", "k"}, []string{"md"}).
		Node("Dropout", "drop", []string{"cs"}, []string{"d", "mask"}).
		Output("d", onnxpb.TensorProto_FLOAT).Output("mask", onnxpb.TensorProto_BOOL).
		Output("rm", onnxpb.TensorProto_FLOAT).Output("a", onnxpb.TensorProto_INT64).Output("md", onnxpb.TensorProto_INT64)
	mp, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	mp.Graph.Initializer = append(mp.Graph.Initializer, half)
	data, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{data}
}

func TestOpsFuzzSeedsRun(t *testing.T) {
	for i, s := range opsFuzzSeeds(t) {
		m, err := Load(s)
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		in, ok := fuzzInputs(m)
		if !ok {
			t.Fatalf("seed %d: inputs too large", i)
		}
		in["ax"] = cI64(sh(1), 1)
		if _, err := m.Run(context.Background(), in); err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
	}
}

// FuzzLoadOps is FuzzLoad seeded with models of the operators above.
func FuzzLoadOps(f *testing.F) {
	for _, s := range opsFuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Load(data)
		if err != nil {
			return
		}
		in, ok := fuzzInputs(m)
		if !ok {
			return
		}
		_, _ = m.Run(context.Background(), in)
	})
}

// FuzzTensorFromProto feeds mutated tensor protos, FLOAT16 among them, to
// TensorFromProto: it must refuse them or give a valid tensor.
func FuzzTensorFromProto(f *testing.F) {
	for _, p := range []*onnxpb.TensorProto{
		{DataType: proto.Int32(10), Dims: []int64{2}, RawData: half16(1, -2)},
		{DataType: proto.Int32(10), Dims: []int64{1, 2}, Int32Data: []int32{0x3c00, 0x7e00}},
		{DataType: proto.Int32(1), Dims: []int64{2}, FloatData: []float32{1, 2}},
		{DataType: proto.Int32(7), Dims: []int64{1}, Int64Data: []int64{5}},
	} {
		data, err := proto.Marshal(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &onnxpb.TensorProto{}
		if proto.Unmarshal(data, p) != nil {
			return
		}
		tt, err := TensorFromProto(p)
		if err != nil {
			return
		}
		if err := tt.Validate(); err != nil {
			t.Fatalf("TensorFromProto gave an invalid tensor: %v", err)
		}
	})
}
