package pipeline

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/testenv"
)

// retrain is the pipeline of the issue: data, fine-tune the served model,
// evaluate both, register and deploy the new one if it is better.
const retrain = `
steps:
- name: data
  type: dataset
  params: {path: "builtin:fashion-mnist", sample: "1500", seed: "3"}
- name: tune
  type: finetune
  inputs: {data: steps.data.outputs.train}
  params: {deployment: fashion, epochs: "2"}
- name: base
  type: evaluate
  inputs: {data: steps.data.outputs.test}
  params: {deployment: fashion}
- name: eval
  type: evaluate
  inputs: {data: steps.data.outputs.test, model: steps.tune.outputs.model}
- name: register
  type: register
  when: steps.eval.outputs.accuracy > steps.base.outputs.accuracy
  inputs: {model: steps.tune.outputs.model, metrics: steps.eval.outputs.accuracy, reference: steps.data.outputs.test}
- name: deploy
  type: deploy
  inputs: {version: steps.register.outputs.version}
  params: {deployment: fashion}
`

func TestRetrainPipeline(t *testing.T) {
	te := startEngine(t, t.TempDir())
	te.host.serve(t, "fashion", "1.2.0")
	r := te.run(t, "retrain-1", retrain, RunOptions{})
	if r.Status.Phase != v1alpha1.RunSucceeded {
		t.Fatalf("run %s: %s; steps %s; %+v", r.Status.Phase, r.Status.Message, phases(r), r.Status.Steps)
	}
	reg := step(t, r, "register")
	if want := "1.2.1-edge.1"; reg.Outputs["version"] != want || reg.Outputs["repository"] != "edge/edge-1/fashion" {
		t.Errorf("register outputs %v, want version %s of edge/edge-1/fashion", reg.Outputs, want)
	}
	if len(r.Status.Models) != 1 || r.Status.Models[0].Version != "1.2.1-edge.1" {
		t.Errorf("models %+v", r.Status.Models)
	}
	if got := strings.Join(te.host.deploys, ","); got != "fashion=1.2.1-edge.1" {
		t.Errorf("deploys %s", got)
	}
	// The version carries the reference profile of its test data, for drift monitoring.
	repo := te.Layout().Repository("edge/edge-1/fashion")
	desc, err := repo.Resolve(t.Context(), "1.2.1-edge.1")
	if err != nil {
		t.Fatal(err)
	}
	_, pb, err := artifact.LatestProfile(t.Context(), repo, desc)
	if err != nil {
		t.Fatalf("no reference profile: %v", err)
	}
	prof, err := drift.DecodeProfile(pb)
	if err != nil || prof.Samples() == 0 {
		t.Fatalf("reference profile: %v (%d samples)", err, prof.Samples())
	}
	t.Logf("%+v", r.Status.Steps)
	t.Log(logOf(t, te.Engine, "retrain-1", "tune"))
}

func TestDiamondOfCommands(t *testing.T) {
	te := startEngine(t, t.TempDir())
	r := te.run(t, "d1", `
steps:
- {name: a, type: exec, exec: {command: [sh, -c, "echo 20 > $OUTPOST_OUTPUTS/num"], outputs: [num]}}
- {name: b, type: exec, inputs: {num: steps.a.outputs.num}, exec: {command: [sh, -c, "echo $(( $(cat $OUTPOST_INPUT_NUM) + 1 )) > $OUTPOST_OUTPUTS/num"], outputs: [num]}}
- {name: c, type: exec, inputs: {num: steps.a.outputs.num}, exec: {command: [sh, -c, "echo $(( $(cat $OUTPOST_INPUT_NUM) * 2 )) > $OUTPOST_OUTPUTS/num"], outputs: [num]}}
- name: d
  type: exec
  inputs: {left: steps.b.outputs.num, right-side: steps.c.outputs.num}
  exec: {command: [sh, -c, "echo $(cat $OUTPOST_INPUT_LEFT)+$(cat $OUTPOST_INPUT_RIGHT_SIDE) > $OUTPOST_OUTPUTS/sum"], outputs: [sum]}
`, RunOptions{})
	if r.Status.Phase != v1alpha1.RunSucceeded {
		t.Fatalf("run %s: %s (%s)", r.Status.Phase, r.Status.Message, phases(r))
	}
	if got := step(t, r, "d").Outputs["sum"]; got != "21+40" {
		t.Fatalf("d's sum = %q, want 21+40", got)
	}
	for _, s := range r.Status.Steps {
		if s.Attempts != 1 || s.Cached {
			t.Errorf("step %s: %d attempts, cached %v", s.Name, s.Attempts, s.Cached)
		}
		// The status says how the command's limits were enforced.
		if !strings.HasPrefix(s.Message, "limits: ") || !(strings.Contains(s.Message, "rlimit") || strings.Contains(s.Message, "cgroup")) {
			t.Errorf("step %s: message %q does not say which limits applied", s.Name, s.Message)
		}
	}
}

