package drift

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// imageReport returns the report of a window of n images of the image
// featurizer (10 classes), shifted in brightness by shift, against a
// reference of unshifted ones.
func imageReport(t *testing.T, n int, shift float64, start time.Time) (WindowReport, *Profile) {
	t.Helper()
	f, err := NewFeaturizer(FeaturizerConfig{InputShape: []int{1, 28, 28}, OutputShape: []int{10}, Outputs: OutputsLogits, ProjectionSeed: 5})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	images := func(n int, shift float64) Batch {
		b := Batch{Input: make([]float32, 784*n), InputShape: []int{n, 1, 28, 28}, Output: make([]float32, 10*n), OutputShape: []int{n, 10}}
		for s := range n {
			bright := 0.5 + 0.1*r.NormFloat64() + 0.05*shift
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
	data := images(2000, 0)
	_ = f.Observe(draft, data)
	ref, _ := draft.Binned(10, 1)
	_ = f.Observe(ref, data)
	win := ref.Empty(9)
	if err := f.Observe(win, images(n, shift)); err != nil {
		t.Fatal(err)
	}
	res, err := Detect(ref, win, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	w := Window{First: 4, Last: 4, Start: start, End: start.Add(time.Minute), Profile: win}
	alarm := DefaultPolicy().Hysteresis.Step(Alarm{}, res.Verdict, w.End)
	return NewWindowReport("fashion", "fashion-mlp", "1.1.0", "sha256:ab", w, res, alarm), ref
}

func TestWindowReport(t *testing.T) {
	start := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	rep, _ := imageReport(t, 300, 1, start)
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	// A window's report of 21 features stays a few kilobytes, whatever its samples.
	if len(b) > 8<<10 {
		t.Errorf("report is %d bytes, want at most 8 KiB", len(b))
	}
	got, err := DecodeWindowReport(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Verdict != VerdictDrift || !got.Alarm || got.Samples != 300 || got.Windows != 1 || len(got.Features) != 21 {
		t.Errorf("report %+v", got)
	}
	mean := got.Features[0]
	if mean.Name != "in.mean" || !mean.Drifted || mean.Mean == nil || math.Abs(*mean.Mean-0.55) > 0.02 {
		t.Errorf("in.mean: %+v", mean)
	}
	if want := "drift.window/fashion/1.1.0/2026-03-04T05:06:07Z"; rep.Key() != want {
		t.Errorf("key %q, want %q", rep.Key(), want)
	}
}

func TestMergeReports(t *testing.T) {
	start := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	a, _ := imageReport(t, 200, 0, start)
	b, _ := imageReport(t, 300, 1, start.Add(time.Minute))
	b.First, b.Last = 5, 5
	ab, _ := json.Marshal(a)
	bb, _ := json.Marshal(b)
	mb, err := MergeReports(ab, bb)
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeWindowReport(mb)
	if err != nil {
		t.Fatal(err)
	}
	if m.First != 4 || m.Last != 5 || m.Windows != 2 || m.Samples != 500 || !m.Start.Equal(start) || !m.End.Equal(b.End) {
		t.Errorf("merged span %+v", m)
	}
	if m.Verdict != VerdictDrift || !m.Features[0].Drifted {
		t.Errorf("merged verdict %s, in.mean drifted %v: drift in either window must survive", m.Verdict, m.Features[0].Drifted)
	}
	// The pooled mean is the samples' mean.
	want := (200**a.Features[0].Mean + 300**b.Features[0].Mean) / 500
	if got := *m.Features[0].Mean; math.Abs(got-want) > 1e-12 || m.Features[0].N != a.Features[0].N+b.Features[0].N {
		t.Errorf("pooled mean %v, want %v", got, want)
	}
	if len(mb) > len(ab)+len(bb) {
		t.Errorf("merged %d bytes from %d + %d: merging must make room", len(mb), len(ab), len(bb))
	}
	other := b
	other.Version = "2.0.0"
	ob, _ := json.Marshal(other)
	if _, err := MergeReports(ab, ob); err == nil || !strings.Contains(err.Error(), "differ") {
		t.Errorf("merging reports of two versions: %v", err)
	}
}

func TestDecodeWindowReportErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{`, "drift report"},
		{`{"deployment":"d","model":"m"}`, "required"},
		{`{"deployment":"d","model":"m","version":"1","first":3,"last":2,"windows":1,"verdict":"drift"}`, "first <= last"},
		{`{"deployment":"d","model":"m","version":"1","windows":1,"verdict":"maybe"}`, "unknown verdict"},
		{`{"deployment":"d","model":"m","version":"1","windows":1,"verdict":"drift","start":"2026-01-02T00:00:00Z","end":"2026-01-01T00:00:00Z"}`, "before it starts"},
	} {
		if _, err := DecodeWindowReport([]byte(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("DecodeWindowReport(%s): %v, want %q", tt.in, err, tt.want)
		}
	}
}

func FuzzDecodeWindowReport(f *testing.F) {
	f.Add([]byte(`{"deployment":"d","model":"m","version":"1","windows":1,"verdict":"drift","features":[{"name":"x","n":3,"scores":[{"test":"ks","statistic":0.5,"pValue":0.01}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeWindowReport(b)
		if err != nil {
			return
		}
		// What is accepted merges with itself and stays accepted.
		enc, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := MergeReports(enc, enc); err != nil {
			t.Fatalf("merge of an accepted report: %v", err)
		}
	})
}
