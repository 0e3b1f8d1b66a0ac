package interp

import (
	"math"
	"testing"
)

func TestCompare(t *testing.T) {
	nan := float32(math.NaN())
	runVCases(t, []vCase{
		{name: "equal broadcast row", op: "Equal", in: []*Tensor{cI64(sh(2, 2), 1, 2, 3, 2), cI64(sh(2), 1, 2)}, want: []*Tensor{cB(sh(2, 2), true, true, false, true)}},
		{name: "equal bool", op: "Equal", in: []*Tensor{cB(sh(2), true, false), cB(sh(), false)}, want: []*Tensor{cB(sh(2), false, true)}},
		{name: "equal NaN is false", op: "Equal", in: []*Tensor{cF32(sh(2), nan, 1), cF32(sh(2), nan, 1)}, want: []*Tensor{cB(sh(2), false, true)}},
		{name: "less column vs row", op: "Less", in: []*Tensor{cF32(sh(2, 1), 1, 3), cF32(sh(1, 3), 0, 2, 4)}, want: []*Tensor{cB(sh(2, 3), false, true, true, false, false, true)}},
		{name: "greater int8", op: "Greater", in: []*Tensor{cI8(sh(2), -1, 5), cI8(sh(), 0)}, want: []*Tensor{cB(sh(2), false, true)}},
		{name: "less or equal uint8", op: "LessOrEqual", in: []*Tensor{cU8(sh(3), 1, 2, 3), cU8(sh(), 2)}, want: []*Tensor{cB(sh(3), true, true, false)}},
		{name: "greater or equal int32 scalar left", op: "GreaterOrEqual", in: []*Tensor{cI32(sh(), 2), cI32(sh(3), 1, 2, 3)}, want: []*Tensor{cB(sh(3), true, true, false)}},
		{name: "less on bool refused", op: "Less", in: []*Tensor{cB(sh(1), true), cB(sh(1), false)}, want: []*Tensor{cB(sh(1))}, wantErr: "not supported"},
		{name: "mixed types", op: "Equal", in: []*Tensor{cF32(sh(1), 1), cI64(sh(1), 1)}, want: []*Tensor{cB(sh(1))}, wantErr: "types float32 and int64"},
		{name: "no broadcast", op: "Less", in: []*Tensor{cF32(sh(2), 1, 2), cF32(sh(3), 1, 2, 3)}, want: []*Tensor{cB(sh(1))}, wantErr: "do not broadcast"},
		{name: "less or equal before opset 12", op: "LessOrEqual", opset: 11, in: []*Tensor{cF32(sh(1), 1), cF32(sh(1), 1)}, want: []*Tensor{cB(sh(1))}, wantErr: "LessOrEqual at opset 11"},
	})
}

func TestBoolOps(t *testing.T) {
	a := cB(sh(2, 2), true, true, false, false)
	b := cB(sh(2), true, false)
	runVCases(t, []vCase{
		{name: "and", op: "And", in: []*Tensor{a, b}, want: []*Tensor{cB(sh(2, 2), true, false, false, false)}},
		{name: "or", op: "Or", in: []*Tensor{a, b}, want: []*Tensor{cB(sh(2, 2), true, true, true, false)}},
		{name: "xor", op: "Xor", in: []*Tensor{a, b}, want: []*Tensor{cB(sh(2, 2), false, true, true, false)}},
		{name: "not", op: "Not", in: []*Tensor{b}, want: []*Tensor{cB(sh(2), false, true)}},
		{name: "and of ints refused", op: "And", in: []*Tensor{cI32(sh(1), 1), cI32(sh(1), 1)}, want: []*Tensor{cB(sh(1))}, wantErr: "want bool"},
		{name: "not of float refused", op: "Not", in: []*Tensor{cF32(sh(1), 1)}, want: []*Tensor{cB(sh(1))}, wantErr: "want bool"},
	})
}

func TestWhere(t *testing.T) {
	runVCases(t, []vCase{
		{name: "same shape", op: "Where", in: []*Tensor{cB(sh(3), true, false, true), cF32(sh(3), 1, 2, 3), cF32(sh(3), -1, -2, -3)}, want: f32s(1, -2, 3)},
		{name: "three-way broadcast", op: "Where", in: []*Tensor{cB(sh(2, 1), true, false), cI64(sh(1, 3), 1, 2, 3), cI64(sh(), 0)},
			want: []*Tensor{cI64(sh(2, 3), 1, 2, 3, 0, 0, 0)}},
		{name: "condition widest", op: "Where", in: []*Tensor{cB(sh(2, 2), true, false, false, true), cF32(sh(), 1), cF32(sh(2), 5, 6)},
			want: []*Tensor{cF32(sh(2, 2), 1, 6, 5, 1)}},
		{name: "bool values", op: "Where", in: []*Tensor{cB(sh(2), true, false), cB(sh(2), false, false), cB(sh(2), true, true)}, want: []*Tensor{cB(sh(2), false, true)}},
		{name: "condition not bool", op: "Where", in: []*Tensor{cF32(sh(1), 1), cF32(sh(1), 1), cF32(sh(1), 1)}, wantErr: "condition is float32"},
		{name: "value types differ", op: "Where", in: []*Tensor{cB(sh(1), true), cF32(sh(1), 1), cI64(sh(1), 1)}, wantErr: "X is float32 and Y is int64"},
		{name: "no broadcast", op: "Where", in: []*Tensor{cB(sh(2), true, true), cF32(sh(3), 1, 2, 3), cF32(sh(1), 1)}, wantErr: "do not broadcast"},
		{name: "two inputs refused at load", op: "Where", in: []*Tensor{cB(sh(1), true), cF32(sh(1), 1)}, wantErr: `Where node "n0": 2 inputs, want 3`},
	})
}
