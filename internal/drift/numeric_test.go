package drift

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestNumericAdd(t *testing.T) {
	n, err := NewNumeric(NumericConfig{Edges: []float64{0, 1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []float64{-1, 0, 0.5, 1, 1.5, 2, 7, math.NaN(), math.Inf(1), math.Inf(-1), math.NaN()} {
		n.Add(x)
	}
	if n.Count() != 7 || n.NaN() != 2 || n.PosInf() != 1 || n.NegInf() != 1 || n.Total() != 11 {
		t.Errorf("counts %d finite, %d NaN, %d +Inf, %d -Inf", n.Count(), n.NaN(), n.PosInf(), n.NegInf())
	}
	// Bins: x < 0, [0, 1), [1, 2), x ≥ 2.
	if h := n.Histogram(); !slices.Equal(h, []uint64{1, 2, 2, 2}) {
		t.Errorf("histogram %v, want [1 2 2 2]", h)
	}
	vals := []float64{-1, 0, 0.5, 1, 1.5, 2, 7}
	mean, ss := 0.0, 0.0
	for _, x := range vals {
		mean += x / 7
	}
	for _, x := range vals {
		ss += (x - mean) * (x - mean)
	}
	if math.Abs(n.Mean()-mean) > 1e-15 || math.Abs(n.Variance()-ss/6) > 1e-14 {
		t.Errorf("mean %v variance %v, want %v %v", n.Mean(), n.Variance(), mean, ss/6)
	}
	if n.Min() != -1 || n.Max() != 7 || n.Quantile(0) != -1 || n.Quantile(1) != 7 || n.Quantile(0.5) != 1 {
		t.Errorf("min %v max %v median %v", n.Min(), n.Max(), n.Quantile(0.5))
	}
	e, _ := NewNumeric(NumericConfig{})
	for _, v := range []float64{e.Min(), e.Max(), e.Mean(), e.Variance(), e.Quantile(0.5)} {
		if !math.IsNaN(v) {
			t.Errorf("empty summary gives %v, want NaN", v)
		}
	}
}

func TestNumericConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  NumericConfig
		want string
	}{
		{NumericConfig{Edges: []float64{1, 1}}, "increase strictly"},
		{NumericConfig{Edges: []float64{2, 1}}, "increase strictly"},
		{NumericConfig{Edges: []float64{math.NaN()}}, "finite"},
		{NumericConfig{Edges: []float64{0, math.Inf(1)}}, "finite"},
		{NumericConfig{SketchK: 3}, "out of range"},
	} {
		if _, err := NewNumeric(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewNumeric(%+v): %v, want an error with %q", c.cfg, err, c.want)
		}
	}
}

// TestNumericMerge checks that the merge of summaries of parts equals the
// summary of the whole: exactly for counts, extremes and histogram, to
// rounding for the moments, within the sketch's bound for quantiles.
func TestNumericMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	edges := []float64{-2, -1, 0, 1, 2}
	whole, _ := NewNumeric(NumericConfig{Edges: edges, Seed: 1})
	var data []float64
	parts := make([]*Numeric, 5)
	for p := range parts {
		parts[p], _ = NewNumeric(NumericConfig{Edges: edges, Seed: uint64(10 + p)})
		for range 1000 + 3000*p {
			x := r.NormFloat64()*1.5 + 0.3
			switch r.IntN(200) {
			case 0:
				x = math.NaN()
			case 1:
				x = math.Inf(1 - 2*r.IntN(2))
			}
			parts[p].Add(x)
			whole.Add(x)
			if !math.IsNaN(x) && !math.IsInf(x, 0) {
				data = append(data, x)
			}
		}
	}
	merged := parts[0].Clone()
	empty := parts[0].Empty(3)
	if err := merged.Merge(empty); err != nil {
		t.Fatal(err)
	}
	for _, p := range parts[1:] {
		if err := merged.Merge(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := empty.Merge(merged); err != nil || empty.Count() != merged.Count() || empty.Mean() != merged.Mean() {
		t.Errorf("merge into an empty summary: %v", err)
	}
	if merged.Count() != whole.Count() || merged.NaN() != whole.NaN() || merged.PosInf() != whole.PosInf() ||
		merged.NegInf() != whole.NegInf() || merged.Min() != whole.Min() || merged.Max() != whole.Max() ||
		!slices.Equal(merged.Histogram(), whole.Histogram()) {
		t.Errorf("merged counts, extremes or histogram differ from the whole's")
	}
	if d := math.Abs(merged.Mean()-whole.Mean()) / math.Abs(whole.Mean()); d > 1e-12 {
		t.Errorf("merged mean %v, whole %v", merged.Mean(), whole.Mean())
	}
	if d := math.Abs(merged.Variance()-whole.Variance()) / whole.Variance(); d > 1e-12 {
		t.Errorf("merged variance %v, whole %v", merged.Variance(), whole.Variance())
	}
	slices.Sort(data)
	q, u := rankErrors(merged.Sketch(), data)
	if b := merged.Sketch().RankError(1e-6); q > b || u > merged.Sketch().UniformRankError(1e-3) {
		t.Errorf("merged sketch errors %v %v over bounds", q, u)
	}
	// The parts are unchanged.
	if parts[1].Count() == merged.Count() {
		t.Error("merge changed its argument")
	}
	other, _ := NewNumeric(NumericConfig{Edges: []float64{0}})
	before := merged.Count()
	if err := merged.Merge(other); err == nil || merged.Count() != before {
		t.Errorf("merge of other edges: %v", err)
	}
}

func TestQuantileEdges(t *testing.T) {
	n, _ := NewNumeric(NumericConfig{SketchK: 2048}) // exact for 1000 values
	for i := range 1000 {
		n.Add(float64(i))
	}
	e := QuantileEdges(n, 4)
	if len(e) != 5 || e[0] != 0 || e[4] != math.Nextafter(999, 1000) {
		t.Fatalf("edges %v", e)
	}
	ref, _ := NewNumeric(NumericConfig{Edges: e})
	for i := range 1000 {
		ref.Add(float64(i))
	}
	// Equal-mass bins (edges at the lower quantiles 249, 499, 749), nothing
	// under or over.
	if h := ref.Histogram(); !slices.Equal(h, []uint64{0, 249, 250, 250, 251, 0}) {
		t.Errorf("histogram %v", h)
	}
	d, _ := NewNumeric(NumericConfig{})
	for i := range 100 {
		d.Add(float64(i % 2))
	}
	if e := QuantileEdges(d, 10); !slices.Equal(e, []float64{0, 1, math.Nextafter(1, 2)}) {
		t.Errorf("edges of two values %v", e)
	}
	empty, _ := NewNumeric(NumericConfig{})
	if e := QuantileEdges(empty, 10); e != nil {
		t.Errorf("edges of nothing %v", e)
	}
}

func TestCategorical(t *testing.T) {
	c, err := NewCategorical(3)
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []int{0, 1, 1, 2, 3, -1} {
		c.Add(code)
	}
	for _, x := range []float64{0, 2, 2.5, math.NaN(), math.Inf(1), 3, -0.0} {
		c.AddValue(x)
	}
	c.AddInvalid()
	if !slices.Equal(c.Counts(), []uint64{3, 2, 2}) || c.Other() != 4 || c.Invalid() != 3 || c.Count() != 11 || c.Total() != 14 {
		t.Errorf("counts %v other %d invalid %d", c.Counts(), c.Other(), c.Invalid())
	}
	if b := c.Buckets(); !slices.Equal(b, []float64{3, 2, 2, 4}) {
		t.Errorf("buckets %v", b)
	}
	d := c.Clone()
	if err := d.Merge(c); err != nil || !slices.Equal(d.Counts(), []uint64{6, 4, 4}) || d.Other() != 8 || d.Invalid() != 6 {
		t.Errorf("merge: %v, %v", err, d.Counts())
	}
	e, _ := NewCategorical(4)
	if err := d.Merge(e); err == nil {
		t.Error("merge of 4 classes into 3 accepted")
	}
	for _, k := range []int{0, -1, MaxClasses + 1} {
		if _, err := NewCategorical(k); err == nil {
			t.Errorf("NewCategorical(%d) accepted", k)
		}
	}
	if c.Empty().Total() != 0 || c.Empty().Classes() != 3 {
		t.Error("Empty is not empty")
	}
}
