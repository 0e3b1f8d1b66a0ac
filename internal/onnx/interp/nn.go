package interp

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// addNNOps registers Conv, MaxPool, AveragePool, GlobalAveragePool,
// GlobalMaxPool and BatchNormalization.
func addNNOps(t ops) {
	t["Conv"] = Op{MinOpset: 11, MaxOpset: 17, Check: checkConv, Run: runConv, Prepare: prepareConv, Fresh: true}
	t["MaxPool"] = Op{MinOpset: 12, MaxOpset: 17, Check: checkMaxPool, Run: runMaxPool, Fresh: true}
	t["AveragePool"] = Op{MinOpset: 11, MaxOpset: 17, Check: checkAveragePool, Run: runAveragePool, Fresh: true}
	t["GlobalAveragePool"] = Op{MinOpset: 1, MaxOpset: 17, Check: checkGlobalPool, Run: runGlobalAveragePool, Fresh: true}
	t["GlobalMaxPool"] = Op{MinOpset: 1, MaxOpset: 17, Check: checkGlobalPool, Run: runGlobalMaxPool, Fresh: true}
	t["BatchNormalization"] = Op{MinOpset: 9, MaxOpset: 17, Check: checkBatchNorm, Run: runBatchNorm, Fresh: true}
}

// nnMaxSpatial is the number of spatial dimensions the convolution and
// pooling kernels handle (1-D and 2-D).
const nnMaxSpatial = 2

// nnInputs checks that a node has between lo and hi inputs.
func nnInputs(n *Node, lo, hi int) error {
	if k := len(n.Proto.GetInput()); k < lo || k > hi {
		if lo == hi {
			return n.Errorf("has %d inputs, want %d", k, lo)
		}
		return n.Errorf("has %d inputs, want %d to %d", k, lo, hi)
	}
	return nil
}

// nnOutputs returns how many leading outputs the node uses: trailing
// outputs with empty names are omitted optional outputs.
func nnOutputs(n *Node) int {
	outs := n.Proto.GetOutput()
	k := len(outs)
	for k > 0 && outs[k-1] == "" {
		k--
	}
	return k
}

// nnWindowAttrs are the attributes convolution and pooling share.
type nnWindowAttrs struct {
	autoPad   string
	kernel    []int64 // kernel_shape; nil when absent (Conv infers it from W)
	strides   []int64
	dilations []int64
	pads      []int64
	ceil      bool
}

// nnParseWindow reads and validates the window attributes. rank is the
// number of spatial dimensions the attributes imply, or 0 when none of them
// says (Conv without kernel_shape, strides, dilations or pads).
func nnParseWindow(n *Node, allowDilations bool) (a nnWindowAttrs, rank int, err error) {
	a.autoPad = n.String("auto_pad", "NOTSET")
	switch a.autoPad {
	case "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID":
	default:
		return a, 0, n.Errorf("attribute auto_pad: unsupported value %q (want NOTSET, SAME_UPPER, SAME_LOWER or VALID)", a.autoPad)
	}
	a.kernel = n.Ints("kernel_shape", nil)
	a.strides = n.Ints("strides", nil)
	a.dilations = n.Ints("dilations", nil)
	a.pads = n.Ints("pads", nil)
	if !allowDilations && n.Has("dilations") {
		return a, 0, fmt.Errorf("%w: %w", n.Errorf("attribute dilations is not supported by %s at this opset", n.Proto.GetOpType()), ErrUnsupported)
	}
	setRank := func(name string, r int) error {
		if rank != 0 && r != rank {
			return n.Errorf("attribute %s implies %d spatial dimensions, other attributes %d", name, r, rank)
		}
		rank = r
		return nil
	}
	if n.Has("kernel_shape") {
		if err := setRank("kernel_shape", len(a.kernel)); err != nil {
			return a, 0, err
		}
		for _, k := range a.kernel {
			if k < 1 {
				return a, 0, n.Errorf("attribute kernel_shape %v: sizes must be positive", a.kernel)
			}
		}
	}
	if n.Has("strides") {
		if err := setRank("strides", len(a.strides)); err != nil {
			return a, 0, err
		}
		for _, s := range a.strides {
			if s < 1 {
				return a, 0, n.Errorf("attribute strides %v: strides must be positive", a.strides)
			}
		}
	}
	if n.Has("dilations") {
		if err := setRank("dilations", len(a.dilations)); err != nil {
			return a, 0, err
		}
		for _, d := range a.dilations {
			if d < 1 {
				return a, 0, n.Errorf("attribute dilations %v: dilations must be positive", a.dilations)
			}
		}
	}
	if n.Has("pads") {
		if len(a.pads)%2 != 0 {
			return a, 0, n.Errorf("attribute pads %v: want begin and end pads for each spatial dimension", a.pads)
		}
		if err := setRank("pads", len(a.pads)/2); err != nil {
			return a, 0, err
		}
		for _, p := range a.pads {
			if p < 0 {
				return a, 0, n.Errorf("attribute pads %v: pads must not be negative", a.pads)
			}
		}
	}
	if rank > nnMaxSpatial {
		return a, 0, fmt.Errorf("%w: %w", n.Errorf("attributes describe %d spatial dimensions; only 1-D and 2-D are supported", rank), ErrUnsupported)
	}
	if n.Has("ceil_mode") {
		switch c := n.Int("ceil_mode", 0); c {
		case 0, 1:
			a.ceil = c == 1
		default:
			return a, 0, n.Errorf("attribute ceil_mode: unsupported value %d (want 0 or 1)", c)
		}
	}
	return a, rank, nil
}

