package drift

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
)

// EncodingVersion is the version of the JSON encoding of profiles and
// summaries. Decoding refuses any other.
const EncodingVersion = 1

// The JSON encoding. A profile:
//
//	{"version": 1, "spec": {"config": {...}, "features": [...]},
//	 "samples": 1000, "summaries": [{"name": "in.mean", "numeric": {...}}, ...]}
//
// A numeric summary (with "version" when encoded alone):
//
//	{"count": 990, "nan": 8, "posInf": 2, "negInf": 0, "min": -3.1, "max": 2.9,
//	 "mean": 0.01, "m2": 1002.5, "edges": [...], "histogram": [...],
//	 "sketch": {"k": 512, "n": 990, "rng": "42", "variance": 10,
//	            "levels": [[...], [...]]}}
//
// A categorical summary: {"counts": [...], "other": 0, "invalid": 0}.
// Floats are written so that they read back exactly; min and max are left
// out when there is no finite value.

type numericJSON struct {
	Version   int         `json:"version,omitempty"`
	Count     uint64      `json:"count"`
	NaN       uint64      `json:"nan"`
	PosInf    uint64      `json:"posInf"`
	NegInf    uint64      `json:"negInf"`
	Min       *float64    `json:"min,omitempty"`
	Max       *float64    `json:"max,omitempty"`
	Mean      float64     `json:"mean"`
	M2        float64     `json:"m2"`
	Edges     []float64   `json:"edges,omitempty"`
	Histogram []uint64    `json:"histogram,omitempty"`
	Sketch    *sketchJSON `json:"sketch"`
}

type sketchJSON struct {
	K        int         `json:"k"`
	N        uint64      `json:"n"`
	RNG      uint64      `json:"rng,string"`
	Variance float64     `json:"variance"`
	Levels   [][]float64 `json:"levels"`
}

type categoricalJSON struct {
	Version int      `json:"version,omitempty"`
	Counts  []uint64 `json:"counts"`
	Other   uint64   `json:"other"`
	Invalid uint64   `json:"invalid"`
}

type summaryJSON struct {
	Name        string           `json:"name"`
	Numeric     *numericJSON     `json:"numeric,omitempty"`
	Categorical *categoricalJSON `json:"categorical,omitempty"`
}

type profileJSON struct {
	Version   int           `json:"version"`
	Spec      *Spec         `json:"spec"`
	Samples   uint64        `json:"samples"`
	Summaries []summaryJSON `json:"summaries"`
}

func (n *Numeric) toJSON() *numericJSON {
	j := &numericJSON{Count: n.count, NaN: n.nan, PosInf: n.posInf, NegInf: n.negInf,
		Mean: n.mean, M2: n.m2, Edges: n.edges, Histogram: n.hist,
		Sketch: &sketchJSON{K: n.sketch.k, N: n.sketch.n, RNG: n.sketch.rng,
			Variance: n.sketch.vari, Levels: n.sketch.levels}}
	if n.count > 0 {
		lo, hi := n.min, n.max
		j.Min, j.Max = &lo, &hi
	}
	return j
}

func (j *numericJSON) toNumeric() (*Numeric, error) {
	if j.Sketch == nil {
		return nil, errors.New("no sketch")
	}
	if (j.Min != nil) != (j.Count > 0) || (j.Max != nil) != (j.Count > 0) {
		return nil, errors.New("min and max must be given exactly when count is positive")
	}
	n := &Numeric{count: j.Count, nan: j.NaN, posInf: j.PosInf, negInf: j.NegInf,
		mean: j.Mean, m2: j.M2, edges: j.Edges, hist: j.Histogram}
	if len(n.edges) == 0 {
		n.edges = nil
	}
	if len(n.hist) == 0 {
		n.hist = nil
	}
	n.min, n.max = math.Inf(1), math.Inf(-1)
	if j.Count > 0 {
		n.min, n.max = *j.Min, *j.Max
	}
	s := j.Sketch
	n.sketch = Sketch{k: s.K, n: s.N, rng: s.RNG, vari: s.Variance, levels: s.Levels}
	if err := n.validate(); err != nil {
		return nil, err
	}
	for h := range n.sketch.levels {
		if n.sketch.levels[h] == nil {
			n.sketch.levels[h] = []float64{}
		}
	}
	n.sketch.caps = depthCapacities(n.sketch.k)
	n.sketch.cap0 = n.sketch.capacity(0)
	return n, nil
}

func (c *Categorical) toJSON() *categoricalJSON {
	return &categoricalJSON{Counts: c.counts, Other: c.other, Invalid: c.invalid}
}

func (j *categoricalJSON) toCategorical() (*Categorical, error) {
	c := &Categorical{counts: j.Counts, other: j.Other, invalid: j.Invalid}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeStrict decodes one JSON value from data into v, refusing unknown
// fields and trailing data.
func decodeStrict(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func checkVersion(v int) error {
	if v != EncodingVersion {
		return fmt.Errorf("version %d, want %d", v, EncodingVersion)
	}
	return nil
}

// MarshalJSON encodes n with its version.
func (n *Numeric) MarshalJSON() ([]byte, error) {
	j := n.toJSON()
	j.Version = EncodingVersion
	return json.Marshal(j)
}

// UnmarshalJSON decodes and validates an encoded Numeric; n is unchanged
// on error.
func (n *Numeric) UnmarshalJSON(data []byte) error {
	var j numericJSON
	if err := decodeStrict(data, &j); err != nil {
		return fmt.Errorf("numeric: %w", err)
	}
	if err := checkVersion(j.Version); err != nil {
		return fmt.Errorf("numeric: %w", err)
	}
	d, err := j.toNumeric()
	if err != nil {
		return fmt.Errorf("numeric: %w", err)
	}
	*n = *d
	return nil
}

// MarshalJSON encodes c with its version.
func (c *Categorical) MarshalJSON() ([]byte, error) {
	j := c.toJSON()
	j.Version = EncodingVersion
	return json.Marshal(j)
}

// UnmarshalJSON decodes and validates an encoded Categorical; c is
// unchanged on error.
func (c *Categorical) UnmarshalJSON(data []byte) error {
	var j categoricalJSON
	if err := decodeStrict(data, &j); err != nil {
		return fmt.Errorf("categorical: %w", err)
	}
	if err := checkVersion(j.Version); err != nil {
		return fmt.Errorf("categorical: %w", err)
	}
	d, err := j.toCategorical()
	if err != nil {
		return fmt.Errorf("categorical: %w", err)
	}
	*c = *d
	return nil
}

// MarshalJSON encodes p with its version.
func (p *Profile) MarshalJSON() ([]byte, error) {
	j := profileJSON{Version: EncodingVersion, Spec: &p.spec, Samples: p.samples,
		Summaries: make([]summaryJSON, len(p.spec.Features))}
	for i, f := range p.spec.Features {
		j.Summaries[i].Name = f.Name
		if n := p.num[i]; n != nil {
			j.Summaries[i].Numeric = n.toJSON()
		} else {
			j.Summaries[i].Categorical = p.cat[i].toJSON()
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes and validates an encoded Profile; p is unchanged
// on error.
func (p *Profile) UnmarshalJSON(data []byte) error {
	d, err := DecodeProfile(data)
	if err != nil {
		return err
	}
	*p = *d
	return nil
}

// DecodeProfile decodes an encoded Profile and checks it: the version, the
// spec (its features must be those of its configuration), one summary per
// feature of the right kind, name and size, and each summary's invariants
// (counts that add up, a sketch that weighs what was counted, values within
// the minimum and maximum, every feature having seen every sample). It
// returns an error saying what is wrong with a malformed one.
func DecodeProfile(data []byte) (*Profile, error) {
	var j profileJSON
	if err := decodeStrict(data, &j); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if err := checkVersion(j.Version); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	if j.Spec == nil {
		return nil, errors.New("profile: no spec")
	}
	if err := j.Spec.validate(); err != nil {
		return nil, fmt.Errorf("profile: spec: %w", err)
	}
	fs := j.Spec.Features
	if len(j.Summaries) != len(fs) {
		return nil, fmt.Errorf("profile: %d summaries for %d features", len(j.Summaries), len(fs))
	}
	p := &Profile{spec: *j.Spec, samples: j.Samples, num: make([]*Numeric, len(fs)), cat: make([]*Categorical, len(fs))}
	for i, f := range fs {
		s := j.Summaries[i]
		if s.Name != f.Name {
			return nil, fmt.Errorf("profile: summary %d is of %q, want %q", i, s.Name, f.Name)
		}
		if err := p.decodeSummary(i, f, s); err != nil {
			return nil, fmt.Errorf("profile: feature %q: %w", f.Name, err)
		}
	}
	return p, nil
}

func (p *Profile) decodeSummary(i int, f Feature, s summaryJSON) error {
	if (s.Numeric != nil) == (s.Categorical != nil) {
		return errors.New("want exactly one of numeric and categorical")
	}
	switch f.Kind {
	case KindNumeric:
		if s.Numeric == nil {
			return errors.New("numeric feature with a categorical summary")
		}
		if v := s.Numeric.Version; v != 0 {
			return errors.New("a summary within a profile has no version of its own")
		}
		n, err := s.Numeric.toNumeric()
		if err != nil {
			return err
		}
		if n.sketch.k != p.spec.Config.SketchK {
			return fmt.Errorf("sketch k %d, but the spec's is %d", n.sketch.k, p.spec.Config.SketchK)
		}
		if n.Total() != p.samples {
			return fmt.Errorf("%d values for %d samples", n.Total(), p.samples)
		}
		p.num[i] = n
	case KindCategorical:
		if s.Categorical == nil {
			return errors.New("categorical feature with a numeric summary")
		}
		if v := s.Categorical.Version; v != 0 {
			return errors.New("a summary within a profile has no version of its own")
		}
		c, err := s.Categorical.toCategorical()
		if err != nil {
			return err
		}
		if len(c.counts) != f.Classes {
			return fmt.Errorf("%d classes, want %d", len(c.counts), f.Classes)
		}
		if c.Total() != p.samples {
			return fmt.Errorf("%d values for %d samples", c.Total(), p.samples)
		}
		p.cat[i] = c
	}
	return nil
}
