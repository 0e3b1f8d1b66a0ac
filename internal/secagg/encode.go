package secagg

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Encoding maps real vectors into Z_2^Bits, where masks are added: each
// value is clipped to [-Clip, Clip], scaled by 2^FracBits and rounded; the
// sum of up to Clients such values must fit in a signed Bits-bit integer,
// which NewEncoding checks.
//
// A 32-bit ring rounds to nearest: its step is far below any update's
// precision. A narrower ring's step can be as coarse as the values, so it
// rounds stochastically: x·2^f becomes floor(x·2^f + u), u uniform in
// [0, 1), whose expectation is exactly x·2^f; a sum of clients' encodings
// is then an unbiased estimate of the sum of their values, off by at most
// one step per client.
type Encoding struct {
	Clip     float64
	FracBits uint
	Clients  int
	// Bits is the ring's width: 32, 16 or 8.
	Bits int
}

// NewEncoding returns an encoding into Z_2^bits (0: 32) for sums of
// clients vectors of values in [-clip, clip], with as many fractional bits
// (at most 24) as the sum's range allows; it refuses a range that leaves
// none.
func NewEncoding(clip float64, clients, bits int) (Encoding, error) {
	if bits == 0 {
		bits = 32
	}
	if err := checkBits(bits); err != nil {
		return Encoding{}, err
	}
	if !(clip > 0) || math.IsInf(clip, 0) || clients < 1 {
		return Encoding{}, fmt.Errorf("secagg: clip %v for %d clients", clip, clients)
	}
	// |sum| <= clients * (clip * 2^f + 1) <= 2^(bits-2) + clients < 2^(bits-1):
	// the +1 is a stochastic rounding up.
	f := math.Floor(float64(bits-1)-math.Log2(float64(clients)*clip)) - 1
	if clients >= 1<<(bits-2) {
		return Encoding{}, fmt.Errorf("secagg: %d clients do not fit a %d-bit ring: at most %d", clients, bits, 1<<(bits-2)-1)
	}
	if f < 1 {
		return Encoding{}, fmt.Errorf("secagg: %d clients of values up to %v leave no fractional bits in a %d-bit ring: want a smaller range or a wider ring", clients, clip, bits)
	}
	return Encoding{Clip: clip, FracBits: uint(min(f, 24)), Clients: clients, Bits: bits}, nil
}

func checkBits(bits int) error {
	switch bits {
	case 8, 16, 32:
		return nil
	}
	return fmt.Errorf("secagg: a %d-bit ring: want 8, 16 or 32", bits)
}

// ringMask is 2^bits - 1 (bits 0: 32).
func ringMask(bits int) uint32 {
	if bits == 0 || bits >= 32 {
		return math.MaxUint32
	}
	return 1<<bits - 1
}

// Encode encodes x; a NaN or infinite value is refused, so that one
// client's bad vector cannot poison a sum nobody can inspect. rng, the
// client's own randomness, draws the stochastic rounding of a ring
// narrower than 32 bits, which needs it.
func (e Encoding) Encode(x []float32, rng *rand.Rand) ([]uint32, error) {
	stochastic := e.Bits != 0 && e.Bits < 32
	if stochastic && rng == nil {
		return nil, fmt.Errorf("secagg: a %d-bit encoding rounds stochastically and needs randomness", e.Bits)
	}
	out := make([]uint32, len(x))
	scale := math.Ldexp(1, int(e.FracBits))
	mask := ringMask(e.Bits)
	for i, v := range x {
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("secagg: value %d is %v", i, v)
		}
		f = max(-e.Clip, min(e.Clip, f)) * scale
		if stochastic {
			f = math.Floor(f + rng.Float64())
		} else {
			f = math.Round(f)
		}
		out[i] = uint32(int32(f)) & mask
	}
	return out, nil
}

// Decode decodes a sum of encoded vectors (elements of Z_2^Bits).
func (e Encoding) Decode(sum []uint32) []float64 {
	out := make([]float64, len(sum))
	scale := math.Ldexp(1, -int(e.FracBits))
	shift := 0
	if e.Bits != 0 {
		shift = 32 - e.Bits
	}
	for i, v := range sum {
		out[i] = float64(int32(v<<shift)>>shift) * scale // sign-extended from Bits
	}
	return out
}

// bitsOf is a width, 0 read as 32.
func bitsOf(bits int) int {
	if bits == 0 {
		return 32
	}
	return bits
}
