package interp

import (
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

func TestHalfConversion(t *testing.T) {
	cases := []struct {
		name string
		f    float32
		h    uint16
	}{
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"zero", 0, 0x0000},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000},
		{"max half", 65504, 0x7bff},
		{"overflow to inf", 65520, 0x7c00},
		{"just below overflow rounds down", 65519, 0x7bff},
		{"inf", float32(math.Inf(1)), 0x7c00},
		{"minus inf", float32(math.Inf(-1)), 0xfc00},
		{"smallest normal", 6.103515625e-05, 0x0400},
		{"smallest subnormal", 5.960464477539063e-08, 0x0001},
		{"half of smallest subnormal ties to zero", 2.9802322387695312e-08, 0x0000},
		{"above half of smallest subnormal", 2.99e-08, 0x0001},
		{"tie rounds to even (down)", 1 + 1.0/2048, 0x3c00},
		{"tie rounds to even (up)", 1 + 3.0/2048, 0x3c02},
		{"above tie rounds up", 1 + 1.0/2048 + 1.0/65536, 0x3c01},
		{"subnormal tie to even", 1.5 * 5.960464477539063e-08, 0x0002},
		{"tiny", 1e-10, 0x0000},
		{"pi", math.Pi, 0x4248},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Float32ToHalf(c.f); got != c.h {
				t.Fatalf("Float32ToHalf(%g) = %#04x, want %#04x", c.f, got, c.h)
			}
		})
	}
	if h := Float32ToHalf(float32(math.NaN())); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Fatalf("NaN gives %#04x", h)
	}
}

// TestHalfRoundTrip checks every half value widens exactly and narrows
// back to itself, and that narrowing picks the nearest half value.
func TestHalfRoundTrip(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := HalfToFloat32(uint16(h))
		if f != f {
			if g := Float32ToHalf(f); g&0x7c00 != 0x7c00 || g&0x3ff == 0 {
				t.Fatalf("NaN %#04x narrows to %#04x", h, g)
			}
			continue
		}
		if g := Float32ToHalf(f); g != uint16(h) {
			t.Fatalf("%#04x widens to %g, narrows to %#04x", h, f, g)
		}
	}
	// Narrowing is nearest: no neighbour half is closer.
	for i := 0; i < 200000; i++ {
		f := math.Float32frombits(uint32(i) * 21473 * 997)
		if f != f || math.IsInf(float64(f), 0) || math.Abs(float64(f)) > 65504 {
			continue
		}
		h := Float32ToHalf(f)
		d := math.Abs(float64(HalfToFloat32(h)) - float64(f))
		for _, nb := range []uint16{h + 1, h - 1} {
			v := HalfToFloat32(nb)
			if v != v || math.IsInf(float64(v), 0) || (nb^h)&0x8000 != 0 {
				continue
			}
			if e := math.Abs(float64(v) - float64(f)); e < d {
				t.Fatalf("%g narrows to %g (%#04x), but %g is closer", f, HalfToFloat32(h), h, v)
			}
		}
	}
}

func half16(v ...float32) []byte {
	raw := make([]byte, 2*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint16(raw[2*i:], Float32ToHalf(f))
	}
	return raw
}

