package drift

import (
	"errors"
	"fmt"
	"slices"
)

// Spec describes what a profile summarises: the featurizer configuration
// (the model's per-sample input and output shapes and how they are
// summarised), resolved, and the features it yields, in order.
type Spec struct {
	// Config is the featurizer's configuration, with defaults filled in.
	Config FeaturizerConfig `json:"config"`
	// Features are the monitored features.
	Features []Feature `json:"features"`
}

func (s Spec) clone() Spec {
	c := s
	c.Config.InputShape = slices.Clone(s.Config.InputShape)
	c.Config.OutputShape = slices.Clone(s.Config.OutputShape)
	c.Config.InputFeatures = slices.Clone(s.Config.InputFeatures)
	c.Features = slices.Clone(s.Features)
	return c
}

// equal reports whether two specs are the same.
func (s *Spec) equal(o *Spec) bool {
	a, b := &s.Config, &o.Config
	return slices.Equal(a.InputShape, b.InputShape) && slices.Equal(a.OutputShape, b.OutputShape) &&
		a.Inputs == b.Inputs && slices.Equal(a.InputFeatures, b.InputFeatures) &&
		a.Projections == b.Projections && a.ProjectionSeed == b.ProjectionSeed &&
		a.Outputs == b.Outputs && a.SketchK == b.SketchK && slices.Equal(s.Features, o.Features)
}

// diff returns why o cannot be compared with s, or nil.
func (s *Spec) diff(o *Spec) error {
	a, b := &s.Config, &o.Config
	switch {
	case !slices.Equal(a.InputShape, b.InputShape):
		return fmt.Errorf("input shape %v, want %v", b.InputShape, a.InputShape)
	case !slices.Equal(a.OutputShape, b.OutputShape):
		return fmt.Errorf("output shape %v, want %v", b.OutputShape, a.OutputShape)
	case a.Inputs != b.Inputs:
		return fmt.Errorf("inputs summarised as %q, want %q", b.Inputs, a.Inputs)
	case a.Projections != b.Projections || a.ProjectionSeed != b.ProjectionSeed:
		return fmt.Errorf("%d projections seeded %d, want %d seeded %d", b.Projections, b.ProjectionSeed, a.Projections, a.ProjectionSeed)
	case a.Outputs != b.Outputs:
		return fmt.Errorf("outputs are %q, want %q", b.Outputs, a.Outputs)
	case a.SketchK != b.SketchK:
		return fmt.Errorf("sketch k %d, want %d", b.SketchK, a.SketchK)
	case !slices.Equal(a.InputFeatures, b.InputFeatures) || !slices.Equal(s.Features, o.Features):
		return errors.New("the features differ")
	}
	return nil
}

// validate checks that a decoded spec is what its configuration yields.
func (s *Spec) validate() error {
	r, err := s.Config.resolve()
	if err != nil {
		return err
	}
	want := Spec{Config: r, Features: r.features()}
	if !want.equal(s) {
		return errors.New("the features are not those of the configuration")
	}
	return checkNames(s.Features)
}

// Profile summarises a model's monitored features over a set of samples:
// a reference (the baseline the hub distributes) or one window at the
// edge. Each numeric feature has a Numeric and each categorical one a
// Categorical, in the order of the spec's features. A Featurizer fills it;
// its summaries are read-only to others. Profiles of the same spec and
// histogram edges merge (the union of their samples) and are compared by
// Detect. A Profile is not safe for concurrent use.
//
// A reference is built in two passes over the reference data: the first
// into a profile without histogram edges (Featurizer.NewProfile), the
// second into Binned(bins) of it, whose numeric summaries have edges at
// the first pass's quantiles. Windows are Empty copies of the reference.
type Profile struct {
	spec    Spec
	samples uint64
	num     []*Numeric     // by feature; nil for categorical ones
	cat     []*Categorical // by feature; nil for numeric ones
}

// newProfile returns an empty profile of spec with the given histogram
// edges per feature (none when nil), its sketches seeded from seed.
func newProfile(spec Spec, edges [][]float64, seed uint64) *Profile {
	p := &Profile{spec: spec, num: make([]*Numeric, len(spec.Features)), cat: make([]*Categorical, len(spec.Features))}
	for i, f := range spec.Features {
		switch f.Kind {
		case KindNumeric:
			var e []float64
			if edges != nil {
				e = edges[i]
			}
			p.num[i] = &Numeric{}
			p.num[i].reset(e, spec.Config.SketchK, featureSeed(seed, i))
		case KindCategorical:
			p.cat[i] = &Categorical{counts: make([]uint64, f.Classes)}
		}
	}
	return p
}

