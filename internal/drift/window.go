package drift

import (
	"errors"
	"fmt"
	"time"
)

// WindowConfig says when a tumbling window closes: after Samples samples
// or when Duration has passed since it opened, whichever comes first. At
// least one must be set.
type WindowConfig struct {
	// Samples closes a window when it holds this many samples; 0 means no
	// limit.
	Samples int
	// Duration closes a window this long after it opened; 0 means no
	// limit.
	Duration time.Duration
}

// Window is a closed tumbling window: the profile of the samples observed
// from Start until End.
type Window struct {
	// First and Last are the window's sequence numbers (0, 1, 2, … in the
	// order the windows opened); equal but for merged windows.
	First, Last uint64
	// Start is when the window opened: the time of its first sample.
	Start time.Time
	// End is when it closed: the time of its last sample when it filled
	// up, or Start+Duration when its time ran out.
	End time.Time
	// Profile summarises the window's samples.
	Profile *Profile
}

// MergeWindows returns the coarser window made of adjacent windows a and b
// (b.First = a.Last+1): from a's start to b's end, its profile the merge of
// theirs. Neither input is modified.
func MergeWindows(a, b Window) (Window, error) {
	if b.First != a.Last+1 {
		return Window{}, fmt.Errorf("windows %d-%d and %d-%d are not adjacent", a.First, a.Last, b.First, b.Last)
	}
	p := a.Profile.Clone()
	if err := p.Merge(b.Profile); err != nil {
		return Window{}, err
	}
	return Window{First: a.First, Last: b.Last, Start: a.Start, End: b.End, Profile: p}, nil
}

// Windower cuts the samples it observes into tumbling windows, each an
// empty copy of a reference profile (its histogram edges) that a
// featurizer fills. It is a pure state machine: the times are passed in,
// and a time earlier than the open window's start counts as its start.
// A window that would receive no sample is never opened: after a gap, the
// next window opens with the next sample. A Windower is not safe for
// concurrent use.
type Windower struct {
	f     *Featurizer
	ref   *Profile
	cfg   WindowConfig
	cur   *Profile
	start time.Time
	next  uint64
	seed  uint64
}

// NewWindower returns a Windower of windows shaped after reference and
// filled by f, which must be of the reference's spec. Window i's sketches
// are seeded from seed and i.
func NewWindower(f *Featurizer, reference *Profile, cfg WindowConfig, seed uint64) (*Windower, error) {
	if cfg.Samples < 0 || cfg.Duration < 0 || cfg.Samples == 0 && cfg.Duration == 0 {
		return nil, fmt.Errorf("window: %d samples and %v, want one or both positive", cfg.Samples, cfg.Duration)
	}
	if !reference.spec.equal(&f.spec) {
		if err := f.spec.diff(&reference.spec); err != nil {
			return nil, fmt.Errorf("window: the reference is not of the featurizer's spec: %w", err)
		}
		return nil, errors.New("window: the reference is not of the featurizer's spec")
	}
	return &Windower{f: f, ref: reference, cfg: cfg, seed: seed}, nil
}

// Open returns the open window's profile so far, or nil when none is open;
// the caller must not modify it.
func (w *Windower) Open() *Profile { return w.cur }

// Tick closes the open window if its duration has passed at now.
func (w *Windower) Tick(now time.Time) (Window, bool) {
	if w.cur == nil || w.cfg.Duration == 0 || now.Before(w.start.Add(w.cfg.Duration)) {
		return Window{}, false
	}
	return w.close(w.start.Add(w.cfg.Duration)), true
}

// Close closes the open window at now, whatever its samples and time: for
// a monitor that stops. Its End is now, or its Start if now is earlier. It
// reports false when no window is open.
func (w *Windower) Close(now time.Time) (Window, bool) {
	if w.cur == nil {
		return Window{}, false
	}
	if now.Before(w.start) {
		now = w.start
	}
	return w.close(now), true
}

// Observe adds the samples of b, observed at now, to the windows: first it
// closes the open window if its time has run out (the batch belongs to the
// next), then fills windows sample by sample, closing each that reaches
// Samples. It returns the windows it closed, usually none (nil).
func (w *Windower) Observe(now time.Time, b Batch) ([]Window, error) {
	var closed []Window
	n, err := w.f.check(w.ref, b)
	if err != nil {
		return nil, err
	}
	if win, ok := w.Tick(now); ok {
		closed = append(closed, win)
	}
	for lo := 0; lo < n; {
		if w.cur == nil {
			w.cur = w.ref.Empty(w.windowSeed())
			w.start = now
		}
		hi := n
		if w.cfg.Samples > 0 {
			hi = min(n, lo+w.cfg.Samples-int(w.cur.samples))
		}
		w.f.observe(w.cur, b, lo, hi)
		lo = hi
		if w.cfg.Samples > 0 && int(w.cur.samples) >= w.cfg.Samples {
			end := now
			if end.Before(w.start) {
				end = w.start
			}
			closed = append(closed, w.close(end))
		}
	}
	return closed, nil
}

func (w *Windower) windowSeed() uint64 {
	s := w.seed ^ w.next*0xd1b54a32d192ed03
	return splitmix64(&s)
}

func (w *Windower) close(end time.Time) Window {
	win := Window{First: w.next, Last: w.next, Start: w.start, End: end, Profile: w.cur}
	w.cur = nil
	w.next++
	return win
}
