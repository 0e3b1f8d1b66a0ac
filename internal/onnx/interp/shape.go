package interp

import (
	"fmt"
	"math"
)

// NormAxis maps a possibly negative axis into [0, rank), or errors.
func NormAxis(axis int64, rank int) (int, error) {
	r := int64(rank)
	if axis < -r || axis >= r {
		return 0, fmt.Errorf("axis %d out of range for rank %d", axis, rank)
	}
	if axis < 0 {
		axis += r
	}
	return int(axis), nil
}

func identity(n *Node, in []*Tensor) ([]*Tensor, error) {
	return []*Tensor{in[0]}, nil
}

func flatten(n *Node, in []*Tensor) ([]*Tensor, error) {
	t := in[0]
	r := int64(len(t.Shape))
	axis := n.Int("axis", 1)
	if axis < -r || axis > r {
		return nil, fmt.Errorf("axis %d out of range for rank %d", axis, r)
	}
	if axis < 0 {
		axis += r
	}
	return []*Tensor{t.WithShape([]int{Size(t.Shape[:axis]), Size(t.Shape[axis:])})}, nil
}

func reshape(n *Node, in []*Tensor) ([]*Tensor, error) {
	t, s := in[0], in[1]
	if s == nil || s.DType != Int64 || len(s.Shape) != 1 {
		return nil, fmt.Errorf("shape must be a 1-D int64 tensor")
	}
	allowZero := n.Int("allowzero", 0) == 1
	shape := make([]int, len(s.I64))
	infer := -1
	known := 1
	for i, d := range s.I64 {
		switch {
		case d == -1:
			if infer >= 0 {
				return nil, fmt.Errorf("shape %v has more than one -1", s.I64)
			}
			infer = i
			continue
		case d == 0 && !allowZero:
			if i >= len(t.Shape) {
				return nil, fmt.Errorf("shape %v copies dimension %d of a rank %d input", s.I64, i, len(t.Shape))
			}
			shape[i] = t.Shape[i]
		case d < 0 || d > maxElements:
			return nil, fmt.Errorf("shape %v has dimension %d", s.I64, d)
		default:
			shape[i] = int(d)
		}
		if shape[i] > 0 && known > maxElements/shape[i] {
			return nil, fmt.Errorf("shape %v is too large", s.I64)
		}
		known *= shape[i]
	}
	size := t.Len()
	if infer >= 0 {
		if known == 0 || size%known != 0 {
			return nil, fmt.Errorf("cannot reshape %s to %v", ShapeString(t.Shape), s.I64)
		}
		shape[infer] = size / known
	} else if known != size {
		return nil, fmt.Errorf("cannot reshape %s (%d elements) to %v", ShapeString(t.Shape), size, s.I64)
	}
	return []*Tensor{t.WithShape(shape)}, nil
}

func checkReshape(n *Node) error {
	if c := len(n.Proto.GetInput()); c != 2 {
		return fmt.Errorf("%d inputs, want 2", c)
	}
	if v := n.Int("allowzero", 0); v != 0 && v != 1 {
		return fmt.Errorf("allowzero is %d, want 0 or 1", v)
	}
	return nil
}

// perm reads and checks Transpose's perm for rank r (reversed by default).
func transposePerm(n *Node, r int) ([]int, error) {
	p := n.Ints("perm", nil)
	perm := make([]int, r)
	if p == nil {
		for i := range perm {
			perm[i] = r - 1 - i
		}
		return perm, nil
	}
	if len(p) != r {
		return nil, fmt.Errorf("perm %v for rank %d", p, r)
	}
	seen := make([]bool, r)
	for i, v := range p {
		if v < 0 || v >= int64(r) || seen[v] {
			return nil, fmt.Errorf("perm %v is not a permutation", p)
		}
		seen[v] = true
		perm[i] = int(v)
	}
	return perm, nil
}

func checkTranspose(n *Node) error {
	if p := n.Ints("perm", nil); p != nil {
		_, err := transposePerm(n, len(p))
		return err
	}
	return nil
}

func transpose(n *Node, in []*Tensor) ([]*Tensor, error) {
	t := in[0]
	perm, err := transposePerm(n, len(t.Shape))
	if err != nil {
		return nil, err
	}
	shape := make([]int, len(perm))
	for i, p := range perm {
		shape[i] = t.Shape[p]
	}
	out := New(t.DType, shape...)
	switch t.DType {
	case Float32:
		permute(out.F32, t.F32, t.Shape, perm)
	case Uint8:
		permute(out.U8, t.U8, t.Shape, perm)
	case Int8:
		permute(out.I8, t.I8, t.Shape, perm)
	case Int32:
		permute(out.I32, t.I32, t.Shape, perm)
	case Int64:
		permute(out.I64, t.I64, t.Shape, perm)
	case Bool:
		permute(out.B, t.B, t.Shape, perm)
	}
	return []*Tensor{out}, nil
}

// permute writes src (of shape) transposed by perm into dst, walking dst in
// order and src by strides.
func permute[T any](dst, src []T, shape, perm []int) {
	if len(dst) == 0 {
		return
	}
	r := len(shape)
	if r == 2 && perm[0] == 1 {
		transpose2D(dst, src, shape[0], shape[1])
		return
	}
	strides := make([]int, r)
	s := 1
	for i := r - 1; i >= 0; i-- {
		strides[i] = s
		s *= shape[i]
	}
	dims := make([]int, r) // output dims
	step := make([]int, r) // source stride of each output dim
	for i, p := range perm {
		dims[i] = shape[p]
		step[i] = strides[p]
	}
	if r == 0 {
		dst[0] = src[0]
		return
	}
	idx := make([]int, r)
	inner, innerStep := dims[r-1], step[r-1]
	off := 0
	for o := 0; o < len(dst); o += inner {
		d := dst[o : o+inner]
		for j := range d {
			d[j] = src[off+j*innerStep]
		}
		for k := r - 2; k >= 0; k-- {
			idx[k]++
			off += step[k]
			if idx[k] < dims[k] {
				break
			}
			off -= step[k] * dims[k]
			idx[k] = 0
		}
	}
}

func checkConcat(n *Node) error {
	if !n.Has("axis") {
		return fmt.Errorf("missing attribute axis")
	}
	if len(n.Proto.GetInput()) == 0 {
		return fmt.Errorf("no inputs")
	}
	return nil
}

func concat(n *Node, in []*Tensor) ([]*Tensor, error) {
	first := in[0]
	if first == nil {
		return nil, fmt.Errorf("input 0 is missing")
	}
	axis, err := NormAxis(n.Int("axis", 0), len(first.Shape))
	if err != nil {
		return nil, err
	}
	shape := append([]int{}, first.Shape...)
	shape[axis] = 0
	for i, t := range in {
		if t == nil {
			return nil, fmt.Errorf("input %d is missing", i)
		}
		if t.DType != first.DType || len(t.Shape) != len(first.Shape) {
			return nil, fmt.Errorf("input %d (%s %s) does not match input 0 (%s %s)", i, t.DType, ShapeString(t.Shape), first.DType, ShapeString(first.Shape))
		}
		for d := range t.Shape {
			if d != axis && t.Shape[d] != first.Shape[d] {
				return nil, fmt.Errorf("input %d shape %s does not match input 0 shape %s off axis %d", i, ShapeString(t.Shape), ShapeString(first.Shape), axis)
			}
		}
		shape[axis] += t.Shape[axis]
	}
	out := New(first.DType, shape...)
	outer, inner := Size(shape[:axis]), Size(shape[axis+1:])
	switch first.DType {
	case Float32:
		concatInto(out.F32, in, func(t *Tensor) []float32 { return t.F32 }, outer, inner, axis, shape[axis])
	case Uint8:
		concatInto(out.U8, in, func(t *Tensor) []uint8 { return t.U8 }, outer, inner, axis, shape[axis])
	case Int8:
		concatInto(out.I8, in, func(t *Tensor) []int8 { return t.I8 }, outer, inner, axis, shape[axis])
	case Int32:
		concatInto(out.I32, in, func(t *Tensor) []int32 { return t.I32 }, outer, inner, axis, shape[axis])
	case Int64:
		concatInto(out.I64, in, func(t *Tensor) []int64 { return t.I64 }, outer, inner, axis, shape[axis])
	case Bool:
		concatInto(out.B, in, func(t *Tensor) []bool { return t.B }, outer, inner, axis, shape[axis])
	}
	return []*Tensor{out}, nil
}

func concatInto[T any](dst []T, in []*Tensor, data func(*Tensor) []T, outer, inner, axis, total int) {
	off := 0
	for _, t := range in {
		chunk := t.Shape[axis] * inner
		src := data(t)
		for o := range outer {
			copy(dst[o*total*inner+off:], src[o*chunk:(o+1)*chunk])
		}
		off += chunk
	}
}

func checkCast(n *Node) error {
	if !n.Has("to") {
		return fmt.Errorf("missing attribute to")
	}
	if to := n.Int("to", 0); to > math.MaxInt32 || (!supportedDType(int32(to)) && DType(to) != Float16) {
		return fmt.Errorf("cast to %s: %w", elemTypeName(int32(to)), ErrUnsupported)
	}
	return nil
}

func cast(n *Node, in []*Tensor) ([]*Tensor, error) {
	t := in[0]
	to := DType(n.Int("to", 0))
	half := to == Float16
	if half {
		to = Float32 // FLOAT16 values are kept in float32, rounded
	}
	out := New(to, t.Shape...)
	if err := Convert(out, t); err != nil {
		return nil, err
	}
	if half {
		roundToHalfAll(out.F32)
	}
	return []*Tensor{out}, nil
}

// Convert writes src's values into dst (same size, any supported types) as
// ONNX Cast does: float to integer truncates toward zero, integers wrap,
// nonzero is true and true is 1.
func Convert(dst, src *Tensor) error {
	if dst.Len() != src.Len() {
		return fmt.Errorf("converting %d elements into %d", src.Len(), dst.Len())
	}
	switch src.DType {
	case Float32:
		convertFrom(dst, src.F32)
	case Uint8:
		convertFrom(dst, src.U8)
	case Int8:
		convertFrom(dst, src.I8)
	case Int32:
		convertFrom(dst, src.I32)
	case Int64:
		convertFrom(dst, src.I64)
	case Bool:
		b := make([]uint8, len(src.B))
		for i, v := range src.B {
			if v {
				b[i] = 1
			}
		}
		convertFrom(dst, b)
	default:
		return fmt.Errorf("element type %s is not supported", src.DType)
	}
	return nil
}

func convertFrom[S numeric](dst *Tensor, src []S) {
	switch dst.DType {
	case Float32:
		for i, v := range src {
			dst.F32[i] = float32(v)
		}
	case Uint8:
		for i, v := range src {
			dst.U8[i] = uint8(toInt64(v))
		}
	case Int8:
		for i, v := range src {
			dst.I8[i] = int8(toInt64(v))
		}
	case Int32:
		for i, v := range src {
			dst.I32[i] = int32(toInt64(v))
		}
	case Int64:
		for i, v := range src {
			dst.I64[i] = toInt64(v)
		}
	case Bool:
		for i, v := range src {
			dst.B[i] = v != 0
		}
	}
}

// toInt64 converts with truncation toward zero; NaN gives 0 and values
// beyond the int64 range saturate (Go leaves those conversions undefined).
func toInt64[S numeric](v S) int64 {
	if f, ok := any(v).(float32); ok {
		switch {
		case f != f:
			return 0
		case f >= 9.223372e18:
			return math.MaxInt64
		case f <= -9.223372e18:
			return math.MinInt64
		}
		return int64(f)
	}
	return int64(v)
}
