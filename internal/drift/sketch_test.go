package drift

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// rankErrors returns the largest error, as a fraction of len(sorted), of
// s's quantile queries at q = 0.001, 0.002, … 0.999 (the distance from q·n
// to the true ranks [#{< x}, #{≤ x}] of the value x returned), and of its
// distribution function anywhere (over every value of sorted).
func rankErrors(s *Sketch, sorted []float64) (quantile, uniform float64) {
	n := float64(len(sorted))
	for i := 1; i < 1000; i++ {
		q := float64(i) / 1000
		x := s.Quantile(q)
		below := float64(sort.SearchFloat64s(sorted, x))                                       // #{< x}
		atMost := float64(sort.Search(len(sorted), func(j int) bool { return sorted[j] > x })) // #{≤ x}
		target := q * n
		quantile = max(quantile, (below-target)/n, (target-atMost)/n)
	}
	vals, ws := s.sortedWeighted()
	var est uint64
	j := 0
	for i := 0; i < len(sorted); {
		x := sorted[i]
		for i < len(sorted) && sorted[i] == x {
			i++
		}
		for j < len(vals) && vals[j] <= x {
			est += ws[j]
			j++
		}
		uniform = max(uniform, math.Abs(float64(est)-float64(i))/n)
	}
	return quantile, uniform
}

func TestSketchRankError(t *testing.T) {
	const n = 1_000_000
	dists := []struct {
		name string
		draw func(r *rand.Rand) float64
	}{
		{"normal", func(r *rand.Rand) float64 { return r.NormFloat64() }},
		{"discrete", func(r *rand.Rand) float64 { return float64(r.IntN(21)) }},
		{"sorted", nil}, // ascending input: the adversarial order for compactors
	}
	for i, d := range dists {
		t.Run(d.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(i), 99))
			data := make([]float64, n)
			for j := range data {
				if d.draw == nil {
					data[j] = float64(j)
				} else {
					data[j] = d.draw(r)
				}
			}
			whole, err := NewSketch(0, 1)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range data {
				whole.Add(x)
			}
			// The same values in 16 parts, sketched apart and merged in a tree.
			parts := make([]*Sketch, 16)
			for p := range parts {
				parts[p], _ = NewSketch(0, uint64(100+p))
				for _, x := range data[p*n/16 : (p+1)*n/16] {
					parts[p].Add(x)
				}
			}
			for len(parts) > 1 {
				var next []*Sketch
				for p := 0; p < len(parts); p += 2 {
					if err := parts[p].Merge(parts[p+1]); err != nil {
						t.Fatal(err)
					}
					next = append(next, parts[p])
				}
				parts = next
			}
			merged := parts[0]
			slices.Sort(data)
			for _, c := range []struct {
				name string
				s    *Sketch
			}{{"one sketch", whole}, {"16 merged", merged}} {
				if c.s.N() != n {
					t.Fatalf("%s: N = %d, want %d", c.name, c.s.N(), n)
				}
				q, u := rankErrors(c.s, data)
				eq, eu := c.s.RankError(1e-6), c.s.UniformRankError(1e-3)
				t.Logf("%s: largest quantile error %.4f (bound %.4f at δ=1e-6), largest CDF error %.4f (uniform bound %.4f at δ=1e-3), %d values kept",
					c.name, q, eq, u, eu, c.s.Retained())
				if q > eq {
					t.Errorf("%s: quantile rank error %.5f over the bound %.5f", c.name, q, eq)
				}
				if u > eu {
					t.Errorf("%s: distribution function error %.5f over the uniform bound %.5f", c.name, u, eu)
				}
				if eq > 0.02 || eu > 0.02 {
					t.Errorf("%s: bounds %.4f and %.4f, documented as about 1.3%% and 1.5%%", c.name, eq, eu)
				}
				if c.s.Retained() > 3*DefaultSketchK+8*64 {
					t.Errorf("%s: %d values kept", c.name, c.s.Retained())
				}
			}
		})
	}
}

func TestSketchExactWhileSmall(t *testing.T) {
	s, err := NewSketch(64, 5)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 5))
	var data []float64
	for range 63 {
		x := r.NormFloat64()
		data = append(data, x)
		s.Add(x)
	}
	s.Add(math.NaN())
	s.Add(math.Inf(1))
	slices.Sort(data)
	if s.N() != 63 || s.RankError(1e-9) != 0 || s.UniformRankError(1e-9) != 0 {
		t.Fatalf("N %d, bounds %v %v: want 63 values kept exactly", s.N(), s.RankError(1e-9), s.UniformRankError(1e-9))
	}
	for i, x := range data {
		if got := s.Rank(x); got != uint64(i+1) {
			t.Errorf("Rank(%v) = %d, want %d", x, got, i+1)
		}
		if got := s.Quantile(float64(i+1) / 63); got != x {
			t.Errorf("Quantile(%d/63) = %v, want %v", i+1, got, x)
		}
	}
	if !math.IsNaN(s.Quantile(1.5)) || !math.IsNaN(s.Quantile(-0.1)) {
		t.Error("Quantile outside [0, 1] is not NaN")
	}
	s.Add(0) // the 64th value compacts level 0
	if s.RankError(1e-6) == 0 || s.Retained() >= 64 {
		t.Errorf("after compaction: bound %v, %d kept", s.RankError(1e-6), s.Retained())
	}
}

func TestSketchDeterministic(t *testing.T) {
	build := func(seed uint64) *Sketch {
		s, _ := NewSketch(32, seed)
		r := rand.New(rand.NewPCG(1, 1))
		for range 10000 {
			s.Add(r.Float64())
		}
		return s
	}
	a, b, c := build(7), build(7), build(8)
	if !slices.EqualFunc(a.levels, b.levels, slices.Equal) {
		t.Error("two sketches of the same seed and input differ")
	}
	if slices.EqualFunc(a.levels, c.levels, slices.Equal) {
		t.Error("sketches of different seeds are identical")
	}
}

func TestSketchErrors(t *testing.T) {
	for _, k := range []int{-1, 7, 1<<16 + 1} {
		if _, err := NewSketch(k, 0); err == nil {
			t.Errorf("NewSketch(%d) accepted", k)
		}
	}
	a, _ := NewSketch(16, 0)
	b, _ := NewSketch(32, 0)
	b.Add(1)
	if err := a.Merge(b); err == nil || a.N() != 0 {
		t.Errorf("merge of k 32 into k 16: %v, N %d", err, a.N())
	}
	if !math.IsNaN(a.Quantile(0.5)) || !math.IsNaN(a.CDF(0)) {
		t.Error("an empty sketch's quantile or CDF is not NaN")
	}
}
