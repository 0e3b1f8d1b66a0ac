package pipeline

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"outpost.dev/outpost/api/v1alpha1"
)

var t0 = time.Date(2031, 5, 6, 7, 0, 0, 0, time.UTC)

const (
	pend = v1alpha1.RunPending
	runn = v1alpha1.RunRunning
	succ = v1alpha1.RunSucceeded
	fail = v1alpha1.RunFailed
	skip = v1alpha1.RunSkipped
)

// diamond: a feeds b and c, which feed d.
const diamond = `
steps:
- {name: a, type: exec, exec: {command: ["true"], outputs: [x]}}
- {name: b, type: exec, inputs: {in: steps.a.outputs.x}, exec: {command: ["true"], outputs: [out]}}
- {name: c, type: exec, inputs: {in: steps.a.outputs.x}, exec: {command: ["true"], outputs: [out]}}
- {name: d, type: exec, inputs: {l: steps.b.outputs.out, r: steps.c.outputs.out}, exec: {command: ["true"]}}
`

// branch: a gates b with a condition; c reads b's output, e only follows
// b, f follows a.
const branch = `
steps:
- {name: a, type: exec, exec: {command: ["true"], outputs: [score]}}
- {name: b, type: exec, when: "steps.a.outputs.score > 0.5", exec: {command: ["true"], outputs: [v]}}
- {name: c, type: exec, inputs: {in: steps.b.outputs.v}, exec: {command: ["true"]}}
- {name: e, type: exec, dependsOn: [b], exec: {command: ["true"]}}
- {name: f, type: exec, dependsOn: [a], exec: {command: ["true"]}}
`

// st builds step states: "S" succeeded, "F" failed, "K" skipped, "R"
// running, "B" busy, "P" pending.
func st(codes string, outputs ...map[string]string) []StepState {
	out := make([]StepState, len(codes))
	for i, c := range codes {
		switch c {
		case 'S':
			out[i].Phase = succ
		case 'F':
			out[i].Phase = fail
		case 'K':
			out[i].Phase = skip
		case 'R':
			out[i].Phase = runn
		case 'B':
			out[i].Phase, out[i].Busy = pend, true
		default:
			out[i].Phase = pend
		}
		if i < len(outputs) {
			out[i].Outputs = outputs[i]
		}
	}
	return out
}

func verdicts(p Plan) string {
	var parts []string
	for _, v := range p.Finish {
		parts = append(parts, fmt.Sprintf("%d:%s", v.Step, v.Phase))
	}
	return strings.Join(parts, " ")
}

