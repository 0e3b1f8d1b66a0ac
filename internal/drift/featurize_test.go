package drift

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func names(fs []Feature) []string {
	var n []string
	for _, f := range fs {
		n = append(n, f.Name)
	}
	return n
}

func TestFeaturizerFeatures(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  FeaturizerConfig
		want []string
	}{
		{"tabular", FeaturizerConfig{InputShape: []int{3}, OutputShape: []int{2}},
			[]string{"in[0]", "in[1]", "in[2]", "out.p[0]", "out.p[1]", "out.class"}},
		{"named and categorical", FeaturizerConfig{InputShape: []int{2}, InputFeatures: []InputFeature{{Name: "age"}, {Classes: 4}}, OutputShape: []int{1}, Outputs: OutputsValues},
			[]string{"age", "in[1]", "out[0]"}},
		{"image", FeaturizerConfig{InputShape: []int{1, 28, 28}, OutputShape: []int{10}, Outputs: OutputsLogits, Projections: 2},
			[]string{"in.mean", "in.std", "in.proj[0]", "in.proj[1]", "out.p[0]", "out.p[1]", "out.p[2]", "out.p[3]", "out.p[4]", "out.p[5]", "out.p[6]", "out.p[7]", "out.p[8]", "out.p[9]", "out.class"}},
		{"many classes", FeaturizerConfig{InputShape: []int{65}, OutputShape: []int{1000}},
			append([]string{"in.mean", "in.std", "in.proj[0]", "in.proj[1]", "in.proj[2]", "in.proj[3]", "in.proj[4]", "in.proj[5]", "in.proj[6]", "in.proj[7]"}, "out.class")},
	} {
		f, err := NewFeaturizer(c.cfg)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got := names(f.Spec().Features); !slices.Equal(got, c.want) {
			t.Errorf("%s: features %v, want %v", c.name, got, c.want)
		}
	}
}

func TestFeaturizerConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  FeaturizerConfig
		want string
	}{
		{FeaturizerConfig{OutputShape: []int{2}}, "empty shape"},
		{FeaturizerConfig{InputShape: []int{0}, OutputShape: []int{2}}, "dimension 0"},
		{FeaturizerConfig{InputShape: []int{100}, Inputs: InputsElementwise, OutputShape: []int{2}}, "at most 64"},
		{FeaturizerConfig{InputShape: []int{2}, Inputs: "pixels", OutputShape: []int{2}}, "unknown input mode"},
		{FeaturizerConfig{InputShape: []int{2}, OutputShape: []int{2}, Outputs: "scores"}, "unknown output mode"},
		{FeaturizerConfig{InputShape: []int{2}, InputFeatures: []InputFeature{{}}, OutputShape: []int{2}}, "1 input features for 2"},
		{FeaturizerConfig{InputShape: []int{2}, InputFeatures: []InputFeature{{Name: "a"}, {Name: "a"}}, OutputShape: []int{2}}, `two features named "a"`},
		{FeaturizerConfig{InputShape: []int{2}, Projections: 3, OutputShape: []int{2}}, "projections are for image"},
		{FeaturizerConfig{InputShape: []int{100}, Projections: 65, OutputShape: []int{2}}, "65 projections"},
		{FeaturizerConfig{InputShape: []int{4}, OutputShape: []int{65}, Outputs: OutputsValues}, "65 output values"},
		{FeaturizerConfig{InputShape: []int{4}, OutputShape: []int{2}, SketchK: 4}, "sketch k"},
	} {
		if _, err := NewFeaturizer(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewFeaturizer(%+v): %v, want an error with %q", c.cfg, err, c.want)
		}
	}
}

