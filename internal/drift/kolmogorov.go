package drift

import "math"

// This file ports the distribution of the two-sided one-sample
// Kolmogorov–Smirnov statistic D_n (scipy.stats.kstwo, whose kolmogn lives
// in scipy/stats/_ksstats.py) and the one-sided Smirnov distribution
// (scipy.special.smirnov), which the asymptotic two-sample p-value of
// ks_2samp uses: kstwo.sf(d, round(n1·n2/(n1+n2))). The method chosen for
// each (n, d) follows Simard and L'Ecuyer (2011) as SciPy does, so that the
// p-values agree with SciPy 1.10 to rounding.

const (
	ksE128   = 128
	ksMinLog = -708 // exp of less underflows (Pelz–Good's cut-off)
	// cephesMinLog is cephes' MINLOG, ln 2^-1075: the one-sided Smirnov sf
	// is 0 below it.
	cephesMinLog = -7.451332191019412076235e2
	// smirnovMaxN is the n above which the Smirnov sf is approximated.
	smirnovMaxN = 1000000
)

var (
	ksEP128 = math.Ldexp(1, ksE128)
	ksEM128 = math.Ldexp(1, -ksE128)
)

// KolmogorovSF returns P(D_n ≥ d) for the two-sided one-sample
// Kolmogorov–Smirnov statistic D_n of a sample of size n, as
// scipy.stats.kstwo.sf(d, n).
func KolmogorovSF(n int, d float64) float64 {
	switch {
	case n < 1 || math.IsNaN(d):
		return math.NaN()
	case d <= 0.5/float64(n):
		return 1
	case d >= 1:
		return 0
	}
	return kolmognSF(n, d)
}

// kolmognSF is _kolmogn(n, x, cdf=False) for 0.5/n < x < 1.
func kolmognSF(n int, x float64) float64 {
	nf := float64(n)
	t := nf * x
	if t <= 1 {
		// Ruben–Gambino: 1/2n ≤ x ≤ 1/n.
		if t <= 0.5 {
			return 1
		}
		var prob float64
		if n <= 140 {
			prob = 1
			for i := 1; i <= n; i++ {
				prob *= float64(i) * (1 / nf) * (2*t - 1)
			}
		} else {
			prob = math.Exp(logFactorialOverPower(nf) + nf*math.Log(2*t-1))
		}
		return clip01(1 - prob)
	}
	if t >= nf-1 {
		// Ruben–Gambino.
		return clip01(2 * math.Pow(1-x, nf))
	}
	if x >= 0.5 {
		// Exact: twice the one-sided statistic's tail.
		return clip01(2 * smirnovSF(n, x))
	}
	nxSquared := t * x
	if n <= 140 {
		if nxSquared <= 0.754693 {
			return clip01(1 - kolmogorovDurbin(n, x))
		}
		if nxSquared <= 4 {
			return clip01(1 - kolmogorovPomeranz(n, x))
		}
		// Miller's approximation by twice the one-sided tail.
		return clip01(2 * smirnovSF(n, x))
	}
	if nxSquared >= 370 {
		return 0
	}
	if nxSquared >= 2.2 {
		return clip01(2 * smirnovSF(n, x))
	}
	var cdf float64
	if n <= 100000 && nf*math.Pow(x, 1.5) <= 1.4 {
		cdf = kolmogorovDurbin(n, x)
	} else {
		cdf = kolmogorovPelzGood(n, x)
	}
	return clip01(1 - cdf)
}

func clip01(p float64) float64 { return min(max(p, 0), 1) }

// stirlingCoeffs are B_2j/(2j(2j-1)) for j = 8, …, 1.
var stirlingCoeffs = [...]float64{-2.955065359477124183e-2, 6.4102564102564102564e-3,
	-1.9175269175269175269e-3, 8.4175084175084175084e-4,
	-5.952380952380952381e-4, 7.9365079365079365079e-4,
	-2.7777777777777777778e-3, 8.3333333333333333333e-2}

// logFactorialOverPower returns ln(n!/n^n) by Stirling's series.
func logFactorialOverPower(n float64) float64 {
	rn := 1 / n
	y := rn / n
	poly := 0.0
	for _, c := range stirlingCoeffs {
		poly = poly*y + c
	}
	return math.Log(n)/2 - n + math.Log(2*math.Pi)/2 + rn*poly
}

// kolmogorovDurbin returns P(D_n ≤ d) by Durbin's matrix algorithm in the
// form of Marsaglia, Tsang and Wang (2003): the k-th diagonal entry of
// (n!/n^n)·H^n, scaled to stay in range.
func kolmogorovDurbin(n int, d float64) float64 {
	if d >= 1 {
		return 1
	}
	nd := float64(n) * d
	if nd <= 0.5 {
		return 0
	}
	k := int(math.Ceil(nd))
	h := float64(k) - nd
	m := 2*k - 1

	v := make([]float64, m)
	w := make([]float64, m)
	fac := 1.0
	for j := 1; j <= m; j++ {
		v[j-1] = 1 - math.Pow(h, float64(j))
		w[j-1] = fac
		fac /= float64(j)
		v[j-1] *= fac
	}
	tt := math.Pow(max(2*h-1, 0), float64(m)) - 2*math.Pow(h, float64(m))
	v[m-1] = (1 + tt) * fac

	H := newMatrix(m)
	for i := 1; i < m; i++ {
		for r := i - 1; r < m; r++ {
			H.set(r, i, w[r-(i-1)])
		}
	}
	for r := 0; r < m; r++ {
		H.set(r, 0, v[r])
	}
	for c := 0; c < m; c++ {
		H.set(m-1, c, v[m-1-c])
	}

	pwr := identity(m)
	tmp := newMatrix(m)
	expnt := 0
	hExpnt := 0
	for nn := n; nn > 0; nn /= 2 {
		if nn%2 == 1 {
			mul(tmp, pwr, H)
			pwr, tmp = tmp, pwr
			expnt += hExpnt
		}
		mul(tmp, H, H)
		H, tmp = tmp, H
		hExpnt *= 2
		if math.Abs(H.at(k-1, k-1)) > ksEP128 {
			H.scale(1 / ksEP128)
			hExpnt += ksE128
		}
	}
	p := pwr.at(k-1, k-1)
	nf := float64(n)
	for i := 1; i <= n; i++ {
		p = float64(i) * p / nf
		if math.Abs(p) < ksEM128 {
			p *= ksEP128
			expnt -= ksE128
		}
	}
	if expnt != 0 {
		p = math.Ldexp(p, expnt)
	}
	return clip01(p)
}

// matrix is a square row-major matrix.
type matrix struct {
	n int
	a []float64
}

func newMatrix(n int) matrix { return matrix{n: n, a: make([]float64, n*n)} }

func identity(n int) matrix {
	m := newMatrix(n)
	for i := 0; i < n; i++ {
		m.a[i*n+i] = 1
	}
	return m
}

func (m matrix) at(r, c int) float64     { return m.a[r*m.n+c] }
func (m matrix) set(r, c int, x float64) { m.a[r*m.n+c] = x }
func (m matrix) scale(s float64) {
	for i := range m.a {
		m.a[i] *= s
	}
}

// mul sets dst = a·b; dst must not alias a or b.
func mul(dst, a, b matrix) {
	n := a.n
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			s := 0.0
			for l := 0; l < n; l++ {
				s += a.a[i*n+l] * b.a[l*n+j]
			}
			dst.a[i*n+j] = s
		}
	}
}

// pomeranzBounds returns the interval of row i of Pomeranz's recursion.
func pomeranzBounds(i, n, ll, ceilf, roundf int) (int, int) {
	var j1, j2 int
	if i == 0 {
		j1, j2 = -ll-ceilf-1, ll+ceilf-1
	} else {
		ip1div2, ip1mod2 := (i+1)/2, (i+1)%2
		if ip1mod2 == 0 { // i is odd
			if ip1div2 == n+1 {
				j1, j2 = n-ll-ceilf-1, n+ll+ceilf-1
			} else {
				j1, j2 = ip1div2-1-ll-roundf-1, ip1div2+ll-1+ceilf-1
			}
		} else {
			j1, j2 = ip1div2-1-ll-1, ip1div2+ll+roundf-1
		}
	}
	return max(j1+2, 0), min(j2, n)
}

// kolmogorovPomeranz returns P(D_n ≤ x) by Pomeranz's recursion (1974):
// rows of convolutions with (almost) Poisson probabilities, two rows kept,
// scaled to stay in range, times n! at the end.
func kolmogorovPomeranz(n int, x float64) float64 {
	nf := float64(n)
	t := nf * x
	ll := int(math.Floor(t))
	f := t - float64(ll)
	g := min(f, 1-f)
	ceilf, roundf := 0, 0
	if f > 0 {
		ceilf = 1
	}
	if f > 0.5 {
		roundf = 1
	}
	npwrs := 2 * (ll + 1)
	gpower := make([]float64, npwrs)
	twogpower := make([]float64, npwrs)
	onem2gpower := make([]float64, npwrs)
	gpower[0], twogpower[0], onem2gpower[0] = 1, 1, 1
	expnt := 0
	gOverN, twoGOverN, oneMinusTwoGOverN := g/nf, 2*g/nf, (1-2*g)/nf
	for m := 1; m < npwrs; m++ {
		gpower[m] = gpower[m-1] * gOverN / float64(m)
		twogpower[m] = twogpower[m-1] * twoGOverN / float64(m)
		onem2gpower[m] = onem2gpower[m-1] * oneMinusTwoGOverN / float64(m)
	}

	v0 := make([]float64, npwrs)
	v1 := make([]float64, npwrs)
	v1[0] = 1
	v0s, v1s := 0, 0
	conv := make([]float64, 2*npwrs)

	j1, j2 := pomeranzBounds(0, n, ll, ceilf, roundf)
	for i := 1; i < 2*n+2; i++ {
		k1 := j1
		v0, v1 = v1, v0
		v0s, v1s = v1s, v0s
		clear(v1)
		j1, j2 = pomeranzBounds(i, n, ll, ceilf, roundf)
		var pwrs []float64
		switch {
		case i == 1 || i == 2*n+1:
			pwrs = gpower
		case i%2 == 1:
			pwrs = twogpower
		default:
			pwrs = onem2gpower
		}
		ln2 := j2 - k1 + 1
		if ln2 > 0 {
			// np.convolve(V0[k1-V0s : k1-V0s+ln2], pwrs[:ln2]), where the
			// slices stop at the ends of their arrays.
			lo := k1 - v0s
			a := v0[lo:min(lo+ln2, len(v0))]
			b := pwrs[:min(ln2, len(pwrs))]
			c := conv[:len(a)+len(b)-1]
			clear(c)
			for p, ap := range a {
				for q, bq := range b {
					c[p+q] += ap * bq
				}
			}
			convStart := j1 - k1
			convLen := j2 - j1 + 1
			copy(v1[:convLen], c[convStart:convStart+convLen])
			largest := 0.0
			for _, y := range v1 {
				largest = max(largest, y)
			}
			if largest > 0 && largest < ksEM128 {
				for j := range v1 {
					v1[j] *= ksEP128
				}
				expnt -= ksE128
			}
			v1s = v0s + j1 - k1
		}
	}
	ans := v1[n-v1s]
	for m := 1; m <= n; m++ {
		if math.Abs(ans) > ksEP128 {
			ans *= ksEM128
			expnt += ksE128
		}
		ans *= float64(m)
	}
	if expnt != 0 {
		ans = math.Ldexp(ans, expnt)
	}
	return clip01(ans)
}

// kolmogorovPelzGood returns the Pelz–Good (1976) approximation to
// P(D_n ≤ x), 0 ≤ x ≤ 1: the Li-Chien/Korolyuk expansion
// K0(z) + K1(z)/√n + K2(z)/n + K3(z)/n^1.5 at z = x√n, in the Jacobi-theta
// form suited to small z.
func kolmogorovPelzGood(n int, x float64) float64 {
	if x <= 0 {
		return 0
	}
	if x >= 1 {
		return 1
	}
	const pi2 = math.Pi * math.Pi
	const pi4, pi6 = pi2 * pi2, pi2 * pi2 * pi2
	sqrt2pi := math.Sqrt(2 * math.Pi)
	nf := float64(n)
	z := math.Sqrt(nf) * x
	z2, z3, z4, z6 := z*z, z*z*z, z*z*z*z, math.Pow(z, 6)

	qlog := -pi2 / 8 / z2
	if qlog < ksMinLog {
		return 0
	}
	q := math.Exp(qlog)

	k1a := -z2
	k1b := pi2 / 4
	k2a := 6*z6 + 2*z4
	k2b := (2*z4 - 5*z2) * pi2 / 4
	k2c := pi4 * (1 - 2*z2) / 16
	k3d := pi6 * (5 - 30*z2) / 64
	k3c := pi4 * (-60*z2 + 212*z4) / 16
	k3b := pi2 * (135*z4 - 96*z6) / 4
	k3a := -30*z6 - 90*math.Pow(z, 8)

	var K [4]float64
	maxk := int(math.Ceil(16 * z / math.Pi))
	for k := maxk; k > 0; k-- {
		m := float64(2*k - 1)
		m2, m4, m6 := m*m, m*m*m*m, math.Pow(m, 6)
		qpower := math.Pow(q, float64(8*k))
		coeffs := [4]float64{1,
			k1a + k1b*m2,
			k2a + k2b*m2 + k2c*m4,
			k3a + k3b*m2 + k3c*m4 + k3d*m6}
		for i := range K {
			K[i] = K[i]*qpower + coeffs[i]
		}
	}
	div := [4]float64{z, 6 * z4, 72 * math.Pow(z, 7), 6480 * math.Pow(z, 10)}
	for i := range K {
		K[i] = K[i] * q * sqrt2pi / div[i]
	}

	q = math.Exp(-pi2 / 2 / z2)
	sqrt3z := math.Sqrt(3) * z
	k2extra, k3extra := 0.0, 0.0
	for k := maxk; k > 0; k-- {
		kf := float64(k)
		ksq := kf * kf
		qp := math.Pow(q, ksq)
		k2extra += ksq * qp
		kspi := math.Pi * kf
		k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksq * qp
	}
	K[2] += k2extra * (pi2 * sqrt2pi / (-36 * z3))
	K[3] += k3extra * (pi2 * sqrt2pi / (216 * z6))
	sum := 0.0
	for i := range K {
		sum += K[i] / math.Pow(nf, float64(i)/2)
	}
	return sum
}

