package drift

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// maxEdges bounds the number of histogram edges a summary may have.
const maxEdges = 1024

// NumericConfig configures a Numeric summary.
type NumericConfig struct {
	// Edges are the histogram's edges, strictly increasing and finite; none
	// means no histogram. QuantileEdges chooses them from a reference.
	Edges []float64
	// SketchK is the quantile sketch's size parameter; 0 means
	// DefaultSketchK.
	SketchK int
	// Seed seeds the sketch's coins.
	Seed uint64
}

// Numeric summarises the values of one numeric feature: how many were
// finite, NaN, +Inf and -Inf; the finite ones' minimum, maximum, mean and
// sum of squared deviations (Welford's update; Chan et al.'s merge); a
// histogram over fixed edges; and a quantile sketch. NaN and ±Inf are
// counted and otherwise left out. The histogram has len(Edges)+1 bins:
// bin 0 counts x < Edges[0], bin i counts Edges[i-1] ≤ x < Edges[i], and
// the last counts x ≥ Edges[len-1].
//
// Merge of two summaries equals the summary of the union of their values:
// exactly for the counts, minimum, maximum and histogram, to rounding
// (about 1e-15 relative) for the mean and the sum of squares, and within
// the sketch's bound for quantiles. A Numeric is not safe for concurrent
// use.
type Numeric struct {
	count          uint64
	nan            uint64
	posInf, negInf uint64
	min, max       float64
	mean, m2       float64
	edges          []float64
	hist           []uint64
	sketch         Sketch
}

// NewNumeric returns an empty summary.
func NewNumeric(cfg NumericConfig) (*Numeric, error) {
	if err := validateEdges(cfg.Edges); err != nil {
		return nil, fmt.Errorf("numeric: %w", err)
	}
	k := cfg.SketchK
	if k == 0 {
		k = DefaultSketchK
	}
	if k < minSketchK || k > maxSketchK {
		return nil, fmt.Errorf("numeric: sketch k %d out of range [%d, %d]", k, minSketchK, maxSketchK)
	}
	n := &Numeric{}
	n.reset(cfg.Edges, k, cfg.Seed)
	return n, nil
}

// reset makes n an empty summary with valid edges and sketch size.
func (n *Numeric) reset(edges []float64, k int, seed uint64) {
	*n = Numeric{min: math.Inf(1), max: math.Inf(-1)}
	if len(edges) > 0 {
		n.edges = slices.Clone(edges)
		n.hist = make([]uint64, len(edges)+1)
	}
	n.sketch.reset(k, seed)
}

func validateEdges(edges []float64) error {
	if len(edges) > maxEdges {
		return fmt.Errorf("%d histogram edges, at most %d", len(edges), maxEdges)
	}
	for i, e := range edges {
		if math.IsNaN(e) || math.IsInf(e, 0) {
			return fmt.Errorf("histogram edge %d is %v, want a finite value", i, e)
		}
		if i > 0 && !(e > edges[i-1]) {
			return fmt.Errorf("histogram edges must increase strictly: edge %d (%v) after %v", i, e, edges[i-1])
		}
	}
	return nil
}

// Add adds one value. It does not allocate, but for the sketch's rare
// growth (see Sketch).
func (n *Numeric) Add(x float64) {
	switch {
	case math.IsNaN(x):
		n.nan++
		return
	case math.IsInf(x, 1):
		n.posInf++
		return
	case math.IsInf(x, -1):
		n.negInf++
		return
	}
	n.count++
	d := x - n.mean
	n.mean += d / float64(n.count)
	n.m2 += d * (x - n.mean)
	n.min = min(n.min, x)
	n.max = max(n.max, x)
	if n.hist != nil {
		n.hist[binOf(n.edges, x)]++
	}
	n.sketch.Add(x)
}

