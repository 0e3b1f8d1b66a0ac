package interp

import (
	"errors"
	"fmt"
	"math"
)

// binOp is an arithmetic operator with numpy broadcasting.
type binOp int

const (
	opAdd binOp = iota
	opSub
	opMul
	opDiv
)

func vecAdd[T numeric](d, a, b []T, sa, sb int) {
	switch {
	case sa == 1 && sb == 1:
		a, b = a[:len(d)], b[:len(d)]
		for i := range d {
			d[i] = a[i] + b[i]
		}
	case sb == 1:
		x, b := a[0], b[:len(d)]
		for i := range d {
			d[i] = x + b[i]
		}
	case sa == 1:
		y, a := b[0], a[:len(d)]
		for i := range d {
			d[i] = a[i] + y
		}
	default:
		v := a[0] + b[0]
		for i := range d {
			d[i] = v
		}
	}
}

func vecSub[T numeric](d, a, b []T, sa, sb int) {
	switch {
	case sa == 1 && sb == 1:
		a, b = a[:len(d)], b[:len(d)]
		for i := range d {
			d[i] = a[i] - b[i]
		}
	case sb == 1:
		x, b := a[0], b[:len(d)]
		for i := range d {
			d[i] = x - b[i]
		}
	case sa == 1:
		y, a := b[0], a[:len(d)]
		for i := range d {
			d[i] = a[i] - y
		}
	default:
		v := a[0] - b[0]
		for i := range d {
			d[i] = v
		}
	}
}

func vecMul[T numeric](d, a, b []T, sa, sb int) {
	switch {
	case sa == 1 && sb == 1:
		a, b = a[:len(d)], b[:len(d)]
		for i := range d {
			d[i] = a[i] * b[i]
		}
	case sb == 1:
		x, b := a[0], b[:len(d)]
		for i := range d {
			d[i] = x * b[i]
		}
	case sa == 1:
		y, a := b[0], a[:len(d)]
		for i := range d {
			d[i] = a[i] * y
		}
	default:
		v := a[0] * b[0]
		for i := range d {
			d[i] = v
		}
	}
}

// vecDiv divides; integer callers must have ruled out zero divisors.
func vecDiv[T numeric](d, a, b []T, sa, sb int) {
	switch {
	case sa == 1 && sb == 1:
		a, b = a[:len(d)], b[:len(d)]
		for i := range d {
			d[i] = a[i] / b[i]
		}
	case sb == 1:
		x, b := a[0], b[:len(d)]
		for i := range d {
			d[i] = x / b[i]
		}
	case sa == 1:
		y, a := b[0], a[:len(d)]
		for i := range d {
			d[i] = a[i] / y
		}
	default:
		v := a[0] / b[0]
		for i := range d {
			d[i] = v
		}
	}
}

func vecFunc[T numeric](op binOp) func(d, a, b []T, sa, sb int) {
	switch op {
	case opAdd:
		return vecAdd[T]
	case opSub:
		return vecSub[T]
	case opMul:
		return vecMul[T]
	}
	return vecDiv[T]
}

var errIntDivZero = errors.New("integer division by zero")

func binaryTyped[T numeric](op binOp, bc *bcast, dst, a, b []T, isInt bool) error {
	if op == opDiv && isInt {
		for _, v := range b {
			if v == 0 {
				return errIntDivZero
			}
		}
	}
	runBcast(bc, dst, a, b, vecFunc[T](op))
	return nil
}

// binaryKernel implements Add, Sub, Mul and Div for float32, int32, int64,
// int8 and uint8 with numpy broadcasting. Integer Div truncates toward zero.
func binaryKernel(op binOp) Kernel {
	return func(n *Node, in []*Tensor) ([]*Tensor, error) {
		a, b := in[0], in[1]
		if a.DType != b.DType {
			return nil, fmt.Errorf("operands of types %s and %s", a.DType, b.DType)
		}
		shape, err := BroadcastShapes(a.Shape, b.Shape)
		if err != nil {
			return nil, err
		}
		out := New(a.DType, shape...)
		bc := newBcast(a.Shape, b.Shape, shape)
		switch a.DType {
		case Float32:
			err = binaryTyped(op, &bc, out.F32, a.F32, b.F32, false)
		case Int32:
			err = binaryTyped(op, &bc, out.I32, a.I32, b.I32, true)
		case Int64:
			err = binaryTyped(op, &bc, out.I64, a.I64, b.I64, true)
		case Int8:
			err = binaryTyped(op, &bc, out.I8, a.I8, b.I8, true)
		case Uint8:
			err = binaryTyped(op, &bc, out.U8, a.U8, b.U8, true)
		default:
			return nil, fmt.Errorf("element type %s is not supported", a.DType)
		}
		if err != nil {
			return nil, err
		}
		return []*Tensor{out}, nil
	}
}

// unaryOp is an elementwise function with a float32 kernel and optional
// integer kernels. Each writes dst from src; dst may be src.
type unaryOp struct {
	f32 func(dst, src []float32)
	i8  func(dst, src []int8)
	i32 func(dst, src []int32)
	i64 func(dst, src []int64)
	u8  func(dst, src []uint8)
}

