package pipeline

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/schedule"
	"outpost.dev/outpost/internal/testenv"
)

// scripted is the real scheduler plus decisions a test adds, and a hook
// that may rewrite its Start decisions.
type scripted struct {
	*schedule.Scheduler
	mu      sync.Mutex
	extra   []schedule.Decision
	onStart func(*schedule.Decision)
}

func (s *scripted) Schedule(now time.Time) []schedule.Decision {
	ds := s.Scheduler.Schedule(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range ds {
		if ds[i].Action == schedule.Start && s.onStart != nil {
			s.onStart(&ds[i])
		}
	}
	ds = append(ds, s.extra...)
	s.extra = nil
	return ds
}

func (s *scripted) add(d schedule.Decision) {
	s.mu.Lock()
	s.extra = append(s.extra, d)
	s.mu.Unlock()
}

// threeEpochs trains a small model for three epochs, asking for two cores
// and 512Mi (at least 128Mi).
const threeEpochs = `
steps:
- name: data
  type: dataset
  params: {path: "builtin:fashion-mnist", sample: "800"}
- name: train
  type: train
  inputs: {data: steps.data.outputs.train}
  params: {sizes: "784-16-10", epochs: "3", seed: "5"}
  resources: {cpu: "2", memory: 512Mi, minMemory: 128Mi}
`

// The scheduler throttles, then preempts a training step: it trains on
// with fewer threads, then goes back to the queue without a failed
// attempt, resumes from its checkpoint, and ends with the model an
// uninterrupted run makes.
func TestPreemptThrottleAdapt(t *testing.T) {
	for _, tc := range []struct{ arch, params string }{
		{"mlp", `sizes: "784-16-10"`},
		{"cnn", `arch: cnn`},
	} {
		t.Run(tc.arch, func(t *testing.T) {
			if tc.arch == "cnn" && testing.Short() {
				t.Skip("trains a convolutional network for three epochs")
			}
			testPreemptThrottleAdapt(t, strings.Replace(threeEpochs, `sizes: "784-16-10"`, tc.params, 1))
		})
	}
}

func testPreemptThrottleAdapt(t *testing.T, threeEpochs string) {
	sch := &scripted{}
	var te *testEngine
	var once sync.Once
	te = startEngine(t, t.TempDir(), func(o *Options) {
		o.scheduler = func(c schedule.Config) scheduler {
			sch.Scheduler = schedule.New(c)
			return sch
		}
		o.afterEpoch = func(ctx context.Context, stepName string, epoch int) {
			if stepName != "train" {
				return
			}
			switch epoch {
			case 1:
				if run, _ := te.Get(ctx, "pre"); run.Status.Steps[1].Attempts != 1 {
					return
				}
				sch.add(schedule.Decision{Action: schedule.Throttle, JobID: "pre/train", Granted: schedule.Resources{MilliCPU: 1000, Memory: 256 << 20}, Reason: "serving p99 above target"})
				te.poke()
				waitLog(t, te.Engine, "pre", "train", "throttled to cpu 1000m")
			case 2:
				once.Do(func() {
					sch.add(schedule.Decision{Action: schedule.Preempt, JobID: "pre/train", Reason: "a higher priority step"})
					te.poke()
					<-ctx.Done()
				})
			}
		}
	})
	sch.mu.Lock()
	sch.onStart = func(d *schedule.Decision) {
		if d.JobID == "pre/train" && d.Granted.Memory == 512<<20 {
			d.Granted.Memory = 256 << 20
			d.Adapted = "memory 256Mi of 512Mi asked"
		}
	}
	sch.mu.Unlock()
	r := te.run(t, "pre", threeEpochs, RunOptions{})
	tr := step(t, r, "train")
	if r.Status.Phase != v1alpha1.RunSucceeded || tr.Attempts != 2 || tr.Adapted != "memory 256Mi of 512Mi asked" {
		t.Fatalf("run %s (%s), train %+v", r.Status.Phase, r.Status.Message, tr)
	}
	log := logOf(t, te.Engine, "pre", "train")
	for _, want := range []string{
		"batch size 32 instead of 64: granted memory 256Mi of 512Mi asked",
		"epoch 1/3: loss", ", 2 threads",
		"throttled to cpu 1000m",
		"epoch 2/3: loss",
		"preempted: a higher priority step",
		"resuming from the checkpoint of epoch 2 of 3",
		"attempt 2 started",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if !strings.Contains(lineWith(log, "epoch 2/3"), "1 threads") {
		t.Errorf("epoch 2 did not train with the throttled thread count:\n%s", log)
	}

	// The same training, never cut, gives the same bytes.
	ref := startEngine(t, t.TempDir(), func(o *Options) {
		o.scheduler = func(c schedule.Config) scheduler {
			return &scripted{Scheduler: schedule.New(c), onStart: sch.onStart}
		}
	})
	r2 := ref.run(t, "pre", threeEpochs, RunOptions{})
	if got, want := step(t, r2, "train").Outputs["model"], tr.Outputs["model"]; got != want {
		t.Fatalf("model after preemption %s, uncut %s", want, got)
	}
}

// waitLog waits until a step's log holds want.
func waitLog(t testing.TB, e *Engine, run, stepName, want string) {
	t.Helper()
	testenv.WaitFor(t, time.Minute, "log line "+want, func() bool {
		b, _ := os.ReadFile(e.logPath(run, stepName))
		return strings.Contains(string(b), want)
	})
}

func lineWith(log, s string) string {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}
