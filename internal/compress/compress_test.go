package compress

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/onnxpb"
	"outpost.dev/outpost/internal/zoo"
)

// variant is one rewrite of a zoo model, as the tests make it.
type variant struct {
	name    string
	make    func(t *testing.T, m *onnxpb.ModelProto, calib Dataset) (*onnxpb.ModelProto, error)
	mlpOnly bool
}

var variants = []variant{
	{"fp16", func(t *testing.T, m *onnxpb.ModelProto, _ Dataset) (*onnxpb.ModelProto, error) { return Float16(m, 16) }, false},
	{"int8-weights", func(t *testing.T, m *onnxpb.ModelProto, _ Dataset) (*onnxpb.ModelProto, error) {
		return QuantizeInt8(m, nil)
	}, false},
	{"int8-minmax", func(t *testing.T, m *onnxpb.ModelProto, calib Dataset) (*onnxpb.ModelProto, error) {
		r, err := Calibrate(context.Background(), m, calib, 512, Calibration{})
		if err != nil {
			return nil, err
		}
		return QuantizeInt8(m, r)
	}, false},
	{"int8-percentile", func(t *testing.T, m *onnxpb.ModelProto, calib Dataset) (*onnxpb.ModelProto, error) {
		r, err := Calibrate(context.Background(), m, calib, 512, Calibration{Percentile: 99.99})
		if err != nil {
			return nil, err
		}
		return QuantizeInt8(m, r)
	}, false},
	{"int8-dynamic", func(t *testing.T, m *onnxpb.ModelProto, _ Dataset) (*onnxpb.ModelProto, error) {
		return QuantizeDynamic(m)
	}, true},
}

func zooModel(t *testing.T, name string) (*onnxpb.ModelProto, []byte) {
	t.Helper()
	_, data, err := zoo.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return m, data
}

// makeVariants returns every variant of zoo model name, checking that the
// source model is left as it was.
func makeVariants(t *testing.T, name string, calib Dataset) map[string][]byte {
	t.Helper()
	m, _ := zooModel(t, name)
	before := proto.Clone(m)
	out := map[string][]byte{}
	for _, v := range variants {
		if v.mlpOnly && name != "mlp" {
			continue
		}
		vm, err := v.make(t, m, calib)
		if err != nil {
			t.Fatalf("%s %s: %v", name, v.name, err)
		}
		if !proto.Equal(m, before) {
			t.Fatalf("%s %s changed the source model", name, v.name)
		}
		b, err := onnx.Marshal(vm)
		if err != nil {
			t.Fatal(err)
		}
		out[v.name] = b
	}
	return out
}

// The variants of the zoo's MLP and CNN run in the Go runtime, are smaller
// by what their method promises, and lose little accuracy on the embedded
// test subset (the full test set is measured in peers_test.go and
// bench/compress).
func TestZooVariants(t *testing.T) {
	tr, te, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Largest size ratio and accuracy drop (points) allowed per variant;
	// the CNN's 9,098 weights leave its fixed overhead (names, scales, the
	// graph) a larger share.
	limits := map[string]map[string][2]float64{
		"mlp": {"fp16": {0.51, 0.1}, "int8-weights": {0.26, 0.5}, "int8-minmax": {0.26, 1}, "int8-percentile": {0.26, 1}, "int8-dynamic": {0.26, 1}},
		"cnn": {"fp16": {0.56, 0.1}, "int8-weights": {0.31, 0.5}, "int8-minmax": {0.31, 1}, "int8-percentile": {0.31, 1}},
	}
	for _, name := range []string{"mlp", "cnn"} {
		t.Run(name, func(t *testing.T) {
			_, data := zooModel(t, name)
			base, err := interp.Load(data)
			if err != nil {
				t.Fatal(err)
			}
			baseAcc, err := Accuracy(ctx, base, te, 100)
			if err != nil {
				t.Fatal(err)
			}
			for v, b := range makeVariants(t, name, tr) {
				s, err := interp.Load(b)
				if err != nil {
					t.Fatalf("%s: the Go runtime refuses it: %v", v, err)
				}
				acc, err := Accuracy(ctx, s, te, 100)
				if err != nil {
					t.Fatal(err)
				}
				ratio, drop := float64(len(b))/float64(len(data)), 100*(baseAcc-acc)
				t.Logf("%s %-16s %7d bytes (%.3fx)  accuracy %.1f%% (%+.1f points)", name, v, len(b), ratio, 100*acc, -drop)
				lim := limits[name][v]
				if ratio > lim[0] {
					t.Errorf("%s: %.3fx the size, want at most %.2fx", v, ratio, lim[0])
				}
				if drop > lim[1] {
					t.Errorf("%s: accuracy dropped %.2f points, want at most %.1f", v, drop, lim[1])
				}
			}
		})
	}
}

