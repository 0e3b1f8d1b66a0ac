package interp

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// testNode builds a node of the given operator with nIn inputs and nOut
// outputs at opset 13.
func testNode(op string, nIn, nOut int, attrs ...*onnxpb.AttributeProto) *Node {
	p := &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String("n")}
	for i := 0; i < nIn; i++ {
		p.Input = append(p.Input, "in"+string(rune('a'+i)))
	}
	for i := 0; i < nOut; i++ {
		p.Output = append(p.Output, "out"+string(rune('a'+i)))
	}
	p.Attribute = attrs
	return &Node{Proto: p, Opset: 13}
}

// runNode checks and runs a node through the operator table.
func runNode(t *testing.T, n *Node, in ...*Tensor) ([]*Tensor, error) {
	t.Helper()
	op, ok := opTable()[n.Proto.GetOpType()]
	if !ok {
		t.Fatalf("operator %s is not registered", n.Proto.GetOpType())
	}
	if op.Check != nil {
		if err := op.Check(n); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	return op.Run(n, in)
}

func mustRun(t *testing.T, n *Node, in ...*Tensor) []*Tensor {
	t.Helper()
	out, err := runNode(t, n, in...)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, o := range out {
		if err := o.Validate(); err != nil {
			t.Fatalf("output: %v", err)
		}
	}
	return out
}

func seq(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(i)
	}
	return s
}

