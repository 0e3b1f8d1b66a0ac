// Package privacy accounts for the differential privacy that federated
// training spends: Rényi differential privacy (RDP) of the Gaussian
// mechanism and of the sampled Gaussian mechanism (each round's clipped,
// noised aggregate over a random subset of clients), composed over rounds
// by adding RDP, and converted to an (ε, δ) guarantee.
//
// The sampled Gaussian mechanism's RDP at order α is
// log(A_α) / (α - 1), with A_α the α-th moment of the likelihood ratio of
// the mixture (1-q)·N(0, σ²) + q·N(1, σ²) to N(0, σ²) (Mironov, Talwar,
// Zhang: "Rényi Differential Privacy of the Sampled Gaussian Mechanism",
// 2019, section 3.3). For integer α it is a finite binomial sum; for
// fractional α a converging series of terms with erfc. Sums are kept in
// logarithms so that large orders and small rates neither overflow nor
// underflow.
//
// The package is pure: functions of numbers.
package privacy

import (
	"errors"
	"fmt"
	"math"
)

// DefaultOrders are the RDP orders an accountant tracks: fine steps where
// small ε are decided, coarse ones beyond.
var DefaultOrders = func() []float64 {
	var o []float64
	for a := 1.25; a < 11; a += 0.25 {
		o = append(o, a)
	}
	for a := 12.0; a <= 64; a += 2 {
		o = append(o, a)
	}
	return append(o, 128, 256)
}()

// GaussianRDP is the RDP at order α of the Gaussian mechanism with noise
// multiplier σ (noise standard deviation over sensitivity): α / (2σ²)
// (Mironov, "Rényi Differential Privacy", 2017, proposition 7).
func GaussianRDP(sigma, alpha float64) float64 { return alpha / (2 * sigma * sigma) }

// SampledGaussianRDP is the RDP at order α > 1 of one step of the sampled
// Gaussian mechanism: each record (client) taken with probability q, noise
// multiplier σ.
func SampledGaussianRDP(q, sigma, alpha float64) (float64, error) {
	switch {
	case !(q >= 0 && q <= 1):
		return 0, fmt.Errorf("privacy: sampling rate %v", q)
	case !(sigma > 0):
		return 0, fmt.Errorf("privacy: noise multiplier %v", sigma)
	case !(alpha > 1):
		return 0, fmt.Errorf("privacy: order %v, want above 1", alpha)
	case q == 0:
		return 0, nil
	case q == 1:
		return GaussianRDP(sigma, alpha), nil
	case math.IsInf(alpha, 1):
		return math.Inf(1), nil
	}
	var logA float64
	if alpha == math.Trunc(alpha) && alpha < 1e6 {
		logA = logAInt(q, sigma, int(alpha))
	} else {
		logA = logAFrac(q, sigma, alpha)
	}
	return logA / (alpha - 1), nil
}

// logAInt is log A_α for integer α: log Σ_{i=0}^{α} C(α, i) (1-q)^{α-i}
// q^i exp((i² - i) / (2σ²)).
func logAInt(q, sigma float64, alpha int) float64 {
	sum := math.Inf(-1)
	for i := 0; i <= alpha; i++ {
		fi := float64(i)
		t := logBinom(float64(alpha), fi) + fi*math.Log(q) + float64(alpha-i)*math.Log1p(-q) +
			(fi*fi-fi)/(2*sigma*sigma)
		sum = logAdd(sum, t)
	}
	return sum
}

// logAFrac is log A_α for fractional α: the series of Mironov et al.,
// split at z₀ = σ² log(1/q - 1) + 1/2 into two sums whose terms carry
// erfc factors, summed until their terms fall below e^-30 of one.
func logAFrac(q, sigma, alpha float64) float64 {
	a0, a1 := math.Inf(-1), math.Inf(-1) // kept as signed log-sums
	s0, s1 := 1.0, 1.0                   // their signs
	z0 := sigma*sigma*math.Log(1/q-1) + 0.5
	for i := 0.0; ; i++ {
		coef, sign := binom(alpha, i)
		logCoef := math.Log(math.Abs(coef))
		if coef == 0 || math.IsInf(logCoef, 0) {
			logCoef, sign = logAbsBinom(alpha, i)
		}
		j := alpha - i
		t0 := logCoef + i*math.Log(q) + j*math.Log1p(-q)
		t1 := logCoef + j*math.Log(q) + i*math.Log1p(-q)
		e0 := math.Log(0.5) + logErfc((i-z0)/(math.Sqrt2*sigma))
		e1 := math.Log(0.5) + logErfc((z0-j)/(math.Sqrt2*sigma))
		l0 := t0 + (i*i-i)/(2*sigma*sigma) + e0
		l1 := t1 + (j*j-j)/(2*sigma*sigma) + e1
		a0, s0 = signedLogAdd(a0, s0, l0, sign)
		a1, s1 = signedLogAdd(a1, s1, l1, sign)
		if max(l0, l1) < -30 || i > 1e5 {
			break
		}
	}
	sum, _ := signedLogAdd(a0, s0, a1, s1)
	return sum
}

