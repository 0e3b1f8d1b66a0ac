package agent

import (
	"log/slog"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
)

// TestProgressEvery: fetch progress reaches the state at most every
// progressEvery of the agent's clock, and at once when forced.
func TestProgressEvery(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	c := clock.NewFake(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC))
	a, err := New(ctx, Config{Dir: dir, Name: "edge-1", Logger: slog.New(slog.DiscardHandler), Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	want := v1alpha1.DesiredModel{Deployment: "fashion", Model: "demo", Version: "1.0.0", Digest: digest.FromString("a").String()}
	doc := &v1alpha1.DesiredState{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindDesiredState, Cluster: "edge-1", Revision: 1,
		Models: []v1alpha1.DesiredModel{want}}
	if d, err := a.Apply(ctx, doc, SourceBundle); err != nil || d.Verdict != Apply {
		t.Fatalf("apply: %v %v", d.Verdict, err)
	}
	p := &progress{a: a, want: want, total: 1000}
	steps := []struct {
		name    string
		advance time.Duration
		force   bool
		want    int64 // bytes fetched in the state after adding 10
	}{
		{"first", 0, false, 10},
		{"too soon", progressEvery - time.Millisecond, false, 10},
		{"due", time.Millisecond, false, 30},
		{"too soon again", time.Millisecond, false, 30},
		{"forced", 0, true, 50},
	}
	for _, s := range steps {
		c.Advance(s.advance)
		p.add(ctx, 10)
		if s.force {
			p.flush(ctx, true)
		}
		if got := modelStatus(t, dir, "fashion").BytesFetched; got != s.want {
			t.Errorf("%s: %d bytes fetched in the state, want %d", s.name, got, s.want)
		}
	}
}