func randFloats(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

func assertShape(t *testing.T, got, want []int) {
	t.Helper()
	if !qSameShape(got, want) {
		t.Fatalf("shape %s, want %s", ShapeString(got), ShapeString(want))
	}
}

func assertClose(t *testing.T, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d values, want %d", len(got), len(want))
	}
	for i := range got {
		g, w := float64(got[i]), float64(want[i])
		if math.IsNaN(g) != math.IsNaN(w) || math.Abs(g-w) > tol*(1+math.Abs(w)) {
			t.Fatalf("value %d: got %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
}

// compareTensors compares as the ONNX backend tests do: float32 within
// rtol 1e-3 and atol 1e-7, integers exactly.
func compareTensors(got, want *Tensor) error {
	if got == nil {
		return fmt.Errorf("missing")
	}
	if got.DType != want.DType || !qSameShape(got.Shape, want.Shape) {
		return fmt.Errorf("got %s %s, want %s %s", got.DType, ShapeString(got.Shape), want.DType, ShapeString(want.Shape))
	}
	for i := 0; i < want.Len(); i++ {
		switch want.DType {
		case Float32:
			g, w := float64(got.F32[i]), float64(want.F32[i])
			if math.IsNaN(g) != math.IsNaN(w) || math.Abs(g-w) > 1e-7+1e-3*math.Abs(w) {
				return fmt.Errorf("element %d: got %v, want %v", i, g, w)
			}
		case Uint8:
			if got.U8[i] != want.U8[i] {
				return fmt.Errorf("element %d: got %d, want %d", i, got.U8[i], want.U8[i])
			}
		case Int8:
			if got.I8[i] != want.I8[i] {
				return fmt.Errorf("element %d: got %d, want %d", i, got.I8[i], want.I8[i])
			}
		case Int32:
			if got.I32[i] != want.I32[i] {
				return fmt.Errorf("element %d: got %d, want %d", i, got.I32[i], want.I32[i])
			}
		case Int64:
			if got.I64[i] != want.I64[i] {
				return fmt.Errorf("element %d: got %d, want %d", i, got.I64[i], want.I64[i])
			}
		default:
			return fmt.Errorf("cannot compare %s", want.DType)
		}
	}
	return nil
}

func TestConvHandComputed(t *testing.T) {
	x9 := FromFloat32(seq(9), 1, 1, 3, 3) // 0..8
	ones := FromFloat32([]float32{1, 1, 1, 1}, 1, 1, 2, 2)
	tests := []struct {
		name  string
		attrs []*onnxpb.AttributeProto
		in    []*Tensor
		shape []int
		want  []float32
	}{
		{"valid 2x2", nil, []*Tensor{x9, ones}, []int{1, 1, 2, 2}, []float32{8, 12, 20, 24}},
		{"bias", nil, []*Tensor{x9, ones, FromFloat32([]float32{10}, 1)}, []int{1, 1, 2, 2}, []float32{18, 22, 30, 34}},
		{"pads and strides", []*onnxpb.AttributeProto{onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInts("strides", 2, 2)},
			[]*Tensor{x9, ones}, []int{1, 1, 2, 2}, []float32{0, 1 + 2, 3 + 6, 4 + 5 + 7 + 8}},
		{"asymmetric pads", []*onnxpb.AttributeProto{onnx.AttrInts("pads", 0, 0, 1, 1)},
			[]*Tensor{x9, ones}, []int{1, 1, 3, 3}, []float32{8, 12, 7, 20, 24, 13, 13, 15, 8}},
		{"dilation", []*onnxpb.AttributeProto{onnx.AttrInts("dilations", 2, 2)},
			[]*Tensor{x9, ones}, []int{1, 1, 1, 1}, []float32{0 + 2 + 6 + 8}},
		{"same upper", []*onnxpb.AttributeProto{onnx.AttrString("auto_pad", "SAME_UPPER")},
			[]*Tensor{x9, ones}, []int{1, 1, 3, 3}, []float32{8, 12, 7, 20, 24, 13, 13, 15, 8}},
		{"same lower", []*onnxpb.AttributeProto{onnx.AttrString("auto_pad", "SAME_LOWER")},
			[]*Tensor{x9, ones}, []int{1, 1, 3, 3}, []float32{0, 1, 3, 3, 8, 12, 9, 20, 24}},
		{"depthwise", []*onnxpb.AttributeProto{onnx.AttrInt("group", 2)},
			[]*Tensor{FromFloat32(append(seq(4), 1, 1, 1, 1), 1, 2, 2, 2), FromFloat32([]float32{1, 0, 0, 1, 2, 2, 2, 2}, 2, 1, 2, 2)},
			[]int{1, 2, 1, 1}, []float32{0 + 3, 8}},
		{"1-D", []*onnxpb.AttributeProto{onnx.AttrInts("pads", 1, 0)},
			[]*Tensor{FromFloat32([]float32{1, 2, 3}, 1, 1, 3), FromFloat32([]float32{1, 10}, 1, 1, 2)}, []int{1, 1, 3}, []float32{10, 21, 32}},
		{"1x1 two outputs", nil,
			[]*Tensor{FromFloat32([]float32{1, 2, 3, 4}, 1, 2, 1, 2), FromFloat32([]float32{1, 1, 2, -1}, 2, 2, 1, 1)}, []int{1, 2, 1, 2}, []float32{4, 6, -1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := mustRun(t, testNode("Conv", len(tt.in), 1, tt.attrs...), tt.in...)
			assertShape(t, out[0].Shape, tt.shape)
			assertClose(t, out[0].F32, tt.want, 1e-6)
		})
	}
}

// naiveConv is a direct 1-D or 2-D convolution with explicit pads.
func naiveConv(x, w []float32, b []float32, xs, ws []int, group int, strides, dil, pads []int) ([]float32, []int) {
	r := len(xs) - 2
	N, C, M := xs[0], xs[1], ws[0]
	Cg, Mg := C/group, M/group
	in, k := xs[2:], ws[2:]
	out := make([]int, r)
	for i := 0; i < r; i++ {
		out[i] = (in[i]+pads[i]+pads[i+r]-dil[i]*(k[i]-1)-1)/strides[i] + 1
	}
	// Treat 1-D as 2-D with height 1.
	H, W, kH, kW, oH, oW := 1, in[0], 1, k[0], 1, out[0]
	sH, sW, dH, dW, pT, pL := 1, strides[0], 1, dil[0], 0, pads[0]
	if r == 2 {
		H, W, kH, kW, oH, oW = in[0], in[1], k[0], k[1], out[0], out[1]
		sH, sW, dH, dW, pT, pL = strides[0], strides[1], dil[0], dil[1], pads[0], pads[1]
	}
	y := make([]float32, N*M*oH*oW)
	for n := 0; n < N; n++ {
		for m := 0; m < M; m++ {
			g := m / Mg
			for oh := 0; oh < oH; oh++ {
				for ow := 0; ow < oW; ow++ {
					var s float64
					if b != nil {
						s = float64(b[m])
					}
					for c := 0; c < Cg; c++ {
						for i := 0; i < kH; i++ {
							for j := 0; j < kW; j++ {
								ih, iw := oh*sH-pT+i*dH, ow*sW-pL+j*dW
								if ih < 0 || ih >= H || iw < 0 || iw >= W {
									continue
								}
								s += float64(x[((n*C+g*Cg+c)*H+ih)*W+iw]) * float64(w[((m*Cg+c)*kH+i)*kW+j])
							}
						}
					}
					y[((n*M+m)*oH+oh)*oW+ow] = float32(s)
				}
			}
		}
	}
	return y, append([]int{N, M}, out...)
}

func TestConvMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 300; iter++ {
		rank := 1 + r.IntN(2)
		group := 1 + r.IntN(3)
		N, Cg, Mg := 1+r.IntN(2), 1+r.IntN(3), 1+r.IntN(3)
		if r.IntN(4) == 0 { // depthwise
			Cg, Mg = 1, 1
			group = 1 + r.IntN(4)
		}
		C, M := Cg*group, Mg*group
		xs, ws := []int{N, C}, []int{M, Cg}
		strides, dil, pads := make([]int, rank), make([]int, rank), make([]int, 2*rank)
		var attrs []*onnxpb.AttributeProto
		var s64, d64, p64, k64 []int64
		for i := 0; i < rank; i++ {
			k := 1 + r.IntN(4)
			strides[i], dil[i] = 1+r.IntN(3), 1+r.IntN(2)
			pads[i], pads[i+rank] = r.IntN(k), r.IntN(k)
			ext := dil[i]*(k-1) + 1
			xs = append(xs, max(ext, 1)+r.IntN(9))
			ws = append(ws, k)
			s64, d64, k64 = append(s64, int64(strides[i])), append(d64, int64(dil[i])), append(k64, int64(k))
		}
		for _, p := range pads {
			p64 = append(p64, int64(p))
		}
		attrs = append(attrs, onnx.AttrInts("strides", s64...), onnx.AttrInts("dilations", d64...), onnx.AttrInts("pads", p64...), onnx.AttrInt("group", int64(group)))
		if r.IntN(2) == 0 {
			attrs = append(attrs, onnx.AttrInts("kernel_shape", k64...))
		}
		x, w := randFloats(r, Size(xs)), randFloats(r, Size(ws))
		var b []float32
		in := []*Tensor{FromFloat32(x, xs...), FromFloat32(w, ws...)}
		if r.IntN(2) == 0 {
			b = randFloats(r, M)
			in = append(in, FromFloat32(b, M))
		}
		want, wantShape := naiveConv(x, w, b, xs, ws, group, strides, dil, pads)
		out := mustRun(t, testNode("Conv", len(in), 1, attrs...), in...)
		assertShape(t, out[0].Shape, wantShape)
		assertClose(t, out[0].F32, want, 1e-4)
	}
}

func TestConvRunErrors(t *testing.T) {
	x := FromFloat32(seq(9), 1, 1, 3, 3)
	tests := []struct {
		name  string
		attrs []*onnxpb.AttributeProto
		in    []*Tensor
		want  string
	}{
		{"channels", nil, []*Tensor{x, FromFloat32(seq(8), 1, 2, 2, 2)}, "does not fit X shape"},
		{"rank", nil, []*Tensor{x, FromFloat32(seq(4), 1, 1, 4)}, "input W must be a float32 tensor of rank 4"},
		{"kernel_shape", []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 3, 3)}, []*Tensor{x, FromFloat32(seq(4), 1, 1, 2, 2)}, "kernel_shape"},
		{"bias", nil, []*Tensor{x, FromFloat32(seq(4), 1, 1, 2, 2), FromFloat32(seq(2), 2)}, "input B"},
		{"3-D", nil, []*Tensor{FromFloat32(seq(8), 1, 1, 2, 2, 2), FromFloat32(seq(8), 1, 1, 2, 2, 2)}, "1 or 2 spatial dimensions"},
		{"too large kernel", nil, []*Tensor{x, FromFloat32(seq(16), 1, 1, 4, 4)}, "exceeds"},
		{"int input", nil, []*Tensor{New(Int64, 1, 1, 3, 3), FromFloat32(seq(4), 1, 1, 2, 2)}, "type int64"},
		{"strides rank", []*onnxpb.AttributeProto{onnx.AttrInts("strides", 1)}, []*Tensor{x, FromFloat32(seq(4), 1, 1, 2, 2)}, "spatial dimensions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runNode(t, testNode("Conv", len(tt.in), 1, tt.attrs...), tt.in...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNNCheckRefuses(t *testing.T) {
	tests := []struct {
		name string
		node *Node
		want string
	}{
		{"conv auto_pad", testNode("Conv", 2, 1, onnx.AttrString("auto_pad", "SAME")), "auto_pad"},
		{"conv 3-D", testNode("Conv", 2, 1, onnx.AttrInts("kernel_shape", 1, 1, 1)), "only 1-D and 2-D"},
		{"conv group", testNode("Conv", 2, 1, onnx.AttrInt("group", 0)), "group"},
		{"conv inputs", testNode("Conv", 1, 1), "inputs"},
		{"conv pads odd", testNode("Conv", 2, 1, onnx.AttrInts("pads", 1, 1, 1)), "pads"},
		{"conv negative pads", testNode("Conv", 2, 1, onnx.AttrInts("pads", -1, 0)), "pads"},
		{"conv strides", testNode("Conv", 2, 1, onnx.AttrInts("strides", 0, 1)), "strides"},
		{"conv mismatch", testNode("Conv", 2, 1, onnx.AttrInts("strides", 1, 1), onnx.AttrInts("dilations", 1)), "dilations"},
		{"maxpool kernel_shape", testNode("MaxPool", 1, 1), "kernel_shape is required"},
		{"maxpool storage_order", testNode("MaxPool", 1, 1, onnx.AttrInts("kernel_shape", 2), onnx.AttrInt("storage_order", 2)), "storage_order"},
		{"maxpool ceil_mode", testNode("MaxPool", 1, 1, onnx.AttrInts("kernel_shape", 2), onnx.AttrInt("ceil_mode", 2)), "ceil_mode"},
		{"maxpool 3-D", testNode("MaxPool", 1, 1, onnx.AttrInts("kernel_shape", 2, 2, 2)), "only 1-D and 2-D"},
		{"averagepool dilations", testNode("AveragePool", 1, 1, onnx.AttrInts("kernel_shape", 2), onnx.AttrInts("dilations", 2)), "dilations"},
		{"averagepool count_include_pad", testNode("AveragePool", 1, 1, onnx.AttrInts("kernel_shape", 2), onnx.AttrInt("count_include_pad", 3)), "count_include_pad"},
		{"averagepool outputs", testNode("AveragePool", 1, 2, onnx.AttrInts("kernel_shape", 2)), "outputs"},
		{"batchnorm training_mode", testNode("BatchNormalization", 5, 1, onnx.AttrInt("training_mode", 1)), "training_mode"},
		{"batchnorm outputs", testNode("BatchNormalization", 5, 3), "inference mode"},
		{"batchnorm inputs", testNode("BatchNormalization", 3, 1), "inputs"},
		{"globalaveragepool inputs", testNode("GlobalAveragePool", 2, 1), "inputs"},
	}
	table := opTable()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := table[tt.node.Proto.GetOpType()].Check(tt.node)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestMaxPoolHandComputed(t *testing.T) {
	x := FromFloat32(seq(16), 1, 1, 4, 4)
	tests := []struct {
		name    string
		attrs   []*onnxpb.AttributeProto
		x       *Tensor
		shape   []int
		want    []float32
		indices []int64 // nil: no Indices output
	}{
		{"2x2 stride 2", []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2)}, x,
			[]int{1, 1, 2, 2}, []float32{5, 7, 13, 15}, []int64{5, 7, 13, 15}},
		{"column major indices", []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2), onnx.AttrInt("storage_order", 1)}, x,
			[]int{1, 1, 2, 2}, []float32{5, 7, 13, 15}, []int64{5, 13, 7, 15}},
		{"ceil", []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2), onnx.AttrInt("ceil_mode", 1)}, x,
			[]int{1, 1, 2, 2}, []float32{10, 11, 14, 15}, nil},
		{"pads", []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2), onnx.AttrInts("pads", 1, 1, 1, 1)}, x,
			[]int{1, 1, 3, 3}, []float32{0, 2, 3, 8, 10, 11, 12, 14, 15}, []int64{0, 2, 3, 8, 10, 11, 12, 14, 15}},
		{"negative values and padding", []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 2), onnx.AttrString("auto_pad", "SAME_UPPER")},
			FromFloat32([]float32{-3, -1, -2}, 1, 1, 3), []int{1, 1, 3}, []float32{-1, -1, -2}, []int64{1, 1, 2}},
		{"second plane indices", []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 2)},
			FromFloat32([]float32{1, 2, 4, 3}, 1, 2, 2), []int{1, 2, 1}, []float32{2, 4}, []int64{1, 2}},
		{"dilations", []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("dilations", 2, 2)}, x,
			[]int{1, 1, 2, 2}, []float32{10, 11, 14, 15}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nOut := 1
			if tt.indices != nil {
				nOut = 2
			}
			out := mustRun(t, testNode("MaxPool", 1, nOut, tt.attrs...), tt.x)
			if len(out) != nOut {
				t.Fatalf("%d outputs, want %d", len(out), nOut)
			}
			assertShape(t, out[0].Shape, tt.shape)
			assertClose(t, out[0].F32, tt.want, 0)
			if tt.indices != nil {
				assertShape(t, out[1].Shape, tt.shape)
				for i, v := range tt.indices {
					if out[1].I64[i] != v {
						t.Fatalf("indices %v, want %v", out[1].I64, tt.indices)
					}
				}
			}
		})
	}
}

