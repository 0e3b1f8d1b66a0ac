package interp

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// runOpAt is runOp at a given opset: the node's inputs are graph inputs,
// so its kernel runs on the request, not at load.
func runOpAt(t testing.TB, opset int64, op string, outTypes []DType, attrs []*onnxpb.AttributeProto, in ...*Tensor) ([]*Tensor, error) {
	t.Helper()
	data, err := proto.Marshal(opModel(op, opset, in, outTypes, attrs...))
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

// multiCase is an operator case at an opset with any number of outputs.
type multiCase struct {
	name    string
	opset   int64 // 13 when zero
	op      string
	attrs   []*onnxpb.AttributeProto
	in      []*Tensor
	want    []*Tensor
	outs    int    // outputs when want is nil (an error case); 1 when zero
	wantErr string // substring of the load or run error
}

func runMultiCases(t *testing.T, cases []multiCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opset := c.opset
			if opset == 0 {
				opset = 13
			}
			types := make([]DType, max(len(c.want), c.outs, 1))
			for i := range types {
				types[i] = Float32
				if i < len(c.want) {
					types[i] = c.want[i].DType
				}
			}
			got, err := runOpAt(t, opset, c.op, types, c.attrs, c.in...)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range c.want {
				if err := sameTensor(got[i], w, 1e-5); err != nil {
					t.Fatalf("output %d: %v", i, err)
				}
			}
		})
	}
}

// iota32 is a float32 tensor of the shape holding 0, 1, 2, ...
func iota32(shape ...int) *Tensor {
	t := New(Float32, shape...)
	for i := range t.F32 {
		t.F32[i] = float32(i)
	}
	return t
}

// intsAttr is an integer list attribute.
func intsAttr(name string, v ...int64) *onnxpb.AttributeProto { return onnx.AttrInts(name, v...) }

// attrList is a node's attributes.
func attrList(a ...*onnxpb.AttributeProto) []*onnxpb.AttributeProto { return a }

func TestDimsOps(t *testing.T) {
	x := iota32(2, 3)
	runMultiCases(t, []multiCase{
		{name: "shape", opset: 15, op: "Shape", in: []*Tensor{iota32(2, 3, 4)}, want: []*Tensor{cI64(sh(3), 2, 3, 4)}},
		{name: "shape start -2", opset: 15, op: "Shape", attrs: attrList(onnx.AttrInt("start", -2)), in: []*Tensor{iota32(2, 3, 4)}, want: []*Tensor{cI64(sh(2), 3, 4)}},
		{name: "shape clamped", opset: 15, op: "Shape", attrs: attrList(onnx.AttrInt("start", -9), onnx.AttrInt("end", 9)), in: []*Tensor{iota32(2, 3)}, want: []*Tensor{cI64(sh(2), 2, 3)}},
		{name: "shape empty range", opset: 15, op: "Shape", attrs: attrList(onnx.AttrInt("start", 2), onnx.AttrInt("end", 1)), in: []*Tensor{iota32(2, 3, 4)}, want: []*Tensor{cI64(sh(0))}},
		{name: "shape of bool", op: "Shape", in: []*Tensor{cB(sh(0, 2))}, want: []*Tensor{cI64(sh(2), 0, 2)}},
		{name: "size", op: "Size", in: []*Tensor{cI64(sh(2, 2), 1, 2, 3, 4)}, want: []*Tensor{cI64(sh(), 4)}},

		{name: "squeeze all", op: "Squeeze", in: []*Tensor{cI64(sh(1, 2, 1), 7, 8)}, want: []*Tensor{cI64(sh(2), 7, 8)}},
		{name: "squeeze empty axes", op: "Squeeze", in: []*Tensor{cI64(sh(1, 2, 1), 7, 8), cI64(sh(0))}, want: []*Tensor{cI64(sh(2), 7, 8)}},
		{name: "squeeze axis -1", op: "Squeeze", in: []*Tensor{cI64(sh(1, 2, 1), 7, 8), cI64(sh(1), -1)}, want: []*Tensor{cI64(sh(1, 2), 7, 8)}},
		{name: "squeeze attribute form", opset: 11, op: "Squeeze", attrs: attrList(intsAttr("axes", 0)), in: []*Tensor{cB(sh(1, 2), true, false)}, want: []*Tensor{cB(sh(2), true, false)}},
		{name: "squeeze non-one axis", op: "Squeeze", in: []*Tensor{x, cI64(sh(1), 0)}, wantErr: "size is not 1"},
		{name: "squeeze attribute at 13", op: "Squeeze", attrs: attrList(intsAttr("axes", 0)), in: []*Tensor{x}, wantErr: `Squeeze node "n0": attribute axes is an input`},

		{name: "unsqueeze negative", op: "Unsqueeze", in: []*Tensor{cI64(sh(2), 1, 2), cI64(sh(2), -1, 0)}, want: []*Tensor{cI64(sh(1, 2, 1), 1, 2)}},
		{name: "unsqueeze attribute form", opset: 11, op: "Unsqueeze", attrs: attrList(intsAttr("axes", 1)), in: []*Tensor{cI64(sh(2), 1, 2)}, want: []*Tensor{cI64(sh(2, 1), 1, 2)}},
		{name: "unsqueeze repeated axis", op: "Unsqueeze", in: []*Tensor{cI64(sh(2), 1, 2), cI64(sh(2), 0, -3)}, wantErr: "repeated"},
		{name: "unsqueeze without axes", op: "Unsqueeze", in: []*Tensor{x}, wantErr: `Unsqueeze node "n0"`},
		{name: "unsqueeze attribute missing", opset: 11, op: "Unsqueeze", in: []*Tensor{x}, wantErr: "missing attribute axes"},

		{name: "expand both ways", op: "Expand", in: []*Tensor{cI64(sh(3, 1), 1, 2, 3), cI64(sh(3), 2, 1, 2)},
			want: []*Tensor{cI64(sh(2, 3, 2), 1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3)}},
		{name: "expand to smaller rank", op: "Expand", in: []*Tensor{cB(sh(2, 1), true, false), cI64(sh(1), 3)},
			want: []*Tensor{cB(sh(2, 3), true, true, true, false, false, false)}},
		{name: "expand mismatch", op: "Expand", in: []*Tensor{x, cI64(sh(1), 2)}, wantErr: "do not broadcast"},
		{name: "expand negative", op: "Expand", in: []*Tensor{x, cI64(sh(1), -3)}, wantErr: "negative"},

		{name: "tile", op: "Tile", in: []*Tensor{cI32(sh(2, 2), 1, 2, 3, 4), cI64(sh(2), 2, 2)},
			want: []*Tensor{cI32(sh(4, 4), 1, 2, 1, 2, 3, 4, 3, 4, 1, 2, 1, 2, 3, 4, 3, 4)}},
		{name: "tile zero", op: "Tile", in: []*Tensor{x, cI64(sh(2), 0, 1)}, want: []*Tensor{cF32(sh(0, 3))}},
		{name: "tile wrong rank", op: "Tile", in: []*Tensor{x, cI64(sh(1), 2)}, wantErr: "rank"},
		{name: "tile negative", op: "Tile", in: []*Tensor{x, cI64(sh(2), 1, -1)}, wantErr: "negative"},

		{name: "constant of shape default", op: "ConstantOfShape", in: []*Tensor{cI64(sh(2), 1, 2)}, want: []*Tensor{cF32(sh(1, 2), 0, 0)}},
		{name: "constant of shape int64", op: "ConstantOfShape", attrs: attrList(tensorAttr("value", cI64(sh(1), 7))),
			in: []*Tensor{cI64(sh(1), 3)}, want: []*Tensor{cI64(sh(3), 7, 7, 7)}},
		{name: "constant of shape scalar", op: "ConstantOfShape", attrs: attrList(tensorAttr("value", cF32(sh(1), 2))),
			in: []*Tensor{cI64(sh(0))}, want: []*Tensor{cF32(sh(), 2)}},
		{name: "constant of shape two values", op: "ConstantOfShape", attrs: attrList(tensorAttr("value", cF32(sh(2), 1, 2))),
			in: []*Tensor{cI64(sh(1), 3)}, wantErr: `ConstantOfShape node "n0": attribute value has 2 elements`},
		{name: "constant of shape negative", op: "ConstantOfShape", in: []*Tensor{cI64(sh(1), -1)}, wantErr: "negative"},

		{name: "depth to space DCR", op: "DepthToSpace", attrs: attrList(onnx.AttrInt("blocksize", 2)), in: []*Tensor{iota32(1, 4, 1, 1)},
			want: []*Tensor{cF32(sh(1, 1, 2, 2), 0, 1, 2, 3)}},
		{name: "depth to space CRD", op: "DepthToSpace", attrs: attrList(onnx.AttrInt("blocksize", 2), onnx.AttrString("mode", "CRD")),
			in: []*Tensor{iota32(1, 8, 1, 1)}, want: []*Tensor{cF32(sh(1, 2, 2, 2), 0, 1, 2, 3, 4, 5, 6, 7)}},
		{name: "depth to space bad mode", op: "DepthToSpace", attrs: attrList(onnx.AttrInt("blocksize", 2), onnx.AttrString("mode", "XYZ")),
			in: []*Tensor{iota32(1, 4, 1, 1)}, wantErr: `DepthToSpace node "n0": attribute mode`},
		{name: "depth to space channels", op: "DepthToSpace", attrs: attrList(onnx.AttrInt("blocksize", 2)), in: []*Tensor{iota32(1, 3, 1, 1)}, wantErr: "divisible"},
		{name: "space to depth", op: "SpaceToDepth", attrs: attrList(onnx.AttrInt("blocksize", 2)), in: []*Tensor{cI64(sh(1, 1, 2, 2), 1, 2, 3, 4)},
			want: []*Tensor{cI64(sh(1, 4, 1, 1), 1, 2, 3, 4)}},
		{name: "space to depth no blocksize", op: "SpaceToDepth", in: []*Tensor{iota32(1, 1, 2, 2)}, wantErr: "blocksize"},
	})
}

