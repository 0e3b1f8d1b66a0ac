// Package train trains small classifiers in pure Go and exports them as ONNX: the
// models that Outpost's demo ships to edge clusters, that federated learning
// averages and that pipelines retrain.
//
// The model is a multilayer perceptron: float32 dense layers with ReLU between them
// and a softmax over the last, trained on softmax cross-entropy with mini-batch Adam
// (or SGD with momentum). Training is deterministic: the same sizes, seed, data and
// options give the same weights bit for bit, whatever the number of workers.
//
// Measured on the embedded Fashion-MNIST subset (internal/dataset: 6000 training,
// 1000 test images) with TrainDemo's recipe (batch 64, Adam, lr 1e-3):
//
//	v1: DemoSizes 784-1024-128-10, seed 1, 3 epochs  82.0% test accuracy, ONNX 3,745,920 bytes
//	v2: v1 fine-tuned, last 2 layers, 2 epochs       85.7% test accuracy; same size, the first
//	    layer's 3.2 MB byte-identical at the same offsets, the last 14.2% of the file rewritten
//	    (9.1% of its bytes differ)
//	784-64-10, 2 epochs (the quick tests' model)    80.3%
//
// One epoch of the demo model on the subset costs about 5 s of CPU (2.5 s on two
// idle cores); zero inputs (half the pixels, most ReLU outputs) are skipped.
// TestDemoModel (skipped with -short) checks these figures.
package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// DemoSizes is the architecture of the demo's model: its ONNX file is about 3.7 MB
// and fine-tuning the last two layers (FineTune(..., 2, ...)) rewrites about 14% of
// it, the first layer's 3.2 MB staying byte-identical.
var DemoSizes = []int{784, 1024, 128, 10}

// TrainDemo makes the demo's two model versions on ds: v1 is DemoSizes from
// seed 1 trained 3 epochs; v2 is v1 with its last two layers fine-tuned 2 more
// epochs (shuffle seed 2), so v2's ONNX file shares v1's first 86% byte for byte.
func TrainDemo(ctx context.Context, ds Dataset) (v1, v2 *MLP, err error) {
	v1 = NewMLP(DemoSizes, 1)
	if _, err := v1.Train(ctx, ds, TrainOptions{Epochs: 3}); err != nil {
		return nil, nil, err
	}
	v2 = v1.Clone()
	if _, err := v2.FineTune(ctx, ds, 2, TrainOptions{Epochs: 2, Seed: 2}); err != nil {
		return nil, nil, err
	}
	return v1, v2, nil
}

// Dataset is what Train and Evaluate read: Len samples of Dim features each,
// with integer class labels.
type Dataset interface {
	Len() int
	Dim() int
	// Sample writes sample i's features into dst (len Dim) and returns its label.
	Sample(i int, dst []float32) int
}

// Dense is one fully connected layer: y = x W + B, W stored row-major as In rows
// of Out weights (W[k*Out+o] links input k to output o: the layout of ONNX Gemm's
// B operand without transB).
type Dense struct {
	In, Out int
	W       []float32 // In*Out
	B       []float32 // Out
}

// MLP is a multilayer perceptron: Dense layers with ReLU between them; the
// outputs of the last layer are logits, turned into probabilities by softmax.
type MLP struct {
	Layers []Dense
}

// NewMLP makes an MLP with the given layer sizes (input first, classes last, at
// least two sizes), with He-normal weights and zero biases drawn from seed.
func NewMLP(sizes []int, seed uint64) *MLP {
	if len(sizes) < 2 {
		panic("train.NewMLP: need at least an input and an output size")
	}
	rng := rand.New(rand.NewPCG(seed, 0x6f7574706f7374)) // "outpost"
	m := &MLP{}
	for i := 0; i+1 < len(sizes); i++ {
		in, out := sizes[i], sizes[i+1]
		if in < 1 || out < 1 {
			panic(fmt.Sprintf("train.NewMLP: bad sizes %v", sizes))
		}
		l := Dense{In: in, Out: out, W: make([]float32, in*out), B: make([]float32, out)}
		std := math.Sqrt(2 / float64(in))
		for j := range l.W {
			l.W[j] = float32(rng.NormFloat64() * std)
		}
		m.Layers = append(m.Layers, l)
	}
	return m
}

