package interp

import (
	"encoding/binary"
	"fmt"
	"math"

	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// maxElements bounds the element count of any tensor read from a model or a
// test file, so that a corrupt header cannot ask for an absurd allocation.
const maxElements = 1 << 31

// supportedDType reports whether the interpreter computes with the ONNX
// element type t.
func supportedDType(t int32) bool {
	switch DType(t) {
	case Float32, Uint8, Int8, Int32, Int64, Bool:
		return true
	}
	return false
}

// elemTypeName is the ONNX name of an element type, supported or not.
func elemTypeName(t int32) string {
	if s, ok := onnxpb.TensorProto_DataType_name[t]; ok {
		if supportedDType(t) {
			return DType(t).String()
		}
		return s
	}
	return fmt.Sprintf("element type %d", t)
}

// elemSize is the byte size of one element of a supported type in raw_data.
func elemSize(t DType) int {
	switch t {
	case Float32, Int32:
		return 4
	case Int64:
		return 8
	}
	return 1
}

// checkedSize multiplies dims, refusing negative dims and products above
// maxElements.
func checkedSize(dims []int64) (int, error) {
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in %v", dims)
		}
		if d > 0 && n > maxElements/d {
			return 0, fmt.Errorf("dimensions %v hold too many elements", dims)
		}
		n *= d
	}
	if n > maxElements {
		return 0, fmt.Errorf("dimensions %v hold too many elements", dims)
	}
	return int(n), nil
}

// TensorFromProto converts a TensorProto (an initializer, a Constant's value
// or a serialized test tensor) to a Tensor. The data may be in raw_data
// (little-endian) or in the typed field ONNX assigns to the element type.
// FLOAT16 data is widened to a float32 tensor.
// External data, segments and unsupported element types are refused with an
// error that wraps ErrUnsupported.
func TensorFromProto(p *onnxpb.TensorProto) (*Tensor, error) {
	if p.GetDataLocation() == onnxpb.TensorProto_EXTERNAL || len(p.GetExternalData()) > 0 {
		return nil, fmt.Errorf("tensor %q: external data: %w", p.GetName(), ErrUnsupported)
	}
	if p.GetSegment() != nil {
		return nil, fmt.Errorf("tensor %q: segmented tensors: %w", p.GetName(), ErrUnsupported)
	}
	if !supportedDType(p.GetDataType()) && DType(p.GetDataType()) != Float16 {
		return nil, fmt.Errorf("tensor %q: element type %s: %w", p.GetName(), elemTypeName(p.GetDataType()), ErrUnsupported)
	}
	dt := DType(p.GetDataType())
	n, err := checkedSize(p.GetDims())
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", p.GetName(), err)
	}
	shape := make([]int, len(p.GetDims()))
	for i, d := range p.GetDims() {
		shape[i] = int(d)
	}
	if dt == Float16 {
		return float16FromProto(p, shape, n)
	}
	t := &Tensor{DType: dt, Shape: shape}
	if raw := p.GetRawData(); p.RawData != nil {
		if len(raw) != n*elemSize(dt) {
			return nil, fmt.Errorf("tensor %q: %d bytes of raw data for %d %s elements", p.GetName(), len(raw), n, dt)
		}
		fillRaw(t, raw, n)
		return t, nil
	}
	count := 0
	switch dt {
	case Float32:
		count = len(p.GetFloatData())
	case Int64:
		count = len(p.GetInt64Data())
	default: // int32, int8, uint8 and bool travel in int32_data
		count = len(p.GetInt32Data())
	}
	if count != n {
		return nil, fmt.Errorf("tensor %q: %d values for shape %v", p.GetName(), count, ShapeString(shape))
	}
	switch dt {
	case Float32:
		t.F32 = append(make([]float32, 0, n), p.GetFloatData()...)
	case Int64:
		t.I64 = append(make([]int64, 0, n), p.GetInt64Data()...)
	case Int32:
		t.I32 = append(make([]int32, 0, n), p.GetInt32Data()...)
	case Int8:
		t.I8 = make([]int8, n)
		for i, v := range p.GetInt32Data() {
			t.I8[i] = int8(v)
		}
	case Uint8:
		t.U8 = make([]uint8, n)
		for i, v := range p.GetInt32Data() {
			t.U8[i] = uint8(v)
		}
	case Bool:
		t.B = make([]bool, n)
		for i, v := range p.GetInt32Data() {
			t.B[i] = v != 0
		}
	}
	return t, nil
}

func fillRaw(t *Tensor, raw []byte, n int) {
	switch t.DType {
	case Float32:
		t.F32 = make([]float32, n)
		for i := range t.F32 {
			t.F32[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case Int32:
		t.I32 = make([]int32, n)
		for i := range t.I32 {
			t.I32[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case Int64:
		t.I64 = make([]int64, n)
		for i := range t.I64 {
			t.I64[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		}
	case Int8:
		t.I8 = make([]int8, n)
		for i := range t.I8 {
			t.I8[i] = int8(raw[i])
		}
	case Uint8:
		t.U8 = append(make([]uint8, 0, n), raw...)
	case Bool:
		t.B = make([]bool, n)
		for i := range t.B {
			t.B[i] = raw[i] != 0
		}
	}
}

// Clone returns a deep copy of t.
func (t *Tensor) Clone() *Tensor {
	c := &Tensor{DType: t.DType, Shape: append([]int(nil), t.Shape...)}
	switch t.DType {
	case Float32:
		c.F32 = append([]float32(nil), t.F32...)
	case Uint8:
		c.U8 = append([]uint8(nil), t.U8...)
	case Int8:
		c.I8 = append([]int8(nil), t.I8...)
	case Int32:
		c.I32 = append([]int32(nil), t.I32...)
	case Int64:
		c.I64 = append([]int64(nil), t.I64...)
	case Bool:
		c.B = append([]bool(nil), t.B...)
	}
	return c
}

// WithShape returns a tensor that shares t's data under another shape of the
// same size (a view: neither may be modified while the other is in use).
func (t *Tensor) WithShape(shape []int) *Tensor {
	v := *t
	v.Shape = shape
	return &v
}
