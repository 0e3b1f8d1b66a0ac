// Package chaos runs a short fault campaign (internal/chaos/harness) in the
// test suite: a hub and three agents as real processes, each agent behind
// its own simulated link, under fixed seeds. bench/chaos runs long ones.
package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/chaos"
	"outpost.dev/outpost/internal/chaos/harness"
	"outpost.dev/outpost/internal/testenv"
)

// outpostBin is the binary built once for the package's tests.
var outpostBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outpost-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	outpostBin = filepath.Join(dir, "outpost")
	build := exec.Command("go", "build", "-o", outpostBin, "outpost.dev/outpost/cmd/outpost")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build outpost:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestShortCampaign injects thirty faults into a hub and three agents and
// checks every invariant after every step and at each check. Its seed runs
// every kind of fault and operation. A failure prints the seed and the
// shortest failing plan found. The harness itself must leave no goroutine
// behind.
func TestShortCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub and three agents for about a minute")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc and sets resource limits of the agents")
	}
	before := runtime.NumGoroutine()
	for _, seed := range []uint64{217} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			var log strings.Builder
			cfg := harness.Config{
				Options: harness.Options{Outpost: outpostBin, Dir: t.TempDir(), Agents: 3, ConvergeWithin: 2 * time.Minute,
					Logf: func(format string, args ...any) {
						fmt.Fprintf(&log, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
					}},
				Seed: seed, Faults: 30, CheckEvery: 25, MaxGap: 150 * time.Millisecond, ShrinkBudget: 3,
			}
			plan, err := cfg.Plan()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("seed %d: %d steps", seed, len(plan))
			ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
			defer cancel()
			r, err := harness.Campaign(ctx, cfg)
			var report strings.Builder
			if r != nil {
				r.Write(&report)
			}
			t.Logf("campaign:\n%s", report.String())
			if err != nil {
				t.Fatalf("the campaign could not run: %v\n%s", err, log.String())
			}
			if len(r.Violations) > 0 {
				t.Fatalf("seed %d broke invariants (steps:\n%s)", seed, log.String())
			}
			if r.TotalFaults() < cfg.Faults {
				t.Errorf("%d faults injected, want %d", r.TotalFaults(), cfg.Faults)
			}
			for _, k := range chaos.FaultKinds() {
				if r.Faults[k] == 0 {
					t.Errorf("seed %d injected no %s fault: pick a seed that runs every kind", seed, k)
				}
			}
			for _, k := range chaos.OperationKinds() {
				if r.Operations[k] == 0 {
					t.Errorf("seed %d ran no %s operation: pick a seed that runs every kind", seed, k)
				}
			}
		})
	}
	if err := testenv.Poll(10*time.Second, func() bool { return runtime.NumGoroutine() <= before }); err != nil {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after the campaigns, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
	}
}
