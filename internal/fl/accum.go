package fl

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
)

// Ring is a vector of Z_2^Bits (a masked update, or a sum of them), as
// narrow on the wire as its ring: 4 bytes a value in a 32-bit ring, 2 in a
// 16-bit one, 1 in an 8-bit one.
//
// In JSON a 32-bit vector is the base64 of its little-endian words, a
// string, as it was before rings had other widths (so that hubs and agents
// of either age read each other's); a narrower one is an object naming its
// width, {"bits": 16, "data": base64 of 2-byte little-endian values}. Either
// form says its width, and both are lossless: a value outside its ring is
// refused rather than cut.
type Ring struct {
	// Bits is the ring's width: 32 (also 0), 16 or 8.
	Bits  int
	Words []uint32
}

// Width is the ring's width in bits (0 read as 32).
func (r Ring) Width() int {
	if r.Bits == 0 {
		return 32
	}
	return r.Bits
}

// IsZero says the vector is absent (omitzero omits it).
func (r Ring) IsZero() bool { return r.Words == nil }

// Size is the vector's size on the wire, in bytes of values.
func (r Ring) Size() int { return len(r.Words) * r.Width() / 8 }

// ringMask is 2^bits - 1.
func ringMask(bits int) uint32 {
	if bits >= 32 {
		return math.MaxUint32
	}
	return 1<<bits - 1
}

// ringJSON is the object form of a ring narrower than 32 bits.
type ringJSON struct {
	Bits int    `json:"bits"`
	Data []byte `json:"data"`
}

// MarshalJSON encodes r as base64 of its values, in the form its width
// takes (see Ring).
func (r Ring) MarshalJSON() ([]byte, error) {
	w := r.Width()
	if w != 32 && w != 16 && w != 8 {
		return nil, fmt.Errorf("fl: a ring vector of %d bits: want 32, 16 or 8", r.Bits)
	}
	size := w / 8
	b := make([]byte, size*len(r.Words))
	for i, v := range r.Words {
		if v&^ringMask(w) != 0 {
			return nil, fmt.Errorf("fl: ring vector value %d is %#x, outside its %d-bit ring", i, v, w)
		}
		switch w {
		case 32:
			binary.LittleEndian.PutUint32(b[4*i:], v)
		case 16:
			binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
		default:
			b[i] = byte(v)
		}
	}
	if w == 32 {
		return json.Marshal(b)
	}
	return json.Marshal(ringJSON{Bits: w, Data: b})
}

// UnmarshalJSON decodes either form: a string of whole 32-bit words, or
// an object of a width of 32, 16 or 8 and whole values of it.
func (r *Ring) UnmarshalJSON(data []byte) error {
	t := bytes.TrimSpace(data)
	if string(t) == "null" {
		return nil
	}
	v := ringJSON{Bits: 32}
	if len(t) > 0 && t[0] == '{' {
		d := json.NewDecoder(bytes.NewReader(data))
		d.DisallowUnknownFields()
		v = ringJSON{}
		if err := d.Decode(&v); err != nil {
			return fmt.Errorf("fl: ring vector: %w", err)
		}
		if v.Bits != 32 && v.Bits != 16 && v.Bits != 8 {
			return fmt.Errorf("fl: ring vector of %d bits: want 32, 16 or 8", v.Bits)
		}
	} else if err := json.Unmarshal(data, &v.Data); err != nil {
		return fmt.Errorf("fl: ring vector: %w", err)
	}
	size := v.Bits / 8
	if len(v.Data)%size != 0 {
		return fmt.Errorf("fl: ring vector of %d bytes, not whole %d-bit values", len(v.Data), v.Bits)
	}
	out := Ring{Bits: v.Bits, Words: make([]uint32, len(v.Data)/size)}
	for i := range out.Words {
		switch size {
		case 4:
			out.Words[i] = binary.LittleEndian.Uint32(v.Data[4*i:])
		case 2:
			out.Words[i] = uint32(binary.LittleEndian.Uint16(v.Data[2*i:]))
		default:
			out.Words[i] = uint32(v.Data[i])
		}
	}
	*r = out
	return nil
}

