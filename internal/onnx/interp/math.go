package interp

import (
	"fmt"
	"math"
)

// addMathOps registers elementwise math operators and Range, which models
// exported from training frameworks use around the core layers.
func addMathOps(t ops) {
	unary := checkInputs(1, 1)
	for name, u := range map[string]unaryOp{
		"Exp":        {f32: mapF32(math.Exp)},
		"Log":        {f32: mapF32(math.Log)},
		"Sqrt":       {f32: mapF32(math.Sqrt)},
		"Cos":        {f32: mapF32(math.Cos)},
		"Sin":        {f32: mapF32(math.Sin)},
		"Reciprocal": {f32: mapF32(func(x float64) float64 { return 1 / x })},
		"Neg":        {f32: negNum[float32], i8: negNum[int8], i32: negNum[int32], i64: negNum[int64]},
		"Abs":        {f32: absNum[float32], i8: absNum[int8], i32: absNum[int32], i64: absNum[int64]},
	} {
		t[name] = Op{MinOpset: 6, MaxOpset: MaxOpset, Check: unary, Run: u.kernel(), Fresh: true}
	}
	t["Range"] = Op{MinOpset: 11, MaxOpset: MaxOpset, Check: checkInputs(3, 3), Run: rangeKernel, Fresh: true}
}

// mapF32 lifts a float64 function to a float32 vector kernel.
func mapF32(f func(float64) float64) func(dst, src []float32) {
	return func(dst, src []float32) {
		src = src[:len(dst)]
		for i, v := range src {
			dst[i] = float32(f(float64(v)))
		}
	}
}

func negNum[T float32 | int8 | int32 | int64](dst, src []T) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = -v
	}
}

func absNum[T float32 | int8 | int32 | int64](dst, src []T) {
	src = src[:len(dst)]
	for i, v := range src {
		if v < 0 {
			v = -v
		}
		dst[i] = v
	}
}

// maxRange bounds the length of a Range output.
const maxRange = 1 << 24

func rangeKernel(n *Node, in []*Tensor) ([]*Tensor, error) {
	start, limit, delta := in[0], in[1], in[2]
	for i, t := range in {
		if t.DType != start.DType || t.Len() != 1 {
			return nil, fmt.Errorf("input %d must be a scalar of the same type as start", i)
		}
	}
	switch start.DType {
	case Float32:
		s, l, d := float64(start.F32[0]), float64(limit.F32[0]), float64(delta.F32[0])
		c, err := rangeCount(s, l, d)
		if err != nil {
			return nil, err
		}
		out := New(Float32, c)
		for i := range out.F32 {
			out.F32[i] = start.F32[0] + float32(i)*delta.F32[0]
		}
		return []*Tensor{out}, nil
	case Int32:
		return rangeInt(start.I32[0], limit.I32[0], delta.I32[0], Int32, func(t *Tensor) []int32 { return t.I32 })
	case Int64:
		return rangeInt(start.I64[0], limit.I64[0], delta.I64[0], Int64, func(t *Tensor) []int64 { return t.I64 })
	}
	return nil, fmt.Errorf("element type %s is not supported", start.DType)
}

// rangeCount is max(ceil((limit-start)/delta), 0), checked.
func rangeCount(start, limit, delta float64) (int, error) {
	if delta == 0 {
		return 0, fmt.Errorf("delta is zero")
	}
	c := math.Ceil((limit - start) / delta)
	if math.IsNaN(c) || c > maxRange {
		return 0, fmt.Errorf("range of %v elements", c)
	}
	return int(max(c, 0)), nil
}

func rangeInt[T int32 | int64](s, l, d T, dt DType, data func(*Tensor) []T) ([]*Tensor, error) {
	c, err := rangeCount(float64(s), float64(l), float64(d))
	if err != nil {
		return nil, err
	}
	out := New(dt, c)
	v := s
	for i, dst := 0, data(out); i < len(dst); i++ {
		dst[i] = v
		v += d
	}
	return []*Tensor{out}, nil
}
