package drift

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Test names a drift test of one feature.
type Test string

const (
	// TestKS is the two-sample Kolmogorov–Smirnov test of a numeric
	// feature, from the reference's and the window's sketches
	// (KSFromSummaries): a p-value.
	TestKS Test = "ks"
	// TestChiSquare is Pearson's χ² test of homogeneity of the reference's
	// and the window's counts (ChiSquareHomogeneity): of the classes and
	// the other bucket for a categorical feature, of the histogram's bins
	// for a numeric one. A p-value.
	TestChiSquare Test = "chi-square"
	// TestPSI is the population stability index of the same counts: a
	// statistic compared with Policy.PSIThreshold.
	TestPSI Test = "psi"
	// TestJS is the Jensen–Shannon distance (natural logarithms) of the
	// same counts: a statistic compared with Policy.JSThreshold.
	TestJS Test = "jensen-shannon"
	// TestWasserstein is the first Wasserstein distance of a numeric
	// feature, from the sketches (WassersteinFromSummaries), in the
	// feature's units; it is compared with Policy.WassersteinThreshold
	// times the reference's standard deviation.
	TestWasserstein Test = "wasserstein"
)

// Policy says how Detect decides whether a window drifted from the
// reference.
type Policy struct {
	// Alpha is the level at which the p-value tests reject, after the
	// correction across all of them (every feature's): 0 < Alpha < 1.
	Alpha float64
	// Correction corrects the p-values of all features' tests together.
	Correction Correction
	// MinSamples is the fewest valid values a feature must have in the
	// window (and in the reference) to be tested.
	MinSamples uint64
	// Numeric and Categorical are the tests run on each kind of feature.
	Numeric, Categorical []Test
	// PSIThreshold, when positive, makes a PSI above it drift. PSI grows
	// with the number of bins over the window's size when nothing drifts
	// (about (bins-1)/n), so it suits windows much larger than the bins.
	PSIThreshold float64
	// JSThreshold, when positive, makes a Jensen–Shannon distance above it
	// drift.
	JSThreshold float64
	// WassersteinThreshold, when positive, makes a Wasserstein distance
	// above it times the reference's standard deviation drift.
	WassersteinThreshold float64
	// Hysteresis turns the windows' verdicts into an alarm (Step).
	Hysteresis Hysteresis
}

// DefaultPolicy returns the policy used unless configured otherwise: the
// KS test (numeric) and the χ² test (categorical) at α = 0.01 with the
// Bonferroni correction, PSI over 0.25 as drift, the Jensen–Shannon and
// Wasserstein distances reported, at least 100 values per feature, and an
// alarm raised by one drifted window and cleared by three clean ones.
func DefaultPolicy() Policy {
	return Policy{
		Alpha:        0.01,
		Correction:   Bonferroni,
		MinSamples:   100,
		Numeric:      []Test{TestKS, TestPSI, TestWasserstein},
		Categorical:  []Test{TestChiSquare, TestPSI, TestJS},
		PSIThreshold: 0.25,
		Hysteresis:   Hysteresis{Raise: 1, Clear: 3},
	}
}

// Validate checks the policy.
func (p Policy) Validate() error {
	if !(p.Alpha > 0 && p.Alpha < 1) {
		return fmt.Errorf("policy: alpha %v, want 0 < alpha < 1", p.Alpha)
	}
	if _, err := p.Correction.Adjust(nil); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if p.MinSamples < 1 {
		return errors.New("policy: min samples must be at least 1")
	}
	for _, t := range p.Numeric {
		if t != TestKS && t != TestChiSquare && t != TestPSI && t != TestJS && t != TestWasserstein {
			return fmt.Errorf("policy: unknown numeric test %q", t)
		}
	}
	for _, t := range p.Categorical {
		if t != TestChiSquare && t != TestPSI && t != TestJS {
			return fmt.Errorf("policy: test %q is not for categorical features", t)
		}
	}
	if err := p.Hysteresis.Validate(); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	for _, th := range []float64{p.PSIThreshold, p.JSThreshold, p.WassersteinThreshold} {
		if !(th >= 0) || math.IsInf(th, 0) {
			return fmt.Errorf("policy: threshold %v, want finite and non-negative", th)
		}
	}
	return nil
}

// Verdict is Detect's overall answer for a window.
type Verdict string

const (
	// VerdictDrift: at least one feature drifted.
	VerdictDrift Verdict = "drift"
	// VerdictNoDrift: features were tested and none drifted.
	VerdictNoDrift Verdict = "no-drift"
	// VerdictInsufficient: no feature had enough values to be tested.
	VerdictInsufficient Verdict = "insufficient-data"
)

// Score is the outcome of one test of one feature.
type Score struct {
	// Test is the test.
	Test Test
	// Statistic is the test's statistic: D, χ², PSI, the Jensen–Shannon or
	// the Wasserstein distance.
	Statistic float64
	// Bound bounds the error of a Statistic computed from sketches (D and
	// the Wasserstein distance); 0 when it is exact.
	Bound float64
	// PValue is the test's p-value, and Adjusted the p-value after the
	// correction; both NaN for a threshold test.
	PValue, Adjusted float64
	// Drifted reports whether this test says the feature drifted.
	Drifted bool
}