// tensorAttr is a tensor attribute.
func tensorAttr(name string, t *Tensor) *onnxpb.AttributeProto {
	p := &onnxpb.TensorProto{DataType: proto.Int32(int32(t.DType))}
	for _, d := range t.Shape {
		p.Dims = append(p.Dims, int64(d))
	}
	switch t.DType {
	case Float32:
		p.FloatData = t.F32
	case Int64:
		p.Int64Data = t.I64
	}
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: p}
}

func TestSlice(t *testing.T) {
	x := iota32(3, 4)
	big, small := int64(math.MaxInt64), int64(math.MinInt64)
	runMultiCases(t, []multiCase{
		{name: "rows", op: "Slice", in: []*Tensor{x, cI64(sh(1), 1), cI64(sh(1), 3)}, want: []*Tensor{cF32(sh(2, 4), 4, 5, 6, 7, 8, 9, 10, 11)}},
		{name: "negative axis and ends", op: "Slice", in: []*Tensor{x, cI64(sh(1), -3), cI64(sh(1), -1), cI64(sh(1), -1)},
			want: []*Tensor{cF32(sh(3, 2), 1, 2, 5, 6, 9, 10)}},
		{name: "negative step reverses", op: "Slice", in: []*Tensor{x, cI64(sh(1), -1), cI64(sh(1), small), cI64(sh(1), 1), cI64(sh(1), -1)},
			want: []*Tensor{cF32(sh(3, 4), 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8)}},
		{name: "step 2 both axes", op: "Slice", in: []*Tensor{x, cI64(sh(2), 0, 1), cI64(sh(2), big, big), cI64(sh(2), 0, 1), cI64(sh(2), 2, 2)},
			want: []*Tensor{cF32(sh(2, 2), 1, 3, 9, 11)}},
		{name: "step -2 from past the end", op: "Slice", in: []*Tensor{x, cI64(sh(1), 100), cI64(sh(1), -100), cI64(sh(1), 1), cI64(sh(1), -2)},
			want: []*Tensor{cF32(sh(3, 2), 3, 1, 7, 5, 11, 9)}},
		{name: "huge step", op: "Slice", in: []*Tensor{x, cI64(sh(1), 0), cI64(sh(1), big), cI64(sh(1), 1), cI64(sh(1), big)},
			want: []*Tensor{cF32(sh(3, 1), 0, 4, 8)}},
		{name: "empty", op: "Slice", in: []*Tensor{x, cI64(sh(1), 3), cI64(sh(1), 1)}, want: []*Tensor{cF32(sh(0, 4))}},
		{name: "start clamped", op: "Slice", in: []*Tensor{cI64(sh(3), 1, 2, 3), cI64(sh(1), -10), cI64(sh(1), 10)}, want: []*Tensor{cI64(sh(3), 1, 2, 3)}},
		{name: "int32 params", op: "Slice", in: []*Tensor{cB(sh(3), true, false, true), cI32(sh(1), 1), cI32(sh(1), 3)}, want: []*Tensor{cB(sh(2), false, true)}},
		{name: "attribute form", opset: 9, op: "Slice", attrs: attrList(intsAttr("starts", 1), intsAttr("ends", 2), intsAttr("axes", 1)), in: []*Tensor{x},
			want: []*Tensor{cF32(sh(3, 1), 1, 5, 9)}},
		{name: "zero step", op: "Slice", in: []*Tensor{x, cI64(sh(1), 0), cI64(sh(1), 1), cI64(sh(1), 0), cI64(sh(1), 0)}, wantErr: "zero"},
		{name: "repeated axis", op: "Slice", in: []*Tensor{x, cI64(sh(2), 0, 0), cI64(sh(2), 1, 1), cI64(sh(2), 0, -2)}, wantErr: "repeated"},
		{name: "lengths differ", op: "Slice", in: []*Tensor{x, cI64(sh(2), 0, 0), cI64(sh(1), 1)}, wantErr: "differ"},
		{name: "missing ends", op: "Slice", in: []*Tensor{x, cI64(sh(1), 0)}, wantErr: `Slice node "n0"`},
	})
}

