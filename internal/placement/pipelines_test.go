package placement

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
)

func pipeline(name string, gen int64, sels ...map[string]string) v1alpha1.Pipeline {
	p := v1alpha1.Pipeline{ObjectMeta: metav1.ObjectMeta{Name: name, Generation: gen},
		Spec: v1alpha1.PipelineSpec{Steps: []v1alpha1.PipelineStep{{Name: "s", Type: v1alpha1.StepExec}}}}
	for _, l := range sels {
		p.Spec.ClusterSelectors = append(p.Spec.ClusterSelectors, metav1.LabelSelector{MatchLabels: l})
	}
	return p
}

func run(name, pipeline, cluster string, phase v1alpha1.RunPhase) v1alpha1.PipelineRun {
	return v1alpha1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.PipelineRunSpec{Pipeline: pipeline, Cluster: cluster}, Status: v1alpha1.PipelineRunStatus{Phase: phase}}
}

// placed summarises an assignment as cluster -> "pipeline@generation[runs]".
func placed(a PipelineAssignment) map[string][]string {
	out := map[string][]string{}
	for c, ps := range a.Pipelines {
		out[c] = []string{}
		for _, p := range ps {
			out[c] = append(out[c], p.Name+"@"+string(rune('0'+p.Generation))+"["+strings.Join(p.Runs, ",")+"]")
		}
	}
	return out
}

