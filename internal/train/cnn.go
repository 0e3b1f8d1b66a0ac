package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// The small convolutional network for 1x28x28 images (Fashion-MNIST), of
// C1 and C2 channels (by default CNNConv1 = 8 and CNNConv2 = 16):
//
//	Conv(1->C1, 3x3, pad 1) ReLU MaxPool(2) -> [C1, 14, 14]
//	Conv(C1->C2, 3x3, pad 1) ReLU MaxPool(2) -> [C2, 7, 7]
//	Flatten -> Gemm(C2*49 -> 10) -> Softmax
//
// Convolutions run as matrix products over im2col buffers. Training computes
// each sample's forward and backward pass independently (the weights are
// fixed within a mini-batch) and sums the gradients of fixed chunks of the
// batch in chunk order, so, as with the MLP, the weights do not depend on the
// number of workers.
const (
	CNNSide     = 28 // input height and width
	CNNChannels = 1  // input channels
	CNNConv1    = 8  // channels of the default CNN's first convolution
	CNNConv2    = 16 // channels of the default CNN's second convolution
	CNNClasses  = 10

	cnnK     = 3             // kernel side
	cnnKK    = cnnK * cnnK   // kernel taps
	cnnS1    = CNNSide       // side after conv1
	cnnP1    = CNNSide / 2   // side after pool1 (14)
	cnnP2    = cnnP1 / 2     // side after pool2 (7)
	cnnCell  = cnnP2 * cnnP2 // features of each conv2 channel (49)
	cnnInDim = CNNChannels * CNNSide * CNNSide
	cnnChunk = 8 // samples per gradient accumulator
)

// CNN is the convolutional classifier described above. Convolution weights
// use ONNX's layout [out, in, kh, kw]; FCW is [C2*49, classes] (Gemm's B
// without transB), as in the MLP, its rows in Flatten's order (channel,
// then position). The widths C1 and C2 are the lengths of Conv1B and
// Conv2B (Widths); the other tensors' shapes follow from them.
type CNN struct {
	Conv1W, Conv1B []float32 // [C1,1,3,3], [C1]
	Conv2W, Conv2B []float32 // [C2,C1,3,3], [C2]
	FCW, FCB       []float32 // [C2*49,10], [10]
}

// NewCNN makes the default CNN, of CNNConv1 and CNNConv2 channels, with
// He-normal weights and zero biases drawn from seed.
func NewCNN(seed uint64) *CNN {
	return NewCNNWidths(CNNConv1, CNNConv2, seed)
}

// NewCNNWidths makes a CNN of conv1 and conv2 channels, with He-normal
// weights and zero biases drawn from seed. It panics on a width below 1.
func NewCNNWidths(conv1, conv2 int, seed uint64) *CNN {
	if conv1 < 1 || conv2 < 1 {
		panic(fmt.Sprintf("train.NewCNNWidths: widths %d and %d, want at least 1", conv1, conv2))
	}
	rng := rand.New(rand.NewPCG(seed, 0x636e6e)) // "cnn"
	he := func(n, fanIn int) []float32 {
		w := make([]float32, n)
		std := math.Sqrt(2 / float64(fanIn))
		for i := range w {
			w[i] = float32(rng.NormFloat64() * std)
		}
		return w
	}
	flat := conv2 * cnnCell
	return &CNN{
		Conv1W: he(conv1*CNNChannels*cnnKK, CNNChannels*cnnKK), Conv1B: make([]float32, conv1),
		Conv2W: he(conv2*conv1*cnnKK, conv1*cnnKK), Conv2B: make([]float32, conv2),
		FCW: he(flat*CNNClasses, flat), FCB: make([]float32, CNNClasses),
	}
}

// Widths returns the channels of the two convolutions.
func (c *CNN) Widths() (conv1, conv2 int) {
	return len(c.Conv1B), len(c.Conv2B)
}

