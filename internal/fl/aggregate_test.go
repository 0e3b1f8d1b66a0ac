package fl

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestWeightedSums(t *testing.T) {
	d := [][][]float32{{{1, 2}, {3}}, {{3, 4}, {5}}, {{-1, 0}, {1}}}
	for _, tc := range []struct {
		name    string
		coef    func() ([]float64, error)
		want    [][]float32
		wantErr bool
	}{
		{"fedavg by samples", func() ([]float64, error) { return FedAvgCoefficients([]int{1, 1, 2}) },
			[][]float32{{0.5, 1.5}, {2.5}}, false},
		{"coefficients that do not pair", func() ([]float64, error) { return FedAvgCoefficients([]int{5}) }, nil, true},
		{"fedavg, zero samples", func() ([]float64, error) { return FedAvgCoefficients([]int{1, 0, 1}) }, nil, true},
		{"nova, equal steps is fedavg", func() ([]float64, error) { return NovaCoefficients([]float64{1, 1, 2}, []int{5, 5, 5}) },
			[][]float32{{0.5, 1.5}, {2.5}}, false},
		// p = 1/3 each, τ = 1, 2, 3: τ_eff = 2, coefficients 2/3, 1/3, 2/9.
		{"nova, unequal steps", func() ([]float64, error) { return NovaCoefficients([]float64{1, 1, 1}, []int{1, 2, 3}) },
			[][]float32{{2.0/3 + 1 - 2.0/9, 4.0/3 + 4.0/3}, {2 + 5.0/3 + 2.0/9}}, false},
		{"nova, zero steps", func() ([]float64, error) { return NovaCoefficients([]float64{1, 1, 1}, []int{1, 0, 3}) }, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			coef, err := tc.coef()
			if err == nil && len(coef) != len(d) {
				_, err = WeightedSum(d, coef)
			}
			if tc.wantErr {
				if err == nil {
					t.Fatal("no error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := WeightedSum(d, coef)
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				for j := range got[i] {
					if math.Abs(float64(got[i][j]-tc.want[i][j])) > 1e-6 {
						t.Fatalf("got %v, want %v", got, tc.want)
					}
				}
			}
		})
	}
}

// FedNova's coefficients make the aggregate the τ_eff-step move of the
// clients' mean steps: a client that did k times the steps with the same
// per-step move counts no more than its share.
func TestNovaRemovesStepBias(t *testing.T) {
	// Two clients with equal shares; per-step moves +1 and -1; client 0
	// does 10 steps, client 1 does 1. FedAvg drifts toward client 0
	// (mean (10 - 1)/2 = 4.5); FedNova's direction is the mean step, 0.
	d := [][][]float32{{{10}}, {{-1}}}
	avg, _ := FedAvgCoefficients([]int{1, 1})
	nova, _ := NovaCoefficients([]float64{1, 1}, []int{10, 1})
	a, _ := WeightedSum(d, avg)
	n, _ := WeightedSum(d, nova)
	if a[0][0] != 4.5 || math.Abs(float64(n[0][0])) > 1e-6 {
		t.Fatalf("fedavg %v, fednova %v; want 4.5 and 0", a[0][0], n[0][0])
	}
}

func TestStalenessWeight(t *testing.T) {
	for _, tc := range []struct {
		s    int
		want float64
	}{{0, 1}, {1, 1 / math.Sqrt2}, {3, 0.5}, {8, 1.0 / 3}, {-2, 1}} {
		if got := StalenessWeight(tc.s); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("StalenessWeight(%d) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

func TestWeightings(t *testing.T) {
	for _, tc := range []struct {
		w    Weighting
		s    int
		want float64
	}{
		{Polynomial, 3, 0.5}, {Polynomial, 8, 1.0 / 3},
		{Constant, 0, 1}, {Constant, 50, 1},
		{Hinge, 0, 1}, {Hinge, 4, 1}, {Hinge, 5, 0.5}, {Hinge, 8, 0.2},
	} {
		if got := tc.w.Weight(tc.s); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s.Weight(%d) = %v, want %v", tc.w, tc.s, got, tc.want)
		}
	}
}

func TestClipAndNoise(t *testing.T) {
	for _, tc := range []struct {
		name   string
		v      [][]float32
		c      float64
		factor float64
	}{
		{"within", [][]float32{{0.3}, {0.4}}, 1, 1},
		{"over", [][]float32{{3}, {4}}, 1, 0.2},
		{"zero", [][]float32{{0}, {0}}, 1, 1},
	} {
		v := cloneWeights(tc.v)
		f := Clip(v, tc.c)
		if math.Abs(f-tc.factor) > 1e-9 || Norm(v) > tc.c+1e-6 {
			t.Errorf("%s: factor %v norm %v", tc.name, f, Norm(v))
		}
	}
	// Noise of std σ on n values: the sample std is σ within a few percent.
	v := [][]float32{make([]float32, 100000)}
	AddNoise(v, 0.5, rand.New(rand.NewPCG(1, 2)))
	var s, s2 float64
	for _, x := range v[0] {
		s += float64(x)
		s2 += float64(x) * float64(x)
	}
	n := float64(len(v[0]))
	mean, std := s/n, math.Sqrt(s2/n-(s/n)*(s/n))
	if math.Abs(mean) > 0.01 || math.Abs(std-0.5) > 0.01 {
		t.Fatalf("noise mean %v std %v, want 0 and 0.5", mean, std)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	w := [][]float32{{0.5, -1.25, 3}, {}, {1e-3, -2e-3}}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, tc := range []struct {
		enc  Encoding
		size int
		tol  float64
	}{
		{Float32, 4 * 5, 0},
		{Int8, 5 + 4*3, 3.0 / 127},
	} {
		v, err := Encode(w, tc.enc, rng)
		if err != nil {
			t.Fatal(err)
		}
		if v.Size() != tc.size {
			t.Errorf("%s: %d bytes, want %d", tc.enc, v.Size(), tc.size)
		}
		b, _ := json.Marshal(v)
		var back Vector
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		got, err := Decode(back, Shape(w))
		if err != nil {
			t.Fatal(err)
		}
		for i := range w {
			for j := range w[i] {
				// Each value within one step of its tensor's scale.
				tol := tc.tol
				if tc.enc == Int8 && i == 2 {
					tol = 2e-3 / 127
				}
				if math.Abs(float64(got[i][j]-w[i][j])) > tol*1.0001 {
					t.Errorf("%s: tensor %d value %d: %v, want %v", tc.enc, i, j, got[i][j], w[i][j])
				}
			}
		}
	}
	if _, err := Encode([][]float32{{float32(math.NaN())}}, Float32, nil); err == nil {
		t.Error("NaN encoded")
	}
	if _, err := Encode(w, "int4", nil); err == nil {
		t.Error("unknown encoding accepted")
	}
}

// Stochastic rounding is unbiased: the mean of many int8 encodings of a
// value is the value, though each is a multiple of the scale.
func TestInt8Unbiased(t *testing.T) {
	w := [][]float32{{1, 0.3, -0.77, 0.0041}}
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 20000
	sum := make([]float64, 4)
	for range n {
		v, err := Encode(w, Int8, rng)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := Decode(v, []int{4})
		for j, x := range d[0] {
			sum[j] += float64(x)
		}
	}
	scale := 1.0 / 127
	for j, x := range w[0] {
		mean := sum[j] / n
		// The standard error of the mean is at most scale/2/sqrt(n).
		if math.Abs(mean-float64(x)) > 5*scale/2/math.Sqrt(n) {
			t.Errorf("value %v: mean of int8 decodings %v", x, mean)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	shape := []int{2, 1}
	f32, _ := Encode([][]float32{{1, 2}, {3}}, Float32, nil)
	i8, _ := Encode([][]float32{{1, 2}, {3}}, Int8, rand.New(rand.NewPCG(1, 1)))
	mod := func(v Vector, f func(*Vector)) Vector {
		v.Data, v.Scales, v.Shape = slices.Clone(v.Data), slices.Clone(v.Scales), slices.Clone(v.Shape)
		f(&v)
		return v
	}
	for _, tc := range []struct {
		name string
		v    Vector
	}{
		{"fewer tensors", mod(f32, func(v *Vector) { v.Shape = v.Shape[:1] })},
		{"another length", mod(f32, func(v *Vector) { v.Shape[0] = 3 })},
		{"truncated", mod(f32, func(v *Vector) { v.Data = v.Data[:11] })},
		{"float32 with scales", mod(f32, func(v *Vector) { v.Scales = []float32{1} })},
		{"infinite value", mod(f32, func(v *Vector) { copy(v.Data[4:], []byte{0, 0, 0x80, 0x7f}) })},
		{"int8 missing scale", mod(i8, func(v *Vector) { v.Scales = v.Scales[:1] })},
		{"int8 negative scale", mod(i8, func(v *Vector) { v.Scales[0] = -1 })},
		{"int8 NaN scale", mod(i8, func(v *Vector) { v.Scales[1] = float32(math.NaN()) })},
		{"unknown encoding", mod(f32, func(v *Vector) { v.Encoding = "bf16" })},
	} {
		if _, err := Decode(tc.v, shape); err == nil {
			t.Errorf("%s: decoded", tc.name)
		}
	}
}

// FuzzDecode: any JSON a cluster sends decodes to finite values of the
// model's shape, or is refused; never a panic.
func FuzzDecode(f *testing.F) {
	f32, _ := Encode([][]float32{{1, 2}, {3}}, Float32, nil)
	i8, _ := Encode([][]float32{{1, 2}, {3}}, Int8, rand.New(rand.NewPCG(1, 1)))
	for _, v := range []Vector{f32, i8} {
		b, _ := json.Marshal(v)
		f.Add(b)
	}
	f.Add([]byte(`{"encoding":"int8","shape":[2,1],"data":"AAAA","scales":[1e39,1]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var v Vector
		if json.Unmarshal(b, &v) != nil {
			return
		}
		out, err := Decode(v, []int{2, 1})
		if err != nil {
			return
		}
		if len(out) != 2 || len(out[0]) != 2 || len(out[1]) != 1 {
			t.Fatalf("decoded shape %v", Shape(out))
		}
		for _, x := range Flatten(out) {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Fatalf("decoded %v", x)
			}
		}
	})
}

// FuzzReport: a report decoded from any JSON is refused or accepted by
// the coordinator without a panic, and a refusal changes nothing.
func FuzzReport(f *testing.F) {
	f.Add([]byte(`{"job":"tiny","cluster":"store-aa","kind":"update","version":1,"round":1,"update":{"baseRound":0,"samples":1,"localSteps":1,"delta":{"encoding":"float32","shape":[12,3,6,2]}}}`))
	f.Add([]byte(`{"job":"tiny","cluster":"store-aa","kind":"facts","facts":{"online":true,"samples":5}}`))
	f.Add([]byte(`{"job":"tiny","cluster":"store-ab","kind":"keys","version":2,"round":1,"keys":{"ID":1,"C":"AA==","S":"AA=="}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Report
		if json.Unmarshal(b, &r) != nil {
			return
		}
		spec := tinySpec(2)
		spec.SecAgg = &SecAggSpec{}
		init, _ := InitialWeights(spec.Model, 1)
		c, _, err := New(spec, init, t0)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"store-aa", "store-ab"} {
			if _, err := c.Handle(t0, Report{Job: "tiny", Cluster: n, Kind: KindFacts, Facts: &ClusterFacts{Online: true, Samples: 3}}); err != nil {
				t.Fatal(err)
			}
		}
		before, _ := json.Marshal(c.Snapshot())
		if _, err := c.Handle(t0, r); err != nil {
			after, _ := json.Marshal(c.Snapshot())
			if string(before) != string(after) {
				t.Fatalf("refused (%v) but changed", err)
			}
		}
	})
}

// The running sum the coordinator keeps gives what WeightedSum gives with
// the FedAvg, FedNova and DP coefficients times the staleness weights.
func TestAccumMatchesWeightedSum(t *testing.T) {
	d := [][][]float32{{{1, 2}, {3}}, {{3, 4}, {5}}, {{-1, 0}, {1}}}
	samples, steps, stale := []int{10, 20, 30}, []int{1, 2, 4}, []int{0, 1, 3}
	p := []float64{10, 20, 30}
	avg, _ := FedAvgCoefficients(samples)
	nova, _ := NovaCoefficients(p, steps)
	for _, tc := range []struct {
		name     string
		dp, nova bool
		coef     []float64
	}{
		{"fedavg", false, false, avg},
		{"fednova", false, true, nova},
		{"dp", true, false, []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}},
	} {
		var a accum
		coef := slices.Clone(tc.coef)
		for i := range d {
			a.add(d[i], samples[i], steps[i], Metrics{Loss: float64(i)}, 4, stale[i], Polynomial, tc.dp, tc.nova)
			coef[i] *= StalenessWeight(stale[i])
		}
		want, _ := WeightedSum(d, coef)
		got, err := a.result([]int{2, 1}, tc.dp, tc.nova)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			for j := range want[i] {
				if math.Abs(float64(got[i][j]-want[i][j])) > 1e-6 {
					t.Fatalf("%s: %v, want %v", tc.name, got, want)
				}
			}
		}
		if m := a.metrics(); math.Abs(m.Loss-(0*10+1*20+2*30)/60.0) > 1e-12 || a.Staleness != 3 || a.Bytes != 12 {
			t.Fatalf("%s: metrics %+v, staleness %d, bytes %d", tc.name, m, a.Staleness, a.Bytes)
		}
	}
	var empty accum
	if _, err := empty.result([]int{1}, false, false); err == nil {
		t.Fatal("an empty sum gave a result")
	}
}

func TestRingJSON(t *testing.T) {
	for _, tc := range []struct {
		r    Ring
		form string // the JSON's start
		size int    // bytes of values
	}{
		{Ring{Bits: 32, Words: []uint32{0, 1, 0xffffffff, 12345}}, `"AAAAAAEAAAD`, 16},
		{Ring{Bits: 16, Words: []uint32{0, 1, 0xffff, 12345}}, `{"bits":16,"data":"AAABAP//OTA="}`, 8},
		{Ring{Bits: 8, Words: []uint32{0, 1, 0xff, 123}}, `{"bits":8,"data":"AAH/ew=="}`, 4},
		{Ring{Bits: 16, Words: []uint32{}}, `{"bits":16,"data":""}`, 0},
	} {
		b, err := json.Marshal(tc.r)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), tc.form) || tc.r.Size() != tc.size {
			t.Errorf("%d bits: %s (%d bytes of values), want %s… (%d)", tc.r.Bits, b, tc.r.Size(), tc.form, tc.size)
		}
		var back Ring
		if err := json.Unmarshal(b, &back); err != nil || back.Width() != tc.r.Width() || !slices.Equal(back.Words, tc.r.Words) {
			t.Fatalf("%s: %v %v", b, back, err)
		}
	}
	// The form from before rings had widths reads as 32 bits.
	var old Ring
	if err := json.Unmarshal([]byte(`"AQAAAAIAAAA="`), &old); err != nil || old.Width() != 32 || !slices.Equal(old.Words, []uint32{1, 2}) {
		t.Fatalf("the width-less form: %+v, %v", old, err)
	}
	// A value outside its ring is refused, not cut.
	for _, r := range []Ring{{Bits: 16, Words: []uint32{1, 0x10000}}, {Bits: 8, Words: []uint32{256}}, {Bits: 12, Words: []uint32{1}}} {
		if b, err := json.Marshal(r); err == nil {
			t.Errorf("%+v marshalled as %s", r, b)
		}
	}
	for _, bad := range []string{`"AAAAAAA="`, `{"bits":16,"data":"AAAA"}`, `{"bits":12,"data":""}`, `{"bits":16,"data":"AAA=","extra":1}`, `{"bits":16}x`, `3`} {
		var back Ring
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("%s decoded as %+v", bad, back)
		}
	}
}

// FuzzRingJSON: whatever decodes re-encodes to the same vector.
func FuzzRingJSON(f *testing.F) {
	for _, s := range []string{`"AQAAAAIAAAA="`, `{"bits":16,"data":"AAABAP//OTA="}`, `{"bits":8,"data":"AAH/ew=="}`, `null`, `{"bits":32,"data":"AQAAAA=="}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Ring
		if err := json.Unmarshal(data, &r); err != nil {
			return
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("%s decoded as %+v, which does not encode: %v", data, r, err)
		}
		var back Ring
		if err := json.Unmarshal(b, &back); err != nil || back.Width() != r.Width() || !slices.Equal(back.Words, r.Words) {
			t.Fatalf("%s: %+v, then %s: %+v, %v", data, r, b, back, err)
		}
	})
}