func TestFeaturizerImage(t *testing.T) {
	f, err := NewFeaturizer(FeaturizerConfig{InputShape: []int{2, 2}, Inputs: InputsImage, Projections: 3, ProjectionSeed: 11, OutputShape: []int{3}, Outputs: OutputsLogits})
	if err != nil {
		t.Fatal(err)
	}
	// The projections are a function of the seed alone: the hub and the edge
	// agree.
	g, _ := NewFeaturizer(FeaturizerConfig{InputShape: []int{4}, Inputs: InputsImage, Projections: 3, ProjectionSeed: 11, OutputShape: []int{3}})
	if !slices.Equal(f.proj, g.proj) {
		t.Error("two featurizers of one seed project differently")
	}
	// Projection j's signs are the generator's bits j·4 … j·4+3.
	state := uint64(11)
	bits := splitmix64(&state)
	neg := 0
	for j := range 3 {
		for i := range 4 {
			want := 0.5
			if bits>>(4*j+i)&1 == 1 {
				want = -0.5
				neg++
			}
			if got := f.projection(j, i); got != want {
				t.Errorf("projection %d entry %d = %v, want %v", j, i, got, want)
			}
		}
	}
	if neg == 0 || neg == 12 {
		t.Errorf("%d negative signs of 12", neg)
	}
	p := f.NewProfile(0)
	b := Batch{
		Input:       []float32{1, 2, 3, 6, 0, 0, 0, float32(math.NaN())},
		InputShape:  []int{2, 2, 2},
		Output:      []float32{1, 2, 3, 0, float32(math.Inf(1)), 0},
		OutputShape: []int{2, 3},
	}
	if err := f.Observe(p, b); err != nil {
		t.Fatal(err)
	}
	if p.Samples() != 2 {
		t.Errorf("%d samples", p.Samples())
	}
	mean, std := p.Numeric(0), p.Numeric(1)
	if mean.Count() != 1 || mean.NaN() != 1 || mean.Mean() != 3 || std.Mean() != math.Sqrt(3.5) {
		t.Errorf("mean feature %v (NaN %d), std %v", mean.Mean(), mean.NaN(), std.Mean())
	}
	for j := range 3 {
		want := 0.0
		for i, x := range []float64{1, 2, 3, 6} {
			want += x * f.projection(j, i)
		}
		if got := p.Numeric(2 + j).Mean(); math.Abs(got-want) > 1e-15 {
			t.Errorf("projection %d: %v, want %v", j, got, want)
		}
	}
	// Softmax of logits 1, 2, 3; an infinite logit makes no probabilities
	// and an invalid class.
	e := []float64{math.Exp(-2), math.Exp(-1), 1}
	s := e[0] + e[1] + e[2]
	for c := range 3 {
		n := p.Numeric(5 + c)
		if math.Abs(n.Mean()-e[c]/s) > 1e-15 || n.Count() != 1 || n.NaN() != 1 {
			t.Errorf("class %d probability %v (NaN %d), want %v", c, n.Mean(), n.NaN(), e[c]/s)
		}
	}
	cls := p.Categorical(8)
	if !slices.Equal(cls.Counts(), []uint64{0, 0, 1}) || cls.Invalid() != 1 {
		t.Errorf("classes %v, invalid %d", cls.Counts(), cls.Invalid())
	}
}

// TestFeaturizerProjections checks the image features against their
// definitions, computed directly, for one and several groups of eight
// projections and an element count that is not a multiple of eight.
func TestFeaturizerProjections(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, k := range []int{1, 8, 9, 20, 64} {
		f, err := NewFeaturizer(FeaturizerConfig{InputShape: []int{3, 17}, Inputs: InputsImage, Projections: k, ProjectionSeed: 5, OutputShape: []int{2}})
		if err != nil {
			t.Fatal(err)
		}
		x := make([]float32, 51)
		for i := range x {
			x[i] = float32(r.NormFloat64()*3 + 1)
		}
		p := f.NewProfile(0)
		if err := f.Observe(p, Batch{Input: x, InputShape: []int{1, 3, 17}, Output: []float32{0.3, 0.7}, OutputShape: []int{1, 2}}); err != nil {
			t.Fatal(err)
		}
		sum, ss := 0.0, 0.0
		for _, v := range x {
			sum += float64(v)
		}
		mean := sum / 51
		for _, v := range x {
			ss += (float64(v) - mean) * (float64(v) - mean)
		}
		if got := p.Numeric(0).Mean(); math.Abs(got-mean) > 1e-14 {
			t.Errorf("%d projections: mean %v, want %v", k, got, mean)
		}
		if got, want := p.Numeric(1).Mean(), math.Sqrt(ss/51); math.Abs(got-want) > 1e-14 {
			t.Errorf("%d projections: std %v, want %v", k, got, want)
		}
		for j := range k {
			want := 0.0
			for i, v := range x {
				want += float64(v) * f.projection(j, i)
			}
			if got := p.Numeric(2 + j).Mean(); math.Abs(got-want) > 1e-13 {
				t.Errorf("%d projections: projection %d = %v, want %v", k, j, got, want)
			}
		}
	}
}

