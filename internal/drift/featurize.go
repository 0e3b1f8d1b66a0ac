package drift

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// MaxElementwise is the largest number of input (or output) elements that
// are each monitored as a feature of their own.
const MaxElementwise = 64

// maxElements bounds the elements of one sample's tensor (a 1024×1024 RGB
// image has 3·2^20).
const maxElements = 1 << 22

// DefaultProjections is the number of random projections an image-sized
// input is summarised by when the configuration gives none.
const DefaultProjections = 8

// maxProjections bounds the number of random projections.
const maxProjections = 64

// InputMode says how a model's input tensor is summarised.
type InputMode string

const (
	// InputsElementwise monitors each element of a sample as a feature:
	// for small feature vectors (at most MaxElementwise elements).
	InputsElementwise InputMode = "elementwise"
	// InputsImage monitors a few summaries of each sample instead of its
	// many noisy elements: the mean and the (population) standard deviation
	// of its elements, and Projections fixed random projections
	// r_j·x, where r_j has entries ±1/√D (D elements), their signs drawn
	// from a splitmix64 generator seeded by ProjectionSeed, so that the hub
	// and the edge agree.
	InputsImage InputMode = "image"
)

// OutputMode says what a model's output tensor holds.
type OutputMode string

const (
	// OutputsProbabilities holds class probabilities (a softmax already
	// applied; with one element, the probability of class 1). Each class's
	// probability is a numeric feature (for at most MaxElementwise
	// classes) and the predicted class (the argmax; with one element,
	// p ≥ ½) a categorical one.
	OutputsProbabilities OutputMode = "probabilities"
	// OutputsLogits holds class scores; they are turned into probabilities
	// by a softmax (with one element, a sigmoid), then as
	// OutputsProbabilities.
	OutputsLogits OutputMode = "logits"
	// OutputsValues holds regression outputs: each element is a numeric
	// feature (at most MaxElementwise).
	OutputsValues OutputMode = "values"
)

// Role says whether a feature summarises a model's inputs or its outputs.
type Role string

const (
	// RoleInput marks a feature of the inputs.
	RoleInput Role = "input"
	// RoleOutput marks a feature of the outputs.
	RoleOutput Role = "output"
)

// Kind is a feature's kind of values.
type Kind string

const (
	// KindNumeric features are summarised by a Numeric.
	KindNumeric Kind = "numeric"
	// KindCategorical features are summarised by a Categorical.
	KindCategorical Kind = "categorical"
)

// Feature is one monitored feature.
type Feature struct {
	// Name identifies the feature: "in[3]" (or the name configured for
	// an input element), "in.mean", "in.std", "in.proj[2]", "out.p[4]",
	// "out.class", "out[0]".
	Name string `json:"name"`
	// Role is whether it is of the inputs or the outputs.
	Role Role `json:"role"`
	// Kind is numeric or categorical.
	Kind Kind `json:"kind"`
	// Classes is, for a categorical feature, the number of classes counted
	// apart.
	Classes int `json:"classes,omitempty"`
}

// InputFeature names one element of an elementwise input and says whether
// it is categorical.
type InputFeature struct {
	// Name is the feature's name; empty means "in[i]".
	Name string `json:"name,omitempty"`
	// Classes, when positive, makes the element a categorical feature whose
	// values are class codes 0 … Classes-1.
	Classes int `json:"classes,omitempty"`
}

