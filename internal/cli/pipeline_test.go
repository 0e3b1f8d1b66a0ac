package cli

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/pipeline"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/train"
)

// writePipeline writes a Pipeline file.
func writePipeline(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pipeline.yaml")
	if err := os.WriteFile(path, []byte("apiVersion: ml.outpost.dev/v1alpha1\nkind: Pipeline\n"+body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const shipPipeline = `metadata: {name: ship}
spec:
  steps:
  - {name: data, type: dataset, params: {sample: "600"}}
  - {name: train, type: train, inputs: {data: steps.data.outputs.train}, params: {sizes: 784-16-10}}
  - {name: eval, type: evaluate, inputs: {data: steps.data.outputs.test, model: steps.train.outputs.model}}
  - {name: register, type: register, inputs: {model: steps.train.outputs.model}, params: {model: fashion}}
  - {name: deploy, type: deploy, inputs: {version: steps.register.outputs.version}, params: {deployment: fashion}}
`

// fashionDir is a data folder in Fashion-MNIST's files, as Debian ships
// it: the embedded subset's.
func fashionDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("..", "dataset", "testdata")
	for _, pair := range [][2]string{
		{"fashion-train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz"},
		{"fashion-train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"},
		{"fashion-test-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"},
		{"fashion-test-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz"},
	} {
		b, err := os.ReadFile(filepath.Join(src, pair[0]))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, pair[1]), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// `outpost pipeline run -f` runs a pipeline offline, showing each step;
// runs, describe and logs read what it left.
func TestPipelineRunOffline(t *testing.T) {
	file, dir, data := writePipeline(t, shipPipeline), t.TempDir(), fashionDir(t)
	out := mustCLI(t, "pipeline", "run", "-f", file, "--data", data, "--dir", dir, "--name", "ship-1")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^run ship-1 of pipeline ship on .* in ` + regexp.QuoteMeta(filepath.Join(dir, "pipelines")) + `$`),
		regexp.MustCompile(`(?m)^ +[0-9.]+s  data +Running +attempt 1$`),
		regexp.MustCompile(`(?m)^ +[0-9.]+s  data +Succeeded +samples=600 test=sha256:[0-9a-f]{12}… train=sha256:[0-9a-f]{12}…$`),
		regexp.MustCompile(`(?m)^ +[0-9.]+s  eval +Succeeded +accuracy=0\.[0-9]{4} loss=[0-9.]+ samples=[0-9]+$`),
		regexp.MustCompile(`(?m)^deployment fashion: edge/[a-z0-9-]+/fashion:0\.1\.0-edge\.1 recorded; no agent runs here`),
		regexp.MustCompile(`(?m)^run ship-1 Succeeded in `),
		regexp.MustCompile(`(?m)^registered edge/[a-z0-9-]+/fashion:0\.1\.0-edge\.1 \(sha256:[0-9a-f]{64}\)$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("run output lacks %s:\n%s", want, out)
		}
	}

	out = mustCLI(t, "pipeline", "run", "-f", file, "--data", data, "--dir", dir, "--name", "ship-2")
	// Every step is cached but the deploy: with no agent, nothing serves
	// what the first run recorded, and the deploy records it again.
	if n := strings.Count(out, " cached "); n != 4 || !regexp.MustCompile(`(?m)^ +[0-9.]+s  deploy +Succeeded +previous= version=0\.1\.0-edge\.1$`).MatchString(out) {
		t.Errorf("second run: %d cached steps, want 4 and the deploy recorded again:\n%s", n, out)
	}

	out = mustCLI(t, "pipeline", "runs", "--dir", dir)
	if !regexp.MustCompile(`(?m)^NAME +PIPELINE +CLUSTER +PHASE +STEPS +AGE\nship-2 +ship +\S+ +Succeeded +5/5 +\d+s\nship-1 +ship`).MatchString(out) {
		t.Errorf("runs:\n%s", out)
	}
	out = mustCLI(t, "pipeline", "describe", "ship-1", "--dir", dir)
	for _, want := range []string{"Phase:     Succeeded", "(not uploaded yet)", "STEP      PHASE      ATTEMPTS  CACHED", "train     Succeeded  1         no", "eval.accuracy", "register.version     0.1.0-edge.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
	if out := mustCLI(t, "pipeline", "describe", "ship-1", "--dir", dir, "-o", "yaml"); !strings.Contains(out, "kind: PipelineRun") {
		t.Errorf("describe -o yaml:\n%s", out)
	}
	if out := mustCLI(t, "pipeline", "logs", "ship-1", "train", "--dir", dir); !regexp.MustCompile(`(?m)^\S+Z  epoch 1/1: loss`).MatchString(out) {
		t.Errorf("logs:\n%s", out)
	}
	failCLI(t, `run ship-1 has no step "nope"`, "pipeline", "logs", "ship-1", "nope", "--dir", dir)
	failCLI(t, `run "nope"`, "pipeline", "describe", "nope", "--dir", dir)
}

// A fine-tune step reads the model --model says a deployment serves.
func TestPipelineRunWithModel(t *testing.T) {
	model := filepath.Join(t.TempDir(), "fashion.onnx")
	b, err := train.NewMLP([]int{784, 16, 10}, 3).MarshalONNX("fashion")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(model, b, 0o644)
	file := writePipeline(t, `metadata: {name: tune}
spec:
  steps:
  - {name: data, type: dataset, params: {path: "builtin:fashion-mnist", sample: "500"}}
  - {name: tune, type: finetune, inputs: {data: steps.data.outputs.train}, params: {deployment: fashion, lastLayers: "1"}}
  - {name: register, type: register, inputs: {model: steps.tune.outputs.model}}
`)
	dir := t.TempDir()
	failCLI(t, `no deployment "fashion" on this machine (run the agent, or give its model with --model fashion=FILE.onnx@VERSION)`,
		"pipeline", "run", "-f", file, "--dir", dir)
	out := mustCLI(t, "pipeline", "run", "-f", file, "--dir", dir, "--model", "fashion="+model+"@1.4.2")
	if !strings.Contains(out, "base=fashion@1.4.2") || !regexp.MustCompile(`registered edge/\S+/fashion:1\.4\.3-edge\.2 `).MatchString(out) {
		t.Errorf("output:\n%s", out)
	}
}

func TestPipelineRunRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown step type", []string{"-f", writePipeline(t, "metadata: {name: p}\nspec: {steps: [{name: a, type: bake}]}\n")},
			`spec.steps[0].type: Unsupported value: "bake"`},
		{"not a pipeline", []string{"-f", writePipeline(t, "metadata: {name: p}\nspec: {steps: []}\n")}, "spec.steps: Required value"},
		{"too big for the machine", []string{"-f", writePipeline(t, "metadata: {name: p}\nspec: {steps: [{name: a, type: exec, exec: {command: ['true']}, resources: {memory: 100Ti}}]}\n")},
			"cannot run on this machine"},
		{"failing step", []string{"-f", writePipeline(t, "metadata: {name: p}\nspec: {steps: [{name: a, type: exec, exec: {command: [sh, -c, 'echo broke >&2; exit 3']}}]}\n")},
			"failed: step a: command failed: exit status 3: broke"},
		{"no file", nil, "-f PIPELINE.yaml is required"},
		{"bad --model", []string{"-f", writePipeline(t, shipPipeline), "--model", "fashion"}, "want DEPLOYMENT=FILE.onnx@VERSION"},
		{"a hub pipeline without a cluster", []string{"retrain"}, "runs on a cluster (--cluster)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			failCLI(t, tc.want, append([]string{"pipeline", "run", "--dir", dir}, tc.args...)...)
		})
	}
	failCLI(t, "spec.steps[0].resources.memory", "pipeline", "run", "--dir", dir, "-f",
		writePipeline(t, "metadata: {name: p}\nspec: {steps: [{name: a, type: exec, exec: {command: ['true']}, resources: {memory: 100Ti}}]}\n"))
	failCLI(t, "no pipeline runs in", "pipeline", "runs", "--dir", t.TempDir())
}

