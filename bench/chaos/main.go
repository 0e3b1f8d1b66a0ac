// Command chaos runs Outpost's fault campaign for as long as asked: a hub
// and several agents as real processes, each agent behind its own
// simulated link, under a plan of random operations and faults drawn from
// a seed (internal/chaos, internal/chaos/harness). It prints what it did,
// by kind, and every broken invariant; on one, it shrinks the plan to the
// shortest it finds that still fails and prints it with the seed, so that
//
//	go run ./bench/chaos -seed S -steps 3,17,42
//
// replays it. It exits 1 when an invariant broke.
//
//	go run ./bench/chaos -agents 5 -faults 1000
//	go run ./bench/chaos -seed 7 -agents 6 -faults 5000 -duration 2h
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"outpost.dev/outpost/internal/chaos/harness"
)

func main() {
	var (
		seed       = flag.Uint64("seed", 0, "seed of the plan (default: from the clock, printed)")
		agents     = flag.Int("agents", 5, "agents, each behind its own link")
		faults     = flag.Int("faults", 1000, "faults to inject")
		duration   = flag.Duration("duration", 0, "stop at the first check after this long, even with faults left (0: run the whole plan)")
		checkEvery = flag.Int("check-every", 40, "steps between checks")
		maxGap     = flag.Duration("max-gap", 300*time.Millisecond, "longest pause after a step (one step in ten pauses up to ten times longer)")
		converge   = flag.Duration("converge-within", 90*time.Second, "bound on convergence after the faults heal")
		disk       = flag.String("disk", harness.DiskAuto, "how to fill an agent's disk: auto, tmpfs, fsize or off")
		steps      = flag.String("steps", "", "replay only these step IDs of the seed's plan (comma-separated, as a failure prints them)")
		shrink     = flag.Int("shrink", 12, "runs to spend shrinking a failing plan")
		outpost    = flag.String("outpost", "", "outpost binary (default: built from this module)")
		dir        = flag.String("dir", "", "scratch directory (default: a temporary one, removed unless something failed)")
		keep       = flag.Bool("keep", false, "keep the scratch directory")
		jsonOut    = flag.String("json", "", "also write the report as JSON to this file")
		verbose    = flag.Bool("v", false, "print every step")
	)
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	var ids []int
	for _, f := range strings.Split(*steps, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		id, err := strconv.Atoi(f)
		if err != nil {
			fail(fmt.Errorf("-steps %q: %w", *steps, err))
		}
		ids = append(ids, id)
	}
	scratch := *dir
	if scratch == "" {
		var err error
		if scratch, err = os.MkdirTemp("", "outpost-chaos-"); err != nil {
			fail(err)
		}
	}
	bin := *outpost
	if bin == "" {
		bin = filepath.Join(scratch, "outpost")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "outpost.dev/outpost/cmd/outpost")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fail(fmt.Errorf("build outpost: %w", err))
		}
	}
	cfg := harness.Config{
		Options: harness.Options{Outpost: bin, Dir: scratch, Agents: *agents, DiskFull: *disk, ConvergeWithin: *converge,
			Logf: func(format string, args ...any) {
				if *verbose {
					fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
				}
			}},
		Seed: *seed, Faults: *faults, CheckEvery: *checkEvery, MaxGap: *maxGap, Steps: ids, ShrinkBudget: *shrink,
	}
	if *duration > 0 {
		cfg.StopAfter = time.Now().Add(*duration)
	}
	fmt.Printf("fault campaign: seed %d, %d agents, %d faults; %d CPUs, load average %s\n", *seed, *agents, *faults, runtime.NumCPU(), loadavg())
	start := time.Now()
	r, err := harness.Campaign(ctx, cfg)
	if r != nil {
		r.Write(os.Stdout)
		fmt.Printf("wall time %s; load average now %s\n", time.Since(start).Round(time.Second), loadavg())
		if *jsonOut != "" {
			b, _ := json.MarshalIndent(r, "", "  ")
			if werr := os.WriteFile(*jsonOut, b, 0o644); werr != nil {
				fmt.Fprintln(os.Stderr, werr)
			}
		}
	}
	failed := err != nil || r == nil || len(r.Violations) > 0
	if failed || *keep || *dir != "" {
		fmt.Printf("scratch directory (logs of every process): %s\n", scratch)
	} else {
		os.RemoveAll(scratch)
	}
	if err != nil {
		fail(err)
	}
	if failed {
		os.Exit(1)
	}
}

// loadavg is the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "chaos:", err)
	os.Exit(2)
}
