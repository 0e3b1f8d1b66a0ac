package interp

import (
	"fmt"
	"math"
)

// addActivationOps registers the activations beyond Relu, Sigmoid and
// Tanh, and the elementwise rounding operators.
func addActivationOps(t ops) {
	unary := checkInputs(1, 1)
	for name, a := range map[string]struct {
		min int64
		mk  func(n *Node) func(float64) float64
	}{
		"LeakyRelu": {6, func(n *Node) func(float64) float64 {
			alpha := float64(n.Float("alpha", 0.01))
			return func(x float64) float64 {
				if x < 0 {
					return alpha * x
				}
				return x
			}
		}},
		"Elu": {6, func(n *Node) func(float64) float64 {
			alpha := float64(n.Float("alpha", 1))
			return func(x float64) float64 {
				if x < 0 {
					return alpha * (math.Exp(x) - 1)
				}
				return x
			}
		}},
		"Selu": {6, func(n *Node) func(float64) float64 {
			alpha := float64(n.Float("alpha", 1.67326319217681884765625))
			gamma := float64(n.Float("gamma", 1.05070102214813232421875))
			return func(x float64) float64 {
				if x <= 0 {
					return gamma * alpha * (math.Exp(x) - 1)
				}
				return gamma * x
			}
		}},
		"Celu": {12, func(n *Node) func(float64) float64 {
			alpha := float64(n.Float("alpha", 1))
			return func(x float64) float64 { return max(0, x) + min(0, alpha*(math.Exp(x/alpha)-1)) }
		}},
		"ThresholdedRelu": {10, func(n *Node) func(float64) float64 {
			alpha := float64(n.Float("alpha", 1))
			return func(x float64) float64 {
				if x > alpha {
					return x
				}
				return 0
			}
		}},
		"HardSigmoid": {6, func(n *Node) func(float64) float64 {
			alpha, beta := float64(n.Float("alpha", 0.2)), float64(n.Float("beta", 0.5))
			return func(x float64) float64 { return max(0, min(1, alpha*x+beta)) }
		}},
		"HardSwish": {14, func(*Node) func(float64) float64 {
			return func(x float64) float64 { return x * max(0, min(1, x/6+0.5)) }
		}},
		"Softplus": {1, func(*Node) func(float64) float64 {
			return func(x float64) float64 {
				if x > 0 { // log(1+e^x) = x + log(1+e^-x), without overflow
					return x + math.Log1p(math.Exp(-x))
				}
				return math.Log1p(math.Exp(x))
			}
		}},
		"Softsign": {1, func(*Node) func(float64) float64 {
			return func(x float64) float64 { return x / (1 + math.Abs(x)) }
		}},
		"Floor": {6, func(*Node) func(float64) float64 { return math.Floor }},
		"Ceil":  {6, func(*Node) func(float64) float64 { return math.Ceil }},
		"Round": {11, func(*Node) func(float64) float64 { return math.RoundToEven }},
		"Gelu":  {20, geluFunc},
	} {
		t[name] = Op{MinOpset: a.min, MaxOpset: MaxOpset, Check: unary, Run: floatActKernel(a.mk), Fresh: true, InPlace: floatActInPlace(a.mk)}
	}
	// Gelu is defined at opset 20, newer than MaxOpset: registered so that
	// it loads once Load accepts opset 20, and refused with its opset until.
	gelu := withCheck(t["Gelu"], checkGelu)
	gelu.MaxOpset = 20
	t["Gelu"] = gelu
	erf := unaryOp{f32: erfF32s}
	t["Erf"] = Op{MinOpset: 9, MaxOpset: MaxOpset, Check: unary, Run: erf.kernel(), Fresh: true, InPlace: erf.inPlace()}
	t["Sign"] = Op{MinOpset: 9, MaxOpset: MaxOpset, Check: unary, Run: signOp().kernel(), Fresh: true, InPlace: signOp().inPlace()}
	t["Clip"] = Op{MinOpset: 6, MaxOpset: MaxOpset, Check: checkClip, Run: clip, Fresh: true}
	t["PRelu"] = Op{MinOpset: 9, MaxOpset: MaxOpset, Check: checkInputs(2, 2), Run: prelu, Fresh: true}
	t["Dropout"] = Op{MinOpset: 10, MaxOpset: MaxOpset, Check: checkDropout, Run: dropout, View: true}
}

// withCheck returns op with check run after its own.
func withCheck(op Op, check func(n *Node) error) Op {
	op.Check = all(op.Check, check)
	return op
}

// floatActKernel runs the float64 function mk makes for the node over a
// float32 tensor.
func floatActKernel(mk func(n *Node) func(float64) float64) Kernel {
	return func(n *Node, in []*Tensor) ([]*Tensor, error) {
		if in[0].DType != Float32 {
			return nil, fmt.Errorf("element type %s is not supported", in[0].DType)
		}
		out := New(Float32, in[0].Shape...)
		mapF32(mk(n))(out.F32, in[0].F32)
		return []*Tensor{out}, nil
	}
}

