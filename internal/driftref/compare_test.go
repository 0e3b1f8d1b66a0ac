package driftref

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/drift"
)

func TestQuantileEdgesAndBins(t *testing.T) {
	ref := []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}
	edges := quantileEdges(ref, 5)
	if want := []float64{1, 2, 4, 6, 8, math.Nextafter(10, 11)}; !slices.Equal(edges, want) {
		t.Fatalf("edges %v, want %v", edges, want)
	}
	if got, want := countBins(ref, edges), []float64{0, 1, 2, 2, 2, 3, 0}; !slices.Equal(got, want) {
		t.Errorf("reference counts %v, want %v", got, want)
	}
	if got, want := countBins([]float64{0, 1, 1.5, 2, 7.9, 10, 10.5}, edges), []float64{1, 2, 1, 0, 1, 1, 1}; !slices.Equal(got, want) {
		t.Errorf("other counts %v, want %v", got, want)
	}
	// Repeated values give fewer bins.
	if got := quantileEdges([]float64{1, 1, 1, 1, 2}, 4); !slices.Equal(got, []float64{1, math.Nextafter(2, 3)}) {
		t.Errorf("edges of repeated values %v", got)
	}
}

func TestCategories(t *testing.T) {
	if c, ok := categories([]float64{3, 1, 1}, []float64{2, 3}, 3); !ok || !slices.Equal(c, []float64{1, 2, 3}) {
		t.Errorf("categories = %v %v", c, ok)
	}
	if _, ok := categories([]float64{3, 1, 1}, []float64{2, 4}, 3); ok {
		t.Error("four values within a limit of three")
	}
	if _, ok := categories([]float64{1, 1.5}, []float64{2}, 10); ok {
		t.Error("a fraction taken for a category")
	}
	if got := countValues([]float64{3, 1, 1, 2}, []float64{1, 2, 3}); !slices.Equal(got, []float64{2, 1, 1}) {
		t.Errorf("counts %v", got)
	}
}

// twoSets returns a reference and a current data set of three columns: a
// continuous one whose mean shifts in cur by shift, a class code in 0…3
// whose frequencies change when shift is non-zero, and a column with
// missing values.
func twoSets(n1, n2 int, shift float64) (*Data, *Data) {
	rng := rand.New(rand.NewPCG(1, 2))
	mk := func(n int, s float64) *Data {
		d := &Data{Shape: []int{3}, Names: []string{"x", "k", "m"}}
		for i := range n {
			k := float64(rng.IntN(4))
			if s != 0 && rng.Float64() < 0.3 {
				k = 0
			}
			m := rng.NormFloat64()
			if i%10 == 0 {
				m = math.NaN()
			}
			d.Values = append(d.Values, rng.NormFloat64()+s, k, m)
		}
		return d
	}
	return mk(n1, 0), mk(n2, shift)
}

func TestCompareMatchesDrift(t *testing.T) {
	ref, cur := twoSets(300, 200, 0.5)
	opts := DefaultCompareOptions()
	c, err := Compare(ref, cur, opts)
	if err != nil {
		t.Fatal(err)
	}
	if c.Tests != 6 || len(c.Columns) != 3 || !c.Drifted {
		t.Fatalf("comparison %+v", c)
	}
	var ps []float64
	for j, col := range c.Columns {
		a, na := finite(ref.Column(j))
		b, nb := finite(cur.Column(j))
		if col.Name != ref.Names[j] || col.Reference != len(a) || col.Current != len(b) || col.ReferenceInvalid != na || col.CurrentInvalid != nb {
			t.Errorf("column %d: %+v", j, col)
		}
		if col.Categorical != (j == 1) {
			t.Errorf("column %s categorical %v", col.Name, col.Categorical)
		}
		var ca, cb []float64
		if j == 1 {
			ca, cb = countValues(a, []float64{0, 1, 2, 3}), countValues(b, []float64{0, 1, 2, 3})
		} else {
			e := quantileEdges(a, opts.Bins)
			ca, cb = countBins(a, e), countBins(b, e)
		}
		ks, _ := drift.KolmogorovSmirnov(a, b)
		chi, _ := drift.ChiSquareHomogeneity(ca, cb)
		psi, _ := drift.PSI(ca, cb)
		wd, _ := drift.Wasserstein(a, b)
		js, _ := drift.JensenShannon(ca, cb)
		want := map[drift.Test]float64{drift.TestKS: ks.Statistic, drift.TestChiSquare: chi.Statistic, drift.TestPSI: psi, drift.TestWasserstein: wd, drift.TestJS: js}
		wantP := map[drift.Test]float64{drift.TestKS: ks.PValue, drift.TestChiSquare: chi.PValue}
		if len(col.Scores) != 5 {
			t.Fatalf("column %s: %d scores", col.Name, len(col.Scores))
		}
		for _, s := range col.Scores {
			if s.Statistic != want[s.Test] {
				t.Errorf("%s %s: %v, want %v", col.Name, s.Test, s.Statistic, want[s.Test])
			}
			p, isP := wantP[s.Test]
			if isP != (s.PValue != nil) || isP && *s.PValue != p {
				t.Errorf("%s %s: p-value %v, want %v", col.Name, s.Test, s.PValue, p)
			}
			if isP {
				ps = append(ps, p)
			}
		}
	}
	// Bonferroni over the six p-values, in column order.
	adj := drift.BonferroniAdjust(ps)
	i := 0
	for _, col := range c.Columns {
		for _, s := range col.Scores {
			if s.PValue == nil {
				continue
			}
			if *s.Corrected != adj[i] || s.Drifted != (adj[i] <= opts.Alpha) {
				t.Errorf("%s %s: corrected %v drifted %v, want %v", col.Name, s.Test, *s.Corrected, s.Drifted, adj[i])
			}
			i++
		}
	}
	// The shifted columns drifted, the one with missing values did not.
	if !c.Columns[0].Drifted || !c.Columns[1].Drifted || c.Columns[2].Drifted {
		t.Errorf("drifted: x %v k %v m %v", c.Columns[0].Drifted, c.Columns[1].Drifted, c.Columns[2].Drifted)
	}
}

