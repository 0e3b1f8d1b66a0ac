package hub

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/store"
)

// pipelineYAML is a two-step pipeline selecting selectors, whose train step asks for memory.
func pipelineYAML(name, selectors, memory string) string {
	return fmt.Sprintf(`apiVersion: ml.outpost.dev/v1alpha1
kind: Pipeline
metadata: {name: %s}
spec:
  clusterSelectors: %s
  steps:
  - name: prep
    type: exec
    exec: {command: ["true"]}
  - name: train
    type: exec
    dependsOn: [prep]
    exec: {command: ["true"]}
    resources: {memory: %s}
`, name, selectors, memory)
}

func runYAML(name, pipeline, cluster string) string {
	return fmt.Sprintf("apiVersion: ml.outpost.dev/v1alpha1\nkind: PipelineRun\nmetadata: {name: %s}\nspec: {pipeline: %s, cluster: %s}\n",
		name, pipeline, cluster)
}

// pipelines summarises a desired state's pipelines as "name@generation[runs]".
func pipelines(ds v1alpha1.DesiredState) string {
	var s []string
	for _, p := range ds.Pipelines {
		s = append(s, fmt.Sprintf("%s@%d[%s]", p.Name, p.Generation, strings.Join(p.Runs, ",")))
	}
	return strings.Join(s, ",")
}

