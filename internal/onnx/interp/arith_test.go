package interp

import (
	"math"
	"testing"

	"outpost.dev/outpost/internal/onnx"
)

func TestPow(t *testing.T) {
	runVCases(t, []vCase{
		{name: "float float", op: "Pow", in: []*Tensor{cF32(sh(3), 2, 4, -2), cF32(sh(3), 3, 0.5, 2)}, want: f32s(8, 2, 4)},
		{name: "float int64 exponent broadcast", op: "Pow", opset: 15, in: []*Tensor{cF32(sh(2, 2), 1, 2, 3, 4), cI64(sh(2), 2, -1)}, want: []*Tensor{cF32(sh(2, 2), 1, 0.5, 9, 0.25)}},
		{name: "int64 int64 exact", op: "Pow", opset: 15, in: []*Tensor{cI64(sh(3), 3, -2, 10), cI64(sh(3), 39, 3, 18)},
			want: []*Tensor{cI64(sh(3), 4052555153018976267, -8, 1000000000000000000)}},
		{name: "int negative exponent", op: "Pow", opset: 15, in: []*Tensor{cI32(sh(3), 2, 1, -1), cI32(sh(), -1)}, want: []*Tensor{cI32(sh(3), 0, 1, -1)}},
		{name: "int32 float exponent truncates", op: "Pow", opset: 15, in: []*Tensor{cI32(sh(2), 2, 10), cF32(sh(), 0.5)}, want: []*Tensor{cI32(sh(2), 1, 3)}},
		{name: "float NaN", op: "Pow", in: []*Tensor{cF32(sh(1), -8), cF32(sh(1), 1.0/3)}, want: f32s(float32(math.NaN()))},
		{name: "uint8 refused", op: "Pow", in: []*Tensor{cU8(sh(1), 2), cU8(sh(1), 2)}, wantErr: "not supported"},
	})
}

func TestMod(t *testing.T) {
	fmod := []onnx.Attr{onnx.AttrInt("fmod", 1)}
	runVCases(t, []vCase{
		{name: "python sign (divisor)", op: "Mod", in: []*Tensor{cI32(sh(4), 7, -7, 7, -7), cI32(sh(4), 3, 3, -3, -3)}, want: []*Tensor{cI32(sh(4), 1, 2, -2, -1)}},
		{name: "fmod sign (dividend)", op: "Mod", attrs: fmod, in: []*Tensor{cI64(sh(4), 7, -7, 7, -7), cI64(sh(4), 3, 3, -3, -3)}, want: []*Tensor{cI64(sh(4), 1, -1, 1, -1)}},
		{name: "float fmod broadcast", op: "Mod", attrs: fmod, in: []*Tensor{cF32(sh(2, 2), 5.5, -5.5, 1, 2), cF32(sh(2), 2, 3)}, want: []*Tensor{cF32(sh(2, 2), 1.5, -2.5, 1, 2)}},
		{name: "int8 min by -1", op: "Mod", in: []*Tensor{cI8(sh(1), -128), cI8(sh(1), -1)}, want: []*Tensor{cI8(sh(1), 0)}},
		{name: "uint8", op: "Mod", in: []*Tensor{cU8(sh(2), 200, 7), cU8(sh(), 9)}, want: []*Tensor{cU8(sh(2), 2, 7)}},
		{name: "float without fmod", op: "Mod", in: []*Tensor{cF32(sh(1), 1), cF32(sh(1), 2)}, wantErr: "needs fmod=1"},
		{name: "zero divisor", op: "Mod", in: []*Tensor{cI64(sh(2), 1, 2), cI64(sh(2), 1, 0)}, wantErr: "modulo by zero"},
		{name: "bad fmod at load", op: "Mod", attrs: []onnx.Attr{onnx.AttrInt("fmod", 2)}, in: []*Tensor{cI64(sh(1), 1), cI64(sh(1), 1)}, wantErr: `Mod node "n0": fmod is 2`},
	})
}

func TestVariadic(t *testing.T) {
	a, b, c := cF32(sh(2, 2), 1, 5, 3, 7), cF32(sh(2), 4, 2), cF32(sh(), 3)
	runVCases(t, []vCase{
		{name: "max three broadcast", op: "Max", in: []*Tensor{a, b, c}, want: []*Tensor{cF32(sh(2, 2), 4, 5, 4, 7)}},
		{name: "min three broadcast", op: "Min", in: []*Tensor{a, b, c}, want: []*Tensor{cF32(sh(2, 2), 1, 2, 3, 2)}},
		{name: "sum three broadcast", op: "Sum", in: []*Tensor{a, b, c}, want: []*Tensor{cF32(sh(2, 2), 8, 10, 10, 12)}},
		{name: "mean three broadcast", op: "Mean", in: []*Tensor{a, b, c}, want: []*Tensor{cF32(sh(2, 2), 8.0/3, 10.0/3, 10.0/3, 4)}},
		{name: "one input", op: "Sum", in: []*Tensor{b}, want: []*Tensor{b}},
		{name: "max int64", op: "Max", in: []*Tensor{cI64(sh(2), -5, 9), cI64(sh(2), 3, math.MinInt64)}, want: []*Tensor{cI64(sh(2), 3, 9)}},
		{name: "min uint8", op: "Min", in: []*Tensor{cU8(sh(2), 5, 250), cU8(sh(), 6)}, want: []*Tensor{cU8(sh(2), 5, 6)}},
		{name: "max NaN propagates", op: "Max", in: []*Tensor{cF32(sh(1), float32(math.NaN())), cF32(sh(1), 1)}, want: f32s(float32(math.NaN()))},
		{name: "sum int refused", op: "Sum", in: []*Tensor{cI32(sh(1), 1), cI32(sh(1), 1)}, wantErr: "not supported"},
		{name: "mixed types", op: "Max", in: []*Tensor{cF32(sh(1), 1), cI64(sh(1), 1)}, wantErr: "input 1 is int64"},
		{name: "no broadcast", op: "Sum", in: []*Tensor{cF32(sh(2), 1, 2), cF32(sh(3), 1, 2, 3)}, wantErr: "do not broadcast"},
		{name: "no inputs at load", op: "Max", in: nil, wantErr: `Max node "n0": no inputs, want at least 1`},
	})
}

// TestPowScalarExponent checks the scalar-exponent path against the
// general one (a one-element exponent of higher rank widens the shape).
func TestPowScalarExponent(t *testing.T) {
	x := cF32(sh(2, 2), -1.5, 0, 3, float32(math.Inf(-1)))
	for _, e := range []float32{1, 2, 0.5, -1, 3} {
		got, err := runAt(t, "Pow", 13, []DType{Float32}, nil, x, cF32(sh(1, 1, 1), e))
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, 4)
		for i, v := range x.F32 {
			want[i] = float32(math.Pow(float64(v), float64(e)))
		}
		if err := sameTensor(got[0], cF32(sh(1, 2, 2), want...), 0); err != nil {
			t.Fatalf("exponent %g: %v", e, err)
		}
	}
}
