package drift

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
)

// PSIEpsilon is the proportion PSI gives a bin that is empty on one side,
// so that the logarithm stays finite: a bin with 0 of one distribution's
// mass and p of the other's adds (p-ε)·ln(p/ε).
const PSIEpsilon = 1e-4

// PSI returns the population stability index of two distributions over the
// same bins, given as counts (or any non-negative weights): with p and q
// their proportions, Σ (p_i - q_i)·ln(p_i/q_i), where a proportion of 0 is
// replaced by PSIEpsilon (proportions are not renormalised). Bins empty on
// both sides add nothing. It is symmetric in its arguments. Rules of thumb
// read under 0.1 as stable, 0.1 to 0.25 as a moderate shift and over 0.25 as
// a major one.
func PSI(expected, actual []float64) (float64, error) {
	p, q, err := proportions("psi", expected, actual)
	if err != nil {
		return 0, err
	}
	s := 0.0
	for i := range p {
		a, b := max(p[i], PSIEpsilon), max(q[i], PSIEpsilon)
		if p[i] == 0 && q[i] == 0 {
			continue
		}
		s += (a - b) * math.Log(a/b)
	}
	return s, nil
}

// proportions validates two count vectors and returns them normalised.
func proportions(what string, a, b []float64) ([]float64, []float64, error) {
	if len(a) != len(b) {
		return nil, nil, fmt.Errorf("%s: %d and %d bins", what, len(a), len(b))
	}
	if len(a) == 0 {
		return nil, nil, fmt.Errorf("%s: no bins", what)
	}
	var sa, sb float64
	for i := range a {
		if !finiteNonNegative(a[i]) || !finiteNonNegative(b[i]) {
			return nil, nil, fmt.Errorf("%s: bin %d has counts %v and %v, want finite and non-negative", what, i, a[i], b[i])
		}
		sa += a[i]
		sb += b[i]
	}
	if sa == 0 || sb == 0 || math.IsInf(sa, 0) || math.IsInf(sb, 0) {
		return nil, nil, fmt.Errorf("%s: counts add up to %v and %v, want positive and finite", what, sa, sb)
	}
	p, q := make([]float64, len(a)), make([]float64, len(b))
	for i := range a {
		p[i], q[i] = a[i]/sa, b[i]/sb
	}
	return p, q, nil
}

// JensenShannon returns the Jensen–Shannon distance between two
// distributions given as counts or weights over the same categories, in
// natural logarithms: √((KL(p‖m) + KL(q‖m))/2) with m = (p+q)/2, as
// scipy.spatial.distance.jensenshannon(p, q). It lies in [0, √ln 2].
func JensenShannon(p, q []float64) (float64, error) {
	return jensenShannon(p, q, 0)
}

// JensenShannonBase is JensenShannon with logarithms to the given base
// (such as 2, where the distance lies in [0, 1]), as
// scipy.spatial.distance.jensenshannon(p, q, base).
func JensenShannonBase(p, q []float64, base float64) (float64, error) {
	if !(base > 0) || base == 1 || math.IsInf(base, 0) {
		return 0, fmt.Errorf("jensenshannon: base %v", base)
	}
	return jensenShannon(p, q, base)
}

func jensenShannon(p, q []float64, base float64) (float64, error) {
	pn, qn, err := proportions("jensenshannon", p, q)
	if err != nil {
		return 0, err
	}
	left, right := 0.0, 0.0
	for i := range pn {
		m := (pn[i] + qn[i]) / 2
		left += relEntr(pn[i], m)
		right += relEntr(qn[i], m)
	}
	js := left + right
	if base > 0 {
		js /= math.Log(base)
	}
	return math.Sqrt(max(js, 0) / 2), nil
}

// relEntr is scipy.special.rel_entr for x ≥ 0, y > 0 (or x = 0).
func relEntr(x, y float64) float64 {
	if x == 0 {
		return 0
	}
	return x * math.Log(x/y)
}

// Wasserstein returns the first Wasserstein (earth mover's) distance
// between the empirical distributions of u and v, ∫|U(x) - V(x)| dx, as
// scipy.stats.wasserstein_distance(u, v).
func Wasserstein(u, v []float64) (float64, error) {
	return WassersteinWeighted(u, nil, v, nil)
}

// WassersteinWeighted is Wasserstein with weights for the values of u and
// of v (nil for equal weights), as
// scipy.stats.wasserstein_distance(u, v, uWeights, vWeights). Weights must
// be finite and non-negative with a positive sum.
func WassersteinWeighted(u, uWeights, v, vWeights []float64) (float64, error) {
	us, err := weightedCDF(u, uWeights)
	if err != nil {
		return 0, fmt.Errorf("wasserstein: first distribution: %w", err)
	}
	vs, err := weightedCDF(v, vWeights)
	if err != nil {
		return 0, fmt.Errorf("wasserstein: second distribution: %w", err)
	}
	all := make([]float64, 0, len(u)+len(v))
	all = append(append(all, u...), v...)
	slices.Sort(all)
	sum := 0.0
	for i := 0; i+1 < len(all); i++ {
		x := all[i]
		sum += math.Abs(us.at(x)-vs.at(x)) * (all[i+1] - x)
	}
	return sum, nil
}

// stepCDF is the distribution function of weighted values.
type stepCDF struct {
	vals []float64 // sorted
	cum  []float64 // cum[i]: the weight of vals[:i]
	n    float64   // number of values, for equal weights
	eq   bool
}

// at returns the fraction of the weight on values ≤ x.
func (c *stepCDF) at(x float64) float64 {
	i := sort.Search(len(c.vals), func(i int) bool { return c.vals[i] > x })
	if c.eq {
		return float64(i) / c.n
	}
	return c.cum[i] / c.cum[len(c.cum)-1]
}

func weightedCDF(vals, weights []float64) (*stepCDF, error) {
	if len(vals) == 0 {
		return nil, errors.New("no values")
	}
	for _, x := range vals {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("value %v, want finite", x)
		}
	}
	if weights == nil {
		s := slices.Clone(vals)
		slices.Sort(s)
		return &stepCDF{vals: s, n: float64(len(s)), eq: true}, nil
	}
	if len(weights) != len(vals) {
		return nil, fmt.Errorf("%d values and %d weights", len(vals), len(weights))
	}
	sum := 0.0
	for _, w := range weights {
		if !finiteNonNegative(w) {
			return nil, fmt.Errorf("weight %v, want finite and non-negative", w)
		}
		sum += w
	}
	if !(sum > 0) || math.IsInf(sum, 0) {
		return nil, fmt.Errorf("weights add up to %v, want positive and finite", sum)
	}
	idx := make([]int, len(vals))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return vals[idx[a]] < vals[idx[b]] })
	c := &stepCDF{vals: make([]float64, len(vals)), cum: make([]float64, len(vals)+1)}
	for i, j := range idx {
		c.vals[i] = vals[j]
		c.cum[i+1] = c.cum[i] + weights[j]
	}
	return c, nil
}