// stepLines returns "step phase" of each progress line of a run's output.
func stepLines(out string) []string {
	re := regexp.MustCompile(`(?m)^ +[0-9.]+s  (\S+) +(\S+)`)
	var lines []string
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		lines = append(lines, m[1]+" "+m[2])
	}
	return lines
}

// docs/pipelines.md's example runs as written and prints what the page shows.
func TestPipelinesDocExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "pipelines.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(doc), "\n## Running a pipeline at the edge\n")
	if !ok {
		t.Fatal("docs/pipelines.md has no section 'Running a pipeline at the edge'")
	}
	_, yml, _ := strings.Cut(sec, "```yaml\n")
	yml, _, _ = strings.Cut(yml, "```")
	_, console, _ := strings.Cut(sec, "```console\n")
	console, _, _ = strings.Cut(console, "```")
	if yml == "" || console == "" {
		t.Fatal("the section lacks its yaml or console block")
	}
	file := filepath.Join(t.TempDir(), "fashion-local.yaml")
	os.WriteFile(file, []byte(yml), 0o644)
	out := mustCLI(t, "pipeline", "run", "-f", file, "--dir", t.TempDir())
	if got, want := strings.Join(stepLines(out), "\n"), strings.Join(stepLines(console), "\n"); got != want {
		t.Errorf("steps:\n%s\nthe page shows:\n%s", got, want)
	}
	if !regexp.MustCompile(`(?m)^registered edge/\S+/fashion:0\.1\.0-edge\.1 `).MatchString(out) {
		t.Errorf("output:\n%s", out)
	}
}

