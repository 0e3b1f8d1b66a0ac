package interp

import (
	"errors"
	"fmt"
	"math"
)

// addArithOps registers Pow, Mod and the variadic Max, Min, Mean and Sum.
func addArithOps(t ops) {
	t["Pow"] = Op{MinOpset: 7, MaxOpset: MaxOpset, Check: checkInputs(2, 2), Run: pow, Fresh: true}
	t["Mod"] = Op{MinOpset: 10, MaxOpset: MaxOpset, Check: all(checkInputs(2, 2), checkMod), Run: mod, Fresh: true}
	variadic := func(n *Node) error {
		if len(n.Proto.GetInput()) == 0 {
			return errors.New("no inputs, want at least 1")
		}
		return checkInputs(1, len(n.Proto.GetInput()))(n)
	}
	t["Max"] = Op{MinOpset: 8, MaxOpset: MaxOpset, Check: variadic, Run: variadicKernel(varMax), Fresh: true}
	t["Min"] = Op{MinOpset: 8, MaxOpset: MaxOpset, Check: variadic, Run: variadicKernel(varMin), Fresh: true}
	t["Sum"] = Op{MinOpset: 8, MaxOpset: MaxOpset, Check: variadic, Run: variadicKernel(varSum), Fresh: true}
	t["Mean"] = Op{MinOpset: 8, MaxOpset: MaxOpset, Check: variadic, Run: variadicKernel(varMean), Fresh: true}
}

// pow raises a float or integer base to a float or integer exponent, with
// numpy broadcasting; the result has the base's type. Integer powers of
// integers are exact; the others compute in float64 (then truncate toward
// zero for an integer base).
func pow(n *Node, in []*Tensor) ([]*Tensor, error) {
	a, b := in[0], in[1]
	if !powType(a.DType) || !powType(b.DType) {
		return nil, fmt.Errorf("element types %s and %s are not supported", a.DType, b.DType)
	}
	shape, err := BroadcastShapes(a.Shape, b.Shape)
	if err != nil {
		return nil, err
	}
	if a.DType == Float32 && b.Len() == 1 {
		return []*Tensor{powScalarF32(a.F32, asFloat64(b)[0], shape)}, nil
	}
	bc := newBcast(a.Shape, b.Shape, shape)
	var res *Tensor
	if a.DType != Float32 && b.DType != Float32 {
		r := make([]int64, Size(shape))
		runBcast(&bc, r, asInt64(a), asInt64(b), zipVec(intPow))
		res = wrap(r, shape)
	} else {
		r := make([]float64, Size(shape))
		runBcast(&bc, r, asFloat64(a), asFloat64(b), zipVec(math.Pow))
		if a.DType == Float32 {
			out := New(Float32, shape...)
			for i, v := range r {
				out.F32[i] = float32(v)
			}
			return []*Tensor{out}, nil
		}
		res = New(Int64, shape...)
		for i, v := range r {
			res.I64[i] = floatToInt64(v)
		}
	}
	out := New(a.DType, shape...)
	if err := Convert(out, res); err != nil {
		return nil, err
	}
	return []*Tensor{out}, nil
}

// powScalarF32 raises every element of a to the exponent e (a scalar,
// so the output holds a's elements in order), squaring directly as models
// computing variances do.
func powScalarF32(a []float32, e float64, shape []int) *Tensor {
	out := New(Float32, shape...)
	switch e {
	case 1:
		copy(out.F32, a)
	case 2:
		for i, v := range a {
			out.F32[i] = float32(float64(v) * float64(v))
		}
	default:
		for i, v := range a {
			out.F32[i] = float32(math.Pow(float64(v), e))
		}
	}
	return out
}

func powType(dt DType) bool { return dt == Float32 || dt == Int32 || dt == Int64 }

// intPow is x**y by squaring; a negative y gives the truncated reciprocal
// (0 unless |x| is 1).
func intPow(x, y int64) int64 {
	if y < 0 {
		switch x {
		case 1:
			return 1
		case -1:
			if y%2 == 0 {
				return 1
			}
			return -1
		}
		return 0
	}
	r := int64(1)
	for y > 0 {
		if y&1 == 1 {
			r *= x
		}
		x *= x
		y >>= 1
	}
	return r
}

// floatToInt64 truncates toward zero, NaN giving 0 and saturating beyond
// the int64 range.
func floatToInt64(v float64) int64 {
	switch {
	case v != v:
		return 0
	case v >= 9.223372036854775e18:
		return math.MaxInt64
	case v <= -9.223372036854775e18:
		return math.MinInt64
	}
	return int64(v)
}