// nnGeom is a resolved 2-D window geometry; 1-D inputs use H = 1.
type nnGeom struct {
	inH, inW     int
	kH, kW       int
	sH, sW       int
	dH, dW       int
	padT, padL   int // begin pads
	padB, padR   int // end pads
	outH, outW   int
	spatialShape []int // output spatial shape in the input's rank (1 or 2 dims)
}

// nnResolve computes the output geometry of a window op over the spatial
// dimensions in (1 or 2 of them) with the given kernel sizes.
func nnResolve(n *Node, a *nnWindowAttrs, in, kernel []int) (nnGeom, error) {
	r := len(in)
	get := func(v []int64, i, def int) int {
		if v == nil {
			return def
		}
		return int(v[i])
	}
	if a.strides != nil && len(a.strides) != r || a.dilations != nil && len(a.dilations) != r || a.pads != nil && len(a.pads) != 2*r {
		return nnGeom{}, n.Errorf("attributes describe a different number of spatial dimensions than the %d-D input", r)
	}
	var out [nnMaxSpatial]int
	var pb, pe [nnMaxSpatial]int
	var s, d [nnMaxSpatial]int
	for i := 0; i < r; i++ {
		s[i] = get(a.strides, i, 1)
		d[i] = get(a.dilations, i, 1)
		ext := d[i]*(kernel[i]-1) + 1 // extent of the dilated kernel
		switch a.autoPad {
		case "NOTSET":
			if a.pads != nil {
				pb[i], pe[i] = int(a.pads[i]), int(a.pads[i+r])
			}
			span := in[i] + pb[i] + pe[i] - ext
			if span < 0 {
				return nnGeom{}, n.Errorf("kernel extent %d exceeds padded input size %d in spatial dimension %d", ext, in[i]+pb[i]+pe[i], i)
			}
			out[i] = span/s[i] + 1
			if a.ceil && span%s[i] != 0 {
				out[i]++
				// The last window must start inside the input or the
				// begin padding.
				if (out[i]-1)*s[i] >= in[i]+pb[i] {
					out[i]--
				}
			}
		case "VALID":
			if in[i] < ext {
				return nnGeom{}, n.Errorf("kernel extent %d exceeds input size %d in spatial dimension %d", ext, in[i], i)
			}
			out[i] = (in[i]-ext)/s[i] + 1
		default: // SAME_UPPER, SAME_LOWER
			out[i] = (in[i] + s[i] - 1) / s[i]
			total := max(0, (out[i]-1)*s[i]+ext-in[i])
			if a.autoPad == "SAME_UPPER" {
				pb[i] = total / 2
			} else {
				pb[i] = (total + 1) / 2
			}
			pe[i] = total - pb[i]
		}
	}
	g := nnGeom{spatialShape: append([]int(nil), out[:r]...)}
	if r == 1 {
		g.inH, g.kH, g.sH, g.dH, g.outH = 1, 1, 1, 1, 1
		g.inW, g.kW, g.sW, g.dW, g.outW = in[0], kernel[0], s[0], d[0], out[0]
		g.padL, g.padR = pb[0], pe[0]
	} else {
		g.inH, g.kH, g.sH, g.dH, g.outH = in[0], kernel[0], s[0], d[0], out[0]
		g.inW, g.kW, g.sW, g.dW, g.outW = in[1], kernel[1], s[1], d[1], out[1]
		g.padT, g.padL, g.padB, g.padR = pb[0], pb[1], pe[0], pe[1]
	}
	return g, nil
}

// nnSpatialInput checks that x is a float32 (or allowed other) N x C x
// spatial tensor with 1 or 2 spatial dimensions.
func nnSpatialInput(n *Node, name string, x *Tensor, types ...DType) error {
	if x == nil {
		return n.Errorf("input %s is missing", name)
	}
	ok := false
	for _, t := range types {
		ok = ok || x.DType == t
	}
	if !ok {
		return n.Errorf("input %s has type %s, want %v", name, x.DType, types)
	}
	if r := len(x.Shape); r < 3 || r > 2+nnMaxSpatial {
		return n.Errorf("input %s has shape %s; want N x C x spatial with 1 or 2 spatial dimensions", name, ShapeString(x.Shape))
	}
	return nil
}

func checkConv(n *Node) error {
	if err := nnInputs(n, 2, 3); err != nil {
		return err
	}
	if nnOutputs(n) != 1 {
		return n.Errorf("has %d outputs, want 1", nnOutputs(n))
	}
	if g := n.Int("group", 1); g < 1 {
		return n.Errorf("attribute group: %d, want a positive number", g)
	}
	_, _, err := nnParseWindow(n, true)
	return err
}

// runConv computes a Conv node, allocating its im2col buffer.
func runConv(n *Node, in []*Tensor) ([]*Tensor, error) {
	return convRun(n, in, nil)
}

// prepareConv gives a Conv node a pool of im2col buffers, so that requests
// after the first allocate only their output.
func prepareConv(*Node, []*Tensor) Kernel {
	pool := new(sync.Pool)
	return func(n *Node, in []*Tensor) ([]*Tensor, error) { return convRun(n, in, pool) }
}