func TestSplit(t *testing.T) {
	x := iota32(2, 4)
	runMultiCases(t, []multiCase{
		{name: "equal", op: "Split", attrs: attrList(onnx.AttrInt("axis", 1)), in: []*Tensor{x},
			want: []*Tensor{cF32(sh(2, 2), 0, 1, 4, 5), cF32(sh(2, 2), 2, 3, 6, 7)}},
		{name: "input parts, negative axis", op: "Split", attrs: attrList(onnx.AttrInt("axis", -1)), in: []*Tensor{x, cI64(sh(3), 1, 0, 3)},
			want: []*Tensor{cF32(sh(2, 1), 0, 4), cF32(sh(2, 0)), cF32(sh(2, 3), 1, 2, 3, 5, 6, 7)}},
		{name: "attribute form", opset: 11, op: "Split", attrs: attrList(intsAttr("split", 1, 1)), in: []*Tensor{cI64(sh(2), 5, 6)},
			want: []*Tensor{cI64(sh(1), 5), cI64(sh(1), 6)}},
		{name: "num_outputs uneven", op: "Split", attrs: attrList(onnx.AttrInt("axis", 1), onnx.AttrInt("num_outputs", 3)), in: []*Tensor{x},
			want: []*Tensor{cF32(sh(2, 2), 0, 1, 4, 5), cF32(sh(2, 2), 2, 3, 6, 7), cF32(sh(2, 0))}},
		{name: "num_outputs mismatch", op: "Split", attrs: attrList(onnx.AttrInt("num_outputs", 3)), in: []*Tensor{x}, outs: 2, wantErr: "num_outputs"},
		{name: "uneven", op: "Split", attrs: attrList(onnx.AttrInt("axis", 1)), in: []*Tensor{x}, outs: 3, wantErr: "equal parts"},
		{name: "bad sum", op: "Split", in: []*Tensor{x, cI64(sh(2), 1, 2)}, outs: 2, wantErr: "sums to"},
		{name: "attribute at 13", op: "Split", attrs: attrList(intsAttr("split", 1, 1)), in: []*Tensor{x}, outs: 2, wantErr: `Split node "n0": attribute split is an input`},
	})
}