func TestPipelines(t *testing.T) {
	eu := map[string]string{"region": "eu"}
	tests := []struct {
		name      string
		pipelines []v1alpha1.Pipeline
		runs      []v1alpha1.PipelineRun
		want      map[string][]string
		selected  map[string][]string
		wantErr   string
	}{
		{name: "nothing", want: map[string][]string{"edge-a": {}, "edge-b": {}, "edge-c": {}, "lab": {}}, selected: map[string][]string{}},
		{name: "selectors ORed, sorted by name",
			pipelines: []v1alpha1.Pipeline{pipeline("zeta", 1, eu), pipeline("alpha", 2, map[string]string{"region": "us"}, map[string]string{"gpu": "true"})},
			want:      map[string][]string{"edge-a": {"zeta@1[]"}, "edge-b": {"alpha@2[]", "zeta@1[]"}, "edge-c": {"alpha@2[]"}, "lab": {}},
			selected:  map[string][]string{"alpha": {"edge-b", "edge-c"}, "zeta": {"edge-a", "edge-b"}}},
		{name: "runs go to their cluster's pipeline until finished",
			pipelines: []v1alpha1.Pipeline{pipeline("p", 3, eu)},
			runs: []v1alpha1.PipelineRun{
				run("p-2", "p", "edge-a", ""), run("p-1", "p", "edge-a", v1alpha1.RunRunning), run("p-3", "p", "edge-b", v1alpha1.RunPending),
				run("p-old", "p", "edge-a", v1alpha1.RunSucceeded), run("p-bad", "p", "edge-b", v1alpha1.RunFailed),
				run("p-us", "p", "edge-c", ""), // the pipeline does not select edge-c
				run("q-1", "q", "edge-a", ""),  // no such pipeline
				func() v1alpha1.PipelineRun { // the agent started it: it knows of it
					r := run("p-sched", "p", "edge-a", v1alpha1.RunRunning)
					r.Spec.Trigger = v1alpha1.TriggeredSchedule
					return r
				}(),
				func() v1alpha1.PipelineRun {
					r := run("p-manual", "p", "edge-b", v1alpha1.RunRunning)
					r.Spec.Trigger = v1alpha1.TriggeredManual
					return r
				}(),
			},
			want:     map[string][]string{"edge-a": {"p@3[p-1,p-2]"}, "edge-b": {"p@3[p-3,p-manual]"}, "edge-c": {}, "lab": {}},
			selected: map[string][]string{"p": {"edge-a", "edge-b"}}},
		{name: "an invalid selector leaves its pipeline out",
			pipelines: []v1alpha1.Pipeline{pipeline("good", 1, eu), {ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Spec: v1alpha1.PipelineSpec{
				ClusterSelectors: []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}}}}},
			want:     map[string][]string{"edge-a": {"good@1[]"}, "edge-b": {"good@1[]"}, "edge-c": {}, "lab": {}},
			selected: map[string][]string{"good": {"edge-a", "edge-b"}}, wantErr: `pipeline "bad"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Pipelines(tt.pipelines, tt.runs, fleet)
			if (err != nil) != (tt.wantErr != "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if got := placed(a); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("placed %v, want %v", got, tt.want)
			}
			if !reflect.DeepEqual(a.Selected, tt.selected) {
				t.Errorf("selected %v, want %v", a.Selected, tt.selected)
			}
		})
	}
}

// The desired pipelines are copies: changing them changes no input.
func TestPipelinesCopySpecs(t *testing.T) {
	ps := []v1alpha1.Pipeline{pipeline("p", 1, map[string]string{"region": "eu"})}
	a, err := Pipelines(ps, nil, fleet)
	if err != nil {
		t.Fatal(err)
	}
	a.Pipelines["edge-a"][0].Spec.Steps[0].Name = "changed"
	if ps[0].Spec.Steps[0].Name != "s" || a.Pipelines["edge-b"][0].Spec.Steps[0].Name != "s" {
		t.Error("a desired pipeline shares its spec")
	}
}

func q(s string) *resource.Quantity { v := resource.MustParse(s); return &v }

func withCapacity(name, cpu, mem string, accel ...v1alpha1.Accelerator) v1alpha1.Cluster {
	c := cluster(name, nil)
	if cpu != "" {
		c.Status.Capacity.CPU = q(cpu)
	}
	if mem != "" {
		c.Status.Capacity.Memory = q(mem)
	}
	c.Status.Capacity.Accelerators = accel
	return c
}

func step(name, cpu, mem string, accel ...v1alpha1.Accelerator) v1alpha1.PipelineStep {
	st := v1alpha1.PipelineStep{Name: name, Type: v1alpha1.StepExec, Resources: v1alpha1.StepResources{Accelerators: accel}}
	if cpu != "" {
		st.Resources.CPU = q(cpu)
	}
	if mem != "" {
		st.Resources.Memory = q(mem)
	}
	return st
}

func TestPipelineFits(t *testing.T) {
	gpu := func(n int64) v1alpha1.Accelerator { return v1alpha1.Accelerator{Type: "nvidia.com/gpu", Count: n} }
	ship1 := withCapacity("ship-1", "4", "16Gi")
	ship2 := withCapacity("ship-2", "8", "8Gi", gpu(1))
	unknown := cluster("new", nil)
	cpuOnly := withCapacity("cpu-only", "2", "")
	tests := []struct {
		name     string
		steps    []v1alpha1.PipelineStep
		clusters []v1alpha1.Cluster
		want     []string // the errors, as Error() says them
	}{
		{name: "fits one", steps: []v1alpha1.PipelineStep{step("a", "", ""), step("b", "2", "12Gi")}, clusters: []v1alpha1.Cluster{ship1, ship2}},
		{name: "more memory than any", steps: []v1alpha1.PipelineStep{step("a", "", ""), step("b", "", ""), step("c", "1", "64Gi")},
			clusters: []v1alpha1.Cluster{ship1, ship2, unknown},
			want:     []string{`spec.steps[2].resources.memory: Invalid value: "64Gi": more than any selected cluster has (largest: 16Gi on ship-1)`}},
		{name: "more cpu than any", steps: []v1alpha1.PipelineStep{step("a", "16", "")}, clusters: []v1alpha1.Cluster{ship1, ship2},
			want: []string{`spec.steps[0].resources.cpu: Invalid value: "16": more than any selected cluster has (largest: 8 on ship-2)`}},
		{name: "more gpus than any", steps: []v1alpha1.PipelineStep{step("a", "", "", gpu(2))}, clusters: []v1alpha1.Cluster{ship1, ship2},
			want: []string{`spec.steps[0].resources.accelerators[0].count: Invalid value: 2: more nvidia.com/gpu than any selected cluster has (largest: 1 on ship-2)`}},
		{name: "each alone fits, not together", steps: []v1alpha1.PipelineStep{step("a", "", "12Gi", gpu(1))}, clusters: []v1alpha1.Cluster{ship1, ship2},
			want: []string{`spec.steps[0].resources: Invalid value: "memory 12Gi, nvidia.com/gpu 1": no selected cluster has all of it at once ` +
				`(ship-1: resources.accelerators[0].count 1 is more nvidia.com/gpu than the cluster has (0); ship-2: resources.memory 12Gi is more than the cluster has (8Gi))`}},
		{name: "no cluster reports capacity", steps: []v1alpha1.PipelineStep{step("a", "64", "1Ti", gpu(8))}, clusters: []v1alpha1.Cluster{unknown}},
		{name: "no cluster selected", steps: []v1alpha1.PipelineStep{step("a", "64", "1Ti")}},
		{name: "an unreported dimension fits anything", steps: []v1alpha1.PipelineStep{step("a", "1", "1Ti")}, clusters: []v1alpha1.Cluster{ship1, cpuOnly}},
		{name: "every misfit step named", steps: []v1alpha1.PipelineStep{step("a", "9", ""), step("b", "", "17Gi")}, clusters: []v1alpha1.Cluster{ship1, ship2},
			want: []string{
				`spec.steps[0].resources.cpu: Invalid value: "9": more than any selected cluster has (largest: 8 on ship-2)`,
				`spec.steps[1].resources.memory: Invalid value: "17Gi": more than any selected cluster has (largest: 16Gi on ship-1)`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := v1alpha1.PipelineSpec{Steps: tt.steps}
			var got []string
			for _, fe := range PipelineFits(&spec, tt.clusters) {
				got = append(got, fe.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("PipelineFits =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestRunFits(t *testing.T) {
	spec := v1alpha1.PipelineSpec{Steps: []v1alpha1.PipelineStep{step("prep", "1", "1Gi"), step("train", "2", "32Gi")}}
	errs := RunFits(&spec, "retrain", ptr(withCapacity("ship-1", "4", "16Gi")))
	if len(errs) != 1 || errs[0].Field != "spec.cluster" ||
		!strings.Contains(errs[0].Error(), `step "train" of pipeline "retrain" does not fit the cluster: spec.steps[1].resources.memory: Invalid value: "32Gi": more than the cluster has (16Gi)`) {
		t.Errorf("RunFits = %v", errs)
	}
	if errs := RunFits(&spec, "retrain", ptr(cluster("new", nil))); errs != nil {
		t.Errorf("a cluster that reports no capacity refused: %v", errs)
	}
	if errs := RunFits(&spec, "retrain", ptr(withCapacity("big", "64", "256Gi"))); errs != nil {
		t.Errorf("a cluster big enough refused: %v", errs)
	}
}

func ptr[T any](v T) *T { return &v }

func TestDriftRuns(t *testing.T) {
	since := time.Unix(1796263200, 0)
	clusters := []v1alpha1.Cluster{
		cluster("ship-1", map[string]string{"tier": "edge", "fleet": "a"}),
		cluster("ship-2", map[string]string{"tier": "edge", "fleet": "b"}),
		cluster("core-1", map[string]string{"tier": "core", "site": "dc1"}),
		cluster("core-2", map[string]string{"tier": "core"}),
	}
	pipe := func(name string, targets map[string]string, triggers ...v1alpha1.PipelineTrigger) v1alpha1.Pipeline {
		p := v1alpha1.Pipeline{Spec: v1alpha1.PipelineSpec{ClusterSelectors: []metav1.LabelSelector{{MatchLabels: targets}}, Triggers: triggers}}
		p.Name = name
		return p
	}
	edge := &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "edge"}}
	fleetA := &metav1.LabelSelector{MatchLabels: map[string]string{"fleet": "a"}}
	core := map[string]string{"tier": "core"}
	for _, tc := range []struct {
		name  string
		pipes []v1alpha1.Pipeline
		from  string
		want  []string // name@cluster
	}{
		{"a pipeline that selects no cluster", []v1alpha1.Pipeline{pipe("central", map[string]string{"tier": "core", "x": "y"},
			v1alpha1.PipelineTrigger{Type: v1alpha1.TriggerDrift, Deployment: "fashion", FromClusters: edge})},
			"ship-1", nil},
		{"several targets are named apart", []v1alpha1.Pipeline{pipe("retrain", core,
			v1alpha1.PipelineTrigger{Type: v1alpha1.TriggerDrift, Deployment: "fashion", FromClusters: edge})},
			"ship-2", []string{"retrain-drift-ship-2-core-1-1796263200@core-1", "retrain-drift-ship-2-core-2-1796263200@core-2"}},
		{"a single target is not named", []v1alpha1.Pipeline{pipe("retrain", map[string]string{"site": "dc1"},
			v1alpha1.PipelineTrigger{Type: v1alpha1.TriggerDrift, Deployment: "fashion", FromClusters: fleetA})},
			"ship-1", []string{"retrain-drift-ship-1-1796263200@core-1"}},
		{"fromClusters does not select the drifting cluster", []v1alpha1.Pipeline{pipe("retrain", core,
			v1alpha1.PipelineTrigger{Type: v1alpha1.TriggerDrift, Deployment: "fashion", FromClusters: fleetA})},
			"ship-2", nil},
		{"a trigger without fromClusters fires at the edge only", []v1alpha1.Pipeline{pipe("retrain", core,
			v1alpha1.PipelineTrigger{Type: v1alpha1.TriggerDrift, Deployment: "fashion"})},
			"ship-1", nil},
		{"another deployment", []v1alpha1.Pipeline{pipe("retrain", core,
			v1alpha1.PipelineTrigger{Type: v1alpha1.TriggerDrift, Deployment: "shoes", FromClusters: edge})},
			"ship-1", nil},
		{"two triggers, one run per target", []v1alpha1.Pipeline{pipe("retrain", map[string]string{"kubernetes.io/name": "x"}), pipe("solo", map[string]string{"tier": "core"},
			v1alpha1.PipelineTrigger{Type: v1alpha1.TriggerDrift, Deployment: "fashion", FromClusters: edge},
			v1alpha1.PipelineTrigger{Type: v1alpha1.TriggerDrift, Deployment: "fashion", FromClusters: fleetA})},
			"ship-1", []string{"solo-drift-ship-1-core-1-1796263200@core-1", "solo-drift-ship-1-core-2-1796263200@core-2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var labels map[string]string
			for _, c := range clusters {
				if c.Name == tc.from {
					labels = c.Labels
				}
			}
			runs, err := DriftRuns(tc.pipes, clusters, "fashion", tc.from, labels, since)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range runs {
				got = append(got, r.Name+"@"+r.Spec.Cluster)
				if !Requested(&r) || r.Labels[v1alpha1.LabelDriftCluster] != tc.from || r.Spec.Trigger != string(v1alpha1.TriggerDrift) {
					t.Errorf("run %s: requested %v, labels %v, trigger %s", r.Name, Requested(&r), r.Labels, r.Spec.Trigger)
				}
				if err := r.Validate(); err != nil {
					t.Errorf("run %s: %v", r.Name, err)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("runs %v, want %v", got, tc.want)
			}
		})
	}
}