// checkShape checks that the tensors' lengths agree with the widths.
func (c *CNN) checkShape() error {
	c1, c2 := c.Widths()
	if c1 < 1 || c2 < 1 || len(c.Conv1W) != c1*CNNChannels*cnnKK || len(c.Conv2W) != c2*c1*cnnKK ||
		len(c.FCW) != c2*cnnCell*CNNClasses || len(c.FCB) != CNNClasses {
		return fmt.Errorf("train: CNN tensors of %d, %d, %d, %d, %d and %d values do not make a CNN of widths %d and %d",
			len(c.Conv1W), len(c.Conv1B), len(c.Conv2W), len(c.Conv2B), len(c.FCW), len(c.FCB), c1, c2)
	}
	return nil
}

// params lists the parameter slices in a fixed order.
func (c *CNN) params() [][]float32 {
	return [][]float32{c.Conv1W, c.Conv1B, c.Conv2W, c.Conv2B, c.FCW, c.FCB}
}

// NumParams is the number of weights and biases.
func (c *CNN) NumParams() int {
	n := 0
	for _, p := range c.params() {
		n += len(p)
	}
	return n
}

// Clone returns a deep copy.
func (c *CNN) Clone() *CNN {
	cp := func(s []float32) []float32 { return append([]float32(nil), s...) }
	return &CNN{Conv1W: cp(c.Conv1W), Conv1B: cp(c.Conv1B), Conv2W: cp(c.Conv2W), Conv2B: cp(c.Conv2B),
		FCW: cp(c.FCW), FCB: cp(c.FCB)}
}

// cnnScratch holds one sample's activations and gradients.
type cnnScratch struct {
	x      []float32 // [784]
	col1   []float32 // [9, 784]
	z1     []float32 // [C1, 784] pre-ReLU
	p1     []float32 // [C1, 196]
	idx1   []int32   // argmax positions in z1 of p1
	col2   []float32 // [C1*9, 196]
	z2     []float32 // [C2, 196]
	p2     []float32 // [C2*49]
	idx2   []int32
	logits []float32 // [10]

	dlog, dp2, dz2, dcol2, dp1, dz1 []float32
	// soft is the batch's soft targets with this scratch's own buffer, nil
	// unless distilling.
	soft *distil
}

func (c *CNN) newScratch(training bool) *cnnScratch {
	c1, c2 := c.Widths()
	s := &cnnScratch{
		x:      make([]float32, cnnInDim),
		col1:   make([]float32, CNNChannels*cnnKK*cnnS1*cnnS1),
		z1:     make([]float32, c1*cnnS1*cnnS1),
		p1:     make([]float32, c1*cnnP1*cnnP1),
		idx1:   make([]int32, c1*cnnP1*cnnP1),
		col2:   make([]float32, c1*cnnKK*cnnP1*cnnP1),
		z2:     make([]float32, c2*cnnP1*cnnP1),
		p2:     make([]float32, c2*cnnCell),
		idx2:   make([]int32, c2*cnnCell),
		logits: make([]float32, CNNClasses),
	}
	if training {
		s.dlog = make([]float32, CNNClasses)
		s.dp2 = make([]float32, len(s.p2))
		s.dz2 = make([]float32, len(s.z2))
		s.dcol2 = make([]float32, len(s.col2))
		s.dp1 = make([]float32, len(s.p1))
		s.dz1 = make([]float32, len(s.z1))
	}
	return s
}

// im2col writes the 3x3, pad 1, stride 1 patches of x [c, h, w] as rows
// (c*9 + ky*3 + kx) of col, each of h*w columns.
func im2col(col, x []float32, c, h, w int) {
	hw := h * w
	for ci := 0; ci < c; ci++ {
		img := x[ci*hw : (ci+1)*hw]
		for ky := 0; ky < cnnK; ky++ {
			for kx := 0; kx < cnnK; kx++ {
				row := col[((ci*cnnK+ky)*cnnK+kx)*hw:][:hw]
				dy, dx := ky-1, kx-1
				for y := 0; y < h; y++ {
					r := row[y*w : (y+1)*w]
					sy := y + dy
					if sy < 0 || sy >= h {
						clear(r)
						continue
					}
					src := img[sy*w : (sy+1)*w]
					for xx := range r {
						sx := xx + dx
						if sx < 0 || sx >= w {
							r[xx] = 0
						} else {
							r[xx] = src[sx]
						}
					}
				}
			}
		}
	}
}

