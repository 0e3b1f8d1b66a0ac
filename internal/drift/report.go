package drift

import (
	"encoding/json"
	"fmt"
	"math"
	"time"
)

// RecordKind is the kind of the outbox records that carry a WindowReport
// from an agent to the hub.
const RecordKind = "drift.window"

// WindowReport is what an agent tells the hub of one closed window, or of
// a run of adjacent windows merged to stay within the outbox's budget: the
// verdict, the alarm, and per feature its count, mean and spread and each
// test's outcome. It is a few kilobytes; the window's full summaries stay
// at the edge.
type WindowReport struct {
	// Deployment, Model, Version and Digest name what was served.
	Deployment string `json:"deployment"`
	Model      string `json:"model"`
	Version    string `json:"version"`
	Digest     string `json:"digest,omitempty"`
	// First and Last are the windows' sequence numbers since the serving
	// process started; Windows is how many windows the report covers.
	First   uint64 `json:"first"`
	Last    uint64 `json:"last"`
	Windows int    `json:"windows"`
	// Start and End bound the samples' times.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Samples is the number of samples.
	Samples uint64 `json:"samples"`
	// Verdict and Reason are Detect's answer; for merged windows, drift if
	// any window drifted, else no drift if any was tested.
	Verdict Verdict `json:"verdict"`
	Reason  string  `json:"reason,omitempty"`
	// Alarm is whether the drift alarm was raised after the last window,
	// and AlarmChanged when it last changed.
	Alarm        bool      `json:"alarm"`
	AlarmChanged time.Time `json:"alarmChanged,omitzero"`
	// Features are the per-feature outcomes, in the spec's order.
	Features []FeatureReport `json:"features"`
}

// FeatureReport is one feature's outcome in a WindowReport.
type FeatureReport struct {
	Name string `json:"name"`
	Role Role   `json:"role"`
	Kind Kind   `json:"kind"`
	// N and Invalid count the valid and the NaN, ±Inf or invalid values.
	N       uint64 `json:"n"`
	Invalid uint64 `json:"invalid,omitempty"`
	// Mean and Std are a numeric feature's mean and standard deviation.
	Mean *float64 `json:"mean,omitempty"`
	Std  *float64 `json:"std,omitempty"`
	// Skipped says why the feature was not tested.
	Skipped string `json:"skipped,omitempty"`
	// Drifted reports whether any test says the feature drifted.
	Drifted bool `json:"drifted"`
	// Scores are the tests' outcomes.
	Scores []ScoreReport `json:"scores,omitempty"`
}

// ScoreReport is one test's outcome in a FeatureReport.
type ScoreReport struct {
	Test      Test    `json:"test"`
	Statistic float64 `json:"statistic"`
	// PValue is the corrected p-value of a p-value test; absent for a
	// threshold test.
	PValue  *float64 `json:"pValue,omitempty"`
	Drifted bool     `json:"drifted"`
}

// NewWindowReport builds the report of window w, with Detect's result r
// and the alarm after w.
func NewWindowReport(deployment, model, version, digest string, w Window, r Result, alarm Alarm) WindowReport {
	rep := WindowReport{
		Deployment: deployment, Model: model, Version: version, Digest: digest,
		First: w.First, Last: w.Last, Windows: int(w.Last - w.First + 1), Start: w.Start, End: w.End,
		Samples: w.Profile.Samples(), Verdict: r.Verdict, Reason: r.Reason,
		Alarm: alarm.Active, AlarmChanged: alarm.Changed,
	}
	for i, f := range r.Features {
		fr := FeatureReport{Name: f.Name, Role: f.Role, Kind: f.Kind, N: f.N, Invalid: f.Invalid, Skipped: f.Skipped, Drifted: f.Drifted}
		if n := w.Profile.Numeric(i); n != nil && n.Count() > 0 {
			fr.Mean, fr.Std = finite(n.Mean()), finite(n.StdDev())
		}
		for _, s := range f.Scores {
			sr := ScoreReport{Test: s.Test, Statistic: s.Statistic, Drifted: s.Drifted}
			sr.PValue = finite(s.Adjusted)
			if !(sr.Statistic == sr.Statistic) || math.IsInf(sr.Statistic, 0) {
				sr.Statistic = 0
			}
			fr.Scores = append(fr.Scores, sr)
		}
		rep.Features = append(rep.Features, fr)
	}
	return rep
}

// finite returns a pointer to v, or nil for NaN and ±Inf (which JSON cannot hold).
func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// Key is the outbox idempotency key of the report: unique per deployment,
// version and first window's start, across restarts of the agent.
func (r WindowReport) Key() string {
	return fmt.Sprintf("%s/%s/%s/%s", RecordKind, r.Deployment, r.Version, r.Start.UTC().Format(time.RFC3339Nano))
}

