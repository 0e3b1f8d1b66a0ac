package compress

import (
	"context"
	"fmt"
	"math"
	"slices"

	"outpost.dev/outpost/internal/train"
)

// FineTune is how PruneUnits', PruneChannels' and Sparsify's models recover
// accuracy, and how Distill and DistillCNN train: a few epochs of
// internal/train on a labelled set.
type FineTune struct {
	Data   Dataset
	Epochs int     // default 2
	LR     float64 // Adam's learning rate; default 1e-3
	Seed   uint64
}

func (f FineTune) options() train.TrainOptions {
	return train.TrainOptions{Epochs: max(f.Epochs, 1), BatchSize: 64, LR: f.LR, Seed: f.Seed}
}

// PruneUnits returns a copy of m without its weakest hidden units: each
// hidden layer keeps the share keep of its units (at least one), ranked by
// the norm of the weights into the unit times the norm of those out of it,
// so that the dense model really shrinks; then it fine-tunes the copy.
func PruneUnits(ctx context.Context, m *train.MLP, keep float64, ft FineTune) (*train.MLP, error) {
	if err := checkKeep(keep, "hidden units"); err != nil {
		return nil, err
	}
	if len(m.Layers) < 2 {
		return nil, fmt.Errorf("compress: an MLP of %d layers has no hidden units to prune", len(m.Layers))
	}
	p := m.Clone()
	for i := 0; i+1 < len(p.Layers); i++ {
		in, out := &p.Layers[i], &p.Layers[i+1]
		kept := strongest(in.Out, keep, func(o int) (into, outOf float64) {
			for k := range in.In {
				into += sq(in.W[k*in.Out+o])
			}
			into += sq(in.B[o])
			for q := range out.Out {
				outOf += sq(out.W[o*out.Out+q])
			}
			return into, outOf
		})
		*in = keepColumns(*in, kept)
		*out = keepRows(*out, kept)
	}
	if err := fineTune(ctx, p, ft); err != nil {
		return nil, err
	}
	return p, nil
}

// checkKeep checks the share of units or channels a pruning keeps.
func checkKeep(keep float64, what string) error {
	if !(keep > 0 && keep <= 1) {
		return fmt.Errorf("compress: keep %v of the %s: want above 0, at most 1", keep, what)
	}
	return nil
}

// strongest returns, in increasing order, the share keep (at least one) of
// units 0 to n-1 whose score is highest: the norm of the weights into the
// unit times the norm of those out of it, from the sums of their squares
// norms gives. Ties keep the lower unit.
func strongest(n int, keep float64, norms func(unit int) (into, outOf float64)) []int {
	score := make([]float64, n)
	for u := range score {
		a, b := norms(u)
		score[u] = math.Sqrt(a) * math.Sqrt(b)
	}
	order := make([]int, n)
	for u := range order {
		order[u] = u
	}
	slices.SortStableFunc(order, func(x, y int) int {
		switch {
		case score[x] > score[y]:
			return -1
		case score[x] < score[y]:
			return 1
		}
		return 0
	})
	kept := order[:max(1, int(math.Round(keep*float64(n))))]
	slices.Sort(kept)
	return kept
}

// sq is v squared, in float64.
func sq(v float32) float64 { return float64(v) * float64(v) }

// keepColumns keeps outputs cols of layer l.
func keepColumns(l train.Dense, cols []int) train.Dense {
	n := train.Dense{In: l.In, Out: len(cols), W: make([]float32, l.In*len(cols)), B: make([]float32, len(cols))}
	for k := range l.In {
		for j, o := range cols {
			n.W[k*n.Out+j] = l.W[k*l.Out+o]
		}
	}
	for j, o := range cols {
		n.B[j] = l.B[o]
	}
	return n
}

// keepRows keeps inputs rows of layer l.
func keepRows(l train.Dense, rows []int) train.Dense {
	n := train.Dense{In: len(rows), Out: l.Out, W: make([]float32, len(rows)*l.Out), B: slices.Clone(l.B)}
	for j, k := range rows {
		copy(n.W[j*l.Out:(j+1)*l.Out], l.W[k*l.Out:(k+1)*l.Out])
	}
	return n
}