// col2im adds the patch gradients dcol (layout of im2col) into dx [c, h, w],
// which it clears first.
func col2im(dx, dcol []float32, c, h, w int) {
	clear(dx)
	hw := h * w
	for ci := 0; ci < c; ci++ {
		img := dx[ci*hw : (ci+1)*hw]
		for ky := 0; ky < cnnK; ky++ {
			for kx := 0; kx < cnnK; kx++ {
				row := dcol[((ci*cnnK+ky)*cnnK+kx)*hw:][:hw]
				dy, dx := ky-1, kx-1
				for y := 0; y < h; y++ {
					sy := y + dy
					if sy < 0 || sy >= h {
						continue
					}
					r := row[y*w : (y+1)*w]
					dst := img[sy*w : (sy+1)*w]
					for xx, g := range r {
						if sx := xx + dx; sx >= 0 && sx < w {
							dst[sx] += g
						}
					}
				}
			}
		}
	}
}

// convForward sets z[co][p] = b[co] + sum_k w[co][k] * col[k][p].
func convForward(z, w, b, col []float32, cout, k, hw int) {
	for co := 0; co < cout; co++ {
		zr := z[co*hw : (co+1)*hw]
		for p := range zr {
			zr[p] = b[co]
		}
		wr := w[co*k : (co+1)*k]
		for kk, a := range wr {
			cr := col[kk*hw : (kk+1)*hw][:len(zr)]
			for p, v := range cr {
				zr[p] += a * v
			}
		}
	}
}

// maxPoolReLU applies ReLU then 2x2/2 max pooling to z [c, h, w] into p
// [c, h/2, w/2], remembering the position in z of each maximum.
func maxPoolReLU(p []float32, idx []int32, z []float32, c, h, w int) {
	oh, ow := h/2, w/2
	for ci := 0; ci < c; ci++ {
		base := ci * h * w
		for y := 0; y < oh; y++ {
			for x := 0; x < ow; x++ {
				i0 := base + 2*y*w + 2*x
				best, bi := z[i0], i0
				for _, i := range [3]int{i0 + 1, i0 + w, i0 + w + 1} {
					if z[i] > best {
						best, bi = z[i], i
					}
				}
				o := (ci*oh+y)*ow + x
				p[o] = max(best, 0)
				idx[o] = int32(bi)
			}
		}
	}
}

// forward runs s.x through the network into s.logits.
func (c *CNN) forward(s *cnnScratch) {
	c1, c2 := c.Widths()
	im2col(s.col1, s.x, CNNChannels, cnnS1, cnnS1)
	convForward(s.z1, c.Conv1W, c.Conv1B, s.col1, c1, CNNChannels*cnnKK, cnnS1*cnnS1)
	maxPoolReLU(s.p1, s.idx1, s.z1, c1, cnnS1, cnnS1)
	im2col(s.col2, s.p1, c1, cnnP1, cnnP1)
	convForward(s.z2, c.Conv2W, c.Conv2B, s.col2, c2, c1*cnnKK, cnnP1*cnnP1)
	maxPoolReLU(s.p2, s.idx2, s.z2, c2, cnnP1, cnnP1)
	copy(s.logits, c.FCB)
	for k, a := range s.p2 {
		if a == 0 {
			continue
		}
		wr := c.FCW[k*CNNClasses : (k+1)*CNNClasses][:len(s.logits)]
		for o := range s.logits {
			s.logits[o] += a * wr[o]
		}
	}
}