func TestMaxPoolIntegers(t *testing.T) {
	u := &Tensor{DType: Uint8, Shape: []int{1, 1, 2, 2}, U8: []uint8{1, 200, 3, 4}}
	out := mustRun(t, testNode("MaxPool", 1, 1, onnx.AttrInts("kernel_shape", 2, 2)), u)
	if out[0].DType != Uint8 || out[0].U8[0] != 200 {
		t.Fatalf("uint8 max pool: %+v", out[0])
	}
	i8 := &Tensor{DType: Int8, Shape: []int{1, 1, 3}, I8: []int8{-100, -128, -7}}
	out = mustRun(t, testNode("MaxPool", 1, 1, onnx.AttrInts("kernel_shape", 2)), i8)
	if out[0].DType != Int8 || out[0].I8[0] != -100 || out[0].I8[1] != -7 {
		t.Fatalf("int8 max pool: %+v", out[0])
	}
}

func TestAveragePoolHandComputed(t *testing.T) {
	x := FromFloat32(seq(16), 1, 1, 4, 4)
	tests := []struct {
		name  string
		attrs []*onnxpb.AttributeProto
		x     *Tensor
		shape []int
		want  []float32
	}{
		{"2x2 stride 2", []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2)}, x,
			[]int{1, 1, 2, 2}, []float32{2.5, 4.5, 10.5, 12.5}},
		{"ceil", []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 3, 3), onnx.AttrInts("strides", 2, 2), onnx.AttrInt("ceil_mode", 1)}, x,
			[]int{1, 1, 2, 2}, []float32{5, 6.5, 11, 12.5}},
		{"pads exclude", []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 2), onnx.AttrInts("pads", 1, 1)},
			FromFloat32([]float32{2, 4}, 1, 1, 2), []int{1, 1, 3}, []float32{2, 3, 4}},
		{"pads include", []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 2), onnx.AttrInts("pads", 1, 1), onnx.AttrInt("count_include_pad", 1)},
			FromFloat32([]float32{2, 4}, 1, 1, 2), []int{1, 1, 3}, []float32{1, 3, 2}},
		{"same lower", []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 2), onnx.AttrString("auto_pad", "SAME_LOWER")},
			FromFloat32([]float32{2, 4, 6}, 1, 1, 3), []int{1, 1, 3}, []float32{2, 3, 5}},
		{"valid", []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 2), onnx.AttrString("auto_pad", "VALID"), onnx.AttrInts("strides", 2)},
			FromFloat32([]float32{2, 4, 6, 8, 10}, 1, 1, 5), []int{1, 1, 2}, []float32{3, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := mustRun(t, testNode("AveragePool", 1, 1, tt.attrs...), tt.x)
			assertShape(t, out[0].Shape, tt.shape)
			assertClose(t, out[0].F32, tt.want, 1e-6)
		})
	}
}