func TestDecide(t *testing.T) {
	x := map[string]string{"x": "1"}
	y := map[string]string{"out": "2"}
	for _, tc := range []struct {
		name, spec  string
		states      []StepState
		ready       []int
		finish      string // "i:Phase ..."
		phase       v1alpha1.RunPhase
		msgContains string // of the first verdict, or the run's message
	}{
		{name: "diamond start", spec: diamond, states: st("PPPP"), ready: []int{0}, phase: runn},
		{name: "diamond fans out", spec: diamond, states: st("SPPP", x), ready: []int{1, 2}, phase: runn},
		{name: "diamond waits for both", spec: diamond, states: st("SSRP", x, y), ready: nil, phase: runn},
		{name: "diamond joins", spec: diamond, states: st("SSSP", x, y, y), ready: []int{3}, phase: runn},
		{name: "diamond done", spec: diamond, states: st("SSSS", x, y, y), phase: succ},
		{name: "busy is not ready again", spec: diamond, states: st("BPPP"), phase: runn},
		{name: "fail fast skips the rest", spec: diamond, states: st("SFRP", x), finish: "3:Skipped", phase: runn, msgContains: `step "b" failed`},
		{name: "failed run", spec: diamond, states: st("SFSP", x, nil, y), finish: "3:Skipped", phase: fail, msgContains: `step "b" failed`},
		{name: "condition true", spec: branch, states: st("SPPPP", map[string]string{"score": "0.7"}), ready: []int{1, 4}, phase: runn},
		{name: "condition false skips the branch that reads it", spec: branch, states: st("SPPPP", map[string]string{"score": "0.2"}),
			ready: []int{3, 4}, finish: "1:Skipped 2:Skipped", phase: runn, msgContains: "condition is false"},
		{name: "dependsOn a skipped step runs", spec: branch, states: st("SKKPS", map[string]string{"score": "0.2"}), ready: []int{3}, phase: runn},
		{name: "condition on a non-number fails the step", spec: branch, states: st("SPPPP", map[string]string{"score": "high"}),
			finish: "1:Failed 2:Skipped 3:Skipped 4:Skipped", phase: fail, msgContains: "condition"},
		{name: "pending run", spec: diamond, states: st("PPPP"), ready: []int{0}, phase: runn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := specOf(t, tc.spec)
			if errs := spec.Validate(field.NewPath("spec")); len(errs) > 0 {
				t.Fatal(errs)
			}
			p := Decide(spec, tc.states, t0)
			if !slices.Equal(p.Ready, tc.ready) {
				t.Errorf("ready %v, want %v", p.Ready, tc.ready)
			}
			if got := verdicts(p); got != tc.finish {
				t.Errorf("finish %q, want %q", got, tc.finish)
			}
			if p.Phase != tc.phase {
				t.Errorf("phase %s, want %s", p.Phase, tc.phase)
			}
			if tc.msgContains != "" {
				msg := p.Message
				if len(p.Finish) > 0 {
					msg = p.Finish[0].Message
				}
				if !strings.Contains(msg, tc.msgContains) {
					t.Errorf("message %q lacks %q", msg, tc.msgContains)
				}
			}
		})
	}
}

func TestDecideWaitsForRetry(t *testing.T) {
	spec := specOf(t, diamond)
	states := st("PPPP")
	states[0].RetryAt = t0.Add(time.Minute)
	p := Decide(spec, states, t0)
	if len(p.Ready) != 0 || !p.Wake.Equal(t0.Add(time.Minute)) {
		t.Fatalf("before its retry time: ready %v, wake %v", p.Ready, p.Wake)
	}
	if p := Decide(spec, states, t0.Add(time.Minute)); !slices.Equal(p.Ready, []int{0}) || !p.Wake.IsZero() {
		t.Fatalf("at its retry time: ready %v, wake %v", p.Ready, p.Wake)
	}
}

func TestRetryAfter(t *testing.T) {
	d := func(s string) *metav1.Duration {
		v, _ := time.ParseDuration(s)
		return &metav1.Duration{Duration: v}
	}
	for _, tc := range []struct {
		name     string
		retries  *v1alpha1.RetryPolicy
		failures int32
		wait     time.Duration
		ok       bool
	}{
		{"no policy", nil, 1, 0, false},
		{"default backoff", &v1alpha1.RetryPolicy{Limit: 3}, 1, 10 * time.Second, true},
		{"doubles", &v1alpha1.RetryPolicy{Limit: 3}, 3, 40 * time.Second, true},
		{"limit reached", &v1alpha1.RetryPolicy{Limit: 3}, 4, 0, false},
		{"capped", &v1alpha1.RetryPolicy{Limit: 10, Backoff: d("1m"), MaxBackoff: d("3m")}, 5, 3 * time.Minute, true},
		{"default cap", &v1alpha1.RetryPolicy{Limit: 10, Backoff: d("1m")}, 10, 5 * time.Minute, true},
		{"limit zero", &v1alpha1.RetryPolicy{Limit: 0}, 1, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at, ok := RetryAfter(&v1alpha1.PipelineStep{Retries: tc.retries}, tc.failures, t0)
			if ok != tc.ok || (ok && at.Sub(t0) != tc.wait) {
				t.Fatalf("RetryAfter = %v after %v, want %v after %v", ok, at.Sub(t0), tc.ok, tc.wait)
			}
		})
	}
}