// Group is the outbox merge group of the report: the reports of one
// deployment and version merge.
func (r WindowReport) Group() string { return RecordKind + "/" + r.Deployment + "/" + r.Version }

// MergeReports merges two encoded reports of one deployment and version,
// the older first, into the report of both: their span, samples and
// windows added up; the verdict drift if either drifted; the newer alarm;
// per feature the counts added, the means and spreads pooled, and per test
// the larger statistic, the smaller p-value and drifted if either drifted.
// It is the outbox's MergeFunc for RecordKind.
func MergeReports(older, newer []byte) ([]byte, error) {
	var a, b WindowReport
	if err := json.Unmarshal(older, &a); err != nil {
		return nil, fmt.Errorf("merge drift reports: %w", err)
	}
	if err := json.Unmarshal(newer, &b); err != nil {
		return nil, fmt.Errorf("merge drift reports: %w", err)
	}
	if a.Deployment != b.Deployment || a.Version != b.Version {
		return nil, fmt.Errorf("merge drift reports: %s@%s and %s@%s differ", a.Deployment, a.Version, b.Deployment, b.Version)
	}
	m := b
	m.First, m.Start = min(a.First, b.First), minTime(a.Start, b.Start)
	m.Last, m.End = max(a.Last, b.Last), maxTime(a.End, b.End)
	m.Windows, m.Samples = a.Windows+b.Windows, a.Samples+b.Samples
	switch {
	case a.Verdict == VerdictDrift || b.Verdict == VerdictDrift:
		m.Verdict = VerdictDrift
	case a.Verdict == VerdictNoDrift || b.Verdict == VerdictNoDrift:
		m.Verdict = VerdictNoDrift
	}
	m.Reason = fmt.Sprintf("%d windows merged", m.Windows)
	if len(a.Features) == len(b.Features) {
		m.Features = make([]FeatureReport, len(b.Features))
		for i := range b.Features {
			m.Features[i] = mergeFeature(a.Features[i], b.Features[i])
		}
	}
	return json.Marshal(m)
}

func mergeFeature(a, b FeatureReport) FeatureReport {
	m := b
	m.N, m.Invalid = a.N+b.N, a.Invalid+b.Invalid
	m.Drifted = a.Drifted || b.Drifted
	if a.Mean != nil && b.Mean != nil && a.Std != nil && b.Std != nil && m.N > 0 {
		na, nb, n := float64(a.N), float64(b.N), float64(a.N+b.N)
		mean := (na**a.Mean + nb**b.Mean) / n
		// Pooled variance of the union from each part's mean and variance.
		v := (na*(*a.Std**a.Std+(*a.Mean-mean)*(*a.Mean-mean)) + nb*(*b.Std**b.Std+(*b.Mean-mean)*(*b.Mean-mean))) / n
		m.Mean, m.Std = &mean, finite(math.Sqrt(v))
	}
	if len(a.Scores) == len(b.Scores) {
		m.Scores = make([]ScoreReport, len(b.Scores))
		for i := range b.Scores {
			s := b.Scores[i]
			s.Statistic = max(a.Scores[i].Statistic, b.Scores[i].Statistic)
			if a.Scores[i].PValue != nil && (s.PValue == nil || *a.Scores[i].PValue < *s.PValue) {
				s.PValue = a.Scores[i].PValue
			}
			s.Drifted = a.Scores[i].Drifted || b.Scores[i].Drifted
			m.Scores[i] = s
		}
	}
	return m
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// DecodeWindowReport decodes and checks a report, as the hub receives it.
func DecodeWindowReport(b []byte) (WindowReport, error) {
	var r WindowReport
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("drift report: %w", err)
	}
	switch {
	case r.Deployment == "" || r.Model == "" || r.Version == "":
		return r, fmt.Errorf("drift report: deployment, model and version are required")
	case r.Last < r.First || r.Windows < 1:
		return r, fmt.Errorf("drift report: windows %d-%d (%d): want first <= last and at least one window", r.First, r.Last, r.Windows)
	case r.End.Before(r.Start):
		return r, fmt.Errorf("drift report: ends %s before it starts %s", r.End, r.Start)
	}
	switch r.Verdict {
	case VerdictDrift, VerdictNoDrift, VerdictInsufficient:
	default:
		return r, fmt.Errorf("drift report: unknown verdict %q", r.Verdict)
	}
	if len(r.Features) > 4096 {
		return r, fmt.Errorf("drift report: %d features, at most 4096", len(r.Features))
	}
	return r, nil
}
