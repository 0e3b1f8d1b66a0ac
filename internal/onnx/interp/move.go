package interp

import "fmt"

// span is one run of a data-movement kernel: dst[d+i] = src[s+i*stride]
// for i < n, or the fill value when s < 0. Kernels that only move elements
// (Slice, Expand, Tile, Gather, Pad, DepthToSpace...) describe their output
// as spans once, and moveSpans copies them for any element type.
type span struct{ d, s, n, stride int }

// moveSpans writes dst from src as spans say; fill (a one-element tensor of
// dst's type, or nil for zero) is the value of spans without a source.
func moveSpans(dst, src *Tensor, spans []span, fill *Tensor) error {
	if src != nil && src.DType != dst.DType {
		return fmt.Errorf("moving %s elements into a %s tensor", src.DType, dst.DType)
	}
	if fill != nil && (fill.DType != dst.DType || fill.Len() != 1) {
		return fmt.Errorf("fill value must be one %s element", dst.DType)
	}
	if src == nil {
		src = &Tensor{DType: dst.DType}
	}
	switch dst.DType {
	case Float32:
		runSpans(dst.F32, src.F32, spans, fillOf(fill, func(t *Tensor) []float32 { return t.F32 }))
	case Uint8:
		runSpans(dst.U8, src.U8, spans, fillOf(fill, func(t *Tensor) []uint8 { return t.U8 }))
	case Int8:
		runSpans(dst.I8, src.I8, spans, fillOf(fill, func(t *Tensor) []int8 { return t.I8 }))
	case Int32:
		runSpans(dst.I32, src.I32, spans, fillOf(fill, func(t *Tensor) []int32 { return t.I32 }))
	case Int64:
		runSpans(dst.I64, src.I64, spans, fillOf(fill, func(t *Tensor) []int64 { return t.I64 }))
	case Bool:
		runSpans(dst.B, src.B, spans, fillOf(fill, func(t *Tensor) []bool { return t.B }))
	default:
		return fmt.Errorf("element type %s is not supported", dst.DType)
	}
	return nil
}

func fillOf[T any](t *Tensor, data func(*Tensor) []T) T {
	var v T
	if t != nil {
		v = data(t)[0]
	}
	return v
}

func runSpans[T any](dst, src []T, spans []span, fill T) {
	for _, sp := range spans {
		d := dst[sp.d : sp.d+sp.n]
		switch {
		case sp.s < 0:
			for i := range d {
				d[i] = fill
			}
		case sp.stride == 1:
			copy(d, src[sp.s:sp.s+sp.n])
		case sp.stride == 0:
			v := src[sp.s]
			for i := range d {
				d[i] = v
			}
		default:
			s := sp.s
			for i := range d {
				d[i] = src[s]
				s += sp.stride
			}
		}
	}
}

// contiguousStrides returns the row-major element strides of shape.
func contiguousStrides(shape []int) []int {
	st := make([]int, len(shape))
	s := 1
	for i := len(shape) - 1; i >= 0; i-- {
		st[i] = s
		s *= shape[i]
	}
	return st
}

// viewSpans lists the spans that copy a strided view of a tensor into a
// contiguous output of the given shape: output element (i0, i1, ...) is
// source element base + i0*strides[0] + i1*strides[1] + .... Dimensions
// of size one are dropped and adjacent ones that step evenly are merged,
// so that the spans are as long as the view allows.
func viewSpans(shape []int, base int, strides []int) []span {
	total := Size(shape)
	if total == 0 {
		return nil
	}
	var dims, st []int
	for i, d := range shape {
		if d == 1 {
			continue
		}
		if k := len(dims) - 1; k >= 0 && st[k] == strides[i]*d {
			dims[k] *= d
			st[k] = strides[i]
			continue
		}
		dims = append(dims, d)
		st = append(st, strides[i])
	}
	if len(dims) == 0 {
		return []span{{d: 0, s: base, n: 1, stride: 1}}
	}
	r := len(dims)
	inner, innerStride := dims[r-1], st[r-1]
	spans := make([]span, 0, total/inner)
	idx := make([]int, r-1)
	off := base
	for d := 0; d < total; d += inner {
		spans = append(spans, span{d: d, s: off, n: inner, stride: innerStride})
		for k := r - 2; k >= 0; k-- {
			idx[k]++
			off += st[k]
			if idx[k] < dims[k] {
				break
			}
			off -= st[k] * dims[k]
			idx[k] = 0
		}
	}
	return spans
}

// copyView returns a new tensor of the given shape holding the strided
// view (base, strides) of t.
func copyView(t *Tensor, shape []int, base int, strides []int) (*Tensor, error) {
	out := New(t.DType, shape...)
	if err := moveSpans(out, t, viewSpans(shape, base, strides), nil); err != nil {
		return nil, err
	}
	return out, nil
}

// intList reads a 1-D (or scalar) int64 or int32 tensor as int64s.
func intList(t *Tensor, name string) ([]int64, error) {
	if t == nil {
		return nil, fmt.Errorf("input %s is missing", name)
	}
	if len(t.Shape) > 1 {
		return nil, fmt.Errorf("input %s must be 1-D, got shape %s", name, ShapeString(t.Shape))
	}
	switch t.DType {
	case Int64:
		return t.I64, nil
	case Int32:
		v := make([]int64, len(t.I32))
		for i, x := range t.I32 {
			v[i] = int64(x)
		}
		return v, nil
	}
	return nil, fmt.Errorf("input %s must be int64 or int32, got %s", name, t.DType)
}

// shapeFrom converts a requested shape to ints, refusing negative
// dimensions and too many elements.
func shapeFrom(dims []int64) ([]int, error) {
	if _, err := checkedSize(dims); err != nil {
		return nil, err
	}
	out := make([]int, len(dims))
	for i, d := range dims {
		out[i] = int(d)
	}
	return out, nil
}