// FeatureResult is Detect's answer for one feature.
type FeatureResult struct {
	Name string
	Role Role
	Kind Kind
	// N is the number of valid values in the window, and Invalid the
	// number of NaN and ±Inf values (or invalid class codes), which no
	// test sees.
	N, Invalid uint64
	// Skipped says why the feature was not tested; empty when it was.
	Skipped string
	// Scores are the tests' outcomes.
	Scores []Score
	// Drifted reports whether any test says the feature drifted.
	Drifted bool
}

// Result is Detect's answer for a window.
type Result struct {
	// Verdict is the overall answer, and Reason says why in words.
	Verdict Verdict
	Reason  string
	// Tests is the number of p-values corrected together.
	Tests int
	// Features are the per-feature answers, in the spec's order.
	Features []FeatureResult
}

// Drifted reports whether the verdict is drift.
func (r Result) Drifted() bool { return r.Verdict == VerdictDrift }

// Detect compares a window's profile with the reference's under policy:
// it runs the policy's tests on every feature with enough values, corrects
// all their p-values together, and marks as drifted each feature where a
// corrected p-value is at or below Alpha or a statistic is above its
// threshold. The window drifted when any feature did. It returns an error
// for incompatible profiles or an invalid policy.
func Detect(reference, window *Profile, policy Policy) (Result, error) {
	d, err := NewDetector(reference, policy)
	if err != nil {
		return Result{}, err
	}
	return d.Detect(window)
}

// Detector runs Detect against one reference under one policy, for
// window after window: it works out once what Detect would from the
// reference for each window, its sketches' values in order. It is safe
// for concurrent use; the reference must not change while it is in use.
type Detector struct {
	ref    *Profile
	policy Policy
	// sorted holds the reference's numeric sketches in order, by
	// feature, when the policy has a test that sweeps them.
	sorted []sortedSketch
}

// NewDetector returns the Detector of reference under policy, or an
// error for an invalid policy.
func NewDetector(reference *Profile, policy Policy) (*Detector, error) {
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	d := &Detector{ref: reference, policy: policy}
	if slices.Contains(policy.Numeric, TestKS) || slices.Contains(policy.Numeric, TestWasserstein) {
		d.sorted = make([]sortedSketch, len(reference.num))
		for i, n := range reference.num {
			if n != nil && n.Count() >= policy.MinSamples {
				d.sorted[i] = n.sketch.sorted()
			}
		}
	}
	return d, nil
}

// Detect is Detect of the detector's reference, a window and its policy.
func (d *Detector) Detect(window *Profile) (Result, error) {
	reference, policy := d.ref, d.policy
	if err := reference.Compatible(window); err != nil {
		return Result{}, err
	}
	res := Result{Features: make([]FeatureResult, len(reference.spec.Features))}
	type ref struct{ feature, score int }
	var pvals []float64
	var refs []ref
	for i, f := range reference.spec.Features {
		fr := FeatureResult{Name: f.Name, Role: f.Role, Kind: f.Kind}
		var err error
		if f.Kind == KindNumeric {
			err = d.numericScores(&fr, i, window.num[i])
		} else {
			err = categoricalScores(&fr, reference.cat[i], window.cat[i], policy)
		}
		if err != nil {
			return Result{}, fmt.Errorf("feature %q: %w", f.Name, err)
		}
		for j, s := range fr.Scores {
			if !math.IsNaN(s.PValue) {
				pvals = append(pvals, s.PValue)
				refs = append(refs, ref{i, j})
			}
		}
		res.Features[i] = fr
	}
	adj, err := policy.Correction.Adjust(pvals)
	if err != nil {
		return Result{}, err
	}
	for k, r := range refs {
		s := &res.Features[r.feature].Scores[r.score]
		s.Adjusted = adj[k]
		s.Drifted = adj[k] <= policy.Alpha
	}
	res.Tests = len(pvals)
	tested, drifted := 0, 0
	for i := range res.Features {
		fr := &res.Features[i]
		if fr.Skipped != "" {
			continue
		}
		tested++
		for _, s := range fr.Scores {
			fr.Drifted = fr.Drifted || s.Drifted
		}
		if fr.Drifted {
			drifted++
		}
	}
	switch {
	case tested == 0:
		res.Verdict = VerdictInsufficient
	case drifted > 0:
		res.Verdict = VerdictDrift
	default:
		res.Verdict = VerdictNoDrift
	}
	res.Reason = reason(res, tested, drifted, policy)
	return res, nil
}

