package drift

import (
	"errors"
	"fmt"
	"math"
)

// ChiSquareResult is the outcome of a χ² test.
type ChiSquareResult struct {
	// Statistic is Pearson's χ² statistic.
	Statistic float64
	// PValue is the χ² distribution's tail beyond Statistic.
	PValue float64
	// DF is the degrees of freedom.
	DF int
}

// ChiSquare returns Pearson's χ² goodness-of-fit test of observed counts
// against expected ones, as scipy.stats.chisquare(observed, expected):
// Σ (o-e)²/e with len-1 degrees of freedom. The counts must be finite and
// non-negative, the expected ones positive, at least two of each, and their
// sums must agree to a relative 1e-8 (as SciPy requires).
func ChiSquare(observed, expected []float64) (ChiSquareResult, error) {
	if len(observed) != len(expected) {
		return ChiSquareResult{}, fmt.Errorf("chisquare: %d observed and %d expected counts", len(observed), len(expected))
	}
	if len(observed) < 2 {
		return ChiSquareResult{}, errors.New("chisquare: fewer than two categories")
	}
	var so, se float64
	for i := range observed {
		o, e := observed[i], expected[i]
		if !finiteNonNegative(o) {
			return ChiSquareResult{}, fmt.Errorf("chisquare: observed count %d is %v", i, o)
		}
		if !finiteNonNegative(e) || e == 0 {
			return ChiSquareResult{}, fmt.Errorf("chisquare: expected count %d is %v, want positive", i, e)
		}
		so += o
		se += e
	}
	if math.Abs(so-se)/min(so, se) > 1e-8 {
		return ChiSquareResult{}, fmt.Errorf("chisquare: observed counts add up to %v, expected ones to %v", so, se)
	}
	stat := 0.0
	for i := range observed {
		d := observed[i] - expected[i]
		stat += d * d / expected[i]
	}
	df := len(observed) - 1
	return ChiSquareResult{Statistic: stat, PValue: ChiSquareSF(stat, float64(df)), DF: df}, nil
}

func finiteNonNegative(x float64) bool { return x >= 0 && !math.IsInf(x, 1) }

// ChiSquareHomogeneity returns Pearson's χ² test that two count vectors
// over the same categories come from one distribution: the test of
// independence of their 2×k contingency table, as
// scipy.stats.chi2_contingency([a, b]) (with its default Yates
// correction, applied when one degree of freedom remains).
//
// Categories empty in both vectors are dropped first: they say nothing of
// a difference, and SciPy refuses a table with a zero expected count. With
// fewer than two categories left the statistic is 0 and the p-value 1 (no
// degrees of freedom, as SciPy for a 2×1 table). It returns an error when a
// vector has no counts at all, or for negative or non-finite counts.
func ChiSquareHomogeneity(a, b []float64) (ChiSquareResult, error) {
	if len(a) != len(b) {
		return ChiSquareResult{}, fmt.Errorf("chisquare: %d and %d categories", len(a), len(b))
	}
	var ra, rb float64
	cols := 0
	for i := range a {
		if !finiteNonNegative(a[i]) || !finiteNonNegative(b[i]) {
			return ChiSquareResult{}, fmt.Errorf("chisquare: category %d has counts %v and %v", i, a[i], b[i])
		}
		ra += a[i]
		rb += b[i]
		if a[i]+b[i] > 0 {
			cols++
		}
	}
	if ra == 0 || rb == 0 {
		return ChiSquareResult{}, errors.New("chisquare: a count vector is empty")
	}
	df := cols - 1
	if df == 0 {
		return ChiSquareResult{Statistic: 0, PValue: 1, DF: 0}, nil
	}
	total := ra + rb
	stat := 0.0
	for _, row := range [2]struct {
		obs []float64
		sum float64
	}{{a, ra}, {b, rb}} {
		for i, o := range row.obs {
			col := a[i] + b[i]
			if col == 0 {
				continue
			}
			e := row.sum * col / total
			if df == 1 {
				// Yates: move o toward e by at most ½.
				d := e - o
				o += math.Copysign(min(0.5, math.Abs(d)), d)
			}
			d := o - e
			stat += d * d / e
		}
	}
	return ChiSquareResult{Statistic: stat, PValue: ChiSquareSF(stat, float64(df)), DF: df}, nil
}
