package interp

import "fmt"

// elem are the element types a tensor holds.
type elem interface {
	~float32 | ~int32 | ~int64 | ~int8 | ~uint8 | ~bool
}

// dtypeOf is the DType of the element type T.
func dtypeOf[T elem]() DType {
	var z T
	switch any(z).(type) {
	case float32:
		return Float32
	case int32:
		return Int32
	case int64:
		return Int64
	case int8:
		return Int8
	case uint8:
		return Uint8
	}
	return Bool
}

// dataOf returns t's data slice as []T; T must match t.DType.
func dataOf[T elem](t *Tensor) []T {
	var z T
	switch any(z).(type) {
	case float32:
		return any(t.F32).([]T)
	case int32:
		return any(t.I32).([]T)
	case int64:
		return any(t.I64).([]T)
	case int8:
		return any(t.I8).([]T)
	case uint8:
		return any(t.U8).([]T)
	}
	return any(t.B).([]T)
}

// zipVec lifts an element function to runBcast's vector kernel.
func zipVec[T, U any](f func(x, y T) U) func(d []U, a, b []T, sa, sb int) {
	return func(d []U, a, b []T, sa, sb int) {
		switch {
		case sa == 1 && sb == 1:
			a, b = a[:len(d)], b[:len(d)]
			for i := range d {
				d[i] = f(a[i], b[i])
			}
		case sa == 1:
			a, y := a[:len(d)], b[0]
			for i := range d {
				d[i] = f(a[i], y)
			}
		case sb == 1:
			x, b := a[0], b[:len(d)]
			for i := range d {
				d[i] = f(x, b[i])
			}
		default:
			v := f(a[0], b[0])
			for i := range d {
				d[i] = v
			}
		}
	}
}

// zip applies f to a and b broadcast against each other (numpy style),
// giving a new tensor of element type U.
func zip[T, U elem](a, b *Tensor, f func(x, y T) U) (*Tensor, error) {
	shape, err := BroadcastShapes(a.Shape, b.Shape)
	if err != nil {
		return nil, err
	}
	out := New(dtypeOf[U](), shape...)
	bc := newBcast(a.Shape, b.Shape, shape)
	runBcast(&bc, dataOf[U](out), dataOf[T](a), dataOf[T](b), zipVec(f))
	return out, nil
}

// sameTypes checks that every present input has the type of the first.
func sameTypes(in []*Tensor) error {
	for i, t := range in {
		if t != nil && in[0] != nil && t.DType != in[0].DType {
			return fmt.Errorf("input %d is %s, input 0 is %s", i, t.DType, in[0].DType)
		}
	}
	return nil
}

// expandTo copies src (of shape from) broadcast to shape to, which from
// must broadcast to.
func expandTo[T any](src []T, from, to []int) []T {
	n := Size(to)
	dst := make([]T, n)
	if n == 0 {
		return dst
	}
	if len(src) == n {
		copy(dst, src)
		return dst
	}
	r := len(to)
	stride := make([]int, r) // source stride per output dim, 0 where broadcast
	s := 1
	for i := r - 1; i >= 0; i-- {
		j := i - (r - len(from))
		if j >= 0 && from[j] != 1 {
			stride[i] = s
			s *= from[j]
		}
	}
	idx := make([]int, r)
	off := 0
	for o := range dst {
		dst[o] = src[off]
		for k := r - 1; k >= 0; k-- {
			idx[k]++
			off += stride[k]
			if idx[k] < to[k] {
				break
			}
			off -= stride[k] * to[k]
			idx[k] = 0
		}
	}
	return dst
}

// wrap makes a tensor of the given shape over data (not copied).
func wrap[T elem](data []T, shape []int) *Tensor {
	t := &Tensor{DType: dtypeOf[T](), Shape: shape}
	switch d := any(data).(type) {
	case []float32:
		t.F32 = d
	case []int32:
		t.I32 = d
	case []int64:
		t.I64 = d
	case []int8:
		t.I8 = d
	case []uint8:
		t.U8 = d
	case []bool:
		t.B = d
	}
	return t
}