// The rewrites really are what they say: every weight of the float16 model
// is stored as FLOAT16; the int8 model's Gemm/Conv weights are INT8 with a
// scale per output channel, its activations pass QuantizeLinear, and its
// weights dequantize to within half a step of the originals.
func TestRewriteShapes(t *testing.T) {
	m, _ := zooModel(t, "mlp")
	h, err := Float16(m, 16)
	if err != nil {
		t.Fatal(err)
	}
	for _, init := range h.Graph.Initializer {
		if n := len(init.RawData) + 4*len(init.FloatData); n >= 4*16 && init.GetDataType() == int32(onnxpb.TensorProto_FLOAT) {
			t.Errorf("initializer %q of %d bytes still float32", init.GetName(), n)
		}
	}
	tr, _, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Calibrate(context.Background(), m, tr, 256, Calibration{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r["input"]; got.Min != 0 || got.Max != 1 {
		t.Errorf("input pixels calibrated to [%v, %v], want [0, 1]", got.Min, got.Max)
	}
	q, err := QuantizeInt8(m, r)
	if err != nil {
		t.Fatal(err)
	}
	ops := map[string]int{}
	for _, n := range q.Graph.Node {
		ops[n.GetOpType()]++
	}
	if ops["QuantizeLinear"] != 2 || ops["DequantizeLinear"] != 4 {
		t.Errorf("ops %v: want a QuantizeLinear per Gemm input (2) and a DequantizeLinear per weight and input (4)", ops)
	}
	inits := initializers(q.Graph)
	orig := initializers(m.Graph)
	for _, n := range q.Graph.Node {
		if n.GetOpType() != "DequantizeLinear" || inits[n.Input[0]].GetDataType() != int32(onnxpb.TensorProto_INT8) {
			continue
		}
		w, err := onnx.Float32Data(orig[n.Output[0]])
		if err != nil {
			t.Fatal(err)
		}
		qv, scale := inits[n.Input[0]].RawData, inits[n.Input[1]]
		s, _ := onnx.Float32Data(scale)
		axis := int(attrInt(n, "axis", 1))
		dims := orig[n.Output[0]].Dims
		if len(s) != int(dims[axis]) {
			t.Fatalf("%s: %d scales for axis %d of dims %v", n.Output[0], len(s), axis, dims)
		}
		inner := 1
		for _, d := range dims[axis+1:] {
			inner *= int(d)
		}
		for i, x := range w {
			c := (i / inner) % int(dims[axis])
			if d := math.Abs(float64(int8(qv[i]))*float64(s[c]) - float64(x)); d > float64(s[c])/2+1e-7 {
				t.Fatalf("%s[%d] = %v dequantizes %v away (scale %v)", n.Output[0], i, x, d, s[c])
			}
		}
	}
}

func TestRefusals(t *testing.T) {
	m, _ := zooModel(t, "mlp")
	old := proto.Clone(m).(*onnxpb.ModelProto)
	old.OpsetImport[0].Version = proto.Int64(11)
	relu, err := onnx.NewBuilder("relu", 13).
		Input("x", onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(4)).
		Output("y", onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(4)).
		Node("Relu", "relu", []string{"x"}, []string{"y"}).Model()
	if err != nil {
		t.Fatal(err)
	}
	nan := proto.Clone(m).(*onnxpb.ModelProto)
	for _, init := range nan.Graph.Initializer {
		if len(init.Dims) == 2 {
			init.RawData[0], init.RawData[1], init.RawData[2], init.RawData[3] = 0, 0, 0xc0, 0x7f // NaN
			break
		}
	}
	huge := proto.Clone(m).(*onnxpb.ModelProto)
	for _, init := range huge.Graph.Initializer {
		if len(init.Dims) == 2 {
			init.RawData[0], init.RawData[1], init.RawData[2], init.RawData[3] = 0, 0, 0x80, 0x47 // 65536
			break
		}
	}
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"no graph", func() error { _, err := QuantizeInt8(&onnxpb.ModelProto{}, nil); return err }, "no graph"},
		{"old opset", func() error { _, err := QuantizeInt8(old, nil); return err }, "opset 11"},
		{"nothing to quantize", func() error { _, err := QuantizeInt8(relu, nil); return err }, "no Gemm, MatMul or Conv"},
		{"nothing to store as float16", func() error { _, err := Float16(relu, 16); return err }, "no float32 initializer"},
		{"a NaN weight", func() error { _, err := QuantizeInt8(nan, nil); return err }, "NaN"},
		{"a weight beyond float16", func() error { _, err := Float16(huge, 16); return err }, "beyond float16's range"},
		{"dynamic quantization of a convolution", func() error { cnn, _ := zooModel(t, "cnn"); _, err := QuantizeDynamic(cnn); return err }, "use static int8"},
		{"a missing range", func() error { _, err := QuantizeInt8(m, map[string]Range{"input": {0, 1}}); return err }, "no calibrated range"},
		{"calibration data of the wrong shape", func() error {
			_, err := Calibrate(context.Background(), m, wrongDim{}, 0, Calibration{})
			return err
		}, "samples of 10 values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one saying %q", err, tt.want)
			}
		})
	}
	if _, err := QuantizeInt8(relu, nil); !errors.Is(err, ErrNothingToQuantize) {
		t.Errorf("err = %v, want ErrNothingToQuantize", err)
	}
}

type wrongDim struct{}

func (wrongDim) Len() int                      { return 3 }
func (wrongDim) Dim() int                      { return 10 }
func (wrongDim) Sample(i int, d []float32) int { return 0 }
