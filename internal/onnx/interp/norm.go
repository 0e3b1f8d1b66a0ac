package interp

import (
	"fmt"
	"math"
	"runtime"
)

// addNormOps registers LayerNormalization and InstanceNormalization.
func addNormOps(t ops) {
	t["LayerNormalization"] = Op{MinOpset: 17, MaxOpset: MaxOpset, Check: checkLayerNorm, Run: layerNorm, Fresh: true}
	t["InstanceNormalization"] = Op{MinOpset: 6, MaxOpset: MaxOpset, Check: checkInputs(3, 3), Run: instanceNorm, Fresh: true}
}

func checkLayerNorm(n *Node) error {
	in := n.Proto.GetInput()
	if len(in) < 2 || len(in) > 3 || in[0] == "" || in[1] == "" {
		return fmt.Errorf("%d inputs, want X, Scale and optional B", len(in))
	}
	if k := nnOutputs(n); k < 1 || k > 3 {
		return fmt.Errorf("%d outputs, want Y and optional Mean and InvStdDev", k)
	}
	if s := n.Int("stash_type", 1); s != 1 {
		return fmt.Errorf("attribute stash_type %d: %w", s, ErrUnsupported)
	}
	if e := n.Float("epsilon", 1e-5); !(e >= 0) {
		return fmt.Errorf("attribute epsilon is %v, want a non-negative number", e)
	}
	return nil
}

// normParam returns a float32 parameter broadcast to shape (nil stays nil).
func normParam(p *Tensor, name string, shape []int) ([]float32, error) {
	if p == nil {
		return nil, nil
	}
	if p.DType != Float32 {
		return nil, fmt.Errorf("input %s has type %s, want float32", name, p.DType)
	}
	if ShapeString(p.Shape) == ShapeString(shape) || (p.Len() == Size(shape) && len(p.Shape) <= len(shape) && BroadcastsTo(p.Shape, shape)) {
		return p.F32, nil
	}
	if !BroadcastsTo(p.Shape, shape) {
		return nil, fmt.Errorf("input %s of shape %s does not broadcast to the normalized shape %s", name, ShapeString(p.Shape), ShapeString(shape))
	}
	full, err := copyView(p, shape, 0, broadcastView(p.Shape, shape))
	if err != nil {
		return nil, err
	}
	return full.F32, nil
}

// layerNorm normalizes X over the dimensions from axis on: Y = (X - mean)
// / sqrt(var + epsilon) * Scale + B, with Mean and InvStdDev as optional
// outputs.
func layerNorm(n *Node, in []*Tensor) ([]*Tensor, error) {
	x := in[0]
	if x.DType != Float32 {
		return nil, fmt.Errorf("input X has type %s, want float32", x.DType)
	}
	r := len(x.Shape)
	axis, err := NormAxis(n.Int("axis", -1), r)
	if err != nil {
		return nil, err
	}
	norm := x.Shape[axis:]
	scale, err := normParam(in[1], "Scale", norm)
	if err != nil {
		return nil, err
	}
	var bias []float32
	if len(in) > 2 {
		if bias, err = normParam(in[2], "B", norm); err != nil {
			return nil, err
		}
	}
	eps := n.Float("epsilon", 1e-5)
	rows, l := Size(x.Shape[:axis]), Size(norm)
	y := New(Float32, x.Shape...)
	statShape := append([]int{}, x.Shape[:axis]...)
	for range norm {
		statShape = append(statShape, 1)
	}
	mean, inv := New(Float32, statShape...), New(Float32, statShape...)
	if l > 0 {
		normRows(rows, l, func(r0, r1 int) {
			for i := r0; i < r1; i++ {
				src, dst := x.F32[i*l:(i+1)*l], y.F32[i*l:(i+1)*l]
				m, s := meanInvStd(src, eps)
				mean.F32[i], inv.F32[i] = m, s
				normalizeRow(haveAVX2FMA, dst, src, m, s, scale, bias)
			}
		})
	}
	outs := []*Tensor{y, mean, inv}
	return outs[:max(1, nnOutputs(n))], nil
}

// meanInvStd returns the mean of x and 1/sqrt(variance + eps), in two
// passes (the variance is the mean square deviation), with the AVX2
// kernels where the CPU has them.
func meanInvStd(x []float32, eps float32) (mean, inv float32) {
	return meanInvStdOn(haveAVX2FMA, x, eps)
}

// meanInvStdOn is meanInvStd with the AVX2 kernels for the multiples of
// eight if simd is set (only where haveAVX2FMA), in Go otherwise.
func meanInvStdOn(simd bool, x []float32, eps float32) (mean, inv float32) {
	v := 0
	if simd {
		v = len(x) &^ 7
	}
	var sum float32
	if v > 0 {
		sum = sumAVX(&x[0], v)
	}
	sum += sumLanes(x[v:])
	mean = sum / float32(len(x))
	var sq float32
	if v > 0 {
		sq = sumSqDevAVX(&x[0], v, mean)
	}
	sq += sumSqDevLanes(x[v:], mean)
	variance := sq / float32(len(x))
	return mean, float32(1 / math.Sqrt(float64(variance+eps)))
}

