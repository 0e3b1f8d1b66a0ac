package drift

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// These tests state the statistics directly, by identities and worked
// examples; TestAgainstSciPy compares them with SciPy.

func TestGammaQIdentities(t *testing.T) {
	for _, x := range []float64{1e-8, 0.01, 0.5, 1, 2.5, 10, 50, 300} {
		// Q(1, x) = e^-x; Q(½, x) = erfc(√x); Q(n, x) = e^-x Σ_{k<n} x^k/k!.
		checks := []struct {
			a, want float64
		}{{1, math.Exp(-x)}, {0.5, math.Erfc(math.Sqrt(x))}}
		for _, n := range []int{2, 5, 12, 30} {
			sum, term := 0.0, 1.0
			for k := range n {
				if k > 0 {
					term *= x / float64(k)
				}
				sum += term
			}
			checks = append(checks, struct{ a, want float64 }{float64(n), math.Exp(-x) * sum})
		}
		for _, c := range checks {
			got := GammaQ(c.a, x)
			if c.want < 1e-300 {
				continue
			}
			if d := math.Abs(got-c.want) / c.want; d > 1e-12 {
				t.Errorf("Q(%v, %v) = %v, want %v (relative %v)", c.a, x, got, c.want, d)
			}
			if d := math.Abs(GammaP(c.a, x) + got - 1); d > 1e-15 {
				t.Errorf("P + Q = 1 + %v at (%v, %v)", d, c.a, x)
			}
		}
	}
	for _, c := range []struct{ a, x, want float64 }{
		{0, 1, 0}, {2, 0, 1}, {math.Inf(1), 3, 1}, {3, math.Inf(1), 0},
	} {
		if got := GammaQ(c.a, c.x); got != c.want {
			t.Errorf("Q(%v, %v) = %v, want %v", c.a, c.x, got, c.want)
		}
	}
	for _, c := range [][2]float64{{-1, 1}, {1, -1}, {math.NaN(), 1}, {0, 0}} {
		if !math.IsNaN(GammaQ(c[0], c[1])) {
			t.Errorf("Q(%v, %v) is not NaN", c[0], c[1])
		}
	}
	// The χ² critical value at 5% with one degree of freedom.
	if p := ChiSquareSF(3.841458820694124, 1); math.Abs(p-0.05) > 1e-15 {
		t.Errorf("χ²₁ sf(3.8415) = %v, want 0.05", p)
	}
}

func TestKolmogorovSmirnovProperties(t *testing.T) {
	if _, err := KolmogorovSmirnov(nil, []float64{1}); err == nil {
		t.Error("an empty sample accepted")
	}
	if _, err := KolmogorovSmirnov([]float64{1, math.NaN()}, []float64{1}); err == nil {
		t.Error("NaN accepted")
	}
	r := rand.New(rand.NewPCG(71, 72))
	a, b := normals(r, 30, 0, 1), normals(r, 45, 0.4, 1)
	x, _ := KolmogorovSmirnov(a, b)
	y, _ := KolmogorovSmirnov(b, a)
	if x.Statistic != y.Statistic || math.Abs(x.PValue-y.PValue) > 1e-15 || !x.Exact {
		t.Errorf("not symmetric: %+v, %+v", x, y)
	}
	// Disjoint samples of 5 and 5: D = 1 and p = 2/C(10, 5).
	d, _ := KolmogorovSmirnov([]float64{1, 2, 3, 4, 5}, []float64{6, 7, 8, 9, 10})
	if d.Statistic != 1 || math.Abs(d.PValue-2.0/252) > 1e-16 {
		t.Errorf("disjoint: %+v, want D 1, p %v", d, 2.0/252)
	}
	// Identical samples: D = 0, p = 1.
	if s, _ := KolmogorovSmirnov(a, a); s.Statistic != 0 || s.PValue != 1 {
		t.Errorf("identical: %+v", s)
	}
	// Over 10,000 values the p-value is asymptotic.
	big, _ := KolmogorovSmirnov(normals(r, 10001, 0, 1), normals(r, 10, 0, 1))
	if big.Exact {
		t.Error("10,001 values: exact")
	}
	// The asymptotic distribution: P(D_n ≥ d) falls from 1 to 0.
	prev := 1.0
	for i := range 101 {
		d := float64(i) / 100
		p := KolmogorovSF(50, d)
		if p > prev+1e-15 || p < 0 {
			t.Fatalf("KolmogorovSF(50, %v) = %v after %v", d, p, prev)
		}
		prev = p
	}
	if prev != 0 {
		t.Errorf("KolmogorovSF(50, 1) = %v", prev)
	}
}

