package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/schedule"
)

// TestSmallMix runs a small mix under every policy: each must finish every
// job without over-committing the cluster, and the tables must name them.
func TestSmallMix(t *testing.T) {
	var out bytes.Buffer
	cfg := config{seed: 1, seeds: 2, jobs: 12, training: 2, window: time.Hour, shares: []float64{0.2, 0.3, 0.5}, aging: 10 * time.Minute}
	if err := run(&out, cfg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fifo", "quota", "ours", "ours, no target", "ratios to fifo"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestQuotaHoldsToShares(t *testing.T) {
	q := newQuota([]float64{0.2, 0.3, 0.5})
	at := epoch
	for _, id := range []string{"a", "b"} {
		q.Submit(schedJob(id, 2, 1000))
	}
	q.Submit(schedJob("c", 0, 1000))
	// Priority 2 has half of 3 cores: a fits, b waits though 2 cores are
	// free; c, alone in priority 0, starts though larger than its share.
	got := q.Schedule(at)
	if len(got) != 2 || got[0].JobID != "a" || got[1].JobID != "c" {
		t.Fatalf("started %+v, want a and c", got)
	}
	q.Finish("a")
	if got := q.Schedule(at); len(got) != 1 || got[0].JobID != "b" {
		t.Fatalf("started %+v, want b", got)
	}
}

func schedJob(id string, prio int32, cpu int64) schedule.Job {
	return schedule.Job{ID: id, Priority: prio, Request: schedule.Resources{MilliCPU: cpu, Memory: gi}}
}

// TestOursAsFIFO: with nothing but arrival order left to it (aging at once,
// no reservation, no Min, no training, no serving target), internal/schedule
// decides as fifo does, so the simulation compares policies and not itself.
func TestOursAsFIFO(t *testing.T) {
	cfg := config{jobs: 60, training: 3, window: 4 * time.Hour}
	for seed := range uint64(5) {
		jobs := mix(cfg, seed)
		for i := range jobs {
			jobs[i].job.Min = schedule.Resources{}
			jobs[i].job.Class = schedule.ClassOther
		}
		ours := schedule.New(schedule.Config{Allocatable: allocatable, ServingReserve: servingKeep, Aging: time.Nanosecond, ReserveAfter: -1})
		a, err := simulate(ours, slices.Clone(jobs))
		if err != nil {
			t.Fatal(err)
		}
		b, err := simulate(newFIFO(), slices.Clone(jobs))
		if err != nil {
			t.Fatal(err)
		}
		same := a.makespan == b.makespan
		for p := range a.waits {
			same = same && slices.Equal(a.waits[p], b.waits[p])
		}
		if !same {
			t.Errorf("seed %d: ours as fifo: makespan %v, mean wait of priority 0 %v; fifo: %v, %v",
				seed, a.makespan, mean(a.waits[0]), b.makespan, mean(b.waits[0]))
		}
	}
}
