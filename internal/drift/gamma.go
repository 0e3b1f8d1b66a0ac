package drift

import "math"

// maxLog is ln of the largest float64; a probability whose logarithm is
// below -maxLog is reported as 0, as SciPy's cephes library does, rather
// than as a subnormal number.
const maxLog = 7.09782712893383996843e2

// GammaQ returns the regularized upper incomplete gamma function
// Q(a, x) = Γ(a, x)/Γ(a) for a > 0 and x ≥ 0, as scipy.special.gammaincc.
// The survival function of the χ² distribution with k degrees of freedom
// at s is GammaQ(k/2, s/2). It returns NaN for negative or NaN arguments.
//
// It sums the power series of P(a, x) = 1 - Q(a, x) when x < a+1 and
// evaluates Legendre's continued fraction for Q otherwise (modified Lentz),
// with the common factor x^a e^-x / Γ(a) computed through Stirling's series
// for large a so that it keeps its relative accuracy near x ≈ a. Results are
// accurate to about 1e-13 relative; values below about 1e-308 are 0.
func GammaQ(a, x float64) float64 {
	switch {
	case math.IsNaN(a) || math.IsNaN(x) || a < 0 || x < 0:
		return math.NaN()
	case a == 0:
		if x > 0 {
			return 0
		}
		return math.NaN()
	case x == 0:
		return 1
	case math.IsInf(a, 1):
		if math.IsInf(x, 1) {
			return math.NaN()
		}
		return 1
	case math.IsInf(x, 1):
		return 0
	}
	if x < a+1 {
		return 1 - gammaPSeries(a, x)
	}
	return gammaQFraction(a, x)
}

// GammaP returns the regularized lower incomplete gamma function
// P(a, x) = 1 - Q(a, x), as scipy.special.gammainc.
func GammaP(a, x float64) float64 {
	switch {
	case math.IsNaN(a) || math.IsNaN(x) || a < 0 || x < 0:
		return math.NaN()
	case a == 0:
		if x > 0 {
			return 1
		}
		return math.NaN()
	case x == 0:
		return 0
	case math.IsInf(a, 1):
		if math.IsInf(x, 1) {
			return math.NaN()
		}
		return 0
	case math.IsInf(x, 1):
		return 1
	}
	if x < a+1 {
		return gammaPSeries(a, x)
	}
	return 1 - gammaQFraction(a, x)
}

// ChiSquareSF returns the survival function of the χ² distribution with df
// degrees of freedom at s: the p-value of a χ² statistic s.
func ChiSquareSF(s float64, df float64) float64 {
	if s < 0 {
		return 1
	}
	return GammaQ(df/2, s/2)
}

// gammaPSeries returns P(a, x) by its power series
// P = x^a e^-x / Γ(a+1) · Σ_n x^n / ((a+1)…(a+n)), for x < a+1.
func gammaPSeries(a, x float64) float64 {
	fac := gammaFactor(a, x)
	if fac == 0 {
		return 0
	}
	sum, term := 1.0, 1.0
	for n := 1; n < 100000; n++ {
		term *= x / (a + float64(n))
		sum += term
		if term < sum*1e-17 {
			break
		}
	}
	return fac / a * sum
}

// gammaQFraction returns Q(a, x) by Legendre's continued fraction
// Q = x^a e^-x / Γ(a) · 1/(x+1-a- 1(1-a)/(x+3-a- 2(2-a)/(x+5-a- …))),
// evaluated by the modified Lentz method, for x ≥ a+1.
func gammaQFraction(a, x float64) float64 {
	fac := gammaFactor(a, x)
	if fac == 0 {
		return 0
	}
	const tiny = 1e-300
	b := x + 1 - a
	c := 1 / tiny
	d := 1 / b
	h := d
	for i := 1; i < 100000; i++ {
		an := -float64(i) * (float64(i) - a)
		b += 2
		d = an*d + b
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = b + an/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < 1e-16 {
			break
		}
	}
	return fac * h
}

// gammaFactor returns x^a e^-x / Γ(a), or 0 when its logarithm is below
// -maxLog. For a ≥ 10 and x ≥ a/2 it is sqrt(a/2π)·exp(a·(ln(1+t) - t) - δ(a))
// with t = (x-a)/a and δ the remainder of Stirling's series for ln Γ(a),
// which keeps full relative accuracy where a and x are large and close.
func gammaFactor(a, x float64) float64 {
	var logFac float64
	if a < 10 || x < a/2 {
		lg, _ := math.Lgamma(a)
		logFac = a*math.Log(x) - x - lg
		if logFac < -maxLog {
			return 0
		}
		return math.Exp(logFac)
	}
	t := (x - a) / a
	logFac = a*log1pmx(t) - stirlingRemainder(a)
	if logFac+0.5*math.Log(a/(2*math.Pi)) < -maxLog {
		return 0
	}
	return math.Sqrt(a/(2*math.Pi)) * math.Exp(logFac)
}

// log1pmx returns ln(1+t) - t for t > -1, accurately for small |t|.
func log1pmx(t float64) float64 {
	if math.Abs(t) > 0.5 {
		return math.Log1p(t) - t
	}
	// With u = t/(2+t): ln(1+t) = 2 atanh(u) = 2(u + u³/3 + u⁵/5 + …) and
	// t - 2u = u·t, so ln(1+t) - t = -u·t + 2(u³/3 + u⁵/5 + …).
	u := t / (2 + t)
	u2 := u * u
	sum, pow := 0.0, u*u2
	for k := 3; k < 200; k += 2 {
		term := pow / float64(k)
		sum += term
		if math.Abs(term) <= math.Abs(sum)*1e-17 {
			break
		}
		pow *= u2
	}
	return -u*t + 2*sum
}

// stirlingRemainder returns δ(a) = ln Γ(a) - ((a-½) ln a - a + ½ ln 2π)
// for a ≥ 10, by Stirling's series (error below 1e-14 there).
func stirlingRemainder(a float64) float64 {
	r := 1 / a
	r2 := r * r
	return r * (1.0/12 - r2*(1.0/360-r2*(1.0/1260-r2*(1.0/1680-r2*(1.0/1188-r2*691.0/360360)))))
}
