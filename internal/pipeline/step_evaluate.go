package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
)

// evalBatch is how many samples one Run of the model gets.
const evalBatch = 256

// runEvaluate measures a model's accuracy and mean cross-entropy on input
// data, running it through the engine's runtime (internal/onnx/engine),
// as serving would: the model is input model, or the version param
// deployment serves. The model's first input takes [N, features] float32
// (pixels scaled to [0, 1]); its first output gives [N, classes]
// probabilities, or logits (rows that are not probabilities go through a
// softmax).
//
// Params: deployment, runtime (the name of the engine's runtime, or "go").
func runEvaluate(ctx context.Context, env *stepEnv) (map[string]string, error) {
	data, err := env.table("data")
	if err != nil {
		return nil, err
	}
	file, what, err := baseModel(ctx, env)
	if err != nil {
		return nil, err
	}
	rt := env.runtime
	switch name := env.param("runtime", ""); {
	case name == "" || name == rt.Name():
	case name == engine.RuntimeGo:
		rt = engine.Go{}
	default:
		return nil, fmt.Errorf("param runtime: %q is not available here (%s is)", name, rt.Name())
	}
	sess, err := rt.Load(ctx, file)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", what, err)
	}
	defer sess.Close()
	ins, outs := sess.Inputs(), sess.Outputs()
	if len(ins) == 0 || len(outs) == 0 {
		return nil, fmt.Errorf("model %s has no input or no output", what)
	}
	in := ins[0]
	dim := data.Dim()
	if len(in.Shape) != 2 || (in.Shape[1] >= 0 && in.Shape[1] != dim) {
		return nil, fmt.Errorf("model %s takes input %q of shape %v; the data has %d values per sample", what, in.Name, in.Shape, dim)
	}
	n := data.Len()
	if n == 0 {
		return nil, errors.New("the data has no samples")
	}
	var correct int
	var lossSum float64
	buf := make([]float32, evalBatch*dim)
	labels := make([]int, evalBatch)
	for lo := 0; lo < n; lo += evalBatch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		b := min(evalBatch, n-lo)
		for j := range b {
			labels[j] = data.Sample(lo+j, buf[j*dim:(j+1)*dim])
		}
		res, err := sess.Run(ctx, map[string]*interp.Tensor{in.Name: interp.FromFloat32(buf[:b*dim], b, dim)})
		if err != nil {
			return nil, fmt.Errorf("run model %s: %w", what, err)
		}
		o := res[outs[0].Name]
		if o == nil || o.DType != interp.Float32 || len(o.Shape) != 2 || o.Shape[0] != b {
			return nil, fmt.Errorf("model %s: output %q is not [N, classes] float32", what, outs[0].Name)
		}
		classes := o.Shape[1]
		for j := range b {
			row := o.F32[j*classes : (j+1)*classes]
			if labels[j] >= classes {
				return nil, fmt.Errorf("model %s has %d outputs; the data has label %d", what, classes, labels[j])
			}
			p := probabilities(row)
			if argmax(p) == labels[j] {
				correct++
			}
			lossSum -= math.Log(max(p[labels[j]], 1e-12))
		}
	}
	acc, loss := float64(correct)/float64(n), lossSum/float64(n)
	env.log.Printf("model %s on %d samples (runtime %s): accuracy %.4f, loss %.4f", what, n, rt.Name(), acc, loss)
	return map[string]string{
		"accuracy": strconv.FormatFloat(acc, 'f', 4, 64),
		"loss":     strconv.FormatFloat(loss, 'f', 4, 64),
		"samples":  strconv.Itoa(n),
	}, nil
}

// probabilities returns row as probabilities: as it is when it is one
// (non-negative, summing to 1), else its softmax.
func probabilities(row []float32) []float64 {
	p := make([]float64, len(row))
	sum, neg := 0.0, false
	for i, v := range row {
		p[i] = float64(v)
		sum += p[i]
		neg = neg || v < 0
	}
	if !neg && math.Abs(sum-1) < 1e-3 {
		return p
	}
	top := math.Inf(-1)
	for _, v := range p {
		top = max(top, v)
	}
	sum = 0
	for i, v := range p {
		p[i] = math.Exp(v - top)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

func argmax(p []float64) int {
	best := 0
	for i, v := range p {
		if v > p[best] {
			best = i
		}
	}
	return best
}
