package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/zoo"
)

// threadCPU is the CPU time of the calling thread.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// monitorCPU replays, on one goroutine locked to its thread, the work a
// deployment's drift monitor does for requests of batch images of zoo
// model name: summarising each request into windows of the default size
// (1,000 samples), testing each closed window against the reference, and
// putting its report into the agent's outbox (sink). It returns the
// thread's CPU time per request: the monitor's cost, which the machine's
// other load does not inflate as it does wall-clock figures.
func monitorCPU(ctx context.Context, e *env, name string, batch int, sink windowOutbox) (time.Duration, error) {
	m, _, err := zoo.Get(name)
	if err != nil {
		return 0, err
	}
	sess, err := engine.Go{}.Load(ctx, e.files[name])
	if err != nil {
		return 0, err
	}
	defer sess.Close()
	data, err := os.ReadFile(e.refs[name])
	if err != nil {
		return 0, err
	}
	ref, err := drift.DecodeProfile(data)
	if err != nil {
		return 0, err
	}
	f, err := drift.NewFeaturizer(drift.FeaturizerConfig{InputShape: m.Input, OutputShape: []int{10}, ProjectionSeed: 1})
	if err != nil {
		return 0, err
	}
	win, err := drift.NewWindower(f, ref, drift.WindowConfig{Samples: 1000, Duration: 10 * time.Minute}, 1)
	if err != nil {
		return 0, err
	}
	policy := drift.DefaultPolicy()
	det, err := drift.NewDetector(ref, policy)
	if err != nil {
		return 0, err
	}
	var batches []drift.Batch
	for i := range 8 {
		x := m.Batch(e.stream, (i*batch)%(e.stream.Len()-batch), batch)
		out, err := sess.Run(ctx, map[string]*interp.Tensor{zoo.InputName: x})
		if err != nil {
			return 0, err
		}
		y := out[zoo.OutputName]
		batches = append(batches, drift.Batch{Input: x.F32, InputShape: x.Shape, Output: y.F32, OutputShape: y.Shape})
	}
	// Enough requests for a dozen windows.
	n := 12 * 1000 / batch
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var alarm drift.Alarm
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	start := threadCPU()
	for i := range n {
		at = at.Add(time.Millisecond)
		closed, err := win.Observe(at, batches[i%len(batches)])
		if err != nil {
			return 0, err
		}
		for _, w := range closed {
			res, err := det.Detect(w.Profile)
			if err != nil {
				return 0, err
			}
			alarm = policy.Hysteresis.Step(alarm, res.Verdict, w.End)
			if err := sink.PutWindow(ctx, drift.NewWindowReport(name, name, "1.0.0", "sha256:bench", w, res, alarm)); err != nil {
				return 0, fmt.Errorf("outbox: %w", err)
			}
		}
	}
	return (threadCPU() - start) / time.Duration(n), nil
}
