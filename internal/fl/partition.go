package fl

import (
	"fmt"
	"math"
	"math/rand/v2"

	"outpost.dev/outpost/internal/train"
)

// Indexed is the samples of a data set at the given indices, in order.
type Indexed struct {
	Data    train.Dataset
	Indices []int
}

// Len is the number of indices.
func (x Indexed) Len() int { return len(x.Indices) }

// Dim is the data set's.
func (x Indexed) Dim() int { return x.Data.Dim() }

// Sample returns sample Indices[i] of the data set.
func (x Indexed) Sample(i int, dst []float32) int { return x.Data.Sample(x.Indices[i], dst) }

// DirichletPartition splits the samples with the given labels among
// clients, the usual simulation of clients whose label mixes differ: for
// each class, the shares of its samples the clients get are drawn from a
// symmetric Dirichlet distribution of concentration alpha (small alpha:
// each client sees few classes). Every sample goes to one client; each
// client's indices are ascending.
func DirichletPartition(labels []int, clients int, alpha float64, rng *rand.Rand) ([][]int, error) {
	if clients < 1 || !(alpha > 0) || math.IsInf(alpha, 0) {
		return nil, fmt.Errorf("fl: partition among %d clients with α %v", clients, alpha)
	}
	byClass := map[int][]int{}
	classes := 0
	for i, y := range labels {
		byClass[y] = append(byClass[y], i)
		classes = max(classes, y+1)
	}
	owner := make([]int, len(labels))
	for c := range classes {
		idx := byClass[c]
		if len(idx) == 0 {
			continue
		}
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		p := make([]float64, clients)
		var sum float64
		for k := range p {
			p[k] = gamma(alpha, rng)
			sum += p[k]
		}
		at, acc := 0, 0.0
		for k := range p {
			acc += p[k] / sum
			end := int(math.Round(acc * float64(len(idx))))
			if k == clients-1 {
				end = len(idx)
			}
			for _, i := range idx[at:end] {
				owner[i] = k
			}
			at = end
		}
	}
	out := make([][]int, clients)
	for i, k := range owner {
		out[k] = append(out[k], i)
	}
	return out, nil
}

// gamma draws from Gamma(a, 1) (Marsaglia and Tsang, 2000; for a < 1,
// Gamma(a+1)·U^(1/a)).
func gamma(a float64, rng *rand.Rand) float64 {
	if a < 1 {
		return gamma(a+1, rng) * math.Pow(rng.Float64(), 1/a)
	}
	d := a - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if math.Log(u) < 0.5*x*x+d-d*v+d*math.Log(v) {
			return d * v
		}
	}
}
