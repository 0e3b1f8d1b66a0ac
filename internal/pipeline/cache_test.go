package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"outpost.dev/outpost/api/v1alpha1"
)

// trainAndShip trains a small model, evaluates, registers and deploys it,
// and appends a line to a marker file.
func trainAndShip(marker string) string {
	return `
steps:
- name: data
  type: dataset
  params: {path: "builtin:fashion-mnist", sample: "600"}
- name: train
  type: train
  inputs: {data: steps.data.outputs.train}
  params: {sizes: "784-16-10", epochs: "1"}
- name: eval
  type: evaluate
  inputs: {data: steps.data.outputs.test, model: steps.train.outputs.model}
- name: register
  type: register
  inputs: {model: steps.train.outputs.model}
  params: {model: fashion}
- name: deploy
  type: deploy
  inputs: {version: steps.register.outputs.version}
  params: {deployment: fashion}
- name: mark
  type: exec
  inputs: {model: steps.train.outputs.model}
  exec: {command: [sh, -c, "echo ran >> ` + marker + `"]}
`
}

func TestSecondRunIsCached(t *testing.T) {
	te := startEngine(t, t.TempDir())
	marker := filepath.Join(t.TempDir(), "marker")
	spec := trainAndShip(marker)
	first := te.run(t, "first", spec, RunOptions{})
	if first.Status.Phase != v1alpha1.RunSucceeded {
		t.Fatalf("first run %s: %s (%s)", first.Status.Phase, first.Status.Message, phases(first))
	}
	second := te.run(t, "second", spec, RunOptions{})
	if second.Status.Phase != v1alpha1.RunSucceeded {
		t.Fatalf("second run %s: %s (%s)", second.Status.Phase, second.Status.Message, phases(second))
	}
	for i, s := range second.Status.Steps {
		if !s.Cached || s.Attempts != 0 {
			t.Errorf("second run's step %s: cached %v, %d attempts", s.Name, s.Cached, s.Attempts)
		}
		if !equalMaps(s.Outputs, first.Status.Steps[i].Outputs) {
			t.Errorf("step %s: outputs %v, first run had %v", s.Name, s.Outputs, first.Status.Steps[i].Outputs)
		}
	}
	if b, _ := os.ReadFile(marker); string(b) != "ran\n" {
		t.Errorf("marker %q: the exec step ran again", b)
	}
	if tags := te.Layout().Tags("edge/edge-1/fashion"); len(tags) != 1 || tags[0] != "0.1.0-edge.1" {
		t.Errorf("tags %v: a cached register made another version", tags)
	}
	if len(first.Status.Models) != 1 || len(second.Status.Models) != 0 {
		t.Errorf("models: first run %v, second %v", first.Status.Models, second.Status.Models)
	}
	if got := strings.Join(te.host.deploys, ","); got != "fashion=0.1.0-edge.1" {
		t.Errorf("deploys %s", got)
	}
	if log := logOf(t, te.Engine, "second", "train"); !strings.Contains(log, "cached: the outputs of step train of run first") {
		t.Errorf("log of a cached step:\n%s", log)
	}

	// A deployment that moved on is deployed again; other steps stay cached.
	te.host.serve(t, "fashion", "2.0.0")
	third := te.run(t, "third", spec, RunOptions{})
	if d := step(t, third, "deploy"); d.Cached || d.Outputs["previous"] != "2.0.0" || third.Status.Phase != v1alpha1.RunSucceeded {
		t.Errorf("deploy after the deployment moved: %+v", d)
	}
	if r := step(t, third, "register"); !r.Cached {
		t.Errorf("register ran again: %+v", r)
	}

	// NoCache runs every step.
	fourth := te.run(t, "fourth", spec, RunOptions{NoCache: true})
	for _, s := range fourth.Status.Steps {
		if s.Cached || s.Attempts != 1 {
			t.Errorf("no-cache run's step %s: cached %v, %d attempts", s.Name, s.Cached, s.Attempts)
		}
	}
	if v := step(t, fourth, "register").Outputs["version"]; v != "0.1.0-edge.4" {
		t.Errorf("no-cache register version %s", v)
	}
	if b, _ := os.ReadFile(marker); string(b) != "ran\nran\n" {
		t.Errorf("marker %q after a no-cache run", b)
	}
}

// New data in the run's folder misses the cache.
func TestCacheSeesNewData(t *testing.T) {
	te := startEngine(t, t.TempDir())
	data := t.TempDir()
	write := func(rows string) {
		if err := os.WriteFile(filepath.Join(data, "d.csv"), []byte("label,a,b\n"+rows), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("0,1,2\n1,3,4\n0,5,6\n1,7,8\n0,1,1\n")
	spec := "steps: [{name: data, type: dataset, params: {split: '0.6'}}]"
	r1 := te.run(t, "c1", spec, RunOptions{Data: data})
	r2 := te.run(t, "c2", spec, RunOptions{Data: data})
	write("0,1,2\n1,3,4\n0,5,6\n1,7,8\n0,1,1\n1,9,9\n")
	r3 := te.run(t, "c3", spec, RunOptions{Data: data})
	if !step(t, r2, "data").Cached || step(t, r3, "data").Cached {
		t.Fatalf("cached: same data %v, new data %v", step(t, r2, "data").Cached, step(t, r3, "data").Cached)
	}
	if step(t, r1, "data").Outputs["samples"] != "5" || step(t, r3, "data").Outputs["samples"] != "6" {
		t.Fatalf("samples %v then %v", step(t, r1, "data").Outputs, step(t, r3, "data").Outputs)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
