package fl

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// WeightedSum returns Σ coef[i]·deltas[i], tensor by tensor, in float64
// accumulation; every delta has the same shape.
func WeightedSum(deltas [][][]float32, coef []float64) ([][]float32, error) {
	if len(deltas) == 0 || len(deltas) != len(coef) {
		return nil, fmt.Errorf("fl: %d deltas and %d coefficients", len(deltas), len(coef))
	}
	shape := Shape(deltas[0])
	out := make([][]float32, len(shape))
	for t, l := range shape {
		acc := make([]float64, l)
		for i, d := range deltas {
			if len(d) != len(shape) || len(d[t]) != l {
				return nil, fmt.Errorf("fl: delta %d's shape differs from delta 0's", i)
			}
			c := coef[i]
			for j, v := range d[t] {
				acc[j] += c * float64(v)
			}
		}
		out[t] = make([]float32, l)
		for j, v := range acc {
			out[t][j] = float32(v)
		}
	}
	return out, nil
}

// FedAvgCoefficients are FedAvg's weights: each client's share of the
// samples, n_i / Σ n.
func FedAvgCoefficients(samples []int) ([]float64, error) {
	total := 0
	for i, n := range samples {
		if n < 1 {
			return nil, fmt.Errorf("fl: client %d reports %d samples", i, n)
		}
		total += n
	}
	if total == 0 {
		return nil, fmt.Errorf("fl: no clients")
	}
	out := make([]float64, len(samples))
	for i, n := range samples {
		out[i] = float64(n) / float64(total)
	}
	return out, nil
}

// NovaCoefficients normalise updates made with different numbers of local
// steps as FedNova does (Wang et al., 2020): client i's update Δ_i after
// τ_i steps counts as its mean step Δ_i/τ_i, weighted by p_i (normalised
// to sum 1), and the aggregate takes τ_eff = Σ p_i·τ_i such steps. The
// coefficient of Δ_i is p_i·τ_eff/τ_i. A client that did many steps thus
// moves the model no further than its share of samples allows, so the
// aggregate's direction is not biased toward the clients that do the most
// local work; with equal steps the coefficients are p_i (FedAvg).
func NovaCoefficients(p []float64, steps []int) ([]float64, error) {
	if len(p) == 0 || len(p) != len(steps) {
		return nil, fmt.Errorf("fl: %d weights and %d step counts", len(p), len(steps))
	}
	var sum, tauEff float64
	for i, w := range p {
		if !(w > 0) || math.IsInf(w, 0) || steps[i] < 1 {
			return nil, fmt.Errorf("fl: client %d has weight %v and %d steps", i, w, steps[i])
		}
		sum += w
	}
	for i, w := range p {
		tauEff += w / sum * float64(steps[i])
	}
	out := make([]float64, len(p))
	for i, w := range p {
		out[i] = w / sum * tauEff / float64(steps[i])
	}
	return out, nil
}

// StalenessWeight is FedBuff's discount of an update made from a model s
// versions old: 1/sqrt(1+s).
func StalenessWeight(s int) float64 { return 1 / math.Sqrt(1+float64(max(s, 0))) }

// Weighting is how FedBuff weighs an update by its staleness s.
type Weighting string

// The weightings.
const (
	// Polynomial is StalenessWeight: 1/sqrt(1+s).
	Polynomial Weighting = "polynomial"
	// Constant weighs every update alike.
	Constant Weighting = "constant"
	// Hinge weighs updates of staleness up to 4 fully and later ones by 1/(1+(s-4)).
	Hinge Weighting = "hinge"
)

// Weight is the weight of an update made s versions ago.
func (w Weighting) Weight(s int) float64 {
	switch w {
	case Constant:
		return 1
	case Hinge:
		if s <= 4 {
			return 1
		}
		return 1 / (1 + float64(s-4))
	default:
		return StalenessWeight(s)
	}
}

// Norm is the L2 norm of all tensors together.
func Norm(t [][]float32) float64 {
	var s float64
	for _, x := range t {
		for _, v := range x {
			s += float64(v) * float64(v)
		}
	}
	return math.Sqrt(s)
}

// Clip scales t in place so that its norm is at most c, and returns the
// factor applied (1 when it was within c).
func Clip(t [][]float32, c float64) float64 {
	n := Norm(t)
	if n <= c || n == 0 {
		return 1
	}
	f := c / n
	Scale(t, f)
	return f
}

// Scale multiplies t by f in place.
func Scale(t [][]float32, f float64) {
	for _, x := range t {
		for j := range x {
			x[j] = float32(float64(x[j]) * f)
		}
	}
}

// AddNoise adds independent Gaussian noise of standard deviation std to
// every value of t, in place.
func AddNoise(t [][]float32, std float64, rng *rand.Rand) {
	if std == 0 {
		return
	}
	for _, x := range t {
		for j := range x {
			x[j] = float32(float64(x[j]) + std*rng.NormFloat64())
		}
	}
}

// AddTo adds delta to w in place.
func AddTo(w, delta [][]float32) {
	for t := range w {
		for j := range w[t] {
			w[t][j] += delta[t][j]
		}
	}
}

// Sub returns a − b.
func Sub(a, b [][]float32) [][]float32 {
	out := make([][]float32, len(a))
	for t := range a {
		out[t] = make([]float32, len(a[t]))
		for j := range a[t] {
			out[t][j] = a[t][j] - b[t][j]
		}
	}
	return out
}

// Flatten concatenates tensors.
func Flatten(t [][]float32) []float32 {
	var out []float32
	for _, x := range t {
		out = append(out, x...)
	}
	return out
}

// Unflatten splits v into tensors of the lengths shape.
func Unflatten(v []float64, shape []int) ([][]float32, error) {
	n := 0
	for _, l := range shape {
		n += l
	}
	if len(v) != n {
		return nil, fmt.Errorf("fl: %d values for tensors of %d", len(v), n)
	}
	out := make([][]float32, len(shape))
	p := 0
	for i, l := range shape {
		out[i] = make([]float32, l)
		for j := range out[i] {
			out[i][j] = float32(v[p])
			p++
		}
	}
	return out, nil
}
