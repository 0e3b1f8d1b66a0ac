package v1alpha1

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

const goodPipeline = `
apiVersion: ml.outpost.dev/v1alpha1
kind: Pipeline
metadata: {name: retrain}
spec:
  clusterSelectors: [{matchLabels: {site: ship}}]
  schedule: "0 3 * * *"
  triggers: [{type: Drift, deployment: fmnist}]
  steps:
  - name: data
    type: dataset
    params: {split: "0.8"}
  - name: tune
    type: finetune
    inputs: {data: steps.data.outputs.train}
    params: {deployment: fmnist, epochs: "2"}
    retries: {limit: 2, backoff: 1s}
    timeout: 10m
    resources: {cpu: "1", memory: 512Mi, minMemory: 128Mi}
  - name: base
    type: evaluate
    inputs: {data: steps.data.outputs.test}
    params: {deployment: fmnist}
  - name: eval
    type: evaluate
    inputs: {data: steps.data.outputs.test, model: steps.tune.outputs.model}
  - name: register
    type: register
    when: steps.eval.outputs.accuracy > steps.base.outputs.accuracy
    inputs: {model: steps.tune.outputs.model}
    params: {model: fmnist}
  - name: deploy
    type: deploy
    inputs: {version: steps.register.outputs.version}
    params: {deployment: fmnist}
  - name: report
    type: exec
    dependsOn: [deploy]
    exec: {command: [sh, -c, "echo done > $OUTPOST_OUTPUTS/msg"], outputs: [msg]}
`

