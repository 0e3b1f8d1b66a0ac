package serving

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/testenv"
)

// reportSink is a WindowSink that keeps the reports; while gate is set,
// PutWindow waits for it.
type reportSink struct {
	mu      sync.Mutex
	reps    []drift.WindowReport
	gate    chan struct{}
	fail    error
	entered int // calls of PutWindow
}

func (s *reportSink) PutWindow(ctx context.Context, rep drift.WindowReport) error {
	s.mu.Lock()
	gate, fail := s.gate, s.fail
	s.entered++
	s.mu.Unlock()
	if gate != nil {
		<-gate
	}
	if fail != nil {
		return fail
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reps = append(s.reps, rep)
	return nil
}

func (s *reportSink) reports() []drift.WindowReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]drift.WindowReport(nil), s.reps...)
}

// wait waits until the sink holds n reports and returns them.
func (s *reportSink) wait(t *testing.T, n int) []drift.WindowReport {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("%d window reports", n), func() bool { return len(s.reports()) >= n })
	reps := s.reports()
	if len(reps) != n {
		t.Fatalf("%d window reports, want %d", len(reps), n)
	}
	return reps
}

// fakeRows returns n rows of the fake model's input: four standard normal
// values, plus shift.
func fakeRows(r *rand.Rand, n int, shift float32) [][]float32 {
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = make([]float32, 4)
		for j := range rows[i] {
			rows[i][j] = float32(r.NormFloat64()) + shift
		}
	}
	return rows
}

