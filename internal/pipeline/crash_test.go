package pipeline

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/testenv"
)

// Environment of the child process of TestCrashResume.
const (
	envCrashDir    = "OUTPOST_PIPELINE_CRASH_DIR"
	envCrashMarker = "OUTPOST_PIPELINE_CRASH_MARKER"
)

// crashPipeline writes a marker once, prepares data and trains three epochs.
func crashPipeline(marker string) string {
	return `
steps:
- name: mark
  type: exec
  exec: {command: [sh, -c, "echo once >> ` + marker + `; echo done > $OUTPOST_OUTPUTS/m"], outputs: [m]}
- name: data
  type: dataset
  params: {path: "builtin:fashion-mnist", sample: "1200", seed: "2"}
- name: train
  type: train
  dependsOn: [mark]
  inputs: {data: steps.data.outputs.train}
  params: {sizes: "784-32-10", epochs: "3", seed: "9"}
`
}

// TestCrashChild is the engine process TestCrashResume kills: it runs the
// pipeline and stops in the train step's second epoch, after the first
// epoch's checkpoint, until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashDir)
	if dir == "" {
		t.Skip("the child process of TestCrashResume")
	}
	e, err := Open(t.Context(), Options{Dir: dir, Cluster: "edge-1", Capacity: testCapacity,
		afterEpoch: func(ctx context.Context, step string, epoch int) {
			if epoch == 1 {
				select {} // in epoch 2 of 3 until killed
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Start(t.Context(), "crash", "p", 1, specOf(t, crashPipeline(os.Getenv(envCrashMarker))), "", RunOptions{}); err != nil {
		t.Fatal(err)
	}
	e.Run(t.Context())
}

// kill -9 of the engine while a train step is in its second epoch leaves a
// consistent database; the next engine on the folder finishes the run:
// finished steps are not run again, training resumes from the first
// epoch's checkpoint, and the model is byte-identical to one never cut.
func TestCrashResume(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a model twice (-short)")
	}
	dir, marker := t.TempDir(), filepath.Join(t.TempDir(), "marker")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
	cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashMarker+"="+marker)
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, logsDir, "crash", "train.log")
	err := testenv.Poll(2*time.Minute, func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), "epoch 1/3: loss")
	})
	cmd.Process.Kill() // SIGKILL
	cmd.Wait()
	if err != nil {
		t.Fatalf("the child never finished epoch 1: %v\n%s", err, out)
	}

	te := startEngine(t, dir)
	r := te.wait(t, "crash")
	if r.Status.Phase != v1alpha1.RunSucceeded {
		t.Fatalf("resumed run %s: %s (%s)", r.Status.Phase, r.Status.Message, phases(r))
	}
	for name, attempts := range map[string]int32{"mark": 1, "data": 1, "train": 2} {
		if s := step(t, r, name); s.Attempts != attempts {
			t.Errorf("step %s: %d attempts, want %d", name, s.Attempts, attempts)
		}
	}
	if b, _ := os.ReadFile(marker); string(b) != "once\n" {
		t.Errorf("marker %q: the exec step ran again", b)
	}
	log := logOf(t, te.Engine, "crash", "train")
	if !strings.Contains(log, "resuming from the checkpoint of epoch 1 of 3") || strings.Count(log, "epoch 1/3: loss") != 1 {
		t.Errorf("train log:\n%s", log)
	}

	ref := startEngine(t, t.TempDir())
	r2 := ref.run(t, "crash", crashPipeline(filepath.Join(t.TempDir(), "m")), RunOptions{})
	if got, want := step(t, r, "train").Outputs["model"], step(t, r2, "train").Outputs["model"]; got != want {
		t.Fatalf("model after the crash %s, never cut %s", got, want)
	}
}