func TestSkippedBranch(t *testing.T) {
	te := startEngine(t, t.TempDir())
	r := te.run(t, "s1", `
steps:
- {name: a, type: exec, exec: {command: [sh, -c, "echo 0.2 > $OUTPOST_OUTPUTS/score"], outputs: [score]}}
- {name: b, type: exec, when: "steps.a.outputs.score > 0.5", exec: {command: [sh, -c, "echo x > $OUTPOST_OUTPUTS/v"], outputs: [v]}}
- {name: c, type: exec, inputs: {in: steps.b.outputs.v}, exec: {command: ["true"]}}
- {name: e, type: exec, dependsOn: [b], exec: {command: ["true"]}}
`, RunOptions{})
	if got := phases(r); r.Status.Phase != v1alpha1.RunSucceeded || got != "a=Succeeded b=Skipped c=Skipped e=Succeeded" {
		t.Fatalf("run %s: %s", r.Status.Phase, got)
	}
	if m := step(t, r, "b").Message; !strings.Contains(m, "condition is false: steps.a.outputs.score > 0.5") {
		t.Errorf("b's message %q", m)
	}
	if m := step(t, r, "c").Message; !strings.Contains(m, `step "b", which was skipped`) {
		t.Errorf("c's message %q", m)
	}
	if a := step(t, r, "c").Attempts; a != 0 {
		t.Errorf("skipped c has %d attempts", a)
	}
}

