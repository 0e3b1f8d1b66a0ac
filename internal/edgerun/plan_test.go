package edgerun

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
)

func TestPlanRuns(t *testing.T) {
	now := time.Date(2026, 12, 3, 3, 30, 0, 0, time.UTC)
	nightly := v1alpha1.DesiredPipeline{Name: "nightly", Spec: v1alpha1.PipelineSpec{Schedule: "0 3 * * *"}}
	retrain := v1alpha1.DesiredPipeline{Name: "retrain", Runs: []string{"retrain-abc"}, Spec: v1alpha1.PipelineSpec{
		Triggers: []v1alpha1.PipelineTrigger{{Type: v1alpha1.TriggerDrift, Deployment: "fashion"}, {Type: v1alpha1.TriggerNewVersion, Deployment: "fashion"}}}}
	alarm := time.Date(2026, 12, 3, 2, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		pipes     []v1alpha1.DesiredPipeline
		last      map[string]time.Time
		events    []agent.Event
		want      []string // run names
		wantFired map[string]time.Time
		wantNext  time.Time
	}{
		{name: "nothing", pipes: nil},
		{name: "a requested run", pipes: []v1alpha1.DesiredPipeline{retrain}, want: []string{"retrain-abc"}},
		{name: "a new schedule does not fire at once", pipes: []v1alpha1.DesiredPipeline{nightly},
			wantFired: map[string]time.Time{"nightly": now}, wantNext: time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)},
		{name: "a due schedule fires once", pipes: []v1alpha1.DesiredPipeline{nightly},
			last: map[string]time.Time{"nightly": now.Add(-2 * time.Hour)}, want: []string{"nightly-sched-202612030300"},
			wantFired: map[string]time.Time{"nightly": now}, wantNext: time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)},
		{name: "a week offline: still one run", pipes: []v1alpha1.DesiredPipeline{nightly},
			last: map[string]time.Time{"nightly": now.Add(-7 * 24 * time.Hour)}, want: []string{"nightly-sched-202611270300"},
			wantFired: map[string]time.Time{"nightly": now}, wantNext: time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)},
		{name: "not due yet", pipes: []v1alpha1.DesiredPipeline{nightly},
			last:      map[string]time.Time{"nightly": now.Add(-10 * time.Minute)},
			wantFired: map[string]time.Time{"nightly": now.Add(-10 * time.Minute)}, wantNext: time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)},
		{name: "drift and a new version", pipes: []v1alpha1.DesiredPipeline{retrain},
			events: []agent.Event{
				{Type: v1alpha1.TriggerDrift, Deployment: "fashion", Version: "1.1.0", At: alarm},
				{Type: v1alpha1.TriggerDrift, Deployment: "fashion", Version: "1.1.0", At: alarm}, // the same alarm again
				{Type: v1alpha1.TriggerNewVersion, Deployment: "fashion", Version: "1.2.0+build.7"},
				{Type: v1alpha1.TriggerDrift, Deployment: "other", At: alarm},
			},
			want: []string{"retrain-abc", "retrain-drift-1796263200", "retrain-newversion-1.2.0-build.7"}},
		{name: "a drift trigger that fires at the hub", pipes: []v1alpha1.DesiredPipeline{{Name: "central", Spec: v1alpha1.PipelineSpec{
			Triggers: []v1alpha1.PipelineTrigger{{Type: v1alpha1.TriggerDrift, Deployment: "fashion", FromClusters: &metav1.LabelSelector{}}}}}},
			events: []agent.Event{{Type: v1alpha1.TriggerDrift, Deployment: "fashion", At: alarm}}},
		{name: "events of pipelines without triggers", pipes: []v1alpha1.DesiredPipeline{nightly},
			last:      map[string]time.Time{"nightly": now},
			events:    []agent.Event{{Type: v1alpha1.TriggerDrift, Deployment: "fashion", At: alarm}},
			wantFired: map[string]time.Time{"nightly": now}, wantNext: time.Date(2026, 12, 4, 3, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			starts, fired, next := PlanRuns(tc.pipes, tc.last, tc.events, now)
			var got []string
			for _, s := range starts {
				got = append(got, s.Name)
				if msgs := validName(s.Name); msgs != "" {
					t.Errorf("run name %q: %s", s.Name, msgs)
				}
			}
			if strings.Join(got, " ") != strings.Join(tc.want, " ") {
				t.Errorf("runs %v, want %v", got, tc.want)
			}
			if len(fired) != len(tc.wantFired) {
				t.Errorf("fired %v, want %v", fired, tc.wantFired)
			}
			for k, v := range tc.wantFired {
				if !fired[k].Equal(v) {
					t.Errorf("fired[%s] = %v, want %v", k, fired[k], v)
				}
			}
			if !next.Equal(tc.wantNext) {
				t.Errorf("next %v, want %v", next, tc.wantNext)
			}
		})
	}
}

func validName(s string) string {
	r := &v1alpha1.PipelineRun{Spec: v1alpha1.PipelineRunSpec{Pipeline: "p", Cluster: "c"}}
	r.Name = s
	if err := r.Validate(); err != nil {
		return err.Error()
	}
	return ""
}

func TestRunNameLong(t *testing.T) {
	n := runName("p", "newversion", strings.Repeat("9", 300)+"+Build")
	if len(n) > 253 || validName(n) != "" {
		t.Fatalf("runName gives %q (%d): %s", n, len(n), validName(n))
	}
}
