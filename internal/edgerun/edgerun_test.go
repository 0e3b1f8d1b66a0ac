package edgerun_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/edgerun"
	"outpost.dev/outpost/internal/hub/hubtest"
	"outpost.dev/outpost/internal/pipeline"
	"outpost.dev/outpost/internal/schedule"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/zoo"
)

const retrainYAML = `apiVersion: ml.outpost.dev/v1alpha1
kind: Pipeline
metadata: {name: retrain}
spec:
  clusterSelectors: [{matchLabels: {region: eu}}]
  triggers: [{type: Drift, deployment: fashion}]
  steps:
  - {name: data, type: dataset, params: {path: "builtin:fashion-mnist", sample: "600"}}
  - {name: tune, type: finetune, inputs: {data: steps.data.outputs.train}, params: {deployment: fashion, epochs: "1"}}
  - {name: register, type: register, inputs: {model: steps.tune.outputs.model}, params: {model: fashion}}
`

// counter counts the hub's requests by method and path, those that carry a
// credential: an OCI client's first try without one, which the hub answers
// 401 with a challenge, does not count.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) see(r *http.Request) {
	if r.Header.Get("Authorization") == "" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[r.Method+" "+r.URL.Path]++
}

func (c *counter) get(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// TestDriftRetrainsAcrossLongPartition: a drift alarm raised on a cluster
// cut off from the hub starts its retrain pipeline there; the run finishes
// with no hub; after 20 minutes of partition (on the bubble's clock) the
// link returns, and the run and the version it registered reach the hub,
// the version's manifest and tag pushed exactly once.
func TestDriftRetrainsAcrossLongPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := hubtest.New(t)
		reqs := &counter{n: map[string]int{}}
		see := reqs.see
		h.OnRequest.Store(&see)
		m, b, err := zoo.Get("mlp")
		if err != nil {
			t.Fatal(err)
		}
		src := t.TempDir()
		if err := os.WriteFile(filepath.Join(src, m.File), b, 0o644); err != nil {
			t.Fatal(err)
		}
		h.Push(src, "fashion", "1.0.0")
		h.Apply(v1alpha1.PluralModelDeployments, "fashion", `apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata: {name: fashion}
spec:
  model: {name: fashion, version: "1.0.0"}
  clusterSelectors: [{matchLabels: {region: eu}}]
`)
		h.Apply(v1alpha1.PluralPipelines, "retrain", retrainYAML)

		dir := filepath.Join(t.TempDir(), "agent")
		log := slog.New(slog.DiscardHandler)
		var uploads atomic.Int64
		logs := slog.New(countHandler{msg: "uploaded a model produced here", n: &uploads})
		r := edgerun.New(dir, edgerun.Options{Interval: time.Second, RetryBase: time.Second, RetryMax: 30 * time.Second, Logger: logs})
		// Reports every 5 s: the run and its version reach the hub through the outbox, and
		// the 20 minutes of partition need no reports twice a second that fail.
		a, err := agent.New(t.Context(), agent.Config{
			Dir: dir, Hub: hubtest.URL, HTTPClient: h.Client, Name: "edge-1", Labels: map[string]string{"region": "eu"},
			JoinToken: h.JoinToken(), PollTimeout: 2 * time.Second, ReportInterval: 5 * time.Second,
			RetryBase: 100 * time.Millisecond, RetryMax: 5 * time.Second, AgentVersion: "test", Logger: log,
			OnEvent: r.Event, OnApplied: r.Poke,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		defer func() { cancel(); wg.Wait(); a.Close() }()
		wg.Go(func() { _ = a.Run(ctx) })
		<-a.Ready()
		eng, err := pipeline.Open(t.Context(), pipeline.Options{
			Dir: r.EngineDir(), Cluster: a.Name(), Host: r, OnUpdate: r.Updated, Logger: log,
			Capacity: schedule.Config{Allocatable: schedule.Resources{MilliCPU: 4000, Memory: 8 << 30}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		r.Attach(a, eng)
		wg.Go(func() { _ = eng.Run(ctx) })
		wg.Go(func() { _ = r.Run(ctx) })
		testenv.WaitFor(t, time.Minute, "fashion 1.0.0 active", func() bool {
			act := a.Active()
			return len(act) == 1 && act[0].Version == "1.0.0"
		})
		testenv.WaitFor(t, time.Minute, "the pipeline in the applied desired state", func() bool {
			p, err := a.DesiredPipelines(t.Context())
			return err == nil && len(p) == 1
		})

		h.Partition(true)
		since := time.Now()
		if err := a.SetDrift(t.Context(), map[string]agent.DriftState{"fashion": {Version: "1.0.0", Alarm: true, Since: since}}); err != nil {
			t.Fatal(err)
		}
		var run *v1alpha1.PipelineRun
		testenv.WaitFor(t, 10*time.Minute, "the triggered run finished, offline", func() bool {
			runs, err := eng.List(t.Context())
			if err != nil || len(runs) != 1 || !runs[0].Status.Phase.Finished() {
				return false
			}
			run = runs[0]
			return true
		})
		if run.Spec.Trigger != string(v1alpha1.TriggerDrift) || run.Status.Phase != v1alpha1.RunSucceeded || len(run.Status.Models) != 1 {
			t.Fatalf("run %s: trigger %s, phase %s, models %v", run.Name, run.Spec.Trigger, run.Status.Phase, run.Status.Models)
		}
		// The same alarm again (SetDrift follows every window) starts nothing new.
		if err := a.SetDrift(t.Context(), map[string]agent.DriftState{"fashion": {Version: "1.0.0", Alarm: true, Since: since}}); err != nil {
			t.Fatal(err)
		}
		produced := run.Status.Models[0]

		time.Sleep(20 * time.Minute) // the partition lasts, on the bubble's clock
		if runs, _ := eng.List(t.Context()); len(runs) != 1 {
			t.Fatalf("%d runs after the alarm was seen again, want 1", len(runs))
		}
		tagPath := "/v2/" + produced.Repository + "/manifests/" + produced.Version
		if n := reqs.get("PUT " + tagPath); n != 0 {
			t.Fatalf("the hub saw the tag %d times while cut off", n)
		}

		h.Partition(false)
		var hubRun v1alpha1.PipelineRun
		testenv.WaitFor(t, 5*time.Minute, "the hub has the run and the version", func() bool {
			code, b := h.API(http.MethodGet, "/pipelineruns/"+run.Name, "", nil)
			return code == http.StatusOK && json.Unmarshal(b, &hubRun) == nil && hubRun.Status.Phase == v1alpha1.RunSucceeded &&
				len(hubRun.Status.Models) == 1 && hubRun.Status.Models[0].Uploaded
		})
		desc, err := h.Repo(produced.Repository).Resolve(t.Context(), produced.Version)
		if err != nil || desc.Digest.String() != produced.Digest {
			t.Fatalf("the hub resolves %s:%s to %v, %v; want %s", produced.Repository, produced.Version, desc.Digest, err, produced.Digest)
		}
		time.Sleep(time.Minute) // more loops of the runner: nothing goes up again
		if n := reqs.get("PUT " + tagPath); n != 1 {
			t.Errorf("the tag was pushed %d times, want once", n)
		}
		if n := reqs.get("PUT /v2/" + produced.Repository + "/manifests/" + produced.Digest); n != 1 {
			t.Errorf("the manifest was pushed %d times, want once", n)
		}
		if n := uploads.Load(); n != 1 {
			t.Errorf("%d uploads logged, want 1", n)
		}
		if hubRun.Spec.Cluster != "edge-1" || hubRun.Spec.Trigger != string(v1alpha1.TriggerDrift) || !strings.HasPrefix(hubRun.Name, "retrain-drift-") {
			t.Errorf("the hub's run: %+v", hubRun.Spec)
		}
	})
}

// countHandler counts the records whose message is msg.
type countHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }
