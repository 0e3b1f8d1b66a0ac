// Package drift holds the statistics of drift monitoring at the edge:
// summaries of what a model sees and answers, the tests that compare a
// window of them with a reference, and the decision whether the model's
// inputs or outputs drifted. It is pure: no I/O and no clock (times are
// passed in), so the serving hooks, the agent and the hub share it and its
// tests call it directly.
//
// # Summaries
//
// A Profile summarises a model's monitored features over a set of samples:
// the reference the hub distributes, or one window at the edge. Each
// numeric feature has a Numeric: counts of finite, NaN, +Inf and -Inf
// values (only finite ones enter the rest), minimum, maximum, mean and sum
// of squared deviations (Welford; Chan et al. to merge), a histogram over
// fixed edges (chosen from the reference's quantiles, with underflow and
// overflow bins; a window uses the reference's edges), and a KLL quantile
// Sketch. Each categorical feature (a predicted class, or a categorical
// input) has a Categorical: counts per class code below a cap, an "other"
// bucket and a count of invalid values. Every summary merges: the merge of
// two equals the summary of their union, exactly for counts and histograms,
// to rounding for the moments, within the sketch's bound for quantiles.
// Profiles, Numerics and Categoricals encode as JSON with a version
// (EncodingVersion); decoding checks every invariant and says what is
// wrong with a malformed encoding.
//
// A Featurizer turns a model's float32 tensors into features, without
// allocating: each element of a small input (at most 64) or, for
// image-sized inputs, each sample's mean, standard deviation and a few
// fixed random projections (signs drawn from a seeded splitmix64, so that
// hub and edge agree) instead of hundreds of noisy pixel tests; of the
// outputs, each class's probability (a softmax applied to logits) and the
// predicted class, the black-box shift detection of Lipton et al. (2018)
// and Rabanser et al. (2019). The profile's Spec records the shapes and
// the featurizer, and Compatible refuses a profile of another model.
//
// # Tests
//
// The statistics are functions of two samples, or of two summaries, and
// match SciPy 1.10 (Debian's python3-scipy) on exact inputs, p-values
// included, to 1e-9 (relative for p-values, so tiny ones too; the tests
// run SciPy):
//
//   - KolmogorovSmirnov is ks_2samp(a, b): exact p-values up to 10,000
//     values a sample, Smirnov's asymptotic kstwo.sf(D, round(n1n2/(n1+n2)))
//     beyond; KolmogorovSF is kstwo.sf, with each of SciPy's methods.
//     KSFromSummaries takes D from two sketches, with the asymptotic
//     p-value and an error bound on D.
//   - ChiSquare is chisquare(observed, expected); ChiSquareHomogeneity is
//     chi2_contingency of a 2×k table, with Yates' correction at one
//     degree of freedom, where categories empty on both sides are dropped
//     (SciPy refuses them). P-values come from GammaQ, the regularized
//     upper incomplete gamma function (gammaincc).
//   - PSI is Σ (p-q)·ln(p/q) with PSIEpsilon for empty bins.
//   - Wasserstein and WassersteinWeighted are wasserstein_distance;
//     WassersteinFromSummaries works on two sketches, with a bound.
//   - JensenShannon and JensenShannonBase are
//     scipy.spatial.distance.jensenshannon.
//
// Testing every feature at once needs a correction: Bonferroni (m·p, which
// keeps the chance of any false alarm at or under α whatever the tests'
// dependence) or Benjamini–Hochberg (which keeps the expected share of
// false alarms at or under α, and, when nothing drifts, the chance of any
// false alarm too, for independent or positively dependent tests).
//
// # Error bounds
//
// A Sketch is exact while it holds fewer than k values (DefaultSketchK,
// 512). Beyond, the error of one rank or quantile query exceeds
// Sketch.RankError(δ) with probability at most δ, and that of the whole
// distribution function exceeds Sketch.UniformRankError(δ) with
// probability at most δ; for 10^6 values these are about 1.3% (δ = 10^-6)
// and 1.4% (δ = 10^-3), the largest measured error about 0.4%. Statistics
// from summaries carry a bound that holds with probability
// 1 - SummaryDelta: D within the sum of the two sketches' uniform bounds,
// the Wasserstein distance within that times the values' span.
//
// # Windows and detection
//
// A Windower cuts the samples a featurizer sees into tumbling windows that
// close after a number of samples or a duration of the times passed in,
// whichever first, and Close closes the open window early, for a monitor
// that stops; adjacent windows merge into coarser ones (MergeWindows).
// Detect compares a window with the reference under a Policy (which tests
// per kind of feature, the fewest values to test, α after the correction,
// PSI, Jensen–Shannon and Wasserstein thresholds) and returns every
// feature's statistics and p-values and a verdict with its reason. A
// Hysteresis turns verdicts into an alarm (Alarm, Step): raised after K
// drifted windows in a row, cleared after L clean ones, at most once per
// cooldown.
//
// What the tests show: over 1,000 windows of 500 samples without drift
// (four inputs and three classes, eight features), drift verdicts stay
// under α with either correction, and alarms that need two drifted windows
// in a row rarer still. With windows of 500 samples, α = 0.01 and
// Bonferroni, a shift of one input's mean by 0.5σ, and a change of class
// frequencies from (⅓, ⅓, ⅓) to (½, ¼, ¼), are detected in the first
// window after the change; an image brightness shift of half the spread of
// the images' means is detected in a window of 200 on the mean feature.
//
// Building a reference takes two passes over the reference data: the first
// into Featurizer.NewProfile, the second into Profile.Binned of it, whose
// histograms have edges at the first pass's quantiles. Windows are
// Profile.Empty copies of the reference.
package drift
