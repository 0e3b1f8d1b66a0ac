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
// checks every invariant after every step and at each check. Its seed draws
// every kind of fault and operation. A failure prints the seed and the
// shortest failing plan found.
func TestShortCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub and three agents for about a minute")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc and sets resource limits of the agents")
	}
	for _, seed := range []uint64{8} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			var log strings.Builder
			cfg := harness.Config{
				Options: harness.Options{Outpost: outpostBin, Dir: t.TempDir(), Agents: 3, ConvergeWithin: 2 * time.Minute,
					Logf: func(format string, args ...any) {
						fmt.Fprintf(&log, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
					}},
				Seed: seed, Faults: 30, CheckEvery: 25, ShrinkBudget: 3,
			}
			plan, err := cfg.Plan()
			if err != nil {
				t.Fatal(err)
			}
			drawn := chaos.Count(plan)
			for _, k := range append(chaos.FaultKinds(), chaos.OperationKinds()...) {
				if drawn[k] == 0 {
					t.Errorf("the plan of seed %d has no %s: pick a seed that draws every kind", seed, k)
				}
			}
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
		})
	}
}
