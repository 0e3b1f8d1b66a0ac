package drift

import (
	"fmt"
	"time"
)

// Hysteresis turns per-window verdicts into a drift alarm that does not
// flap: the alarm is raised after Raise consecutive drift verdicts and
// cleared after Clear consecutive no-drift ones, and once it changes it
// does not change again until Cooldown has passed (by the windows' close
// times). Windows with insufficient data neither extend nor break a run.
type Hysteresis struct {
	// Raise is the number of consecutive drifted windows that raise the
	// alarm; 0 means 1.
	Raise int
	// Clear is the number of consecutive clean windows that clear it; 0
	// means 1.
	Clear int
	// Cooldown is the least time between two changes of the alarm.
	Cooldown time.Duration
}

// Validate checks the hysteresis.
func (h Hysteresis) Validate() error {
	if h.Raise < 0 || h.Clear < 0 || h.Cooldown < 0 {
		return fmt.Errorf("hysteresis: raise %d, clear %d and cooldown %v must not be negative", h.Raise, h.Clear, h.Cooldown)
	}
	return nil
}

// Alarm is the state of a drift alarm: a value that Hysteresis.Step
// advances, window by window.
type Alarm struct {
	// Active reports whether drift is raised.
	Active bool
	// DriftRun and CleanRun are the current runs of drifted and clean
	// windows (one of them is 0).
	DriftRun, CleanRun int
	// Changed is when Active last changed; zero if never.
	Changed time.Time
}

// Step returns the alarm after a window closed at closedAt with verdict v.
func (h Hysteresis) Step(a Alarm, v Verdict, closedAt time.Time) Alarm {
	switch v {
	case VerdictDrift:
		a.DriftRun++
		a.CleanRun = 0
	case VerdictNoDrift:
		a.CleanRun++
		a.DriftRun = 0
	default:
		return a
	}
	if !a.Changed.IsZero() && closedAt.Before(a.Changed.Add(h.Cooldown)) {
		return a
	}
	switch {
	case !a.Active && a.DriftRun >= max(h.Raise, 1):
		a.Active, a.Changed = true, closedAt
	case a.Active && a.CleanRun >= max(h.Clear, 1):
		a.Active, a.Changed = false, closedAt
	}
	return a
}