// cnnGrads accumulates the gradients of some samples, in params() order.
type cnnGrads [6][]float32

func newCNNGrads(c *CNN) *cnnGrads {
	var g cnnGrads
	for i, p := range c.params() {
		g[i] = make([]float32, len(p))
	}
	return &g
}

func (g *cnnGrads) clear() {
	for _, s := range g {
		clear(s)
	}
}

// backward adds to g the gradient of the loss of the sample in s (whose
// forward pass has run), sample b of its batch, with label y, scaled by
// scale, and returns the sample's loss: its cross-entropy, mixed with that
// of its soft target when s.soft is set.
func (c *CNN) backward(s *cnnScratch, g *cnnGrads, y, b int, scale float32) (float64, error) {
	c1, c2 := c.Widths()
	loss, err := sampleLoss(s.dlog, s.logits, y, s.soft, b, scale)
	if err != nil {
		return 0, err
	}

	// Gemm: dFCW[k][o] += p2[k] dlog[o]; dp2[k] = sum_o FCW[k][o] dlog[o].
	gw, gb := g[4], g[5]
	for o, d := range s.dlog {
		gb[o] += d
	}
	for k, a := range s.p2 {
		wr := c.FCW[k*CNNClasses : (k+1)*CNNClasses]
		s.dp2[k] = dot(s.dlog, wr)
		if a != 0 {
			gr := gw[k*CNNClasses : (k+1)*CNNClasses][:len(s.dlog)]
			for o, d := range s.dlog {
				gr[o] += a * d
			}
		}
	}

	// Pool 2 and ReLU 2 back to z2, then conv 2.
	unpool(s.dz2, s.dp2, s.idx2, s.p2)
	hw2 := cnnP1 * cnnP1
	convBackward(g[2], g[3], s.dcol2, s.dz2, s.col2, c.Conv2W, c2, c1*cnnKK, hw2, true)
	col2im(s.dp1, s.dcol2, c1, cnnP1, cnnP1)

	// Pool 1 and ReLU 1 back to z1, then conv 1 (no input gradient needed).
	unpool(s.dz1, s.dp1, s.idx1, s.p1)
	convBackward(g[0], g[1], nil, s.dz1, s.col1, c.Conv1W, c1, CNNChannels*cnnKK, cnnS1*cnnS1, false)
	return loss, nil
}

// unpool routes each pooled gradient dp[o] to the position idx[o] of its
// maximum, where the pooled (post-ReLU) value p[o] was positive.
func unpool(dz, dp []float32, idx []int32, p []float32) {
	clear(dz)
	for o, d := range dp {
		if p[o] > 0 {
			dz[idx[o]] = d
		}
	}
}

// convBackward adds dW[co][k] += sum_p dz[co][p] col[k][p] and db[co] +=
// sum_p dz[co][p]; with wantCol it also sets dcol[k][p] = sum_co
// w[co][k] dz[co][p].
func convBackward(dw, db, dcol, dz, col, w []float32, cout, k, hw int, wantCol bool) {
	for co := 0; co < cout; co++ {
		dr := dz[co*hw : (co+1)*hw]
		var sb float32
		for _, v := range dr {
			sb += v
		}
		db[co] += sb
		if sb == 0 && allZero(dr) {
			continue
		}
		gr := dw[co*k : (co+1)*k]
		for kk := range gr {
			gr[kk] += dot(dr, col[kk*hw:(kk+1)*hw])
		}
	}
	if !wantCol {
		return
	}
	clear(dcol)
	for co := 0; co < cout; co++ {
		dr := dz[co*hw : (co+1)*hw]
		wr := w[co*k : (co+1)*k]
		for kk, a := range wr {
			cr := dcol[kk*hw : (kk+1)*hw][:len(dr)]
			for p, v := range dr {
				cr[p] += a * v
			}
		}
	}
}

func allZero(v []float32) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}

func (c *CNN) check(ds Dataset) error {
	if err := c.checkShape(); err != nil {
		return err
	}
	if ds.Dim() != cnnInDim {
		return fmt.Errorf("train: dataset has %d features, the CNN takes %d (1x28x28)", ds.Dim(), cnnInDim)
	}
	return nil
}

// Train runs mini-batch training on ds (28x28 single-channel images, pixels
// scaled as for the MLP). It honours Epochs, BatchSize, LR, Optimizer,
// Momentum, Seed, Workers, Progress, MaxSteps, ProxMu and Soft (distillation,
// as for the MLP) of opts; FrozenLayers must be 0 and Masks nil. It stops
// early with ctx's error, leaving the model as after the last step.
func (c *CNN) Train(ctx context.Context, ds Dataset, opts TrainOptions) (TrainStats, error) {
	start := time.Now()
	opts, err := opts.withDefaults()
	if err != nil {
		return TrainStats{}, err
	}
	if opts.FrozenLayers != 0 {
		return TrainStats{}, errors.New("train: the CNN does not support frozen layers")
	}
	if opts.Masks != nil {
		return TrainStats{}, errors.New("train: the CNN does not mask weights (TrainOptions.Masks)")
	}
	if err := c.check(ds); err != nil {
		return TrainStats{}, err
	}
	if opts.ProxMu > 0 {
		if err := checkRef(opts.ProxRef, c.params()); err != nil {
			return TrainStats{}, err
		}
	}
	n := ds.Len()
	if n == 0 {
		return TrainStats{}, errors.New("train: empty dataset")
	}
	bs := min(opts.BatchSize, n)
	chunks := (bs + cnnChunk - 1) / cnnChunk
	grads := make([]*cnnGrads, chunks)
	for i := range grads {
		grads[i] = newCNNGrads(c)
	}
	losses := make([]float64, chunks)
	errs := make([]error, chunks)
	batchX := make([]float32, bs*cnnInDim)
	labels := make([]int, bs)
	var softRows [][]float32
	if opts.Soft != nil {
		softRows = make([][]float32, bs)
	}
	scratch := make([]*cnnScratch, min(opts.Workers, chunks))
	for i := range scratch {
		scratch[i] = c.newScratch(true)
		if softRows != nil {
			scratch[i].soft = &distil{rows: softRows, weight: opts.SoftWeight, temp: opts.Temperature, pt: make([]float32, CNNClasses)}
		}
	}
	total := grads[0] // chunk 0's buffer receives the sum
	params := c.params()
	opt := newParamOptimizer(params, opts)
	stats := TrainStats{Epochs: opts.Epochs, Updated: c.NumParams()}

	rng := rand.New(rand.NewPCG(opts.Seed, 0x73687566666c65)) // "shuffle"
	perm := make([]int, n)
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
			nc := (cur + cnnChunk - 1) / cnnChunk
			scale := float32(1 / float64(cur))
			for j := 0; j < cur; j++ {
				labels[j] = ds.Sample(perm[lo+j], batchX[j*cnnInDim:(j+1)*cnnInDim])
				if labels[j] < 0 || labels[j] >= CNNClasses {
					stats.Duration = time.Since(start)
					return stats, fmt.Errorf("train: label %d outside [0, %d)", labels[j], CNNClasses)
				}
				if softRows != nil {
					softRows[j] = opts.Soft(perm[lo+j])
				}
			}
			// Worker w takes chunks w, w+W, ...; each chunk's sums are its own.
			parallel(len(scratch), len(scratch), func(wlo, whi int) {
				for wk := wlo; wk < whi; wk++ {
					s := scratch[wk]
					for ch := wk; ch < nc; ch += len(scratch) {
						g := grads[ch]
						g.clear()
						losses[ch], errs[ch] = 0, nil
						for j := ch * cnnChunk; j < min((ch+1)*cnnChunk, cur); j++ {
							s.x = batchX[j*cnnInDim : (j+1)*cnnInDim]
							c.forward(s)
							loss, err := c.backward(s, g, labels[j], j, scale)
							if err != nil {
								errs[ch] = err
								break
							}
							losses[ch] += loss
						}
					}
				}
			})
			if err := errors.Join(errs[:nc]...); err != nil {
				stats.Duration = time.Since(start)
				return stats, err
			}
			for ch := 1; ch < nc; ch++ {
				for i, s := range grads[ch] {
					t := total[i][:len(s)]
					for j, v := range s {
						t[j] += v
					}
				}
			}
			for ch := 0; ch < nc; ch++ {
				lossSum += losses[ch]
			}
			if opts.ProxMu > 0 {
				for i, p := range params {
					proxGrad(total[i], p, opts.ProxRef[i], opts.ProxMu)
				}
			}
			opt.step(params, total[:])
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

// paramOptimizer is Adam or SGD with momentum over a list of parameter slices.
type paramOptimizer struct {
	kind    Optimizer
	lr, mom float32
	t       int
	m1, m2  [][]float32
}

func newParamOptimizer(params [][]float32, opts TrainOptions) *paramOptimizer {
	o := &paramOptimizer{kind: opts.Optimizer, lr: float32(opts.LR), mom: float32(opts.Momentum)}
	for _, p := range params {
		o.m1 = append(o.m1, make([]float32, len(p)))
		o.m2 = append(o.m2, make([]float32, len(p)))
	}
	return o
}

func (o *paramOptimizer) step(params, grads [][]float32) {
	o.t++
	if o.kind == SGDMomentum {
		for i, p := range params {
			sgd(p, grads[i], o.m1[i], o.lr, o.mom)
		}
		return
	}
	c1 := 1 - math.Pow(0.9, float64(o.t))
	c2 := 1 - math.Pow(0.999, float64(o.t))
	alpha := float32(float64(o.lr) * math.Sqrt(c2) / c1)
	eps := float32(1e-8 * math.Sqrt(c2))
	for i, p := range params {
		adam(p, grads[i], o.m1[i], o.m2[i], alpha, eps)
	}
}

// Predict returns the class probabilities of len(x)/784 images laid out one
// after the other in x (pixels scaled as in training).
func (c *CNN) Predict(x []float32) []float32 {
	if len(x)%cnnInDim != 0 {
		panic(fmt.Sprintf("train: CNN.Predict: %d values is not a multiple of %d", len(x), cnnInDim))
	}
	if err := c.checkShape(); err != nil {
		panic(err.Error())
	}
	n := len(x) / cnnInDim
	out := make([]float32, n*CNNClasses)
	parallel(n, defaultWorkers(), func(lo, hi int) {
		s := c.newScratch(false)
		for i := lo; i < hi; i++ {
			copy(s.x, x[i*cnnInDim:(i+1)*cnnInDim])
			c.forward(s)
			softmaxRow(s.logits)
			copy(out[i*CNNClasses:], s.logits)
		}
	})
	return out
}

// Evaluate returns the share of samples of ds whose most probable class is
// their label.
func (c *CNN) Evaluate(ds Dataset) (float64, error) {
	if err := c.check(ds); err != nil {
		return 0, err
	}
	n := ds.Len()
	if n == 0 {
		return 0, errors.New("train: empty dataset")
	}
	workers := defaultWorkers()
	right := make([]int, workers)
	step := (n + workers - 1) / workers
	parallel(workers, workers, func(wlo, whi int) {
		s := c.newScratch(false)
		for w := wlo; w < whi; w++ {
			for i := w * step; i < min((w+1)*step, n); i++ {
				y := ds.Sample(i, s.x)
				c.forward(s)
				if argmax(s.logits) == y {
					right[w]++
				}
			}
		}
	})
	sum := 0
	for _, r := range right {
		sum += r
	}
	return float64(sum) / float64(n), nil
}