func TestGatherScatter(t *testing.T) {
	x := iota32(3, 2)
	runMultiCases(t, []multiCase{
		{name: "gather rows negative", op: "Gather", in: []*Tensor{x, cI64(sh(2), -1, 0)}, want: []*Tensor{cF32(sh(2, 2), 4, 5, 0, 1)}},
		{name: "gather scalar index axis 1", op: "Gather", attrs: attrList(onnx.AttrInt("axis", 1)), in: []*Tensor{x, cI32(sh(), 1)},
			want: []*Tensor{cF32(sh(3), 1, 3, 5)}},
		{name: "gather 2-D indices int64 data", op: "Gather", in: []*Tensor{cI64(sh(3), 10, 20, 30), cI64(sh(2, 2), 0, 2, 1, 1)},
			want: []*Tensor{cI64(sh(2, 2), 10, 30, 20, 20)}},
		{name: "gather empty indices", op: "Gather", in: []*Tensor{x, cI64(sh(0))}, want: []*Tensor{cF32(sh(0, 2))}},
		{name: "gather out of range", op: "Gather", in: []*Tensor{x, cI64(sh(1), 3)}, wantErr: "out of range"},
		{name: "gather float indices", op: "Gather", in: []*Tensor{x, cF32(sh(1), 0)}, wantErr: "int64 or int32"},
		{name: "gather elements", op: "GatherElements", attrs: attrList(onnx.AttrInt("axis", -1)), in: []*Tensor{x, cI64(sh(3, 1), 1, 0, -1)},
			want: []*Tensor{cF32(sh(3, 1), 1, 2, 5)}},
		{name: "gather elements rank", op: "GatherElements", in: []*Tensor{x, cI64(sh(1), 0)}, wantErr: "rank"},
		{name: "scatternd rows", opset: 16, op: "ScatterND", in: []*Tensor{cI64(sh(3, 2), 1, 2, 3, 4, 5, 6), cI64(sh(1, 1), -1), cI64(sh(1, 2), 9, 9)},
			want: []*Tensor{cI64(sh(3, 2), 1, 2, 3, 4, 9, 9)}},
		{name: "scatternd bool elements", op: "ScatterND", in: []*Tensor{cB(sh(2), false, false), cI64(sh(1, 1), 1), cB(sh(1), true)},
			want: []*Tensor{cB(sh(2), false, true)}},
		{name: "scatternd min", opset: 16, op: "ScatterND", attrs: attrList(onnx.AttrString("reduction", "min")),
			in: []*Tensor{cF32(sh(2), 5, 5), cI64(sh(2, 1), 0, 0), cF32(sh(2), 7, 3)}, want: []*Tensor{cF32(sh(2), 3, 5)}},
		{name: "scatternd reduction before 16", op: "ScatterND", attrs: attrList(onnx.AttrString("reduction", "add")),
			in: []*Tensor{cF32(sh(2), 5, 5), cI64(sh(1, 1), 0), cF32(sh(1), 7)}, wantErr: `ScatterND node "n0": attribute reduction "add" needs opset 16`},
		{name: "scatternd updates shape", op: "ScatterND", in: []*Tensor{cF32(sh(2), 5, 5), cI64(sh(1, 1), 0), cF32(sh(2), 7, 7)}, wantErr: "updates shape"},
	})
}

