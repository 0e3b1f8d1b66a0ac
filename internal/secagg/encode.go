package secagg

import (
	"fmt"
	"math"
)

// Encoding maps real vectors into Z_2^32, where masks are added: each value
// is clipped to [-Clip, Clip], scaled by 2^FracBits and rounded; the sum of
// up to Clients such values must fit in a signed 32-bit integer, which
// NewEncoding checks.
type Encoding struct {
	Clip     float64
	FracBits uint
	Clients  int
}

// NewEncoding returns an encoding for sums of clients vectors of values in
// [-clip, clip], with as many fractional bits as the sum's range allows.
func NewEncoding(clip float64, clients int) (Encoding, error) {
	if !(clip > 0) || math.IsInf(clip, 0) || clients < 1 {
		return Encoding{}, fmt.Errorf("secagg: clip %v for %d clients", clip, clients)
	}
	// |sum| <= clients * clip * 2^f < 2^31
	f := math.Floor(31-math.Log2(float64(clients)*clip)) - 1
	if f < 1 {
		return Encoding{}, fmt.Errorf("secagg: %d clients of values up to %v leave no fractional bits in 32", clients, clip)
	}
	return Encoding{Clip: clip, FracBits: uint(min(f, 24)), Clients: clients}, nil
}

// Encode encodes x; a NaN or infinite value is refused, so that one
// client's bad vector cannot poison a sum nobody can inspect.
func (e Encoding) Encode(x []float32) ([]uint32, error) {
	out := make([]uint32, len(x))
	scale := math.Ldexp(1, int(e.FracBits))
	for i, v := range x {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("secagg: value %d is %v", i, v)
		}
		f = max(-e.Clip, min(e.Clip, f))
		out[i] = uint32(int32(math.Round(f * scale)))
	}
	return out, nil
}

// Decode decodes a sum of encoded vectors.
func (e Encoding) Decode(sum []uint32) []float64 {
	out := make([]float64, len(sum))
	scale := math.Ldexp(1, -int(e.FracBits))
	for i, v := range sum {
		out[i] = float64(int32(v)) * scale
	}
	return out
}
