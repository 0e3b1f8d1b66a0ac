package drift

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSummaryStatistics checks KS and Wasserstein distances computed from
// summaries: equal to the exact samples' while the sketches hold every
// value, and within their stated bounds on large samples.
func TestSummaryStatistics(t *testing.T) {
	r := rand.New(rand.NewPCG(61, 62))
	for _, c := range []struct {
		n1, n2 int
		shift  float64
	}{{300, 400, 0}, {300, 400, 0.3}, {200000, 1000, 0.1}, {100000, 150000, 0}, {50000, 5000, 0.5}} {
		a, _ := NewNumeric(NumericConfig{Seed: 1})
		b, _ := NewNumeric(NumericConfig{Seed: 2})
		x, y := normals(r, c.n1, 0, 1), normals(r, c.n2, c.shift, 1.2)
		for _, v := range x {
			a.Add(v)
		}
		for _, v := range y {
			b.Add(v)
		}
		ks, err := KSFromSummaries(a, b)
		if err != nil {
			t.Fatal(err)
		}
		exact, _ := KolmogorovSmirnov(x, y)
		w, bound, err := WassersteinFromSummaries(a, b)
		if err != nil {
			t.Fatal(err)
		}
		wExact, _ := Wasserstein(x, y)
		small := c.n1 <= DefaultSketchK && c.n2 <= DefaultSketchK
		t.Logf("n %d and %d, shift %v: D %.5f from summaries, %.5f exact (bound %.5f); W1 %.5f, %.5f (bound %.5f)",
			c.n1, c.n2, c.shift, ks.Statistic, exact.Statistic, ks.Bound, w, wExact, bound)
		if small {
			if ks.Bound != 0 || bound != 0 || math.Abs(ks.Statistic-exact.Statistic) > 1e-15 || math.Abs(w-wExact) > 1e-12 {
				t.Errorf("exact sketches: D %v vs %v, W1 %v vs %v, bounds %v %v", ks.Statistic, exact.Statistic, w, wExact, ks.Bound, bound)
			}
			if math.Abs(ks.PValue-ksAsymptotic(c.n1, c.n2, exact.Statistic)) > 1e-12 {
				t.Errorf("p-value %v, asymptotic of the exact D %v", ks.PValue, ksAsymptotic(c.n1, c.n2, exact.Statistic))
			}
			continue
		}
		if ks.Bound == 0 || math.Abs(ks.Statistic-exact.Statistic) > ks.Bound {
			t.Errorf("D %v from summaries, %v exact: over the bound %v", ks.Statistic, exact.Statistic, ks.Bound)
		}
		if bound == 0 || math.Abs(w-wExact) > bound {
			t.Errorf("W1 %v from summaries, %v exact: over the bound %v", w, wExact, bound)
		}
	}
}
