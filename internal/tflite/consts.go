package tflite

import (
	"encoding/binary"
	"fmt"
	"math"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// constant is an initializer, or the dequantized form of one.
type constant struct {
	name string
	dims []int
	f32  []float32 // float32 values (dequantized ones for a quantized weight)
	i64  []int64   // int64 values (Reshape's shape)
	i8   []int8    // int8 values, for int8 and uint8 initializers
	u8   bool      // i8 holds uint8 values shifted by -128
	// q, on a DequantizeLinear's output, is the int8 weight it came from:
	// symmetric (zero point 0), per channel along axis or per tensor.
	q *qweight
}

// qweight is a symmetric int8 weight: value = scale[c] * data.
type qweight struct {
	data  []int8
	scale []float32
	axis  int // -1: one scale for the whole tensor
}

// size is the number of elements of dims, or an error for a negative or
// overflowing one.
func size(dims []int64) (int, error) {
	n := int64(1)
	for _, d := range dims {
		if d < 0 || (d > 0 && n > math.MaxInt32/d) {
			return 0, fmt.Errorf("dims %v", dims)
		}
		n *= d
	}
	return int(n), nil
}

// readConstant decodes an initializer of type float32, int64, int8 or
// uint8.
func readConstant(t *onnxpb.TensorProto) (*constant, error) {
	n, err := size(t.Dims)
	if err != nil {
		return nil, fmt.Errorf("initializer %q: %w", t.GetName(), err)
	}
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		return nil, fmt.Errorf("initializer %q: external data is not supported", t.GetName())
	}
	c := &constant{name: t.GetName()}
	for _, d := range t.Dims {
		c.dims = append(c.dims, int(d))
	}
	switch onnxpb.TensorProto_DataType(t.GetDataType()) {
	case onnxpb.TensorProto_FLOAT:
		c.f32, err = onnx.Float32Data(t)
		if err != nil {
			return nil, err
		}
	case onnxpb.TensorProto_INT64:
		switch {
		case t.RawData != nil:
			if len(t.RawData) != 8*n {
				return nil, fmt.Errorf("initializer %q: %d raw bytes for dims %v", t.GetName(), len(t.RawData), t.Dims)
			}
			c.i64 = make([]int64, n)
			for i := range c.i64 {
				c.i64[i] = int64(binary.LittleEndian.Uint64(t.RawData[8*i:]))
			}
		default:
			if len(t.Int64Data) != n {
				return nil, fmt.Errorf("initializer %q: %d values for dims %v", t.GetName(), len(t.Int64Data), t.Dims)
			}
			c.i64 = append([]int64(nil), t.Int64Data...)
		}
	case onnxpb.TensorProto_INT8, onnxpb.TensorProto_UINT8:
		c.u8 = t.GetDataType() == int32(onnxpb.TensorProto_UINT8)
		c.i8 = make([]int8, n)
		switch {
		case t.RawData != nil:
			if len(t.RawData) != n {
				return nil, fmt.Errorf("initializer %q: %d raw bytes for dims %v", t.GetName(), len(t.RawData), t.Dims)
			}
			for i, b := range t.RawData {
				c.i8[i] = int8(b)
				if c.u8 {
					c.i8[i] = int8(int(b) - 128)
				}
			}
		default:
			if len(t.Int32Data) != n {
				return nil, fmt.Errorf("initializer %q: %d values for dims %v", t.GetName(), len(t.Int32Data), t.Dims)
			}
			for i, v := range t.Int32Data {
				lo, hi := int32(-128), int32(127)
				if c.u8 {
					lo, hi = 0, 255
				}
				if v < lo || v > hi {
					return nil, fmt.Errorf("initializer %q: value %d out of range", t.GetName(), v)
				}
				if c.u8 {
					v -= 128
				}
				c.i8[i] = int8(v)
			}
		}
	default:
		return nil, fmt.Errorf("initializer %q: data type %s is not supported", t.GetName(), onnxpb.TensorProto_DataType(t.GetDataType()))
	}
	return c, nil
}

// count is the number of elements of c.
func (c *constant) count() int {
	n := 1
	for _, d := range c.dims {
		n *= d
	}
	return n
}

func float32Bytes(v []float32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(x))
	}
	return out
}

func int32Bytes(v []int32) []byte {
	out := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(out[4*i:], uint32(x))
	}
	return out
}

func int8Bytes(v []int8) []byte {
	out := make([]byte, len(v))
	for i, x := range v {
		out[i] = byte(x)
	}
	return out
}