// Sizes returns the layer sizes, input first.
func (m *MLP) Sizes() []int {
	s := []int{m.Layers[0].In}
	for _, l := range m.Layers {
		s = append(s, l.Out)
	}
	return s
}

// Inputs and Classes are the first and last sizes.
func (m *MLP) Inputs() int  { return m.Layers[0].In }
func (m *MLP) Classes() int { return m.Layers[len(m.Layers)-1].Out }

// NumParams is the number of weights and biases.
func (m *MLP) NumParams() int {
	n := 0
	for _, l := range m.Layers {
		n += len(l.W) + len(l.B)
	}
	return n
}

// Clone returns a deep copy.
func (m *MLP) Clone() *MLP {
	c := &MLP{Layers: make([]Dense, len(m.Layers))}
	for i, l := range m.Layers {
		c.Layers[i] = Dense{In: l.In, Out: l.Out, W: append([]float32(nil), l.W...), B: append([]float32(nil), l.B...)}
	}
	return c
}

// Optimizer selects the update rule.
type Optimizer int

const (
	Adam        Optimizer = iota // Adam (beta1 0.9, beta2 0.999, eps 1e-8)
	SGDMomentum                  // SGD with momentum TrainOptions.Momentum
)

// TrainOptions tunes Train. Zero values take the defaults shown.
type TrainOptions struct {
	Epochs    int       // passes over the data; default 1
	BatchSize int       // default 64
	LR        float64   // learning rate; default 1e-3 for Adam, 0.05 for SGD
	Optimizer Optimizer // default Adam
	Momentum  float64   // SGDMomentum only; default 0.9
	// Seed drives the order of samples in each epoch (default 1).
	Seed uint64
	// FrozenLayers leaves the first FrozenLayers layers untouched: their weights
	// and biases stay bit-identical, so only the last layers change (fine-tuning).
	FrozenLayers int
	// Workers bounds the goroutines of the matrix kernels; default GOMAXPROCS
	// (at most 8). Results do not depend on it.
	Workers int
	// Progress, when set, is called after each epoch.
	Progress func(epoch int, meanLoss float64)
	// MaxSteps, when positive, stops training after that many optimizer steps,
	// mid-epoch if need be (a local-step budget); Epochs still bounds it.
	MaxSteps int
	// ProxMu, when positive, adds FedProx's proximal term μ/2·‖w − ProxRef‖² to
	// the loss: each step's gradient gains μ·(w − ProxRef). ProxRef holds the
	// reference weights, one slice per tensor in the model's order (MLP: W0,
	// B0, W1, B1, ...; CNN: conv1 W, B, conv2 W, B, fc W, B).
	ProxMu  float64
	ProxRef [][]float32
	// Soft, when set, distils a teacher: each sample's loss mixes
	// the cross-entropy on its label, weighted 1 − SoftWeight, with the
	// cross-entropy against Soft(i) — sample i's teacher probabilities
	// softened to Temperature — of the softmax of the logits divided by
	// Temperature, weighted SoftWeight × Temperature² (Hinton et al., 2015:
	// the square keeps the soft term's gradients at the hard term's scale).
	// Temperature defaults to 1.
	Soft        func(i int) []float32
	SoftWeight  float64
	Temperature float64
	// Masks, when set, holds one mask per layer (nil: none) of its W's
	// length: a weight whose mask is false is zero after every step, so a
	// pruned model fine-tunes without reviving what was pruned (MLP only).
	Masks [][]bool
}

// TrainStats reports what Train did.
type TrainStats struct {
	Epochs    int
	Steps     int       // optimizer steps (mini-batches)
	Samples   int       // samples seen, over all epochs
	EpochLoss []float64 // mean cross-entropy of each epoch
	Updated   int       // parameters trained (not frozen)
	Duration  time.Duration
}

// FinalLoss is the mean loss of the last epoch.
func (s TrainStats) FinalLoss() float64 {
	if len(s.EpochLoss) == 0 {
		return math.NaN()
	}
	return s.EpochLoss[len(s.EpochLoss)-1]
}