func floatActInPlace(mk func(n *Node) func(float64) float64) func(n *Node, t *Tensor) error {
	return func(n *Node, t *Tensor) error {
		if t.DType != Float32 {
			return fmt.Errorf("element type %s is not supported", t.DType)
		}
		mapF32(mk(n))(t.F32, t.F32)
		return nil
	}
}

// geluFunc is Gelu (opset 20): exact with erf, or the tanh approximation.
func geluFunc(n *Node) func(float64) float64 {
	if n.String("approximate", "none") == "tanh" {
		c := math.Sqrt(2 / math.Pi)
		return func(x float64) float64 { return 0.5 * x * (1 + math.Tanh(c*(x+0.044715*x*x*x))) }
	}
	return func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }
}

func checkGelu(n *Node) error {
	if a := n.String("approximate", "none"); a != "none" && a != "tanh" {
		return fmt.Errorf("approximate is %q, want none or tanh", a)
	}
	return nil
}

func signNum[T float32 | int8 | uint8 | int32 | int64](dst, src []T) {
	src = src[:len(dst)]
	var minusOne T
	minusOne-- // -1 (for uint8, whose values are never negative, unused)
	for i, v := range src {
		switch {
		case v > 0:
			dst[i] = 1
		case v < 0:
			dst[i] = minusOne
		default:
			dst[i] = v // 0 stays 0 (and -0, NaN stay themselves)
		}
	}
}

func signOp() unaryOp {
	return unaryOp{f32: signNum[float32], i8: signNum[int8], u8: signNum[uint8], i32: signNum[int32], i64: signNum[int64]}
}

// checkClip accepts Clip's attribute form (opset < 11: min and max
// attributes, one input) and its input form (min and max as optional
// scalar inputs).
func checkClip(n *Node) error {
	in := n.Proto.GetInput()
	if n.Opset < 11 {
		if len(in) != 1 || in[0] == "" {
			return fmt.Errorf("%d inputs, want 1 at opset %d", len(in), n.Opset)
		}
	} else if len(in) < 1 || len(in) > 3 || in[0] == "" {
		return fmt.Errorf("%d inputs, want 1 to 3 with the first present", len(in))
	}
	if len(n.Proto.GetOutput()) != 1 {
		return fmt.Errorf("%d outputs, want 1", len(n.Proto.GetOutput()))
	}
	return nil
}

func clip(n *Node, in []*Tensor) ([]*Tensor, error) {
	x := in[0]
	if n.Opset < 11 {
		if x.DType != Float32 {
			return nil, fmt.Errorf("element type %s is not supported", x.DType)
		}
		lo, hi := n.Float("min", -math.MaxFloat32), n.Float("max", math.MaxFloat32)
		return []*Tensor{clipTyped(x, &lo, &hi)}, nil
	}
	for i := 1; i < len(in); i++ {
		if b := in[i]; b != nil && (b.DType != x.DType || b.Len() != 1) {
			return nil, fmt.Errorf("input %d must be a scalar of the input's type %s, got %s %s", i, x.DType, b.DType, ShapeString(b.Shape))
		}
	}
	switch x.DType {
	case Float32:
		return []*Tensor{clipBounds[float32](x, in)}, nil
	case Int32:
		return []*Tensor{clipBounds[int32](x, in)}, nil
	case Int64:
		return []*Tensor{clipBounds[int64](x, in)}, nil
	case Int8:
		return []*Tensor{clipBounds[int8](x, in)}, nil
	case Uint8:
		return []*Tensor{clipBounds[uint8](x, in)}, nil
	}
	return nil, fmt.Errorf("element type %s is not supported", x.DType)
}

// clipBounds reads the optional min and max inputs and clips x.
func clipBounds[T numeric](x *Tensor, in []*Tensor) *Tensor {
	var lo, hi *T
	if len(in) > 1 && in[1] != nil {
		lo = &dataOf[T](in[1])[0]
	}
	if len(in) > 2 && in[2] != nil {
		hi = &dataOf[T](in[2])[0]
	}
	return clipTyped(x, lo, hi)
}

// clipTyped gives min(max(x, lo), hi), skipping a nil bound: where lo is
// above hi every value becomes hi, as the ONNX spec says. NaN stays NaN.
func clipTyped[T numeric](x *Tensor, lo, hi *T) *Tensor {
	out := New(x.DType, x.Shape...)
	dst, src := dataOf[T](out), dataOf[T](x)
	l, h := lowest[T](), highest[T]()
	if lo != nil {
		l = *lo
	}
	if hi != nil {
		h = *hi
	}
	if d, ok := any(dst).([]float32); ok {
		clampF32On(haveAVX2FMA, d, any(src).([]float32), any(l).(float32), any(h).(float32))
	} else {
		clampTo(dst, src, l, h)
	}
	return out
}

// clampTo writes src clamped to [lo, hi] (hi where lo > hi) into dst, in
// one pass.
func clampTo[T numeric](dst, src []T, lo, hi T) {
	src = src[:len(dst)]
	for i, v := range src {
		if v < lo {
			v = lo
		}
		if v > hi {
			v = hi
		}
		dst[i] = v
	}
}

