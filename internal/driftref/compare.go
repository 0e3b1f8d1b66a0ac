package driftref

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"

	"outpost.dev/outpost/internal/drift"
)

// CompareOptions say how Compare tests and decides.
type CompareOptions struct {
	// Alpha is the level at which the p-value tests reject after the
	// correction: 0 < Alpha < 1.
	Alpha float64
	// Correction corrects the p-values of every column's tests together.
	Correction drift.Correction
	// Bins is the number of equal-mass bins, at the reference's quantiles,
	// that the counts of a continuous column fall into (with an underflow
	// and an overflow bin).
	Bins int
	// MaxCategories: a column whose values are all integers, with at most
	// this many distinct ones, is compared by the counts of each value
	// instead of bins.
	MaxCategories int
	// PSIThreshold, JSThreshold and WassersteinThreshold, when positive,
	// make a column whose PSI, Jensen–Shannon distance, or Wasserstein
	// distance over the reference's standard deviation is above them drift;
	// zero only reports them.
	PSIThreshold, JSThreshold, WassersteinThreshold float64
}

// DefaultCompareOptions returns drift.DefaultPolicy's level, correction
// and PSI threshold, DefaultBins bins, and DefaultMaxCategories.
func DefaultCompareOptions() CompareOptions {
	p := drift.DefaultPolicy()
	return CompareOptions{Alpha: p.Alpha, Correction: p.Correction, Bins: DefaultBins, MaxCategories: DefaultMaxCategories,
		PSIThreshold: p.PSIThreshold, JSThreshold: p.JSThreshold, WassersteinThreshold: p.WassersteinThreshold}
}

// DefaultMaxCategories is the most distinct integer values of a column
// compared as categories unless told otherwise. Few: PSI between two
// samples of one distribution grows with the categories over the samples
// (about (k-1)/n), so the 256 values of a pixel would make PSI of a
// thousand samples look like drift; such columns are binned instead.
const DefaultMaxCategories = 20

// maxBins bounds CompareOptions.Bins and MaxCategories.
const maxBins = drift.MaxClasses

func (o CompareOptions) validate() error {
	if !(o.Alpha > 0 && o.Alpha < 1) {
		return fmt.Errorf("alpha %v, want 0 < alpha < 1", o.Alpha)
	}
	if _, err := o.Correction.Adjust(nil); err != nil {
		return err
	}
	if o.Bins < 1 || o.Bins > maxBins {
		return fmt.Errorf("%d bins, want 1 to %d", o.Bins, maxBins)
	}
	if o.MaxCategories < 0 || o.MaxCategories > maxBins {
		return fmt.Errorf("%d categories, want 0 to %d", o.MaxCategories, maxBins)
	}
	for _, t := range []float64{o.PSIThreshold, o.JSThreshold, o.WassersteinThreshold} {
		if !(t >= 0) || math.IsInf(t, 0) {
			return fmt.Errorf("threshold %v, want finite and non-negative", t)
		}
	}
	return nil
}

// Comparison is Compare's answer.
type Comparison struct {
	// Alpha and Correction are those the decision used.
	Alpha      float64          `json:"alpha"`
	Correction drift.Correction `json:"correction"`
	// Tests is the number of p-values corrected together.
	Tests int `json:"tests"`
	// Drifted reports whether any column drifted.
	Drifted bool `json:"drifted"`
	// Columns are the per-column answers, in column order.
	Columns []ColumnResult `json:"features"`
}

// ColumnResult is the comparison of one column.
type ColumnResult struct {
	// Name is the column's name: from a CSV header, else "col[j]".
	Name string `json:"name"`
	// Reference and Current are the numbers of finite values compared, and
	// ReferenceInvalid and CurrentInvalid those of NaN and ±Inf values,
	// which no test sees.
	Reference        int `json:"reference"`
	Current          int `json:"current"`
	ReferenceInvalid int `json:"referenceInvalid,omitempty"`
	CurrentInvalid   int `json:"currentInvalid,omitempty"`
	// Categorical reports whether the counts are of each integer value
	// (true) or of bins at the reference's quantiles.
	Categorical bool `json:"categorical"`
	// Skipped says why the column was not tested; empty when it was.
	Skipped string `json:"skipped,omitempty"`
	// Scores are the tests' outcomes.
	Scores []Score `json:"tests,omitempty"`
	// Drifted reports whether any test says the column drifted.
	Drifted bool `json:"drifted"`
}

// Score is one test of one column.
type Score struct {
	// Test is the test.
	Test drift.Test `json:"test"`
	// Statistic is D, χ², PSI, or the Wasserstein or Jensen–Shannon
	// distance.
	Statistic float64 `json:"statistic"`
	// PValue and Corrected are the p-value and the corrected p-value; nil
	// for the distances, which have none.
	PValue    *float64 `json:"pValue,omitempty"`
	Corrected *float64 `json:"corrected,omitempty"`
	// Drifted reports whether this test says the column drifted.
	Drifted bool `json:"drifted"`
}

// Compare tests, column by column, whether the samples of cur come from the
// distribution of those of ref, with the exact-sample tests of
// internal/drift: the two-sample Kolmogorov–Smirnov test and the
// Wasserstein distance on the values, and on their counts (of each value of
// an integer-valued column with few values, else of bins at the
// reference's quantiles) χ² homogeneity, PSI and the Jensen–Shannon
// distance. The KS and χ² p-values of all columns are corrected together.
// Both must have as many values per sample; column names come from a CSV
// header, and must agree when both have one.
func Compare(ref, cur *Data, opts CompareOptions) (*Comparison, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	w := ref.Width()
	if cur.Width() != w {
		return nil, fmt.Errorf("the reference has %d columns (shape %v), the current data %d (shape %v)", w, ref.Shape, cur.Width(), cur.Shape)
	}
	if ref.Samples() == 0 || cur.Samples() == 0 {
		return nil, errors.New("no samples to compare")
	}
	names := ref.Names
	if names != nil && cur.Names != nil {
		for j := range names {
			if names[j] != cur.Names[j] {
				return nil, fmt.Errorf("column %d is %q in the reference and %q in the current data", j+1, names[j], cur.Names[j])
			}
		}
	}
	if names == nil {
		names = cur.Names
	}
	c := &Comparison{Alpha: opts.Alpha, Correction: opts.Correction, Columns: make([]ColumnResult, w)}
	type pRef struct{ col, score int }
	var ps []float64
	var where []pRef
	for j := range w {
		col := &c.Columns[j]
		col.Name = fmt.Sprintf("col[%d]", j)
		if names != nil {
			col.Name = names[j]
		}
		a, na := finite(ref.Column(j))
		b, nb := finite(cur.Column(j))
		col.Reference, col.Current, col.ReferenceInvalid, col.CurrentInvalid = len(a), len(b), na, nb
		if len(a) == 0 || len(b) == 0 {
			col.Skipped = "no finite values to compare"
			continue
		}
		if err := compareColumn(col, a, b, opts); err != nil {
			return nil, fmt.Errorf("column %s: %w", col.Name, err)
		}
		for k, s := range col.Scores {
			if s.PValue != nil {
				ps = append(ps, *s.PValue)
				where = append(where, pRef{j, k})
			}
		}
	}
	adj, err := opts.Correction.Adjust(ps)
	if err != nil {
		return nil, err
	}
	c.Tests = len(ps)
	for i, at := range where {
		s := &c.Columns[at.col].Scores[at.score]
		s.Corrected = &adj[i]
		s.Drifted = adj[i] <= opts.Alpha
	}
	for j := range c.Columns {
		col := &c.Columns[j]
		for _, s := range col.Scores {
			col.Drifted = col.Drifted || s.Drifted
		}
		c.Drifted = c.Drifted || col.Drifted
	}
	return c, nil
}

// finite returns the finite values of xs and the number of others.
func finite(xs []float64) ([]float64, int) {
	out := xs[:0]
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out = append(out, x)
		}
	}
	return out, len(xs) - len(out)
}

// compareColumn runs every test on one column's finite values; the
// p-value tests are decided after the correction.
func compareColumn(col *ColumnResult, a, b []float64, opts CompareOptions) error {
	ks, err := drift.KolmogorovSmirnov(a, b)
	if err != nil {
		return err
	}
	wd, err := drift.Wasserstein(a, b)
	if err != nil {
		return err
	}
	var ca, cb []float64
	if cats, ok := categories(a, b, opts.MaxCategories); ok {
		col.Categorical = true
		ca, cb = countValues(a, cats), countValues(b, cats)
	} else {
		edges := quantileEdges(a, opts.Bins)
		ca, cb = countBins(a, edges), countBins(b, edges)
	}
	chi, err := drift.ChiSquareHomogeneity(ca, cb)
	if err != nil {
		return err
	}
	psi, err := drift.PSI(ca, cb)
	if err != nil {
		return err
	}
	js, err := drift.JensenShannon(ca, cb)
	if err != nil {
		return err
	}
	sd := stdDev(a)
	col.Scores = []Score{
		{Test: drift.TestKS, Statistic: ks.Statistic, PValue: &ks.PValue},
		{Test: drift.TestChiSquare, Statistic: chi.Statistic, PValue: &chi.PValue},
		{Test: drift.TestPSI, Statistic: psi, Drifted: opts.PSIThreshold > 0 && psi > opts.PSIThreshold},
		{Test: drift.TestWasserstein, Statistic: wd, Drifted: opts.WassersteinThreshold > 0 && wd > opts.WassersteinThreshold*sd},
		{Test: drift.TestJS, Statistic: js, Drifted: opts.JSThreshold > 0 && js > opts.JSThreshold},
	}
	return nil
}

// categories returns the distinct values of a and b, sorted, when they are
// all integers and at most limit.
func categories(a, b []float64, limit int) ([]float64, bool) {
	seen := map[float64]bool{}
	for _, s := range [2][]float64{a, b} {
		for _, x := range s {
			if x != math.Trunc(x) {
				return nil, false
			}
			if !seen[x] {
				if len(seen) == limit {
					return nil, false
				}
				seen[x] = true
			}
		}
	}
	cats := make([]float64, 0, len(seen))
	for x := range seen {
		cats = append(cats, x)
	}
	slices.Sort(cats)
	return cats, true
}

// countValues counts each category's occurrences in xs.
func countValues(xs, cats []float64) []float64 {
	out := make([]float64, len(cats))
	for _, x := range xs {
		i, _ := slices.BinarySearch(cats, x)
		out[i]++
	}
	return out
}

// quantileEdges returns histogram edges for bins equal-mass bins of the
// finite values xs, as drift.QuantileEdges does from a sketch but exact:
// the minimum, the empirical quantiles i/bins (the value of rank
// ⌈i·n/bins⌉), and the next float64 above the maximum, duplicates removed.
func quantileEdges(xs []float64, bins int) []float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	edges := []float64{s[0]}
	for i := 1; i < bins; i++ {
		r := int(math.Ceil(float64(i) * float64(n) / float64(bins)))
		q := s[min(max(r-1, 0), n-1)]
		if q > edges[len(edges)-1] {
			edges = append(edges, q)
		}
	}
	if top := math.Nextafter(s[n-1], math.Inf(1)); top > edges[len(edges)-1] && !math.IsInf(top, 0) {
		edges = append(edges, top)
	}
	return edges
}

// countBins counts xs in the bins of edges: below the first edge, between
// each pair (the lower edge included), and at or above the last.
func countBins(xs, edges []float64) []float64 {
	out := make([]float64, len(edges)+1)
	for _, x := range xs {
		out[sort.SearchFloat64s(edges, math.Nextafter(x, math.Inf(1)))]++
	}
	return out
}

// stdDev is the population standard deviation of xs.
func stdDev(xs []float64) float64 {
	mean := 0.0
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	ss := 0.0
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return math.Sqrt(ss / float64(len(xs)))
}