// binom is the generalized binomial coefficient C(α, i) = α(α-1)...(α-i+1)/i!
// for real α and integer i ≥ 0, with its sign.
func binom(alpha, i float64) (float64, float64) {
	c := 1.0
	for k := 0.0; k < i; k++ {
		c *= (alpha - k) / (k + 1)
	}
	if c < 0 {
		return c, -1
	}
	return c, 1
}

// logAbsBinom is log |C(α, i)| and its sign, by log-gamma, for when the
// product over- or underflows.
func logAbsBinom(alpha, i float64) (float64, float64) {
	a, sa := math.Lgamma(alpha + 1)
	b, sb := math.Lgamma(i + 1)
	c, sc := math.Lgamma(alpha - i + 1)
	return a - b - c, float64(sa * sb * sc)
}

// logBinom is log C(n, k) for integers, by log-gamma.
func logBinom(n, k float64) float64 {
	a, _ := math.Lgamma(n + 1)
	b, _ := math.Lgamma(k + 1)
	c, _ := math.Lgamma(n - k + 1)
	return a - b - c
}

// logAdd is log(e^a + e^b).
func logAdd(a, b float64) float64 {
	if math.IsInf(a, -1) {
		return b
	}
	if math.IsInf(b, -1) {
		return a
	}
	hi, lo := max(a, b), min(a, b)
	return hi + math.Log1p(math.Exp(lo-hi))
}

// signedLogAdd adds s·e^a and t·e^b, returning the log of the absolute
// result and its sign.
func signedLogAdd(a, s, b, t float64) (float64, float64) {
	if math.IsInf(b, -1) {
		return a, s
	}
	if math.IsInf(a, -1) {
		return b, t
	}
	if s == t {
		return logAdd(a, b), s
	}
	if a >= b {
		return a + math.Log1p(-math.Exp(b-a)), s
	}
	return b + math.Log1p(-math.Exp(a-b)), t
}

// logErfc is log(erfc(x)), with the asymptotic series where erfc
// underflows.
func logErfc(x float64) float64 {
	if x < 20 {
		return math.Log(math.Erfc(x))
	}
	// erfc(x) = e^{-x²}/(x√π) · (1 - 1/(2x²) + 3/(4x⁴) - 15/(8x⁶) + ...)
	x2 := x * x
	series := 1 - 1/(2*x2) + 3/(4*x2*x2) - 15/(8*x2*x2*x2) + 105/(16*x2*x2*x2*x2)
	return -x2 - math.Log(x) - 0.5*math.Log(math.Pi) + math.Log(series)
}

// Epsilon converts RDP values rdp at orders (composed over all steps) to
// the smallest ε of an (ε, δ) guarantee that any of them gives, with the
// order that gave it: ε = RDP(α) + log(1/δ) / (α - 1) (Mironov 2017,
// proposition 3).
func Epsilon(orders, rdp []float64, delta float64) (eps, order float64, err error) {
	if len(orders) == 0 || len(orders) != len(rdp) {
		return 0, 0, errors.New("privacy: orders and RDP values do not pair")
	}
	if !(delta > 0 && delta < 1) {
		return 0, 0, fmt.Errorf("privacy: δ %v, want between 0 and 1", delta)
	}
	eps = math.Inf(1)
	for i, a := range orders {
		if !(a > 1) {
			return 0, 0, fmt.Errorf("privacy: order %v, want above 1", a)
		}
		if e := rdp[i] - math.Log(delta)/(a-1); e < eps {
			eps, order = e, a
		}
	}
	return eps, order, nil
}

// Accountant composes the RDP of the rounds of a job.
type Accountant struct {
	orders []float64
	rdp    []float64
}

// NewAccountant tracks orders (DefaultOrders when nil).
func NewAccountant(orders []float64) *Accountant {
	if orders == nil {
		orders = DefaultOrders
	}
	return &Accountant{orders: append([]float64(nil), orders...), rdp: make([]float64, len(orders))}
}

// Step adds steps of the sampled Gaussian mechanism with rate q and noise
// multiplier σ.
func (a *Accountant) Step(q, sigma float64, steps int) error {
	for i, o := range a.orders {
		r, err := SampledGaussianRDP(q, sigma, o)
		if err != nil {
			return err
		}
		a.rdp[i] += float64(steps) * r
	}
	return nil
}

// Epsilon is the ε spent so far at δ, and the order that gives it.
func (a *Accountant) Epsilon(delta float64) (float64, float64, error) {
	return Epsilon(a.orders, a.rdp, delta)
}
