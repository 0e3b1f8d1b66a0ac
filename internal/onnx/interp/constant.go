package interp

import (
	"errors"
	"fmt"
)

// constantValue reads a Constant node's value from whichever attribute
// holds it.
func constantValue(n *Node) (*Tensor, error) {
	set := 0
	for _, a := range n.Proto.GetAttribute() {
		switch a.GetName() {
		case "value", "value_float", "value_floats", "value_int", "value_ints":
			set++
		case "sparse_value", "value_string", "value_strings":
			return nil, fmt.Errorf("attribute %s: %w", a.GetName(), ErrUnsupported)
		}
	}
	if set != 1 {
		return nil, errors.New("want exactly one value attribute")
	}
	switch {
	case n.Has("value"):
		p := n.attr("value").GetT()
		if p == nil {
			return nil, errors.New("attribute value holds no tensor")
		}
		return TensorFromProto(p)
	case n.Has("value_float"):
		return FromFloat32([]float32{n.Float("value_float", 0)}), nil
	case n.Has("value_floats"):
		v := n.attr("value_floats").GetFloats()
		return FromFloat32(append([]float32{}, v...), len(v)), nil
	case n.Has("value_int"):
		return FromInt64([]int64{n.Int("value_int", 0)}), nil
	default:
		v := n.Ints("value_ints", nil)
		return FromInt64(append([]int64{}, v...), len(v)), nil
	}
}

func checkConstant(n *Node) error {
	if len(n.Proto.GetInput()) != 0 || len(n.Proto.GetOutput()) != 1 {
		return errors.New("want no inputs and one output")
	}
	_, err := constantValue(n)
	return err
}

// constant computes a Constant node. The loader folds Constant nodes into
// constants, so this runs once per model.
func constant(n *Node, _ []*Tensor) ([]*Tensor, error) {
	t, err := constantValue(n)
	if err != nil {
		return nil, err
	}
	return []*Tensor{t}, nil
}
