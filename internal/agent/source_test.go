package agent

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/testenv"
)

// chanSource is a DesiredSource fed by the test, one document at a time.
type chanSource struct{ docs chan *v1alpha1.DesiredState }

func (s chanSource) Desired(ctx context.Context, after int64) (*v1alpha1.DesiredState, error) {
	select {
	case d := <-s.docs:
		return d, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (chanSource) Source() Source { return "test" }

// lastSink keeps the last report it took.
type lastSink struct {
	mu   sync.Mutex
	last *v1alpha1.AgentReport
}

func (s *lastSink) Report(ctx context.Context, r *v1alpha1.AgentReport) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = r
	return nil
}

func (s *lastSink) get() *v1alpha1.AgentReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// TestAgentOtherDesiredSource: with a desired state source and a report
// sink of its own, the agent applies what the source delivers through the
// version guard (a stale document is refused and counted), fetches from
// the hub's registry, reports to the sink, and never long-polls the hub.
func TestAgentOtherDesiredSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t)
		src := t.TempDir()
		v1, v2 := filepath.Join(src, "v1"), filepath.Join(src, "v2")
		writeModel(t, v1, v2)
		d1 := h.push(v1, "m", "1.0.0")
		d2 := h.push(v2, "m", "2.0.0")
		var polls atomic.Int64
		count := func(r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/desiredstate") {
				polls.Add(1)
			}
		}
		h.OnRequest.Store(&count)
		docs := chanSource{docs: make(chan *v1alpha1.DesiredState)}
		sink := &lastSink{}
		cfg := agentConfig(h, filepath.Join(t.TempDir(), "agent"), h.joinToken())
		cfg.Desired, cfg.Reports = docs, sink
		a, stop, _ := startAgent(t, cfg)
		defer stop()
		doc := func(rev int64, version, dg string) *v1alpha1.DesiredState {
			return &v1alpha1.DesiredState{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindDesiredState, Cluster: "edge-1", Revision: rev,
				Models: []v1alpha1.DesiredModel{{Deployment: "d", Model: "m", Version: version, Digest: dg}}}
		}
		docs.docs <- doc(20, "2.0.0", d2.Digest.String())
		row := func() (v1alpha1.ModelReport, int64) {
			r := sink.get()
			if r == nil || len(r.Models) != 1 {
				return v1alpha1.ModelReport{}, 0
			}
			return r.Models[0], r.RejectedStale
		}
		testenv.WaitFor(t, time.Minute, "2.0.0 active and reported to the sink", func() bool {
			m, _ := row()
			return m.ActiveVersion == "2.0.0" && m.Phase == v1alpha1.PhaseActive
		})
		docs.docs <- doc(19, "1.0.0", d1.Digest.String())
		testenv.WaitFor(t, time.Minute, "the stale document refused and counted", func() bool {
			m, stale := row()
			return stale == 1 && m.ActiveVersion == "2.0.0"
		})
		if got := a.Active(); len(got) != 1 || got[0].Version != "2.0.0" {
			t.Fatalf("active %+v, want d at 2.0.0", got)
		}
		if n := polls.Load(); n != 0 {
			t.Errorf("the agent long-polled the hub %d times", n)
		}
	})
}
