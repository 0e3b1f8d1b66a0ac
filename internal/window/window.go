// Package window evaluates weekly transfer windows: when a cluster's link may carry bulk
// model transfers, and at what bandwidth, inside and outside them. It is pure: times are
// passed in, and nothing is read from a clock or the network.
package window

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"outpost.dev/outpost/internal/bytesize"
)

// Spec is one weekly window as written in a transfer policy.
type Spec struct {
	// Days are Mon..Sun; empty is every day.
	Days []string
	// Start and End are "HH:MM"; an End at or before Start runs past midnight.
	Start, End string
}

// Schedule is a parsed transfer policy.
type Schedule struct {
	loc     *time.Location
	windows []window
	// Inside and Outside are the bandwidth caps in bytes per second inside and outside the
	// windows; Inside 0 is no cap, Outside 0 is no transfer.
	Inside, Outside int64
}

type window struct {
	days       [7]bool // by time.Weekday
	start, end int     // minutes after midnight
}

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// Parse parses a transfer policy: an IANA time zone ("" is UTC), its windows, and its
// bandwidth caps ("4MiB"; "" or "0" for none).
func Parse(zone string, specs []Spec, inside, outside string) (Schedule, error) {
	s := Schedule{loc: time.UTC}
	if zone != "" {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			return Schedule{}, fmt.Errorf("time zone %q: %w", zone, err)
		}
		s.loc = loc
	}
	for i, sp := range specs {
		w, err := parseWindow(sp)
		if err != nil {
			return Schedule{}, fmt.Errorf("windows[%d]: %w", i, err)
		}
		s.windows = append(s.windows, w)
	}
	var err error
	if s.Inside, err = parseRate(inside); err != nil {
		return Schedule{}, fmt.Errorf("insideBandwidth: %w", err)
	}
	if s.Outside, err = parseRate(outside); err != nil {
		return Schedule{}, fmt.Errorf("outsideBandwidth: %w", err)
	}
	return s, nil
}

func parseRate(s string) (int64, error) {
	if s == "" || s == "0" {
		return 0, nil
	}
	return bytesize.ParseRate(s)
}

func parseWindow(sp Spec) (window, error) {
	var w window
	if len(sp.Days) == 0 {
		for i := range w.days {
			w.days[i] = true
		}
	}
	for _, d := range sp.Days {
		wd, ok := dayNames[strings.ToLower(d)]
		if !ok {
			return w, fmt.Errorf("day %q: want Mon, Tue, Wed, Thu, Fri, Sat or Sun", d)
		}
		w.days[wd] = true
	}
	var err error
	if w.start, err = parseClock(sp.Start); err != nil {
		return w, fmt.Errorf("start: %w", err)
	}
	if w.end, err = parseClock(sp.End); err != nil {
		return w, fmt.Errorf("end: %w", err)
	}
	return w, nil
}

func parseClock(s string) (int, error) {
	var h, m int
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	if _, err := fmt.Sscanf(s, "%02d:%02d", &h, &m); err != nil || h > 23 || m > 59 || h < 0 || m < 0 {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return h*60 + m, nil
}

// Always reports whether the schedule has no windows: transfers may run at any time.
func (s Schedule) Always() bool { return len(s.windows) == 0 }

// At says whether bulk transfers may run at t, the bandwidth cap then (0 for none), and
// when that next changes (the zero time for never).
func (s Schedule) At(t time.Time) (open bool, bps int64, next time.Time) {
	if s.Always() {
		return true, s.Inside, time.Time{}
	}
	spans := s.spans(t)
	for _, sp := range spans {
		if !t.Before(sp[0]) && t.Before(sp[1]) {
			return true, s.Inside, sp[1]
		}
	}
	for _, sp := range spans {
		if sp[0].After(t) {
			return s.Outside > 0, s.Outside, sp[0]
		}
	}
	return s.Outside > 0, s.Outside, time.Time{}
}

// spans returns the windows' occurrences from the day before t to a week after, merged
// where they overlap or touch, sorted.
func (s Schedule) spans(t time.Time) [][2]time.Time {
	lt := t.In(s.loc)
	var out [][2]time.Time
	for d := -1; d <= 8; d++ {
		day := time.Date(lt.Year(), lt.Month(), lt.Day()+d, 0, 0, 0, 0, s.loc)
		for _, w := range s.windows {
			if !w.days[day.Weekday()] {
				continue
			}
			start := time.Date(day.Year(), day.Month(), day.Day(), 0, w.start, 0, 0, s.loc)
			endDay := day.Day()
			if w.end <= w.start {
				endDay++
			}
			end := time.Date(day.Year(), day.Month(), endDay, 0, w.end, 0, 0, s.loc)
			out = append(out, [2]time.Time{start, end})
		}
	}
	slices.SortFunc(out, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
	merged := out[:0]
	for _, sp := range out {
		if n := len(merged); n > 0 && !sp[0].After(merged[n-1][1]) {
			if sp[1].After(merged[n-1][1]) {
				merged[n-1][1] = sp[1]
			}
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}