// FeaturizerConfig says how a model's tensors become monitored features.
// Shapes are per sample: the batch dimension is left out.
type FeaturizerConfig struct {
	// InputShape is the shape of one sample's input.
	InputShape []int `json:"inputShape"`
	// Inputs is how the input is summarised; empty means elementwise for
	// at most MaxElementwise elements and image otherwise.
	Inputs InputMode `json:"inputs,omitempty"`
	// InputFeatures, for elementwise inputs, names the elements and marks
	// the categorical ones; empty means numeric elements "in[i]".
	InputFeatures []InputFeature `json:"inputFeatures,omitempty"`
	// Projections is the number of random projections of an image input
	// (1 to 64); 0 means DefaultProjections.
	Projections int `json:"projections,omitempty"`
	// ProjectionSeed seeds the random projections' signs.
	ProjectionSeed uint64 `json:"projectionSeed,omitempty"`
	// OutputShape is the shape of one sample's output.
	OutputShape []int `json:"outputShape"`
	// Outputs is what the output holds; empty means probabilities.
	Outputs OutputMode `json:"outputs,omitempty"`
	// SketchK is the quantile sketches' size parameter; 0 means
	// DefaultSketchK.
	SketchK int `json:"sketchK,omitempty"`
}

// resolve returns c with its defaults filled in, validated.
func (c FeaturizerConfig) resolve() (FeaturizerConfig, error) {
	r := c
	r.InputShape = slices.Clone(c.InputShape)
	r.OutputShape = slices.Clone(c.OutputShape)
	r.InputFeatures = slices.Clone(c.InputFeatures)
	in, err := elements(r.InputShape)
	if err != nil {
		return r, fmt.Errorf("input shape %v: %w", c.InputShape, err)
	}
	out, err := elements(r.OutputShape)
	if err != nil {
		return r, fmt.Errorf("output shape %v: %w", c.OutputShape, err)
	}
	if r.Inputs == "" {
		r.Inputs = InputsElementwise
		if in > MaxElementwise {
			r.Inputs = InputsImage
		}
	}
	switch r.Inputs {
	case InputsElementwise:
		if in > MaxElementwise {
			return r, fmt.Errorf("elementwise inputs of %d elements: at most %d (use %q)", in, MaxElementwise, InputsImage)
		}
		if r.Projections != 0 || r.ProjectionSeed != 0 {
			return r, errors.New("projections are for image inputs")
		}
		if len(r.InputFeatures) != 0 && len(r.InputFeatures) != in {
			return r, fmt.Errorf("%d input features for %d input elements", len(r.InputFeatures), in)
		}
		for i, f := range r.InputFeatures {
			if f.Classes < 0 || f.Classes > MaxClasses {
				return r, fmt.Errorf("input feature %d: %d classes, want 0 to %d", i, f.Classes, MaxClasses)
			}
		}
	case InputsImage:
		if len(r.InputFeatures) != 0 {
			return r, errors.New("input features are for elementwise inputs")
		}
		if in < 2 {
			return r, fmt.Errorf("image inputs of %d element", in)
		}
		if r.Projections == 0 {
			r.Projections = DefaultProjections
		}
		if r.Projections < 1 || r.Projections > maxProjections {
			return r, fmt.Errorf("%d projections, want 1 to %d", r.Projections, maxProjections)
		}
	default:
		return r, fmt.Errorf("unknown input mode %q", r.Inputs)
	}
	if r.Outputs == "" {
		r.Outputs = OutputsProbabilities
	}
	switch r.Outputs {
	case OutputsProbabilities, OutputsLogits:
		if out > MaxClasses {
			return r, fmt.Errorf("%d output classes, at most %d", out, MaxClasses)
		}
	case OutputsValues:
		if out > MaxElementwise {
			return r, fmt.Errorf("%d output values, at most %d", out, MaxElementwise)
		}
	default:
		return r, fmt.Errorf("unknown output mode %q", r.Outputs)
	}
	if r.SketchK == 0 {
		r.SketchK = DefaultSketchK
	}
	if r.SketchK < minSketchK || r.SketchK > maxSketchK {
		return r, fmt.Errorf("sketch k %d out of range [%d, %d]", r.SketchK, minSketchK, maxSketchK)
	}
	return r, nil
}

// elements returns the number of elements of a per-sample shape.
func elements(shape []int) (int, error) {
	if len(shape) == 0 {
		return 0, errors.New("empty shape")
	}
	n := 1
	for _, d := range shape {
		if d < 1 {
			return 0, fmt.Errorf("dimension %d", d)
		}
		if n > maxElements/d {
			return 0, fmt.Errorf("more than %d elements", maxElements)
		}
		n *= d
	}
	return n, nil
}

