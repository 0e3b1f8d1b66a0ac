package privacy

import (
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/testenv"
)

func near(a, b, tol float64) bool {
	if math.IsInf(a, 1) || math.IsInf(b, 1) {
		return math.IsInf(a, 1) && math.IsInf(b, 1)
	}
	return math.Abs(a-b) <= tol
}

// TestPublishedValues checks values published with TensorFlow Privacy's
// RDP accountant (its rdp_accountant_test, computing the sampled Gaussian
// mechanism of Mironov, Talwar and Zhang 2019, checked there against a
// multi-precision computation): the RDP of 50 steps at q = 0.01, σ = 2.5
// over integer and fractional orders, one step set at q = 0.1, σ = 2, and
// the ε of DP-SGD at q = 0.01, σ = 4, 10,000 steps, δ = 1e-5, orders 2 to
// 32 (Abadi et al. 2016's MNIST setting: 1.258575 at order 20), and a
// composition of two mechanisms (8.509656 at order 2.5).
func TestPublishedValues(t *testing.T) {
	rdp := func(q, sigma float64, steps int, order float64) float64 {
		r, err := SampledGaussianRDP(q, sigma, order)
		if err != nil {
			t.Fatal(err)
		}
		return float64(steps) * r
	}
	if got := rdp(0.1, 2, 10, 5); !near(got, 0.07737, 1e-5) {
		t.Errorf("q 0.1, σ 2, 10 steps, order 5: %v, want 0.07737", got)
	}
	orders := []float64{1.5, 2.5, 5, 50, 100, math.Inf(1)}
	want := []float64{0.00065, 0.001085, 0.00218075, 0.023846, 167.416307, math.Inf(1)}
	for i, o := range orders {
		if got := rdp(0.01, 2.5, 50, o); !near(got, want[i], 1e-5) {
			t.Errorf("q 0.01, σ 2.5, 50 steps, order %v: %v, want %v", o, got, want[i])
		}
	}
	var ints []float64
	for a := 2.0; a <= 32; a++ {
		ints = append(ints, a)
	}
	acc := NewAccountant(ints)
	if err := acc.Step(0.01, 4, 10000); err != nil {
		t.Fatal(err)
	}
	eps, order, err := acc.Epsilon(1e-5)
	if err != nil || !near(eps, 1.258575, 1e-6) || order != 20 {
		t.Errorf("DP-SGD q 0.01, σ 4, 10,000 steps: ε %v at order %v (%v), want 1.258575 at 20", eps, order, err)
	}
	comp := NewAccountant([]float64{1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 64, 256})
	if err := comp.Step(1e-4, 0.4, 40000); err != nil {
		t.Fatal(err)
	}
	if err := comp.Step(0.1, 2, 100); err != nil {
		t.Fatal(err)
	}
	eps, order, err = comp.Epsilon(1e-5)
	if err != nil || !near(eps, 8.509656, 1e-5) || order != 2.5 {
		t.Errorf("composition: ε %v at order %v (%v), want 8.509656 at 2.5", eps, order, err)
	}
}

func TestGaussian(t *testing.T) {
	// Without sampling, the sampled mechanism is the Gaussian mechanism.
	for _, a := range []float64{1.5, 2, 7.25, 64} {
		got, err := SampledGaussianRDP(1, 1.3, a)
		if err != nil || !near(got, a/(2*1.3*1.3), 1e-12) {
			t.Errorf("order %v: %v, %v", a, got, err)
		}
	}
	// Sampling amplifies privacy: less RDP at every order.
	for _, a := range DefaultOrders {
		s, _ := SampledGaussianRDP(0.1, 1.3, a)
		if !(s < GaussianRDP(1.3, a)) || s < 0 {
			t.Errorf("order %v: sampled %v, unsampled %v", a, s, GaussianRDP(1.3, a))
		}
	}
	for _, bad := range [][3]float64{{-0.1, 1, 2}, {1.1, 1, 2}, {0.5, 0, 2}, {0.5, 1, 1}, {0.5, 1, 0.5}} {
		if _, err := SampledGaussianRDP(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("q %v σ %v order %v accepted", bad[0], bad[1], bad[2])
		}
	}
	if _, _, err := Epsilon([]float64{2}, []float64{1}, 0); err == nil {
		t.Error("δ 0 accepted")
	}
}

// TestAgainstSciPy checks log A_α against an independent numerical
// integration with SciPy (Debian python3-scipy, /usr/bin/python3): the α-th
// moment of the likelihood ratio ((1-q) + q·exp((2z-1)/(2σ²))) under
// z ~ N(0, σ²), by scipy.integrate.quad, at integer and fractional orders.
func TestAgainstSciPy(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import scipy.integrate").Run(); err != nil {
		testenv.MissingPeer(t, "Debian's python3-scipy ("+py+" -c 'import scipy.integrate')")
		return
	}
	cases := [][3]float64{{0.01, 1.1, 2}, {0.01, 1.1, 2.5}, {0.05, 0.8, 7.75}, {0.2, 2, 16}, {0.001, 4, 32.5}, {0.3, 1.5, 3.3}}
	in, _ := json.Marshal(cases)
	script := `
import json, math, sys
import numpy as np
from scipy import integrate
out = []
for q, s, a in json.loads(sys.argv[1]):
    # In logarithms, over where the mass is: around 0 and around the
    # likelihood ratio's pull, about a, many standard deviations wide.
    g = lambda z: -z*z/(2*s*s) - math.log(s*math.sqrt(2*math.pi)) + a*np.logaddexp(math.log1p(-q), math.log(q) + (2*z-1)/(2*s*s))
    lo, hi = -40*s, a + 40*s
    peak = max(g(z) for z in np.linspace(lo, hi, 20001))
    v, err = integrate.quad(lambda z: math.exp(g(z) - peak), lo, hi, points=[0, 0.5, a], epsabs=0, epsrel=1e-13, limit=1000)
    out.append(math.log(v) + peak)
print(json.dumps(out))
`
	b, err := exec.Command(py, "-c", script, string(in)).Output()
	if err != nil {
		t.Fatalf("scipy: %v", err)
	}
	var logA []float64
	if err := json.Unmarshal(b, &logA); err != nil {
		t.Fatalf("scipy printed %q: %v", strings.TrimSpace(string(b)), err)
	}
	for i, c := range cases {
		q, sigma, alpha := c[0], c[1], c[2]
		got, err := SampledGaussianRDP(q, sigma, alpha)
		if err != nil {
			t.Fatal(err)
		}
		want := logA[i] / (alpha - 1)
		if rel := math.Abs(got-want) / math.Abs(want); rel > 1e-9 {
			t.Errorf("%s: RDP %v, SciPy's integral gives %v (relative error %.2g)", fmt.Sprint(c), got, want, rel)
		}
	}
}