func TestCompareNoDrift(t *testing.T) {
	ref, cur := twoSets(400, 400, 0)
	c, err := Compare(ref, cur, DefaultCompareOptions())
	if err != nil {
		t.Fatal(err)
	}
	if c.Drifted {
		for _, col := range c.Columns {
			t.Logf("%+v", col)
		}
		t.Fatal("drift between two samples of one distribution")
	}
}

func TestCompareThresholds(t *testing.T) {
	ref, cur := twoSets(300, 200, 0.5)
	opts := DefaultCompareOptions()
	opts.Alpha = 1e-300 // no p-value test rejects
	opts.PSIThreshold, opts.JSThreshold, opts.WassersteinThreshold = 0, 0.01, 0.3
	c, err := Compare(ref, cur, opts)
	if err != nil {
		t.Fatal(err)
	}
	x := c.Columns[0]
	for _, s := range x.Scores {
		want := false
		switch s.Test {
		case drift.TestJS:
			want = s.Statistic > 0.01
		case drift.TestWasserstein:
			want = s.Statistic > 0.3*stdDev(ref.Column(0))
		}
		if s.Drifted != want {
			t.Errorf("x %s = %v drifted %v, want %v", s.Test, s.Statistic, s.Drifted, want)
		}
	}
	if !x.Drifted {
		t.Error("a mean shift of half a standard deviation passed a Wasserstein threshold of 0.3")
	}
}

func TestCompareRefusesBadInput(t *testing.T) {
	ref, cur := twoSets(20, 20, 0)
	wide := &Data{Shape: []int{4}, Values: make([]float64, 8)}
	renamed := &Data{Shape: []int{3}, Names: []string{"x", "j", "m"}, Values: cur.Values}
	bad := DefaultCompareOptions()
	bad.Alpha = 1
	tests := []struct {
		name     string
		ref, cur *Data
		opts     CompareOptions
		want     string
	}{
		{"widths", ref, wide, DefaultCompareOptions(), "the reference has 3 columns (shape [3]), the current data 4 (shape [4])"},
		{"names", ref, renamed, DefaultCompareOptions(), `column 2 is "k" in the reference and "j" in the current data`},
		{"no samples", ref, &Data{Shape: []int{3}}, DefaultCompareOptions(), "no samples"},
		{"alpha", ref, cur, bad, "alpha 1"},
		{"correction", ref, cur, CompareOptions{Alpha: 0.1, Correction: "holm", Bins: 10}, `unknown correction "holm"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compare(tt.ref, tt.cur, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	// A column without finite values is skipped, not an error.
	empty := &Data{Shape: []int{1}, Values: []float64{math.NaN(), math.NaN()}}
	c, err := Compare(empty, &Data{Shape: []int{1}, Values: []float64{1}}, DefaultCompareOptions())
	if err != nil || c.Columns[0].Skipped == "" || c.Tests != 0 || c.Columns[0].Name != "col[0]" {
		t.Fatalf("all-NaN column: %+v, %v", c, err)
	}
}