// sumLanes sums x in eight float32 lanes.
func sumLanes(x []float32) float32 {
	var s [8]float32
	i := 0
	for ; i+8 <= len(x); i += 8 {
		v := x[i : i+8 : i+8]
		s[0] += v[0]
		s[1] += v[1]
		s[2] += v[2]
		s[3] += v[3]
		s[4] += v[4]
		s[5] += v[5]
		s[6] += v[6]
		s[7] += v[7]
	}
	for ; i < len(x); i++ {
		s[0] += x[i]
	}
	return (s[0] + s[1]) + (s[2] + s[3]) + (s[4] + s[5]) + (s[6] + s[7])
}

// sumSqDevLanes sums (x - mean)² in eight float32 lanes.
func sumSqDevLanes(x []float32, mean float32) float32 {
	var s [8]float32
	i := 0
	for ; i+8 <= len(x); i += 8 {
		v := x[i : i+8 : i+8]
		d0, d1, d2, d3 := v[0]-mean, v[1]-mean, v[2]-mean, v[3]-mean
		d4, d5, d6, d7 := v[4]-mean, v[5]-mean, v[6]-mean, v[7]-mean
		s[0] += d0 * d0
		s[1] += d1 * d1
		s[2] += d2 * d2
		s[3] += d3 * d3
		s[4] += d4 * d4
		s[5] += d5 * d5
		s[6] += d6 * d6
		s[7] += d7 * d7
	}
	for ; i < len(x); i++ {
		d := x[i] - mean
		s[0] += d * d
	}
	return (s[0] + s[1]) + (s[2] + s[3]) + (s[4] + s[5]) + (s[6] + s[7])
}

// normalizeRow sets dst = (src - mean) * inv * scale + bias (scale and bias
// optional, of src's length), with the AVX2 kernel for the multiples of
// eight if simd is set (only where haveAVX2FMA) and both are given.
func normalizeRow(simd bool, dst, src []float32, mean, inv float32, scale, bias []float32) {
	src = src[:len(dst)]
	if simd && scale != nil && bias != nil && len(dst) >= 8 {
		v := len(dst) &^ 7
		scale, bias = scale[:len(dst)], bias[:len(dst)]
		normAffineAVX(&dst[0], &src[0], &scale[0], &bias[0], v, mean, inv)
		dst, src, scale, bias = dst[v:], src[v:], scale[v:], bias[v:]
	}
	switch {
	case scale != nil && bias != nil:
		scale, bias = scale[:len(dst)], bias[:len(dst)]
		for j, v := range src {
			dst[j] = (v-mean)*inv*scale[j] + bias[j]
		}
	case scale != nil:
		scale = scale[:len(dst)]
		for j, v := range src {
			dst[j] = (v - mean) * inv * scale[j]
		}
	default:
		for j, v := range src {
			dst[j] = (v - mean) * inv
		}
	}
}

// normParallelElements is the tensor size above which normalization rows
// are split between goroutines.
const normParallelElements = 1 << 16

// normRows calls fn over [0, rows), split between goroutines when the
// rows of l elements are many enough to repay them.
func normRows(rows, l int, fn func(r0, r1 int)) {
	workers := 1
	if rows > 1 && rows*l >= normParallelElements {
		workers = min(runtime.GOMAXPROCS(0), 8, rows)
	}
	parallelSplit(rows, workers, fn)
}

// instanceNorm normalizes each channel of each image over its spatial
// dimensions, then scales and shifts it by the channel's scale and B.
func instanceNorm(n *Node, in []*Tensor) ([]*Tensor, error) {
	x, scale, bias := in[0], in[1], in[2]
	if x.DType != Float32 || len(x.Shape) < 3 {
		return nil, fmt.Errorf("input X must be a float32 tensor N x C x spatial, got %s %s", x.DType, ShapeString(x.Shape))
	}
	C := x.Shape[1]
	for _, p := range []struct {
		name string
		t    *Tensor
	}{{"scale", scale}, {"B", bias}} {
		if p.t.DType != Float32 || len(p.t.Shape) != 1 || p.t.Shape[0] != C {
			return nil, fmt.Errorf("input %s must be a float32 vector of the %d channels, got %s %s", p.name, C, p.t.DType, ShapeString(p.t.Shape))
		}
	}
	eps := n.Float("epsilon", 1e-5)
	l := Size(x.Shape[2:])
	y := New(Float32, x.Shape...)
	if l == 0 {
		return []*Tensor{y}, nil
	}
	normRows(x.Shape[0]*C, l, func(p0, p1 int) {
		for p := p0; p < p1; p++ {
			c := p % C
			src, dst := x.F32[p*l:(p+1)*l], y.F32[p*l:(p+1)*l]
			m, s := meanInvStd(src, eps)
			k, b := s*scale.F32[c], bias.F32[c]
			for j, v := range src {
				dst[j] = (v-m)*k + b
			}
		}
	})
	return []*Tensor{y}, nil
}