func TestChiSquareErrors(t *testing.T) {
	for _, c := range []struct {
		o, e []float64
		want string
	}{
		{[]float64{1, 2}, []float64{1, 2, 3}, "2 observed and 3 expected"},
		{[]float64{1}, []float64{1}, "fewer than two"},
		{[]float64{1, -1}, []float64{1, 1}, "observed count 1 is -1"},
		{[]float64{1, 1}, []float64{2, 0}, "want positive"},
		{[]float64{1, 1}, []float64{1, 2}, "add up to 2, expected ones to 3"},
	} {
		if _, err := ChiSquare(c.o, c.e); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ChiSquare(%v, %v): %v, want %q", c.o, c.e, err, c.want)
		}
	}
	for _, c := range []struct {
		a, b []float64
		want string
	}{
		{[]float64{1, 2}, []float64{1}, "2 and 1 categories"},
		{[]float64{0, 0}, []float64{1, 2}, "empty"},
		{[]float64{1, math.Inf(1)}, []float64{1, 2}, "category 1"},
	} {
		if _, err := ChiSquareHomogeneity(c.a, c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ChiSquareHomogeneity(%v, %v): %v, want %q", c.a, c.b, err, c.want)
		}
	}
	// Zero columns are dropped: the same test as without them.
	a, _ := ChiSquareHomogeneity([]float64{0, 10, 0, 20}, []float64{0, 30, 0, 40})
	b, _ := ChiSquareHomogeneity([]float64{10, 20}, []float64{30, 40})
	if a != b || a.DF != 1 {
		t.Errorf("with zero columns %+v, without %+v", a, b)
	}
	// One column left: no degrees of freedom.
	if c, _ := ChiSquareHomogeneity([]float64{3, 0}, []float64{5, 0}); c.DF != 0 || c.PValue != 1 || c.Statistic != 0 {
		t.Errorf("one column: %+v", c)
	}
}

func TestDivergences(t *testing.T) {
	p := []float64{10, 20, 30, 0}
	q := []float64{20, 20, 20, 1}
	// PSI by its formula, with ε for the empty bin.
	want := 0.0
	for i := range p {
		a, b := max(p[i]/60, PSIEpsilon), max(q[i]/61, PSIEpsilon)
		want += (a - b) * math.Log(a/b)
	}
	if got, _ := PSI(p, q); math.Abs(got-want) > 1e-15 {
		t.Errorf("PSI %v, want %v", got, want)
	}
	if x, _ := PSI(p, p); x != 0 {
		t.Errorf("PSI of a distribution with itself: %v", x)
	}
	js, _ := JensenShannon(p, q)
	js2, _ := JensenShannonBase(p, q, 2)
	if math.Abs(js2-js/math.Sqrt(math.Ln2)) > 1e-15 {
		t.Errorf("base 2: %v, natural %v", js2, js)
	}
	if d, _ := JensenShannonBase([]float64{1, 0}, []float64{0, 1}, 2); d != 1 {
		t.Errorf("disjoint distributions in base 2: %v, want 1", d)
	}
	if _, err := JensenShannonBase(p, q, 1); err == nil {
		t.Error("base 1 accepted")
	}
	for _, bad := range [][2][]float64{{{1}, {1, 2}}, {{}, {}}, {{0, 0}, {1, 1}}, {{-1, 2}, {1, 1}}, {{math.NaN(), 1}, {1, 1}}} {
		if _, err := PSI(bad[0], bad[1]); err == nil {
			t.Errorf("PSI(%v, %v) accepted", bad[0], bad[1])
		}
		if _, err := JensenShannon(bad[0], bad[1]); err == nil {
			t.Errorf("JensenShannon(%v, %v) accepted", bad[0], bad[1])
		}
	}
	// Wasserstein-1: a point mass moved by 3; a sample against its shift.
	if w, _ := Wasserstein([]float64{1}, []float64{4}); w != 3 {
		t.Errorf("W1 of point masses 3 apart: %v", w)
	}
	r := rand.New(rand.NewPCG(81, 82))
	u := normals(r, 100, 0, 1)
	v := slices.Clone(u)
	for i := range v {
		v[i] += 0.25
	}
	if w, _ := Wasserstein(u, v); math.Abs(w-0.25) > 1e-14 {
		t.Errorf("W1 of a sample and its shift by 0.25: %v", w)
	}
	// Integer weights are repeated values.
	ww, _ := WassersteinWeighted([]float64{0, 1}, []float64{1, 3}, []float64{0.5}, nil)
	wr, _ := Wasserstein([]float64{0, 1, 1, 1}, []float64{0.5})
	if math.Abs(ww-wr) > 1e-15 {
		t.Errorf("weighted %v, repeated %v", ww, wr)
	}
	for _, c := range []struct{ u, uw []float64 }{{nil, nil}, {[]float64{1, 2}, []float64{1}}, {[]float64{1}, []float64{-1}}, {[]float64{1}, []float64{0}}, {[]float64{math.Inf(1)}, nil}} {
		if _, err := WassersteinWeighted(c.u, c.uw, []float64{1}, nil); err == nil {
			t.Errorf("WassersteinWeighted(%v, %v) accepted", c.u, c.uw)
		}
	}
}

func TestCorrections(t *testing.T) {
	// A worked example: m = 5 p-values.
	p := []float64{0.01, 0.04, 0.03, 0.005, 0.5}
	// Sorted: 0.005, 0.01, 0.03, 0.04, 0.5; m·p/rank: 0.025, 0.025, 0.05,
	// 0.05, 0.5; running minimum from the top: the same.
	wantBH := []float64{0.025, 0.05, 0.05, 0.025, 0.5}
	wantBonf := []float64{0.05, 0.2, 0.15, 0.025, 1}
	for i, got := range BenjaminiHochbergAdjust(p) {
		if math.Abs(got-wantBH[i]) > 1e-15 {
			t.Errorf("BH[%d] = %v, want %v", i, got, wantBH[i])
		}
	}
	for i, got := range BonferroniAdjust(p) {
		if math.Abs(got-wantBonf[i]) > 1e-15 {
			t.Errorf("Bonferroni[%d] = %v, want %v", i, got, wantBonf[i])
		}
	}
	// A second worked example, where the running minimum matters: sorted
	// 0.01, 0.02, 0.03, 0.04 of m = 4 all adjust to 0.04.
	for i, got := range BenjaminiHochbergAdjust([]float64{0.04, 0.03, 0.02, 0.01}) {
		if math.Abs(got-0.04) > 1e-15 {
			t.Errorf("BH[%d] = %v, want 0.04", i, got)
		}
	}
	// The definition, directly: at every level q the hypotheses with
	// adjusted p ≤ q are those the step-up procedure rejects: the k
	// smallest, k the largest i with p_(i) ≤ i·q/m.
	r := rand.New(rand.NewPCG(91, 92))
	for trial := range 200 {
		m := 1 + r.IntN(30)
		ps := make([]float64, m)
		for i := range ps {
			ps[i] = math.Pow(r.Float64(), 1+3*r.Float64())
			if r.IntN(5) == 0 && i > 0 {
				ps[i] = ps[i-1] // ties
			}
		}
		adj := BenjaminiHochbergAdjust(ps)
		sorted := slices.Clone(ps)
		slices.Sort(sorted)
		for _, q := range []float64{0.001, 0.01, 0.05, 0.1, 0.2, 0.5} {
			k := 0
			for i, x := range sorted {
				if x <= float64(i+1)*q/float64(m) {
					k = i + 1
				}
			}
			for i, x := range ps {
				rejected := k > 0 && x <= sorted[k-1]
				if (adj[i] <= q) != rejected {
					t.Fatalf("trial %d, q %v: p %v adjusted %v, step-up rejects: %v", trial, q, x, adj[i], rejected)
				}
				if adj[i] < x || adj[i] > 1 {
					t.Fatalf("adjusted %v for p %v", adj[i], x)
				}
			}
		}
	}
	if _, err := Correction("holm").Adjust(p); err == nil {
		t.Error("an unknown correction adjusted")
	}
	if got := BenjaminiHochbergAdjust(nil); len(got) != 0 {
		t.Error("no p-values adjusted to some")
	}
}