// reluF32 sets dst to max(src, 0), with the AVX2 kernel where the CPU has
// it; dst may be src.
func reluF32(dst, src []float32) { reluF32On(haveAVX2FMA, dst, src) }

// reluF32On is reluF32 with the AVX2 kernel for the multiples of eight if
// simd is set (only where haveAVX2FMA), in Go otherwise.
func reluF32On(simd bool, dst, src []float32) {
	src = src[:len(dst)]
	i := 0
	if simd && len(dst) >= 8 {
		i = len(dst) &^ 7
		reluAVX(&dst[0], &src[0], i)
	}
	for ; i < len(dst); i++ {
		dst[i] = max(src[i], 0)
	}
}

func reluInt[T int8 | int32 | int64](dst, src []T) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = max(v, 0)
	}
}

// sigmoidF32 computes 1/(1+e^-x) with expNegF32, in float32: within a few
// ulps of the float64 formula (TestSigmoidAccuracy), and several times
// faster. NaN stays NaN.
func sigmoidF32(dst, src []float32) { sigmoidF32On(haveAVX2FMA, dst, src) }

// sigmoidF32On is sigmoidF32 with the AVX2 kernel for the multiples of
// eight if simd is set (only where haveAVX2FMA), in Go otherwise.
func sigmoidF32On(simd bool, dst, src []float32) {
	src = src[:len(dst)]
	if simd && len(dst) >= 8 {
		k := sigmoidConstants()
		n := len(dst) &^ 7
		sigmoidAVX(&dst[0], &src[0], n, &k)
		dst, src = dst[n:], src[n:]
	}
	for i, v := range src {
		if v >= 0 {
			dst[i] = 1 / (1 + expNegF32(v))
		} else if v < 0 {
			e := expNegF32(-v)
			dst[i] = e / (1 + e)
		} else {
			dst[i] = v // NaN
		}
	}
}

// Constants of expNegF32, which sigmoidAVX reads.
const (
	expLog2e = 1.44269504088896341
	expLn2Hi = 0.693359375
	expLn2Lo = -2.12194440e-4
	expMaxX  = 87
)

// sigmoidConstants are sigmoidAVX's constants, eight copies each.
func sigmoidConstants() [13][8]uint32 {
	var k [13][8]uint32
	vals := [13]uint32{0x7fffffff, math.Float32bits(expMaxX), math.Float32bits(expLog2e),
		math.Float32bits(expLn2Hi), math.Float32bits(expLn2Lo),
		math.Float32bits(1.0 / 5040), math.Float32bits(1.0 / 720), math.Float32bits(1.0 / 120),
		math.Float32bits(1.0 / 24), math.Float32bits(1.0 / 6), math.Float32bits(1.0 / 2), math.Float32bits(1), 127}
	for i, v := range vals {
		for j := range k[i] {
			k[i][j] = v
		}
	}
	return k
}

// Abramowitz and Stegun's 7.1.26 approximation of erf: absolute error
// under 1.5e-7 for every x.
const (
	erfP  = 0.3275911
	erfA1 = 0.254829592
	erfA2 = -0.284496736
	erfA3 = 1.421413741
	erfA4 = -1.453152027
	erfA5 = 1.061405429
)

// erfF32s computes erf over src into dst, with the AVX2 kernel for the
// multiples of eight where there is one.
func erfF32s(dst, src []float32) { erfF32On(haveAVX2FMA, dst, src) }

// erfF32On is erfF32s with the AVX2 kernel if simd is set (only where
// haveAVX2FMA), in Go otherwise.
func erfF32On(simd bool, dst, src []float32) {
	src = src[:len(dst)]
	if simd && len(dst) >= 8 {
		k := erfConstants()
		n := len(dst) &^ 7
		erfAVX(&dst[0], &src[0], n, &k)
		dst, src = dst[n:], src[n:]
	}
	for i, v := range src {
		dst[i] = erfF32(v)
	}
}

// erfF32 is erf(x) by 7.1.26 in float32, e^{-x²} by expNegF32: within
// 6e-7 of math.Erf (TestErfAccuracy). NaN stays NaN.
func erfF32(x float32) float32 {
	a := float32(math.Abs(float64(x)))
	t := 1 / (1 + erfP*a)
	y := 1 - ((((erfA5*t+erfA4)*t+erfA3)*t+erfA2)*t+erfA1)*t*expNegF32(a*a)
	if x != x {
		return x
	}
	return float32(math.Copysign(float64(y), float64(x)))
}

// erfConstants are erfAVX's constants, eight copies each: sigmoidAVX's,
// then p, a5, a4, a3, a2, the sign mask and a1.
func erfConstants() [20][8]uint32 {
	var k [20][8]uint32
	sig := sigmoidConstants()
	copy(k[:], sig[:])
	for i, v := range []uint32{math.Float32bits(erfP), math.Float32bits(erfA5), math.Float32bits(erfA4),
		math.Float32bits(erfA3), math.Float32bits(erfA2), 0x80000000, math.Float32bits(erfA1)} {
		for j := range k[13+i] {
			k[13+i][j] = v
		}
	}
	return k
}