// asInt64 copies an integer tensor's values as int64.
func asInt64(t *Tensor) []int64 {
	out := New(Int64, t.Shape...)
	_ = Convert(out, t)
	return out.I64
}

// asFloat64 copies a float32, int32 or int64 tensor's values as float64.
func asFloat64(t *Tensor) []float64 {
	out := make([]float64, t.Len())
	switch t.DType {
	case Float32:
		for i, v := range t.F32 {
			out[i] = float64(v)
		}
	case Int32:
		for i, v := range t.I32 {
			out[i] = float64(v)
		}
	case Int64:
		for i, v := range t.I64 {
			out[i] = float64(v)
		}
	}
	return out
}

func checkMod(n *Node) error {
	if f := n.Int("fmod", 0); f != 0 && f != 1 {
		return fmt.Errorf("fmod is %d, want 0 or 1", f)
	}
	return nil
}

var errModZero = errors.New("integer modulo by zero")

// mod is Mod with numpy broadcasting: with fmod=0 (integers only) the
// result takes the divisor's sign, as Python's %; with fmod=1 the
// dividend's, as C's fmod.
func mod(n *Node, in []*Tensor) ([]*Tensor, error) {
	a, b := in[0], in[1]
	if a.DType != b.DType {
		return nil, fmt.Errorf("operands of types %s and %s", a.DType, b.DType)
	}
	fmod := n.Int("fmod", 0) == 1
	var out *Tensor
	var err error
	switch a.DType {
	case Float32:
		if !fmod {
			return nil, fmt.Errorf("float Mod needs fmod=1")
		}
		out, err = zip(a, b, func(x, y float32) float32 { return float32(math.Mod(float64(x), float64(y))) })
	case Int32:
		out, err = modInt[int32](a, b, fmod)
	case Int64:
		out, err = modInt[int64](a, b, fmod)
	case Int8:
		out, err = modInt[int8](a, b, fmod)
	case Uint8:
		out, err = modInt[uint8](a, b, fmod)
	default:
		return nil, fmt.Errorf("element type %s is not supported", a.DType)
	}
	if err != nil {
		return nil, err
	}
	return []*Tensor{out}, nil
}

func modInt[T int8 | uint8 | int32 | int64](a, b *Tensor, fmod bool) (*Tensor, error) {
	for _, v := range dataOf[T](b) {
		if v == 0 {
			return nil, errModZero
		}
	}
	return zip(a, b, func(x, y T) T {
		r := x % y // the sign of x; note MinInt % -1 is 0 in Go
		if !fmod && r != 0 && (r < 0) != (y < 0) {
			r += y
		}
		return r
	})
}

// varOp is a variadic elementwise operator.
type varOp int

const (
	varMax varOp = iota
	varMin
	varSum
	varMean
)

// variadicKernel folds its inputs pairwise with numpy broadcasting; Mean
// divides the sum by the input count. Max and Min take float32 and the
// integer types, Sum and Mean float32.
func variadicKernel(op varOp) Kernel {
	return func(n *Node, in []*Tensor) ([]*Tensor, error) {
		if err := sameTypes(in); err != nil {
			return nil, err
		}
		dt := in[0].DType
		var out *Tensor
		var err error
		switch {
		case dt == Float32:
			out, err = fold(in, varFunc[float32](op))
		case op == varSum || op == varMean:
			return nil, fmt.Errorf("element type %s is not supported", dt)
		case dt == Int32:
			out, err = fold(in, varFunc[int32](op))
		case dt == Int64:
			out, err = fold(in, varFunc[int64](op))
		case dt == Int8:
			out, err = fold(in, varFunc[int8](op))
		case dt == Uint8:
			out, err = fold(in, varFunc[uint8](op))
		default:
			return nil, fmt.Errorf("element type %s is not supported", dt)
		}
		if err != nil {
			return nil, err
		}
		if op == varMean {
			k := float32(len(in))
			for i := range out.F32 {
				out.F32[i] /= k
			}
		}
		return []*Tensor{out}, nil
	}
}

func varFunc[T numeric](op varOp) func(x, y T) T {
	switch op {
	case varMax:
		return func(x, y T) T { return max(x, y) }
	case varMin:
		return func(x, y T) T { return min(x, y) }
	}
	return func(x, y T) T { return x + y }
}

// fold combines the inputs left to right; one input is copied.
func fold[T numeric](in []*Tensor, f func(x, y T) T) (*Tensor, error) {
	acc := in[0].Clone()
	for _, t := range in[1:] {
		next, err := zip(acc, t, f)
		if err != nil {
			return nil, err
		}
		acc = next
	}
	return acc, nil
}
