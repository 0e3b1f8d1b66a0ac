package drift

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// testProfile returns a reference-like profile of a small tabular model
// with a categorical input, over n samples, binned.
func testProfile(t testing.TB, n int) (*Featurizer, *Profile) {
	t.Helper()
	f, err := NewFeaturizer(FeaturizerConfig{InputShape: []int{3}, InputFeatures: []InputFeature{{Name: "x"}, {Name: "y"}, {Name: "colour", Classes: 3}},
		OutputShape: []int{4}, Outputs: OutputsLogits, SketchK: 32})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(4, 4))
	b := Batch{Input: make([]float32, 3*n), InputShape: []int{n, 3}, Output: make([]float32, 4*n), OutputShape: []int{n, 4}}
	for i := range n {
		b.Input[3*i] = float32(r.NormFloat64())
		b.Input[3*i+1] = float32(r.ExpFloat64())
		b.Input[3*i+2] = float32(r.IntN(4))
		for j := range 4 {
			b.Output[4*i+j] = float32(r.NormFloat64())
		}
	}
	b.Input[0] = float32(math.NaN())
	b.Input[4] = float32(math.Inf(1))
	draft := f.NewProfile(1)
	if err := f.Observe(draft, b); err != nil {
		t.Fatal(err)
	}
	p, err := draft.Binned(8, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Observe(p, b); err != nil {
		t.Fatal(err)
	}
	return f, p
}

func TestProfileRoundTrip(t *testing.T) {
	_, p := testProfile(t, 500)
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	q, err := DecodeProfile(data)
	if err != nil {
		t.Fatal(err)
	}
	again, err := json.Marshal(q)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, again) {
		t.Fatal("a decoded profile encodes differently")
	}
	if err := p.Compatible(q); err != nil {
		t.Fatal(err)
	}
	// The decoded profile goes on as the original: same sketches, same
	// coins.
	for _, x := range []*Profile{p, q} {
		for i := range 300 {
			x.Numeric(0).Add(float64(i))
		}
	}
	a, _ := json.Marshal(p.Numeric(0))
	b, _ := json.Marshal(q.Numeric(0))
	if !bytes.Equal(a, b) {
		t.Error("a decoded summary evolves differently from its original")
	}
	var n Numeric
	if err := json.Unmarshal(a, &n); err != nil {
		t.Fatal(err)
	}
	if c, _ := json.Marshal(&n); !bytes.Equal(a, c) {
		t.Error("numeric summary does not round-trip")
	}
	var c Categorical
	cj, _ := json.Marshal(p.Categorical(2))
	if err := json.Unmarshal(cj, &c); err != nil {
		t.Fatal(err)
	}
	if d, _ := json.Marshal(&c); !bytes.Equal(cj, d) {
		t.Error("categorical summary does not round-trip")
	}
	var viaUnmarshal Profile
	if err := json.Unmarshal(data, &viaUnmarshal); err != nil || viaUnmarshal.Samples() != p.Samples() {
		t.Errorf("json.Unmarshal of a profile: %v", err)
	}
}