func TestInputs(t *testing.T) {
	spec := specOf(t, diamond)
	in, err := Inputs(spec, 3, st("SSSP", nil, map[string]string{"out": "left"}, map[string]string{"out": "right"}))
	if err != nil || in["l"] != "left" || in["r"] != "right" {
		t.Fatalf("Inputs = %v, %v", in, err)
	}
	if _, err := Inputs(spec, 3, st("SSSP")); err == nil || !strings.Contains(err.Error(), `output "out"`) {
		t.Fatalf("missing output: %v", err)
	}
}

// FuzzDecide drives random graphs through the core as an executor would,
// with random outcomes, and checks its invariants: a step starts only once
// every step it needs finished; a step never starts twice; every run ends,
// Succeeded exactly when no step failed; a step reading a skipped step's
// output is skipped.
func FuzzDecide(f *testing.F) {
	for _, seed := range []uint64{1, 2, 3, 42} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
		spec := randomSpec(rng)
		if errs := spec.Validate(field.NewPath("spec")); len(errs) > 0 {
			t.Fatalf("random spec invalid: %v", errs)
		}
		n := len(spec.Steps)
		states := make([]StepState, n)
		for i := range states {
			states[i].Phase = pend
		}
		started := make([]bool, n)
		index := map[string]int{}
		for i, s := range spec.Steps {
			index[s.Name] = i
		}
		for round := 0; round < 4*n+4; round++ {
			p := Decide(spec, states, t0)
			for _, v := range p.Finish {
				if started[v.Step] {
					t.Fatalf("step %d finished by the core after it started", v.Step)
				}
				states[v.Step].Phase = v.Phase
			}
			for _, i := range p.Ready {
				if started[i] {
					t.Fatalf("step %d ready twice", i)
				}
				for _, need := range spec.Needs(i) {
					if ph := states[index[need]].Phase; ph != succ && ph != skip {
						t.Fatalf("step %d ready while %s is %s", i, need, ph)
					}
				}
				started[i] = true
				states[i].Phase = succ
				if rng.IntN(8) == 0 {
					states[i].Phase = fail
				}
				states[i].Outputs = map[string]string{"o": fmt.Sprint(rng.IntN(2))}
			}
			if p.Done() {
				failed := slices.ContainsFunc(states, func(s StepState) bool { return s.Phase == fail })
				if (p.Phase == fail) != failed {
					t.Fatalf("run %s with a failed step: %v", p.Phase, failed)
				}
				for i := range spec.Steps {
					for r := range readsFrom(&spec.Steps[i]) {
						if states[index[r]].Phase == skip && states[i].Phase != skip {
							t.Fatalf("step %d reads skipped %s but is %s", i, r, states[i].Phase)
						}
					}
				}
				return
			}
			if len(p.Ready) == 0 && len(p.Finish) == 0 {
				t.Fatalf("stuck: nothing ready, nothing finished, run %s, states %+v", p.Phase, states)
			}
		}
		t.Fatalf("no end after %d rounds", 4*n+4)
	})
}

// randomSpec is a random valid graph of exec steps: each reads, depends on
// or has a condition on earlier steps.
func randomSpec(rng *rand.Rand) *v1alpha1.PipelineSpec {
	n := 1 + rng.IntN(12)
	spec := &v1alpha1.PipelineSpec{}
	for i := range n {
		s := v1alpha1.PipelineStep{Name: fmt.Sprintf("s%d", i), Type: v1alpha1.StepExec,
			Exec: &v1alpha1.ExecStep{Command: []string{"true"}, Outputs: []string{"o"}}}
		for j := range i {
			switch rng.IntN(6) {
			case 0:
				s.DependsOn = append(s.DependsOn, fmt.Sprintf("s%d", j))
			case 1:
				if s.Inputs == nil {
					s.Inputs = map[string]string{}
				}
				s.Inputs[fmt.Sprintf("i%d", j)] = fmt.Sprintf("steps.s%d.outputs.o", j)
			case 2:
				if s.When == "" {
					s.When = fmt.Sprintf("steps.s%d.outputs.o == 1", j)
				}
			}
		}
		spec.Steps = append(spec.Steps, s)
	}
	rng.Shuffle(n, func(i, j int) { spec.Steps[i], spec.Steps[j] = spec.Steps[j], spec.Steps[i] })
	return spec
}