func (e *env) pipeline(name string) *v1alpha1.Pipeline {
	e.t.Helper()
	o, err := e.db.Get(e.t.Context(), v1alpha1.KindPipeline, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return o.(*v1alpha1.Pipeline)
}

func (e *env) run(name string) *v1alpha1.PipelineRun {
	e.t.Helper()
	o, err := e.db.Get(e.t.Context(), v1alpha1.KindPipelineRun, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return o.(*v1alpha1.PipelineRun)
}

// rows lists the clusters of a pipeline's status rows.
func rows(p *v1alpha1.Pipeline) []string {
	var out []string
	for _, r := range p.Status.Clusters {
		out = append(out, r.Cluster)
	}
	return out
}

// setRunPhase replaces a run's status phase through the API.
func (e *env) setRunPhase(name string, phase v1alpha1.RunPhase) {
	e.t.Helper()
	r := e.run(name)
	r.Status.Phase = phase
	b, err := json.Marshal(r)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp := e.do(http.MethodPut, "/pipelineruns/"+name+"/status", "writer", "application/json", b); resp.code != http.StatusOK {
		e.t.Fatalf("PUT status = %d %s", resp.code, resp.body)
	}
}

// Pipelines and the runs requested at the hub reach the desired state of the clusters they
// select, and each change moves the revision of those clusters alone.
func TestPipelinesInDesiredState(t *testing.T) {
	e := newEnv(t, nil)
	e.mustPut("clusters", "edge-1", clusterYAML("edge-1", "region: eu"))
	e.mustPut("clusters", "edge-2", clusterYAML("edge-2", "region: eu"))
	e.mustPut("clusters", "edge-3", clusterYAML("edge-3", "region: us"))
	revs := func() map[string]int64 {
		out := map[string]int64{}
		for _, c := range []string{"edge-1", "edge-2", "edge-3"} {
			out[c] = e.desired(c).Revision
		}
		return out
	}
	steps := []struct {
		name    string
		do      func()
		want    map[string]string // cluster -> pipelines
		changed []string          // the clusters whose revision moves
	}{
		{"a pipeline for eu", func() {
			e.mustPut("pipelines", "retrain", pipelineYAML("retrain", "[{matchLabels: {region: eu}}]", "1Gi"))
		},
			map[string]string{"edge-1": "retrain@1[]", "edge-2": "retrain@1[]", "edge-3": ""}, []string{"edge-1", "edge-2"}},
		{"another for us, sorted by name", func() {
			e.mustPut("pipelines", "collect", pipelineYAML("collect", "[{matchLabels: {region: us}}, {matchLabels: {region: eu}}]", "1Gi"))
		},
			map[string]string{"edge-1": "collect@1[],retrain@1[]", "edge-2": "collect@1[],retrain@1[]", "edge-3": "collect@1[]"}, []string{"edge-1", "edge-2", "edge-3"}},
		{"the same again", func() {
			e.mustPut("pipelines", "retrain", pipelineYAML("retrain", "[{matchLabels: {region: eu}}]", "1Gi"))
		},
			map[string]string{"edge-1": "collect@1[],retrain@1[]", "edge-2": "collect@1[],retrain@1[]", "edge-3": "collect@1[]"}, nil},
		{"a spec change", func() {
			e.mustPut("pipelines", "retrain", pipelineYAML("retrain", "[{matchLabels: {region: eu}}]", "2Gi"))
		},
			map[string]string{"edge-1": "collect@1[],retrain@2[]", "edge-2": "collect@1[],retrain@2[]", "edge-3": "collect@1[]"}, []string{"edge-1", "edge-2"}},
		{"a run on edge-1", func() { e.mustPut("pipelineruns", "retrain-1", runYAML("retrain-1", "retrain", "edge-1")) },
			map[string]string{"edge-1": "collect@1[],retrain@2[retrain-1]", "edge-2": "collect@1[],retrain@2[]", "edge-3": "collect@1[]"}, []string{"edge-1"}},
		{"it runs", func() { e.setRunPhase("retrain-1", v1alpha1.RunRunning) },
			map[string]string{"edge-1": "collect@1[],retrain@2[retrain-1]", "edge-2": "collect@1[],retrain@2[]", "edge-3": "collect@1[]"}, nil},
		{"it finishes", func() { e.setRunPhase("retrain-1", v1alpha1.RunSucceeded) },
			map[string]string{"edge-1": "collect@1[],retrain@2[]", "edge-2": "collect@1[],retrain@2[]", "edge-3": "collect@1[]"}, []string{"edge-1"}},
		{"a run requested, then deleted", func() {
			e.mustPut("pipelineruns", "retrain-2", runYAML("retrain-2", "retrain", "edge-2"))
			if r := e.do(http.MethodDelete, "/pipelineruns/retrain-2", "writer", "", nil); r.code != http.StatusOK {
				t.Fatalf("delete = %d %s", r.code, r.body)
			}
		}, map[string]string{"edge-1": "collect@1[],retrain@2[]", "edge-2": "collect@1[],retrain@2[]", "edge-3": "collect@1[]"}, []string{"edge-2"}},
		{"a relabelled cluster", func() { e.mustPut("clusters", "edge-2", clusterYAML("edge-2", "region: us")) },
			map[string]string{"edge-1": "collect@1[],retrain@2[]", "edge-2": "collect@1[]", "edge-3": "collect@1[]"}, []string{"edge-2"}},
		{"a deleted pipeline", func() {
			if r := e.do(http.MethodDelete, "/pipelines/collect", "writer", "", nil); r.code != http.StatusOK {
				t.Fatalf("delete = %d %s", r.code, r.body)
			}
		}, map[string]string{"edge-1": "retrain@2[]", "edge-2": "", "edge-3": ""}, []string{"edge-1", "edge-2", "edge-3"}},
	}
	for _, st := range steps {
		before := revs()
		st.do()
		after := revs()
		for c, want := range st.want {
			if got := pipelines(e.desired(c)); got != want {
				t.Errorf("%s: %s runs %q, want %q", st.name, c, got, want)
			}
			if moved := after[c] != before[c]; moved != slices.Contains(st.changed, c) {
				t.Errorf("%s: %s revision %d -> %d", st.name, c, before[c], after[c])
			}
		}
	}
	p := e.pipeline("retrain")
	if got := rows(p); !slices.Equal(got, []string{"edge-1"}) || p.Status.ObservedGeneration != 2 {
		t.Errorf("retrain status %+v, want a row for edge-1 at generation 2", p.Status)
	}
	spec := e.desired("edge-1").Pipelines[0].Spec
	if len(spec.Steps) != 2 || spec.Steps[1].Resources.Memory.String() != "2Gi" {
		t.Errorf("the desired state's spec %+v", spec)
	}
}

// setCapacity sets a cluster's reported capacity through the API.
func (e *env) setCapacity(name, cpu, memory string) {
	e.t.Helper()
	body := fmt.Sprintf("apiVersion: ml.outpost.dev/v1alpha1\nkind: Cluster\nmetadata: {name: %s}\nstatus:\n  capacity: {cpu: %q, memory: %q}\n", name, cpu, memory)
	if r := e.do(http.MethodPut, "/clusters/"+name+"/status", "writer", "application/yaml", []byte(body)); r.code != http.StatusOK {
		e.t.Fatalf("PUT status = %d %s", r.code, r.body)
	}
}

// A pipeline no selected cluster can hold, and a run the hub could not place, are refused
// naming the field, and change nothing.
func TestPipelineApplyRefusals(t *testing.T) {
	e := newEnv(t, nil)
	e.mustPut("clusters", "ship-1", clusterYAML("ship-1", "fleet: ships"))
	e.mustPut("clusters", "ship-2", clusterYAML("ship-2", "fleet: ships"))
	e.mustPut("clusters", "new", clusterYAML("new", `fleet: ships, fresh: "yes"`))
	e.mustPut("clusters", "lab", clusterYAML("lab", "fleet: lab"))
	e.setCapacity("ship-1", "4", "16Gi")
	e.setCapacity("ship-2", "8", "8Gi")
	e.mustPut("pipelines", "small", pipelineYAML("small", "[{matchLabels: {fleet: ships}}]", "12Gi"))
	e.mustPut("pipelines", "anywhere", pipelineYAML("anywhere", "[{matchLabels: {fresh: \"yes\"}}]", "1Ti"))
	tests := []struct {
		name, plural, obj, body, want string
	}{
		{"a step more than any cluster has", "pipelines", "big", pipelineYAML("big", "[{matchLabels: {fleet: ships}}]", "64Gi"),
			`spec.steps[1].resources.memory: Invalid value: "64Gi": more than any selected cluster has (largest: 16Gi on ship-1)`},
		{"a run of no pipeline", "pipelineruns", "r1", runYAML("r1", "nope", "ship-1"), `spec.pipeline: Not found: "nope"`},
		{"a run on no cluster", "pipelineruns", "r1", runYAML("r1", "small", "ghost"), `spec.cluster: Not found: "ghost"`},
		{"a run on a cluster not selected", "pipelineruns", "r1", runYAML("r1", "small", "lab"),
			`spec.cluster: Invalid value: "lab": pipeline "small" does not select cluster "lab" (its clusterSelectors: {fleet=ships})`},
		{"a run that does not fit", "pipelineruns", "r1", runYAML("r1", "small", "ship-2"),
			`spec.cluster: Invalid value: "ship-2": step "train" of pipeline "small" does not fit the cluster: spec.steps[1].resources.memory: Invalid value: "12Gi": more than the cluster has (8Gi)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.revision()
			r := e.put(tt.plural, tt.obj, tt.body)
			if r.code != http.StatusUnprocessableEntity || !strings.Contains(statusMessage(t, r.body), tt.want) {
				t.Fatalf("PUT = %d %s, want 422 saying %s", r.code, r.body, tt.want)
			}
			if rev := e.revision(); rev != before {
				t.Errorf("a refusal moved the revision from %d to %d", before, rev)
			}
		})
	}
	// What fits is placed: a cluster that reports no capacity refuses nothing.
	e.mustPut("pipelineruns", "ok", runYAML("ok", "small", "ship-1"))
	e.mustPut("pipelineruns", "fresh", runYAML("fresh", "anywhere", "new"))
	if got := pipelines(e.desired("new")); got != "anywhere@1[fresh],small@1[]" {
		t.Errorf("new runs %q", got)
	}
	// Applied again unchanged, a run is not checked again; its pipeline and cluster stay.
	e.setCapacity("ship-1", "4", "1Gi")
	e.mustPut("pipelineruns", "ok", runYAML("ok", "small", "ship-1"))
	for _, body := range []string{runYAML("ok", "anywhere", "ship-1"), runYAML("ok", "small", "ship-2")} {
		if r := e.put("pipelineruns", "ok", body); r.code != http.StatusUnprocessableEntity || !strings.Contains(statusMessage(t, r.body), "does not change") {
			t.Errorf("moving a run = %d %s", r.code, r.body)
		}
	}
}

// desired reads a cluster's desired state as the admin.
func (e *agentEnv) desired(cluster string) v1alpha1.DesiredState {
	e.t.Helper()
	r := e.do(http.MethodGet, "/clusters/"+cluster+"/desiredstate?timeoutSeconds=0", e.admin, "", nil)
	if r.code != http.StatusOK {
		e.t.Fatalf("desiredstate %s = %d %s", cluster, r.code, r.body)
	}
	return decodeJSON[v1alpha1.DesiredState](e.t, r.body)
}

// runRecord is a pipeline.run outbox record of run r, with key.
func runRecord(t testing.TB, key string, r *v1alpha1.PipelineRun) v1alpha1.OutboxRecord {
	t.Helper()
	b, err := v1alpha1.PipelineRunRecord(r)
	if err != nil {
		t.Fatal(err)
	}
	return v1alpha1.OutboxRecord{Key: key, Kind: v1alpha1.RecordKindPipelineRun, Payload: b}
}

func edgeRun(name, pipeline, cluster, trigger string, seq int64, phase v1alpha1.RunPhase, started time.Time) *v1alpha1.PipelineRun {
	r := &v1alpha1.PipelineRun{Spec: v1alpha1.PipelineRunSpec{Pipeline: pipeline, Cluster: cluster, Trigger: trigger},
		Status: v1alpha1.PipelineRunStatus{Phase: phase, Sequence: seq, Steps: []v1alpha1.StepStatus{{Name: "prep", Phase: phase}}}}
	r.Name = name
	if !started.IsZero() {
		st := metav1.NewTime(started)
		r.Status.StartTime = &st
	}
	return r
}

// newRunEnv is a hub with clusters edge-1 and edge-2 (region eu) joined and pipeline
// "retrain" selecting them.
func newRunEnv(t testing.TB) (*agentEnv, map[string]string) {
	t.Helper()
	e := newAgentEnv(t, nil)
	tok := e.createToken(3600, "").Token
	creds := map[string]string{}
	for _, c := range []string{"edge-1", "edge-2"} {
		creds[c] = e.mustJoin(tok, c, map[string]string{"region": "eu"})
	}
	e.applyAsAdmin("pipelines", "retrain", pipelineYAML("retrain", "[{matchLabels: {region: eu}}]", "1Gi"))
	return e, creds
}

// The runs an agent reports reach the hub: the newest update of each, the pipeline's row of
// the cluster, and the desired state, which names a requested run until it finishes.
func TestPipelineRunRecords(t *testing.T) {
	e, creds := newRunEnv(t)
	start := time.Date(2031, 5, 6, 8, 0, 0, 0, time.UTC)
	e.applyAsAdmin("pipelineruns", "retrain-1", runYAML("retrain-1", "retrain", "edge-1"))
	if got := pipelines(e.desired("edge-1")); got != "retrain@1[retrain-1]" {
		t.Fatalf("desired %q", got)
	}
	row := func() v1alpha1.PipelineClusterStatus {
		t.Helper()
		for _, r := range e.pipeline("retrain").Status.Clusters {
			if r.Cluster == "edge-1" {
				return r
			}
		}
		t.Fatal("no row of edge-1")
		return v1alpha1.PipelineClusterStatus{}
	}

	running := edgeRun("retrain-1", "retrain", "edge-1", v1alpha1.TriggeredManual, 1, v1alpha1.RunRunning, start)
	running.Status.Steps[0].LogTail = strings.Repeat("x", 3*v1alpha1.MaxStepLogTailBytes) + "last line"
	rev := e.desiredRevision("edge-1")
	if got := outcomeList(e.send(creds["edge-1"], "edge-1", runRecord(t, "r1-1", running))); got != "Applied" {
		t.Fatalf("outcome %s", got)
	}
	r := e.run("retrain-1")
	if r.Status.Phase != v1alpha1.RunRunning || r.Status.Sequence != 1 || r.Spec.Trigger != v1alpha1.TriggeredManual {
		t.Errorf("run %+v", r)
	}
	if tail := r.Status.Steps[0].LogTail; len(tail) != v1alpha1.MaxStepLogTailBytes || !strings.HasSuffix(tail, "last line") {
		t.Errorf("log tail of %d bytes kept", len(tail))
	}
	if rw := row(); rw.LastRun != "retrain-1" || rw.Phase != v1alpha1.RunRunning || rw.LastUpdate == nil || !rw.LastUpdate.Time.Equal(e.clock.Now().Truncate(time.Second)) {
		t.Errorf("row %+v", rw)
	}
	if e.desiredRevision("edge-1") != rev {
		t.Error("a run that keeps running moved the desired state")
	}

	done := edgeRun("retrain-1", "retrain", "edge-1", v1alpha1.TriggeredManual, 3, v1alpha1.RunSucceeded, start)
	late := edgeRun("retrain-1", "retrain", "edge-1", v1alpha1.TriggeredManual, 2, v1alpha1.RunRunning, start)
	if got := outcomeList(e.send(creds["edge-1"], "edge-1", runRecord(t, "r1-3", done), runRecord(t, "r1-2", late), runRecord(t, "r1-1", running))); got != "Applied Applied Duplicate" {
		t.Fatalf("outcomes %s", got)
	}
	if r := e.run("retrain-1"); r.Status.Phase != v1alpha1.RunSucceeded || r.Status.Sequence != 3 {
		t.Errorf("an older update replaced a newer one: %+v", r.Status)
	}
	if got := pipelines(e.desired("edge-1")); got != "retrain@1[]" || e.desiredRevision("edge-1") == rev {
		t.Errorf("a finished run stays in the desired state: %q", got)
	}
	if rw := row(); rw.Phase != v1alpha1.RunSucceeded {
		t.Errorf("row %+v", rw)
	}

	// A run the agent started itself is created at the hub, and is the newest run on edge-1.
	rev = e.desiredRevision("edge-1")
	sched := edgeRun("retrain-edge-1-0300", "retrain", "edge-1", v1alpha1.TriggeredSchedule, 1, v1alpha1.RunRunning, start.Add(time.Hour))
	if got := outcomeList(e.send(creds["edge-1"], "edge-1", runRecord(t, "s-1", sched))); got != "Applied" {
		t.Fatalf("outcome %s", got)
	}
	if r := e.run("retrain-edge-1-0300"); r.Spec.Trigger != v1alpha1.TriggeredSchedule || r.Status.Phase != v1alpha1.RunRunning || r.UID == "" {
		t.Errorf("created %+v", r)
	}
	if rw := row(); rw.LastRun != "retrain-edge-1-0300" || rw.Phase != v1alpha1.RunRunning {
		t.Errorf("row %+v", rw)
	}
	if got := pipelines(e.desired("edge-1")); got != "retrain@1[]" || e.desiredRevision("edge-1") != rev {
		t.Errorf("a run the agent started went into its desired state: %q", got)
	}
	// An update of an older run does not take the row back.
	older := edgeRun("retrain-1", "retrain", "edge-1", v1alpha1.TriggeredManual, 4, v1alpha1.RunFailed, start)
	e.send(creds["edge-1"], "edge-1", runRecord(t, "r1-4", older))
	if rw := row(); rw.LastRun != "retrain-edge-1-0300" {
		t.Errorf("row %+v went back to an older run", rw)
	}
	// A local run of a pipeline the hub does not have is kept too, with no trigger said Local.
	local := edgeRun("try-1", "scratch", "edge-1", "", 1, v1alpha1.RunSucceeded, start)
	if got := outcomeList(e.send(creds["edge-1"], "edge-1", runRecord(t, "l-1", local))); got != "Applied" {
		t.Fatalf("outcome %s", got)
	}
	if r := e.run("try-1"); r.Spec.Trigger != v1alpha1.TriggeredLocal {
		t.Errorf("local run %+v", r.Spec)
	}
}

// Records the hub must not apply are refused, for good, and write nothing.
func TestPipelineRunRecordRefusals(t *testing.T) {
	e, creds := newRunEnv(t)
	e.applyAsAdmin("pipelineruns", "retrain-2", runYAML("retrain-2", "retrain", "edge-2"))
	start := time.Date(2031, 5, 6, 8, 0, 0, 0, time.UTC)
	claims := edgeRun("r-models", "retrain", "edge-1", v1alpha1.TriggeredLocal, 1, v1alpha1.RunSucceeded, start)
	claims.Status.Models = []v1alpha1.ProducedModel{{Repository: "edge/edge-2/fmnist", Version: "1.0.0", Digest: "sha256:00"}}
	tests := []struct {
		name string
		rec  v1alpha1.OutboxRecord
		want string
	}{
		{"another cluster's run", runRecord(t, "a", edgeRun("r-x", "retrain", "edge-2", v1alpha1.TriggeredLocal, 1, v1alpha1.RunRunning, start)),
			`pipeline run "r-x" is of cluster "edge-2", and cluster "edge-1" sent it`},
		{"another cluster's run the hub requested", runRecord(t, "b", edgeRun("retrain-2", "retrain", "edge-1", v1alpha1.TriggeredManual, 1, v1alpha1.RunRunning, start)),
			`executes pipeline "retrain" on cluster "edge-2" at the hub`},
		{"not a run", v1alpha1.OutboxRecord{Key: "c", Kind: v1alpha1.RecordKindPipelineRun, Payload: json.RawMessage(`{"metadata":{"name":"x"}}`)},
			"spec.pipeline: Required value"},
		{"a bad phase", v1alpha1.OutboxRecord{Key: "d", Kind: v1alpha1.RecordKindPipelineRun,
			Payload: json.RawMessage(`{"metadata":{"name":"x"},"spec":{"pipeline":"retrain","cluster":"edge-1"},"status":{"phase":"Asleep"}}`)}, "status.phase"},
		{"models in another cluster's repositories", runRecord(t, "e", claims), "a cluster registers models under edge/edge-1/ only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.revision()
			res := e.send(creds["edge-1"], "edge-1", tt.rec)
			if res[0].Outcome != v1alpha1.OutboxRefused || !strings.Contains(res[0].Message, tt.want) {
				t.Fatalf("result %+v, want refused saying %q", res[0], tt.want)
			}
			// Only the record's outcome is written: no resource, no desired state.
			if rev := e.revision(); rev != before {
				t.Errorf("a refused record moved the revision from %d to %d", before, rev)
			}
		})
	}
	if r := e.run("retrain-2"); r.Status.Phase != "" {
		t.Errorf("edge-2's run changed: %+v", r.Status)
	}
}

// A cluster that joins later gets the pipelines that select it, and a row in each.
func TestJoinPlacesPipelines(t *testing.T) {
	e, _ := newRunEnv(t)
	tok := e.createToken(3600, "").Token
	e.mustJoin(tok, "edge-3", map[string]string{"region": "eu"})
	if got := pipelines(e.desired("edge-3")); got != "retrain@1[]" {
		t.Errorf("edge-3 desired %q", got)
	}
	if got := rows(e.pipeline("retrain")); !slices.Equal(got, []string{"edge-1", "edge-2", "edge-3"}) {
		t.Errorf("rows %v", got)
	}
	e.mustJoin(tok, "edge-3", map[string]string{"region": "us"})
	if got := rows(e.pipeline("retrain")); !slices.Equal(got, []string{"edge-1", "edge-2"}) {
		t.Errorf("rows after leaving %v", got)
	}
	after := e.revision()
	if err := e.db.Update(t.Context(), func(tx *store.Tx) error { return e.srv.reconcile(t.Context(), tx) }); err != nil {
		t.Fatal(err)
	}
	if e.revision() != after {
		t.Error("a full reconcile after the joins found work left")
	}
}

// Whatever an agent sends as a pipeline run, the hub applies it or refuses it, never fails
// the batch, and keeps what it stores valid.
func FuzzPipelineRunRecord(f *testing.F) {
	f.Add([]byte(`{"metadata":{"name":"r"},"spec":{"pipeline":"retrain","cluster":"edge-1","trigger":"Schedule"},"status":{"phase":"Running","sequence":2}}`))
	f.Add([]byte(`{"metadata":{"name":"r"},"spec":{"pipeline":"retrain","cluster":"edge-1"},"status":{"phase":"Succeeded","sequence":3,"steps":[{"name":"a","phase":"Succeeded","logTail":"ok"}]}}`))
	f.Add([]byte(`{"metadata":{"name":"q"},"spec":{"pipeline":"other","cluster":"edge-1","trigger":"Local"},"status":{"models":[{"repository":"edge/edge-1/m","version":"1.0.0","digest":"sha256:0"}]}}`))
	f.Add([]byte(`null`))
	fe, _ := newRunEnv(f)
	n := 0
	f.Fuzz(func(t *testing.T, payload []byte) {
		n++
		te := *fe.env
		te.t = t
		e := &agentEnv{env: &te, admin: fe.admin, clock: fe.clock, base: fe.base}
		before := e.revision()
		resp, err := e.srv.ApplyOutbox(t.Context(), "edge-1", []v1alpha1.OutboxRecord{{Key: fmt.Sprint(n), Kind: v1alpha1.RecordKindPipelineRun, Payload: payload}})
		if err != nil {
			t.Fatalf("ApplyOutbox: %v", err)
		}
		switch res := resp.Results[0]; res.Outcome {
		case v1alpha1.OutboxApplied:
			objs, _, err := e.db.List(t.Context(), v1alpha1.KindPipelineRun, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				if err := o.Validate(); err != nil {
					t.Fatalf("stored %v", err)
				}
			}
			if err := e.pipeline("retrain").Validate(); err != nil {
				t.Fatal(err)
			}
		case v1alpha1.OutboxRefused:
			if e.revision() != before || res.Message == "" {
				t.Fatalf("refused (%q), but the revision went from %d to %d", res.Message, before, e.revision())
			}
		default:
			t.Fatalf("outcome %+v", res)
		}
	})
}
