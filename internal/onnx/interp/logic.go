package interp

import "fmt"

// cmpOp is a comparison with a bool result.
type cmpOp int

const (
	cmpEq cmpOp = iota
	cmpLt
	cmpGt
	cmpLe
	cmpGe
)

// addLogicOps registers the comparisons, the bool operators and Where.
func addLogicOps(t ops) {
	binary := checkInputs(2, 2)
	t["Equal"] = Op{MinOpset: 7, MaxOpset: MaxOpset, Check: binary, Run: compareKernel(cmpEq), Fresh: true}
	t["Less"] = Op{MinOpset: 7, MaxOpset: MaxOpset, Check: binary, Run: compareKernel(cmpLt), Fresh: true}
	t["Greater"] = Op{MinOpset: 7, MaxOpset: MaxOpset, Check: binary, Run: compareKernel(cmpGt), Fresh: true}
	t["LessOrEqual"] = Op{MinOpset: 12, MaxOpset: MaxOpset, Check: binary, Run: compareKernel(cmpLe), Fresh: true}
	t["GreaterOrEqual"] = Op{MinOpset: 12, MaxOpset: MaxOpset, Check: binary, Run: compareKernel(cmpGe), Fresh: true}
	t["And"] = Op{MinOpset: 7, MaxOpset: MaxOpset, Check: binary, Run: boolKernel(func(x, y bool) bool { return x && y }), Fresh: true}
	t["Or"] = Op{MinOpset: 7, MaxOpset: MaxOpset, Check: binary, Run: boolKernel(func(x, y bool) bool { return x || y }), Fresh: true}
	t["Xor"] = Op{MinOpset: 7, MaxOpset: MaxOpset, Check: binary, Run: boolKernel(func(x, y bool) bool { return x != y }), Fresh: true}
	t["Not"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: checkInputs(1, 1), Run: not, Fresh: true, InPlace: notInPlace}
	t["Where"] = Op{MinOpset: 9, MaxOpset: MaxOpset, Check: checkInputs(3, 3), Run: where, Fresh: true}
}

func cmpFunc[T numeric](op cmpOp) func(x, y T) bool {
	switch op {
	case cmpEq:
		return func(x, y T) bool { return x == y }
	case cmpLt:
		return func(x, y T) bool { return x < y }
	case cmpGt:
		return func(x, y T) bool { return x > y }
	case cmpLe:
		return func(x, y T) bool { return x <= y }
	}
	return func(x, y T) bool { return x >= y }
}

// compareKernel compares two tensors of one type with numpy broadcasting,
// giving bool; Equal also compares bools.
func compareKernel(op cmpOp) Kernel {
	return func(n *Node, in []*Tensor) ([]*Tensor, error) {
		a, b := in[0], in[1]
		if a.DType != b.DType {
			return nil, fmt.Errorf("operands of types %s and %s", a.DType, b.DType)
		}
		var out *Tensor
		var err error
		switch a.DType {
		case Float32:
			out, err = zip(a, b, cmpFunc[float32](op))
		case Int32:
			out, err = zip(a, b, cmpFunc[int32](op))
		case Int64:
			out, err = zip(a, b, cmpFunc[int64](op))
		case Int8:
			out, err = zip(a, b, cmpFunc[int8](op))
		case Uint8:
			out, err = zip(a, b, cmpFunc[uint8](op))
		case Bool:
			if op != cmpEq {
				return nil, fmt.Errorf("element type %s is not supported", a.DType)
			}
			out, err = zip(a, b, func(x, y bool) bool { return x == y })
		default:
			return nil, fmt.Errorf("element type %s is not supported", a.DType)
		}
		if err != nil {
			return nil, err
		}
		return []*Tensor{out}, nil
	}
}

// boolKernel applies a logical operator to two bool tensors with numpy
// broadcasting.
func boolKernel(f func(x, y bool) bool) Kernel {
	return func(n *Node, in []*Tensor) ([]*Tensor, error) {
		a, b := in[0], in[1]
		if a.DType != Bool || b.DType != Bool {
			return nil, fmt.Errorf("operands of types %s and %s, want bool", a.DType, b.DType)
		}
		out, err := zip(a, b, f)
		if err != nil {
			return nil, err
		}
		return []*Tensor{out}, nil
	}
}

func not(n *Node, in []*Tensor) ([]*Tensor, error) {
	out := New(Bool, in[0].Shape...)
	if err := notInto(out, in[0]); err != nil {
		return nil, err
	}
	return []*Tensor{out}, nil
}

func notInPlace(n *Node, t *Tensor) error { return notInto(t, t) }

func notInto(dst, src *Tensor) error {
	if src.DType != Bool {
		return fmt.Errorf("element type %s, want bool", src.DType)
	}
	for i, v := range src.B {
		dst.B[i] = !v
	}
	return nil
}

// where picks from x where cond is true and from y elsewhere, all three
// broadcast (numpy style) to one shape.
func where(n *Node, in []*Tensor) ([]*Tensor, error) {
	c, x, y := in[0], in[1], in[2]
	if c.DType != Bool {
		return nil, fmt.Errorf("condition is %s, want bool", c.DType)
	}
	if x.DType != y.DType {
		return nil, fmt.Errorf("X is %s and Y is %s", x.DType, y.DType)
	}
	shape, err := BroadcastShapes(c.Shape, x.Shape)
	if err == nil {
		shape, err = BroadcastShapes(shape, y.Shape)
	}
	if err != nil {
		return nil, fmt.Errorf("condition %s, X %s and Y %s do not broadcast", ShapeString(c.Shape), ShapeString(x.Shape), ShapeString(y.Shape))
	}
	cond := expandTo(c.B, c.Shape, shape)
	var out *Tensor
	switch x.DType {
	case Float32:
		out = whereTyped[float32](cond, x, y, shape)
	case Int32:
		out = whereTyped[int32](cond, x, y, shape)
	case Int64:
		out = whereTyped[int64](cond, x, y, shape)
	case Int8:
		out = whereTyped[int8](cond, x, y, shape)
	case Uint8:
		out = whereTyped[uint8](cond, x, y, shape)
	case Bool:
		out = whereTyped[bool](cond, x, y, shape)
	default:
		return nil, fmt.Errorf("element type %s is not supported", x.DType)
	}
	return []*Tensor{out}, nil
}

func whereTyped[T elem](cond []bool, x, y *Tensor, shape []int) *Tensor {
	xs := expandTo(dataOf[T](x), x.Shape, shape) // a new slice: the output's data
	ys := expandTo(dataOf[T](y), y.Shape, shape)
	for i, c := range cond {
		if !c {
			xs[i] = ys[i]
		}
	}
	return wrap(xs, shape)
}