func TestRetryThenSuccess(t *testing.T) {
	fake := clock.NewFake(time.Date(2031, 5, 6, 7, 0, 0, 0, time.UTC))
	te := startEngine(t, t.TempDir(), func(o *Options) { o.Clock = fake })
	mark := filepath.Join(t.TempDir(), "mark")
	spec := specOf(t, `
steps:
- name: flaky
  type: exec
  retries: {limit: 2, backoff: 30s}
  exec:
    command: [sh, -c, "if [ -e \"$MARK\" ]; then echo ok > $OUTPOST_OUTPUTS/r; else touch \"$MARK\"; echo broken >&2; exit 3; fi"]
    outputs: [r]
    env: {MARK: "`+mark+`"}
`)
	if _, err := te.Start(t.Context(), "r1", "p", 1, spec, "", RunOptions{}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, time.Minute, "the first attempt to fail", func() bool {
		r, _ := te.Get(t.Context(), "r1")
		return strings.Contains(r.Status.Steps[0].Message, "retry 1 of 2")
	})
	r, _ := te.Get(t.Context(), "r1")
	if s := r.Status.Steps[0]; s.Phase != v1alpha1.RunPending || !strings.Contains(s.Message, "exit status 3: broken") || !strings.Contains(s.Message, "07:00:30Z") {
		t.Fatalf("after the first attempt: %+v", s)
	}
	// Nothing starts before the backoff passed.
	if err := fake.WaitPending(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	fake.Advance(29 * time.Second)
	if r, _ := te.Get(t.Context(), "r1"); r.Status.Steps[0].Attempts != 1 {
		t.Fatalf("retried before its backoff: %+v", r.Status.Steps[0])
	}
	fake.Advance(time.Second)
	r = te.wait(t, "r1")
	// The failure's message is gone; the status says which limits applied.
	if s := r.Status.Steps[0]; r.Status.Phase != v1alpha1.RunSucceeded || s.Attempts != 2 || s.Outputs["r"] != "ok" || !strings.HasPrefix(s.Message, "limits: ") {
		t.Fatalf("run %s, step %+v", r.Status.Phase, s)
	}
}

func TestRetriesRunOut(t *testing.T) {
	te := startEngine(t, t.TempDir())
	r := te.run(t, "f1", `
steps:
- {name: bad, type: exec, retries: {limit: 1, backoff: 1ms}, exec: {command: [sh, -c, "echo no luck >&2; exit 4"]}}
- {name: after, type: exec, dependsOn: [bad], exec: {command: ["true"]}}
`, RunOptions{})
	bad := step(t, r, "bad")
	if r.Status.Phase != v1alpha1.RunFailed || bad.Phase != v1alpha1.RunFailed || bad.Attempts != 2 || !strings.Contains(bad.Message, "exit status 4: no luck") {
		t.Fatalf("run %s (%s), bad %+v", r.Status.Phase, r.Status.Message, bad)
	}
	if after := step(t, r, "after"); after.Phase != v1alpha1.RunSkipped || !strings.Contains(after.Message, `step "bad" failed`) {
		t.Fatalf("after %+v", after)
	}
	if !strings.Contains(r.Status.Message, `step "bad" failed`) {
		t.Errorf("run message %q", r.Status.Message)
	}
	tail, err := te.LogTail("f1", "bad", 300)
	if err != nil || !strings.Contains(tail, "attempt 2 failed: command failed: exit status 4: no luck") || strings.Contains(tail, "attempt 1 started") {
		t.Errorf("log tail %q, %v", tail, err)
	}
}

func TestTimeoutKillsTheCommand(t *testing.T) {
	te := startEngine(t, t.TempDir())
	pidFile := filepath.Join(t.TempDir(), "pid")
	r := te.run(t, "t1", `
steps:
- name: slow
  type: exec
  timeout: 300ms
  exec: {command: [sh, -c, "sleep 60 & echo $! > `+pidFile+`; wait"]}
`, RunOptions{})
	s := step(t, r, "slow")
	if r.Status.Phase != v1alpha1.RunFailed || s.Message != "timed out after 300ms" {
		t.Fatalf("run %s, step %+v", r.Status.Phase, s)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	testenv.WaitFor(t, 10*time.Second, "the command's child to be killed", func() bool {
		return syscall.Kill(pid, 0) != nil
	})
}

func TestStepThatNeverFits(t *testing.T) {
	te := startEngine(t, t.TempDir())
	r := te.run(t, "u1", `
steps:
- {name: big, type: exec, resources: {memory: 64Gi}, exec: {command: ["true"]}}
`, RunOptions{})
	s := step(t, r, "big")
	if r.Status.Phase != v1alpha1.RunFailed || !strings.Contains(s.Message, "spec.steps[0].resources.memory") || !strings.Contains(s.Message, "8Gi") {
		t.Fatalf("run %s, step %+v", r.Status.Phase, s)
	}
	if errs := CheckFits(specOf(t, "steps: [{name: g, type: exec, resources: {accelerators: [{type: nvidia.com/gpu, count: 1}]}, exec: {command: [x]}}]"), testCapacity); len(errs) != 1 ||
		!strings.Contains(errs[0].Error(), "spec.steps[0].resources.accelerators[0].count") {
		t.Fatalf("CheckFits of an accelerator the machine lacks: %v", errs)
	}
	if errs := CheckFits(specOf(t, "steps: [{name: g, type: exec, resources: {cpu: '64', minCPU: '2'}, exec: {command: [x]}}]"), testCapacity); len(errs) != 0 {
		t.Fatalf("CheckFits of a step whose minimum fits: %v", errs)
	}
}

// Starting a run name twice runs it once; a name of another pipeline is refused.
func TestStartIsIdempotent(t *testing.T) {
	te := startEngine(t, t.TempDir())
	marker := filepath.Join(t.TempDir(), "m")
	spec := specOf(t, `steps: [{name: a, type: exec, exec: {command: [sh, -c, "echo x >> `+marker+`"]}}]`)
	for range 3 {
		if _, err := te.Start(t.Context(), "once", "p", 1, spec, "", RunOptions{NoCache: true}); err != nil {
			t.Fatal(err)
		}
	}
	te.wait(t, "once")
	if _, err := te.Start(t.Context(), "once", "p", 1, spec, "", RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(marker); string(b) != "x\n" {
		t.Fatalf("marker %q: the run ran more than once", b)
	}
	if _, err := te.Start(t.Context(), "once", "other", 1, spec, "", RunOptions{}); err == nil || !strings.Contains(err.Error(), `of pipeline "p"`) {
		t.Fatalf("a name of another pipeline: %v", err)
	}
	if _, err := te.Start(t.Context(), "Bad_Name", "p", 1, spec, "", RunOptions{}); err == nil {
		t.Fatal("an invalid run name was accepted")
	}
	bad := specOf(t, `steps: [{name: a, type: exec}]`)
	if _, err := te.Start(t.Context(), "bad", "p", 1, bad, "", RunOptions{}); err == nil || !strings.Contains(err.Error(), "spec.steps[0].exec") {
		t.Fatalf("an invalid spec: %v", err)
	}
	runs, err := te.List(t.Context())
	if err != nil || len(runs) != 1 || runs[0].Spec.Trigger != v1alpha1.TriggeredLocal || runs[0].Labels[LabelPipeline] != "p" {
		t.Fatalf("List = %+v, %v", runs, err)
	}
	if _, err := te.Get(t.Context(), "nope"); !IsNotFound(err) {
		t.Fatalf("Get of no run: %v", err)
	}
}

// OnUpdate sees every change; the models a run registered wait for their
// upload until MarkUploaded.
func TestUpdatesAndUploads(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	te := startEngine(t, t.TempDir(), func(o *Options) {
		o.OnUpdate = func(r *v1alpha1.PipelineRun) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, string(r.Status.Phase)+":"+phases(r))
		}
	})
	te.host.serve(t, "fashion", "1.2.0")
	r := te.run(t, "up", retrain, RunOptions{})
	if r.Status.Phase != v1alpha1.RunSucceeded {
		t.Fatalf("run %s: %s", r.Status.Phase, phases(r))
	}
	// The run's last update may come a moment after Wait saw it end.
	var first, last string
	var n int
	testenv.WaitFor(t, time.Minute, "the update of the run's end", func() bool {
		mu.Lock()
		defer mu.Unlock()
		first, last, n = seen[0], seen[len(seen)-1], len(seen)
		return strings.HasPrefix(last, "Succeeded:")
	})
	// The first update is the run's start: Pending, or already Running when
	// the executor took it up before Start read it back, no step started.
	started := strings.HasPrefix(first, "Pending:") || strings.HasPrefix(first, "Running:") && !strings.Contains(first, "=Running")
	if !started || !strings.HasPrefix(last, "Succeeded:") || n < 2*len(r.Status.Steps) {
		t.Fatalf("%d updates, first %q, last %q", n, first, last)
	}
	pending, err := te.PendingUploads(t.Context())
	if err != nil || len(pending) != 1 {
		t.Fatalf("PendingUploads = %+v, %v", pending, err)
	}
	m := pending[0]
	if m.Repository != "edge/edge-1/fashion" || m.Run != "up" || m.Digest != r.Status.Models[0].Digest {
		t.Fatalf("pending %+v", m)
	}
	if _, err := os.Stat(m.File); err != nil {
		t.Fatalf("the model's file: %v", err)
	}
	if _, err := te.Layout().Repository(m.Repository).Resolve(t.Context(), m.Version); err != nil {
		t.Fatalf("the layout lacks %s:%s: %v", m.Repository, m.Version, err)
	}
	if err := te.MarkUploaded(t.Context(), m.Repository, m.Version); err != nil {
		t.Fatal(err)
	}
	if pending, _ := te.PendingUploads(t.Context()); len(pending) != 0 {
		t.Fatalf("still pending: %+v", pending)
	}
	if r, _ := te.Get(t.Context(), "up"); !r.Status.Models[0].Uploaded {
		t.Fatalf("run's model not marked: %+v", r.Status.Models)
	}
	mu.Lock()
	if len(seen) != n+1 {
		t.Errorf("MarkUploaded made %d updates, want 1", len(seen)-n)
	}
	mu.Unlock()
	if err := te.MarkUploaded(t.Context(), m.Repository, "9.9.9"); err == nil {
		t.Fatal("marked a version never registered")
	}
	repo := te.Layout().Repository(m.Repository)
	desc, err := repo.Resolve(t.Context(), m.Version)
	if err != nil {
		t.Fatal(err)
	}
	b, err := content.FetchAll(t.Context(), repo, desc)
	if err != nil {
		t.Fatal(err)
	}
	var manifest ocispec.Manifest
	if err := json.Unmarshal(b, &manifest); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"ml.outpost.dev/parent": "fashion:1.2.0", "ml.outpost.dev/produced-by": "pipelinerun/up",
		artifact.AnnotationCluster: "edge-1", artifact.AnnotationRun: "up", "ml.outpost.dev/metric.accuracy": step(t, r, "eval").Outputs["accuracy"],
		artifact.AnnotationDataset: step(t, r, "data").Outputs["train"]}
	for k, v := range want {
		if manifest.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, manifest.Annotations[k], v)
		}
	}
}