func TestFeaturizerElementwiseAndOutputs(t *testing.T) {
	f, err := NewFeaturizer(FeaturizerConfig{InputShape: []int{2}, InputFeatures: []InputFeature{{}, {Classes: 2}}, OutputShape: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	p := f.NewProfile(0)
	b := Batch{Input: []float32{0.5, 1, float32(math.Inf(-1)), 7, 2, 0.5}, InputShape: []int{3, 2},
		Output: []float32{0.7, 0.2, float32(math.NaN())}, OutputShape: []int{3, 1}}
	if err := f.Observe(p, b); err != nil {
		t.Fatal(err)
	}
	in0, in1 := p.Numeric(0), p.Categorical(1)
	if in0.Count() != 2 || in0.NegInf() != 1 || in0.Mean() != 1.25 {
		t.Errorf("in[0]: %d values, %d -Inf, mean %v", in0.Count(), in0.NegInf(), in0.Mean())
	}
	if !slices.Equal(in1.Counts(), []uint64{0, 1}) || in1.Other() != 2 {
		t.Errorf("in[1]: %v, other %d", in1.Counts(), in1.Other())
	}
	// One output: the probability of class 1, and the class p ≥ ½.
	if cls := p.Categorical(3); !slices.Equal(cls.Counts(), []uint64{1, 1}) || cls.Invalid() != 1 {
		t.Errorf("classes %v invalid %d", cls.Counts(), cls.Invalid())
	}
	if got := p.Numeric(2).Count(); got != 2 {
		t.Errorf("out.p[0]: %d values", got)
	}
}

func TestFeaturizerBadBatches(t *testing.T) {
	f, _ := NewFeaturizer(FeaturizerConfig{InputShape: []int{2}, OutputShape: []int{3}})
	g, _ := NewFeaturizer(FeaturizerConfig{InputShape: []int{3}, OutputShape: []int{3}})
	p := f.NewProfile(0)
	for _, c := range []struct {
		name string
		p    *Profile
		b    Batch
		want string
	}{
		{"other spec", g.NewProfile(0), Batch{Input: make([]float32, 2), InputShape: []int{1, 2}, Output: make([]float32, 3), OutputShape: []int{1, 3}}, "another spec"},
		{"no batch dimension", p, Batch{Input: make([]float32, 2), InputShape: []int{2}, Output: make([]float32, 3), OutputShape: []int{1, 3}}, "input shape [2]"},
		{"short data", p, Batch{Input: make([]float32, 3), InputShape: []int{2, 2}, Output: make([]float32, 6), OutputShape: []int{2, 3}}, "but 3 values"},
		{"other output shape", p, Batch{Input: make([]float32, 2), InputShape: []int{1, 2}, Output: make([]float32, 2), OutputShape: []int{1, 2}}, "output shape [1 2]"},
		{"batch sizes differ", p, Batch{Input: make([]float32, 4), InputShape: []int{2, 2}, Output: make([]float32, 3), OutputShape: []int{1, 3}}, "2 inputs and 1 outputs"},
	} {
		if err := f.Observe(c.p, c.b); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	if p.Samples() != 0 {
		t.Error("a refused batch was counted")
	}
}

// TestObserveAllocs checks that summarising a batch allocates nothing once
// the sketches have grown.
func TestObserveAllocs(t *testing.T) {
	f, b := imageBatch(32)
	p := f.NewProfile(0)
	for range 200 {
		if err := f.Observe(p, b); err != nil {
			t.Fatal(err)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _ = f.Observe(p, b) }); a != 0 {
		t.Errorf("Observe allocates %v times a batch", a)
	}
	n := p.Numeric(0)
	if a := testing.AllocsPerRun(1000, func() { n.Add(0.5) }); a != 0 {
		t.Errorf("Numeric.Add allocates %v times", a)
	}
}

// imageBatch returns a featurizer of 28×28 images with ten classes and a
// batch of n random images and logits.
func imageBatch(n int) (*Featurizer, Batch) {
	f, err := NewFeaturizer(FeaturizerConfig{InputShape: []int{1, 28, 28}, OutputShape: []int{10}, Outputs: OutputsLogits})
	if err != nil {
		panic(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	b := Batch{Input: make([]float32, n*784), InputShape: []int{n, 1, 28, 28}, Output: make([]float32, n*10), OutputShape: []int{n, 10}}
	for i := range b.Input {
		b.Input[i] = r.Float32()
	}
	for i := range b.Output {
		b.Output[i] = float32(r.NormFloat64())
	}
	return f, b
}

// cpuTime returns the process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation since start: on a shared
// machine, a truer measure of the work than the wall-clock ns/op.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

func benchmarkObserve(b *testing.B, n int) {
	f, batch := imageBatch(n)
	p := f.NewProfile(0)
	b.ReportAllocs()
	b.SetBytes(int64(4 * len(batch.Input)))
	start := cpuTime()
	for b.Loop() {
		if err := f.Observe(p, batch); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, start)
}

// BenchmarkObserveImage1 summarises a batch-1 request of one 784-float image
// and ten logits (21 features).
func BenchmarkObserveImage1(b *testing.B) { benchmarkObserve(b, 1) }

// BenchmarkObserveImage32 summarises a batch of 32.
func BenchmarkObserveImage32(b *testing.B) { benchmarkObserve(b, 32) }

func BenchmarkNumericAdd(b *testing.B) {
	n, _ := NewNumeric(NumericConfig{Edges: []float64{-2, -1, 0, 1, 2}})
	r := rand.New(rand.NewPCG(1, 1))
	xs := make([]float64, 4096)
	for i := range xs {
		xs[i] = r.NormFloat64()
	}
	b.ReportAllocs()
	i := 0
	start := cpuTime()
	for b.Loop() {
		n.Add(xs[i&4095])
		i++
	}
	reportCPU(b, start)
}