// featureSeed derives feature i's sketch seed from a profile's seed.
func featureSeed(seed uint64, i int) uint64 {
	s := seed ^ uint64(i)*0x9e3779b97f4a7c15
	return splitmix64(&s)
}

// Spec returns the profile's spec.
func (p *Profile) Spec() Spec { return p.spec.clone() }

// Samples returns the number of samples observed.
func (p *Profile) Samples() uint64 { return p.samples }

// Index returns the index of the feature named name, or -1.
func (p *Profile) Index(name string) int {
	return slices.IndexFunc(p.spec.Features, func(f Feature) bool { return f.Name == name })
}

// Numeric returns feature i's summary, or nil when it is categorical or i
// is out of range.
func (p *Profile) Numeric(i int) *Numeric {
	if i < 0 || i >= len(p.num) {
		return nil
	}
	return p.num[i]
}

// Categorical returns feature i's summary, or nil when it is numeric or i
// is out of range.
func (p *Profile) Categorical(i int) *Categorical {
	if i < 0 || i >= len(p.cat) {
		return nil
	}
	return p.cat[i]
}

// Compatible returns nil when o can be compared with or merged into p: the
// same spec (the same model shapes, featurizer and features) and the same
// histogram edges; otherwise an error saying what differs.
func (p *Profile) Compatible(o *Profile) error {
	if err := p.spec.diff(&o.spec); err != nil {
		return fmt.Errorf("incompatible profiles: %w", err)
	}
	for i, n := range p.num {
		if n != nil && !slices.Equal(n.edges, o.num[i].edges) {
			return fmt.Errorf("incompatible profiles: feature %q has other histogram edges", p.spec.Features[i].Name)
		}
	}
	return nil
}

// Merge adds the samples summarised by o to p; o must be Compatible.
// p is unchanged on error.
func (p *Profile) Merge(o *Profile) error {
	if err := p.Compatible(o); err != nil {
		return err
	}
	for i := range p.spec.Features {
		if n := p.num[i]; n != nil {
			if err := n.Merge(o.num[i]); err != nil {
				// Unreachable for compatible profiles; earlier features
				// would be merged already.
				return fmt.Errorf("feature %q: %w", p.spec.Features[i].Name, err)
			}
		} else if err := p.cat[i].Merge(o.cat[i]); err != nil {
			return fmt.Errorf("feature %q: %w", p.spec.Features[i].Name, err)
		}
	}
	p.samples += o.samples
	return nil
}

// Clone returns a deep copy of p.
func (p *Profile) Clone() *Profile {
	c := &Profile{spec: p.spec.clone(), samples: p.samples, num: make([]*Numeric, len(p.num)), cat: make([]*Categorical, len(p.cat))}
	for i := range p.num {
		if p.num[i] != nil {
			c.num[i] = p.num[i].Clone()
		}
		if p.cat[i] != nil {
			c.cat[i] = p.cat[i].Clone()
		}
	}
	return c
}

// Empty returns an empty profile of p's spec and histogram edges, its
// sketches seeded from seed: a window to compare with p.
func (p *Profile) Empty(seed uint64) *Profile {
	return newProfile(p.spec.clone(), p.edges(), seed)
}

func (p *Profile) edges() [][]float64 {
	e := make([][]float64, len(p.num))
	for i, n := range p.num {
		if n != nil {
			e[i] = n.edges
		}
	}
	return e
}

// Binned returns an empty profile of p's spec whose numeric features have
// histogram edges for bins equal-mass bins of p's values (QuantileEdges),
// its sketches seeded from seed: the second pass of a reference. A feature
// without finite values in p gets no histogram.
func (p *Profile) Binned(bins int, seed uint64) (*Profile, error) {
	if bins < 1 || bins > maxEdges-2 {
		return nil, fmt.Errorf("profile: %d bins, want 1 to %d", bins, maxEdges-2)
	}
	e := make([][]float64, len(p.num))
	for i, n := range p.num {
		if n != nil {
			e[i] = QuantileEdges(n, bins)
		}
	}
	return newProfile(p.spec.clone(), e, seed), nil
}