// naivePool pools a 2-D input with explicit pads; avg divides by the
// in-input count, or by the padded count when includePad.
func naivePool(x []float32, xs []int, k, s, d, pads []int, avg, includePad bool) ([]float32, []int) {
	N, C, H, W := xs[0], xs[1], xs[2], xs[3]
	oH := (H+pads[0]+pads[2]-d[0]*(k[0]-1)-1)/s[0] + 1
	oW := (W+pads[1]+pads[3]-d[1]*(k[1]-1)-1)/s[1] + 1
	y := make([]float32, 0, N*C*oH*oW)
	for p := 0; p < N*C; p++ {
		for oh := 0; oh < oH; oh++ {
			for ow := 0; ow < oW; ow++ {
				best, sum, cnt, total := float32(math.Inf(-1)), 0.0, 0, 0
				for i := 0; i < k[0]; i++ {
					for j := 0; j < k[1]; j++ {
						ih, iw := oh*s[0]-pads[0]+i*d[0], ow*s[1]-pads[1]+j*d[1]
						total++
						if ih < 0 || ih >= H || iw < 0 || iw >= W {
							continue
						}
						v := x[(p*H+ih)*W+iw]
						best = max(best, v)
						sum += float64(v)
						cnt++
					}
				}
				switch {
				case !avg:
					y = append(y, best)
				case includePad:
					y = append(y, float32(sum/float64(total)))
				default:
					y = append(y, float32(sum/float64(cnt)))
				}
			}
		}
	}
	return y, []int{N, C, oH, oW}
}

func TestPoolMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for iter := 0; iter < 300; iter++ {
		k := []int{1 + r.IntN(3), 1 + r.IntN(3)}
		s := []int{1 + r.IntN(3), 1 + r.IntN(3)}
		d := []int{1, 1}
		avg := r.IntN(2) == 0
		if !avg {
			d = []int{1 + r.IntN(2), 1 + r.IntN(2)}
		}
		pads := []int{r.IntN(k[0]), r.IntN(k[1]), r.IntN(k[0]), r.IntN(k[1])}
		xs := []int{1 + r.IntN(2), 1 + r.IntN(3), d[0]*(k[0]-1) + 1 + r.IntN(6), d[1]*(k[1]-1) + 1 + r.IntN(6)}
		includePad := avg && r.IntN(2) == 0
		x := randFloats(r, Size(xs))
		attrs := []*onnxpb.AttributeProto{
			onnx.AttrInts("kernel_shape", int64(k[0]), int64(k[1])),
			onnx.AttrInts("strides", int64(s[0]), int64(s[1])),
			onnx.AttrInts("pads", int64(pads[0]), int64(pads[1]), int64(pads[2]), int64(pads[3])),
		}
		op := "MaxPool"
		if avg {
			op = "AveragePool"
			if includePad {
				attrs = append(attrs, onnx.AttrInt("count_include_pad", 1))
			}
		} else {
			attrs = append(attrs, onnx.AttrInts("dilations", int64(d[0]), int64(d[1])))
		}
		want, shape := naivePool(x, xs, k, s, d, pads, avg, includePad)
		out := mustRun(t, testNode(op, 1, 1, attrs...), FromFloat32(x, xs...))
		assertShape(t, out[0].Shape, shape)
		assertClose(t, out[0].F32, want, 1e-5)
	}
}

func TestGlobalPools(t *testing.T) {
	x := FromFloat32([]float32{1, 2, 3, 4, -1, -2, -3, -4, 0, 0, 0, 8}, 1, 3, 2, 2)
	out := mustRun(t, testNode("GlobalAveragePool", 1, 1), x)
	assertShape(t, out[0].Shape, []int{1, 3, 1, 1})
	assertClose(t, out[0].F32, []float32{2.5, -2.5, 2}, 1e-6)
	out = mustRun(t, testNode("GlobalMaxPool", 1, 1), x)
	assertShape(t, out[0].Shape, []int{1, 3, 1, 1})
	assertClose(t, out[0].F32, []float32{4, -1, 8}, 0)
	out = mustRun(t, testNode("GlobalAveragePool", 1, 1), FromFloat32(seq(8), 1, 1, 2, 2, 2))
	assertShape(t, out[0].Shape, []int{1, 1, 1, 1, 1})
	assertClose(t, out[0].F32, []float32{3.5}, 1e-6)
	if _, err := runNode(t, testNode("GlobalAveragePool", 1, 1), FromFloat32(seq(4), 2, 2)); err == nil {
		t.Fatal("rank-2 input accepted")
	}
}

func TestBatchNormalization(t *testing.T) {
	x := FromFloat32([]float32{1, 2, 3, 4, 5, 6, 7, 8}, 2, 2, 2)
	scale := FromFloat32([]float32{1, 2}, 2)
	bias := FromFloat32([]float32{0, 1}, 2)
	mean := FromFloat32([]float32{1, 0}, 2)
	variance := FromFloat32([]float32{4, 1}, 2)
	n := testNode("BatchNormalization", 5, 1, onnx.AttrFloat("epsilon", 0))
	out := mustRun(t, n, x, scale, bias, mean, variance)
	assertShape(t, out[0].Shape, []int{2, 2, 2})
	// Channel 0: (x-1)/2; channel 1: 2x+1.
	assertClose(t, out[0].F32, []float32{0, 0.5, 7, 9, 2, 2.5, 15, 17}, 1e-6)

	// Default epsilon 1e-5.
	out = mustRun(t, testNode("BatchNormalization", 5, 1), FromFloat32([]float32{3}, 1, 1), FromFloat32([]float32{1}, 1),
		FromFloat32([]float32{0}, 1), FromFloat32([]float32{0}, 1), FromFloat32([]float32{0}, 1))
	assertClose(t, out[0].F32, []float32{float32(3 / math.Sqrt(1e-5))}, 1e-5)

	if _, err := runNode(t, n, x, FromFloat32([]float32{1}, 1), bias, mean, variance); err == nil || !strings.Contains(err.Error(), "scale") {
		t.Fatalf("error %v, want one naming scale", err)
	}
}

