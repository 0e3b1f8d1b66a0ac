package compress

import (
	"context"
	"fmt"
	"math"
	"slices"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// Dataset is a labelled set of samples of Dim features each (as
// internal/dataset and internal/train's data sets are).
type Dataset interface {
	Len() int
	Dim() int
	// Sample writes sample i into dst (len Dim()) and returns its label.
	Sample(i int, dst []float32) int
}

// Session runs a loaded model (interp.Model and every engine.Session).
type Session interface {
	Inputs() []interp.ValueInfo
	Outputs() []interp.ValueInfo
	Run(ctx context.Context, in map[string]*interp.Tensor) (map[string]*interp.Tensor, error)
}

// batch returns samples [from, to) of ds shaped as s's single input (its
// batch dimension first), and their labels.
func batch(s Session, ds Dataset, from, to int) (map[string]*interp.Tensor, []int, error) {
	ins := s.Inputs()
	if len(ins) != 1 {
		return nil, nil, fmt.Errorf("compress: the model has %d inputs, want 1", len(ins))
	}
	in := ins[0]
	if in.DType != interp.Float32 || len(in.Shape) < 2 {
		return nil, nil, fmt.Errorf("compress: input %q of type %v and shape %v: want float32 [N, ...]", in.Name, in.DType, in.Shape)
	}
	shape := []int{to - from}
	per := 1
	for _, d := range in.Shape[1:] {
		if d < 0 {
			return nil, nil, fmt.Errorf("compress: input %q of shape %v: want every dimension but the first fixed", in.Name, in.Shape)
		}
		per *= d
		shape = append(shape, d)
	}
	if per != ds.Dim() {
		return nil, nil, fmt.Errorf("compress: samples of %d values, the model's input %q takes %v", ds.Dim(), in.Name, in.Shape)
	}
	x := make([]float32, (to-from)*per)
	labels := make([]int, to-from)
	for i := from; i < to; i++ {
		labels[i-from] = ds.Sample(i, x[(i-from)*per:(i-from+1)*per])
	}
	return map[string]*interp.Tensor{in.Name: interp.FromFloat32(x, shape...)}, labels, nil
}

// HoldOut splits ds into its first samples, to train on, and its last share of them, held
// out to measure with.
func HoldOut(ds Dataset, share float64) (train, eval Dataset, err error) {
	if !(share > 0 && share < 1) {
		return nil, nil, fmt.Errorf("compress: hold out %v of the samples: want above 0, below 1", share)
	}
	n := ds.Len()
	cut := n - int(share*float64(n))
	if cut <= 0 || cut >= n {
		return nil, nil, fmt.Errorf("compress: %d samples are too few to hold out %v of them to measure with", n, share)
	}
	return span{ds, 0, cut}, span{ds, cut, n}, nil
}

// span is samples [from, to) of a data set.
type span struct {
	Dataset
	from, to int
}

func (s span) Len() int { return s.to - s.from }

func (s span) Sample(i int, dst []float32) int { return s.Dataset.Sample(s.from+i, dst) }

// Accuracy is the share of ds whose label is the argmax of s's first
// output, run in batches of size.
func Accuracy(ctx context.Context, s Session, ds Dataset, size int) (float64, error) {
	if ds.Len() == 0 {
		return 0, fmt.Errorf("compress: no samples to measure accuracy on")
	}
	size = max(size, 1)
	out := s.Outputs()[0].Name
	right := 0
	for from := 0; from < ds.Len(); from += size {
		to := min(from+size, ds.Len())
		in, labels, err := batch(s, ds, from, to)
		if err != nil {
			return 0, err
		}
		res, err := s.Run(ctx, in)
		if err != nil {
			return 0, err
		}
		y := res[out]
		if y == nil || y.DType != interp.Float32 || y.Len() == 0 || y.Len()%(to-from) != 0 {
			return 0, fmt.Errorf("compress: output %q is not float32 scores for %d samples", out, to-from)
		}
		k := y.Len() / (to - from)
		for i, l := range labels {
			row := y.F32[i*k : (i+1)*k]
			if argmax(row) == l {
				right++
			}
		}
	}
	return float64(right) / float64(ds.Len()), nil
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// Calibration says how Calibrate turns the values a tensor took into its
// range.
type Calibration struct {
	// Percentile, when above 0 and below 100, clips the range to the
	// values between the (100 - Percentile)th and the Percentile-th
	// percentile (99.99 drops rare outliers); otherwise the range is the
	// minimum and maximum seen.
	Percentile float64
}

// maxKept bounds the values kept per tensor for a percentile.
const maxKept = 1 << 22

// Calibrate runs m with the Go runtime on the first n samples of ds (all
// when n is 0) and returns the range of the data input of every node
// QuantizeInt8 quantizes.
func Calibrate(ctx context.Context, m *onnxpb.ModelProto, ds Dataset, n int, c Calibration) (map[string]Range, error) {
	if n <= 0 || n > ds.Len() {
		n = ds.Len()
	}
	if n == 0 {
		return nil, fmt.Errorf("compress: no calibration samples")
	}
	probe := proto.Clone(m).(*onnxpb.ModelProto)
	g := probe.Graph
	if g == nil {
		return nil, fmt.Errorf("compress: model has no graph")
	}
	ts, err := targets(g)
	if err != nil {
		return nil, err
	}
	inputs := map[string]bool{}
	for _, v := range g.Input {
		inputs[v.GetName()] = true
	}
	outputs := map[string]bool{}
	for _, v := range g.Output {
		outputs[v.GetName()] = true
	}
	var watched []string
	for _, t := range ts {
		x := g.Node[t.node].Input[0]
		if slices.Contains(watched, x) {
			continue
		}
		watched = append(watched, x)
		if !inputs[x] && !outputs[x] {
			g.Output = append(g.Output, &onnxpb.ValueInfoProto{Name: proto.String(x), Type: &onnxpb.TypeProto{
				Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(onnxpb.TensorProto_FLOAT))}}}})
		}
	}
	s, err := interp.LoadProto(probe)
	if err != nil {
		return nil, fmt.Errorf("compress: calibration: %w", err)
	}
	lo, hi := map[string]float32{}, map[string]float32{}
	kept := map[string][]float32{}
	const size = 64
	for from := 0; from < n; from += size {
		to := min(from+size, n)
		in, _, err := batch(s, ds, from, to)
		if err != nil {
			return nil, err
		}
		res, err := s.Run(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("compress: calibration: %w", err)
		}
		for k, v := range in {
			res[k] = v
		}
		for _, x := range watched {
			t := res[x]
			if t == nil || t.DType != interp.Float32 {
				return nil, fmt.Errorf("compress: calibration: tensor %q is not float32", x)
			}
			l, h, seen := lo[x], hi[x], from > 0
			for _, v := range t.F32 {
				if math.IsNaN(float64(v)) {
					return nil, fmt.Errorf("compress: calibration: tensor %q holds NaN", x)
				}
				if !seen {
					l, h, seen = v, v, true
				}
				l, h = min(l, v), max(h, v)
			}
			lo[x], hi[x] = l, h
			if c.Percentile > 0 && c.Percentile < 100 {
				stride := max(1, n*t.Len()/(to-from)/maxKept)
				for i := 0; i < len(t.F32); i += stride {
					kept[x] = append(kept[x], t.F32[i])
				}
			}
		}
	}
	out := make(map[string]Range, len(watched))
	for _, x := range watched {
		r := Range{Min: lo[x], Max: hi[x]}
		if v := kept[x]; len(v) > 0 {
			slices.Sort(v)
			at := func(p float64) float32 { return v[int(math.Round(p/100*float64(len(v)-1)))] }
			r = Range{Min: at(100 - c.Percentile), Max: at(c.Percentile)}
		}
		out[x] = r
	}
	return out, nil
}
