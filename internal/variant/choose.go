// Package variant chooses which variant of a model version (the original,
// or an int8, fp16, pruned, distilled ... variant) a cluster receives, from
// what the cluster has and what each variant costs. It is pure: no I/O, no
// clock; the hub feeds it facts and writes down its choice and reason.
package variant

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"outpost.dev/outpost/internal/bytesize"
)

// Original is the candidate name of the full model.
const Original = "original"

// Facts are what the hub knows of a cluster. A zero field is unknown, and an
// unknown fact never excludes a candidate. The limits read MemoryBytes and
// LinkBps; CPUMillis and Accelerators are carried for the limits of methods
// that need them (a variant only an accelerator runs) and read by none yet.
type Facts struct {
	// MemoryBytes is the memory the cluster can give to serving.
	MemoryBytes int64
	// CPUMillis is its CPU, in thousandths of a core.
	CPUMillis int64
	// Accelerators counts its accelerator devices.
	Accelerators int64
	// LinkBps is the estimated bandwidth of its link to the hub, in bytes
	// per second.
	LinkBps int64
}

// Candidate is one thing a cluster may receive: the original model or one
// of its variants.
type Candidate struct {
	// Name is Original or the variant's name.
	Name string
	// Digest is its manifest digest (carried along, not read).
	Digest string
	// SizeBytes is the total size of its files.
	SizeBytes int64
	// PeakMemoryBytes is its measured peak memory while serving; 0 is not
	// measured, and then its size stands in as the least it needs.
	PeakMemoryBytes int64
	// Accuracy is its accuracy on the evaluation set; nil is not measured.
	Accuracy *float64
}

// Prefer orders the candidates that satisfy the limits.
type Prefer string

// Preferences.
const (
	// PreferAccurate takes the most accurate (the default). A variant whose
	// accuracy is unknown ranks below every measured one; the original
	// whose accuracy is unknown ranks above them, being what they
	// approximate.
	PreferAccurate Prefer = "Accurate"
	// PreferSmallest takes the smallest.
	PreferSmallest Prefer = "Smallest"
)

// Limits bound what a cluster may receive. Zero values set no limit.
type Limits struct {
	// MaxMemoryPercent is the largest share of the cluster's memory, in
	// percent, that a candidate may need.
	MaxMemoryPercent int32
	// MaxFetchTime is the longest a candidate may take to cross the
	// cluster's link at its estimated rate.
	MaxFetchTime time.Duration
	// Allowed names the candidates that may be sent (Original for the full
	// model); empty allows all.
	Allowed []string
	// Prefer orders those that fit; empty is PreferAccurate.
	Prefer Prefer
}

// Choice is what Choose decided.
type Choice struct {
	// Candidate is the chosen one.
	Candidate Candidate
	// Fits is false when no allowed candidate satisfied the limits and the
	// smallest was taken anyway.
	Fits bool
	// Reason says why, for a user: what was chosen and why, and why each
	// other candidate was not.
	Reason string
}