// lowest and highest are T's extreme values: the bounds a Clip without a
// min or a max has (infinities for float32).
func lowest[T numeric]() T {
	var z T
	switch p := any(&z).(type) {
	case *float32:
		*p = float32(math.Inf(-1))
	case *int32:
		*p = math.MinInt32
	case *int64:
		*p = math.MinInt64
	case *int8:
		*p = math.MinInt8
	case *uint8:
		*p = 0
	}
	return z
}

func highest[T numeric]() T {
	var z T
	switch p := any(&z).(type) {
	case *float32:
		*p = float32(math.Inf(1))
	case *int32:
		*p = math.MaxInt32
	case *int64:
		*p = math.MaxInt64
	case *int8:
		*p = math.MaxInt8
	case *uint8:
		*p = math.MaxUint8
	}
	return z
}

// clampF32 clamps x to [lo, hi] in place (a Clip fused into a Conv), with
// the AVX2 kernel for the multiples of eight where there is one.
func clampF32(x []float32, lo, hi float32) { clampF32On(haveAVX2FMA, x, x, lo, hi) }

// clampF32On is clampTo for float32, with the AVX2 kernel for the
// multiples of eight if simd is set (only where haveAVX2FMA).
func clampF32On(simd bool, dst, src []float32, lo, hi float32) {
	src = src[:len(dst)]
	i := 0
	if simd && len(dst) >= 8 {
		i = len(dst) &^ 7
		clampAVX(&dst[0], &src[0], i, lo, hi)
	}
	clampTo(dst[i:], src[i:], lo, hi)
}

// prelu computes x where x >= 0 and slope*x elsewhere, the slope broadcast
// (unidirectionally) to x.
func prelu(n *Node, in []*Tensor) ([]*Tensor, error) {
	x, slope := in[0], in[1]
	if x.DType != slope.DType {
		return nil, fmt.Errorf("slope is %s, input is %s", slope.DType, x.DType)
	}
	if !BroadcastsTo(slope.Shape, x.Shape) {
		return nil, fmt.Errorf("slope shape %s does not broadcast to input shape %s", ShapeString(slope.Shape), ShapeString(x.Shape))
	}
	var out *Tensor
	var err error
	switch x.DType {
	case Float32:
		out, err = zip(x, slope, preluElem[float32])
	case Int32:
		out, err = zip(x, slope, preluElem[int32])
	case Int64:
		out, err = zip(x, slope, preluElem[int64])
	default:
		return nil, fmt.Errorf("element type %s is not supported", x.DType)
	}
	if err != nil {
		return nil, err
	}
	return []*Tensor{out}, nil
}

func preluElem[T float32 | int32 | int64](x, s T) T {
	if x < 0 {
		return s * x
	}
	return x
}

// checkDropout accepts the opset 10 form (ratio attribute, one input) and
// the opset 12 form (ratio and training_mode as optional inputs), with an
// optional mask output.
func checkDropout(n *Node) error {
	in, out := n.Proto.GetInput(), n.Proto.GetOutput()
	maxIn := 3
	if n.Opset < 12 {
		maxIn = 1
	}
	if len(in) < 1 || len(in) > maxIn || in[0] == "" {
		return fmt.Errorf("%d inputs, want 1 to %d with the first present", len(in), maxIn)
	}
	if len(out) < 1 || len(out) > 2 || out[0] == "" {
		return fmt.Errorf("%d outputs, want 1 or 2 with the first present", len(out))
	}
	if r := n.Float("ratio", 0.5); r < 0 || r >= 1 {
		return fmt.Errorf("ratio is %g, want [0, 1)", r)
	}
	return nil
}

// dropout is inference Dropout: the output is the input itself (the op is
// a View) and the mask, when asked for, is all true. Training mode with a
// nonzero ratio is refused: this is an inference runtime.
func dropout(n *Node, in []*Tensor) ([]*Tensor, error) {
	x := in[0]
	ratio := float64(n.Float("ratio", 0.5))
	if len(in) > 1 && in[1] != nil {
		r := in[1]
		if r.DType != Float32 || r.Len() != 1 {
			return nil, fmt.Errorf("ratio must be a float scalar, got %s %s", r.DType, ShapeString(r.Shape))
		}
		ratio = float64(r.F32[0])
	}
	if len(in) > 2 && in[2] != nil {
		tm := in[2]
		if tm.DType != Bool || tm.Len() != 1 {
			return nil, fmt.Errorf("training_mode must be a bool scalar, got %s %s", tm.DType, ShapeString(tm.Shape))
		}
		if tm.B[0] && ratio != 0 {
			return nil, fmt.Errorf("training_mode with ratio %g is not implemented (inference runtime)", ratio)
		}
	}
	res := []*Tensor{x}
	if outs := n.Proto.GetOutput(); len(outs) > 1 && outs[1] != "" {
		mask := New(Bool, x.Shape...)
		for i := range mask.B {
			mask.B[i] = true
		}
		res = append(res, mask)
	}
	return res, nil
}
