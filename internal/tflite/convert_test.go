package tflite

import (
	"slices"
	"strings"
	"testing"

	flatbuffers "github.com/google/flatbuffers/go"
	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
	fb "outpost.dev/outpost/internal/tflite/schema/tflite"
)

// opsOf returns the builtin codes of b's operators, in order, checking
// that each operator code carries both fields alike.
func opsOf(t *testing.T, b []byte) (*fb.Model, []fb.BuiltinOperator) {
	t.Helper()
	if len(b) < 8 || string(b[4:8]) != "TFL3" {
		t.Fatalf("file identifier %q, want TFL3", b[4:8])
	}
	m := fb.GetRootAsModel(b, 0)
	if m.Version() != 3 || m.SubgraphsLength() != 1 {
		t.Fatalf("version %d with %d subgraphs, want 3 and 1", m.Version(), m.SubgraphsLength())
	}
	var buf0 fb.Buffer
	if !m.Buffers(&buf0, 0) || buf0.DataLength() != 0 {
		t.Fatal("buffer 0 is not the empty sentinel")
	}
	var sg fb.SubGraph
	m.Subgraphs(&sg, 0)
	var out []fb.BuiltinOperator
	for i := range sg.OperatorsLength() {
		var op fb.Operator
		sg.Operators(&op, i)
		var code fb.OperatorCode
		if !m.OperatorCodes(&code, int(op.OpcodeIndex())) {
			t.Fatalf("operator %d: opcode index %d out of range", i, op.OpcodeIndex())
		}
		if fb.BuiltinOperator(code.DeprecatedBuiltinCode()) != code.BuiltinCode() {
			t.Fatalf("operator %d: deprecated_builtin_code %d, builtin_code %d", i, code.DeprecatedBuiltinCode(), code.BuiltinCode())
		}
		out = append(out, code.BuiltinCode())
	}
	return m, out
}

func tensorOf(m *fb.Model, i int32) *fb.Tensor {
	var sg fb.SubGraph
	m.Subgraphs(&sg, 0)
	var t fb.Tensor
	sg.Tensors(&t, int(i))
	return &t
}

func shapeOf(t *fb.Tensor) []int32 {
	var s []int32
	for i := range t.ShapeLength() {
		s = append(s, t.Shape(i))
	}
	return s
}

// The wire values the schema subset must share with TensorFlow Lite's
// schema (BuiltinOperator ordinals, BuiltinOptions union indices,
// TensorType values), as TensorFlow's schema.fbs numbers them.
func TestSchemaValuesMatchTensorFlow(t *testing.T) {
	ops := map[fb.BuiltinOperator]int{fb.BuiltinOperatorADD: 0, fb.BuiltinOperatorAVERAGE_POOL_2D: 1, fb.BuiltinOperatorCONV_2D: 3,
		fb.BuiltinOperatorDEPTHWISE_CONV_2D: 4, fb.BuiltinOperatorDEQUANTIZE: 6, fb.BuiltinOperatorFULLY_CONNECTED: 9,
		fb.BuiltinOperatorMAX_POOL_2D: 17, fb.BuiltinOperatorRELU: 19, fb.BuiltinOperatorRESHAPE: 22, fb.BuiltinOperatorSOFTMAX: 25,
		fb.BuiltinOperatorTRANSPOSE: 39, fb.BuiltinOperatorQUANTIZE: 114}
	for op, want := range ops {
		if int(op) != want {
			t.Errorf("%s = %d, want %d", op, op, want)
		}
	}
	opts := map[fb.BuiltinOptions]int{fb.BuiltinOptionsConv2DOptions: 1, fb.BuiltinOptionsDepthwiseConv2DOptions: 2,
		fb.BuiltinOptionsPool2DOptions: 5, fb.BuiltinOptionsFullyConnectedOptions: 8, fb.BuiltinOptionsSoftmaxOptions: 9,
		fb.BuiltinOptionsAddOptions: 11, fb.BuiltinOptionsReshapeOptions: 17, fb.BuiltinOptionsTransposeOptions: 26,
		fb.BuiltinOptionsDequantizeOptions: 38, fb.BuiltinOptionsQuantizeOptions: 89}
	for o, want := range opts {
		if int(o) != want {
			t.Errorf("%s = %d, want %d", o, o, want)
		}
	}
	if fb.TensorTypeFLOAT32 != 0 || fb.TensorTypeINT32 != 2 || fb.TensorTypeINT8 != 9 {
		t.Errorf("TensorType values differ from TensorFlow's")
	}
}