func TestFloat16FromProto(t *testing.T) {
	cases := []struct {
		name    string
		p       *onnxpb.TensorProto
		want    *Tensor
		wantErr string
	}{
		{name: "raw data", p: &onnxpb.TensorProto{DataType: proto.Int32(10), Dims: []int64{3}, RawData: half16(1, -0.5, 0.1)},
			want: cF32(sh(3), 1, -0.5, RoundToHalf(0.1))},
		{name: "int32 data", p: &onnxpb.TensorProto{DataType: proto.Int32(10), Dims: []int64{2}, Int32Data: []int32{0x3c00, 0xc000}},
			want: cF32(sh(2), 1, -2)},
		{name: "raw data short", p: &onnxpb.TensorProto{Name: proto.String("w"), DataType: proto.Int32(10), Dims: []int64{3}, RawData: half16(1, 2)},
			wantErr: `tensor "w": 4 bytes of raw data for 3 FLOAT16 elements`},
		{name: "int32 data short", p: &onnxpb.TensorProto{DataType: proto.Int32(10), Dims: []int64{3}, Int32Data: []int32{1}},
			wantErr: "1 values for shape [3]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := TensorFromProto(c.p)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := sameTensor(got, c.want, 0); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFloat16Weights runs a model whose weights are FLOAT16 initializers
// and a FLOAT16 Constant, with a Cast to FLOAT16 and back on the way.
func TestFloat16Weights(t *testing.T) {
	w := []float32{0.1, -0.2, 0.3, 0.4, 0.5, -0.6}
	b := onnx.NewBuilder("half", 13).
		Input("x", onnxpb.TensorProto_FLOAT, onnx.D(1), onnx.D(2)).
		Node("Constant", "bias", nil, []string{"b"}, &onnxpb.AttributeProto{
			Name: proto.String("value"), Type: onnxpb.AttributeProto_TENSOR.Enum(),
			T: &onnxpb.TensorProto{DataType: proto.Int32(10), Dims: []int64{3}, Int32Data: []int32{0x3c00, 0x0, 0xbc00}},
		}).
		Node("Cast", "tohalf", []string{"x"}, []string{"xh"}, onnx.AttrInt("to", 10)).
		Node("MatMul", "mm", []string{"xh", "w"}, []string{"y"}).
		Node("Add", "add", []string{"y", "b"}, []string{"yb"}).
		Node("Cast", "tofloat", []string{"yb"}, []string{"out"}, onnx.AttrInt("to", 1)).
		Output("out", onnxpb.TensorProto_FLOAT, onnx.D(1), onnx.D(3))
	mp, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	mp.Graph.Initializer = append(mp.Graph.Initializer, &onnxpb.TensorProto{
		Name: proto.String("w"), DataType: proto.Int32(10), Dims: []int64{2, 3}, RawData: half16(w...),
	})
	m, err := LoadProto(mp)
	if err != nil {
		t.Fatal(err)
	}
	x := []float32{1.0001, 2}
	res, err := m.Run(context.Background(), map[string]*Tensor{"x": cF32(sh(1, 2), x...)})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float32, 3)
	bias := []float32{1, 0, -1}
	for j := range want {
		want[j] = RoundToHalf(x[0])*RoundToHalf(w[j]) + RoundToHalf(x[1])*RoundToHalf(w[3+j]) + bias[j]
	}
	if err := sameTensor(res["out"], cF32(sh(1, 3), want...), 1e-6); err != nil {
		t.Fatal(err)
	}

	// A FLOAT16 graph input is refused with a clear error.
	mp.Graph.Input[0].Type.GetTensorType().ElemType = proto.Int32(10)
	if _, err := LoadProto(mp); err == nil || !strings.Contains(err.Error(), `"x" has element type FLOAT16`) {
		t.Fatalf("float16 input: error %v", err)
	}
}

// TestFloat16CastConformance runs ONNX's Cast conformance cases between
// FLOAT and FLOAT16 with the graph's FLOAT16 input or output declared as
// FLOAT (the runtime keeps half values in float32), comparing exactly.
func TestFloat16CastConformance(t *testing.T) {
	root := confDir(t)
	for _, name := range []string{"test_cast_FLOAT_to_FLOAT16", "test_cast_FLOAT16_to_FLOAT"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(root, name)
			data, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			mp := &onnxpb.ModelProto{}
			if err := proto.Unmarshal(data, mp); err != nil {
				t.Fatal(err)
			}
			for _, vi := range append(mp.Graph.Input, mp.Graph.Output...) {
				if tt := vi.GetType().GetTensorType(); tt.GetElemType() == int32(Float16) {
					tt.ElemType = proto.Int32(int32(Float32))
				}
			}
			m, err := LoadProto(mp)
			if err != nil {
				t.Fatal(err)
			}
			if err := confRun(m, dir, func(got, want *Tensor) error { return sameTensor(got, want, 0) }); err != nil {
				t.Fatal(err)
			}
		})
	}
}