// checkedShape refuses a computed shape with too many elements.
func checkedShape(shape []int) error {
	dims := make([]int64, len(shape))
	for i, d := range shape {
		dims[i] = int64(d)
	}
	_, err := checkedSize(dims)
	return err
}

// normAxes maps possibly negative axes into [0, rank), refusing
// duplicates.
func normAxes(axes []int64, rank int) ([]int, error) {
	out := make([]int, len(axes))
	seen := make([]bool, rank)
	for i, a := range axes {
		ax, err := NormAxis(a, rank)
		if err != nil {
			return nil, err
		}
		if seen[ax] {
			return nil, fmt.Errorf("axis %d repeated in %v", a, axes)
		}
		seen[ax] = true
		out[i] = ax
	}
	return out, nil
}

// axisMapSpans lists the spans of an output of shape out whose element
// (o0, o1, ...) is the input element (src[0][o0], src[1][o1], ...) of an
// input of shape in, or the fill value when any of these is -1. The spans
// are the runs of consecutive input elements along the last axis.
func axisMapSpans(in, out []int, src [][]int) []span {
	r := len(out)
	total := Size(out)
	if total == 0 {
		return nil
	}
	if r == 0 {
		return []span{{d: 0, s: 0, n: 1, stride: 1}}
	}
	st := contiguousStrides(in)
	last := src[r-1]
	inner := out[r-1]
	var spans []span
	idx := make([]int, r-1)
	for d := 0; d < total; d += inner {
		row := 0
		for a, i := range idx {
			if s := src[a][i]; s < 0 || row < 0 {
				row = -1
			} else {
				row += s * st[a]
			}
		}
		if row < 0 {
			spans = append(spans, span{d: d, s: -1, n: inner})
		} else {
			for o := 0; o < inner; {
				k := o + 1
				if last[o] < 0 {
					for k < inner && last[k] < 0 {
						k++
					}
					spans = append(spans, span{d: d + o, s: -1, n: k - o})
				} else {
					for k < inner && last[k] == last[k-1]+1 {
						k++
					}
					spans = append(spans, span{d: d + o, s: row + last[o], n: k - o, stride: 1})
				}
				o = k
			}
		}
		for a := r - 2; a >= 0; a-- {
			if idx[a]++; idx[a] < out[a] {
				break
			}
			idx[a] = 0
		}
	}
	return spans
}

// gatherMapped writes dst, of shape out, from src, of shape in: output
// element (o0, ..., oL) is input element (src[0][o0], ..., src[L][oL]), or
// the fill value (a one-element tensor of dst's type, nil for zero) when
// any of these is -1. Unlike axisMapSpans it does not need runs along the
// last axis: each output row is gathered element by element through the
// last axis's map, as nearest-neighbour upsampling needs.
func gatherMapped(dst, src *Tensor, in, out []int, maps [][]int, fill *Tensor) error {
	if src.DType != dst.DType {
		return fmt.Errorf("moving %s elements into a %s tensor", src.DType, dst.DType)
	}
	if fill != nil && (fill.DType != dst.DType || fill.Len() != 1) {
		return fmt.Errorf("fill value must be one %s element", dst.DType)
	}
	r := len(out)
	if Size(out) == 0 {
		return nil
	}
	if r == 0 {
		return moveSpans(dst, src, []span{{d: 0, s: 0, n: 1, stride: 1}}, nil)
	}
	// The input offset of each output row, or -1.
	st := contiguousStrides(in)
	rows := make([]int, Size(out[:r-1]))
	idx := make([]int, r-1)
	for k := range rows {
		off := 0
		for a, i := range idx {
			if s := maps[a][i]; s < 0 || off < 0 {
				off = -1
			} else {
				off += s * st[a]
			}
		}
		rows[k] = off
		for a := r - 2; a >= 0; a-- {
			if idx[a]++; idx[a] < out[a] {
				break
			}
			idx[a] = 0
		}
	}
	cols := maps[r-1]
	switch dst.DType {
	case Float32:
		gatherRows(dst.F32, src.F32, rows, cols, fillOf(fill, func(t *Tensor) []float32 { return t.F32 }))
	case Uint8:
		gatherRows(dst.U8, src.U8, rows, cols, fillOf(fill, func(t *Tensor) []uint8 { return t.U8 }))
	case Int8:
		gatherRows(dst.I8, src.I8, rows, cols, fillOf(fill, func(t *Tensor) []int8 { return t.I8 }))
	case Int32:
		gatherRows(dst.I32, src.I32, rows, cols, fillOf(fill, func(t *Tensor) []int32 { return t.I32 }))
	case Int64:
		gatherRows(dst.I64, src.I64, rows, cols, fillOf(fill, func(t *Tensor) []int64 { return t.I64 }))
	case Bool:
		gatherRows(dst.B, src.B, rows, cols, fillOf(fill, func(t *Tensor) []bool { return t.B }))
	default:
		return fmt.Errorf("element type %s is not supported", dst.DType)
	}
	return nil
}

// gatherRows sets row k of dst (len(cols) elements) to src[rows[k]+cols[j]]
// for each j, or to fill where rows[k] or cols[j] is -1.
func gatherRows[T any](dst, src []T, rows, cols []int, fill T) {
	n := len(cols)
	for k, off := range rows {
		d := dst[k*n : (k+1)*n]
		if off < 0 {
			for j := range d {
				d[j] = fill
			}
			continue
		}
		for j, c := range cols {
			if c < 0 {
				d[j] = fill
			} else {
				d[j] = src[off+c]
			}
		}
	}
}
