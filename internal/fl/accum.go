package fl

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
)

// Ring is a vector of Z_2^32 (a masked update). It travels in JSON as the
// base64 of its little-endian words: about 5.3 characters a value rather
// than up to 10.
type Ring []uint32

// MarshalJSON encodes r as base64.
func (r Ring) MarshalJSON() ([]byte, error) {
	b := make([]byte, 4*len(r))
	for i, v := range r {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	return json.Marshal(b)
}

// UnmarshalJSON decodes base64 of a whole number of words.
func (r *Ring) UnmarshalJSON(data []byte) error {
	var b []byte
	if err := json.Unmarshal(data, &b); err != nil {
		return fmt.Errorf("fl: ring vector: %w", err)
	}
	if len(b)%4 != 0 {
		return fmt.Errorf("fl: ring vector of %d bytes, not whole words", len(b))
	}
	out := make(Ring, len(b)/4)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
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
