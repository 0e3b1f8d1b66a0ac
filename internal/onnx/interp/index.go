package interp

import "fmt"

// addIndexOps registers Gather, GatherElements and ScatterND.
func addIndexOps(t ops) {
	t["Gather"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: checkInputs(2, 2), Run: gather, Fresh: true}
	t["GatherElements"] = Op{MinOpset: 11, MaxOpset: MaxOpset, Check: checkInputs(2, 2), Run: gatherElements, Fresh: true}
	t["ScatterND"] = Op{MinOpset: 11, MaxOpset: MaxOpset, Check: all(checkInputs(3, 3), checkScatterND), Run: scatterND, Fresh: true}
}

// indexList reads an int64 or int32 index tensor, mapping negative indices
// (counted from the end) of an axis of size dim into [0, dim).
func indexList(t *Tensor, dim int) ([]int, error) {
	var raw []int64
	switch t.DType {
	case Int64:
		raw = t.I64
	case Int32:
		raw = make([]int64, len(t.I32))
		for i, v := range t.I32 {
			raw[i] = int64(v)
		}
	default:
		return nil, fmt.Errorf("indices must be int64 or int32, got %s", t.DType)
	}
	out := make([]int, len(raw))
	for i, v := range raw {
		if v < -int64(dim) || v >= int64(dim) {
			return nil, fmt.Errorf("index %d out of range for an axis of size %d", v, dim)
		}
		if v < 0 {
			v += int64(dim)
		}
		out[i] = int(v)
	}
	return out, nil
}

// gather takes, along axis, the slices of data the indices name: the
// output shape is data[:axis] + indices + data[axis+1:].
func gather(n *Node, in []*Tensor) ([]*Tensor, error) {
	data, indices := in[0], in[1]
	axis, err := NormAxis(n.Int("axis", 0), len(data.Shape))
	if err != nil {
		return nil, err
	}
	dim := data.Shape[axis]
	idx, err := indexList(indices, dim)
	if err != nil {
		return nil, err
	}
	shape := append(append(append([]int{}, data.Shape[:axis]...), indices.Shape...), data.Shape[axis+1:]...)
	outer, inner := Size(data.Shape[:axis]), Size(data.Shape[axis+1:])
	out := New(data.DType, shape...)
	if out.Len() == 0 {
		return []*Tensor{out}, nil
	}
	spans := make([]span, 0, outer*len(idx))
	d := 0
	for o := range outer {
		for _, i := range idx {
			spans = append(spans, span{d: d, s: (o*dim + i) * inner, n: inner, stride: 1})
			d += inner
		}
	}
	if err := moveSpans(out, data, spans, nil); err != nil {
		return nil, err
	}
	return []*Tensor{out}, nil
}

// gatherElements takes one element of data for each index: output
// element (.., i_axis, ..) is data at the same position with the axis
// coordinate replaced by the index there.
func gatherElements(n *Node, in []*Tensor) ([]*Tensor, error) {
	data, indices := in[0], in[1]
	r := len(data.Shape)
	axis, err := NormAxis(n.Int("axis", 0), r)
	if err != nil {
		return nil, err
	}
	if len(indices.Shape) != r {
		return nil, fmt.Errorf("indices of rank %d for data of rank %d", len(indices.Shape), r)
	}
	for i, d := range indices.Shape {
		if i != axis && d > data.Shape[i] {
			return nil, fmt.Errorf("indices shape %s exceeds data shape %s off axis %d", ShapeString(indices.Shape), ShapeString(data.Shape), axis)
		}
	}
	idx, err := indexList(indices, data.Shape[axis])
	if err != nil {
		return nil, err
	}
	st := contiguousStrides(data.Shape)
	out := New(data.DType, indices.Shape...)
	spans := make([]span, len(idx))
	pos := make([]int, r)
	for k, i := range idx {
		off := 0
		for d := range r {
			c := pos[d]
			if d == axis {
				c = i
			}
			off += c * st[d]
		}
		spans[k] = span{d: k, s: off, n: 1, stride: 1}
		for d := r - 1; d >= 0; d-- {
			if pos[d]++; pos[d] < indices.Shape[d] {
				break
			}
			pos[d] = 0
		}
	}
	if err := moveSpans(out, data, spans, nil); err != nil {
		return nil, err
	}
	return []*Tensor{out}, nil
}