// writeFakeReference writes the reference profile of the fake model (scale
// 1, as fakeSession computes it) over n rows drawn like fakeRows, with
// featurizer configuration cfg (input [4] and output [2] values unless
// set), and returns its path.
func writeFakeReference(t testing.TB, dir string, n int, cfg drift.FeaturizerConfig) string {
	t.Helper()
	if cfg.InputShape == nil {
		cfg = drift.FeaturizerConfig{InputShape: []int{4}, OutputShape: []int{2}, Outputs: drift.OutputsValues}
	}
	f, err := drift.NewFeaturizer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rows := fakeRows(rand.New(rand.NewPCG(1, 2)), n, 0)
	in := cfg.InputShape[0]
	b := drift.Batch{InputShape: append([]int{n}, cfg.InputShape...), OutputShape: append([]int{n}, cfg.OutputShape...)}
	for _, row := range rows {
		var sum float32
		for j := range in {
			v := row[j%4]
			b.Input = append(b.Input, v)
			sum += v
		}
		b.Output = append(b.Output, sum, 1)
	}
	path := filepath.Join(dir, fmt.Sprintf("reference-%d.json", time.Now().UnixNano()))
	if err := os.WriteFile(path, encodeReference(t, f, b), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// encodeReference builds a reference profile of b in two passes and
// encodes it.
func encodeReference(t testing.TB, f *drift.Featurizer, b drift.Batch) []byte {
	t.Helper()
	draft := f.NewProfile(1)
	if err := f.Observe(draft, b); err != nil {
		t.Fatal(err)
	}
	ref, err := draft.Binned(10, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Observe(ref, b); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(ref)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// rowsRequest is a JSON inference request of the fake model for rows.
func rowsRequest(rows [][]float32) []byte {
	b, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{"name": "x", "shape": []int{len(rows), 4}, "datatype": "FP32", "data": rows}}})
	return b
}

// monitored returns a Model of the fake runtime with monitoring m and the
// reference at ref.
func (h *harness) monitored(version, scale string, m *v1alpha1.Monitoring, ref string) Model {
	am := h.active("fashion", "fashion-mlp", version, scale, "")
	am.Monitoring, am.Reference = m, ref
	return am
}

// post sends rows to the fashion deployment and fails unless answered 200.
func (h *harness) post(rows [][]float32) {
	h.t.Helper()
	if code, _, b := h.do("POST", "/v2/models/fashion/infer", rowsRequest(rows), nil); code != http.StatusOK {
		h.t.Fatalf("infer: %d %s", code, b)
	}
}

// TestMonitorWindowsByCount checks that windows close by count, a batch
// that fills several windows included, that each gets one report with a
// unique key and its own window numbers, and that Detect ran on it.
func TestMonitorWindowsByCount(t *testing.T) {
	fake := clock.NewFake(time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC))
	sink := &reportSink{}
	h := newHarness(t, false, 0, func(c *Config) { c.Clock, c.Windows = fake, sink })
	ref := writeFakeReference(t, h.dir, 2000, drift.FeaturizerConfig{})
	h.srv.Sync(context.Background(), []Model{h.monitored("1.0.0", "1", &v1alpha1.Monitoring{WindowSamples: 20, MinSamples: 10, PSIThreshold: "0"}, ref)})
	st := h.waitVersion("fashion", "1.0.0")
	if st.Drift == nil || st.Error != "" {
		t.Fatalf("status %+v, want drift monitoring and no error", st)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 10 {
		h.post(fakeRows(r, 3, 0)) // 30 samples: one window, 10 open
	}
	h.post(fakeRows(r, 55, 0)) // 65: three more windows, 5 open
	reps := sink.wait(t, 4)
	keys := map[string]bool{}
	for i, rep := range reps {
		if rep.Deployment != "fashion" || rep.Model != "fashion-mlp" || rep.Version != "1.0.0" || rep.Digest == "" {
			t.Errorf("report %d names %s %s@%s %s", i, rep.Deployment, rep.Model, rep.Version, rep.Digest)
		}
		if rep.First != uint64(i) || rep.Last != uint64(i) || rep.Windows != 1 || rep.Samples != 20 {
			t.Errorf("report %d: windows %d-%d (%d), %d samples", i, rep.First, rep.Last, rep.Windows, rep.Samples)
		}
		if rep.Verdict != drift.VerdictNoDrift || len(rep.Features) != 6 || rep.Features[0].N != 20 || len(rep.Features[0].Scores) == 0 {
			t.Errorf("report %d: verdict %s (%s), features %+v", i, rep.Verdict, rep.Reason, rep.Features)
		}
		if keys[rep.Key()] {
			t.Errorf("report %d: key %s used before", i, rep.Key())
		}
		keys[rep.Key()] = true
		if i > 0 && !rep.Start.After(reps[i-1].Start) {
			t.Errorf("report %d starts %v, not after report %d's %v", i, rep.Start, i-1, reps[i-1].Start)
		}
	}
	h.waitStatus("fashion", func(st ModelStatus) bool { return st.Drift != nil && st.Drift.Windows == 4 })
	// The last 5 samples are counted after the fourth window's report:
	// poll, as counting samples does not notify.
	testenv.WaitFor(t, 10*time.Second, "85 samples monitored", func() bool {
		for _, s := range h.srv.Status() {
			if s.Deployment == "fashion" {
				st = s
			}
		}
		return st.Drift != nil && st.Drift.Samples == 85
	})
	if d := st.Drift; d.Samples != 85 || d.Verdict != drift.VerdictNoDrift || d.Alarm || d.Dropped != 0 || d.Skipped != 0 || d.Version != "1.0.0" {
		t.Errorf("drift status %+v", d)
	}
}

// TestMonitorWindowsByTime checks that a window closes when its time ran
// out, on the server's clock, with no request to close it, and that a
// window too small to test is reported as such.
func TestMonitorWindowsByTime(t *testing.T) {
	start := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	fake := clock.NewFake(start)
	sink := &reportSink{}
	h := newHarness(t, false, 0, func(c *Config) { c.Clock, c.Windows = fake, sink })
	ref := writeFakeReference(t, h.dir, 2000, drift.FeaturizerConfig{})
	m := &v1alpha1.Monitoring{WindowSamples: 1000, WindowDuration: &metav1.Duration{Duration: time.Minute}}
	h.srv.Sync(context.Background(), []Model{h.monitored("1.0.0", "1", m, ref)})
	h.waitVersion("fashion", "1.0.0")
	r := rand.New(rand.NewPCG(5, 6))
	h.post(fakeRows(r, 4, 0))
	h.post(fakeRows(r, 3, 0))
	testenv.WaitFor(t, 10*time.Second, "the samples monitored", func() bool {
		st := h.srv.Status()
		return len(st) == 1 && st[0].Drift != nil && st[0].Drift.Samples == 7
	})
	// At 59 s nothing closes: a request then, once monitored, shows that
	// the monitor's clock passed it (a window that closed would have been
	// reported first).
	fake.Advance(59 * time.Second)
	h.post(fakeRows(r, 1, 0))
	testenv.WaitFor(t, 10*time.Second, "the request at 59 s monitored", func() bool { return h.srv.Status()[0].Drift.Samples == 8 })
	if n := len(sink.reports()); n != 0 {
		t.Fatalf("%d windows closed before their minute", n)
	}
	fake.Advance(5 * time.Second) // past the minute and the next tick
	reps := sink.wait(t, 1)
	rep := reps[0]
	if rep.Samples != 8 || !rep.Start.Equal(start) || !rep.End.Equal(start.Add(time.Minute)) || rep.Verdict != drift.VerdictInsufficient {
		t.Errorf("window %d samples %v–%v, verdict %s", rep.Samples, rep.Start, rep.End, rep.Verdict)
	}
	// An hour without requests opens no window.
	fake.Advance(time.Hour)
	h.post(fakeRows(r, 1, 0))
	if n := len(sink.reports()); n != 1 {
		t.Errorf("%d windows after an idle hour, want 1", n)
	}
}

// TestMonitorDetectsDrift checks that shifted inputs drift, raise the alarm
// after RaiseAfter windows in a row, and clear it after ClearAfter clean
// ones, in the reports and in status.
func TestMonitorDetectsDrift(t *testing.T) {
	fake := clock.NewFake(time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC))
	sink := &reportSink{}
	h := newHarness(t, false, 0, func(c *Config) { c.Clock, c.Windows = fake, sink })
	ref := writeFakeReference(t, h.dir, 2000, drift.FeaturizerConfig{})
	m := &v1alpha1.Monitoring{WindowSamples: 200, RaiseAfter: 2, ClearAfter: 2}
	h.srv.Sync(context.Background(), []Model{h.monitored("1.0.0", "1", m, ref)})
	h.waitVersion("fashion", "1.0.0")
	r := rand.New(rand.NewPCG(7, 8))
	want := []struct {
		shift   float32
		verdict drift.Verdict
		alarm   bool
	}{{0, drift.VerdictNoDrift, false}, {1, drift.VerdictDrift, false}, {1, drift.VerdictDrift, true}, {0, drift.VerdictNoDrift, true}, {0, drift.VerdictNoDrift, false}}
	for i, w := range want {
		fake.Advance(time.Second)
		h.post(fakeRows(r, 200, w.shift))
		rep := sink.wait(t, i+1)[i]
		if rep.Verdict != w.verdict || rep.Alarm != w.alarm {
			t.Fatalf("window %d, shift %v: verdict %s (%s), alarm %v; want %s, alarm %v", i, w.shift, rep.Verdict, rep.Reason, rep.Alarm, w.verdict, w.alarm)
		}
		if w.verdict == drift.VerdictDrift && !rep.Features[0].Drifted {
			t.Errorf("window %d: in[0] not flagged: %+v", i, rep.Features[0])
		}
		if i == 2 {
			st := h.waitStatus("fashion", func(st ModelStatus) bool { return st.Drift != nil && st.Drift.Windows == 3 })
			if !st.Drift.Alarm || !st.Drift.Since.Equal(rep.End) || st.Drift.Verdict != drift.VerdictDrift || !strings.Contains(st.Drift.Reason, "drift in") {
				t.Errorf("status after the alarm: %+v (window ended %v)", st.Drift, rep.End)
			}
		}
	}
}

