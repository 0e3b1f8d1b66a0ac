package interp

import "fmt"

// addPadOps registers Pad.
func addPadOps(t ops) {
	t["Pad"] = Op{MinOpset: 2, MaxOpset: MaxOpset, Check: checkPad, Run: pad, Fresh: true}
}

func checkPad(n *Node) error {
	in := n.Proto.GetInput()
	if len(in) == 0 || in[0] == "" {
		return fmt.Errorf("input data is missing")
	}
	if n.Opset < 11 {
		if len(in) != 1 {
			return fmt.Errorf("%d inputs, want 1 before opset 11 (pads is an attribute)", len(in))
		}
		if !n.Has("pads") {
			return fmt.Errorf("missing attribute pads")
		}
	} else if len(in) < 2 || len(in) > 4 || in[1] == "" {
		return fmt.Errorf("%d inputs, want data, pads and optional constant_value and axes", len(in))
	}
	switch m := n.String("mode", "constant"); m {
	case "constant", "reflect", "edge":
	default:
		return fmt.Errorf("attribute mode is %q, want constant, reflect or edge", m)
	}
	return nil
}

// padParams reads the begin and end pads of every axis and the constant
// value (nil for zero) from the attributes (before opset 11) or inputs.
func padParams(n *Node, in []*Tensor) (begin, end []int, value *Tensor, err error) {
	t := in[0]
	r := len(t.Shape)
	var pads []int64
	var axes []int
	if n.Opset < 11 {
		pads = n.Ints("pads", nil)
		if v := n.Float("value", 0); v != 0 {
			value = FromFloat32([]float32{v})
			if t.DType != Float32 {
				value = New(t.DType)
				if err := Convert(value, FromFloat32([]float32{v})); err != nil {
					return nil, nil, nil, err
				}
			}
		}
	} else {
		if pads, err = intList(in[1], "pads"); err != nil {
			return nil, nil, nil, err
		}
		if len(in) > 2 && in[2] != nil {
			value = in[2]
			if value.DType != t.DType || value.Len() != 1 {
				return nil, nil, nil, fmt.Errorf("constant_value must be one %s element, got %s %s", t.DType, value.DType, ShapeString(value.Shape))
			}
			value = value.WithShape(nil)
		}
		if len(in) > 3 && in[3] != nil {
			raw, err := intList(in[3], "axes")
			if err != nil {
				return nil, nil, nil, err
			}
			if axes, err = normAxes(raw, r); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	if axes == nil {
		axes = make([]int, r)
		for i := range axes {
			axes[i] = i
		}
	}
	if len(pads) != 2*len(axes) {
		return nil, nil, nil, fmt.Errorf("pads %v: want %d values (begin and end for %d axes)", pads, 2*len(axes), len(axes))
	}
	begin, end = make([]int, r), make([]int, r)
	for i, a := range axes {
		b, e := pads[i], pads[i+len(axes)]
		if b < -maxElements || b > maxElements || e < -maxElements || e > maxElements {
			return nil, nil, nil, fmt.Errorf("pads %v out of range", pads)
		}
		begin[a], end[a] = int(b), int(e)
	}
	return begin, end, value, nil
}

// padSource maps output coordinate o of an axis of size dim padded by
// begin to its input coordinate, or -1 for the constant.
func padSource(o, begin, dim int, mode string) int {
	i := o - begin
	if i >= 0 && i < dim {
		return i
	}
	switch mode {
	case "edge":
		return min(max(i, 0), dim-1)
	case "reflect":
		if dim == 1 {
			return 0
		}
		period := 2 * (dim - 1)
		i %= period
		if i < 0 {
			i += period
		}
		if i >= dim {
			i = period - i
		}
		return i
	}
	return -1
}

// pad extends (or, with negative pads, crops) every axis: with a constant,
// the edge value or the reflection of the input.
func pad(n *Node, in []*Tensor) ([]*Tensor, error) {
	t := in[0]
	begin, end, value, err := padParams(n, in)
	if err != nil {
		return nil, err
	}
	mode := n.String("mode", "constant")
	r := len(t.Shape)
	shape := make([]int, r)
	for i, d := range t.Shape {
		shape[i] = d + begin[i] + end[i]
		if shape[i] < 0 {
			return nil, fmt.Errorf("pads crop axis %d of size %d below zero", i, d)
		}
		if mode != "constant" && d == 0 && shape[i] > 0 {
			return nil, fmt.Errorf("%s padding of the empty axis %d", mode, i)
		}
	}
	if err := checkedShape(shape); err != nil {
		return nil, err
	}
	out := New(t.DType, shape...)
	if out.Len() == 0 {
		return []*Tensor{out}, nil
	}
	if r == 0 {
		return []*Tensor{t.Clone()}, nil
	}
	// Per axis, the input coordinate of every output coordinate.
	src := make([][]int, r)
	for a := range r {
		src[a] = make([]int, shape[a])
		for o := range src[a] {
			src[a][o] = padSource(o, begin[a], t.Shape[a], mode)
		}
	}
	spans := axisMapSpans(t.Shape, shape, src)
	if err := moveSpans(out, t, spans, value); err != nil {
		return nil, err
	}
	return []*Tensor{out}, nil
}
