// Package interp runs ONNX models in pure Go (no cgo): it loads a model,
// checks at load time that every node is an operator it implements (at the
// model's opset) with valid attributes, and evaluates the graph on request.
// It covers the operators edge models use most, in float32, int8, uint8,
// int32 and int64, for opsets 13 to 17. FLOAT16 initializers and constants
// are widened to float32 at load (see Float16).
package interp

import (
	"fmt"
	"strings"
)

// DType is a tensor element type; the values are ONNX's TensorProto.DataType.
type DType int32

// Element types the interpreter computes with.
const (
	Float32 DType = 1
	Uint8   DType = 2
	Int8    DType = 3
	Int32   DType = 6
	Int64   DType = 7
	Bool    DType = 9
)

// String is the ONNX name of the type.
func (t DType) String() string {
	switch t {
	case Float32:
		return "float32"
	case Uint8:
		return "uint8"
	case Int8:
		return "int8"
	case Int32:
		return "int32"
	case Int64:
		return "int64"
	case Bool:
		return "bool"
	case Float16:
		return "float16"
	}
	return fmt.Sprintf("dtype(%d)", int32(t))
}

// Tensor is a dense, row-major tensor. Exactly one of the data slices is
// used, the one that matches DType; its length is the product of Shape
// (1 for a scalar, whose Shape is empty).
type Tensor struct {
	DType DType
	Shape []int
	F32   []float32
	U8    []uint8
	I8    []int8
	I32   []int32
	I64   []int64
	B     []bool
}

// Size is the number of elements Shape describes.
func Size(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Len is the number of elements of t.
func (t *Tensor) Len() int { return Size(t.Shape) }

// New returns a zeroed tensor of the given type and shape.
func New(dt DType, shape ...int) *Tensor {
	t := &Tensor{DType: dt, Shape: append([]int(nil), shape...)}
	n := Size(shape)
	switch dt {
	case Float32:
		t.F32 = make([]float32, n)
	case Uint8:
		t.U8 = make([]uint8, n)
	case Int8:
		t.I8 = make([]int8, n)
	case Int32:
		t.I32 = make([]int32, n)
	case Int64:
		t.I64 = make([]int64, n)
	case Bool:
		t.B = make([]bool, n)
	}
	return t
}

// FromFloat32 wraps data as a float32 tensor of the given shape.
func FromFloat32(data []float32, shape ...int) *Tensor {
	return &Tensor{DType: Float32, Shape: append([]int(nil), shape...), F32: data}
}

// FromInt64 wraps data as an int64 tensor of the given shape.
func FromInt64(data []int64, shape ...int) *Tensor {
	return &Tensor{DType: Int64, Shape: append([]int(nil), shape...), I64: data}
}

// Validate checks that the data slice for DType has the length Shape says.
func (t *Tensor) Validate() error {
	n := -1
	switch t.DType {
	case Float32:
		n = len(t.F32)
	case Uint8:
		n = len(t.U8)
	case Int8:
		n = len(t.I8)
	case Int32:
		n = len(t.I32)
	case Int64:
		n = len(t.I64)
	case Bool:
		n = len(t.B)
	default:
		return fmt.Errorf("unsupported element type %s", t.DType)
	}
	for _, d := range t.Shape {
		if d < 0 {
			return fmt.Errorf("negative dimension in shape %v", t.Shape)
		}
	}
	if n != t.Len() {
		return fmt.Errorf("%s tensor of shape %v has %d elements, want %d", t.DType, t.Shape, n, t.Len())
	}
	return nil
}

// ShapeString formats a shape as [2,3,4].
func ShapeString(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ",") + "]"
}