// The zoo's CNN becomes NHWC convolutions with OHWI weights, pools, a
// reshape and a fully-connected layer; the MLP two fully-connected
// layers. ReLUs are fused, and the model is left as it was.
func TestConvertZooFloat(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []fb.BuiltinOperator
		in   []int32
	}{
		{"mlp", []fb.BuiltinOperator{fb.BuiltinOperatorFULLY_CONNECTED, fb.BuiltinOperatorFULLY_CONNECTED, fb.BuiltinOperatorSOFTMAX}, []int32{4, 784}},
		{"cnn", []fb.BuiltinOperator{fb.BuiltinOperatorCONV_2D, fb.BuiltinOperatorMAX_POOL_2D, fb.BuiltinOperatorCONV_2D,
			fb.BuiltinOperatorMAX_POOL_2D, fb.BuiltinOperatorRESHAPE, fb.BuiltinOperatorFULLY_CONNECTED, fb.BuiltinOperatorSOFTMAX}, []int32{4, 28, 28, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := zooModel(t, tc.name)
			before := proto.Clone(m)
			b, err := Convert(m, Options{Batch: 4})
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(m, before) {
				t.Fatal("Convert changed its input")
			}
			fm, ops := opsOf(t, b)
			if !slices.Equal(ops, tc.ops) {
				t.Fatalf("operators %v, want %v", ops, tc.ops)
			}
			var sg fb.SubGraph
			fm.Subgraphs(&sg, 0)
			if s := shapeOf(tensorOf(fm, sg.Inputs(0))); !slices.Equal(s, tc.in) {
				t.Errorf("input shape %v, want %v", s, tc.in)
			}
			if s := shapeOf(tensorOf(fm, sg.Outputs(0))); !slices.Equal(s, []int32{4, 10}) {
				t.Errorf("output shape %v, want [4 10]", s)
			}
			var op fb.Operator
			sg.Operators(&op, 0)
			w := tensorOf(fm, op.Inputs(1))
			if tc.name == "cnn" {
				if s := shapeOf(w); !slices.Equal(s, []int32{8, 3, 3, 1}) {
					t.Errorf("first conv weight %v, want OHWI [8 3 3 1]", s)
				}
				var tab flatbuffers.Table
				if !op.BuiltinOptions(&tab) || op.BuiltinOptionsType() != fb.BuiltinOptionsConv2DOptions {
					t.Fatal("conv without Conv2DOptions")
				}
				var o fb.Conv2DOptions
				o.Init(tab.Bytes, tab.Pos)
				if o.Padding() != fb.PaddingSAME || o.StrideW() != 1 || o.FusedActivationFunction() != fb.ActivationFunctionTypeRELU {
					t.Errorf("conv options: padding %v, stride %d, activation %v", o.Padding(), o.StrideW(), o.FusedActivationFunction())
				}
			} else if s := shapeOf(w); !slices.Equal(s, []int32{256, 784}) {
				t.Errorf("first weight %v, want [256 784]", s)
			}
		})
	}
}

