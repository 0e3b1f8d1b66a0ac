package agent

import (
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
)

// TestServingState checks that what the inference server reports through
// SetServing shows in the local status and in the report to the hub, and
// that the report is stamped with the agent's clock.
func TestServingState(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	now := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	a, err := New(ctx, Config{Dir: dir, Name: "edge-1", Logger: slog.New(slog.DiscardHandler), Clock: clock.NewFake(now)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	doc := &v1alpha1.DesiredState{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindDesiredState, Cluster: "edge-1", Revision: 1,
		Models: []v1alpha1.DesiredModel{
			{Deployment: "fashion", Model: "demo", Version: "1.0.0", Digest: digest.FromString("a").String()},
			{Deployment: "exotic", Model: "odd", Version: "2.0.0", Digest: digest.FromString("b").String()},
		}}
	if d, err := a.Apply(ctx, doc, SourceBundle); err != nil || d.Verdict != Apply {
		t.Fatalf("apply: %v %v", d.Verdict, err)
	}
	err = a.SetServing(ctx, map[string]ServingState{
		"fashion": {Version: "1.0.0", Runtime: "onnxruntime", Port: 9001},
		"exotic":  {Error: "load odd@2.0.0: unsupported operators: Foo (node n1)"},
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatus(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]DeploymentStatus{}
	for _, m := range st.Models {
		got[m.Deployment] = m
	}
	if got["fashion"].Runtime != "onnxruntime" || got["fashion"].ServingPort != 9001 || got["fashion"].ServingError != "" ||
		got["exotic"].ServingPort != 0 || !strings.Contains(got["exotic"].ServingError, "unsupported operators: Foo") {
		t.Errorf("status %+v", st.Models)
	}
	rep, err := a.Report(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.ReportedAt.Time.Equal(now) {
		t.Errorf("report stamped %v, want the agent's clock's %v", rep.ReportedAt.Time, now)
	}
	for _, m := range rep.Models {
		switch m.Deployment {
		case "fashion":
			if m.Runtime != "onnxruntime" {
				t.Errorf("report row %+v lacks the runtime", m)
			}
		case "exotic":
			if m.Runtime != "" || !strings.HasPrefix(m.Error, "serving: load odd@2.0.0") {
				t.Errorf("report row %+v lacks the serving error", m)
			}
		}
	}
	if st.Endpoints != nil || rep.Status.Endpoints != nil {
		t.Errorf("endpoints before any were set: status %+v, report %+v", st.Endpoints, rep.Status.Endpoints)
	}
	ep := v1alpha1.ServingEndpoints{REST: "http://127.0.0.1:41234", GRPC: "127.0.0.1:8081"}
	if err := a.SetEndpoints(ctx, &ep); err != nil {
		t.Fatal(err)
	}
	if st, err := ReadStatus(ctx, dir); err != nil || st.Endpoints == nil || *st.Endpoints != ep {
		t.Errorf("status endpoints %+v (%v), want %+v", st.Endpoints, err, ep)
	}
	if rep, err := a.Report(ctx); err != nil || rep.Status.Endpoints == nil || *rep.Status.Endpoints != ep {
		t.Errorf("report endpoints %+v (%v), want %+v", rep.Status.Endpoints, err, ep)
	}
	if err := a.SetEndpoints(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := ReadStatus(ctx, dir); st.Endpoints != nil {
		t.Errorf("endpoints after clearing: %+v", st.Endpoints)
	}
	if err := a.SetServing(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := ReadStatus(ctx, dir); st.Models[0].Runtime != "" || st.Models[1].Runtime != "" {
		t.Errorf("after clearing: %+v", st.Models)
	}
}

// TestDriftState checks that what the inference server records through
// SetDrift shows in the local status, read from the open agent and from
// its data directory, and that SetDrift replaces the earlier record.
func TestDriftState(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	a, err := New(ctx, Config{Dir: dir, Name: "edge-1", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	doc := &v1alpha1.DesiredState{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindDesiredState, Cluster: "edge-1", Revision: 1,
		Models: []v1alpha1.DesiredModel{
			{Deployment: "fashion", Model: "demo", Version: "1.0.0", Digest: digest.FromString("a").String(), Monitoring: &v1alpha1.Monitoring{}},
			{Deployment: "plain", Model: "demo", Version: "1.0.0", Digest: digest.FromString("a").String()},
		}}
	if d, err := a.Apply(ctx, doc, SourceBundle); err != nil || d.Verdict != Apply {
		t.Fatalf("apply: %v %v", d.Verdict, err)
	}
	since := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	want := DriftState{Version: "1.0.0", Windows: 12, Verdict: "drift", Reason: "1 of 21 features drifted", LastWindow: since.Add(time.Minute),
		Alarm: true, Since: since, Samples: 12000, Dropped: 3, Invalid: 7}
	if err := a.SetDrift(ctx, map[string]DriftState{"fashion": want, "gone": {Version: "9.9.9"}}); err != nil {
		t.Fatal(err)
	}
	for name, read := range map[string]func() (*Status, error){
		"open agent":     func() (*Status, error) { return a.Status(ctx) },
		"data directory": func() (*Status, error) { return ReadStatus(ctx, dir) },
	} {
		st, err := read()
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Models) != 2 {
			t.Fatalf("%s: %d rows, want 2 (no row for a deployment the agent does not have)", name, len(st.Models))
		}
		for _, m := range st.Models {
			switch {
			case m.Deployment == "fashion" && (m.Drift == nil || !reflect.DeepEqual(*m.Drift, want)):
				t.Errorf("%s: fashion's drift %+v, want %+v", name, m.Drift, want)
			case m.Deployment == "plain" && m.Drift != nil:
				t.Errorf("%s: plain's drift %+v, want none", name, m.Drift)
			}
		}
	}
	if err := a.SetDrift(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := a.Status(ctx); st.Models[0].Drift != nil || st.Models[1].Drift != nil {
		t.Errorf("after clearing: %+v", st.Models)
	}
}