func decodePipeline(t *testing.T, s string) *Pipeline {
	t.Helper()
	var p Pipeline
	if err := yaml.UnmarshalStrict([]byte(s), &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func TestPipelineValid(t *testing.T) {
	p := decodePipeline(t, goodPipeline)
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	idx := map[string]int{}
	for i, s := range p.Spec.Steps {
		idx[s.Name] = i
	}
	if got := p.Spec.Needs(idx["register"]); strings.Join(got, ",") != "base,eval,tune" {
		t.Errorf("Needs(register) = %v, want [base eval tune]", got)
	}
}

func TestPipelineInvalid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(p *Pipeline)
		want   string // the field named, and part of the message
	}{
		{"cycle", func(p *Pipeline) { p.Spec.Steps[0].DependsOn = []string{"report"} },
			"spec.steps[0].dependsOn: Invalid value: \"data\": the steps form a cycle: data -> report -> deploy -> register"},
		{"self dependency", func(p *Pipeline) { p.Spec.Steps[1].DependsOn = []string{"tune"} }, "spec.steps[1].dependsOn[0]: Invalid value: \"tune\": a step cannot depend on itself"},
		{"unknown step type", func(p *Pipeline) { p.Spec.Steps[1].Type = "fintune" }, `spec.steps[1].type: Unsupported value: "fintune"`},
		{"unknown input step", func(p *Pipeline) { p.Spec.Steps[3].Inputs["model"] = "steps.tuen.outputs.model" }, `spec.steps[3].inputs[model]: Not found: "tuen"`},
		{"unknown output", func(p *Pipeline) { p.Spec.Steps[3].Inputs["model"] = "steps.tune.outputs.modle" }, `spec.steps[3].inputs[model]: Invalid value: "steps.tune.outputs.modle": step "tune" (finetune) has no output "modle"`},
		{"malformed reference", func(p *Pipeline) { p.Spec.Steps[3].Inputs["model"] = "tune.model" }, `spec.steps[3].inputs[model]: Invalid value: "tune.model"`},
		{"unknown input name", func(p *Pipeline) { p.Spec.Steps[3].Inputs["weights"] = "steps.tune.outputs.model" }, `spec.steps[3].inputs[weights]: Unsupported value: "weights"`},
		{"missing input", func(p *Pipeline) { delete(p.Spec.Steps[1].Inputs, "data") }, `spec.steps[1].inputs[data]: Required value`},
		{"unknown param", func(p *Pipeline) { p.Spec.Steps[1].Params["epoch"] = "3" }, `spec.steps[1].params[epoch]: Unsupported value: "epoch"`},
		{"bad condition", func(p *Pipeline) { p.Spec.Steps[4].When = "steps.eval.outputs.accuracy = 1" }, `spec.steps[4].when: Invalid value`},
		{"condition on unknown step", func(p *Pipeline) { p.Spec.Steps[4].When = "steps.evl.outputs.accuracy > 1" }, `spec.steps[4].when: Not found: "evl"`},
		{"unknown dependency", func(p *Pipeline) { p.Spec.Steps[6].DependsOn = []string{"deplo"} }, `spec.steps[6].dependsOn[0]: Not found: "deplo"`},
		{"duplicate name", func(p *Pipeline) { p.Spec.Steps[2].Name = "tune" }, `spec.steps[2].name: Duplicate value: "tune"`},
		{"bad schedule", func(p *Pipeline) { p.Spec.Schedule = "every day" }, `spec.schedule: Invalid value: "every day"`},
		{"exec without command", func(p *Pipeline) { p.Spec.Steps[6].Exec = nil }, `spec.steps[6].exec: Required value`},
		{"command on a builtin", func(p *Pipeline) { p.Spec.Steps[0].Exec = &ExecStep{Command: []string{"true"}} }, `spec.steps[0].exec: Forbidden`},
		{"retries", func(p *Pipeline) { p.Spec.Steps[1].Retries.Limit = 11 }, `spec.steps[1].retries.limit: Invalid value: 11`},
		{"min above request", func(p *Pipeline) { q := resource.MustParse("1Gi"); p.Spec.Steps[1].Resources.MinMemory = &q }, `spec.steps[1].resources.minMemory: Invalid value: "1Gi": must not exceed memory`},
		{"trigger", func(p *Pipeline) { p.Spec.Triggers[0].Type = "Cron" }, `spec.triggers[0].type: Unsupported value: "Cron"`},
		{"hub trigger of a new version", func(p *Pipeline) {
			p.Spec.Triggers[0].Type, p.Spec.Triggers[0].FromClusters = TriggerNewVersion, &metav1.LabelSelector{}
		}, `spec.triggers[0].fromClusters: Forbidden: only a Drift trigger fires at the hub`},
		{"hub trigger selector", func(p *Pipeline) {
			p.Spec.Triggers[0].FromClusters = &metav1.LabelSelector{MatchLabels: map[string]string{"bad key!": "x"}}
		}, `spec.triggers[0].fromClusters`},
		{"no steps", func(p *Pipeline) { p.Spec.Steps = nil }, `spec.steps: Required value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := decodePipeline(t, goodPipeline)
			tc.mutate(p)
			err := p.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v\nwant an error containing %q", err, tc.want)
			}
		})
	}
}

func TestStepFits(t *testing.T) {
	p := decodePipeline(t, goodPipeline)
	cpu, mem := resource.MustParse("2"), resource.MustParse("256Mi")
	c := &Capacity{CPU: &cpu, Memory: &mem}
	fe := p.Spec.Steps[1].Fits(c, field.NewPath("spec", "steps").Index(1))
	if fe == nil || fe.Field != "spec.steps[1].resources.memory" {
		t.Fatalf("Fits = %v, want memory refused", fe)
	}
	if fe := p.Spec.Steps[0].Fits(c, field.NewPath("x")); fe != nil {
		t.Fatalf("a step with no requests does not fit: %v", fe)
	}
	p.Spec.Steps[0].Resources.Accelerators = []Accelerator{{Type: "nvidia.com/gpu", Count: 1}}
	if fe := p.Spec.Steps[0].Fits(c, field.NewPath("x")); fe == nil || !strings.Contains(fe.Error(), "nvidia.com/gpu") {
		t.Fatalf("a GPU step fits a cluster without GPU: %v", fe)
	}
}

func TestPipelineRunValidate(t *testing.T) {
	r := &PipelineRun{Spec: PipelineRunSpec{Pipeline: "retrain", Cluster: "ship-1"}}
	r.Name = "retrain-1"
	r.Default()
	if err := r.Validate(); err != nil || r.Spec.Trigger != TriggeredManual {
		t.Fatalf("Validate = %v, trigger %q", err, r.Spec.Trigger)
	}
	r.Spec.Cluster = ""
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "spec.cluster: Required") {
		t.Fatalf("Validate = %v", err)
	}
}
