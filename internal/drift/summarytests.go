package drift

import (
	"errors"
	"fmt"
	"math"
)

// SummaryDelta is the probability with which the error bounds of
// statistics computed from sketches (KSFromSummaries,
// WassersteinFromSummaries) may fail: they hold with probability at least
// 1 - SummaryDelta.
const SummaryDelta = 1e-3

// KSFromSummaries returns the two-sample Kolmogorov–Smirnov test of the
// values summarised by a and b, from their quantile sketches: D is the
// largest distance between the sketches' distribution functions, over all
// their retained values, and the p-value is the asymptotic one,
// kstwo.sf(D, round(n1·n2/(n1+n2))), as for large samples in
// KolmogorovSmirnov. With probability at least 1 - SummaryDelta, D differs
// from the exact samples' D by at most Bound, the sum of the two
// sketches' UniformRankError(SummaryDelta/2); Bound is 0 while both
// sketches hold every value.
func KSFromSummaries(a, b *Numeric) (SummaryKSResult, error) {
	if a.Count() == 0 || b.Count() == 0 {
		return SummaryKSResult{}, errors.New("ks: empty summary")
	}
	d, _ := sketchDistances(&a.sketch, &b.sketch)
	n1, n2 := a.Count(), b.Count()
	if n1 > math.MaxInt32 || n2 > math.MaxInt32 {
		return SummaryKSResult{}, fmt.Errorf("ks: %d and %d values are too many", n1, n2)
	}
	return SummaryKSResult{
		KSResult: KSResult{Statistic: d, PValue: ksAsymptotic(int(n1), int(n2), d), N1: int(n1), N2: int(n2)},
		Bound:    summaryBound(a, b),
	}, nil
}

// summaryBound is the bound on the error of a and b's distribution
// functions together, everywhere, with probability 1 - SummaryDelta.
func summaryBound(a, b *Numeric) float64 {
	return a.sketch.UniformRankError(SummaryDelta/2) + b.sketch.UniformRankError(SummaryDelta/2)
}

// SummaryKSResult is a Kolmogorov–Smirnov test computed from summaries.
type SummaryKSResult struct {
	KSResult
	// Bound bounds the difference between Statistic and D of the exact
	// samples, with probability at least 1 - SummaryDelta.
	Bound float64
}

// sketchDistances returns the largest distance between the distribution
// functions of two sketches (KS) and the integral of their absolute
// difference (Wasserstein-1), in one sweep over their sorted values.
func sketchDistances(a, b *Sketch) (ks, w1 float64) {
	return sortedDistances(a.sorted(), b.sorted())
}

// sortedSketch is a sketch's retained values in ascending order with
// their weights (Sketch.sortedWeighted), and the number of values it
// summarises.
type sortedSketch struct {
	vals []float64
	ws   []uint64
	n    uint64
}

// sorted returns s's values in order.
func (s *Sketch) sorted() sortedSketch {
	v, w := s.sortedWeighted()
	return sortedSketch{vals: v, ws: w, n: s.n}
}

// sortedDistances is sketchDistances of two sketches' values in order.
func sortedDistances(a, b sortedSketch) (ks, w1 float64) {
	av, aw, bv, bw := a.vals, a.ws, b.vals, b.ws
	na, nb := float64(a.n), float64(b.n)
	var ca, cb uint64
	i, j := 0, 0
	for i < len(av) || j < len(bv) {
		var v float64
		switch {
		case i == len(av):
			v = bv[j]
		case j == len(bv):
			v = av[i]
		default:
			v = min(av[i], bv[j])
		}
		for i < len(av) && av[i] == v {
			ca += aw[i]
			i++
		}
		for j < len(bv) && bv[j] == v {
			cb += bw[j]
			j++
		}
		diff := math.Abs(float64(ca)/na - float64(cb)/nb)
		ks = max(ks, diff)
		var next float64
		switch {
		case i == len(av) && j == len(bv):
			continue
		case i == len(av):
			next = bv[j]
		case j == len(bv):
			next = av[i]
		default:
			next = min(av[i], bv[j])
		}
		w1 += diff * (next - v)
	}
	return ks, w1
}

// WassersteinFromSummaries returns the first Wasserstein distance between
// the distributions summarised by a and b, from their quantile sketches,
// and a bound on its error: with probability at least 1 - SummaryDelta it
// differs from the exact samples' distance by at most the bound of
// KSFromSummaries times the span (max - min) of both summaries' values;
// 0 while both sketches hold every value.
func WassersteinFromSummaries(a, b *Numeric) (dist, bound float64, err error) {
	if a.Count() == 0 || b.Count() == 0 {
		return 0, 0, errors.New("wasserstein: empty summary")
	}
	_, dist = sketchDistances(&a.sketch, &b.sketch)
	span := max(a.max, b.max) - min(a.min, b.min)
	return dist, summaryBound(a, b) * span, nil
}
