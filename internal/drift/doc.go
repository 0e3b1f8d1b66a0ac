// Package drift holds the statistics of drift monitoring at the edge: the
// tests that compare what a model sees or answers now with a reference.
// It is pure: no I/O and no clock.
//
// The statistics match SciPy 1.10 (Debian's python3-scipy) on exact
// inputs, p-values included, to 1e-9 (relative for p-values, so tiny ones
// too); the tests run SciPy to show it:
//
//   - KolmogorovSmirnov is ks_2samp(a, b): exact p-values up to 10,000
//     values a sample, Smirnov's asymptotic kstwo.sf(D, round(n1n2/(n1+n2)))
//     beyond; KolmogorovSF is kstwo.sf, with each of SciPy's methods.
//   - ChiSquare is chisquare(observed, expected); ChiSquareHomogeneity is
//     chi2_contingency of a 2×k table, with Yates' correction at one
//     degree of freedom, where categories empty on both sides are dropped
//     (SciPy refuses them). P-values come from GammaQ, the regularized
//     upper incomplete gamma function (gammaincc).
//   - PSI is Σ (p-q)·ln(p/q) with PSIEpsilon for empty bins.
//   - Wasserstein and WassersteinWeighted are wasserstein_distance.
//   - JensenShannon and JensenShannonBase are
//     scipy.spatial.distance.jensenshannon.
//
// Testing many features at once needs a correction: Bonferroni or
// Benjamini–Hochberg (Correction).
package drift