// convRun computes a Conv node, taking im2col buffers from pool (nil:
// allocated).
func convRun(n *Node, in []*Tensor, pool *sync.Pool) ([]*Tensor, error) {
	c, err := convSetup(n, in)
	if err != nil {
		return nil, err
	}
	y := New(Float32, c.shape...)
	nnConv(&c, y.F32, pool, convEpilogue{})
	return []*Tensor{y}, nil
}

// fusedConvKernel returns the kernel of a Conv node fused with the Relu
// (if relu), the Clip (bounds clip, nil for none) and the MaxPool
// (poolNode, nil for none) that alone read its
// output, in that order: each image's convolution goes through them
// while it is in cache, and only the last result is made. A Conv run in
// integers (q not nil, see fuseQDQ) takes its inputs as q.setup says. The
// im2col and image buffers come from a pool of the kernel's own; the
// output's data from outs when it holds a buffer large enough (release
// gives one back once the executor has proven the output dead), else is
// allocated.
func fusedConvKernel(relu bool, clip *[2]float32, poolNode *Node, q *qConv) (kernel Kernel, release func(*Tensor)) {
	pool, outs := new(sync.Pool), new(sync.Pool)
	output := func(shape []int) *Tensor {
		buf := getScratch[float32](outs, Size(shape))
		return &Tensor{DType: Float32, Shape: shape, F32: *buf}
	}
	setup := convSetup
	if q != nil {
		setup = q.setup
	}
	kernel = func(n *Node, in []*Tensor) ([]*Tensor, error) {
		c, err := setup(n, in)
		if err != nil {
			return nil, err
		}
		if poolNode == nil {
			y := output(c.shape)
			if c.bias == nil && c.q == nil {
				clear(y.F32) // the products add to it; a bias would be written first
			}
			nnConv(&c, y.F32, pool, convEpilogue{relu: relu, clip: clip})
			return []*Tensor{y}, nil
		}
		pg, shape, err := poolSetup(poolNode, &Tensor{DType: Float32, Shape: c.shape}, true, Float32)
		if err != nil {
			return nil, err
		}
		y := output(shape) // every element is a window's maximum
		nnConv(&c, nil, pool, convEpilogue{relu: relu, clip: clip, pool: &pg, pooled: y.F32})
		return []*Tensor{y}, nil
	}
	release = func(t *Tensor) {
		if t.DType == Float32 && cap(t.F32) > 0 {
			buf := t.F32[:0]
			outs.Put(&buf)
		}
	}
	return kernel, release
}

// convOp is a validated Conv: its operands, geometry and output shape.
// A Conv run in integers has q set and its quantized input in qx instead
// of x and w.
type convOp struct {
	g              nnGeom
	x, w, bias     []float32 // bias nil when absent
	N, C, M, group int
	shape          []int
	q              *qConv
	qx             *Tensor
}

// convSetup validates the inputs and attributes of a Conv node.
func convSetup(n *Node, in []*Tensor) (convOp, error) {
	x, w := in[0], in[1]
	var b *Tensor
	if len(in) > 2 {
		b = in[2]
	}
	if err := nnSpatialInput(n, "X", x, Float32); err != nil {
		return convOp{}, err
	}
	if w == nil || w.DType != Float32 || len(w.Shape) != len(x.Shape) {
		return convOp{}, n.Errorf("input W must be a float32 tensor of rank %d (X is %s)", len(x.Shape), ShapeString(x.Shape))
	}
	a, _, err := nnParseWindow(n, true)
	if err != nil {
		return convOp{}, err
	}
	group := int(n.Int("group", 1))
	N, C := x.Shape[0], x.Shape[1]
	M, Cg := w.Shape[0], w.Shape[1]
	if Cg*group != C || M%group != 0 {
		return convOp{}, n.Errorf("W shape %s with group %d does not fit X shape %s: want W[1]*group = %d input channels and output channels divisible by group",
			ShapeString(w.Shape), group, ShapeString(x.Shape), C)
	}
	kernel := w.Shape[2:]
	if a.kernel != nil {
		if len(a.kernel) != len(kernel) {
			return convOp{}, n.Errorf("attribute kernel_shape %v does not match W shape %s", a.kernel, ShapeString(w.Shape))
		}
		for i, k := range a.kernel {
			if int(k) != kernel[i] {
				return convOp{}, n.Errorf("attribute kernel_shape %v does not match W shape %s", a.kernel, ShapeString(w.Shape))
			}
		}
	}
	if b != nil && (b.DType != Float32 || len(b.Shape) != 1 || b.Shape[0] != M) {
		return convOp{}, n.Errorf("input B must be a float32 vector of %d elements, got %s %s", M, b.DType, ShapeString(b.Shape))
	}
	g, err := nnResolve(n, &a, x.Shape[2:], kernel)
	if err != nil {
		return convOp{}, err
	}
	c := convOp{g: g, x: x.F32, w: w.F32, N: N, C: C, M: M, group: group,
		shape: append([]int{N, M}, g.spatialShape...)}
	if b != nil {
		c.bias = b.F32
	}
	return c, nil
}

// convParallelMACs is the multiply-add count above which a convolution
// is split by images and groups between goroutines.
const convParallelMACs = 1 << 20

// convEpilogue is what a fused Conv applies to each image of its result:
// Relu if relu is set, a Clip if clip is, then, if pool is not nil, max pooling of geometry
// pool into pooled (all images) instead of storing the image.
type convEpilogue struct {
	relu   bool
	clip   *[2]float32 // a Clip's bounds, after the Relu if both
	pool   *nnGeom
	pooled []float32
}

// pointwise reports whether g is a 1x1 window at stride 1 without
// padding, whose im2col matrix is the input itself.
func (g *nnGeom) pointwise() bool {
	return g.kH == 1 && g.kW == 1 && g.sH == 1 && g.sW == 1 &&
		g.padT == 0 && g.padL == 0 && g.padB == 0 && g.padR == 0
}

// nnConv computes the grouped 2-D convolution c into y (unless the
// epilogue pools): per image and group, the bias, plus the group's
// filters times an nnIm2col matrix (sgemm), or times the input itself for
// a 1x1 kernel at stride 1 without padding; or, for a convolution in
// integers (c.q set), each image by qConv.image; then the epilogue, per
// image. Large batches are split between goroutines (by images and
// groups, or by images when there is an epilogue), each with its own
// buffers from pool (nil: allocated).
func nnConv(c *convOp, y []float32, pool *sync.Pool, epi convEpilogue) {
	g, N, M, group := &c.g, c.N, c.M, c.group
	Cg, Mg := c.C/group, M/group
	K := Cg * g.kH * g.kW
	inHW, outHW := g.inH*g.inW, g.outH*g.outW
	direct := g.pointwise()
	// A group of one input channel (depthwise) is computed directly from
	// its padded input where that is faster.
	depthwise := c.q == nil && Cg == 1 && !direct && nnDepthwiseDirect(g)
	colSize, imgSize := 0, M*outHW
	switch {
	case c.q != nil: // its buffers are its own
	case depthwise:
		colSize = nnDepthwiseBuf(g)
	case !direct:
		colSize = K * outHW
	}
	whole := epi.relu || epi.clip != nil || epi.pool != nil // units are whole images
	units := N * group
	if whole {
		units = N
	}
	work := func(u0, u1 int) {
		var col, scratch []float32
		if colSize > 0 {
			buf := getScratch[float32](pool, colSize)
			defer putScratch(pool, buf)
			col = *buf
		}
		var qs *qConvScratch
		if c.q != nil {
			qs = c.q.scratch()
			defer c.q.pool.Put(qs)
		}
		if epi.pool != nil {
			buf := getScratch[float32](pool, imgSize)
			defer putScratch(pool, buf)
			scratch = *buf
		}
		for u := u0; u < u1; u++ {
			img, g0, g1 := u/group, u%group, u%group+1
			if whole {
				img, g0, g1 = u, 0, group
			}
			yimg := scratch
			if yimg == nil {
				yimg = y[img*imgSize : (img+1)*imgSize]
			}
			if c.q != nil {
				c.q.image(c, img, yimg, qs)
			} else {
				for gr := g0; gr < g1; gr++ {
					xg := c.x[(img*c.C+gr*Cg)*inHW : (img*c.C+(gr+1)*Cg)*inHW]
					yg := yimg[gr*Mg*outHW : (gr+1)*Mg*outHW]
					if depthwise {
						var bg []float32
						if c.bias != nil {
							bg = c.bias[gr*Mg : (gr+1)*Mg]
						}
						nnDepthwise(haveAVX2FMA, g, xg, c.w[gr*Mg*K:(gr+1)*Mg*K], bg, Mg, yg, col)
						continue
					}
					switch {
					case c.bias != nil:
						for m := 0; m < Mg; m++ {
							fill(yg[m*outHW:(m+1)*outHW], c.bias[gr*Mg+m])
						}
					case scratch != nil:
						clear(yg)
					}
					src := xg
					if !direct {
						nnIm2col(g, xg, Cg, col, 0)
						src = col
					}
					sgemm(Mg, outHW, K, 1, c.w[gr*Mg*K:(gr+1)*Mg*K], K, 1, src, yg)
				}
			}
			if epi.relu {
				reluF32(yimg, yimg)
			}
			if b := epi.clip; b != nil {
				clampF32(yimg, b[0], b[1])
			}
			if p := epi.pool; p != nil {
				pHW := p.outH * p.outW
				dst := epi.pooled[img*M*pHW : (img+1)*M*pHW]
				if p.dH == 1 && p.dW == 1 {
					nnMaxPoolF32(haveAVX2FMA, p, M, yimg, dst)
				} else {
					nnMaxPool(p, M, yimg, dst, nil, false, float32(math.Inf(-1)))
				}
			}
		}
	}
	workers := 1
	if units > 1 && N*M*outHW*K/group >= convParallelMACs {
		workers = min(runtime.GOMAXPROCS(0), 8, units)
	}
	parallelSplit(units, workers, work)
}

// fill sets every element of s to v: a few, then copies of what is set,
// doubling, which memmove writes a vector at a time.
func fill[T any](s []T, v T) {
	if len(s) == 0 {
		return
	}
	n := min(len(s), 16)
	for i := range n {
		s[i] = v
	}
	for n < len(s) {
		n += copy(s[n:], s[:n])
	}
}

// getScratch returns a buffer of n elements, not zeroed, from pool, or a
// new one when pool is nil or holds none large enough. putScratch gives
// it back.
func getScratch[T any](pool *sync.Pool, n int) *[]T {
	if pool != nil {
		if p, ok := pool.Get().(*[]T); ok && cap(*p) >= n {
			*p = (*p)[:n]
			return p
		}
	}
	s := make([]T, n)
	return &s
}

// putScratch returns a buffer from getScratch to pool (nil: dropped).
func putScratch[T any](pool *sync.Pool, p *[]T) {
	if pool != nil {
		pool.Put(p)
	}
}

// nnIm2col lays out the receptive fields of x (Cg channels of inH x inW) as
// a (Cg*kH*kW) x (outH*outW) matrix, pad where the window covers padding:
// 0 for float32, the zero point for a quantized input (whose padding is
// then a real 0 too).
func nnIm2col[T float32 | uint8 | int8](g *nnGeom, x []T, Cg int, col []T, pad T) {
	if g.sH == 1 && g.sW == 1 && g.outW == g.inW {
		nnIm2colSame(g, x, Cg, col, pad)
		return
	}
	nnIm2colRows(g, x, Cg, col, pad)
}

// nnIm2colRows is nnIm2col for any geometry, a row of the output at a
// time.
func nnIm2colRows[T float32 | uint8 | int8](g *nnGeom, x []T, Cg int, col []T, pad T) {
	inHW, outHW := g.inH*g.inW, g.outH*g.outW
	r := 0
	for c := 0; c < Cg; c++ {
		plane := x[c*inHW : (c+1)*inHW]
		for ki := 0; ki < g.kH; ki++ {
			for kj := 0; kj < g.kW; kj++ {
				dst := col[r*outHW : (r+1)*outHW]
				r++
				offW := kj*g.dW - g.padL
				// Output columns whose input column is inside [0, inW).
				owLo, owHi := nnValidRange(offW, g.sW, g.inW, g.outW)
				for oh := 0; oh < g.outH; oh++ {
					drow := dst[oh*g.outW : (oh+1)*g.outW]
					ih := oh*g.sH - g.padT + ki*g.dH
					if ih < 0 || ih >= g.inH || owLo >= owHi {
						fill(drow, pad)
						continue
					}
					fill(drow[:owLo], pad)
					fill(drow[owHi:], pad)
					srow := plane[ih*g.inW : (ih+1)*g.inW]
					if g.sW == 1 {
						copy(drow[owLo:owHi], srow[owLo+offW:owHi+offW])
						continue
					}
					iw := owLo*g.sW + offW
					for ow := owLo; ow < owHi; ow++ {
						drow[ow] = srow[iw]
						iw += g.sW
					}
				}
			}
		}
	}
}

// nnIm2colSame is nnIm2col for stride 1 when the output rows are as wide
// as the input rows (as with "same" padding): each row of the matrix is
// then the input plane shifted by a constant, one copy, after which the
// columns that wrapped around from a neighbouring input row are set to
// pad.
func nnIm2colSame[T float32 | uint8 | int8](g *nnGeom, x []T, Cg int, col []T, pad T) {
	W := g.inW
	inHW, outHW := g.inH*W, g.outH*W
	r := 0
	for c := 0; c < Cg; c++ {
		plane := x[c*inHW : (c+1)*inHW]
		for ki := 0; ki < g.kH; ki++ {
			d := ki*g.dH - g.padT // input row = output row + d
			ohA, ohB := max(0, -d), min(g.outH, g.inH-d)
			for kj := 0; kj < g.kW; kj++ {
				dst := col[r*outHW : (r+1)*outHW]
				r++
				offW := kj*g.dW - g.padL
				owLo, owHi := nnValidRange(offW, 1, W, W)
				if ohA >= ohB || owLo >= owHi {
					fill(dst, pad)
					continue
				}
				fill(dst[:ohA*W], pad)
				fill(dst[ohB*W:], pad)
				shift := d*W + offW
				lo, hi := max(ohA*W, -shift), min(ohB*W, inHW-shift)
				copy(dst[lo:hi], plane[lo+shift:hi+shift])
				if owLo == 0 && owHi == W {
					continue
				}
				for oh := ohA; oh < ohB; oh++ {
					row := dst[oh*W : (oh+1)*W]
					for j := 0; j < owLo; j++ {
						row[j] = pad
					}
					for j := owHi; j < W; j++ {
						row[j] = pad
					}
				}
			}
		}
	}
}

// nnValidRange returns the output positions [lo, hi) whose input position
// o*stride + off lies in [0, size), for o in [0, out).
func nnValidRange(off, stride, size, out int) (lo, hi int) {
	if off < 0 {
		lo = (-off + stride - 1) / stride
	}
	if size-off <= 0 {
		return 0, 0
	}
	hi = min(out, (size-off+stride-1)/stride)
	if lo > hi {
		lo = hi
	}
	return lo, hi
}

func checkPool(n *Node, allowDilations bool) error {
	if err := nnInputs(n, 1, 1); err != nil {
		return err
	}
	if !n.Has("kernel_shape") {
		return n.Errorf("attribute kernel_shape is required")
	}
	_, _, err := nnParseWindow(n, allowDilations)
	return err
}

func checkMaxPool(n *Node) error {
	if err := checkPool(n, true); err != nil {
		return err
	}
	if so := n.Int("storage_order", 0); so != 0 && so != 1 {
		return n.Errorf("attribute storage_order: unsupported value %d (want 0, row major, or 1, column major)", so)
	}
	if k := nnOutputs(n); k > 2 {
		return n.Errorf("has %d outputs, want 1 or 2", k)
	}
	return nil
}