func BenchmarkConv(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	cases := []struct {
		name   string
		xs, ws []int
		attrs  []*onnxpb.AttributeProto
	}{
		{"1x8x28x28_k3x3x8x16_pad1", []int{1, 8, 28, 28}, []int{16, 8, 3, 3}, []*onnxpb.AttributeProto{onnx.AttrInts("pads", 1, 1, 1, 1)}},
		{"1x32x56x56_k3x3x32x64_pad1", []int{1, 32, 56, 56}, []int{64, 32, 3, 3}, []*onnxpb.AttributeProto{onnx.AttrInts("pads", 1, 1, 1, 1)}},
		{"1x64x28x28_k1x1x64x128", []int{1, 64, 28, 28}, []int{128, 64, 1, 1}, nil},
		{"1x32x56x56_depthwise3x3", []int{1, 32, 56, 56}, []int{32, 1, 3, 3}, []*onnxpb.AttributeProto{onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInt("group", 32)}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			n := testNode("Conv", 3, 1, c.attrs...)
			x, w := FromFloat32(randFloats(r, Size(c.xs)), c.xs...), FromFloat32(randFloats(r, Size(c.ws)), c.ws...)
			bias := FromFloat32(randFloats(r, c.ws[0]), c.ws[0])
			in := []*Tensor{x, w, bias}
			out, err := runConv(n, in)
			if err != nil {
				b.Fatal(err)
			}
			flops := 2 * float64(out[0].Len()) * float64(Size(c.ws[1:]))
			b.ResetTimer()
			for b.Loop() {
				if _, err := runConv(n, in); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// poolSpecials are values that test the tie and NaN rules of max pooling.
var poolSpecials = []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, float32(math.Copysign(0, -1))}

// TestMaxPoolFastMatchesGeneric compares nnMaxPoolF32, with each kernel,
// bit for bit with the generic nnMaxPool on random geometries (with and
// without padding, ceil mode, the 2x2 stride 2 of the model zoo) wide
// enough for several groups of eight outputs. Values are small integers,
// for ties, with NaN, infinities and signed zeros among them; the input
// has no slack after it, so the last rows take the Go path.
func TestMaxPoolFastMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	n := testNode("MaxPool", 1, 1)
	for _, simd := range sgemmPaths() {
		for iter := range 500 {
			kH, kW, sH, sW := 1+r.IntN(4), 1+r.IntN(4), 1+r.IntN(3), 1+r.IntN(3)
			if iter%3 == 0 {
				kH, kW, sH, sW = 2, 2, 2, 2
			}
			var pads []int64
			if iter%2 == 1 {
				pads = []int64{int64(r.IntN(kH)), int64(r.IntN(kW)), int64(r.IntN(kH)), int64(r.IntN(kW))}
			}
			a := nnWindowAttrs{autoPad: "NOTSET", strides: []int64{int64(sH), int64(sW)}, pads: pads, ceil: r.IntN(4) == 0}
			inH, inW := kH+r.IntN(10), kW+r.IntN(40)
			g, err := nnResolve(n, &a, []int{inH, inW}, []int{kH, kW})
			if err != nil {
				t.Fatal(err)
			}
			planes := 1 + r.IntN(3)
			x := make([]float32, planes*inH*inW)
			for i := range x {
				if r.IntN(8) == 0 {
					x[i] = poolSpecials[r.IntN(len(poolSpecials))]
				} else {
					x[i] = float32(r.IntN(7) - 3)
				}
			}
			want := make([]float32, planes*g.outH*g.outW)
			got := make([]float32, len(want))
			nnMaxPool(&g, planes, x, want, nil, false, float32(math.Inf(-1)))
			nnMaxPoolF32(simd, &g, planes, x, got)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s: %d planes of %dx%d, kernel %dx%d, strides %dx%d, pads %v, ceil %v: output %d is %v, want %v",
						pathName(simd), planes, inH, inW, kH, kW, sH, sW, pads, a.ceil, i, got[i], want[i])
				}
			}
		}
	}
}

// TestIm2colSameMatchesRows compares the shifted-copy im2col of stride-1
// convolutions whose rows keep their width with the row by row one, on
// random kernels, dilations and pads, including kernels wider than the
// input.
func TestIm2colSameMatchesRows(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	n := testNode("Conv", 2, 1)
	for range 300 {
		kH, kW, dH, dW := 1+r.IntN(4), 1+r.IntN(4), 1+r.IntN(2), 1+r.IntN(2)
		totalW := dW * (kW - 1)
		padL := r.IntN(totalW + 1)
		padT, padB := r.IntN(kH+1), r.IntN(kH+1)
		inH, inW := 1+r.IntN(9), 1+r.IntN(12)
		a := nnWindowAttrs{autoPad: "NOTSET", dilations: []int64{int64(dH), int64(dW)},
			pads: []int64{int64(padT), int64(padL), int64(padB), int64(totalW - padL)}}
		g, err := nnResolve(n, &a, []int{inH, inW}, []int{kH, kW})
		if err != nil {
			continue // kernel taller than the padded input
		}
		if g.outW != g.inW {
			t.Fatalf("output width %d, want %d", g.outW, g.inW)
		}
		Cg := 1 + r.IntN(3)
		x := randFloats(r, Cg*inH*inW)
		size := Cg * kH * kW * g.outH * g.outW
		want, got := make([]float32, size), make([]float32, size)
		for i := range got {
			got[i] = float32(math.NaN()) // every element must be written
		}
		nnIm2colRows(&g, x, Cg, want, 0)
		nnIm2colSame(&g, x, Cg, got, 0)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%d channels of %dx%d, kernel %dx%d, dilations %dx%d, pads %v: element %d is %v, want %v",
					Cg, inH, inW, kH, kW, dH, dW, a.pads, i, got[i], want[i])
			}
		}
	}
}