// TestMonitorInvalidValues checks that NaN and infinite values in requests
// are counted, not tested, and break neither the request nor the windows.
func TestMonitorInvalidValues(t *testing.T) {
	sink := &reportSink{}
	h := newHarness(t, false, 0, func(c *Config) { c.Windows = sink })
	ref := writeFakeReference(t, h.dir, 2000, drift.FeaturizerConfig{})
	h.srv.Sync(context.Background(), []Model{h.monitored("1.0.0", "1", &v1alpha1.Monitoring{WindowSamples: 10, MinSamples: 5}, ref)})
	h.waitVersion("fashion", "1.0.0")
	// Binary data carries what JSON cannot: NaN and ±Inf.
	rows := fakeRows(rand.New(rand.NewPCG(9, 10)), 10, 0)
	rows[0][0], rows[1][1], rows[2][2] = float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))
	head := `{"inputs":[{"name":"x","shape":[10,4],"datatype":"FP32","parameters":{"binary_data_size":160}}]}`
	body := []byte(head)
	for _, row := range rows {
		for _, v := range row {
			body = binary.LittleEndian.AppendUint32(body, math.Float32bits(v))
		}
	}
	if code, _, b := h.do("POST", "/v2/models/fashion/infer", body, http.Header{HeaderInferenceContentLength: {strconv.Itoa(len(head))}}); code != http.StatusOK {
		t.Fatalf("infer: %d %s", code, b)
	}
	rep := sink.wait(t, 1)[0]
	// One invalid value in each of in[0], in[1], in[2], and three sums
	// (out[0]) that are NaN or infinite.
	invalid := map[string]uint64{}
	for _, f := range rep.Features {
		invalid[f.Name] = f.Invalid
	}
	if fmt.Sprint(invalid) != "map[in[0]:1 in[1]:1 in[2]:1 in[3]:0 out[0]:3 out[1]:0]" || rep.Features[0].N != 9 {
		t.Errorf("invalid values %v, in[0] valid %d", invalid, rep.Features[0].N)
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("the report does not encode: %v", err)
	}
	st := h.waitStatus("fashion", func(st ModelStatus) bool { return st.Drift != nil && st.Drift.Windows == 1 })
	if st.Drift.Invalid != 6 {
		t.Errorf("status counts %d invalid values, want 6", st.Drift.Invalid)
	}
	h.post(fakeRows(rand.New(rand.NewPCG(11, 12)), 10, 0))
	if rep := sink.wait(t, 2)[1]; rep.Verdict == drift.VerdictInsufficient || rep.Features[0].Invalid != 0 {
		t.Errorf("the window after: %s, %+v", rep.Verdict, rep.Features[0])
	}
}

// TestMonitorQueueFull checks that while the monitor is stuck, requests are
// answered as before and those that do not fit in its queue are dropped
// from monitoring and counted, in requests and in bytes.
func TestMonitorQueueFull(t *testing.T) {
	for _, tt := range []struct {
		name  string
		queue int
		bytes int64
		fit   int // of the 12 requests sent while the monitor is stuck
	}{{"requests", 2, 0, 2}, {"bytes", 100, 10 * 4 * (4 + 2), 5}} {
		t.Run(tt.name, func(t *testing.T) {
			gate := make(chan struct{})
			sink := &reportSink{gate: gate}
			h := newHarness(t, false, 0, func(c *Config) { c.Windows, c.MonitorQueue, c.MonitorQueueBytes = sink, tt.queue, tt.bytes })
			ref := writeFakeReference(t, h.dir, 2000, drift.FeaturizerConfig{})
			h.srv.Sync(context.Background(), []Model{h.monitored("1.0.0", "1", &v1alpha1.Monitoring{WindowSamples: 10}, ref)})
			h.waitVersion("fashion", "1.0.0")
			r := rand.New(rand.NewPCG(13, 14))
			h.post(fakeRows(r, 10, 0)) // closes a window: the monitor waits in PutWindow
			testenv.WaitFor(t, 10*time.Second, "the monitor stuck in PutWindow", func() bool {
				sink.mu.Lock()
				defer sink.mu.Unlock()
				return sink.entered == 1
			})
			// Each request of 2 rows holds 2*(4+2) floats: 5 fit in 10 rows' bytes.
			for range 12 {
				h.inferOK("/v2/models/fashion/infer", 1)
			}
			st := h.srv.Status()[0].Drift
			if st.Dropped != uint64(12-tt.fit) {
				t.Errorf("%d requests dropped, want %d (%d fit)", st.Dropped, 12-tt.fit, tt.fit)
			}
			close(gate)
			testenv.WaitFor(t, 10*time.Second, "the queued requests monitored", func() bool {
				return h.srv.Status()[0].Drift.Samples == uint64(10+2*tt.fit)
			})
		})
	}
}

// TestMonitorLifecycle checks that a version swap closes the old version's
// open window (reported when it holds MinSamples samples) and monitors the
// new version anew; that a change of spec.monitoring alone restarts the
// monitor; that removing monitoring stops it; and that a restarted server
// keys its windows apart from the last one's.
func TestMonitorLifecycle(t *testing.T) {
	fake := clock.NewFake(time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC))
	sink := &reportSink{}
	h := newHarness(t, false, 0, func(c *Config) { c.Clock, c.Windows = fake, sink })
	ref := writeFakeReference(t, h.dir, 2000, drift.FeaturizerConfig{})
	m := &v1alpha1.Monitoring{WindowSamples: 100, MinSamples: 10, PSIThreshold: "0"}
	h.srv.Sync(context.Background(), []Model{h.monitored("1.0.0", "1", m, ref)})
	h.waitVersion("fashion", "1.0.0")
	r := rand.New(rand.NewPCG(15, 16))
	h.post(fakeRows(r, 12, 0))
	testenv.WaitFor(t, 10*time.Second, "12 samples", func() bool { return h.srv.Status()[0].Drift.Samples == 12 })

	// A new version: the old one's window of 12 is reported.
	fake.Advance(time.Second)
	h.srv.Sync(context.Background(), []Model{h.monitored("1.1.0", "1", m, ref)})
	h.waitVersion("fashion", "1.1.0")
	rep := sink.wait(t, 1)[0]
	if rep.Version != "1.0.0" || rep.Samples != 12 || rep.Verdict != drift.VerdictNoDrift {
		t.Errorf("the old version's last window: %s, %d samples, %s", rep.Version, rep.Samples, rep.Verdict)
	}
	st := h.waitStatus("fashion", func(st ModelStatus) bool { return st.Drift != nil && st.Drift.Version == "1.1.0" })
	if st.Drift.Windows != 0 || st.Drift.Samples != 0 {
		t.Errorf("the new version's monitoring starts with %+v", st.Drift)
	}

	// A window too small is not reported when the version goes.
	h.post(fakeRows(r, 5, 0))
	testenv.WaitFor(t, 10*time.Second, "5 samples", func() bool { return h.srv.Status()[0].Drift.Samples == 5 })
	m2 := &v1alpha1.Monitoring{WindowSamples: 10, MinSamples: 10, PSIThreshold: "0"}
	h.srv.Sync(context.Background(), []Model{h.monitored("1.1.0", "1", m2, ref)})
	h.waitStatus("fashion", func(st ModelStatus) bool { return st.Drift != nil && st.Drift.Samples == 0 })
	h.post(fakeRows(r, 10, 0))
	reps := sink.wait(t, 2)
	if reps[1].Version != "1.1.0" || reps[1].Samples != 10 {
		t.Errorf("after the change of windows: %s, %d samples", reps[1].Version, reps[1].Samples)
	}

	// Monitoring off: no drift status, no monitor.
	h.srv.Sync(context.Background(), []Model{h.monitored("1.1.0", "1", nil, "")})
	h.waitStatus("fashion", func(st ModelStatus) bool { return st.Drift == nil })
	testenv.WaitFor(t, 10*time.Second, "the monitors stopped", func() bool {
		h.srv.monMu.Lock()
		defer h.srv.monMu.Unlock()
		return len(h.srv.mons) == 0
	})

	// A restarted server, later, keys its windows apart.
	h.srv.Sync(context.Background(), []Model{h.monitored("1.1.0", "1", m2, ref)})
	h.waitStatus("fashion", func(st ModelStatus) bool { return st.Drift != nil })
	h.post(fakeRows(r, 10, 0))
	sink.wait(t, 3)
	fake.Advance(time.Minute)
	h2 := newHarness(t, false, 0, func(c *Config) { c.Clock, c.Windows = fake, sink })
	h2.srv.Sync(context.Background(), []Model{h2.monitored("1.1.0", "1", m2, ref)})
	h2.waitVersion("fashion", "1.1.0")
	h2.post(fakeRows(r, 10, 0))
	reps = sink.wait(t, 4)
	keys := map[string]bool{}
	for _, rep := range reps {
		keys[rep.Key()] = true
	}
	if len(keys) != 4 || reps[3].First != 0 || reps[2].First != 0 {
		t.Errorf("keys %v, windows numbered %d and %d", keys, reps[2].First, reps[3].First)
	}
}

// TestMonitorOff checks that monitoring stays off, with the reason in the
// deployment's status, and serving goes on, when the reference is missing,
// unreadable, malformed or of another model, or the model cannot be
// monitored.
func TestMonitorOff(t *testing.T) {
	h := newHarness(t, false, 0)
	other := writeFakeReference(t, h.dir, 500, drift.FeaturizerConfig{InputShape: []int{5}, OutputShape: []int{2}, Outputs: drift.OutputsValues})
	bad := filepath.Join(h.dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"version":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, ref string
		m         *v1alpha1.Monitoring
		want      string
	}{
		{"no reference", "", &v1alpha1.Monitoring{}, "drift monitoring off: version 1.0.0 has no reference profile"},
		{"unreadable", filepath.Join(h.dir, "missing.json"), &v1alpha1.Monitoring{}, "drift monitoring off: reference profile: open"},
		{"malformed", bad, &v1alpha1.Monitoring{}, "drift monitoring off: reference profile: "},
		{"another model", other, &v1alpha1.Monitoring{}, "drift monitoring off: the reference profile does not fit the model: window: the reference is not of the featurizer's spec: input shape [5], want [4]"},
		{"bad policy", other, &v1alpha1.Monitoring{Correction: "Holm"}, `drift monitoring off: spec.monitoring: unknown correction "Holm"`},
	} {
		// One version, its monitoring changed each time.
		h.srv.Sync(context.Background(), []Model{h.monitored("1.0.0", "1", tt.m, tt.ref)})
		st := h.waitStatus("fashion", func(st ModelStatus) bool { return st.State == StateReady && strings.Contains(st.Error, tt.want) })
		if st.Drift != nil {
			t.Errorf("%s: drift status %+v with monitoring off", tt.name, st.Drift)
		}
		h.inferOK("/v2/models/fashion/infer", 1)
	}
}