// FineTune trains only the last lastK layers (the others stay bit-identical): the
// way to make a v2 of a model whose file shares most of its bytes with v1.
func (m *MLP) FineTune(ctx context.Context, ds Dataset, lastK int, opts TrainOptions) (TrainStats, error) {
	if lastK < 1 || lastK > len(m.Layers) {
		return TrainStats{}, fmt.Errorf("train: fine-tune %d layers of %d", lastK, len(m.Layers))
	}
	opts.FrozenLayers = len(m.Layers) - lastK
	return m.Train(ctx, ds, opts)
}

// withDefaults fills the zero fields of opts with the defaults shared by
// every trainer and checks what every trainer checks.
func (opts TrainOptions) withDefaults() (TrainOptions, error) {
	if opts.Epochs == 0 {
		opts.Epochs = 1
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = 64
	}
	if opts.LR == 0 {
		opts.LR = 1e-3
		if opts.Optimizer == SGDMomentum {
			opts.LR = 0.05
		}
	}
	if opts.Momentum == 0 {
		opts.Momentum = 0.9
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.Soft != nil && opts.Temperature == 0 {
		opts.Temperature = 1
	}
	if opts.Workers <= 0 {
		opts.Workers = defaultWorkers()
	}
	switch {
	case opts.Epochs < 0 || opts.BatchSize < 0 || opts.LR < 0 || math.IsNaN(opts.LR):
		return opts, fmt.Errorf("train: bad options %+v", opts)
	case opts.MaxSteps < 0:
		return opts, fmt.Errorf("train: MaxSteps %d, want 0 (no budget) or more", opts.MaxSteps)
	case opts.ProxMu < 0 || math.IsNaN(opts.ProxMu) || math.IsInf(opts.ProxMu, 0):
		return opts, fmt.Errorf("train: ProxMu %v, want 0 or more", opts.ProxMu)
	case opts.ProxMu > 0 && opts.ProxRef == nil:
		return opts, errors.New("train: ProxMu without ProxRef")
	case opts.Soft != nil && !(opts.SoftWeight >= 0 && opts.SoftWeight <= 1):
		return opts, fmt.Errorf("train: SoftWeight %v, want from 0 to 1", opts.SoftWeight)
	case opts.Soft != nil && !(opts.Temperature > 0 && !math.IsInf(opts.Temperature, 0)):
		return opts, fmt.Errorf("train: Temperature %v, want above 0", opts.Temperature)
	case opts.Optimizer != Adam && opts.Optimizer != SGDMomentum:
		return opts, fmt.Errorf("train: unknown optimizer %d", opts.Optimizer)
	}
	return opts, nil
}

// Train runs mini-batch training on ds. It stops early with ctx's error, leaving
// the model as it was after the last completed step.
func (m *MLP) Train(ctx context.Context, ds Dataset, opts TrainOptions) (TrainStats, error) {
	start := time.Now()
	opts, err := opts.withDefaults()
	if err != nil {
		return TrainStats{}, err
	}
	if opts.FrozenLayers < 0 || opts.FrozenLayers >= len(m.Layers) {
		return TrainStats{}, fmt.Errorf("train: %d frozen layers of %d: at least one layer must train", opts.FrozenLayers, len(m.Layers))
	}
	if err := m.check(ds); err != nil {
		return TrainStats{}, err
	}
	if opts.Masks != nil {
		if len(opts.Masks) != len(m.Layers) {
			return TrainStats{}, fmt.Errorf("train: %d masks for %d layers", len(opts.Masks), len(m.Layers))
		}
		for i, mk := range opts.Masks {
			if mk != nil && len(mk) != len(m.Layers[i].W) {
				return TrainStats{}, fmt.Errorf("train: mask %d of %d values for %d weights", i, len(mk), len(m.Layers[i].W))
			}
		}
		applyMasks(m, opts.Masks)
	}
	if opts.ProxMu > 0 {
		var ref [][]float32
		for _, l := range m.Layers {
			ref = append(ref, l.W, l.B)
		}
		if err := checkRef(opts.ProxRef, ref); err != nil {
			return TrainStats{}, err
		}
	}
	n := ds.Len()
	if n == 0 {
		return TrainStats{}, errors.New("train: empty dataset")
	}
	bs := min(opts.BatchSize, n)
	ws := m.workspace(bs, true)
	opt := newOptimizer(m, opts)
	stats := TrainStats{Epochs: opts.Epochs, Updated: opt.params}

	// Frozen layers compute the same activations every epoch: when the whole
	// data set's output of the frozen prefix fits in a bounded cache, compute it
	// once and start each step from it.
	var cache []float32
	var cacheLabels []int
	cacheDim := 0
	if opts.FrozenLayers > 0 {
		cacheDim = m.Layers[opts.FrozenLayers-1].Out
		if n*cacheDim <= 64<<20 && opts.Epochs > 1 {
			cache = make([]float32, n*cacheDim)
			cacheLabels = make([]int, n)
			for lo := 0; lo < n; lo += bs {
				hi := min(lo+bs, n)
				for i := lo; i < hi; i++ {
					cacheLabels[i] = ds.Sample(i, ws.x[(i-lo)*ws.in:(i-lo+1)*ws.in])
				}
				m.forward(ws, hi-lo, 0, opts.FrozenLayers, opts.Workers)
				copy(cache[lo*cacheDim:hi*cacheDim], ws.act[opts.FrozenLayers-1][:(hi-lo)*cacheDim])
			}
		}
	}

	rng := rand.New(rand.NewPCG(opts.Seed, 0x73687566666c65)) // "shuffle"
	perm := make([]int, n)
	labels := make([]int, bs)
	var soft *distil
	if opts.Soft != nil {
		soft = &distil{rows: make([][]float32, bs), weight: opts.SoftWeight, temp: opts.Temperature, pt: make([]float32, m.Classes())}
	}
	for epoch := 0; epoch < opts.Epochs; epoch++ {
		for i := range perm {
			perm[i] = i
		}
		rng.Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		if opts.MaxSteps > 0 && stats.Steps == opts.MaxSteps {
			break
		}
		var lossSum float64
		seen := 0
		for lo := 0; lo < n; lo += bs {
			if err := ctx.Err(); err != nil {
				stats.Duration = time.Since(start)
				return stats, err
			}
			if opts.MaxSteps > 0 && stats.Steps == opts.MaxSteps {
				break
			}
			cur := min(bs, n-lo)
			first := 0
			if cache != nil {
				first = opts.FrozenLayers
				in := ws.act[first-1]
				for j := 0; j < cur; j++ {
					s := perm[lo+j]
					copy(in[j*cacheDim:(j+1)*cacheDim], cache[s*cacheDim:(s+1)*cacheDim])
					labels[j] = cacheLabels[s]
				}
			} else {
				for j := 0; j < cur; j++ {
					labels[j] = ds.Sample(perm[lo+j], ws.x[j*ws.in:(j+1)*ws.in])
				}
			}
			if soft != nil {
				for j := 0; j < cur; j++ {
					soft.rows[j] = opts.Soft(perm[lo+j])
				}
			}
			m.forward(ws, cur, first, len(m.Layers), opts.Workers)
			loss, err := m.backward(ws, cur, labels[:cur], soft, opts.FrozenLayers, opts.Workers)
			if err != nil {
				stats.Duration = time.Since(start)
				return stats, err
			}
			lossSum += loss * float64(cur)
			if opts.ProxMu > 0 {
				for i := opts.FrozenLayers; i < len(m.Layers); i++ {
					proxGrad(ws.gw[i], m.Layers[i].W, opts.ProxRef[2*i], opts.ProxMu)
					proxGrad(ws.gb[i], m.Layers[i].B, opts.ProxRef[2*i+1], opts.ProxMu)
				}
			}
			opt.step(m, ws)
			applyMasks(m, opts.Masks)
			stats.Steps++
			stats.Samples += cur
			seen += cur
		}
		mean := lossSum / float64(max(seen, 1))
		stats.EpochLoss = append(stats.EpochLoss, mean)
		if opts.Progress != nil {
			opts.Progress(epoch+1, mean)
		}
	}
	stats.Duration = time.Since(start)
	return stats, nil
}

func (m *MLP) check(ds Dataset) error {
	if ds.Dim() != m.Inputs() {
		return fmt.Errorf("train: dataset has %d features, model takes %d", ds.Dim(), m.Inputs())
	}
	return nil
}

// workspace holds the buffers of one batch: input, per-layer activations
// (post-ReLU for hidden layers, logits for the last), and, for training, the
// per-layer gradients.
type workspace struct {
	in, bs int
	x      []float32
	act    [][]float32
	delta  [][]float32 // dLoss/d(pre-activation) of each layer
	gw, gb [][]float32
}

func (m *MLP) workspace(bs int, training bool) *workspace {
	ws := &workspace{in: m.Inputs(), bs: bs, x: make([]float32, bs*m.Inputs())}
	for _, l := range m.Layers {
		ws.act = append(ws.act, make([]float32, bs*l.Out))
		if training {
			ws.delta = append(ws.delta, make([]float32, bs*l.Out))
			ws.gw = append(ws.gw, make([]float32, len(l.W)))
			ws.gb = append(ws.gb, make([]float32, len(l.B)))
		}
	}
	return ws
}

// forward runs layers [from, to) on a batch of bs; layer from reads ws.x when
// from == 0, else ws.act[from-1].
func (m *MLP) forward(ws *workspace, bs, from, to, workers int) {
	for i := from; i < to; i++ {
		l := &m.Layers[i]
		x := ws.x
		if i > 0 {
			x = ws.act[i-1]
		}
		y := ws.act[i][:bs*l.Out]
		forward(y, x, l.W, l.B, bs, l.In, l.Out, workers)
		if i < len(m.Layers)-1 {
			for j, v := range y {
				if v < 0 {
					y[j] = 0
				}
			}
		}
	}
}

// softmaxRow turns logits into probabilities in place and returns log(sum exp(z - max)) + max.
func softmaxRow(z []float32) (logSumExp float64) {
	mx := z[0]
	for _, v := range z[1:] {
		mx = max(mx, v)
	}
	var sum float64
	for j, v := range z {
		e := math.Exp(float64(v - mx))
		z[j] = float32(e)
		sum += e
	}
	inv := 1 / sum
	for j := range z {
		z[j] = float32(float64(z[j]) * inv)
	}
	return math.Log(sum) + float64(mx)
}

// backward computes the mean cross-entropy of the batch and the gradients of the
// layers from frozen on. It overwrites the last layer's logits with probabilities.
func (m *MLP) backward(ws *workspace, bs int, labels []int, soft *distil, frozen, workers int) (float64, error) {
	last := len(m.Layers) - 1
	c := m.Layers[last].Out
	logits, d := ws.act[last], ws.delta[last]
	var loss float64
	inv := float32(1 / float64(bs))
	for b := 0; b < bs; b++ {
		y := labels[b]
		if y < 0 || y >= c {
			return 0, fmt.Errorf("train: label %d outside [0, %d)", y, c)
		}
		l, err := sampleLoss(d[b*c:(b+1)*c], logits[b*c:(b+1)*c], y, soft, b, inv)
		if err != nil {
			return 0, err
		}
		loss += l
	}
	for i := last; i >= frozen; i-- {
		l := &m.Layers[i]
		x := ws.x
		if i > 0 {
			x = ws.act[i-1]
		}
		gradW(ws.gw[i], ws.gb[i], ws.delta[i], x, bs, l.In, l.Out, workers)
		if i > frozen {
			gradX(ws.delta[i-1], ws.delta[i], l.W, ws.act[i-1], bs, l.In, l.Out, workers)
		}
	}
	return loss / float64(bs), nil
}

// sampleLoss turns the logits z of one sample, of label y and row b of its
// batch, into probabilities, sets dz to the gradient of the sample's loss
// with respect to z times scale, and returns the loss: the cross-entropy
// on the label or, with soft (nil: none), its mix with the cross-entropy
// against row b's soft target (TrainOptions.Soft).
func sampleLoss(dz, z []float32, y int, soft *distil, b int, scale float32) (float64, error) {
	var softLoss float64
	if soft != nil {
		var err error
		if softLoss, err = soft.softmax(z, b); err != nil {
			return 0, err
		}
	}
	zy := float64(z[y])
	hard := softmaxRow(z) - zy
	for j, p := range z {
		dz[j] = p * scale
	}
	dz[y] -= scale
	if soft == nil {
		return hard, nil
	}
	// (1−α)(p − y) + α·T·(p_T − q), times scale.
	a, t := float32(soft.weight), float32(soft.temp)
	for j := range dz {
		dz[j] = (1-a)*dz[j] + a*t*(soft.pt[j]-soft.rows[b][j])*scale
	}
	return (1-soft.weight)*hard + soft.weight*soft.temp*soft.temp*softLoss, nil
}

// applyMasks zeroes the weights masks leave out.
func applyMasks(m *MLP, masks [][]bool) {
	for i, mk := range masks {
		for k, keep := range mk {
			if !keep {
				m.Layers[i].W[k] = 0
			}
		}
	}
}

// distil is a batch's soft targets and their weighting (TrainOptions.Soft).
type distil struct {
	rows   [][]float32 // each row's teacher probabilities at temp
	weight float64
	temp   float64
	pt     []float32 // scratch: the student's probabilities at temp
}

// softmax sets d.pt to the softmax of logits/temp and returns the
// cross-entropy of row b's soft target q against it:
// Σ q_j (logSumExp(z/T) − z_j/T).
func (d *distil) softmax(logits []float32, b int) (float64, error) {
	q := d.rows[b]
	if len(q) != len(logits) {
		return 0, fmt.Errorf("train: soft target of %d classes, the model has %d", len(q), len(logits))
	}
	var qz, qs float64
	for j, z := range logits {
		d.pt[j] = z / float32(d.temp)
		qz += float64(q[j]) * float64(d.pt[j])
		qs += float64(q[j])
	}
	return softmaxRow(d.pt)*qs - qz, nil
}

// optimizer holds per-parameter state for the trainable layers.
type optimizer struct {
	kind       Optimizer
	lr, mom    float32
	frozen     int
	t          int
	m1w, m1b   [][]float32 // first moment / velocity
	m2w, m2b   [][]float32 // second moment (Adam)
	params     int
	b1, b2, ep float64
}

func newOptimizer(m *MLP, opts TrainOptions) *optimizer {
	o := &optimizer{kind: opts.Optimizer, lr: float32(opts.LR), mom: float32(opts.Momentum), frozen: opts.FrozenLayers,
		b1: 0.9, b2: 0.999, ep: 1e-8}
	for i, l := range m.Layers {
		if i < o.frozen {
			o.m1w, o.m1b, o.m2w, o.m2b = append(o.m1w, nil), append(o.m1b, nil), append(o.m2w, nil), append(o.m2b, nil)
			continue
		}
		o.params += len(l.W) + len(l.B)
		o.m1w = append(o.m1w, make([]float32, len(l.W)))
		o.m1b = append(o.m1b, make([]float32, len(l.B)))
		if o.kind == Adam {
			o.m2w = append(o.m2w, make([]float32, len(l.W)))
			o.m2b = append(o.m2b, make([]float32, len(l.B)))
		} else {
			o.m2w, o.m2b = append(o.m2w, nil), append(o.m2b, nil)
		}
	}
	return o
}

func (o *optimizer) step(m *MLP, ws *workspace) {
	o.t++
	if o.kind == SGDMomentum {
		for i := o.frozen; i < len(m.Layers); i++ {
			sgd(m.Layers[i].W, ws.gw[i], o.m1w[i], o.lr, o.mom)
			sgd(m.Layers[i].B, ws.gb[i], o.m1b[i], o.lr, o.mom)
		}
		return
	}
	// Bias-corrected step size, folded into one scalar per step.
	c1 := 1 - math.Pow(o.b1, float64(o.t))
	c2 := 1 - math.Pow(o.b2, float64(o.t))
	alpha := float32(float64(o.lr) * math.Sqrt(c2) / c1)
	eps := float32(o.ep * math.Sqrt(c2))
	for i := o.frozen; i < len(m.Layers); i++ {
		adam(m.Layers[i].W, ws.gw[i], o.m1w[i], o.m2w[i], alpha, eps)
		adam(m.Layers[i].B, ws.gb[i], o.m1b[i], o.m2b[i], alpha, eps)
	}
}

// proxGrad adds FedProx's proximal gradient μ·(w − ref) to g.
func proxGrad(g, w, ref []float32, mu float64) {
	m := float32(mu)
	g, ref = g[:len(w)], ref[:len(w)]
	for j := range w {
		g[j] += m * (w[j] - ref[j])
	}
}

// checkRef checks that ProxRef has the model's tensors' shapes.
func checkRef(ref, params [][]float32) error {
	if len(ref) != len(params) {
		return fmt.Errorf("train: ProxRef has %d tensors, the model %d", len(ref), len(params))
	}
	for i, p := range params {
		if len(ref[i]) != len(p) {
			return fmt.Errorf("train: ProxRef tensor %d has %d values, the model's %d", i, len(ref[i]), len(p))
		}
	}
	return nil
}

func sgd(w, g, v []float32, lr, mom float32) {
	g, v = g[:len(w)], v[:len(w)]
	for j := range w {
		v[j] = mom*v[j] + g[j]
		w[j] -= lr * v[j]
	}
}

func adam(w, g, m1, m2 []float32, alpha, eps float32) {
	g, m1, m2 = g[:len(w)], m1[:len(w)], m2[:len(w)]
	for j := range w {
		gj := g[j]
		a := 0.9*m1[j] + 0.1*gj
		b := 0.999*m2[j] + 0.001*gj*gj
		m1[j], m2[j] = a, b
		w[j] -= alpha * a / (float32(math.Sqrt(float64(b))) + eps)
	}
}

// Predict returns the class probabilities of len(x)/Inputs() samples laid out
// one after the other in x (features scaled as in training).
func (m *MLP) Predict(x []float32) []float32 {
	in, c := m.Inputs(), m.Classes()
	if len(x)%in != 0 {
		panic(fmt.Sprintf("train: Predict: %d values is not a multiple of %d inputs", len(x), in))
	}
	n := len(x) / in
	out := make([]float32, n*c)
	const bs = 256
	ws := m.workspace(min(bs, max(n, 1)), false)
	for lo := 0; lo < n; lo += bs {
		cur := min(bs, n-lo)
		copy(ws.x, x[lo*in:(lo+cur)*in])
		m.forward(ws, cur, 0, len(m.Layers), defaultWorkers())
		logits := ws.act[len(m.Layers)-1]
		for b := 0; b < cur; b++ {
			softmaxRow(logits[b*c : (b+1)*c])
		}
		copy(out[lo*c:], logits[:cur*c])
	}
	return out
}

// Evaluate returns the share of samples of ds whose most probable class is their label.
func (m *MLP) Evaluate(ds Dataset) (float64, error) {
	if err := m.check(ds); err != nil {
		return 0, err
	}
	n, in, c := ds.Len(), m.Inputs(), m.Classes()
	if n == 0 {
		return 0, errors.New("train: empty dataset")
	}
	const bs = 256
	ws := m.workspace(min(bs, n), false)
	labels := make([]int, bs)
	right := 0
	for lo := 0; lo < n; lo += bs {
		cur := min(bs, n-lo)
		for j := 0; j < cur; j++ {
			labels[j] = ds.Sample(lo+j, ws.x[j*in:(j+1)*in])
		}
		m.forward(ws, cur, 0, len(m.Layers), defaultWorkers())
		logits := ws.act[len(m.Layers)-1]
		for b := 0; b < cur; b++ {
			if argmax(logits[b*c:(b+1)*c]) == labels[b] {
				right++
			}
		}
	}
	return float64(right) / float64(n), nil
}

func argmax(v []float32) int {
	best := 0
	for j, x := range v {
		if x > v[best] {
			best = j
		}
	}
	return best
}