// While the agent runs (it holds the engine of its folder), `outpost
// pipeline run -f` hands the run to it and follows it step by step.
func TestPipelineRunHandsToAgent(t *testing.T) {
	dir := t.TempDir()
	eng, err := pipeline.Open(t.Context(), pipeline.Options{Dir: filepath.Join(dir, pipelinesDir), Cluster: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()
	probe, err := pipeline.Open(t.Context(), pipeline.Options{Dir: filepath.Join(dir, pipelinesDir), Cluster: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the engine holds its folder", probe.Busy)
	probe.Close()

	file := writePipeline(t, `metadata: {name: echo}
spec:
  steps:
  - {name: hello, type: exec, exec: {command: [sh, -c, "echo hi > $OUTPOST_OUTPUTS/word"], outputs: [word]}}
`)
	out := mustCLI(t, "pipeline", "run", "-f", file, "--dir", dir, "--name", "echo-1")
	for _, want := range []string{"the agent running in " + dir + " executes the run", "hello", "Succeeded"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	r, err := eng.Get(t.Context(), "echo-1")
	if err != nil || r.Status.Phase != v1alpha1.RunSucceeded || r.Status.Steps[0].Outputs["word"] != "hi" {
		t.Fatalf("the agent's engine has run echo-1 as %+v, %v", r, err)
	}
}

// The pipeline scheduler's memory is the cluster's as the agent reports it:
// declared with --memory, else the machine's.
func TestPipelineCapacityMemory(t *testing.T) {
	pf := pipelineFlags{reserveCPU: "500m", reserveMemory: "64Mi"}
	measured, err := pf.capacity()
	if err != nil {
		t.Fatal(err)
	}
	if want := pipeline.DetectCapacity().Memory; measured.Allocatable.Memory != want {
		t.Errorf("measured: %d bytes, want the machine's %d", measured.Allocatable.Memory, want)
	}
	pf.memory = 512 << 20
	declared, err := pf.capacity()
	if err != nil {
		t.Fatal(err)
	}
	if declared.Allocatable.Memory != 512<<20 || declared.ServingReserve.Memory != 64<<20 {
		t.Errorf("declared 512Mi: %+v", declared)
	}
}
