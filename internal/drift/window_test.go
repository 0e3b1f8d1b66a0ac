package drift

import (
	"math/rand/v2"
	"testing"
	"time"
)

// tabular returns a featurizer of one numeric input and two classes.
func tabular(t testing.TB) *Featurizer {
	t.Helper()
	f, err := NewFeaturizer(FeaturizerConfig{InputShape: []int{1}, OutputShape: []int{2}, SketchK: 16})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// seq returns a batch of n samples whose inputs are start, start+1, …
func seq(start, n int) Batch {
	b := Batch{Input: make([]float32, n), InputShape: []int{n, 1}, Output: make([]float32, 2*n), OutputShape: []int{n, 2}}
	for i := range n {
		b.Input[i] = float32(start + i)
		b.Output[2*i] = 0.25
		b.Output[2*i+1] = 0.75
	}
	return b
}

func TestWindowerBySamples(t *testing.T) {
	f := tabular(t)
	w, err := NewWindower(f, f.NewProfile(0), WindowConfig{Samples: 10}, 1)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	var closed []Window
	// Batches of 7 cut at every 10 samples: a batch may close a window and
	// open the next.
	for i := range 5 {
		ws, err := w.Observe(t0.Add(time.Duration(i)*time.Second), seq(7*i, 7))
		if err != nil {
			t.Fatal(err)
		}
		closed = append(closed, ws...)
	}
	if len(closed) != 3 {
		t.Fatalf("%d windows closed, want 3", len(closed))
	}
	for i, win := range closed {
		n := win.Profile.Numeric(0)
		if win.Profile.Samples() != 10 || n.Min() != float64(10*i) || n.Max() != float64(10*i+9) {
			t.Errorf("window %d: %d samples [%v, %v]", i, win.Profile.Samples(), n.Min(), n.Max())
		}
		if win.First != uint64(i) || win.Last != uint64(i) {
			t.Errorf("window %d numbered %d-%d", i, win.First, win.Last)
		}
	}
	if closed[0].Start != t0 || closed[0].End != t0.Add(time.Second) || closed[1].Start != t0.Add(time.Second) || closed[2].End != t0.Add(4*time.Second) {
		t.Errorf("times %v–%v, %v–%v, %v–%v", closed[0].Start, closed[0].End, closed[1].Start, closed[1].End, closed[2].Start, closed[2].End)
	}
	if open := w.Open(); open == nil || open.Samples() != 5 {
		t.Errorf("open window: %v", open)
	}
	// Windows are merged into coarser ones: the first two make the window
	// of samples 0 … 19.
	m, err := MergeWindows(closed[0], closed[1])
	if err != nil {
		t.Fatal(err)
	}
	if m.First != 0 || m.Last != 1 || m.Start != closed[0].Start || m.End != closed[1].End || m.Profile.Samples() != 20 || m.Profile.Numeric(0).Max() != 19 {
		t.Errorf("merged window %d-%d, %d samples", m.First, m.Last, m.Profile.Samples())
	}
	if closed[0].Profile.Samples() != 10 {
		t.Error("merging changed its input")
	}
	if _, err := MergeWindows(closed[0], closed[2]); err == nil {
		t.Error("windows 0 and 2 merged")
	}
	// The merged window summarises what one window of the same samples
	// does.
	one, _ := NewWindower(f, f.NewProfile(0), WindowConfig{Samples: 20}, 1)
	ws, _ := one.Observe(t0, seq(0, 20))
	a, b := ws[0].Profile, m.Profile
	if a.Numeric(0).Count() != b.Numeric(0).Count() || a.Numeric(0).Mean() != b.Numeric(0).Mean() || a.Categorical(3).Count() != b.Categorical(3).Count() {
		t.Error("a merged window differs from one window of its samples")
	}
}

func TestWindowerByTime(t *testing.T) {
	f := tabular(t)
	w, err := NewWindower(f, f.NewProfile(0), WindowConfig{Samples: 100, Duration: time.Minute}, 1)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(5000, 0)
	obs := func(at time.Duration, n int) []Window {
		t.Helper()
		ws, err := w.Observe(t0.Add(at), seq(0, n))
		if err != nil {
			t.Fatal(err)
		}
		return ws
	}
	if ws := obs(0, 3); len(ws) != 0 {
		t.Fatal("closed early")
	}
	if _, ok := w.Tick(t0.Add(59 * time.Second)); ok {
		t.Error("Tick closed a window before its minute")
	}
	// A time before the window's start counts as its start.
	if ws := obs(-time.Hour, 2); len(ws) != 0 {
		t.Fatal("a late batch closed the window")
	}
	win, ok := w.Tick(t0.Add(61 * time.Second))
	if !ok || win.Profile.Samples() != 5 || win.End != t0.Add(time.Minute) {
		t.Fatalf("Tick: %v, %+v", ok, win)
	}
	if _, ok := w.Tick(t0.Add(10 * time.Minute)); ok {
		t.Error("Tick closed a window that holds nothing")
	}
	// After a gap the next window opens with the next batch; a batch that
	// comes after a window's time closes it first and opens the next.
	obs(10*time.Minute, 4)
	ws := obs(11*time.Minute, 6)
	if len(ws) != 1 || ws[0].Profile.Samples() != 4 || ws[0].Start != t0.Add(10*time.Minute) || ws[0].End != t0.Add(11*time.Minute) || ws[0].First != 1 {
		t.Fatalf("closed %+v", ws)
	}
	if w.Open().Samples() != 6 {
		t.Errorf("open window holds %d", w.Open().Samples())
	}
	// By count first: 100 samples close the window before its minute.
	ws = obs(11*time.Minute+time.Second, 200)
	if len(ws) != 2 || ws[0].Profile.Samples() != 100 || ws[1].Profile.Samples() != 100 {
		t.Fatalf("%d windows", len(ws))
	}
	// Close closes the open window whatever it holds (the 6 samples left
	// and 3 more), at a time not before its start, and nothing when none
	// is open.
	obs(12*time.Minute, 3)
	win, ok = w.Close(t0.Add(12*time.Minute + 30*time.Second))
	if !ok || win.Profile.Samples() != 9 || win.Start != t0.Add(11*time.Minute+time.Second) || win.End != t0.Add(12*time.Minute+30*time.Second) || win.First != 4 || w.Open() != nil {
		t.Fatalf("Close: %v, %+v", ok, win)
	}
	if _, ok := w.Close(t0.Add(13 * time.Minute)); ok {
		t.Error("Close closed a window when none was open")
	}
	obs(14*time.Minute, 1)
	if win, ok := w.Close(t0); !ok || win.End != t0.Add(14*time.Minute) || win.First != 5 {
		t.Errorf("Close before the start: %v, %+v", ok, win)
	}
}

func TestWindowerErrors(t *testing.T) {
	f := tabular(t)
	g, _ := NewFeaturizer(FeaturizerConfig{InputShape: []int{2}, OutputShape: []int{2}})
	if _, err := NewWindower(f, f.NewProfile(0), WindowConfig{}, 0); err == nil {
		t.Error("a window without limits accepted")
	}
	if _, err := NewWindower(f, g.NewProfile(0), WindowConfig{Samples: 1}, 0); err == nil {
		t.Error("a reference of another spec accepted")
	}
	w, _ := NewWindower(f, f.NewProfile(0), WindowConfig{Samples: 5}, 0)
	if _, err := w.Observe(time.Now(), Batch{}); err == nil || w.Open() != nil {
		t.Errorf("an empty batch: %v", err)
	}
}

// TestWindowSeeds checks that windows' sketches are seeded apart, so that
// merged windows keep the sketch's probabilistic bound.
func TestWindowSeeds(t *testing.T) {
	f := tabular(t)
	w, _ := NewWindower(f, f.NewProfile(0), WindowConfig{Samples: 100}, 9)
	ws, _ := w.Observe(time.Now(), seq(0, 200))
	if ws[0].Profile.Numeric(0).Sketch().rng == ws[1].Profile.Numeric(0).Sketch().rng {
		t.Error("two windows' sketches share a seed")
	}
}

// BenchmarkWindowsImage32 is a monitor's work for a stream of batches of 32
// 28×28 images and ten logits: summarising them into windows of 1,000
// samples and, on each window that closes, testing it against a reference
// of 4,000 samples and making its report. It reports the CPU time per
// sample.
func BenchmarkWindowsImage32(b *testing.B) {
	f, ref := imageReference(b, 4000)
	// 2,048 samples, other than the reference's, cut into batches of 32.
	stream := imageData(2048, 7)
	w, err := NewWindower(f, ref, WindowConfig{Samples: 1000}, 1)
	if err != nil {
		b.Fatal(err)
	}
	det, err := NewDetector(ref, DefaultPolicy())
	if err != nil {
		b.Fatal(err)
	}
	at := time.Unix(0, 0)
	b.ReportAllocs()
	start := cpuTime()
	i := 0
	for b.Loop() {
		lo := i % 64 * 32
		i++
		batch := Batch{Input: stream.Input[lo*784 : (lo+32)*784], InputShape: []int{32, 1, 28, 28},
			Output: stream.Output[lo*10 : (lo+32)*10], OutputShape: []int{32, 10}}
		at = at.Add(time.Millisecond)
		closed, err := w.Observe(at, batch)
		if err != nil {
			b.Fatal(err)
		}
		for _, win := range closed {
			res, err := det.Detect(win.Profile)
			if err != nil {
				b.Fatal(err)
			}
			_ = NewWindowReport("d", "m", "v", "sha256:0", win, res, Alarm{})
		}
	}
	b.ReportMetric(float64(cpuTime()-start)/float64(32*b.N), "cpu-ns/sample")
}

// imageReference returns a featurizer of 28×28 images and ten logits, and
// a reference profile of n random samples: a draft, then histograms of 10
// bins.
func imageReference(b *testing.B, n int) (*Featurizer, *Profile) {
	b.Helper()
	f, _ := imageBatch(1)
	data := imageData(n, 3)
	draft := f.NewProfile(1)
	if err := f.Observe(draft, data); err != nil {
		b.Fatal(err)
	}
	ref, err := draft.Binned(10, 2)
	if err != nil {
		b.Fatal(err)
	}
	if err := f.Observe(ref, data); err != nil {
		b.Fatal(err)
	}
	return f, ref
}

// imageData returns n random 28×28 images, uniform pixels, and normal
// logits of ten classes, drawn from seed.
func imageData(n int, seed uint64) Batch {
	r := rand.New(rand.NewPCG(seed, 2))
	d := Batch{Input: make([]float32, n*784), InputShape: []int{n, 1, 28, 28}, Output: make([]float32, n*10), OutputShape: []int{n, 10}}
	for i := range d.Input {
		d.Input[i] = r.Float32()
	}
	for i := range d.Output {
		d.Output[i] = float32(r.NormFloat64())
	}
	return d
}
