package interp

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

func cF32(shape []int, v ...float32) *Tensor { return &Tensor{DType: Float32, Shape: shape, F32: v} }
func cI64(shape []int, v ...int64) *Tensor   { return &Tensor{DType: Int64, Shape: shape, I64: v} }
func cI32(shape []int, v ...int32) *Tensor   { return &Tensor{DType: Int32, Shape: shape, I32: v} }
func cI8(shape []int, v ...int8) *Tensor     { return &Tensor{DType: Int8, Shape: shape, I8: v} }
func cU8(shape []int, v ...uint8) *Tensor    { return &Tensor{DType: Uint8, Shape: shape, U8: v} }
func cB(shape []int, v ...bool) *Tensor      { return &Tensor{DType: Bool, Shape: shape, B: v} }

// sh is a shape literal.
func sh(d ...int) []int { return append([]int{}, d...) }

// tensorInfo declares a tensor value of unknown rank.
func tensorInfo(name string, dt DType) *onnxpb.ValueInfoProto {
	return &onnxpb.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(dt))}}},
	}
}

// opModel is a one-node model: inputs x0.. (nil: omitted), outputs y0.. of
// the given types, all of unknown rank.
func opModel(op string, opset int64, in []*Tensor, outTypes []DType, attrs ...*onnxpb.AttributeProto) *onnxpb.ModelProto {
	g := &onnxpb.GraphProto{Name: proto.String("t")}
	node := &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String("n0"), Attribute: attrs}
	for i, t := range in {
		name := ""
		if t != nil {
			name = fmt.Sprintf("x%d", i)
			g.Input = append(g.Input, tensorInfo(name, t.DType))
		}
		node.Input = append(node.Input, name)
	}
	for i, dt := range outTypes {
		name := fmt.Sprintf("y%d", i)
		node.Output = append(node.Output, name)
		g.Output = append(g.Output, tensorInfo(name, dt))
	}
	g.Node = []*onnxpb.NodeProto{node}
	return &onnxpb.ModelProto{
		IrVersion:   proto.Int64(onnx.IRVersion),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}},
		Graph:       g,
	}
}

// runOp loads a one-node model at opset 13 and runs it on in.
func runOp(t testing.TB, op string, outTypes []DType, attrs []*onnxpb.AttributeProto, in ...*Tensor) ([]*Tensor, error) {
	t.Helper()
	mp := opModel(op, 13, in, outTypes, attrs...)
	data, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(data)
	if err != nil {
		return nil, err
	}
	feed := map[string]*Tensor{}
	for i, x := range in {
		if x != nil {
			feed[fmt.Sprintf("x%d", i)] = x
		}
	}
	res, err := m.Run(context.Background(), feed)
	if err != nil {
		return nil, err
	}
	out := make([]*Tensor, len(outTypes))
	for i := range out {
		out[i] = res[fmt.Sprintf("y%d", i)]
	}
	return out, nil
}

// sameTensor compares type, shape and values, floats within tol.
func sameTensor(got, want *Tensor, tol float64) error {
	if got == nil {
		return fmt.Errorf("no tensor")
	}
	if got.DType != want.DType || ShapeString(got.Shape) != ShapeString(want.Shape) {
		return fmt.Errorf("got %s %s, want %s %s", got.DType, ShapeString(got.Shape), want.DType, ShapeString(want.Shape))
	}
	if got.DType == Float32 {
		for i := range want.F32 {
			g, w := float64(got.F32[i]), float64(want.F32[i])
			if g != w && !(g-w <= tol && w-g <= tol) && !(g != g && w != w) {
				return fmt.Errorf("element %d: got %v, want %v (all: %v)", i, g, w, got.F32)
			}
		}
		return nil
	}
	g, w := *got, *want
	g.Shape, w.Shape = nil, nil
	if fmt.Sprint(g) != fmt.Sprint(w) {
		return fmt.Errorf("got %v, want %v", g, w)
	}
	return nil
}