// TestConvPreparedMatchesNaive runs the kernel Load gives Conv nodes
// (im2col buffers from a pool, batches split between goroutines) twice
// on each of a few convolutions large enough to be split, and compares
// it with the direct convolution.
func TestConvPreparedMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	cases := []struct {
		name               string
		xs, ws             []int
		group              int
		strides, dil, pads []int
	}{
		{"zoo conv2 3x3 pad 1", []int{6, 8, 14, 14}, []int{16, 8, 3, 3}, 1, []int{1, 1}, []int{1, 1}, []int{1, 1, 1, 1}},
		{"1x1", []int{6, 16, 20, 20}, []int{32, 16, 1, 1}, 1, []int{1, 1}, []int{1, 1}, []int{0, 0, 0, 0}},
		{"grouped strided", []int{4, 8, 31, 29}, []int{12, 4, 3, 2}, 2, []int{2, 1}, []int{1, 2}, []int{1, 0, 2, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			attrs := []*onnxpb.AttributeProto{
				onnx.AttrInts("strides", int64(c.strides[0]), int64(c.strides[1])),
				onnx.AttrInts("dilations", int64(c.dil[0]), int64(c.dil[1])),
				onnx.AttrInts("pads", int64(c.pads[0]), int64(c.pads[1]), int64(c.pads[2]), int64(c.pads[3])),
				onnx.AttrInt("group", int64(c.group)),
			}
			n := testNode("Conv", 3, 1, attrs...)
			x, w, b := randFloats(r, Size(c.xs)), randFloats(r, Size(c.ws)), randFloats(r, c.ws[0])
			in := []*Tensor{FromFloat32(x, c.xs...), FromFloat32(w, c.ws...), FromFloat32(b, c.ws[0])}
			want, shape := naiveConv(x, w, b, c.xs, c.ws, c.group, c.strides, c.dil, c.pads)
			kernel := prepareConv(n, []*Tensor{nil, in[1], in[2]})
			for range 2 {
				out, err := kernel(n, in)
				if err != nil {
					t.Fatal(err)
				}
				assertShape(t, out[0].Shape, shape)
				assertClose(t, out[0].F32, want, 1e-4)
			}
		})
	}
}

// refRun runs the nodes of mp one at a time through the operator table,
// without Load's planning, and returns every value by name.
func refRun(t *testing.T, mp *onnxpb.ModelProto, feed map[string]*Tensor) map[string]*Tensor {
	t.Helper()
	vals := map[string]*Tensor{}
	for _, p := range mp.GetGraph().GetInitializer() {
		v, err := TensorFromProto(p)
		if err != nil {
			t.Fatal(err)
		}
		vals[p.GetName()] = v
	}
	for k, v := range feed {
		vals[k] = v
	}
	table := opTable()
	for _, p := range mp.GetGraph().GetNode() {
		n := &Node{Proto: p, Opset: 13}
		var in []*Tensor
		for _, name := range p.GetInput() {
			in = append(in, vals[name])
		}
		out, err := table[p.GetOpType()].Run(n, in)
		if err != nil {
			t.Fatal(err)
		}
		for i, name := range p.GetOutput() {
			vals[name] = out[i]
		}
	}
	return vals
}