// A QDQ model from internal/compress becomes int8: QUANTIZE of the input,
// per-channel int8 weights (quantized_dimension 0) and int32 biases, and
// float32 for the last layer (whose output scale the model does not
// give) after a DEQUANTIZE.
func TestConvertZooInt8(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []fb.BuiltinOperator
	}{
		{"mlp", []fb.BuiltinOperator{fb.BuiltinOperatorQUANTIZE, fb.BuiltinOperatorRESHAPE, fb.BuiltinOperatorCONV_2D, fb.BuiltinOperatorRESHAPE,
			fb.BuiltinOperatorDEQUANTIZE, fb.BuiltinOperatorFULLY_CONNECTED, fb.BuiltinOperatorSOFTMAX}},
		{"cnn", []fb.BuiltinOperator{fb.BuiltinOperatorQUANTIZE, fb.BuiltinOperatorCONV_2D, fb.BuiltinOperatorMAX_POOL_2D, fb.BuiltinOperatorCONV_2D,
			fb.BuiltinOperatorMAX_POOL_2D, fb.BuiltinOperatorRESHAPE, fb.BuiltinOperatorDEQUANTIZE, fb.BuiltinOperatorFULLY_CONNECTED,
			fb.BuiltinOperatorSOFTMAX}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Convert(int8Model(t, tc.name), Options{})
			if err != nil {
				t.Fatal(err)
			}
			fm, ops := opsOf(t, b)
			if !slices.Equal(ops, tc.ops) {
				t.Fatalf("operators %v, want %v", ops, tc.ops)
			}
			var sg fb.SubGraph
			fm.Subgraphs(&sg, 0)
			conv := slices.Index(ops, fb.BuiltinOperatorCONV_2D)
			var op fb.Operator
			sg.Operators(&op, conv)
			x, w, bias := tensorOf(fm, op.Inputs(0)), tensorOf(fm, op.Inputs(1)), tensorOf(fm, op.Inputs(2))
			if x.Type() != fb.TensorTypeINT8 || w.Type() != fb.TensorTypeINT8 || bias.Type() != fb.TensorTypeINT32 {
				t.Fatalf("types %v, %v, %v, want INT8, INT8, INT32", x.Type(), w.Type(), bias.Type())
			}
			q := w.Quantization(nil)
			if q == nil || q.ScaleLength() != int(w.Shape(0)) || q.ZeroPointLength() != q.ScaleLength() || q.QuantizedDimension() != 0 {
				t.Fatalf("weight quantization: %d scales for %d channels", q.ScaleLength(), w.Shape(0))
			}
			xq, bq := x.Quantization(nil), bias.Quantization(nil)
			for c := range q.ScaleLength() {
				want := xq.Scale(0) * q.Scale(c)
				if d := bq.Scale(c) - want; d > 1e-6*want || d < -1e-6*want {
					t.Fatalf("bias scale %d is %g, want input scale x weight scale %g", c, bq.Scale(c), want)
				}
			}
			if onnxSize, _ := onnx.Marshal(int8Model(t, tc.name)); tc.name == "mlp" && len(b) > len(zooBytes(t, tc.name))/3 {
				t.Errorf("int8 MLP of %d bytes (ONNX QDQ %d), want a third of the float one's %d at most", len(b), len(onnxSize), len(zooBytes(t, tc.name)))
			}
		})
	}
}

