package drift

import (
	"errors"
	"math"
	"slices"
)

// ksMaxExactN is the largest sample size for which KolmogorovSmirnov
// computes the exact p-value (SciPy's MAX_AUTO_N).
const ksMaxExactN = 10000

// KSResult is the outcome of a two-sample Kolmogorov–Smirnov test.
type KSResult struct {
	// Statistic is D, the largest distance between the two empirical
	// distribution functions.
	Statistic float64
	// PValue is the two-sided p-value.
	PValue float64
	// Exact reports whether PValue is the exact distribution's tail (true)
	// or Smirnov's asymptotic one.
	Exact bool
	// N1 and N2 are the sample sizes.
	N1, N2 int
}

// KolmogorovSmirnov returns the two-sample Kolmogorov–Smirnov test of a
// and b, two-sided, as scipy.stats.ks_2samp(a, b) with method 'auto' in
// SciPy 1.10: the exact p-value when neither sample is larger than 10,000
// (Hodges' lattice-path counts, in the forms SciPy uses for equal and for
// unequal sizes), and kstwo.sf(D, round(n1·n2/(n1+n2))) otherwise or when
// the exact computation fails. Ties are handled as SciPy does: D is taken
// over every distinct value with right-continuous distribution functions.
// It returns an error for an empty sample or one with NaN.
func KolmogorovSmirnov(a, b []float64) (KSResult, error) {
	if len(a) == 0 || len(b) == 0 {
		return KSResult{}, errors.New("ks: empty sample")
	}
	for _, s := range [2][]float64{a, b} {
		for _, x := range s {
			if math.IsNaN(x) {
				return KSResult{}, errors.New("ks: sample has NaN")
			}
		}
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	n1, n2 := int64(len(x)), int64(len(y))
	// The distribution functions' difference at each distinct value is
	// (c1·n2 - c2·n1)/(n1·n2), an exact integer numerator.
	var maxPos, maxNeg int64
	var posC1, posC2, negC1, negC2 int64
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		var v float64
		switch {
		case i == len(x):
			v = y[j]
		case j == len(y):
			v = x[i]
		default:
			v = min(x[i], y[j])
		}
		for i < len(x) && x[i] == v {
			i++
		}
		for j < len(y) && y[j] == v {
			j++
		}
		c1, c2 := int64(i), int64(j)
		diff := c1*n2 - c2*n1
		if diff > maxPos {
			maxPos, posC1, posC2 = diff, c1, c2
		}
		if -diff > maxNeg {
			maxNeg, negC1, negC2 = -diff, c1, c2
		}
	}
	num, c1, c2 := maxPos, posC1, posC2
	if maxNeg > maxPos {
		num, c1, c2 = maxNeg, negC1, negC2
	}
	d := math.Abs(float64(c1)/float64(n1) - float64(c2)/float64(n2))
	res := KSResult{Statistic: d, N1: len(x), N2: len(y)}
	if max(n1, n2) <= ksMaxExactN {
		g := gcd(n1, n2)
		lcm := (n1 / g) * n2
		h := num / g
		res.Statistic = float64(h) / float64(lcm)
		if h == 0 {
			res.PValue, res.Exact = 1, true
			return res, nil
		}
		var p float64
		if n1 == n2 {
			p = ksProbOutsideSquare(n1, h)
		} else {
			p = ksOuterProbInside(n1, n2, g, h)
		}
		if p >= 0 && p <= 1 {
			res.PValue, res.Exact = p, true
			return res, nil
		}
	}
	res.PValue = ksAsymptotic(len(x), len(y), res.Statistic)
	return res, nil
}

// ksAsymptotic returns the asymptotic two-sided p-value of D for samples
// of sizes n1 and n2: kstwo.sf(d, round(n1·n2/(n1+n2))).
func ksAsymptotic(n1, n2 int, d float64) float64 {
	m, n := float64(max(n1, n2)), float64(min(n1, n2))
	en := m * n / (m + n)
	return clip01(KolmogorovSF(int(math.RoundToEven(en)), d))
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// ksProbOutsideSquare returns P(D_{n,n} ≥ h/n), the proportion of lattice
// paths that pass outside the lines x - y = ±h, by the alternating sum
// 2·Σ ±C(2n, n-kh)/C(2n, n) in SciPy's Horner form.
func ksProbOutsideSquare(n, h int64) float64 {
	P := 0.0
	for k := n / h; k >= 0; k-- {
		p1 := 1.0
		for j := int64(0); j < h; j++ {
			p1 = float64(n-k*h-j) * p1 / float64(n+k*h+j+1)
		}
		P = p1 * (1 - P)
	}
	return 2 * P
}

// ksOuterProbInside returns the proportion of lattice paths from (0, 0) to
// (m, n) that do not stay strictly inside |x/m - y/n| < h/lcm(m, n): Hodges'
// inside method, with Viehmann's (2021) recursion on one minus the
// proportion, as SciPy's _compute_outer_prob_inside_method.
func ksOuterProbInside(m, n, g, h int64) float64 {
	if m < n {
		m, n = n, m
	}
	mg := m / g
	ng := n / g
	minj, maxj := int64(0), min(ceilDiv(h, mg), n+1)
	curlen := maxj - minj
	lenA := min(2*maxj+2, n+1)
	A := make([]float64, lenA)
	for i := range A {
		A[i] = 1
	}
	for i := minj; i < maxj; i++ {
		A[i] = 0
	}
	for i := int64(1); i <= m; i++ {
		lastminj, lastlen := minj, curlen
		minj = max(floorDiv(ng*i-h, mg)+1, 0)
		minj = min(minj, n)
		maxj = min(ceilDiv(ng*i+h, mg), n+1)
		if maxj <= minj {
			return 1
		}
		val := 1.0
		if minj == 0 {
			val = 0
		}
		fi := float64(i)
		for jj := int64(0); jj < maxj-minj; jj++ {
			j := jj + minj
			val = (A[jj+minj-lastminj]*fi + val*float64(j)) / (fi + float64(j))
			A[jj] = val
		}
		curlen = maxj - minj
		if lastlen > curlen {
			for k := maxj - minj; k < maxj-minj+(lastlen-curlen); k++ {
				A[k] = 1
			}
		}
	}
	return A[maxj-minj-1]
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }
