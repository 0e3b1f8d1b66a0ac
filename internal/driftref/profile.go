package driftref

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
)

// DefaultBins is the number of equal-mass histogram bins of a reference
// profile's numeric features unless told otherwise.
const DefaultBins = 10

// DefaultBatch is how many samples run through the model at once unless
// told otherwise.
const DefaultBatch = 256

// The sketches' seeds of the two passes over the reference data: fixed, so
// that the same model and data always give the same profile.
const (
	draftSeed     = 1
	referenceSeed = 2
)

// ProfileOptions tune ComputeProfile.
type ProfileOptions struct {
	// Outputs says what the model's output holds; empty detects it:
	// probabilities when every output row lies in [0, 1] and sums to 1
	// (one element: lies in [0, 1]), logits otherwise. Regression outputs
	// need OutputsValues.
	Outputs drift.OutputMode
	// Scale multiplies every input value before the model sees it; 0
	// means 1/255 for byte data (pixels, scaled to [0, 1] as the models of
	// internal/train and internal/zoo expect) and 1 otherwise.
	Scale float64
	// Bins is the number of equal-mass histogram bins of the numeric
	// features; 0 means DefaultBins.
	Bins int
	// Batch is how many samples run through the model at once; 0 means
	// DefaultBatch. A model with a fixed batch dimension runs with that.
	Batch int
}

// FindModel returns the ONNX file of a model: path itself when it is a
// file, or the one .onnx file at the top of the folder path.
func FindModel(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return path, nil
	}
	ms, err := filepath.Glob(filepath.Join(path, "*.onnx"))
	if err != nil {
		return "", err
	}
	switch len(ms) {
	case 0:
		return "", fmt.Errorf("%s has no .onnx file to compute a reference profile with", path)
	case 1:
		return ms[0], nil
	}
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = filepath.Base(m)
	}
	return "", fmt.Errorf("%s has %d .onnx files (%s): a reference profile needs one model", path, len(ms), strings.Join(names, ", "))
}

// ComputeProfile runs the ONNX model in the file modelPath with rt on every
// sample of data and returns the reference profile of its input and output:
// the featurizer's configuration comes from the model's per-sample input
// shape and the output's (image-sized inputs are summarised as images, see
// drift.FeaturizerConfig), a first pass summarises the features, and a
// second fills histograms with edges at the first pass's quantiles. The
// model must have one float32 input and one float32 output, and data as
// many values per sample as its input takes.
func ComputeProfile(ctx context.Context, rt engine.Runtime, modelPath string, data *Data, opts ProfileOptions) (*drift.Profile, error) {
	if opts.Bins == 0 {
		opts.Bins = DefaultBins
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.Scale == 0 {
		opts.Scale = 1
		if data.Bytes {
			opts.Scale = 1.0 / 255
		}
	}
	if math.IsNaN(opts.Scale) || math.IsInf(opts.Scale, 0) {
		return nil, fmt.Errorf("scale %v, want a finite number", opts.Scale)
	}
	switch opts.Outputs {
	case "", drift.OutputsProbabilities, drift.OutputsLogits, drift.OutputsValues:
	default:
		return nil, fmt.Errorf("outputs %q: want %q, %q or %q", opts.Outputs, drift.OutputsProbabilities, drift.OutputsLogits, drift.OutputsValues)
	}
	n := data.Samples()
	if n == 0 {
		return nil, errors.New("the reference data has no samples")
	}
	sess, err := rt.Load(ctx, modelPath)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", filepath.Base(modelPath), err)
	}
	defer sess.Close()
	in, out, err := onePort(sess)
	if err != nil {
		return nil, err
	}
	shape, batch, err := inputShape(in, data)
	if err != nil {
		return nil, err
	}
	if batch == 0 {
		batch = opts.Batch
	}
	r := &runner{sess: sess, in: in, out: out, shape: shape, batch: batch, scale: float32(opts.Scale), data: data}
	if err := r.run(ctx); err != nil {
		return nil, err
	}
	mode := opts.Outputs
	if mode == "" {
		mode = detectOutputs(r.outputs, r.width())
	}
	f, err := drift.NewFeaturizer(drift.FeaturizerConfig{InputShape: shape, OutputShape: r.outShape, Outputs: mode})
	if err != nil {
		return nil, err
	}
	draft := f.NewProfile(draftSeed)
	if err := r.observe(f, draft); err != nil {
		return nil, err
	}
	ref, err := draft.Binned(opts.Bins, referenceSeed)
	if err != nil {
		return nil, err
	}
	if err := r.observe(f, ref); err != nil {
		return nil, err
	}
	return ref, nil
}

// onePort returns the model's one input and one output.
func onePort(sess engine.Session) (in, out interp.ValueInfo, err error) {
	ins, outs := sess.Inputs(), sess.Outputs()
	if len(ins) != 1 || len(outs) != 1 {
		return in, out, fmt.Errorf("the model has %d inputs (%s) and %d outputs (%s): a reference profile needs one of each",
			len(ins), names(ins), len(outs), names(outs))
	}
	in, out = ins[0], outs[0]
	if in.DType != interp.Float32 {
		return in, out, fmt.Errorf("input %q is %s: a reference profile needs a float32 input", in.Name, in.DType)
	}
	if out.DType != interp.Float32 {
		return in, out, fmt.Errorf("output %q is %s: a reference profile needs a float32 output", out.Name, out.DType)
	}
	return in, out, nil
}

func names(vs []interp.ValueInfo) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.Name
	}
	return strings.Join(s, ", ")
}

// inputShape returns the per-sample shape the model's input takes with
// data, and its fixed batch size (0 when dynamic). Dynamic dimensions
// after the batch take the data's.
func inputShape(in interp.ValueInfo, data *Data) ([]int, int, error) {
	if in.Shape == nil {
		return slices.Clone(data.Shape), 0, nil
	}
	if len(in.Shape) == 0 {
		return nil, 0, fmt.Errorf("input %q is a scalar: a reference profile needs a batch of samples", in.Name)
	}
	per := slices.Clone(in.Shape[1:])
	if slices.Contains(per, -1) {
		if len(per) != len(data.Shape) {
			return nil, 0, fmt.Errorf("input %q takes samples of shape %v; the data's are %v", in.Name, dims(per), data.Shape)
		}
		for i, d := range per {
			if d == -1 {
				per[i] = data.Shape[i]
			}
		}
	}
	w := 1
	for _, d := range per {
		w *= d
	}
	if w != data.Width() {
		return nil, 0, fmt.Errorf("input %q takes samples of shape %v (%d values); the data's have %d (shape %v)", in.Name, dims(per), w, data.Width(), data.Shape)
	}
	return per, max(in.Shape[0], 0), nil
}

// dims writes a shape with "?" for dynamic dimensions.
func dims(shape []int) string {
	s := make([]string, len(shape))
	for i, d := range shape {
		if d < 0 {
			s[i] = "?"
		} else {
			s[i] = fmt.Sprint(d)
		}
	}
	return "[" + strings.Join(s, " ") + "]"
}

// runner runs the model over the data in batches and keeps its outputs.
type runner struct {
	sess     engine.Session
	in, out  interp.ValueInfo
	shape    []int
	batch    int
	scale    float32
	data     *Data
	outShape []int     // one sample's output shape
	outputs  []float32 // every sample's output, in order
}

func (r *runner) width() int {
	n := 1
	for _, d := range r.outShape {
		n *= d
	}
	return n
}

// input fills x with samples lo … hi-1, scaled, and zeros after them.
func (r *runner) input(x []float32, lo, hi int) {
	w := r.data.Width()
	for i, v := range r.data.Values[lo*w : hi*w] {
		x[i] = float32(v) * r.scale
	}
	clear(x[(hi-lo)*w:])
}

// run evaluates the model on every sample.
func (r *runner) run(ctx context.Context) error {
	n, w := r.data.Samples(), r.data.Width()
	x := make([]float32, r.batch*w)
	shape := append([]int{r.batch}, r.shape...)
	for lo := 0; lo < n; lo += r.batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		hi := min(lo+r.batch, n)
		m := hi - lo
		// A dynamic batch dimension runs the last batch short; a fixed one
		// pads it with zeros, whose outputs are dropped.
		if r.in.Shape == nil || r.in.Shape[0] < 0 {
			shape[0] = m
		}
		r.input(x[:shape[0]*w], lo, hi)
		res, err := r.sess.Run(ctx, map[string]*interp.Tensor{r.in.Name: interp.FromFloat32(x[:shape[0]*w], shape...)})
		if err != nil {
			return fmt.Errorf("run the model on samples %d to %d: %w", lo, hi-1, err)
		}
		y := res[r.out.Name]
		if y == nil || y.DType != interp.Float32 || len(y.Shape) < 1 || y.Shape[0] != shape[0] {
			return fmt.Errorf("the model's output %q is not a float32 batch of %d", r.out.Name, shape[0])
		}
		if r.outShape == nil {
			r.outShape = slices.Clone(y.Shape[1:])
			if len(r.outShape) == 0 {
				r.outShape = []int{1}
			}
		} else if got := y.Shape[1:]; !slices.Equal(got, r.outShape) && !(len(got) == 0 && slices.Equal(r.outShape, []int{1})) {
			return fmt.Errorf("the model's output changed shape from %v to %v", r.outShape, got)
		}
		r.outputs = append(r.outputs, y.F32[:m*r.width()]...)
	}
	return nil
}

// observe feeds every sample's input and output to the featurizer.
func (r *runner) observe(f *drift.Featurizer, p *drift.Profile) error {
	n, w, ow := r.data.Samples(), r.data.Width(), r.width()
	x := make([]float32, r.batch*w)
	for lo := 0; lo < n; lo += r.batch {
		hi := min(lo+r.batch, n)
		m := hi - lo
		r.input(x[:m*w], lo, hi)
		b := drift.Batch{
			Input: x[:m*w], InputShape: append([]int{m}, r.shape...),
			Output: r.outputs[lo*ow : hi*ow], OutputShape: append([]int{m}, r.outShape...),
		}
		if err := f.Observe(p, b); err != nil {
			return err
		}
	}
	return nil
}

// probabilityTolerance is how far from 1 a row of probabilities may sum.
const probabilityTolerance = 1e-3

// detectOutputs says whether outputs of width w per sample are
// probabilities (every row in [0, 1], summing to 1 unless a single value)
// or logits.
func detectOutputs(y []float32, w int) drift.OutputMode {
	for i := 0; i+w <= len(y); i += w {
		sum := 0.0
		for _, v := range y[i : i+w] {
			x := float64(v)
			if !(x >= 0 && x <= 1) {
				return drift.OutputsLogits
			}
			sum += x
		}
		if w > 1 && math.Abs(sum-1) > probabilityTolerance {
			return drift.OutputsLogits
		}
	}
	return drift.OutputsProbabilities
}
