package cli

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/outbox"
	"outpost.dev/outpost/internal/serving"
)

// windowReport returns the report of window i of deployment dep, version
// v: 100 samples from start+i minutes, of one feature.
func windowReport(dep, v string, i int, start time.Time) drift.WindowReport {
	mean, std := 0.5, 0.1
	return drift.WindowReport{Deployment: dep, Model: "fashion-mlp", Version: v, First: uint64(i), Last: uint64(i), Windows: 1,
		Start: start.Add(time.Duration(i) * time.Minute), End: start.Add(time.Duration(i)*time.Minute + 30*time.Second), Samples: 100,
		Verdict: drift.VerdictNoDrift, Features: []drift.FeatureReport{{Name: "in.mean", Role: drift.RoleInput, Kind: drift.KindNumeric,
			N: 100, Mean: &mean, Std: &std, Scores: []drift.ScoreReport{{Test: drift.TestKS, Statistic: 0.05}}}}}
}

// TestWindowOutbox checks that the server's window reports go into the
// agent's outbox as drift.window records, keyed by deployment, version and
// start, at the priority of metrics, once each; and that under the
// outbox's budget the windows of one deployment and version merge into
// coarser ones, with the agent's merge functions, and are counted.
func TestWindowOutbox(t *testing.T) {
	ctx := t.Context()
	a, err := agent.New(ctx, agent.Config{Dir: t.TempDir(), Name: "edge-1", Logger: slog.New(slog.DiscardHandler),
		OutboxMerge: outboxMerge(), OutboxBudget: 6 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var sink serving.WindowSink = windowOutbox{a.Outbox()}
	start := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	first := windowReport("fashion", "1.0.0", 0, start)
	for range 2 { // the second put of a key changes nothing
		if err := sink.PutWindow(ctx, first); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := a.Outbox().Next(ctx, 0, 10, 1<<20)
	if err != nil || len(recs) != 1 {
		t.Fatalf("outbox holds %d records (%v), want 1", len(recs), err)
	}
	r := recs[0]
	if r.Key != "drift.window/fashion/1.0.0/2031-01-02T03:04:05Z" || r.Kind != drift.RecordKind || r.Priority != outbox.PriorityMetrics ||
		r.Group != "drift.window/fashion/1.0.0" {
		t.Errorf("record %s %s %d %s", r.Key, r.Kind, r.Priority, r.Group)
	}
	if got, err := drift.DecodeWindowReport(r.Payload); err != nil || !reflect.DeepEqual(got, first) {
		t.Errorf("payload decodes to %+v (%v), want %+v", got, err, first)
	}
	if err := a.Outbox().Ack(ctx, []outbox.Outcome{{Key: r.Key, Done: true}}); err != nil {
		t.Fatal(err)
	}

	// 40 windows of about 600 bytes in 6 KiB: the oldest merge.
	for i := 1; i <= 40; i++ {
		if err := sink.PutWindow(ctx, windowReport("fashion", "1.0.0", i, start)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := a.Outbox().Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Merged[drift.RecordKind] == 0 || st.Dropped[drift.RecordKind] != 0 || st.Bytes > 6<<10 {
		t.Fatalf("outbox %+v: want windows merged, none dropped, within the budget", st)
	}
	recs, err = a.Outbox().Next(ctx, 0, 100, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	windows, samples := 0, uint64(0)
	for _, r := range recs {
		rep, err := drift.DecodeWindowReport(r.Payload)
		if err != nil {
			t.Fatal(err)
		}
		windows += rep.Windows
		samples += rep.Samples
	}
	if windows != 40 || samples != 4000 || int64(len(recs))+st.Merged[drift.RecordKind] != 40 {
		t.Errorf("%d records cover %d windows and %d samples, %d merged; want 40 windows of 100", len(recs), windows, samples, st.Merged[drift.RecordKind])
	}
}

// TestAgentStates checks how the server's status becomes the agent's
// serving and drift states, and how 'outpost agent status' prints them.
func TestAgentStates(t *testing.T) {
	since := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	st := []serving.ModelStatus{
		{Deployment: "fashion", Model: "fashion-mlp", Version: "1.1.0", Runtime: "go", State: serving.StateReady,
			Drift: &serving.DriftStatus{Version: "1.1.0", Windows: 14, Verdict: drift.VerdictDrift, Reason: "drift in 2 of 21 features",
				LastWindow: since.Add(time.Hour), Alarm: true, Since: since, Samples: 14000, Dropped: 3, Skipped: 1, Invalid: 2, Lost: 1,
				Feedback: &serving.FeedbackStatus{Labelled: 600, Correct: 125}, FeedbackLost: 4, Busy: time.Second}},
		{Deployment: "plain", Model: "fraud", Version: "2.0.0", Runtime: "go", State: serving.StateReady, Error: "drift monitoring off: version 2.0.0 has no reference profile"},
	}
	states, drifts := agentStates(st)
	want := agent.DriftState{Version: "1.1.0", Windows: 14, Verdict: "drift", Reason: "drift in 2 of 21 features", LastWindow: since.Add(time.Hour),
		Alarm: true, Since: since, Samples: 14000, Dropped: 3, Skipped: 1, Invalid: 2,
		Feedback: &agent.FeedbackState{Labelled: 600, Correct: 125}, FeedbackLost: 4, Busy: time.Second}
	if len(drifts) != 1 || !reflect.DeepEqual(drifts["fashion"], want) {
		t.Errorf("drift states %+v, want fashion's %+v", drifts, want)
	}
	if len(states) != 2 || states["plain"].Error != st[1].Error || states["fashion"].Version != "1.1.0" {
		t.Errorf("serving states %+v", states)
	}
	// Every field of the server's drift status but Lost (the agent counts
	// lost windows in its outbox) reaches the agent's.
	dv, av := reflect.ValueOf(*st[0].Drift), reflect.ValueOf(want)
	for i := range dv.NumField() {
		name := dv.Type().Field(i).Name
		if name != "Lost" && !av.FieldByName(name).IsValid() {
			t.Errorf("agent.DriftState has no %s", name)
		}
	}

	var out bytes.Buffer
	status := &agent.Status{Cluster: "edge-1", Models: []agent.DeploymentStatus{
		{Deployment: "fashion", Model: "fashion-mlp", ActiveVersion: "1.1.0", DesiredVersion: "1.1.0", Drift: &want},
		{Deployment: "plain", Model: "fraud", ActiveVersion: "2.0.0", DesiredVersion: "2.0.0", ServingError: st[1].Error},
		{Deployment: "fresh", Model: "fraud", ActiveVersion: "2.0.0", DesiredVersion: "2.0.0", Drift: &agent.DriftState{Version: "2.0.0", Since: since}},
	}}
	if err := printAgentStatus(&out, status, since.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, line := range []string{
		"serving: drift monitoring off: version 2.0.0 has no reference profile",
		"Drift monitoring:",
		"DEPLOYMENT  VERSION  ALARM   SINCE                              LAST WINDOW                    WINDOWS  SAMPLES  DROPPED  LABELLED ACCURACY",
		"fashion     1.1.0    RAISED  2031-01-02T03:04:05Z (2h0m0s ago)  drift at 2031-01-02T04:04:05Z  14       14000    3        20.8% of 600",
		"fresh       2.0.0    clear   2031-01-02T03:04:05Z (2h0m0s ago)  -                              0        0        0        -",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("status lacks %q:\n%s", line, text)
		}
	}
	if strings.Contains(text, "plain       2.0.0") {
		t.Errorf("a deployment without monitoring has a drift row:\n%s", text)
	}
	js, _ := json.Marshal(status)
	if !strings.Contains(string(js), `"drift":{"version":"1.1.0","windows":14,"verdict":"drift"`) {
		t.Errorf("JSON status %s", js)
	}
}

// TestAgentMetrics checks the agent's figures that GET /metrics serves:
// the outbox, the applied revision and each deployment's bytes owed.
func TestAgentMetrics(t *testing.T) {
	ctx := t.Context()
	a, err := agent.New(ctx, agent.Config{Dir: t.TempDir(), Name: "edge-1", Logger: slog.New(slog.DiscardHandler), OutboxMerge: outboxMerge()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	doc := &v1alpha1.DesiredState{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindDesiredState, Cluster: "edge-1", Revision: 7,
		Models: []v1alpha1.DesiredModel{{Deployment: "fashion", Model: "fashion-mlp", Version: "1.0.0", Digest: "sha256:" + strings.Repeat("a", 64), SizeBytes: 1234}}}
	if _, err := a.Apply(ctx, doc, agent.SourceBundle); err != nil {
		t.Fatal(err)
	}
	if err := (windowOutbox{a.Outbox()}).PutWindow(ctx, windowReport("fashion", "1.0.0", 0, time.Unix(0, 0))); err != nil {
		t.Fatal(err)
	}
	am, err := agentMetrics{a}.AgentMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if am.OutboxRecords != 1 || am.OutboxBytes == 0 || am.AppliedRevision != 7 || !am.LastContact.IsZero() ||
		len(am.Deployments) != 1 || am.Deployments[0] != (serving.DeploymentSync{Deployment: "fashion", BytesOwed: 1234}) {
		t.Errorf("agent metrics %+v", am)
	}
}
