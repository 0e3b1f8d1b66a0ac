package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/hub"
	"outpost.dev/outpost/internal/outbox"
	"outpost.dev/outpost/internal/store"
	"outpost.dev/outpost/internal/testenv"
)

// driftWindow returns the report of window i of the fashion deployment:
// 100 samples, a minute each from start.
func driftWindow(i int, start time.Time) drift.WindowReport {
	mean, std := 0.5, 0.1
	return drift.WindowReport{Deployment: "fashion", Model: "demo", Version: "1.0.0", First: uint64(i), Last: uint64(i), Windows: 1,
		Start: start.Add(time.Duration(i) * time.Minute), End: start.Add(time.Duration(i)*time.Minute + 50*time.Second), Samples: 100,
		Verdict: drift.VerdictNoDrift, Features: []drift.FeatureReport{{Name: "in.mean", Role: drift.RoleInput, Kind: drift.KindNumeric,
			N: 100, Mean: &mean, Std: &std, Scores: []drift.ScoreReport{{Test: drift.TestKS, Statistic: 0.05}}}}}
}

// TestAgentDriftWindows checks that a deployment's spec.monitoring reaches
// the agent's active model, and so does a change of it alone; and that drift windows put in the agent's
// outbox reach a hub that counts them, each key once and every window
// counted, when the outbox's budget merged the oldest into coarser ones
// while the agent was not sending, and across a restart of the agent.
func TestAgentDriftWindows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		applied := &appliedLog{keys: map[string]int{}}
		var windows, samples atomic.Int64
		h := newTestHub(t, func(cfg *hub.Config) {
			cfg.Records = map[string]hub.RecordHandler{drift.RecordKind: func(ctx context.Context, tx *store.Tx, cluster string, rec v1alpha1.OutboxRecord) error {
				rep, err := drift.DecodeWindowReport(rec.Payload)
				if err != nil {
					return fmt.Errorf("%w: %v", hub.ErrRefused, err)
				}
				windows.Add(int64(rep.Windows))
				samples.Add(int64(rep.Samples))
				return applied.handle(ctx, tx, cluster, rec)
			}}
		})
		src := t.TempDir()
		if err := os.WriteFile(filepath.Join(src, "model.onnx"), []byte("not really a model"), 0o644); err != nil {
			t.Fatal(err)
		}
		h.push(src, "demo", "1.0.0")
		deploy := func(monitoring string) {
			t.Helper()
			y := "apiVersion: ml.outpost.dev/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: fashion\nspec:\n  model: {name: demo, version: \"1.0.0\"}\n" +
				"  clusterSelectors: [{matchLabels: {region: eu}}]\n  monitoring: " + monitoring + "\n"
			if code, b := h.api(http.MethodPut, "/modeldeployments/fashion", "application/yaml", []byte(y)); code >= 300 {
				t.Fatalf("apply deployment: %d %s", code, b)
			}
		}
		deploy(`{windowSamples: 500, alpha: "0.05", windowDuration: 5m}`)

		dir := filepath.Join(t.TempDir(), "agent")
		cfg := agentConfig(h, dir, h.joinToken())
		cfg.OutboxMerge = map[string]outbox.MergeFunc{drift.RecordKind: drift.MergeReports}
		cfg.OutboxBudget = 8 << 10
		var activeChanges atomic.Int64
		cfg.OnActive = func() { activeChanges.Add(1) }
		a, stop, _ := startAgent(t, cfg)
		testenv.WaitFor(t, time.Minute, "the model active", func() bool { return activeVersion(a, "fashion") == "1.0.0" })
		m := a.Active()[0].Monitoring
		if m == nil || m.WindowSamples != 500 || m.Alpha != "0.05" || m.WindowDurationValue() != 5*time.Minute || m.MinSamplesValue() != 100 {
			t.Fatalf("active model's monitoring %+v", m)
		}
		// A change of the monitoring alone reaches the active version.
		changes := activeChanges.Load()
		deploy(`{windowSamples: 2000}`)
		testenv.WaitFor(t, time.Minute, "the new monitoring active", func() bool {
			m := a.Active()[0].Monitoring
			return m != nil && m.WindowSamples == 2000 && m.Alpha == ""
		})
		if activeChanges.Load() == changes {
			t.Error("OnActive was not called when the monitoring changed")
		}

		start := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
		put := func(a *Agent, from, to int) {
			t.Helper()
			for i := from; i < to; i++ {
				rep := driftWindow(i, start)
				payload, err := json.Marshal(rep)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := a.Outbox().Put(t.Context(), outbox.Record{Key: rep.Key(), Kind: drift.RecordKind, Priority: outbox.PriorityMetrics,
					Group: rep.Group(), Payload: payload}); err != nil {
					t.Fatal(err)
				}
			}
		}
		delivered := func(a *Agent, n int64) func() bool {
			return func() bool {
				st, err := a.Outbox().Stats(t.Context())
				return err == nil && windows.Load() == n && st.Records == 0
			}
		}
		put(a, 0, 10)
		testenv.WaitFor(t, time.Minute, "10 windows at the hub", delivered(a, 10))

		// While the agent does not send (stopped, its windows put by the
		// server that still runs), 50 windows of about 600 bytes do not fit
		// in 8 KiB: the oldest merge. (Windows offered to the hub during a
		// partition would not merge, but drop.) Started again, it sends them.
		stop()
		idle, err := New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		put(idle, 10, 60)
		st, err := idle.Outbox().Stats(t.Context())
		idle.Close()
		if err != nil || st.Merged[drift.RecordKind] == 0 || st.Dropped[drift.RecordKind] != 0 {
			t.Fatalf("outbox while not sending: %+v %v, want windows merged and none dropped", st, err)
		}
		a, stop, _ = startAgent(t, cfg)
		defer stop()
		testenv.WaitFor(t, time.Minute, "60 windows at the hub", delivered(a, 60))
		keys, twice := applied.counts()
		if twice != 0 || int64(keys)+st.Merged[drift.RecordKind] != 60 || samples.Load() != 6000 {
			t.Errorf("the hub applied %d keys (%d more than once) for %d samples, %d windows merged; want 60 windows of 100", keys, twice, samples.Load(), st.Merged[drift.RecordKind])
		}
	})
}