// Choose picks what a cluster with facts receives among cands under lim:
// of the allowed candidates that satisfy every limit, the most accurate (or
// the smallest, as lim.Prefer says); when none does, the smallest allowed
// one, saying so; when none is allowed, the smallest of all, saying so. It
// returns false only when cands is empty.
func Choose(facts Facts, cands []Candidate, lim Limits) (Choice, bool) {
	if len(cands) == 0 {
		return Choice{Reason: "no candidates"}, false
	}
	type verdict struct {
		c       Candidate
		allowed bool
		why     []string // the limits it breaks
	}
	vs := make([]verdict, len(cands))
	var notes []string
	memLimit := int64(-1)
	switch {
	case lim.MaxMemoryPercent <= 0:
	case facts.MemoryBytes <= 0:
		notes = append(notes, "memory limit not applied: the cluster reports no memory")
	default:
		memLimit = int64(float64(facts.MemoryBytes) * float64(lim.MaxMemoryPercent) / 100)
	}
	fetchLimit := lim.MaxFetchTime > 0 && facts.LinkBps > 0
	if lim.MaxFetchTime > 0 && facts.LinkBps <= 0 {
		notes = append(notes, "fetch time limit not applied: the cluster's link rate is unknown")
	}
	for i, c := range cands {
		v := verdict{c: c, allowed: len(lim.Allowed) == 0 || slices.Contains(lim.Allowed, c.Name)}
		if memLimit >= 0 {
			need, what := c.PeakMemoryBytes, "needs"
			if need <= 0 {
				need, what = c.SizeBytes, "needs at least its size,"
			}
			if need > memLimit {
				v.why = append(v.why, fmt.Sprintf("%s %s memory, limit %s (%d%% of %s)", what, bytesize.Format(need),
					bytesize.Format(memLimit), lim.MaxMemoryPercent, bytesize.Format(facts.MemoryBytes)))
			}
		}
		if fetchLimit {
			secs := float64(max(c.SizeBytes, 0)) / float64(facts.LinkBps)
			if secs > lim.MaxFetchTime.Seconds() {
				v.why = append(v.why, fmt.Sprintf("takes %s to fetch at %s/s, limit %s", roundDuration(secs),
					bytesize.Format(facts.LinkBps), lim.MaxFetchTime))
			}
		}
		vs[i] = v
	}

	prefer := lim.Prefer
	if prefer == "" {
		prefer = PreferAccurate
	}
	better := func(a, b Candidate) bool { // a ranks above b
		if prefer == PreferAccurate {
			if x, y := accuracyRank(a), accuracyRank(b); x != y {
				return x > y
			}
		}
		if a.SizeBytes != b.SizeBytes {
			return a.SizeBytes < b.SizeBytes
		}
		if prefer == PreferSmallest {
			if x, y := accuracyRank(a), accuracyRank(b); x != y {
				return x > y
			}
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Digest < b.Digest
	}
	smaller := func(a, b Candidate) bool {
		if a.SizeBytes != b.SizeBytes {
			return a.SizeBytes < b.SizeBytes
		}
		return better(a, b)
	}

	best, fits, anyAllowed := -1, false, false
	for i, v := range vs {
		anyAllowed = anyAllowed || v.allowed
		if v.allowed && len(v.why) == 0 && (best < 0 || better(v.c, vs[best].c)) {
			best, fits = i, true
		}
	}
	var head string
	if best < 0 {
		for i, v := range vs {
			if (v.allowed || !anyAllowed) && (best < 0 || smaller(v.c, vs[best].c)) {
				best = i
			}
		}
		if anyAllowed {
			head = fmt.Sprintf("%s: no allowed candidate fits the limits; the smallest is sent", vs[best].c.Name)
		} else {
			head = fmt.Sprintf("%s: no candidate is allowed (allowed: %s); the smallest is sent", vs[best].c.Name, strings.Join(lim.Allowed, ", "))
		}
	} else if prefer == PreferAccurate {
		head = fmt.Sprintf("%s: the most accurate that fits (accuracy %s)", vs[best].c.Name, accuracyString(vs[best].c))
	} else {
		head = fmt.Sprintf("%s: the smallest that fits (%s)", vs[best].c.Name, bytesize.Format(vs[best].c.SizeBytes))
	}
	parts := []string{head}
	if !fits && len(vs[best].why) > 0 {
		parts = append(parts, "it "+strings.Join(vs[best].why, ", "))
	}
	for i, v := range vs {
		switch {
		case i == best:
		case !v.allowed && anyAllowed:
			parts = append(parts, v.c.Name+" not allowed")
		case len(v.why) > 0:
			parts = append(parts, v.c.Name+" "+strings.Join(v.why, ", "))
		}
	}
	parts = append(parts, notes...)
	return Choice{Candidate: vs[best].c, Fits: fits, Reason: strings.Join(parts, "; ")}, true
}

// accuracyRank orders candidates by accuracy: measured ones by their value,
// an unmeasured original above all, an unmeasured variant below all.
func accuracyRank(c Candidate) float64 {
	switch {
	case c.Accuracy != nil && !math.IsNaN(*c.Accuracy):
		return *c.Accuracy
	case c.Name == Original:
		return math.Inf(1)
	}
	return math.Inf(-1)
}

func accuracyString(c Candidate) string {
	if c.Accuracy == nil || math.IsNaN(*c.Accuracy) {
		return "not measured"
	}
	return fmt.Sprintf("%g", *c.Accuracy)
}

// roundDuration formats secs seconds to the second, or to the millisecond
// below one second.
func roundDuration(secs float64) time.Duration {
	d := time.Duration(math.Min(secs, float64(math.MaxInt64/2)/1e9) * 1e9)
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}