func TestPad(t *testing.T) {
	x := cI64(sh(2, 3), 1, 2, 3, 4, 5, 6)
	mode := func(m string) []*onnxpb.AttributeProto { return attrList(onnx.AttrString("mode", m)) }
	runMultiCases(t, []multiCase{
		{name: "constant value", op: "Pad", in: []*Tensor{x, cI64(sh(4), 0, 1, 1, 0), cI64(sh(), 9)},
			want: []*Tensor{cI64(sh(3, 4), 9, 1, 2, 3, 9, 4, 5, 6, 9, 9, 9, 9)}},
		{name: "negative crops", op: "Pad", in: []*Tensor{x, cI64(sh(4), 0, -1, 0, 1)},
			want: []*Tensor{cI64(sh(2, 3), 2, 3, 0, 5, 6, 0)}},
		{name: "reflect wide", op: "Pad", attrs: mode("reflect"), in: []*Tensor{cF32(sh(1, 3), 1, 2, 3), cI64(sh(4), 0, 4, 0, 3)},
			want: []*Tensor{cF32(sh(1, 10), 1, 2, 3, 2, 1, 2, 3, 2, 1, 2)}}, // numpy's reflection, repeated
		{name: "edge", op: "Pad", attrs: mode("edge"), in: []*Tensor{x, cI64(sh(4), 1, 0, 0, 2)},
			want: []*Tensor{cI64(sh(3, 5), 1, 2, 3, 3, 3, 1, 2, 3, 3, 3, 4, 5, 6, 6, 6)}},
		{name: "axes input", op: "Pad", in: []*Tensor{x, cI64(sh(2), 1, 1), nil, cI64(sh(1), -1)},
			want: []*Tensor{cI64(sh(2, 5), 0, 1, 2, 3, 0, 0, 4, 5, 6, 0)}},
		{name: "attribute form", opset: 2, op: "Pad", attrs: attrList(intsAttr("pads", 1, 0), onnx.AttrFloat("value", 1.5)), in: []*Tensor{cF32(sh(1), 2)},
			want: []*Tensor{cF32(sh(2), 1.5, 2)}},
		{name: "pads length", op: "Pad", in: []*Tensor{x, cI64(sh(2), 1, 1)}, wantErr: "want 4 values"},
		{name: "crop below zero", op: "Pad", in: []*Tensor{x, cI64(sh(4), -3, 0, 0, 0)}, wantErr: "below zero"},
		{name: "edge of empty", op: "Pad", attrs: mode("edge"), in: []*Tensor{cF32(sh(0)), cI64(sh(2), 1, 0)}, wantErr: "empty axis"},
		{name: "wrong value type", op: "Pad", in: []*Tensor{x, cI64(sh(4), 0, 0, 0, 0), cF32(sh(), 1)}, wantErr: "constant_value"},
		{name: "bad mode", op: "Pad", attrs: mode("wrap"), in: []*Tensor{x, cI64(sh(4), 0, 0, 0, 0)}, wantErr: `Pad node "n0": attribute mode`},
	})
}

func TestNormalization(t *testing.T) {
	x := cF32(sh(2, 2), 1, 3, 2, 2)
	inv := float32(1 / math.Sqrt(1+1e-5))
	runMultiCases(t, []multiCase{
		{name: "layer norm with stats", opset: 17, op: "LayerNormalization", in: []*Tensor{x, cF32(sh(2), 1, 2), cF32(sh(2), 0, 1)},
			want: []*Tensor{cF32(sh(2, 2), -inv, 2*inv+1, 0, 1), cF32(sh(2, 1), 2, 2), cF32(sh(2, 1), inv, float32(1/math.Sqrt(float64(float32(1e-5)))))}},
		{name: "layer norm axis 0 broadcast scale", opset: 17, op: "LayerNormalization", attrs: attrList(onnx.AttrInt("axis", 0)),
			in: []*Tensor{cF32(sh(2, 1), 0, 2), cF32(sh(1), 3)}, want: []*Tensor{cF32(sh(2, 1), -3*inv, 3*inv)}},
		{name: "layer norm bad axis", opset: 17, op: "LayerNormalization", attrs: attrList(onnx.AttrInt("axis", 2)), in: []*Tensor{x, cF32(sh(2), 1, 1)}, wantErr: "out of range"},
		{name: "layer norm bad scale", opset: 17, op: "LayerNormalization", in: []*Tensor{x, cF32(sh(3), 1, 1, 1)}, wantErr: "does not broadcast"},
		{name: "layer norm stash type", opset: 17, op: "LayerNormalization", attrs: attrList(onnx.AttrInt("stash_type", 11)), in: []*Tensor{x, cF32(sh(2), 1, 1)},
			wantErr: `LayerNormalization node "n0": attribute stash_type`},
		{name: "layer norm before 17", op: "LayerNormalization", in: []*Tensor{x, cF32(sh(2), 1, 1)}, wantErr: "opset 13"},
		{name: "instance norm", op: "InstanceNormalization", in: []*Tensor{cF32(sh(1, 2, 2), 1, 3, 5, 5), cF32(sh(2), 2, 1), cF32(sh(2), 0, 7)},
			want: []*Tensor{cF32(sh(1, 2, 2), -2*inv, 2*inv, 7, 7)}},
		{name: "instance norm channels", op: "InstanceNormalization", in: []*Tensor{cF32(sh(1, 2, 2), 1, 3, 5, 5), cF32(sh(1), 2), cF32(sh(2), 0, 7)},
			wantErr: "channels"},
	})
}
