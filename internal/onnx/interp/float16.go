package interp

import (
	"encoding/binary"
	"fmt"
	"math"

	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// Float16 is ONNX's element type FLOAT16. The interpreter stores no tensor
// of it: FLOAT16 initializers and Constant values are widened to float32
// when the model loads, and Cast to FLOAT16 gives a float32 tensor whose
// values are rounded to half precision. Graph inputs and outputs of
// FLOAT16 are refused with an error that wraps ErrUnsupported.
const Float16 DType = 10

// HalfToFloat32 widens the IEEE 754 half-precision value with bits h to
// float32 (exactly: every half value is a float32 value).
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0: // signed zero
		return math.Float32frombits(sign)
	}
	// Subnormal half: mant * 2^-24, a normal float32.
	f := float32(mant) * (1.0 / (1 << 24))
	if sign != 0 {
		f = -f
	}
	return f
}

// Float32ToHalf narrows f to the bits of the nearest half-precision value,
// rounding to nearest even; values beyond the half range become infinite
// and NaN stays NaN.
func Float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff { // Inf or NaN
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // the half exponent field, if normal
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal half (or zero): the value is m * 2^-24 with m rounded.
		if e < -10 {
			return sign // below half the smallest subnormal: zero
		}
		m := mant | 0x800000 // implicit leading one
		shift := uint32(14 - e)
		h := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // a carry into the exponent is right, up to infinity
	}
	return sign | uint16(h)
}

// RoundToHalf rounds f to the nearest half-precision value, as a float32.
func RoundToHalf(f float32) float32 { return HalfToFloat32(Float32ToHalf(f)) }

// roundToHalfAll rounds every value of s to half precision in place.
func roundToHalfAll(s []float32) {
	for i, v := range s {
		s[i] = RoundToHalf(v)
	}
}

// float16FromProto reads a FLOAT16 TensorProto (bit patterns in raw_data,
// two bytes each little-endian, or in the low 16 bits of int32_data) into
// a float32 tensor.
func float16FromProto(p *onnxpb.TensorProto, shape []int, n int) (*Tensor, error) {
	t := &Tensor{DType: Float32, Shape: shape, F32: make([]float32, n)}
	if p.RawData != nil {
		raw := p.GetRawData()
		if len(raw) != 2*n {
			return nil, fmt.Errorf("tensor %q: %d bytes of raw data for %d FLOAT16 elements", p.GetName(), len(raw), n)
		}
		for i := range t.F32 {
			t.F32[i] = HalfToFloat32(binary.LittleEndian.Uint16(raw[2*i:]))
		}
		return t, nil
	}
	if c := len(p.GetInt32Data()); c != n {
		return nil, fmt.Errorf("tensor %q: %d values for shape %v", p.GetName(), c, ShapeString(shape))
	}
	for i, v := range p.GetInt32Data() {
		t.F32[i] = HalfToFloat32(uint16(v))
	}
	return t, nil
}
