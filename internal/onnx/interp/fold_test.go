package interp

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// int64Const is a Constant node's value attribute holding v.
func int64Const(v ...int64) onnx.Attr {
	p := &onnxpb.TensorProto{DataType: proto.Int32(int32(Int64)), Dims: []int64{int64(len(v))}, Int64Data: v}
	return &onnxpb.AttributeProto{Name: proto.String("value"), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: p}
}

// shapeChain builds x -> Shape -> Gather(scalar 0) -> Unsqueeze ->
// Concat(-1) -> Reshape(x): the batch-flattening subgraph exporters
// write, on an input x of the given dimensions.
func shapeChain(dims ...onnx.Dim) *onnx.Builder {
	scalarZero := &onnxpb.AttributeProto{Name: proto.String("value_int"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(0)}
	return onnx.NewBuilder("chain", 13).Input("x", onnxpb.TensorProto_FLOAT, dims...).
		Node("Constant", "zero", nil, []string{"zero"}, scalarZero).
		Node("Constant", "axes", nil, []string{"axes"}, int64Const(0)).
		Node("Constant", "minus1", nil, []string{"minus1"}, int64Const(-1)).
		Node("Shape", "shape", []string{"x"}, []string{"s"}).
		Node("Gather", "batch", []string{"s", "zero"}, []string{"n"}, onnx.AttrInt("axis", 0)).
		Node("Unsqueeze", "n1", []string{"n", "axes"}, []string{"n1"}).
		Node("Concat", "cat", []string{"n1", "minus1"}, []string{"newshape"}, onnx.AttrInt("axis", 0)).
		Node("Reshape", "flat", []string{"x", "newshape"}, []string{"y"}).
		Output("y", onnxpb.TensorProto_FLOAT)
}

func stepOps(m *Model) []string {
	var ops []string
	for _, st := range m.steps {
		ops = append(ops, st.node.Proto.GetOpType())
	}
	return ops
}

// TestShapeChainFolded checks that a shape subgraph on an input of known
// shape is computed at load, leaving only the Reshape to run, and that the
// same chain on a dynamic dimension still runs at every request.
func TestShapeChainFolded(t *testing.T) {
	for _, tt := range []struct {
		name string
		dims []onnx.Dim
		want string
	}{
		{"static", []onnx.Dim{onnx.D(2), onnx.D(3), onnx.D(4)}, "Reshape"},
		{"dynamic batch", []onnx.Dim{onnx.P("n"), onnx.D(3), onnx.D(4)}, "Shape Gather Unsqueeze Concat Reshape"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := mustLoad(t, shapeChain(tt.dims...))
			if got := strings.Join(stepOps(m), " "); got != tt.want {
				t.Fatalf("steps %q, want %q", got, tt.want)
			}
			x := iota32(2, 3, 4)
			res, err := m.Run(context.Background(), map[string]*Tensor{"x": x})
			if err != nil {
				t.Fatal(err)
			}
			if err := sameTensor(res["y"], x.WithShape([]int{2, 12}), 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFoldConstantSubgraphs checks that Range, ConstantOfShape, Expand and
// the other deterministic operators fold when their inputs are constants,
// and that their results are shared safely with every request.
func TestFoldConstantSubgraphs(t *testing.T) {
	b := onnx.NewBuilder("consts", 13).Input("x", onnxpb.TensorProto_INT64, onnx.P("n")).
		Node("Constant", "start", nil, []string{"start"}, &onnxpb.AttributeProto{Name: proto.String("value_int"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(0)}).
		Node("Constant", "limit", nil, []string{"limit"}, &onnxpb.AttributeProto{Name: proto.String("value_int"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(3)}).
		Node("Constant", "delta", nil, []string{"delta"}, &onnxpb.AttributeProto{Name: proto.String("value_int"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(1)}).
		Node("Range", "range", []string{"start", "limit", "delta"}, []string{"r"}).
		Node("Shape", "rshape", []string{"r"}, []string{"rs"}).
		Node("ConstantOfShape", "ones", []string{"rs"}, []string{"ones"}, tensorAttr("value", cI64(sh(1), 1))).
		Node("Add", "sum", []string{"r", "ones"}, []string{"r1"}).
		Node("Mul", "scaled", []string{"x", "r1"}, []string{"y"}).
		Output("y", onnxpb.TensorProto_INT64).Output("r1", onnxpb.TensorProto_INT64)
	m := mustLoad(t, b)
	if got := strings.Join(stepOps(m), " "); got != "Mul" {
		t.Fatalf("steps %q, want only Mul", got)
	}
	for range 2 {
		res, err := m.Run(context.Background(), map[string]*Tensor{"x": cI64(sh(3), 1, 1, 2)})
		if err != nil {
			t.Fatal(err)
		}
		if err := sameTensor(res["y"], cI64(sh(3), 1, 2, 6), 0); err != nil {
			t.Fatal(err)
		}
		if err := sameTensor(res["r1"], cI64(sh(3), 1, 2, 3), 0); err != nil {
			t.Fatal(err)
		}
		res["r1"].I64[0] = 99 // the caller owns its outputs: a folded constant is copied
	}
}

// TestFoldErrorNamesNode checks that a node that fails when folded fails
// the load with an error naming it.
func TestFoldErrorNamesNode(t *testing.T) {
	b := onnx.NewBuilder("bad", 13).Input("x", onnxpb.TensorProto_INT64, onnx.D(2)).
		Node("Constant", "data", nil, []string{"d"}, int64Const(1, 2)).
		Node("Constant", "idx", nil, []string{"i"}, int64Const(5)).
		Node("Gather", "pick", []string{"d", "i"}, []string{"g"}).
		Node("Add", "add", []string{"x", "g"}, []string{"y"}).
		Output("y", onnxpb.TensorProto_INT64)
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Load(data)
	if err == nil || !strings.Contains(err.Error(), `Gather node "pick"`) || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("error %v, want one naming Gather node \"pick\" and the bad index", err)
	}
	if errors.Is(err, ErrUnsupported) {
		t.Fatalf("error %v wraps ErrUnsupported; the model is wrong, not unsupported", err)
	}
}

// TestVolatileNotFolded checks that a node of a Volatile operator runs
// at every request even when its inputs are all constants.
func TestVolatileNotFolded(t *testing.T) {
	m := mustLoad(t, onnx.NewBuilder("v", 13).Input("x", onnxpb.TensorProto_INT64, onnx.D(1)).
		Node("Constant", "c", nil, []string{"c"}, int64Const(1)).
		Node("Identity", "id", []string{"c"}, []string{"y"}).
		Node("Add", "add", []string{"x", "y"}, []string{"z"}).
		Output("z", onnxpb.TensorProto_INT64))
	if got := strings.Join(stepOps(m), " "); got != "Add" {
		t.Fatalf("steps %q, want the Identity of a constant folded", got)
	}
	// The same graph with Identity marked Volatile keeps its step.
	b := &builder{m: &Model{}, slot: map[string]int{}, static: map[int]*Tensor{}}
	st := &step{node: &Node{Proto: &onnxpb.NodeProto{OpType: proto.String("Identity")}}, op: Op{Volatile: true}, in: []int{0}}
	b.m.consts = []*Tensor{cI64(sh(1), 1)}
	if _, ok := b.foldArgs(st); ok {
		t.Fatal("a Volatile step with constant inputs would be folded")
	}
	st.op.Volatile = false
	if _, ok := b.foldArgs(st); !ok {
		t.Fatal("a step with constant inputs would not be folded")
	}
}
