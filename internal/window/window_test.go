package window

import (
	"testing"
	"time"
)

func TestAt(t *testing.T) {
	night := []Spec{{Start: "22:00", End: "06:00"}}
	weekend := []Spec{{Days: []string{"Sat", "Sun"}, Start: "00:00", End: "00:00"}}
	// 2026-03-02 is a Monday.
	at := func(day, hh, mm int, loc *time.Location) time.Time { return time.Date(2026, 3, day, hh, mm, 0, 0, loc) }
	oslo, err := time.LoadLocation("Europe/Oslo")
	if err != nil {
		t.Skip("no tz database:", err)
	}
	tests := []struct {
		name     string
		zone     string
		specs    []Spec
		inside   string
		outside  string
		t        time.Time
		open     bool
		bps      int64
		next     time.Time
		wantZero bool
	}{
		{name: "no windows: always", t: at(2, 12, 0, time.UTC), open: true, wantZero: true},
		{name: "night, before", specs: night, t: at(2, 21, 59, time.UTC), open: false, next: at(2, 22, 0, time.UTC)},
		{name: "night, at opening", specs: night, inside: "1MiB", t: at(2, 22, 0, time.UTC), open: true, bps: 1 << 20, next: at(3, 6, 0, time.UTC)},
		{name: "night, after midnight", specs: night, t: at(3, 5, 59, time.UTC), open: true, next: at(3, 6, 0, time.UTC)},
		{name: "night, at closing", specs: night, t: at(3, 6, 0, time.UTC), open: false, next: at(3, 22, 0, time.UTC)},
		{name: "outside with a cap", specs: night, outside: "64KiB", t: at(2, 12, 0, time.UTC), open: true, bps: 64 << 10, next: at(2, 22, 0, time.UTC)},
		{name: "weekend whole days, Friday", specs: weekend, t: at(6, 23, 0, time.UTC), open: false, next: at(7, 0, 0, time.UTC)},
		{name: "weekend merges Sat and Sun", specs: weekend, t: at(7, 10, 0, time.UTC), open: true, next: at(9, 0, 0, time.UTC)},
		{name: "time zone", zone: "Europe/Oslo", specs: night, t: at(2, 21, 30, time.UTC), open: true, next: at(3, 6, 0, oslo)},
		{name: "overlapping windows merge", specs: []Spec{{Start: "01:00", End: "03:00"}, {Start: "02:00", End: "04:00"}},
			t: at(2, 1, 30, time.UTC), open: true, next: at(2, 4, 0, time.UTC)},
		{name: "one day a week", specs: []Spec{{Days: []string{"wed"}, Start: "02:00", End: "03:00"}},
			t: at(5, 2, 30, time.UTC), open: false, next: at(11, 2, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.zone, tt.specs, tt.inside, tt.outside)
			if err != nil {
				t.Fatal(err)
			}
			open, bps, next := s.At(tt.t)
			if open != tt.open || bps != tt.bps {
				t.Errorf("At = open %v bps %d, want %v %d", open, bps, tt.open, tt.bps)
			}
			if tt.wantZero != next.IsZero() || (!tt.wantZero && !next.Equal(tt.next)) {
				t.Errorf("next = %v, want %v", next, tt.next)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		zone    string
		specs   []Spec
		in, out string
	}{
		{name: "zone", zone: "Mars/Olympus"},
		{name: "day", specs: []Spec{{Days: []string{"Funday"}, Start: "01:00", End: "02:00"}}},
		{name: "start", specs: []Spec{{Start: "25:00", End: "02:00"}}},
		{name: "end", specs: []Spec{{Start: "01:00", End: "1:00"}}},
		{name: "rate", in: "fast"},
		{name: "negative rate", out: "-5MiB"},
	}
	for _, tt := range tests {
		if _, err := Parse(tt.zone, tt.specs, tt.in, tt.out); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

// FuzzSchedule checks that any policy either fails to parse or answers At with a next change
// after the time asked, and that the state holds until then.
func FuzzSchedule(f *testing.F) {
	f.Add("UTC", "Mon", "22:00", "06:00", "1MiB", "", int64(1772400000))
	f.Add("", "", "00:00", "00:00", "", "1K", int64(0))
	f.Fuzz(func(t *testing.T, zone, day, start, end, in, out string, unix int64) {
		s, err := Parse(zone, []Spec{{Days: []string{day}, Start: start, End: end}}, in, out)
		if err != nil {
			return
		}
		now := time.Unix(unix%(1<<40), 0)
		open, _, next := s.At(now)
		if next.IsZero() {
			return
		}
		if !next.After(now) {
			t.Fatalf("next change %v not after %v", next, now)
		}
		if o, _, _ := s.At(next.Add(-time.Second)); o != open && next.Sub(now) > time.Second {
			t.Fatalf("state changed before the next change %v", next)
		}
	})
}