// expNegF32 is e^-x for x >= 0 in float32: -x = n·ln2 + r with |r| <=
// ln2/2 (ln2 split in two parts so that r is exact), e^r by its Taylor
// polynomial to degree 7 (error below 2e-8 of the result on that range),
// scaled by 2^n through the exponent bits. Values of x beyond 87 give
// e^-87, about 1.6e-38, where sigmoid is 0 to float32 in any case.
func expNegF32(x float32) float32 {
	y := -min(x, expMaxX)
	n := float32(math.RoundToEven(float64(y * expLog2e)))
	r := y - n*expLn2Hi - n*expLn2Lo
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
	return p * math.Float32frombits(uint32(int32(n)+127)<<23)
}

func tanhF32(dst, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = float32(math.Tanh(float64(v)))
	}
}

// apply computes u over t's data into out (which may be t).
func (u unaryOp) apply(out, t *Tensor) error {
	switch {
	case t.DType == Float32 && u.f32 != nil:
		u.f32(out.F32, t.F32)
	case t.DType == Int32 && u.i32 != nil:
		u.i32(out.I32, t.I32)
	case t.DType == Int64 && u.i64 != nil:
		u.i64(out.I64, t.I64)
	case t.DType == Int8 && u.i8 != nil:
		u.i8(out.I8, t.I8)
	case t.DType == Uint8 && u.u8 != nil:
		u.u8(out.U8, t.U8)
	default:
		return fmt.Errorf("element type %s is not supported", t.DType)
	}
	return nil
}

func (u unaryOp) kernel() Kernel {
	return func(n *Node, in []*Tensor) ([]*Tensor, error) {
		out := New(in[0].DType, in[0].Shape...)
		if err := u.apply(out, in[0]); err != nil {
			return nil, err
		}
		return []*Tensor{out}, nil
	}
}

func (u unaryOp) inPlace() func(n *Node, t *Tensor) error {
	return func(n *Node, t *Tensor) error { return u.apply(t, t) }
}

// softmaxF32 computes softmax (or log-softmax) of src along the middle
// dimension of the shape [outer, l, inner] into dst (which may be src).
func softmaxF32(dst, src []float32, outer, l, inner int, log bool) {
	if l == 0 {
		return
	}
	if inner == 1 {
		softmaxRows(dst, src, outer, l, log) // softmax.go
		return
	}
	for o := range outer {
		base := o * l * inner
		for j := range inner {
			off := base + j
			mx := float32(math.Inf(-1))
			for k := range l {
				mx = max(mx, src[off+k*inner])
			}
			if math.IsInf(float64(mx), -1) {
				mx = 0 // every value is -Inf: softmax gives NaN as the reference does
			}
			sum := 0.0
			if log {
				for k := range l {
					sum += math.Exp(float64(src[off+k*inner] - mx))
				}
				ls := float32(math.Log(sum))
				for k := range l {
					i := off + k*inner
					dst[i] = src[i] - mx - ls
				}
				continue
			}
			for k := range l {
				i := off + k*inner
				e := math.Exp(float64(src[i] - mx))
				dst[i] = float32(e)
				sum += e
			}
			inv := 1 / sum
			for k := range l {
				i := off + k*inner
				dst[i] = float32(float64(dst[i]) * inv)
			}
		}
	}
}

// softmaxDims splits shape at axis into [outer, l, inner].
func softmaxDims(shape []int, axis int64) (outer, l, inner int, err error) {
	r := int64(len(shape))
	if r == 0 {
		return 1, 1, 1, nil
	}
	if axis < -r || axis >= r {
		return 0, 0, 0, fmt.Errorf("axis %d out of range for rank %d", axis, r)
	}
	if axis < 0 {
		axis += r
	}
	return Size(shape[:axis]), shape[axis], Size(shape[axis+1:]), nil
}

func softmaxApply(n *Node, out, t *Tensor, log bool) error {
	if t.DType != Float32 {
		return fmt.Errorf("element type %s is not supported", t.DType)
	}
	outer, l, inner, err := softmaxDims(t.Shape, n.Int("axis", -1))
	if err != nil {
		return err
	}
	softmaxF32(out.F32, t.F32, outer, l, inner, log)
	return nil
}

func softmaxKernel(log bool) Kernel {
	return func(n *Node, in []*Tensor) ([]*Tensor, error) {
		out := New(in[0].DType, in[0].Shape...)
		if err := softmaxApply(n, out, in[0], log); err != nil {
			return nil, err
		}
		return []*Tensor{out}, nil
	}
}

func softmaxInPlace(log bool) func(n *Node, t *Tensor) error {
	return func(n *Node, t *Tensor) error { return softmaxApply(n, t, t, log) }
}