// binOf returns the histogram bin of x: the number of edges ≤ x.
func binOf(edges []float64, x float64) int {
	lo, hi := 0, len(edges)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if edges[m] <= x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// Count returns the number of finite values added.
func (n *Numeric) Count() uint64 { return n.count }

// NaN returns the number of NaN values added.
func (n *Numeric) NaN() uint64 { return n.nan }

// PosInf returns the number of +Inf values added.
func (n *Numeric) PosInf() uint64 { return n.posInf }

// NegInf returns the number of -Inf values added.
func (n *Numeric) NegInf() uint64 { return n.negInf }

// Total returns the number of values added, finite or not.
func (n *Numeric) Total() uint64 { return n.count + n.nan + n.posInf + n.negInf }

// Min returns the smallest finite value, or NaN when there is none.
func (n *Numeric) Min() float64 {
	if n.count == 0 {
		return math.NaN()
	}
	return n.min
}

// Max returns the largest finite value, or NaN when there is none.
func (n *Numeric) Max() float64 {
	if n.count == 0 {
		return math.NaN()
	}
	return n.max
}

// Mean returns the finite values' mean, or NaN when there is none.
func (n *Numeric) Mean() float64 {
	if n.count == 0 {
		return math.NaN()
	}
	return n.mean
}

// Variance returns the finite values' sample variance (divided by
// Count-1), or NaN for fewer than two.
func (n *Numeric) Variance() float64 {
	if n.count < 2 {
		return math.NaN()
	}
	return n.m2 / float64(n.count-1)
}

// StdDev returns the square root of Variance.
func (n *Numeric) StdDev() float64 { return math.Sqrt(n.Variance()) }

// Edges returns the histogram's edges; the caller must not modify them.
func (n *Numeric) Edges() []float64 { return n.edges }

// Histogram returns a copy of the histogram's counts (len(Edges)+1 bins),
// or nil without edges.
func (n *Numeric) Histogram() []uint64 { return slices.Clone(n.hist) }

// Sketch returns the quantile sketch; the caller must not modify it.
func (n *Numeric) Sketch() *Sketch { return &n.sketch }

// Quantile returns the q-quantile of the finite values, for q in [0, 1],
// from the sketch (within its Sketch.RankError); the minimum and maximum for 0
// and 1. It returns NaN without finite values or for q outside [0, 1].
func (n *Numeric) Quantile(q float64) float64 {
	switch {
	case n.count == 0 || !(q >= 0 && q <= 1):
		return math.NaN()
	case q == 0:
		return n.min
	case q == 1:
		return n.max
	}
	return min(max(n.sketch.Quantile(q), n.min), n.max)
}

// Merge adds the values summarised by o to n. Both must have the same
// histogram edges and sketch size; n is unchanged when they do not.
func (n *Numeric) Merge(o *Numeric) error {
	if !slices.Equal(n.edges, o.edges) {
		return errors.New("numeric: cannot merge summaries with different histogram edges")
	}
	if err := n.sketch.Merge(&o.sketch); err != nil {
		return fmt.Errorf("numeric: %w", err)
	}
	n.nan += o.nan
	n.posInf += o.posInf
	n.negInf += o.negInf
	for i, c := range o.hist {
		n.hist[i] += c
	}
	if o.count == 0 {
		return nil
	}
	if n.count == 0 {
		n.count, n.mean, n.m2, n.min, n.max = o.count, o.mean, o.m2, o.min, o.max
		return nil
	}
	na, nb := float64(n.count), float64(o.count)
	total := na + nb
	d := o.mean - n.mean
	n.mean += d * nb / total
	n.m2 += o.m2 + d*d*na*nb/total
	n.count += o.count
	n.min = min(n.min, o.min)
	n.max = max(n.max, o.max)
	return nil
}

// Clone returns a deep copy of n.
func (n *Numeric) Clone() *Numeric {
	c := *n
	c.edges = slices.Clone(n.edges)
	c.hist = slices.Clone(n.hist)
	c.sketch = n.sketch.clone()
	return &c
}

// Empty returns an empty summary with n's edges and sketch size, its
// sketch seeded by seed.
func (n *Numeric) Empty(seed uint64) *Numeric {
	e := &Numeric{}
	e.reset(n.edges, n.sketch.k, seed)
	return e
}

// QuantileEdges returns histogram edges for bins equal-mass bins of the
// values n summarises, with an underflow and an overflow bin around them:
// the minimum, the quantiles i/bins for 0 < i < bins (from the sketch), and
// the next float64 above the maximum, duplicates removed (so discrete
// values may give fewer bins). It returns nil when n has no finite value.
func QuantileEdges(n *Numeric, bins int) []float64 {
	if n.count == 0 || bins < 1 {
		return nil
	}
	edges := []float64{n.min}
	for i := 1; i < bins; i++ {
		q := n.Quantile(float64(i) / float64(bins))
		if q > edges[len(edges)-1] {
			edges = append(edges, q)
		}
	}
	if top := math.Nextafter(n.max, math.Inf(1)); top > edges[len(edges)-1] && !math.IsInf(top, 0) {
		edges = append(edges, top)
	}
	return edges
}

// validate checks a decoded summary's invariants.
func (n *Numeric) validate() error {
	if err := validateEdges(n.edges); err != nil {
		return err
	}
	if len(n.edges) > 0 && len(n.hist) != len(n.edges)+1 {
		return fmt.Errorf("%d histogram bins for %d edges, want %d", len(n.hist), len(n.edges), len(n.edges)+1)
	}
	if len(n.edges) == 0 && len(n.hist) != 0 {
		return errors.New("histogram counts without edges")
	}
	if len(n.hist) > 0 {
		var sum uint64
		for _, c := range n.hist {
			if sum+c < sum {
				return errors.New("histogram counts overflow")
			}
			sum += c
		}
		if sum != n.count {
			return fmt.Errorf("histogram counts add up to %d, but count is %d", sum, n.count)
		}
	}
	if t := n.count + n.nan; t < n.count || t+n.posInf < t || t+n.posInf+n.negInf < t+n.posInf {
		return errors.New("counts overflow")
	}
	if err := n.sketch.validate(); err != nil {
		return fmt.Errorf("sketch: %w", err)
	}
	if n.sketch.n != n.count {
		return fmt.Errorf("sketch holds %d values, but count is %d", n.sketch.n, n.count)
	}
	if n.count == 0 {
		if n.mean != 0 || n.m2 != 0 {
			return errors.New("moments of no values must be 0")
		}
		return nil
	}
	for _, v := range [4]float64{n.min, n.max, n.mean, n.m2} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("min, max, mean and m2 must be finite")
		}
	}
	if n.min > n.max {
		return fmt.Errorf("min %v above max %v", n.min, n.max)
	}
	if n.m2 < 0 {
		return fmt.Errorf("m2 %v is negative", n.m2)
	}
	for _, l := range n.sketch.levels {
		for _, v := range l {
			if v < n.min || v > n.max {
				return fmt.Errorf("sketch value %v outside [min, max] = [%v, %v]", v, n.min, n.max)
			}
		}
	}
	if len(n.hist) > 0 {
		// Values below the first edge exist only if min is below it, and so on.
		if n.hist[0] > 0 && !(n.min < n.edges[0]) || n.hist[len(n.hist)-1] > 0 && !(n.max >= n.edges[len(n.edges)-1]) {
			return errors.New("histogram counts outside [min, max]")
		}
	}
	return nil
}