func checkScatterND(n *Node) error {
	switch r := n.String("reduction", "none"); r {
	case "none", "add", "mul", "max", "min":
		if r != "none" && n.Opset < 16 {
			return fmt.Errorf("attribute reduction %q needs opset 16", r)
		}
	default:
		return fmt.Errorf("attribute reduction is %q, want none, add, mul, max or min", r)
	}
	return nil
}

// scatterND returns a copy of data with the slices that indices name
// replaced by (or combined with) updates.
func scatterND(n *Node, in []*Tensor) ([]*Tensor, error) {
	data, indices, updates := in[0], in[1], in[2]
	if updates.DType != data.DType {
		return nil, fmt.Errorf("updates of type %s for data of type %s", updates.DType, data.DType)
	}
	ir := len(indices.Shape)
	if ir == 0 {
		return nil, fmt.Errorf("indices must have rank 1 or more")
	}
	k := indices.Shape[ir-1]
	if k > len(data.Shape) {
		return nil, fmt.Errorf("indices address %d dimensions of data of rank %d", k, len(data.Shape))
	}
	want := append(append([]int{}, indices.Shape[:ir-1]...), data.Shape[k:]...)
	if ShapeString(updates.Shape) != ShapeString(want) {
		return nil, fmt.Errorf("updates shape %s, want %s", ShapeString(updates.Shape), ShapeString(want))
	}
	inner := Size(data.Shape[k:])
	st := contiguousStrides(data.Shape)
	count := Size(indices.Shape[:ir-1])
	raw, err := intList(indices.WithShape([]int{indices.Len()}), "indices")
	if err != nil {
		return nil, err
	}
	offs := make([]int, count)
	for u := range count {
		off := 0
		for d := range k {
			v := raw[u*k+d]
			dim := int64(data.Shape[d])
			if v < -dim || v >= dim {
				return nil, fmt.Errorf("index %d out of range for dimension %d of size %d", v, d, dim)
			}
			if v < 0 {
				v += dim
			}
			off += int(v) * st[d]
		}
		offs[u] = off
	}
	out := data.Clone()
	red := n.String("reduction", "none")
	if red == "none" {
		spans := make([]span, count)
		for u, off := range offs {
			spans[u] = span{d: off, s: u * inner, n: inner, stride: 1}
		}
		if err := moveSpans(out, updates, spans, nil); err != nil {
			return nil, err
		}
		return []*Tensor{out}, nil
	}
	switch out.DType {
	case Float32:
		err = scatterReduce(out.F32, updates.F32, offs, inner, red)
	case Uint8:
		err = scatterReduce(out.U8, updates.U8, offs, inner, red)
	case Int8:
		err = scatterReduce(out.I8, updates.I8, offs, inner, red)
	case Int32:
		err = scatterReduce(out.I32, updates.I32, offs, inner, red)
	case Int64:
		err = scatterReduce(out.I64, updates.I64, offs, inner, red)
	default:
		err = fmt.Errorf("reduction %s on element type %s", red, out.DType)
	}
	if err != nil {
		return nil, err
	}
	return []*Tensor{out}, nil
}

func scatterReduce[T numeric](dst, upd []T, offs []int, inner int, red string) error {
	var f func(a, b T) T
	switch red {
	case "add":
		f = func(a, b T) T { return a + b }
	case "mul":
		f = func(a, b T) T { return a * b }
	case "max":
		f = func(a, b T) T { return max(a, b) }
	case "min":
		f = func(a, b T) T { return min(a, b) }
	default:
		return fmt.Errorf("unknown reduction %q", red)
	}
	for u, off := range offs {
		d, s := dst[off:off+inner], upd[u*inner:(u+1)*inner]
		for i := range d {
			d[i] = f(d[i], s[i])
		}
	}
	return nil
}