// TestConvFusion loads graphs where a Relu, a Clip and a MaxPool follow a Conv,
// checks how many steps are left once Load has merged those it may, and
// compares two runs of each, bit for bit, with the operators run one at a
// time.
func TestConvFusion(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	pool := []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2)}
	conv := func(group int64) []*onnxpb.AttributeProto {
		return []*onnxpb.AttributeProto{onnx.AttrInts("pads", 1, 1, 1, 1), onnx.AttrInt("group", group)}
	}
	type node struct {
		op      string
		in, out []string
		attrs   []*onnxpb.AttributeProto
	}
	tests := []struct {
		name    string
		x       []int // N, C, H, W; the Conv has 2C filters of 3x3
		group   int64
		nodes   []node
		outputs []string
		steps   int
	}{
		{"conv relu pool", []int{3, 4, 12, 10}, 2, []node{
			{"Conv", []string{"x", "w", "b"}, []string{"c"}, nil},
			{"Relu", []string{"c"}, []string{"r"}, nil},
			{"MaxPool", []string{"r"}, []string{"p"}, pool}}, []string{"p"}, 1},
		{"conv relu pool, split between goroutines", []int{8, 8, 28, 28}, 1, []node{
			{"Conv", []string{"x", "w", "b"}, []string{"c"}, nil},
			{"Relu", []string{"c"}, []string{"r"}, nil},
			{"MaxPool", []string{"r"}, []string{"p"}, pool}}, []string{"p"}, 1},
		{"conv relu", []int{2, 3, 9, 9}, 1, []node{
			{"Conv", []string{"x", "w", "b"}, []string{"c"}, nil},
			{"Relu", []string{"c"}, []string{"r"}, nil}}, []string{"r"}, 1},
		{"conv clip (ReLU6 as PyTorch exports it)", []int{2, 3, 9, 9}, 1, []node{
			{"Conv", []string{"x", "w", "b"}, []string{"c"}, nil},
			{"Clip", []string{"c", "lo", "hi"}, []string{"k"}, nil}}, []string{"k"}, 1},
		{"conv clip with a max only, then a pool", []int{3, 4, 12, 10}, 2, []node{
			{"Conv", []string{"x", "w", "b"}, []string{"c"}, nil},
			{"Clip", []string{"c", "", "hi"}, []string{"k"}, nil},
			{"MaxPool", []string{"k"}, []string{"p"}, pool}}, []string{"p"}, 1},
		{"conv relu clip, split between goroutines", []int{8, 8, 28, 28}, 1, []node{
			{"Conv", []string{"x", "w", "b"}, []string{"c"}, nil},
			{"Relu", []string{"c"}, []string{"r"}, nil},
			{"Clip", []string{"r", "lo", "hi"}, []string{"k"}, nil}}, []string{"k"}, 1},
		{"clip bounds not known at load", []int{2, 2, 8, 8}, 1, []node{
			{"Conv", []string{"x", "w", "b"}, []string{"c"}, nil},
			{"ReduceMin", []string{"x"}, []string{"m"}, []*onnxpb.AttributeProto{onnx.AttrInt("keepdims", 0)}},
			{"Clip", []string{"c", "m", "hi"}, []string{"k"}, nil}}, []string{"k"}, 3},
		{"conv and a padded, dilated pool", []int{2, 2, 11, 13}, 1, []node{
			{"Conv", []string{"x", "w", "b"}, []string{"c"}, nil},
			{"MaxPool", []string{"c"}, []string{"p"}, []*onnxpb.AttributeProto{onnx.AttrInts("kernel_shape", 3, 2),
				onnx.AttrInts("pads", 1, 0, 1, 1), onnx.AttrInts("dilations", 2, 1), onnx.AttrInts("strides", 1, 2)}}}, []string{"p"}, 1},
		{"relu read twice", []int{2, 2, 8, 8}, 1, []node{
			{"Conv", []string{"x", "w", "b"}, []string{"c"}, nil},
			{"Relu", []string{"c"}, []string{"r"}, nil},
			{"MaxPool", []string{"r"}, []string{"p"}, pool},
			{"Sigmoid", []string{"r"}, []string{"s"}, nil}}, []string{"p", "s"}, 3},
		{"conv output is a graph output", []int{2, 2, 8, 8}, 1, []node{
			{"Conv", []string{"x", "w", "b"}, []string{"c"}, nil},
			{"Relu", []string{"c"}, []string{"r"}, nil}}, []string{"c", "r"}, 2},
		{"pool with indices", []int{2, 2, 8, 8}, 1, []node{
			{"Conv", []string{"x", "w", "b"}, []string{"c"}, nil},
			{"Relu", []string{"c"}, []string{"r"}, nil},
			{"MaxPool", []string{"r"}, []string{"p", "i"}, pool}}, []string{"p", "i"}, 2},
		{"other nodes in between", []int{2, 2, 8, 8}, 1, []node{
			{"Conv", []string{"x", "w", "b"}, []string{"c"}, nil},
			{"Sigmoid", []string{"x"}, []string{"s"}, nil},
			{"Relu", []string{"c"}, []string{"r"}, nil},
			{"Tanh", []string{"s"}, []string{"u"}, nil},
			{"MaxPool", []string{"r"}, []string{"p"}, pool}}, []string{"p", "u"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			N, C := tt.x[0], tt.x[1]
			M, Cg := 2*C, C/int(tt.group)
			x, w, b := randFloats(r, Size(tt.x)), randFloats(r, M*Cg*9), randFloats(r, M)
			bd := onnx.NewBuilder("fusion", 13).
				Input("x", onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(int64(C)), onnx.D(int64(tt.x[2])), onnx.D(int64(tt.x[3]))).
				Float32("w", w, int64(M), int64(Cg), 3, 3).
				Float32("b", b, int64(M)).
				Float32("lo", []float32{-0.05}).
				Float32("hi", []float32{0.3})
			for _, nd := range tt.nodes {
				attrs := nd.attrs
				if nd.op == "Conv" {
					attrs = conv(tt.group)
				}
				bd.Node(nd.op, "", nd.in, nd.out, attrs...)
			}
			for _, o := range tt.outputs {
				dt := onnxpb.TensorProto_FLOAT
				if o == "i" {
					dt = onnxpb.TensorProto_INT64
				}
				bd.Output(o, dt)
			}
			mp, err := bd.Model()
			if err != nil {
				t.Fatal(err)
			}
			m, err := Load(marshal(t, mp))
			if err != nil {
				t.Fatal(err)
			}
			if len(m.steps) != tt.steps {
				t.Errorf("%d steps after Load, want %d", len(m.steps), tt.steps)
			}
			feed := map[string]*Tensor{"x": FromFloat32(x, tt.x...)}
			want := refRun(t, mp, feed)
			for range 2 {
				got, err := m.Run(context.Background(), feed)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range tt.outputs {
					if err := sameTensor(got[o], want[o], 0); err != nil {
						t.Fatalf("output %s (batch %d): %v", o, N, err)
					}
				}
			}
		})
	}
}