// floats is a float64 vector that travels in JSON as the base64 of its
// little-endian bits.
type floats []float64

func (f floats) MarshalJSON() ([]byte, error) {
	b := make([]byte, 8*len(f))
	for i, v := range f {
		binary.LittleEndian.PutUint64(b[8*i:], math.Float64bits(v))
	}
	return json.Marshal(base64.StdEncoding.EncodeToString(b))
}

func (f *floats) UnmarshalJSON(data []byte) error {
	var b []byte
	if err := json.Unmarshal(data, &b); err != nil {
		return err
	}
	if len(b)%8 != 0 {
		return fmt.Errorf("fl: float vector of %d bytes", len(b))
	}
	out := make(floats, len(b)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	*f = out
	return nil
}

// accum is a running weighted sum of plain updates, so that what the
// coordinator holds (and snapshots) of a round is one vector however many
// clusters send: the aggregate is linear in the updates.
type accum struct {
	// Sum is Σ c_i·Δ_i, flattened, with c_i = s_i (DP), n_i·s_i/τ_i
	// (FedNova) or n_i·s_i (FedAvg); s_i is the staleness weight (1 in
	// synchronous rounds).
	Sum     floats `json:"sum,omitempty"`
	Count   int    `json:"count"`
	Samples int    `json:"samples"`
	// StepSamples is Σ n_i·τ_i (FedNova's τ_eff = StepSamples/Samples).
	StepSamples float64 `json:"stepSamples"`
	Bytes       int64   `json:"bytes"`
	// Loss and Accuracy are sample-weighted sums of the reported metrics.
	Loss      float64 `json:"loss"`
	Accuracy  float64 `json:"accuracy"`
	Staleness int     `json:"staleness"` // the oldest's
}

// add adds an update of samples n and steps tau, made staleness versions
// ago and weighed for it by w.
func (a *accum) add(delta [][]float32, n, tau int, m Metrics, bytes, staleness int, w Weighting, dp, nova bool) {
	c := w.Weight(staleness)
	switch {
	case dp:
	case nova:
		c *= float64(n) / float64(tau)
	default:
		c *= float64(n)
	}
	if a.Sum == nil {
		size := 0
		for _, t := range delta {
			size += len(t)
		}
		a.Sum = make(floats, size)
	}
	p := 0
	for _, t := range delta {
		for _, v := range t {
			a.Sum[p] += c * float64(v)
			p++
		}
	}
	a.Count++
	a.Samples += n
	a.StepSamples += float64(n) * float64(tau)
	a.Bytes += int64(bytes)
	a.Loss += m.Loss * float64(n)
	a.Accuracy += m.Accuracy * float64(n)
	a.Staleness = max(a.Staleness, staleness)
}

// result is the aggregate: Sum / Count (DP), Sum·τ_eff/Σn (FedNova),
// Sum/Σn (FedAvg); the same as WeightedSum with the coefficients of
// FedAvgCoefficients or NovaCoefficients times the staleness weights.
func (a *accum) result(shape []int, dp, nova bool) ([][]float32, error) {
	if a.Count == 0 {
		return nil, fmt.Errorf("fl: no updates")
	}
	f := 1 / float64(a.Samples)
	switch {
	case dp:
		f = 1 / float64(a.Count)
	case nova:
		f *= a.StepSamples / float64(a.Samples)
	}
	v := make([]float64, len(a.Sum))
	for i, x := range a.Sum {
		v[i] = x * f
	}
	return Unflatten(v, shape)
}

// metrics are the sample-weighted mean metrics.
func (a *accum) metrics() Metrics {
	if a.Samples == 0 {
		return Metrics{}
	}
	return Metrics{Loss: a.Loss / float64(a.Samples), Accuracy: a.Accuracy / float64(a.Samples)}
}
