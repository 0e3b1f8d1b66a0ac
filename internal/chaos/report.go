package chaos

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Report is what a campaign did and found.
type Report struct {
	// Seed drew the plan; Agents ran it.
	Seed   uint64 `json:"seed"`
	Agents int    `json:"agents"`
	// Steps is the number of steps run, Checks of them checks.
	Steps  int `json:"steps"`
	Checks int `json:"checks"`
	// Faults and Operations count the steps run, by kind.
	Faults     map[Kind]int `json:"faults"`
	Operations map[Kind]int `json:"operations"`
	// Skipped counts steps that found nothing to act on, by kind (a relabel
	// of a cluster deleted and not joined again, a stale answer with no
	// older document to give).
	Skipped map[Kind]int `json:"skipped,omitempty"`
	// Duration is how long the run took.
	Duration time.Duration `json:"duration"`
	// Converged is how long each check waited for every agent to converge.
	Converged []time.Duration `json:"converged"`
	// Samples and Docs count the agents' states read and the distinct
	// desired-state documents served.
	Samples int `json:"samples"`
	Docs    int `json:"docs"`
	// Notes accepted into outboxes, and applied at the hub.
	NotesAccepted int `json:"notesAccepted"`
	NotesApplied  int `json:"notesApplied"`
	// Stale desired states answered, of them those whose refusal was
	// required (the agent asked again with a clean link), and the refusals
	// the agents counted.
	StaleServed    int   `json:"staleServed"`
	StaleConfirmed int   `json:"staleConfirmed"`
	StaleRejected  int64 `json:"staleRejected"`
	// OutboxDuplicated and OutboxAnswersLost count outbox batches sent
	// twice and answers dropped.
	OutboxDuplicated  int `json:"outboxDuplicated"`
	OutboxAnswersLost int `json:"outboxAnswersLost"`
	// LinkDown, LinkCuts and LinkCorrupted sum the links' counters.
	LinkDown      int64 `json:"linkDown"`
	LinkCuts      int64 `json:"linkCuts"`
	LinkCorrupted int64 `json:"linkCorrupted"`
	// Growth is the most file descriptors, threads and goroutines a
	// process held at a check beyond those it held at its first.
	Growth ProcStats `json:"growth"`
	// DiskFull says how full disks were made: tmpfs or fsize.
	DiskFull string `json:"diskFull"`
	// Violations are the broken invariants.
	Violations []Violation `json:"violations"`
	// Shrunk is the shortest failing plan found after a violation, and
	// ShrinkRuns the runs it took.
	Shrunk     []Step `json:"shrunk,omitempty"`
	ShrinkRuns int    `json:"shrinkRuns,omitempty"`
}

// TotalFaults is the number of faults injected.
func (r *Report) TotalFaults() int { return sum(r.Faults) }

// TotalOperations is the number of operations run.
func (r *Report) TotalOperations() int { return sum(r.Operations) }

func sum(m map[Kind]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// MaxConverged is the longest wait for convergence.
func (r *Report) MaxConverged() time.Duration {
	if len(r.Converged) == 0 {
		return 0
	}
	return slices.Max(r.Converged)
}

// Write prints the report for people.
func (r *Report) Write(w io.Writer) {
	fmt.Fprintf(w, "seed %d, %d agents, %d steps, %s\n", r.Seed, r.Agents, r.Steps, r.Duration.Round(time.Second))
	fmt.Fprintf(w, "faults: %d (%s)\n", r.TotalFaults(), counts(r.Faults, FaultKinds()))
	fmt.Fprintf(w, "operations: %d (%s)\n", r.TotalOperations(), counts(r.Operations, OperationKinds()))
	if len(r.Skipped) > 0 {
		fmt.Fprintf(w, "skipped: %s\n", counts(r.Skipped, nil))
	}
	conv := make([]string, len(r.Converged))
	for i, d := range r.Converged {
		conv[i] = d.Round(100 * time.Millisecond).String()
	}
	fmt.Fprintf(w, "checks: %d, converged after %s (longest %s)\n", r.Checks, strings.Join(conv, " "), r.MaxConverged().Round(100*time.Millisecond))
	fmt.Fprintf(w, "agent states sampled: %d; desired states served: %d\n", r.Samples, r.Docs)
	fmt.Fprintf(w, "notes: %d accepted into outboxes, %d applied at the hub\n", r.NotesAccepted, r.NotesApplied)
	fmt.Fprintf(w, "stale desired states: %d served, %d with a refusal required, %d refusals counted by agents\n",
		r.StaleServed, r.StaleConfirmed, r.StaleRejected)
	fmt.Fprintf(w, "outbox batches sent twice: %d; answers lost: %d\n", r.OutboxDuplicated, r.OutboxAnswersLost)
	fmt.Fprintf(w, "links: %d bytes down, %d connections cut, %d bytes corrupted; full disks by %s\n",
		r.LinkDown, r.LinkCuts, r.LinkCorrupted, r.DiskFull)
	fmt.Fprintf(w, "largest growth of a process over its first check: %d file descriptors, %d threads, %d goroutines\n",
		r.Growth.FDs, r.Growth.Threads, r.Growth.Goroutines)
	fmt.Fprintf(w, "violations: %d\n", len(r.Violations))
	for _, v := range r.Violations {
		fmt.Fprintf(w, "  %s\n", v)
	}
	if len(r.Shrunk) > 0 {
		fmt.Fprintf(w, "shortest failing plan found (%d steps, %d runs); replay with -seed %d -steps %s:\n",
			len(r.Shrunk), r.ShrinkRuns, r.Seed, StepIDs(r.Shrunk))
		for _, s := range r.Shrunk {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
}

// counts formats counts by kind, in the order of kinds and then by name.
func counts(m map[Kind]int, order []Kind) string {
	var parts []string
	done := map[Kind]bool{}
	for _, k := range order {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		done[k] = true
	}
	var rest []string
	for k := range m {
		if !done[k] {
			rest = append(rest, string(k))
		}
	}
	slices.Sort(rest)
	for _, k := range rest {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[Kind(k)]))
	}
	return strings.Join(parts, ", ")
}

// StepIDs lists the steps' IDs, comma-separated, as -steps takes them.
func StepIDs(steps []Step) string {
	ids := make([]string, len(steps))
	for i, s := range steps {
		ids[i] = fmt.Sprint(s.ID)
	}
	return strings.Join(ids, ",")
}

// Select returns the steps of plan whose IDs are in ids, in plan order,
// with a final Check; it fails on an ID the plan lacks.
func Select(plan []Step, ids []int) ([]Step, error) {
	want := map[int]bool{}
	for _, id := range ids {
		want[id] = true
	}
	var out []Step
	for _, s := range plan {
		if want[s.ID] {
			out = append(out, s)
			delete(want, s.ID)
		}
	}
	if len(want) > 0 {
		var missing []int
		for id := range want {
			missing = append(missing, id)
		}
		slices.Sort(missing)
		return nil, fmt.Errorf("the plan has no steps %v", missing)
	}
	if len(out) == 0 || out[len(out)-1].Kind != Check {
		out = append(out, Step{ID: len(plan), Kind: Check})
	}
	return out, nil
}