// smirnovSF returns P(D+_n ≥ x) for the one-sided one-sample statistic, as
// scipy.special.smirnov(n, x): by the Birnbaum–Tingey sum
// x·Σ_{v=0}^{⌊n(1-x)⌋} C(n,v) (x+v/n)^(v-1) (1-x-v/n)^(n-v), all of whose
// terms are positive. With p = x+v/n, a term is the binomial probability
// C(n,v) p^v (1-p)^(n-v) over p, which is formed by Loader's saddle-point
// expansion (Stirling remainders and deviances, as R's dbinom) with n·x
// split exactly into its integer and fractional parts, so that each term
// keeps its relative accuracy for any n; the sum is scaled by its largest
// term.
func smirnovSF(n int, x float64) float64 {
	if !(n > 0 && x >= 0 && x <= 1) {
		return math.NaN()
	}
	if n == 1 {
		return 1 - x
	}
	if x == 0 {
		return 1
	}
	if x == 1 {
		return 0
	}
	nf := float64(n)
	// n·x = nxfl + alpha exactly up to one rounding of alpha.
	hi := nf * x
	lo := math.FMA(nf, x, -hi)
	fl := math.Floor(hi)
	alpha := (hi - fl) + lo
	if alpha < 0 {
		fl--
		alpha++
	}
	if alpha >= 1 {
		fl++
		alpha--
	}
	nxfl := int(fl)
	if nxfl == 0 || (nxfl == 1 && alpha == 0) {
		// x ≤ 1/n: cdf = x(1+x)^(n-1).
		return 1 - x*math.Exp(float64(n-1)*math.Log1p(x))
	}
	if -2*nf*x*x < cephesMinLog {
		return 0
	}
	if nxfl >= n-1 {
		return math.Exp(nf * math.Log1p(-x))
	}
	if n > smirnovMaxN {
		logp := -math.Pow(6*nf*x+1, 2) / 18 / nf
		if logp < -math.Ln2 {
			return math.Exp(logp)
		}
		return 1 + math.Expm1(logp)
	}
	// The last term is v = ⌊n(1-x)⌋, less one when n(1-x) is an integer.
	last := n - nxfl - 1
	stirN := stirlerr(nf)
	// Online log-sum-exp of the terms' logarithms; v = 0 is (1-x)^n / x.
	maxLog, sum := nf*math.Log1p(-x)-math.Log(x), 1.0
	for v := 1; v <= last; v++ {
		vf, wf := float64(v), float64(n-v)
		np := float64(nxfl+v) + alpha // n·p
		nq := float64(n-v-nxfl) - alpha
		l := stirN - stirlerr(vf) - stirlerr(wf) - bd0(vf, np) - bd0(wf, nq) +
			0.5*math.Log(nf/(2*math.Pi*vf*wf)) - math.Log(np/nf)
		if l > maxLog {
			sum = sum*math.Exp(maxLog-l) + 1
			maxLog = l
		} else {
			sum += math.Exp(l - maxLog)
		}
	}
	return clip01(x * sum * math.Exp(maxLog))
}

// stirlerr returns ln(n!) - ((n+½) ln n - n + ½ ln 2π) for n ≥ 1.
func stirlerr(n float64) float64 {
	if n >= 10 {
		return stirlingRemainder(n) // ln Γ(n) - ((n-½) ln n - n + ½ ln 2π): the same
	}
	lg, _ := math.Lgamma(n + 1)
	return lg - (n+0.5)*math.Log(n) + n - 0.5*math.Log(2*math.Pi)
}

// bd0 returns the deviance x ln(x/m) + m - x, accurately when x ≈ m
// (Loader, 2000).
func bd0(x, m float64) float64 {
	if math.Abs(x-m) < 0.1*(x+m) {
		v := (x - m) / (x + m)
		s := (x - m) * v
		ej := 2 * x * v
		v2 := v * v
		for j := 3; j < 1000; j += 2 {
			ej *= v2
			s1 := s + ej/float64(j)
			if s1 == s {
				return s1
			}
			s = s1
		}
		return s
	}
	return x*math.Log(x/m) + m - x
}