// features returns the features of a resolved configuration.
func (c FeaturizerConfig) features() []Feature {
	var fs []Feature
	in, _ := elements(c.InputShape)
	out, _ := elements(c.OutputShape)
	switch c.Inputs {
	case InputsElementwise:
		for i := range in {
			f := Feature{Name: fmt.Sprintf("in[%d]", i), Role: RoleInput, Kind: KindNumeric}
			if len(c.InputFeatures) > 0 {
				if n := c.InputFeatures[i].Name; n != "" {
					f.Name = n
				}
				if k := c.InputFeatures[i].Classes; k > 0 {
					f.Kind, f.Classes = KindCategorical, k
				}
			}
			fs = append(fs, f)
		}
	case InputsImage:
		fs = append(fs, Feature{Name: "in.mean", Role: RoleInput, Kind: KindNumeric},
			Feature{Name: "in.std", Role: RoleInput, Kind: KindNumeric})
		for j := range c.Projections {
			fs = append(fs, Feature{Name: fmt.Sprintf("in.proj[%d]", j), Role: RoleInput, Kind: KindNumeric})
		}
	}
	switch c.Outputs {
	case OutputsProbabilities, OutputsLogits:
		if out <= MaxElementwise {
			for j := range out {
				fs = append(fs, Feature{Name: fmt.Sprintf("out.p[%d]", j), Role: RoleOutput, Kind: KindNumeric})
			}
		}
		fs = append(fs, Feature{Name: "out.class", Role: RoleOutput, Kind: KindCategorical, Classes: max(out, 2)})
	case OutputsValues:
		for j := range out {
			fs = append(fs, Feature{Name: fmt.Sprintf("out[%d]", j), Role: RoleOutput, Kind: KindNumeric})
		}
	}
	return fs
}

// Featurizer turns batches of a model's input and output tensors into the
// values of its monitored features, and adds them to a Profile. Observe
// does not allocate. A Featurizer is safe for concurrent use; the profiles
// it fills are not.
type Featurizer struct {
	spec    Spec
	in, out int
	// proj holds the projections' signs: for element i, byte i·groups+g
	// has those of projections 8g … 8g+7 (bit j%8 set: negative); scale
	// is their magnitude 1/√in.
	proj   []uint8
	groups int
	scale  float64
}

// Batch is one request's tensors: float32 data in row-major order with
// shapes whose first dimension is the batch size.
type Batch struct {
	Input       []float32
	InputShape  []int
	Output      []float32
	OutputShape []int
}

// NewFeaturizer returns the featurizer of cfg.
func NewFeaturizer(cfg FeaturizerConfig) (*Featurizer, error) {
	r, err := cfg.resolve()
	if err != nil {
		return nil, fmt.Errorf("featurizer: %w", err)
	}
	f := &Featurizer{spec: Spec{Config: r, Features: r.features()}}
	f.in, _ = elements(r.InputShape)
	f.out, _ = elements(r.OutputShape)
	if err := checkNames(f.spec.Features); err != nil {
		return nil, fmt.Errorf("featurizer: %w", err)
	}
	if r.Inputs == InputsImage {
		f.proj, f.groups = projections(r.Projections, f.in, r.ProjectionSeed)
		f.scale = 1 / math.Sqrt(float64(f.in))
	}
	return f, nil
}

func checkNames(fs []Feature) error {
	seen := make(map[string]bool, len(fs))
	for _, f := range fs {
		if f.Name == "" {
			return errors.New("a feature has no name")
		}
		if seen[f.Name] {
			return fmt.Errorf("two features named %q", f.Name)
		}
		seen[f.Name] = true
	}
	return nil
}

// projections returns the signs of k projections of d elements: they are
// drawn 64 at a time from a splitmix64 generator seeded by seed,
// projection by projection and element by element, low bit first, a set
// bit negative. Element i's signs are in bytes i·groups … (i+1)·groups-1,
// eight projections a byte, for a single pass over a sample.
func projections(k, d int, seed uint64) (signs []uint8, groups int) {
	groups = (k + 7) / 8
	signs = make([]uint8, d*groups)
	state := seed
	var bits uint64
	for n := range k * d {
		if n%64 == 0 {
			bits = splitmix64(&state)
		}
		j, i := n/d, n%d
		signs[i*groups+j/8] |= uint8(bits&1) << (j % 8)
		bits >>= 1
	}
	return signs, groups
}

// projection returns entry i of projection j: ±1/√d.
func (f *Featurizer) projection(j, i int) float64 {
	if f.proj[i*f.groups+j/8]>>(j%8)&1 == 1 {
		return -f.scale
	}
	return f.scale
}

// project returns the sum of x's elements and sets dots[j] to projection
// j of x, r_j·x, for j below 8·groups (past Projections, in the last
// group, the dots are of zero signs: all positive, and unused).
//
// Rather than 8 multiply-adds an element for each group of eight
// projections, it adds each element to one of 16 buckets by the low
// nibble of its signs byte, and to one of 16 by the high one: elements
// whose four signs agree share a bucket. Projection j is then the sum of
// its nibble's 16 buckets, each with its sign, times 1/√d: two additions
// an element instead of eight multiply-adds, the same value to rounding.
// NaN and infinities come out as the direct sum's would: every element
// enters every projection with a sign ±1, and so every bucket does.
func (f *Featurizer) project(x []float32, dots *[maxProjections]float64) (sum float64) {
	for g := range f.groups {
		var lo, hi [16]float64
		if f.groups == 1 {
			signs := f.proj[:len(x)]
			for i, v := range x {
				xv := float64(v)
				b := signs[i]
				lo[b&15] += xv
				hi[b>>4] += xv
			}
		} else {
			for i, v := range x {
				xv := float64(v)
				b := f.proj[i*f.groups+g]
				lo[b&15] += xv
				hi[b>>4] += xv
			}
		}
		var a [8]float64
		for n := range 16 {
			for j := range 4 {
				if n>>j&1 == 1 {
					a[j] -= lo[n]
					a[4+j] -= hi[n]
				} else {
					a[j] += lo[n]
					a[4+j] += hi[n]
				}
			}
		}
		for j, v := range a {
			dots[8*g+j] = v * f.scale
		}
		if g == 0 {
			for _, l := range lo {
				sum += l
			}
		}
	}
	return sum
}

// Spec returns the featurizer's spec: its configuration, resolved, and its
// features.
func (f *Featurizer) Spec() Spec { return f.spec.clone() }

// NewProfile returns an empty profile of the featurizer's features, its
// sketches seeded from seed.
func (f *Featurizer) NewProfile(seed uint64) *Profile {
	return newProfile(f.spec.clone(), nil, seed)
}

// Observe adds the features of every sample of b to p, which must have
// been made for the featurizer's spec.
func (f *Featurizer) Observe(p *Profile, b Batch) error {
	n, err := f.check(p, b)
	if err != nil {
		return err
	}
	f.observe(p, b, 0, n)
	return nil
}

// check validates a batch for p and returns its size.
func (f *Featurizer) check(p *Profile, b Batch) (int, error) {
	if !p.spec.equal(&f.spec) {
		return 0, errors.New("featurizer: the profile is of another spec")
	}
	n, err := batchSize("input", b.InputShape, f.spec.Config.InputShape, len(b.Input))
	if err != nil {
		return 0, err
	}
	m, err := batchSize("output", b.OutputShape, f.spec.Config.OutputShape, len(b.Output))
	if err != nil {
		return 0, err
	}
	if n != m {
		return 0, fmt.Errorf("featurizer: batch of %d inputs and %d outputs", n, m)
	}
	return n, nil
}

