package fl

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
)

// Vector is an encoded list of tensors (a model update). Data holds the
// values: little-endian float32s (Float32), or signed bytes (Int8), each
// tensor's values times its scale in Scales.
type Vector struct {
	Encoding Encoding  `json:"encoding"`
	Shape    []int     `json:"shape"`
	Data     []byte    `json:"data"`
	Scales   []float32 `json:"scales,omitempty"`
}

// Size is the encoded size in bytes (values and scales).
func (v Vector) Size() int { return len(v.Data) + 4*len(v.Scales) }

// Encode encodes tensors. Int8 rounds stochastically: a value x of a
// tensor whose largest magnitude is m is sent as q = floor(x/s + u), with
// s = m/127 and u drawn uniformly from [0, 1), so that q·s is x rounded up
// with probability x/s − floor(x/s) and down otherwise: its expectation is
// exactly x, and an average of many clients' quantized updates is an
// unbiased estimate of the average of their exact updates (the error of
// each value is below s and of zero mean). rng draws u (Int8 only).
func Encode(t [][]float32, enc Encoding, rng *rand.Rand) (Vector, error) {
	v := Vector{Encoding: enc, Shape: Shape(t)}
	n := 0
	for _, x := range t {
		n += len(x)
	}
	for i, x := range t {
		for j, f := range x {
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return Vector{}, fmt.Errorf("fl: tensor %d value %d is %v", i, j, f)
			}
		}
	}
	switch enc {
	case Float32:
		v.Data = make([]byte, 0, 4*n)
		for _, x := range t {
			for _, f := range x {
				v.Data = binary.LittleEndian.AppendUint32(v.Data, math.Float32bits(f))
			}
		}
	case Int8:
		if rng == nil {
			return Vector{}, fmt.Errorf("fl: int8 encoding needs randomness")
		}
		v.Data = make([]byte, 0, n)
		for _, x := range t {
			var m float64
			for _, f := range x {
				m = max(m, math.Abs(float64(f)))
			}
			s := m / 127
			v.Scales = append(v.Scales, float32(s))
			s = float64(float32(s))
			for _, f := range x {
				q := 0.0
				if s > 0 {
					q = math.Floor(float64(f)/s + rng.Float64())
					q = max(-127, min(127, q))
				}
				v.Data = append(v.Data, byte(int8(q)))
			}
		}
	default:
		return Vector{}, fmt.Errorf("fl: encoding %q", enc)
	}
	return v, nil
}

// Decode decodes v, checking it against the tensor lengths shape: a
// vector of another shape, a truncated one, a bad scale or a NaN or
// infinite value is refused.
func Decode(v Vector, shape []int) ([][]float32, error) {
	if len(v.Shape) != len(shape) {
		return nil, fmt.Errorf("fl: an update of %d tensors, the model has %d", len(v.Shape), len(shape))
	}
	n := 0
	for i, l := range shape {
		if v.Shape[i] != l {
			return nil, fmt.Errorf("fl: update tensor %d has %d values, the model's has %d", i, v.Shape[i], l)
		}
		n += l
	}
	out := make([][]float32, len(shape))
	switch v.Encoding {
	case Float32:
		if len(v.Data) != 4*n || len(v.Scales) != 0 {
			return nil, fmt.Errorf("fl: float32 update of %d bytes and %d scales, want %d bytes", len(v.Data), len(v.Scales), 4*n)
		}
		p := 0
		for i, l := range shape {
			out[i] = make([]float32, l)
			for j := range out[i] {
				f := math.Float32frombits(binary.LittleEndian.Uint32(v.Data[p:]))
				if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
					return nil, fmt.Errorf("fl: update tensor %d value %d is %v", i, j, f)
				}
				out[i][j] = f
				p += 4
			}
		}
	case Int8:
		if len(v.Data) != n || len(v.Scales) != len(shape) {
			return nil, fmt.Errorf("fl: int8 update of %d bytes and %d scales, want %d and %d", len(v.Data), len(v.Scales), n, len(shape))
		}
		p := 0
		for i, l := range shape {
			s := v.Scales[i]
			if !(s >= 0) || math.IsInf(float64(s), 0) {
				return nil, fmt.Errorf("fl: update tensor %d has scale %v", i, s)
			}
			out[i] = make([]float32, l)
			for j := range out[i] {
				out[i][j] = float32(int8(v.Data[p])) * s
				p++
			}
		}
	default:
		return nil, fmt.Errorf("fl: update encoding %q", v.Encoding)
	}
	return out, nil
}