// edit decodes data into a generic value, applies change and encodes it.
func edit(t *testing.T, data []byte, change func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	change(m)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDecodeProfileErrors(t *testing.T) {
	_, p := testProfile(t, 200)
	data, _ := json.Marshal(p)
	summary := func(m map[string]any, i int) map[string]any {
		return m["summaries"].([]any)[i].(map[string]any)
	}
	numeric := func(m map[string]any) map[string]any { return summary(m, 0)["numeric"].(map[string]any) }
	sketch := func(m map[string]any) map[string]any { return numeric(m)["sketch"].(map[string]any) }
	for _, c := range []struct {
		name   string
		change func(m map[string]any)
		want   string
	}{
		{"version", func(m map[string]any) { m["version"] = 2 }, "version 2, want 1"},
		{"no version", func(m map[string]any) { delete(m, "version") }, "version 0, want 1"},
		{"unknown field", func(m map[string]any) { m["extra"] = 1 }, `unknown field "extra"`},
		{"no spec", func(m map[string]any) { delete(m, "spec") }, "no spec"},
		{"other shape", func(m map[string]any) {
			m["spec"].(map[string]any)["config"].(map[string]any)["inputShape"] = []int{4}
		}, "3 input features for 4 input elements"},
		{"renamed feature", func(m map[string]any) {
			m["spec"].(map[string]any)["features"].([]any)[0].(map[string]any)["name"] = "z"
		}, "not those of the configuration"},
		{"missing summary", func(m map[string]any) { m["summaries"] = m["summaries"].([]any)[1:] }, "7 summaries for 8 features"},
		{"summary order", func(m map[string]any) { summary(m, 0)["name"] = "y" }, `summary 0 is of "y", want "x"`},
		{"wrong kind", func(m map[string]any) {
			summary(m, 0)["categorical"] = summary(m, 2)["categorical"]
			delete(summary(m, 0), "numeric")
		}, "numeric feature with a categorical summary"},
		{"both kinds", func(m map[string]any) { summary(m, 0)["categorical"] = summary(m, 2)["categorical"] }, "exactly one"},
		{"count", func(m map[string]any) { numeric(m)["count"] = 7 }, "histogram counts add up to"},
		{"samples", func(m map[string]any) { m["samples"] = 7 }, "values for 7 samples"},
		{"min over max", func(m map[string]any) { numeric(m)["min"] = 1e9 }, "above max"},
		{"no min", func(m map[string]any) { delete(numeric(m), "min") }, "min and max"},
		{"negative m2", func(m map[string]any) { numeric(m)["m2"] = -1 }, "m2 -1 is negative"},
		{"edges", func(m map[string]any) { numeric(m)["edges"] = []float64{3, 2} }, "increase strictly"},
		{"bins", func(m map[string]any) { numeric(m)["histogram"] = []int{1} }, "1 histogram bins for"},
		{"sketch weight", func(m map[string]any) { sketch(m)["n"] = 1 }, "levels weigh"},
		{"sketch k", func(m map[string]any) { sketch(m)["k"] = 3 }, "k 3 out of range"},
		{"sketch value", func(m map[string]any) {
			sketch(m)["levels"].([]any)[0].([]any)[0] = json.Number("1e300")
		}, "outside [min, max]"},
		{"no sketch", func(m map[string]any) { delete(numeric(m), "sketch") }, "no sketch"},
		{"nested version", func(m map[string]any) { numeric(m)["version"] = 1 }, "no version of its own"},
		{"classes", func(m map[string]any) {
			summary(m, 2)["categorical"].(map[string]any)["counts"] = []int{1, 2}
		}, "2 classes, want 3"},
		{"negative count", func(m map[string]any) { numeric(m)["nan"] = -1 }, "cannot unmarshal"},
		{"string rng", func(m map[string]any) { sketch(m)["rng"] = 5 }, "string"},
	} {
		_, err := DecodeProfile(edit(t, data, c.change))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	for _, bad := range []string{"", "null", "[]", "{", `{"version":1} {}`, "nul"} {
		if _, err := DecodeProfile([]byte(bad)); err == nil {
			t.Errorf("DecodeProfile(%q) accepted", bad)
		}
	}
	var n Numeric
	if err := json.Unmarshal([]byte(`{"version":1,"count":0,"nan":0,"posInf":0,"negInf":0,"mean":0,"m2":0,"sketch":{"k":8,"n":0,"rng":"0","variance":0,"levels":[[]]}}`), &n); err != nil {
		t.Errorf("an empty numeric summary: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"count":0,"nan":0,"posInf":0,"negInf":0,"mean":0,"m2":0,"sketch":{"k":8,"n":0,"rng":"0","variance":0,"levels":[[]]}}`), &n); err == nil {
		t.Error("a numeric summary without a version accepted")
	}
}

// FuzzDecodeProfile checks that decoding never panics and that whatever it
// accepts is valid: it re-encodes to the same bytes it decodes from, and
// it can be observed into, merged and compared.
func FuzzDecodeProfile(f *testing.F) {
	_, p := testProfile(f, 12)
	data, _ := json.Marshal(p)
	f.Add(data)
	small, _ := NewFeaturizer(FeaturizerConfig{InputShape: []int{1}, OutputShape: []int{2}, SketchK: 8})
	sp := small.NewProfile(0)
	_ = small.Observe(sp, Batch{Input: []float32{1, 2, 3}, InputShape: []int{3, 1}, Output: []float32{0.1, 0.9, 0.5, 0.5, 1, 0}, OutputShape: []int{3, 2}})
	sdata, _ := json.Marshal(sp)
	f.Add(sdata)
	f.Add([]byte(`{"version":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		q, err := DecodeProfile(data)
		if err != nil {
			return
		}
		enc, err := json.Marshal(q)
		if err != nil {
			t.Fatalf("an accepted profile does not encode: %v", err)
		}
		q2, err := DecodeProfile(enc)
		if err != nil {
			t.Fatalf("a re-encoded profile does not decode: %v", err)
		}
		enc2, _ := json.Marshal(q2)
		if !bytes.Equal(enc, enc2) {
			t.Fatal("encoding is not stable")
		}
		c := q.Clone()
		if err := c.Merge(q); err != nil {
			t.Fatalf("merge with itself: %v", err)
		}
		g, err := NewFeaturizer(q.spec.Config)
		if err != nil {
			t.Fatalf("the spec of an accepted profile: %v", err)
		}
		in, out := g.in, g.out
		b := Batch{Input: make([]float32, in), InputShape: append([]int{1}, q.spec.Config.InputShape...),
			Output: make([]float32, out), OutputShape: append([]int{1}, q.spec.Config.OutputShape...)}
		if err := g.Observe(c, b); err != nil {
			t.Fatalf("observe into an accepted profile: %v", err)
		}
		_, _ = Detect(q, c, DefaultPolicy())
	})
}
