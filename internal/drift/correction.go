package drift

import (
	"fmt"
	"slices"
)

// Correction is a correction for testing many features at once.
type Correction string

const (
	// Bonferroni multiplies each p-value by the number of tests m (capped
	// at 1). Rejecting where the adjusted p-value is ≤ α keeps the
	// probability of any false alarm among the m tests (the family-wise
	// error rate) at or under α, whatever the tests' dependence.
	Bonferroni Correction = "bonferroni"
	// BenjaminiHochberg adjusts the i-th smallest of m p-values to
	// min over j ≥ i of min(1, m·p_(j)/j). Rejecting where the adjusted
	// p-value is ≤ α keeps the expected fraction of false alarms among the
	// alarms (the false discovery rate) at or under α for independent or
	// positively dependent tests; when no feature drifts at all, that is
	// the probability of any alarm, as with Bonferroni, but with more
	// power when several features drift.
	BenjaminiHochberg Correction = "benjamini-hochberg"
)

// Adjust returns the adjusted p-values of p under the correction c, in the
// order of p.
func (c Correction) Adjust(p []float64) ([]float64, error) {
	switch c {
	case Bonferroni:
		return BonferroniAdjust(p), nil
	case BenjaminiHochberg:
		return BenjaminiHochbergAdjust(p), nil
	}
	return nil, fmt.Errorf("unknown correction %q (want %q or %q)", c, Bonferroni, BenjaminiHochberg)
}

// BonferroniAdjust returns min(1, m·p_i) for each of the m p-values.
func BonferroniAdjust(p []float64) []float64 {
	m := float64(len(p))
	out := make([]float64, len(p))
	for i, x := range p {
		out[i] = min(1, m*x)
	}
	return out
}

// BenjaminiHochbergAdjust returns the Benjamini–Hochberg adjusted p-values
// of p, in the order of p: the i-th smallest p-value p_(i) of m becomes
// min over j ≥ i of min(1, m·p_(j)/j), the smallest false discovery rate at
// which it would be rejected.
func BenjaminiHochbergAdjust(p []float64) []float64 {
	m := len(p)
	order := make([]int, m)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case p[a] < p[b]:
			return -1
		case p[a] > p[b]:
			return 1
		}
		return 0
	})
	out := make([]float64, m)
	run := 1.0
	for r := m - 1; r >= 0; r-- {
		i := order[r]
		run = min(run, p[i]*(float64(m)/float64(r+1)))
		out[i] = run
	}
	return out
}