func zooBytes(t *testing.T, name string) []byte {
	b, err := onnx.Marshal(zooModel(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// edit returns the zoo model name with f applied.
func edit(t *testing.T, name string, f func(g *onnxpb.GraphProto)) *onnxpb.ModelProto {
	m := zooModel(t, name)
	f(m.Graph)
	return m
}

func attr(n *onnxpb.NodeProto, a *onnxpb.AttributeProto) {
	n.Attribute = slices.DeleteFunc(n.Attribute, func(x *onnxpb.AttributeProto) bool { return x.GetName() == a.GetName() })
	n.Attribute = append(n.Attribute, a)
}

// What Convert cannot express is refused with an error naming the node
// and its operator (or the input or initializer at fault).
func TestConvertRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		model func(t *testing.T) *onnxpb.ModelProto
		want  string
	}{
		{"no graph", func(t *testing.T) *onnxpb.ModelProto { return &onnxpb.ModelProto{} }, "model has no graph"},
		{"unknown operator", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "mlp", func(g *onnxpb.GraphProto) {
				g.Node[1].OpType = proto.String("Sigmoid")
				g.Node[1].Name = proto.String("act0")
			})
		}, `node "act0" (Sigmoid): operator not supported`},
		{"int8 MatMulInteger", func(t *testing.T) *onnxpb.ModelProto { return zooModel(t, "mlp-int8") }, "(MatMulInteger): operator not supported"},
		{"other domain", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "mlp", func(g *onnxpb.GraphProto) { g.Node[1].Domain = proto.String("com.example") })
		}, `(Relu): domain "com.example"`},
		{"gemm alpha", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "mlp", func(g *onnxpb.GraphProto) { attr(g.Node[0], onnx.AttrFloat("alpha", 2)) })
		}, "(Gemm): alpha 2: want 1"},
		{"gemm transA", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "mlp", func(g *onnxpb.GraphProto) { attr(g.Node[0], onnx.AttrInt("transA", 1)) })
		}, "(Gemm): transA: want 0"},
		{"gemm weight not constant", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "mlp", func(g *onnxpb.GraphProto) { g.Node[2].Input[1] = "relu0" })
		}, `(Gemm): input "relu0": want an initializer`},
		{"conv asymmetric pads", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "cnn", func(g *onnxpb.GraphProto) { attr(g.Node[0], onnx.AttrInts("pads", 0, 0, 1, 1)) })
		}, "(Conv): pads [0 0 1 1]: want none (VALID) or [1 1 1 1] (SAME)"},
		{"conv group", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "cnn", func(g *onnxpb.GraphProto) { attr(g.Node[3], onnx.AttrInt("group", 2)) })
		}, "(Conv): group 2"},
		{"conv SAME_LOWER", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "cnn", func(g *onnxpb.GraphProto) {
				g.Node[0].Attribute = []*onnxpb.AttributeProto{onnx.AttrString("auto_pad", "SAME_LOWER")}
			})
		}, `(Conv): auto_pad "SAME_LOWER" is not supported`},
		{"pool ceil_mode", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "cnn", func(g *onnxpb.GraphProto) { attr(g.Node[2], onnx.AttrInt("ceil_mode", 1)) })
		}, "(MaxPool): ceil_mode and storage_order: want 0"},
		{"unknown attribute", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "cnn", func(g *onnxpb.GraphProto) { attr(g.Node[2], onnx.AttrInt("frobnicate", 1)) })
		}, `(MaxPool): attribute "frobnicate" is not supported`},
		{"softmax axis", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "mlp", func(g *onnxpb.GraphProto) { attr(g.Node[3], onnx.AttrInt("axis", 0)) })
		}, "(Softmax): axis 0 on shape [1 10]"},
		{"flatten axis", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "cnn", func(g *onnxpb.GraphProto) { attr(g.Node[6], onnx.AttrInt("axis", 2)) })
		}, "(Flatten): an image [1 16 7 7] reshaped to [16 49]"},
		{"int64 input", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "mlp", func(g *onnxpb.GraphProto) {
				g.Input[0].Type.GetTensorType().ElemType = proto.Int32(int32(onnxpb.TensorProto_INT64))
			})
		}, `input "input": want a float32 tensor`},
		{"symbolic inner dimension", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "mlp", func(g *onnxpb.GraphProto) {
				g.Input[0].Type.GetTensorType().Shape.Dim[1] = &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "K"}}
			})
		}, `input "input": dimension 1 is not fixed`},
		{"bias of the wrong size", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "mlp", func(g *onnxpb.GraphProto) { g.Node[2].Input[2] = "fc0.bias" })
		}, `(Gemm): bias "fc0.bias" of dims [256]: want 10 float32 values`},
		{"undefined input", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "mlp", func(g *onnxpb.GraphProto) { g.Node[1].Input[0] = "nowhere" })
		}, `(Relu): input "nowhere" is not computed before the node`},
		{"output not computed", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "mlp", func(g *onnxpb.GraphProto) { g.Output[0].Name = proto.String("elsewhere") })
		}, `output "elsewhere" is not computed by any node`},
		{"per-channel activation scale", func(t *testing.T) *onnxpb.ModelProto {
			m := int8Model(t, "mlp")
			for _, n := range m.Graph.Node {
				if n.GetOpType() == "QuantizeLinear" {
					n.Input[1] = m.Graph.Node[0].Input[1] // the first weight's per-channel scales
					n.Name = proto.String("q")
					break
				}
			}
			return m
		}, `node "q" (QuantizeLinear): scale`},
		{"dequantize of another scale", func(t *testing.T) *onnxpb.ModelProto {
			m := int8Model(t, "cnn")
			var dqs []*onnxpb.NodeProto
			for _, n := range m.Graph.Node {
				if n.GetOpType() == "DequantizeLinear" && !strings.HasSuffix(n.Input[0], "weight_quantized") {
					dqs = append(dqs, n)
				}
			}
			dqs[0].Input[1], dqs[0].Name = dqs[1].Input[1], proto.String("dq")
			return m
		}, `node "dq" (DequantizeLinear): input`},
		{"truncated initializer", func(t *testing.T) *onnxpb.ModelProto {
			return edit(t, "mlp", func(g *onnxpb.GraphProto) { g.Initializer[1].RawData = g.Initializer[1].RawData[:8] })
		}, `tensor "fc0.bias"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.model(t)
			for _, n := range m.GetGraph().GetNode() {
				if n.Name == nil {
					n.Name = proto.String(n.Output[0])
				}
			}
			_, err := Convert(m, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// The synthetic models convert to the operators expected: in float every
// operator Convert writes; in int8, the Conv followed by an AveragePool
// stays float (an average narrows the range, so the scale after it would
// clamp the Conv's output), between DEQUANTIZE and QUANTIZE.
func TestConvertSynthetic(t *testing.T) {
	_, ops := opsOf(t, mustConvert(t, synthetic(t)))
	want := []fb.BuiltinOperator{fb.BuiltinOperatorDEPTHWISE_CONV_2D, fb.BuiltinOperatorAVERAGE_POOL_2D, fb.BuiltinOperatorADD,
		fb.BuiltinOperatorMAX_POOL_2D, fb.BuiltinOperatorCONV_2D, fb.BuiltinOperatorTRANSPOSE, fb.BuiltinOperatorRESHAPE,
		fb.BuiltinOperatorRELU, fb.BuiltinOperatorFULLY_CONNECTED, fb.BuiltinOperatorADD, fb.BuiltinOperatorSOFTMAX}
	if !slices.Equal(ops, want) {
		t.Errorf("float: operators %v, want %v", ops, want)
	}
	_, q := syntheticInt8(t, randomImages(64, 3, 8, 8, 7))
	b := mustConvert(t, q)
	fm, ops := opsOf(t, b)
	want = []fb.BuiltinOperator{fb.BuiltinOperatorQUANTIZE, fb.BuiltinOperatorDEPTHWISE_CONV_2D, fb.BuiltinOperatorMAX_POOL_2D,
		fb.BuiltinOperatorDEQUANTIZE, fb.BuiltinOperatorCONV_2D, fb.BuiltinOperatorAVERAGE_POOL_2D, fb.BuiltinOperatorRESHAPE,
		fb.BuiltinOperatorQUANTIZE, fb.BuiltinOperatorDEQUANTIZE, fb.BuiltinOperatorFULLY_CONNECTED}
	if !slices.Equal(ops, want) {
		t.Fatalf("int8: operators %v, want %v", ops, want)
	}
	var sg fb.SubGraph
	fm.Subgraphs(&sg, 0)
	var op fb.Operator
	sg.Operators(&op, 1)
	w := tensorOf(fm, op.Inputs(1))
	if q := w.Quantization(nil); w.Type() != fb.TensorTypeINT8 || q.ScaleLength() != 6 || q.QuantizedDimension() != 3 {
		t.Errorf("depthwise weight: %v with %d scales along %d, want INT8, 6 along 3", w.Type(), q.ScaleLength(), q.QuantizedDimension())
	}
	sg.Operators(&op, 4)
	if w := tensorOf(fm, op.Inputs(1)); w.Type() != fb.TensorTypeFLOAT32 {
		t.Errorf("the conv before the average pool has a %v weight, want FLOAT32", w.Type())
	}
}

func mustConvert(t *testing.T, m *onnxpb.ModelProto) []byte {
	t.Helper()
	b, err := Convert(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