// batchSize checks that shape is [batch, sample...] with data of its size,
// and returns the batch size.
func batchSize(what string, shape, sample []int, data int) (int, error) {
	if len(shape) != len(sample)+1 || !slices.Equal(shape[1:], sample) || shape[0] < 0 {
		return 0, fmt.Errorf("featurizer: %s shape %v, want [batch %v]", what, shape, sample)
	}
	per := 1
	for _, d := range sample {
		per *= d
	}
	if shape[0] > math.MaxInt/per || shape[0]*per != data {
		return 0, fmt.Errorf("featurizer: %s shape %v, but %d values", what, shape, data)
	}
	return shape[0], nil
}

// observe adds samples lo … hi-1 of a checked batch to p.
func (f *Featurizer) observe(p *Profile, b Batch, lo, hi int) {
	c := &f.spec.Config
	for s := lo; s < hi; s++ {
		x := b.Input[s*f.in : (s+1)*f.in]
		k := 0
		switch c.Inputs {
		case InputsElementwise:
			for i, v := range x {
				if cat := p.cat[i]; cat != nil {
					cat.AddValue(float64(v))
				} else {
					p.num[i].Add(float64(v))
				}
			}
			k = len(x)
		case InputsImage:
			var dots [maxProjections]float64
			sum := f.project(x, &dots)
			mean := sum / float64(len(x))
			// Four running sums break the chain of additions.
			var s0, s1, s2, s3 float64
			r := x
			for len(r) >= 4 {
				d0, d1 := float64(r[0])-mean, float64(r[1])-mean
				d2, d3 := float64(r[2])-mean, float64(r[3])-mean
				s0 += d0 * d0
				s1 += d1 * d1
				s2 += d2 * d2
				s3 += d3 * d3
				r = r[4:]
			}
			for _, v := range r {
				d := float64(v) - mean
				s0 += d * d
			}
			acc := dots[:c.Projections]
			sq := (s0 + s1) + (s2 + s3)
			p.num[0].Add(mean)
			p.num[1].Add(math.Sqrt(sq / float64(len(x))))
			for j, dot := range acc {
				p.num[2+j].Add(dot)
			}
			k = 2 + c.Projections
		}
		y := b.Output[s*f.out : (s+1)*f.out]
		switch c.Outputs {
		case OutputsValues:
			for i, v := range y {
				p.num[k+i].Add(float64(v))
			}
		default:
			f.observeClasses(p, k, y)
		}
	}
	p.samples += uint64(hi - lo)
}

// observeClasses adds the class probabilities of output y, and its
// predicted class, to p's features from k on.
func (f *Featurizer) observeClasses(p *Profile, k int, y []float32) {
	logits := f.spec.Config.Outputs == OutputsLogits
	perClass := len(y) <= MaxElementwise
	class := p.cat[len(p.cat)-1]
	if len(y) == 1 {
		v := float64(y[0])
		if logits {
			v = 1 / (1 + math.Exp(-v))
		}
		p.num[k].Add(v)
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			class.AddInvalid()
		case v >= 0.5:
			class.Add(1)
		default:
			class.Add(0)
		}
		return
	}
	// The argmax, and for logits the softmax's largest logit and sum.
	best, top, finite := 0, math.Inf(-1), true
	for i, v := range y {
		x := float64(v)
		if math.IsNaN(x) || (logits && math.IsInf(x, 0)) {
			finite = false
			break
		}
		if x > top {
			best, top = i, x
		}
	}
	// The softmax's exponentials, kept for the probabilities when there
	// are few enough classes.
	var exps [MaxElementwise]float64
	sum := 0.0
	if finite && logits {
		for i, v := range y {
			e := math.Exp(float64(v) - top)
			if perClass {
				exps[i] = e
			}
			sum += e
		}
	}
	if perClass {
		for i, v := range y {
			x := float64(v)
			switch {
			case !finite:
				x = math.NaN()
			case logits:
				x = exps[i] / sum
			}
			p.num[k+i].Add(x)
		}
	}
	if finite {
		class.Add(best)
	} else {
		class.AddInvalid()
	}
}