// Sparsify returns a copy of m in which the share sparsity of each layer's
// weights, the smallest in magnitude, are zero (biases stay): the model
// keeps its shape and its file its size, but compresses in transfer. It
// prunes in three steps of rising sparsity, each fine-tuned with the pruned
// weights held at zero.
func Sparsify(ctx context.Context, m *train.MLP, sparsity float64, ft FineTune) (*train.MLP, error) {
	if !(sparsity > 0 && sparsity < 1) {
		return nil, fmt.Errorf("compress: sparsity %v: want above 0, below 1", sparsity)
	}
	p := m.Clone()
	for step := 1; step <= 3; step++ {
		masks := smallestMasks(p, sparsity*float64(step)/3)
		opts := ft.options()
		opts.Masks = masks
		if err := trainOn(ctx, p, ft.Data, opts); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// smallestMasks masks out the share s of each layer's weights smallest in
// magnitude.
func smallestMasks(m *train.MLP, s float64) [][]bool {
	masks := make([][]bool, len(m.Layers))
	for i, l := range m.Layers {
		order := make([]int, len(l.W))
		for k := range order {
			order[k] = k
		}
		slices.SortStableFunc(order, func(a, b int) int {
			return cmpAbs(l.W[a], l.W[b])
		})
		mk := make([]bool, len(l.W))
		for _, k := range order[int(s*float64(len(l.W))):] {
			mk[k] = true
		}
		masks[i] = mk
	}
	return masks
}

func cmpAbs(a, b float32) int {
	x, y := math.Abs(float64(a)), math.Abs(float64(b))
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// Sparsity is the share of m's weights (not biases) that are zero.
func Sparsity(m *train.MLP) float64 {
	zero, all := 0, 0
	for _, l := range m.Layers {
		for _, v := range l.W {
			if v == 0 {
				zero++
			}
		}
		all += len(l.W)
	}
	return float64(zero) / float64(max(all, 1))
}

// learner is a model internal/train trains: *train.MLP or *train.CNN.
type learner interface {
	Train(ctx context.Context, ds train.Dataset, opts train.TrainOptions) (train.TrainStats, error)
}

func fineTune(ctx context.Context, m learner, ft FineTune) error {
	return trainOn(ctx, m, ft.Data, ft.options())
}

func trainOn(ctx context.Context, m learner, ds Dataset, opts train.TrainOptions) error {
	if ds == nil || ds.Len() == 0 {
		return fmt.Errorf("compress: no labelled data to fine-tune on")
	}
	if _, err := m.Train(ctx, ds, opts); err != nil {
		return fmt.Errorf("compress: fine-tune: %w", err)
	}
	return nil
}

// Distill trains a student MLP of hidden sizes on ft.Data from teacher's
// outputs (probabilities, as every model of the zoo and internal/train
// gives): each sample's soft target is the teacher's distribution softened
// to temperature, mixed with the label at weight 1 − soft.
func Distill(ctx context.Context, teacher Session, hidden []int, temperature, soft float64, ft FineTune) (*train.MLP, error) {
	for _, h := range hidden {
		if h < 1 {
			return nil, fmt.Errorf("compress: student hidden sizes %v: want each at least 1", hidden)
		}
	}
	var s *train.MLP
	err := distil(ctx, teacher, temperature, soft, ft, func(classes int) (learner, error) {
		s = train.NewMLP(append(append([]int{ft.Data.Dim()}, hidden...), classes), max(ft.Seed, 1))
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// distil trains the student that newStudent makes for the teacher's number
// of classes on ft.Data, from teacher's outputs softened to temperature,
// mixed with the labels at weight 1 − soft.
func distil(ctx context.Context, teacher Session, temperature, soft float64, ft FineTune, newStudent func(classes int) (learner, error)) error {
	ds := ft.Data
	if ds == nil || ds.Len() == 0 {
		return fmt.Errorf("compress: no labelled data to distil on")
	}
	if !(temperature > 0) {
		return fmt.Errorf("compress: temperature %v: want above 0", temperature)
	}
	targets, classes, err := softTargets(ctx, teacher, ds, temperature)
	if err != nil {
		return err
	}
	s, err := newStudent(classes)
	if err != nil {
		return err
	}
	opts := ft.options()
	opts.Soft = func(i int) []float32 { return targets[i*classes : (i+1)*classes] }
	opts.SoftWeight, opts.Temperature = soft, temperature
	if _, err := s.Train(ctx, ds, opts); err != nil {
		return fmt.Errorf("compress: distil: %w", err)
	}
	return nil
}

// softTargets runs teacher over ds and returns its probabilities softened
// to temperature, softmax(log p / T), row after row.
func softTargets(ctx context.Context, teacher Session, ds Dataset, temp float64) ([]float32, int, error) {
	out := teacher.Outputs()[0].Name
	var all []float32
	classes := 0
	const size = 256
	for from := 0; from < ds.Len(); from += size {
		to := min(from+size, ds.Len())
		in, _, err := batch(teacher, ds, from, to)
		if err != nil {
			return nil, 0, err
		}
		res, err := teacher.Run(ctx, in)
		if err != nil {
			return nil, 0, fmt.Errorf("compress: teacher: %w", err)
		}
		y := res[out]
		if y == nil || y.Len()%(to-from) != 0 || y.Len() == 0 {
			return nil, 0, fmt.Errorf("compress: teacher output %q is not scores for %d samples", out, to-from)
		}
		classes = y.Len() / (to - from)
		for i := range to - from {
			row := y.F32[i*classes : (i+1)*classes]
			var sum float64
			soft := make([]float64, classes)
			for j, p := range row {
				if !(p >= 0) {
					return nil, 0, fmt.Errorf("compress: teacher output %q holds %v: want probabilities", out, p)
				}
				soft[j] = math.Exp(math.Log(max(float64(p), 1e-30)) / temp)
				sum += soft[j]
			}
			for _, v := range soft {
				all = append(all, float32(v/sum))
			}
		}
	}
	return all, classes, nil
}