func checkAveragePool(n *Node) error {
	if err := checkPool(n, false); err != nil {
		return err
	}
	if c := n.Int("count_include_pad", 0); c != 0 && c != 1 {
		return n.Errorf("attribute count_include_pad: unsupported value %d (want 0 or 1)", c)
	}
	if nnOutputs(n) != 1 {
		return n.Errorf("has %d outputs, want 1", nnOutputs(n))
	}
	return nil
}

// poolSetup validates a pooling input against the node's attributes and
// returns the geometry and the output shape.
func poolSetup(n *Node, x *Tensor, allowDilations bool, types ...DType) (nnGeom, []int, error) {
	if err := nnSpatialInput(n, "X", x, types...); err != nil {
		return nnGeom{}, nil, err
	}
	a, rank, err := nnParseWindow(n, allowDilations)
	if err != nil {
		return nnGeom{}, nil, err
	}
	if rank != len(x.Shape)-2 {
		return nnGeom{}, nil, n.Errorf("attribute kernel_shape %v does not fit input X of shape %s", a.kernel, ShapeString(x.Shape))
	}
	kernel := make([]int, rank)
	for i, k := range a.kernel {
		kernel[i] = int(k)
	}
	g, err := nnResolve(n, &a, x.Shape[2:], kernel)
	if err != nil {
		return nnGeom{}, nil, err
	}
	return g, append([]int{x.Shape[0], x.Shape[1]}, g.spatialShape...), nil
}

func runMaxPool(n *Node, in []*Tensor) ([]*Tensor, error) {
	x := in[0]
	g, shape, err := poolSetup(n, x, true, Float32, Uint8, Int8)
	if err != nil {
		return nil, err
	}
	y := New(x.DType, shape...)
	var idx []int64
	var outs []*Tensor
	if nnOutputs(n) == 2 {
		it := New(Int64, shape...)
		idx = it.I64
		outs = []*Tensor{y, it}
	} else {
		outs = []*Tensor{y}
	}
	planes := x.Shape[0] * x.Shape[1]
	colMajor := n.Int("storage_order", 0) == 1
	switch x.DType {
	case Float32:
		if idx == nil && g.dH == 1 && g.dW == 1 {
			nnMaxPoolF32(haveAVX2FMA, &g, planes, x.F32, y.F32)
			break
		}
		nnMaxPool(&g, planes, x.F32, y.F32, idx, colMajor, float32(math.Inf(-1)))
	case Uint8:
		nnMaxPool(&g, planes, x.U8, y.U8, idx, colMajor, 0)
	case Int8:
		nnMaxPool(&g, planes, x.I8, y.I8, idx, colMajor, math.MinInt8)
	}
	return outs, nil
}

// nnMaxPool computes the window maxima of each plane, and the flat index of
// each maximum over the whole input when idx is not nil: row major, or
// with the spatial dimensions column major when colMajor is set.
func nnMaxPool[T float32 | uint8 | int8](g *nnGeom, planes int, x, y []T, idx []int64, colMajor bool, lowest T) {
	inHW, outHW := g.inH*g.inW, g.outH*g.outW
	for pl := 0; pl < planes; pl++ {
		xp := x[pl*inHW : (pl+1)*inHW]
		yp := y[pl*outHW : (pl+1)*outHW]
		o := 0
		for oh := 0; oh < g.outH; oh++ {
			h0 := oh*g.sH - g.padT
			for ow := 0; ow < g.outW; ow++ {
				w0 := ow*g.sW - g.padL
				best, bi, bh, bw := lowest, -1, 0, 0
				for ki := 0; ki < g.kH; ki++ {
					ih := h0 + ki*g.dH
					if ih < 0 || ih >= g.inH {
						continue
					}
					row := xp[ih*g.inW : (ih+1)*g.inW]
					for kj := 0; kj < g.kW; kj++ {
						iw := w0 + kj*g.dW
						if iw < 0 || iw >= g.inW {
							continue
						}
						// The first element wins a tie; NaN never wins
						// unless it is the first.
						if v := row[iw]; bi < 0 || v > best {
							best, bi, bh, bw = v, ih*g.inW+iw, ih, iw
						}
					}
				}
				yp[o] = best
				if idx != nil {
					flat := bh*g.inW + bw
					if colMajor {
						flat = bw*g.inH + bh
					}
					idx[pl*outHW+o] = int64(pl*inHW + flat)
				}
				o++
			}
		}
	}
}

// nnInterior returns the output positions [lo, hi) whose window of k
// taps at dilation 1, starting at o*s - pad for o in [0, out), lies
// inside [0, in).
func nnInterior(out, s, pad, k, in int) (lo, hi int) {
	lo = min(out, (pad+s-1)/s)
	if in-k+pad < 0 {
		return lo, lo
	}
	hi = min(out, (in-k+pad)/s+1)
	return lo, max(lo, hi)
}

// nnMaxPoolF32 is nnMaxPool for float32 at dilation 1 without indices:
// the windows inside the input go to maxPoolRows, a row of outputs at a
// time (with the AVX2 kernel if simd is set, only where haveAVX2FMA), the
// ones that reach into the padding to nnMaxPoolAt.
func nnMaxPoolF32(simd bool, g *nnGeom, planes int, x, y []float32) {
	inHW, outHW := g.inH*g.inW, g.outH*g.outW
	ohLo, ohHi := nnInterior(g.outH, g.sH, g.padT, g.kH, g.inH)
	owLo, owHi := nnInterior(g.outW, g.sW, g.padL, g.kW, g.inW)
	if owLo >= owHi {
		ohLo, ohHi = 0, 0
	}
	for pl := 0; pl < planes; pl++ {
		xp := x[pl*inHW : (pl+1)*inHW]
		yp := y[pl*outHW : (pl+1)*outHW]
		for oh := 0; oh < g.outH; oh++ {
			row := yp[oh*g.outW : (oh+1)*g.outW]
			if oh < ohLo || oh >= ohHi {
				for ow := range row {
					row[ow] = nnMaxPoolAt(g, xp, oh, ow)
				}
				continue
			}
			for ow := 0; ow < owLo; ow++ {
				row[ow] = nnMaxPoolAt(g, xp, oh, ow)
			}
			for ow := owHi; ow < g.outW; ow++ {
				row[ow] = nnMaxPoolAt(g, xp, oh, ow)
			}
		}
		if ohLo < ohHi {
			base := pl*inHW + (ohLo*g.sH-g.padT)*g.inW + owLo*g.sW - g.padL
			maxPoolRows(simd, yp[ohLo*g.outW+owLo:], g.outW, ohHi-ohLo, owHi-owLo,
				x, base, g.sH*g.inW, g.inW, g.kH, g.kW, g.sW)
		}
	}
}

// nnMaxPoolAt is the output (oh, ow) of nnMaxPool on the plane xp,
// without its index.
func nnMaxPoolAt(g *nnGeom, xp []float32, oh, ow int) float32 {
	h0, w0 := oh*g.sH-g.padT, ow*g.sW-g.padL
	best, found := float32(math.Inf(-1)), false
	for ki := 0; ki < g.kH; ki++ {
		ih := h0 + ki*g.dH
		if ih < 0 || ih >= g.inH {
			continue
		}
		row := xp[ih*g.inW : (ih+1)*g.inW]
		for kj := 0; kj < g.kW; kj++ {
			iw := w0 + kj*g.dW
			if iw < 0 || iw >= g.inW {
				continue
			}
			if v := row[iw]; !found || v > best {
				best, found = v, true
			}
		}
	}
	return best
}

// maxPoolRows computes rows rows of n max-pooling outputs whose windows
// lie inside x: output o of row r (at y[r*ldy+o]) is the maximum of the
// kh x kw window with rows ldx apart starting at x[base+r*xstep+o*s], in
// the order and with the tie and NaN rules of nnMaxPool. With simd, the
// rows whose last group of eight windows stays inside x run the AVX2
// kernels (strides 1 and 2; 2x2 windows at stride 2 have their own).
func maxPoolRows(simd bool, y []float32, ldy, rows, n int, x []float32, base, xstep, ldx, kh, kw, s int) {
	if simd && (s == 1 || s == 2) {
		// The kernel reads every window of a row's last group of eight in
		// full: up to 8*s*groups + kw - 2 past the row's start, (kh-1)*ldx
		// further down.
		reach := (kh-1)*ldx + 8*s*((n+7)/8) + kw - 2
		vec := rows
		for vec > 0 && base+(vec-1)*xstep+reach >= len(x) {
			vec--
		}
		if vec > 0 {
			_ = y[(vec-1)*ldy+n-1]
			if kh == 2 && kw == 2 && s == 2 {
				maxPool2x2AVX(&y[0], ldy, vec, n, &x[base], xstep, ldx)
			} else {
				maxPoolAVX(&y[0], ldy, vec, n, &x[base], xstep, ldx, kh, kw, s)
			}
		}
		y, rows, base = y[min(len(y), vec*ldy):], rows-vec, base+vec*xstep
	}
	for r := 0; r < rows; r++ {
		yr := y[r*ldy : r*ldy+n]
		for o := range yr {
			p := base + r*xstep + o*s
			best := x[p]
			for _, v := range x[p+1 : p+kw] {
				if v > best {
					best = v
				}
			}
			for ki := 1; ki < kh; ki++ {
				for _, v := range x[p+ki*ldx : p+ki*ldx+kw] {
					if v > best {
						best = v
					}
				}
			}
			yr[o] = best
		}
	}
}