// numericScores tests numeric feature i of a window.
func (d *Detector) numericScores(fr *FeatureResult, i int, win *Numeric) error {
	ref, p := d.ref.num[i], d.policy
	fr.N, fr.Invalid = win.Count(), win.nan+win.posInf+win.negInf
	if win.Count() < p.MinSamples || ref.Count() < p.MinSamples {
		fr.Skipped = fmt.Sprintf("%d values in the window and %d in the reference, fewer than %d", win.Count(), ref.Count(), p.MinSamples)
		return nil
	}
	nan := math.NaN()
	var ks, w1 float64
	if slices.Contains(p.Numeric, TestKS) || slices.Contains(p.Numeric, TestWasserstein) {
		ks, w1 = sortedDistances(d.sorted[i], win.sketch.sorted())
	}
	bound := summaryBound(ref, win)
	for _, t := range p.Numeric {
		s := Score{Test: t, PValue: nan, Adjusted: nan}
		switch t {
		case TestKS:
			s.Statistic, s.Bound = ks, bound
			s.PValue = ksAsymptotic(int(min(ref.count, math.MaxInt32)), int(min(win.count, math.MaxInt32)), ks)
		case TestWasserstein:
			s.Statistic = w1
			s.Bound = bound * (max(ref.max, win.max) - min(ref.min, win.min))
			if sd := ref.StdDev(); p.WassersteinThreshold > 0 && sd > 0 {
				s.Drifted = w1 > p.WassersteinThreshold*sd
			}
		default:
			if len(ref.hist) == 0 {
				continue // no histogram: a draft reference
			}
			if err := countScore(&s, ref.hist, win.hist, p); err != nil {
				return err
			}
		}
		fr.Scores = append(fr.Scores, s)
	}
	return nil
}

func categoricalScores(fr *FeatureResult, ref, win *Categorical, p Policy) error {
	fr.N, fr.Invalid = win.Count(), win.invalid
	if win.Count() < p.MinSamples || ref.Count() < p.MinSamples {
		fr.Skipped = fmt.Sprintf("%d values in the window and %d in the reference, fewer than %d", win.Count(), ref.Count(), p.MinSamples)
		return nil
	}
	nan := math.NaN()
	rc := append(slices.Clone(ref.counts), ref.other)
	wc := append(slices.Clone(win.counts), win.other)
	for _, t := range p.Categorical {
		s := Score{Test: t, PValue: nan, Adjusted: nan}
		if err := countScore(&s, rc, wc, p); err != nil {
			return err
		}
		fr.Scores = append(fr.Scores, s)
	}
	return nil
}

// countScore runs a test of two count vectors.
func countScore(s *Score, ref, win []uint64, p Policy) error {
	a, b := make([]float64, len(ref)), make([]float64, len(win))
	for i := range ref {
		a[i], b[i] = float64(ref[i]), float64(win[i])
	}
	switch s.Test {
	case TestChiSquare:
		r, err := ChiSquareHomogeneity(a, b)
		if err != nil {
			return err
		}
		s.Statistic, s.PValue = r.Statistic, r.PValue
	case TestPSI:
		v, err := PSI(a, b)
		if err != nil {
			return err
		}
		s.Statistic = v
		s.Drifted = p.PSIThreshold > 0 && v > p.PSIThreshold
	case TestJS:
		v, err := JensenShannon(a, b)
		if err != nil {
			return err
		}
		s.Statistic = v
		s.Drifted = p.JSThreshold > 0 && v > p.JSThreshold
	}
	return nil
}

// reason says in words why the verdict is what it is.
func reason(r Result, tested, drifted int, p Policy) string {
	switch r.Verdict {
	case VerdictInsufficient:
		return fmt.Sprintf("insufficient data: no feature has %d values", p.MinSamples)
	case VerdictDrift:
		var parts []string
		for _, f := range r.Features {
			if !f.Drifted {
				continue
			}
			if len(parts) == 3 {
				parts = append(parts, fmt.Sprintf("and %d more", drifted-3))
				break
			}
			var why []string
			for _, s := range f.Scores {
				if !s.Drifted {
					continue
				}
				if math.IsNaN(s.PValue) {
					why = append(why, fmt.Sprintf("%s %.3g", s.Test, s.Statistic))
				} else {
					why = append(why, fmt.Sprintf("%s p=%.3g, corrected %.3g", s.Test, s.PValue, s.Adjusted))
				}
			}
			parts = append(parts, fmt.Sprintf("%s (%s)", f.Name, strings.Join(why, "; ")))
		}
		return fmt.Sprintf("drift in %d of %d features tested (%s at alpha %g): %s",
			drifted, tested, p.Correction, p.Alpha, strings.Join(parts, ", "))
	}
	best, bestName := math.Inf(1), ""
	for _, f := range r.Features {
		for _, s := range f.Scores {
			if !math.IsNaN(s.Adjusted) && s.Adjusted < best {
				best, bestName = s.Adjusted, f.Name
			}
		}
	}
	if bestName == "" {
		return fmt.Sprintf("no drift in %d features tested", tested)
	}
	return fmt.Sprintf("no drift in %d features tested (%s at alpha %g; smallest corrected p-value %.3g, %s)",
		tested, p.Correction, p.Alpha, best, bestName)
}
