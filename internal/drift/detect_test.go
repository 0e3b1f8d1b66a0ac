package drift

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// The behaviour scenario: a tabular model of four inputs and three
// classes. A sample's class y is drawn from a prior, its inputs from
// N(μ_y, I) with μ_y = 3·e_y (input 3 carries no class), and the model
// outputs the logits μ_c·x - |μ_c|²/2 of the classifier that is Bayes for
// equal priors.
var uniformPrior = [3]float64{1.0 / 3, 1.0 / 3, 1.0 / 3}

func scenarioFeaturizer(t testing.TB) *Featurizer {
	t.Helper()
	f, err := NewFeaturizer(FeaturizerConfig{InputShape: []int{4}, OutputShape: []int{3}, Outputs: OutputsLogits})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// scenario returns n samples drawn with the given prior, input 3 shifted
// by shift standard deviations.
func scenario(r *rand.Rand, n int, prior [3]float64, shift float64) Batch {
	b := Batch{Input: make([]float32, 4*n), InputShape: []int{n, 4}, Output: make([]float32, 3*n), OutputShape: []int{n, 3}}
	for s := range n {
		u, y := r.Float64(), 2
		if u < prior[0] {
			y = 0
		} else if u < prior[0]+prior[1] {
			y = 1
		}
		x := b.Input[4*s : 4*s+4]
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		x[y] += 3
		x[3] += float32(shift)
		for c := range 3 {
			b.Output[3*s+c] = 3*x[c] - 4.5
		}
	}
	return b
}

// reference returns the binned reference profile of n samples.
func reference(t testing.TB, f *Featurizer, r *rand.Rand, n int) *Profile {
	t.Helper()
	data := scenario(r, n, uniformPrior, 0)
	draft := f.NewProfile(1)
	if err := f.Observe(draft, data); err != nil {
		t.Fatal(err)
	}
	ref, err := draft.Binned(10, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Observe(ref, data); err != nil {
		t.Fatal(err)
	}
	return ref
}

// TestFalseAlarms checks that over 1,000 windows of 500 samples drawn like
// the reference, the share of drift verdicts stays at or under alpha, with
// the Bonferroni or the Benjamini–Hochberg correction over the 8 features,
// and the share of windows that raise the alarm (hysteresis: two drifted
// windows in a row) too. Each window is detected once, at alpha 0.05 with
// Bonferroni; the verdicts at alpha 0.01 and with Benjamini–Hochberg are
// taken from the same p-values and statistics.
func TestFalseAlarms(t *testing.T) {
	const windows, size = 1000, 500
	f := scenarioFeaturizer(t)
	r := rand.New(rand.NewPCG(11, 12))
	ref := reference(t, f, r, 20000)
	policy := DefaultPolicy()
	policy.Alpha = 0.05
	type outcome struct {
		name  string
		alpha float64
		drift func(res Result) bool
	}
	// drifted reports whether res drifts at alpha with the corrected
	// p-values adj (in the order of res's p-value scores).
	drifted := func(res Result, alpha float64, adjust func([]float64) []float64) bool {
		var p []float64
		threshold := false
		for _, f := range res.Features {
			for _, s := range f.Scores {
				if math.IsNaN(s.PValue) {
					threshold = threshold || s.Drifted
				} else {
					p = append(p, s.PValue)
				}
			}
		}
		for _, a := range adjust(p) {
			if a <= alpha {
				return true
			}
		}
		return threshold
	}
	outcomes := []outcome{
		{"alpha 0.05, bonferroni", 0.05, func(res Result) bool { return res.Drifted() }},
		{"alpha 0.01, bonferroni", 0.01, func(res Result) bool { return drifted(res, 0.01, BonferroniAdjust) }},
		{"alpha 0.05, benjamini-hochberg", 0.05, func(res Result) bool { return drifted(res, 0.05, BenjaminiHochbergAdjust) }},
	}
	h := Hysteresis{Raise: 2, Clear: 1}
	alarms := make([]Alarm, len(outcomes))
	drifts, raises := make([]int, len(outcomes)), make([]int, len(outcomes))
	t0 := time.Unix(0, 0)
	for i := range windows {
		w := ref.Empty(uint64(i))
		if err := f.Observe(w, scenario(r, size, uniformPrior, 0)); err != nil {
			t.Fatal(err)
		}
		res, err := Detect(ref, w, policy)
		if err != nil {
			t.Fatal(err)
		}
		if res.Tests != 8 {
			t.Fatalf("%d tests, want 8", res.Tests)
		}
		if res.Drifted() != drifted(res, 0.05, BonferroniAdjust) {
			t.Fatal("Detect's verdict is not that of its Bonferroni-corrected p-values")
		}
		for k, o := range outcomes {
			v := VerdictNoDrift
			if o.drift(res) {
				drifts[k]++
				v = VerdictDrift
			}
			next := h.Step(alarms[k], v, t0.Add(time.Duration(i)*time.Minute))
			if next.Active && !alarms[k].Active {
				raises[k]++
			}
			alarms[k] = next
		}
	}
	for k, o := range outcomes {
		t.Logf("%s: %d drift verdicts and %d alarms in %d windows", o.name, drifts[k], raises[k], windows)
		if rate := float64(drifts[k]) / windows; rate > o.alpha {
			t.Errorf("%s: false drift verdicts in %.3f of windows", o.name, rate)
		}
		if rate := float64(raises[k]) / windows; rate > o.alpha {
			t.Errorf("%s: false alarms in %.3f of windows", o.name, rate)
		}
	}
}

// TestDetectsShifts checks the documented detection delay: with windows of
// 500 samples, alpha 0.01 and the Bonferroni correction, a shift of one
// input's mean by 0.5σ, and a change of the class frequencies from
// (⅓, ⅓, ⅓) to (½, ¼, ¼), are detected in the first window after the
// change, in each of 20 trials.
func TestDetectsShifts(t *testing.T) {
	f := scenarioFeaturizer(t)
	r := rand.New(rand.NewPCG(21, 22))
	ref := reference(t, f, r, 20000)
	policy := DefaultPolicy()
	for _, c := range []struct {
		name  string
		prior [3]float64
		shift float64
		want  string // a feature that must be flagged
	}{
		{"mean shift of 0.5σ", uniformPrior, 0.5, "in[3]"},
		{"class frequencies", [3]float64{0.5, 0.25, 0.25}, 0, "out.class"},
	} {
		for trial := range 20 {
			w := ref.Empty(uint64(trial))
			if err := f.Observe(w, scenario(r, 500, c.prior, c.shift)); err != nil {
				t.Fatal(err)
			}
			res, err := Detect(ref, w, policy)
			if err != nil {
				t.Fatal(err)
			}
			if !res.Drifted() {
				t.Errorf("%s, trial %d: not detected: %s", c.name, trial, res.Reason)
				continue
			}
			if fr := res.Features[ref.Index(c.want)]; !fr.Drifted {
				t.Errorf("%s, trial %d: %s not flagged: %s", c.name, trial, c.want, res.Reason)
			}
			if trial == 0 {
				t.Logf("%s: %s", c.name, res.Reason)
			}
			if c.shift > 0 {
				for _, fr := range res.Features {
					if fr.Drifted && fr.Role == RoleOutput {
						t.Errorf("%s, trial %d: output %s flagged though input 3 does not reach the outputs", c.name, trial, fr.Name)
					}
				}
			}
		}
	}
}

// TestDetectsImageShift checks the image featurizer end to end: images of
// 28×28 pixels whose brightness rises by half the spread of the images'
// mean brightness are detected on the in.mean feature in a window of 200.
func TestDetectsImageShift(t *testing.T) {
	f, err := NewFeaturizer(FeaturizerConfig{InputShape: []int{1, 28, 28}, OutputShape: []int{10}, Outputs: OutputsLogits, ProjectionSeed: 5})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(31, 32))
	images := func(n int, shift float64) Batch {
		b := Batch{Input: make([]float32, 784*n), InputShape: []int{n, 1, 28, 28}, Output: make([]float32, 10*n), OutputShape: []int{n, 10}}
		for s := range n {
			bright := 0.5 + 0.1*r.NormFloat64() + 0.05*shift // the images' means spread by 0.1
			for i := range 784 {
				b.Input[784*s+i] = float32(bright + 0.2*r.NormFloat64())
			}
			for c := range 10 {
				b.Output[10*s+c] = float32(r.NormFloat64())
			}
		}
		return b
	}
	draft := f.NewProfile(0)
	data := images(4000, 0)
	_ = f.Observe(draft, data)
	ref, _ := draft.Binned(10, 1)
	_ = f.Observe(ref, data)
	policy := DefaultPolicy()
	for _, shift := range []float64{0, 1} {
		w := ref.Empty(7)
		if err := f.Observe(w, images(200, shift)); err != nil {
			t.Fatal(err)
		}
		res, err := Detect(ref, w, policy)
		if err != nil {
			t.Fatal(err)
		}
		if res.Tests != 21 {
			t.Errorf("%d tests, want 21 (mean, std, 8 projections, 10 probabilities, the class)", res.Tests)
		}
		flagged := res.Features[ref.Index("in.mean")].Drifted
		if flagged != (shift > 0) || res.Drifted() != (shift > 0) {
			t.Errorf("brightness shift %v: in.mean flagged %v, verdict %s: %s", shift, flagged, res.Verdict, res.Reason)
		}
	}
}

func TestDetectResult(t *testing.T) {
	f := scenarioFeaturizer(t)
	r := rand.New(rand.NewPCG(41, 42))
	ref := reference(t, f, r, 2000)
	policy := DefaultPolicy()

	// Too few values: insufficient data.
	w := ref.Empty(0)
	_ = f.Observe(w, scenario(r, 50, uniformPrior, 0))
	res, err := Detect(ref, w, policy)
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != VerdictInsufficient || res.Tests != 0 || !strings.Contains(res.Reason, "insufficient data") || res.Features[0].Skipped == "" {
		t.Errorf("50 samples: %s, %d tests: %s", res.Verdict, res.Tests, res.Reason)
	}

	// NaN and infinite inputs are counted, not tested.
	w = ref.Empty(0)
	b := scenario(r, 300, uniformPrior, 0)
	for s := range 40 {
		b.Input[4*s] = float32(math.NaN())
		b.Input[4*s+1] = float32(math.Inf(1))
		b.Output[3*s] = float32(math.NaN())
	}
	_ = f.Observe(w, b)
	res, err = Detect(ref, w, policy)
	if err != nil {
		t.Fatal(err)
	}
	fr := res.Features[0]
	if fr.N != 260 || fr.Invalid != 40 || res.Features[1].Invalid != 40 || res.Features[7].Invalid != 40 || res.Features[7].N != 260 {
		t.Errorf("in[0]: %d values, %d invalid; out.class %d invalid", fr.N, fr.Invalid, res.Features[7].Invalid)
	}
	if res.Verdict != VerdictNoDrift || !strings.Contains(res.Reason, "no drift in 8 features") {
		t.Errorf("%s: %s", res.Verdict, res.Reason)
	}
	for _, s := range fr.Scores {
		switch s.Test {
		case TestKS:
			if !(s.PValue >= 0 && s.PValue <= 1) || s.Adjusted != min(1, 8*s.PValue) {
				t.Errorf("KS p %v, corrected %v", s.PValue, s.Adjusted)
			}
		case TestPSI, TestWasserstein:
			if !math.IsNaN(s.PValue) || !(s.Statistic >= 0) {
				t.Errorf("%s: statistic %v, p %v", s.Test, s.Statistic, s.PValue)
			}
		}
	}

	// A draft reference (no histograms) gives no PSI of numeric features.
	draft := f.NewProfile(0)
	_ = f.Observe(draft, scenario(r, 500, uniformPrior, 0))
	w = draft.Empty(1)
	_ = f.Observe(w, scenario(r, 500, uniformPrior, 0))
	res, err = Detect(draft, w, policy)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Features[0].Scores {
		if s.Test == TestPSI {
			t.Error("PSI of a feature without a histogram")
		}
	}

	// Thresholds: a PSI threshold of 1e-9 flags every window.
	tight := DefaultPolicy()
	tight.PSIThreshold = 1e-9
	if res, _ := Detect(draft, w, tight); res.Verdict != VerdictDrift || !strings.Contains(res.Reason, "psi") {
		t.Errorf("PSI over its threshold: %s: %s", res.Verdict, res.Reason)
	}
}

func TestDetectErrors(t *testing.T) {
	f := scenarioFeaturizer(t)
	g, _ := NewFeaturizer(FeaturizerConfig{InputShape: []int{5}, OutputShape: []int{3}, Outputs: OutputsLogits})
	r := rand.New(rand.NewPCG(51, 52))
	ref := reference(t, f, r, 500)
	draft := f.NewProfile(0)
	for _, c := range []struct {
		name   string
		window *Profile
		policy func(p *Policy)
		want   string
	}{
		{"another model", g.NewProfile(0), nil, "input shape [5], want [4]"},
		{"other edges", draft, nil, `feature "in[0]" has other histogram edges`},
		{"alpha", ref.Empty(0), func(p *Policy) { p.Alpha = 1 }, "alpha 1"},
		{"correction", ref.Empty(0), func(p *Policy) { p.Correction = "holm" }, `unknown correction "holm"`},
		{"test", ref.Empty(0), func(p *Policy) { p.Categorical = []Test{TestKS} }, "not for categorical"},
		{"threshold", ref.Empty(0), func(p *Policy) { p.JSThreshold = -1 }, "threshold -1"},
		{"hysteresis", ref.Empty(0), func(p *Policy) { p.Hysteresis.Raise = -1 }, "must not be negative"},
		{"min samples", ref.Empty(0), func(p *Policy) { p.MinSamples = 0 }, "at least 1"},
	} {
		policy := DefaultPolicy()
		if c.policy != nil {
			c.policy(&policy)
		}
		if _, err := Detect(ref, c.window, policy); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
}

func TestHysteresis(t *testing.T) {
	t0 := time.Unix(0, 0)
	D, N, I := VerdictDrift, VerdictNoDrift, VerdictInsufficient
	for _, c := range []struct {
		name     string
		h        Hysteresis
		verdicts []Verdict
		want     []bool // Active after each window; windows close a minute apart
	}{
		{"raise at once", Hysteresis{}, []Verdict{N, D, N, D}, []bool{false, true, false, true}},
		{"raise after two", Hysteresis{Raise: 2, Clear: 1}, []Verdict{D, N, D, D, N}, []bool{false, false, false, true, false}},
		{"clear after three", Hysteresis{Raise: 1, Clear: 3}, []Verdict{D, N, N, D, N, N, N}, []bool{true, true, true, true, true, true, false}},
		{"insufficient data neither extends nor breaks a run", Hysteresis{Raise: 2}, []Verdict{D, I, D, I, N}, []bool{false, false, true, true, false}},
		{"cooldown", Hysteresis{Cooldown: 150 * time.Second}, []Verdict{D, N, N, N, D, D}, []bool{true, true, true, false, false, false}},
	} {
		var a Alarm
		for i, v := range c.verdicts {
			a = c.h.Step(a, v, t0.Add(time.Duration(i)*time.Minute))
			if a.Active != c.want[i] {
				t.Errorf("%s: window %d (%s): active %v, want %v", c.name, i, v, a.Active, c.want[i])
			}
		}
	}
}

// TestDetector checks that one Detector, used for window after window,
// answers as Detect does for each, and that its KS statistics are those of
// the summaries' own sketches.
func TestDetector(t *testing.T) {
	f := scenarioFeaturizer(t)
	r := rand.New(rand.NewPCG(61, 62))
	ref := reference(t, f, r, 3000)
	for _, policy := range []Policy{DefaultPolicy(), func() Policy {
		p := DefaultPolicy()
		p.Numeric = []Test{TestPSI}
		return p
	}()} {
		d, err := NewDetector(ref, policy)
		if err != nil {
			t.Fatal(err)
		}
		for i, shift := range []float64{0, 1, 0} {
			win := ref.Empty(uint64(i))
			if err := f.Observe(win, scenario(r, 800, uniformPrior, shift)); err != nil {
				t.Fatal(err)
			}
			got, err := d.Detect(win)
			if err != nil {
				t.Fatal(err)
			}
			want, err := Detect(ref, win, policy)
			if err != nil {
				t.Fatal(err)
			}
			// Printed, as NaN is not equal to itself.
			if g, w := fmt.Sprintf("%+v", got), fmt.Sprintf("%+v", want); g != w {
				t.Errorf("window %d: Detector.Detect %s, Detect %s", i, g, w)
			}
			for k, fr := range got.Features {
				for _, s := range fr.Scores {
					if s.Test != TestKS {
						continue
					}
					ks, err := KSFromSummaries(ref.Numeric(k), win.Numeric(k))
					if err != nil {
						t.Fatal(err)
					}
					if s.Statistic != ks.Statistic {
						t.Errorf("window %d, %s: KS %v, from the summaries %v", i, fr.Name, s.Statistic, ks.Statistic)
					}
				}
			}
		}
	}
	if _, err := NewDetector(ref, Policy{}); err == nil {
		t.Error("NewDetector accepts an invalid policy")
	}
}