func runAveragePool(n *Node, in []*Tensor) ([]*Tensor, error) {
	x := in[0]
	g, shape, err := poolSetup(n, x, false, Float32)
	if err != nil {
		return nil, err
	}
	includePad := n.Int("count_include_pad", 0) == 1
	y := New(Float32, shape...)
	planes := x.Shape[0] * x.Shape[1]
	inHW, outHW := g.inH*g.inW, g.outH*g.outW
	// Windows inside the input (AveragePool has no dilations) are summed
	// without bounds tests, in the same order.
	ohLo, ohHi := nnInterior(g.outH, g.sH, g.padT, g.kH, g.inH)
	owLo, owHi := nnInterior(g.outW, g.sW, g.padL, g.kW, g.inW)
	area := float32(g.kH * g.kW)
	for pl := 0; pl < planes; pl++ {
		xp := x.F32[pl*inHW : (pl+1)*inHW]
		yp := y.F32[pl*outHW : (pl+1)*outHW]
		o := 0
		for oh := 0; oh < g.outH; oh++ {
			h0 := oh*g.sH - g.padT
			for ow := 0; ow < g.outW; ow++ {
				w0 := ow*g.sW - g.padL
				if oh >= ohLo && oh < ohHi && ow >= owLo && ow < owHi {
					var sum float32
					for ki := 0; ki < g.kH; ki++ {
						for _, v := range xp[(h0+ki)*g.inW+w0 : (h0+ki)*g.inW+w0+g.kW] {
							sum += v
						}
					}
					yp[o] = sum / area
					o++
					continue
				}
				var sum float32
				count, padded := 0, 0
				for ki := 0; ki < g.kH; ki++ {
					ih := h0 + ki*g.dH
					if ih < -g.padT || ih >= g.inH+g.padB {
						continue
					}
					inRow := ih >= 0 && ih < g.inH
					for kj := 0; kj < g.kW; kj++ {
						iw := w0 + kj*g.dW
						if iw < -g.padL || iw >= g.inW+g.padR {
							continue
						}
						padded++
						if inRow && iw >= 0 && iw < g.inW {
							sum += xp[ih*g.inW+iw]
							count++
						}
					}
				}
				div := count
				if includePad {
					div = padded
				}
				if div > 0 {
					yp[o] = sum / float32(div)
				}
				o++
			}
		}
	}
	return []*Tensor{y}, nil
}

func checkGlobalPool(n *Node) error {
	if err := nnInputs(n, 1, 1); err != nil {
		return err
	}
	if nnOutputs(n) != 1 {
		return n.Errorf("has %d outputs, want 1", nnOutputs(n))
	}
	return nil
}

// globalPoolSetup validates X (N x C x any spatial dims) and returns the
// number of planes, the plane size and the N x C x 1 x ... output.
func globalPoolSetup(n *Node, x *Tensor) (planes, size int, y *Tensor, err error) {
	if x == nil || x.DType != Float32 || len(x.Shape) < 3 {
		return 0, 0, nil, n.Errorf("input X must be a float32 tensor of rank 3 or more (N x C x spatial)")
	}
	shape := make([]int, len(x.Shape))
	for i := range shape {
		shape[i] = 1
	}
	shape[0], shape[1] = x.Shape[0], x.Shape[1]
	return x.Shape[0] * x.Shape[1], Size(x.Shape[2:]), New(Float32, shape...), nil
}

func runGlobalAveragePool(n *Node, in []*Tensor) ([]*Tensor, error) {
	planes, size, y, err := globalPoolSetup(n, in[0])
	if err != nil {
		return nil, err
	}
	for pl := 0; pl < planes; pl++ {
		var sum float32
		for _, v := range in[0].F32[pl*size : (pl+1)*size] {
			sum += v
		}
		y.F32[pl] = sum / float32(size)
	}
	return []*Tensor{y}, nil
}

func runGlobalMaxPool(n *Node, in []*Tensor) ([]*Tensor, error) {
	planes, size, y, err := globalPoolSetup(n, in[0])
	if err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, n.Errorf("input X of shape %s has empty spatial dimensions", ShapeString(in[0].Shape))
	}
	for pl := 0; pl < planes; pl++ {
		p := in[0].F32[pl*size : (pl+1)*size]
		best := p[0]
		for _, v := range p[1:] {
			if v > best {
				best = v
			}
		}
		y.F32[pl] = best
	}
	return []*Tensor{y}, nil
}

func checkBatchNorm(n *Node) error {
	if err := nnInputs(n, 5, 5); err != nil {
		return err
	}
	if tm := n.Int("training_mode", 0); tm != 0 {
		return fmt.Errorf("%w: %w", n.Errorf("attribute training_mode: %d is not supported (inference only)", tm), ErrUnsupported)
	}
	if k := nnOutputs(n); k != 1 {
		return n.Errorf("has %d outputs; only inference mode (one output, Y) is supported", k)
	}
	if n.Has("spatial") && n.Int("spatial", 1) != 1 {
		return n.Errorf("attribute spatial: only 1 is supported")
	}
	return nil
}

func runBatchNorm(n *Node, in []*Tensor) ([]*Tensor, error) {
	x := in[0]
	if x == nil || x.DType != Float32 || len(x.Shape) < 2 {
		return nil, n.Errorf("input X must be a float32 tensor of rank 2 or more (N x C x ...)")
	}
	C := x.Shape[1]
	for i, name := range []string{"scale", "B", "input_mean", "input_var"} {
		p := in[i+1]
		if p == nil || p.DType != Float32 || len(p.Shape) != 1 || p.Shape[0] != C {
			got := "missing"
			if p != nil {
				got = fmt.Sprintf("%s %s", p.DType, ShapeString(p.Shape))
			}
			return nil, n.Errorf("input %s must be a float32 vector of %d elements (the channels of X), got %s", name, C, got)
		}
	}
	eps := n.Float("epsilon", 1e-5)
	scale, bias, mean, variance := in[1].F32, in[2].F32, in[3].F32, in[4].F32
	y := New(Float32, x.Shape...)
	inner := Size(x.Shape[2:])
	for img := 0; img < x.Shape[0]; img++ {
		for c := 0; c < C; c++ {
			k := scale[c] / float32(math.Sqrt(float64(variance[c]+eps)))
			off := bias[c] - mean[c]*k
			base := (img*C + c) * inner
			src, dst := x.F32[base:base+inner], y.F32[base:base+inner]
			for i, v := range src {
				dst[i] = v*k + off
			}
		}
	}
	return []*Tensor{y}, nil
}
