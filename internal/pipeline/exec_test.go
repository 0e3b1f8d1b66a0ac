package pipeline

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"outpost.dev/outpost/api/v1alpha1"
)

// A command that takes more memory than its step declares fails, under
// whatever enforces the limit here; the same command with room succeeds.
func TestExecMemoryLimit(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("limits are enforced on Linux (cgroup v2 or setrlimit through /proc/self/exe)")
	}
	te := startEngine(t, t.TempDir())
	hog := `[sh, -c, "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${#x} > $OUTPOST_OUTPUTS/len"]`
	r := te.run(t, "m1", `
steps:
- {name: small, type: exec, resources: {memory: 64Mi}, exec: {command: `+hog+`, outputs: [len]}}
`, RunOptions{})
	s := step(t, r, "small")
	if s.Phase != v1alpha1.RunFailed || !strings.Contains(s.Message, "command failed") {
		t.Fatalf("a command over its memory: %+v", s)
	}
	log := logOf(t, te.Engine, "m1", "small")
	if !strings.Contains(log, "limits: rlimit (cgroup v2") && !strings.Contains(log, "limits: cgroup v2 ") {
		t.Errorf("the log does not say what enforced the limit:\n%s", log)
	}
	if strings.Contains(log, "limits: rlimit") && !strings.Contains(s.Message, "address space 64Mi") {
		t.Errorf("message %q does not name the limit", s.Message)
	}
	r = te.run(t, "m2", `
steps:
- {name: roomy, type: exec, resources: {memory: 2Gi}, exec: {command: `+hog+`, outputs: [len]}}
`, RunOptions{})
	if s := step(t, r, "roomy"); s.Phase != v1alpha1.RunSucceeded || s.Outputs["len"] != "100000000" {
		t.Fatalf("the same command with room: %+v\n%s", s, logOf(t, te.Engine, "m2", "roomy"))
	}
}

// Exec steps pass artifacts and values: a large output is an artifact (its
// digest), a small one a value; inputs are files; the environment is the
// step's, not the engine's.
func TestExecInputsAndOutputs(t *testing.T) {
	t.Setenv("OUTPOST_SECRET_OF_THE_ENGINE", "hunter2")
	te := startEngine(t, t.TempDir())
	r := te.run(t, "io", `
steps:
- name: make
  type: exec
  exec:
    command: [sh, -c, "head -c 1000 /dev/zero > $OUTPOST_OUTPUTS/blob; printf '  7 \n' > $OUTPOST_OUTPUTS/count; echo $GREETING > $OUTPOST_OUTPUTS/hello"]
    outputs: [blob, count, hello]
    env: {GREETING: hi}
- name: use
  type: exec
  inputs: {blob: steps.make.outputs.blob, count: steps.make.outputs.count}
  when: steps.make.outputs.count >= 7
  exec:
    command: [sh, -c, "wc -c < $OUTPOST_INPUT_BLOB | tr -d ' ' > $OUTPOST_OUTPUTS/size; cat $OUTPOST_INPUT_COUNT > $OUTPOST_OUTPUTS/n2; echo \"[$OUTPOST_SECRET_OF_THE_ENGINE]\" > $OUTPOST_OUTPUTS/leak; pwd > $OUTPOST_OUTPUTS/wd"]
    outputs: [size, n2, leak, wd]
- name: missing
  type: exec
  dependsOn: [use]
  exec: {command: ["true"], outputs: [never]}
`, RunOptions{})
	mk, use := step(t, r, "make"), step(t, r, "use")
	if d, ok := artifactDigest(mk.Outputs["blob"]); !ok || !te.Layout().Has(d) {
		t.Errorf("a 1000-byte output is not an artifact: %q", mk.Outputs["blob"])
	}
	if mk.Outputs["count"] != "7" || mk.Outputs["hello"] != "hi" {
		t.Errorf("small outputs %v", mk.Outputs)
	}
	if use.Outputs["size"] != "1000" || use.Outputs["n2"] != "7" || use.Outputs["leak"] != "[]" {
		t.Errorf("use's outputs %v", use.Outputs)
	}
	if !strings.HasPrefix(use.Outputs["wd"], te.Dir()) {
		t.Errorf("working folder %q is not under the engine's", use.Outputs["wd"])
	}
	if m := step(t, r, "missing"); m.Phase != v1alpha1.RunFailed || !strings.Contains(m.Message, `output never: the command did not write it`) {
		t.Errorf("a declared output never written: %+v", m)
	}
	if _, err := os.Stat(use.Outputs["wd"]); !os.IsNotExist(err) {
		t.Errorf("the working folder outlived its attempt: %v", err)
	}
}

func TestExecCommandNotFound(t *testing.T) {
	te := startEngine(t, t.TempDir())
	r := te.run(t, "nf", `steps: [{name: x, type: exec, exec: {command: [no-such-program-anywhere]}}]`, RunOptions{})
	if s := step(t, r, "x"); s.Phase != v1alpha1.RunFailed || !strings.Contains(s.Message, "no-such-program-anywhere") {
		t.Fatalf("%+v", s)
	}
}
