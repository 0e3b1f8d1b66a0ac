package interp

import (
	"sync"
)

// dequantized is a constant the loader computed with DequantizeLinear
// node (a weight of a model in QDQ form): the quantized tensor, its scale
// and zero point (nil: none) along axis.
type dequantized struct {
	node         *Node
	x, scale, zp *Tensor
	axis         int
}

// args are the node's inputs.
func (d *dequantized) args() []*Tensor {
	if d.zp == nil {
		return []*Tensor{d.x, d.scale}
	}
	return []*Tensor{d.x, d.scale, d.zp}
}

// fuseQDQ runs in integers each Gemm, MatMul and Conv (2-D or 1-D, group
// 1) whose data input is dequantized per tensor from uint8 or int8 by a
// DequantizeLinear that nothing else reads, and whose weight is a
// constant the loader dequantized from 8 bits, per tensor or per output
// column (channel for Conv): the QDQ form of a statically quantized
// model. The step then reads the quantized input itself (a Conv lays it
// out by im2col, padding with its zero point), multiplies it with the
// packed 8-bit weight by qgemm into int32, and scales the sums to float32
// (adding the bias); the DequantizeLinear step is dropped. Integer sums
// are exact, so the results differ from the float product only by its
// rounding. The step no longer reads the dequantized weight, which
// dropUnread then frees: the model holds the weight in 8 bits. A Conv
// keeps the epilogue fuse gives it (b.qconv tells fuse which it is).
func (b *builder) fuseQDQ() {
	m := b.m
	if len(b.dq) == 0 {
		return
	}
	reads := make([]int, len(b.names))
	producer := make([]int, len(b.names))
	for i, st := range m.steps {
		for _, s := range st.in {
			if s >= 0 {
				reads[s]++
			}
		}
		for _, s := range st.out {
			if s >= 0 {
				producer[s] = i
			}
		}
	}
	for _, s := range m.outSlot {
		reads[s] += 2 // the caller reads it too
	}
	drop := make([]bool, len(m.steps))
	fused := false
	for i := range m.steps {
		st := &m.steps[i]
		op := st.node.Proto.GetOpType()
		if op != "Gemm" && op != "MatMul" && op != "Conv" || len(st.in) < 2 {
			continue
		}
		a := st.in[0]
		if a < 0 || m.consts[a] != nil || b.input[a] || reads[a] != 1 {
			continue
		}
		d := &m.steps[producer[a]]
		if d.node.Proto.GetOpType() != "DequantizeLinear" || soleOutput(d) != a || d.in[0] < 0 {
			continue
		}
		if op == "Conv" {
			qc := b.qConvOf(st, d)
			if qc == nil {
				continue
			}
			if b.qconv == nil {
				b.qconv = map[*Node]*qConv{}
			}
			b.qconv[st.node] = qc
			st.run, st.release = fusedConvKernel(false, nil, nil, qc)
		} else {
			ql := b.qLinearOf(st, d)
			if ql == nil {
				continue
			}
			st.run = ql.run
		}
		drop[producer[a]] = true
		st.in[0], st.in[1] = d.in[0], -1
		fused = true
	}
	if !fused {
		return
	}
	steps := m.steps[:0]
	for i, st := range m.steps {
		if !drop[i] {
			steps = append(steps, st)
		}
	}
	m.steps = steps
}

// qInput is how the data input of a step run in integers (fuseQDQ)
// arrives quantized: as q with x = (q - zx) * sx.
type qInput struct {
	xType DType   // Uint8 or Int8: the type of q
	sx    *Tensor // the input's scale
	zx    *Tensor // the input's zero point (nil: none)
	za    qZero   // zx resolved
}

// qInputOf returns the quantization the DequantizeLinear step d undoes,
// or false when it is not per tensor from uint8 or int8 with constant
// parameters.
func (b *builder) qInputOf(d *step) (qInput, bool) {
	consts := b.m.consts
	if d.node.Has("block_size") || len(d.in) < 2 || d.in[1] < 0 {
		return qInput{}, false
	}
	sx := consts[d.in[1]]
	if sx == nil || sx.DType != Float32 || sx.Len() != 1 {
		return qInput{}, false
	}
	qi := qInput{sx: sx, xType: Uint8}
	if len(d.in) > 2 && d.in[2] >= 0 {
		zx := consts[d.in[2]]
		if zx == nil || zx.Len() != 1 || zx.DType != Uint8 && zx.DType != Int8 {
			return qInput{}, false
		}
		qi.zx, qi.xType = zx, zx.DType
		qi.za = qZero{all: int32(quantElem(zx, 0))}
	}
	return qi, true
}

// dequantize returns q dequantized as the dropped DequantizeLinear step
// did, its errors reported as node n's.
func (qi *qInput) dequantize(n *Node, q *Tensor) (*Tensor, error) {
	args := []*Tensor{q, qi.sx}
	if qi.zx != nil {
		args = append(args, qi.zx)
	}
	x, err := runDequantizeLinear(n, args)
	if err != nil {
		return nil, err
	}
	return x[0], nil
}

// qLinear is a Gemm or MatMul step run in integers (fuseQDQ).
type qLinear struct {
	qInput
	gemm    bool
	k, n    int
	trans   bool        // the weight is n x k (Gemm's transB)
	w       dequantized // the weight, less its tensor (b holds it)
	wType   DType       // the weight's type
	b       []int8      // the weight, packed by qPackB
	off     []int32     // its column offsets
	scale   []float32
	bias    []float32 // nil when none
	unfused Kernel    // the step's own kernel, for an input of another shape
	pool    sync.Pool // *qLinearScratch
}

// qLinearScratch holds the buffers of one qLinear run.
type qLinearScratch struct {
	a   []int16
	rs  []int32
	acc []int32
}

// qLinearOf returns the integer kernel for step st, whose data input is
// dequantized by step d, or nil when the step or its operands are not of
// the form fuseQDQ handles.
func (b *builder) qLinearOf(st, d *step) *qLinear {
	consts := b.m.consts
	qi, ok := b.qInputOf(d)
	if !ok {
		return nil
	}
	ql := &qLinear{qInput: qi, unfused: st.run}
	w, ok := b.dq[st.in[1]]
	if !ok || len(w.x.Shape) != 2 || w.x.DType != Int8 && w.x.DType != Uint8 {
		return nil
	}
	// The weight as k x n, and the axis of its output columns.
	k, n, col, trans := w.x.Shape[0], w.x.Shape[1], 1, false
	if ql.gemm = st.node.Proto.GetOpType() == "Gemm"; ql.gemm {
		if st.node.Int("transA", 0) != 0 || st.node.Float("alpha", 1) != 1 {
			return nil
		}
		if trans = st.node.Int("transB", 0) == 1; trans {
			k, n, col = n, k, 0
		}
	}
	perColumn := w.scale.Len() != 1
	if perColumn && (w.axis != col || w.scale.Len() != n) {
		return nil
	}
	if w.zp != nil && w.zp.Len() != w.scale.Len() {
		return nil
	}
	if ql.gemm && len(st.in) > 2 && st.in[2] >= 0 {
		c := consts[st.in[2]]
		if c == nil || c.DType != Float32 || st.node.Float("beta", 1) != 1 {
			return nil
		}
		switch {
		case c.Len() == 1:
			ql.bias = make([]float32, n)
			for j := range ql.bias {
				ql.bias[j] = c.F32[0]
			}
		case c.Len() == n && (len(c.Shape) == 1 || len(c.Shape) == 2 && c.Shape[0] == 1):
			ql.bias = c.F32
		default:
			return nil
		}
	}
	wkn := w.x
	if trans {
		wkn = transpose8(w.x)
	}
	var zw qZero
	if w.zp != nil {
		var err error
		if zw, err = qZeroPoints(w.zp, []int{k, n}, false); err != nil {
			return nil
		}
	}
	ql.k, ql.n, ql.trans, ql.wType = k, n, trans, w.x.DType
	ql.b, ql.off = make([]int8, qPackedSize(k, n)), make([]int32, qPackedCols(n))
	qPackBOf(haveAVX2FMA, ql.b, ql.off, wkn, 0, k, n, &zw, 0)
	ql.scale = qScales(ql.sx, w.scale, n)
	// The packed copy is the weight: fallback unpacks it, so that the
	// model does not hold the weight twice.
	ql.w = w
	ql.w.x = nil
	return ql
}

// qScales returns the scales of n output columns or channels: the input's
// scale sx times the weight's scale sw, per tensor or one per output.
func qScales(sx, sw *Tensor, n int) []float32 {
	s := make([]float32, n)
	for j := range s {
		if sw.Len() == 1 {
			s[j] = sx.F32[0] * sw.F32[0]
		} else {
			s[j] = sx.F32[0] * sw.F32[j]
		}
	}
	return s
}

// transpose8 returns the transpose of the 8-bit matrix t.
func transpose8(t *Tensor) *Tensor {
	r, c := t.Shape[0], t.Shape[1]
	out := New(t.DType, c, r)
	if t.DType == Int8 {
		transpose2D(out.I8, t.I8, r, c)
	} else {
		transpose2D(out.U8, t.U8, r, c)
	}
	return out
}

// run computes the step from its quantized input in[0]; in[1] is nil (the
// weight is packed) and in[2] Gemm's bias, if any. An input of a shape
// the fused kernel does not take goes to the unfused one, so that results
// and errors are the node's own.
func (ql *qLinear) run(n *Node, in []*Tensor) ([]*Tensor, error) {
	q := in[0]
	if q == nil {
		return ql.fallback(n, in)
	}
	rank := len(q.Shape)
	if q.DType != ql.xType || rank < 2 || ql.gemm && rank != 2 || q.Shape[rank-1] != ql.k {
		return ql.fallback(n, in)
	}
	rows := q.Len() / ql.k
	k2 := (ql.k + 1) / 2
	lda := 2 * k2
	sc, _ := ql.pool.Get().(*qLinearScratch)
	if sc == nil {
		sc = new(qLinearScratch)
	}
	defer ql.pool.Put(sc)
	ap, rs, acc := qGrow(&sc.a, rows*lda), qGrow(&sc.rs, rows), qGrow(&sc.acc, rows*ql.n)
	qPackAOf(haveAVX2FMA, ap, rs, q, 0, rows, ql.k, &ql.za, 0)
	qgemm(haveAVX2FMA, rows, ql.n, k2, ap, lda, rs, ql.b, ql.off, acc)
	shape := append(append(make([]int, 0, rank), q.Shape[:rank-1]...), ql.n)
	y := New(Float32, shape...)
	for i := range rows {
		yr, ar := y.F32[i*ql.n:(i+1)*ql.n], acc[i*ql.n:(i+1)*ql.n]
		if ql.bias != nil {
			for j, s := range ql.scale {
				yr[j] = float32(ar[j])*s + ql.bias[j]
			}
			continue
		}
		for j, s := range ql.scale {
			yr[j] = float32(ar[j]) * s
		}
	}
	return []*Tensor{y}, nil
}

// fallback dequantizes in[0] and the weight and runs the step's own
// kernel.
func (ql *qLinear) fallback(n *Node, in []*Tensor) ([]*Tensor, error) {
	x, err := ql.dequantize(n, in[0])
	if err != nil {
		return nil, err
	}
	d := ql.w
	if d.x = qUnpackB(ql.wType, ql.b, ql.k, ql.n); ql.trans {
		d.x = transpose8(d.x)
	}
	w, err := runDequantizeLinear(d.node, d.args())
	if err != nil {
		return nil, err
	}
	args := append([]*Tensor{x, w[0]}, in[2:]...)
	return ql.unfused(n, args)
}

// qConv is a Conv step run in integers (fuseQDQ): its weight is held as
// the A operand of qgemm, so that each image's output channels are the
// weight times the im2col matrix of its quantized input packed as B.
type qConv struct {
	qInput
	w      dequantized // the weight, less its tensor (a holds it)
	wType  DType       // the weight's type
	wShape []int       // its shape, M x C x kernel
	zw     qZero       // its zero points
	a      []int16     // the weight as M x K, packed by qPackA
	rs     []int32     // its row sums
	scale  []float32   // the scale of each output channel
	pool   sync.Pool   // *qConvScratch
}

// qConvScratch holds the buffers of one goroutine of a qConv run.
type qConvScratch struct {
	u8  []uint8 // the im2col matrix of a uint8 input
	i8  []int8  // of an int8 input
	b   []int8  // either, packed by qPackB
	off []int32 // its column offsets
	acc []int32 // the product
}

// qConvOf returns the integer kernel of the Conv step st, whose data
// input is dequantized by step d, or nil when the step or its operands
// are not of the form fuseQDQ handles.
func (b *builder) qConvOf(st, d *step) *qConv {
	if st.node.Int("group", 1) != 1 {
		return nil
	}
	qi, ok := b.qInputOf(d)
	if !ok {
		return nil
	}
	w, ok := b.dq[st.in[1]]
	if !ok || len(w.x.Shape) < 3 || w.x.Len() == 0 || w.x.DType != Int8 && w.x.DType != Uint8 {
		return nil
	}
	m := w.x.Shape[0]
	k := w.x.Len() / m
	if w.scale.Len() != 1 && (w.axis != 0 || w.scale.Len() != m) {
		return nil
	}
	if w.zp != nil && w.zp.Len() != w.scale.Len() {
		return nil
	}
	zw, err := qZeroPoints(w.zp, []int{m, k}, true)
	if err != nil {
		return nil
	}
	qc := &qConv{qInput: qi, w: w, wType: w.x.DType, wShape: w.x.Shape, zw: zw, scale: qScales(qi.sx, w.scale, m)}
	qc.a, qc.rs = make([]int16, m*2*((k+1)/2)), make([]int32, m)
	qPackAOf(haveAVX2FMA, qc.a, qc.rs, w.x, 0, m, k, &zw, 0)
	qc.w.x = nil // fallback unpacks a
	return qc
}

// setup validates the inputs of the Conv node n for the integer kernel:
// in[0] is the quantized input, in[1] nil (the weight is packed) and
// in[2] the bias, if any. An input of another type or shape goes to
// fallback, so that results and errors are the node's own.
func (q *qConv) setup(n *Node, in []*Tensor) (convOp, error) {
	x := in[0]
	if x == nil || x.DType != q.xType {
		return q.fallback(n, in)
	}
	// convSetup reads the shapes of X and W only.
	args := append([]*Tensor{{DType: Float32, Shape: x.Shape}, {DType: Float32, Shape: q.wShape}}, in[2:]...)
	c, err := convSetup(n, args)
	if err != nil {
		return q.fallback(n, in)
	}
	c.q, c.qx = q, x
	return c, nil
}

// fallback dequantizes in[0] and the weight for the float32 kernel.
func (q *qConv) fallback(n *Node, in []*Tensor) (convOp, error) {
	x, err := q.dequantize(n, in[0])
	if err != nil {
		return convOp{}, err
	}
	d := q.w
	d.x = qUnpackA(q.wType, q.a, q.wShape, &q.zw)
	w, err := runDequantizeLinear(d.node, d.args())
	if err != nil {
		return convOp{}, err
	}
	return convSetup(n, append([]*Tensor{x, w[0]}, in[2:]...))
}

// scratch returns buffers from the pool, or new ones.
func (q *qConv) scratch() *qConvScratch {
	if sc, ok := q.pool.Get().(*qConvScratch); ok {
		return sc
	}
	return new(qConvScratch)
}

// image sets y (M x outH*outW) to the convolution of image img of c: the
// packed weight times the im2col matrix of the image's quantized input,
// packed by qPackB, by qgemm; then the sums scaled to float32, plus the
// bias.
func (q *qConv) image(c *convOp, img int, y []float32, sc *qConvScratch) {
	g := &c.g
	inHW, outHW, k := g.inH*g.inW, g.outH*g.outW, c.C*g.kH*g.kW
	b, off := qGrow(&sc.b, qPackedSize(k, outHW)), qGrow(&sc.off, qPackedCols(outHW))
	lo, hi := img*c.C*inHW, (img+1)*c.C*inHW
	if c.qx.DType == Uint8 {
		qPackCols(g, c.qx.U8[lo:hi], c.C, &sc.u8, 128, &q.za, b, off)
	} else {
		qPackCols(g, c.qx.I8[lo:hi], c.C, &sc.i8, 0, &q.za, b, off)
	}
	acc := qGrow(&sc.acc, c.M*outHW)
	k2 := (k + 1) / 2
	qgemm(haveAVX2FMA, c.M, outHW, k2, q.a, 2*k2, q.rs, b, off, acc)
	for m, s := range q.scale {
		var bias float32
		if c.bias != nil {
			bias = c.bias[m]
		}
		qScaleInto(haveAVX2FMA, y[m*outHW:(m+1)*outHW], acc[m*outHW:(m+1)*outHW], s, bias)
	}
}

// qPackCols packs the im2col matrix of x (C channels, quantized with the
// one zero point z, which fills the padding) into dst and off by qPackB
// with bias, building the matrix in *col unless g is pointwise.
func qPackCols[T uint8 | int8](g *nnGeom, x []T, C int, col *[]T, bias int32, z *qZero, dst []int8, off []int32) {
	k, outHW := C*g.kH*g.kW, g.outH*g.outW
	src := x
	if !g.pointwise() {
		src = qGrow(col, k*outHW)
		nnIm2col(g, x, C, src, T(z.all))
	}
	qPackB(haveAVX2FMA, dst, off, src, k, outHW, bias, z, 0)
}

// qScaleInto sets dst[i] to float32(src[i])*s + b, eight at a time with
// the AVX2 kernel if simd is set (only where haveAVX2FMA).
func qScaleInto(simd bool, dst []float32, src []int32, s, b float32) {
	src = src[:len(dst)]
	if simd && len(dst) >= 8 {
		v := len(dst) &^ 7
		qScaleAVX(&dst[0], &src[0], v, s, b)
		dst, src = dst[v:], src[v:]
	}
	for i, a := range src {
		dst[i] = float32(a)*s + b
	}
}

// dropUnread frees the constants no step reads and the caller does not
// get: the 8-bit weights that DequantizeLinear widened at load, and the
// widened weights that fuseQDQ packed.
func (b *builder) dropUnread() {
	m := b.m
	read := make([]bool, len(m.consts))
	for _, st := range m.steps {
		for _, s := range st.in {
			if s >= 0 {
				read[s] = true
			}
		}
	}
	for _, s := range m.outSlot {
		read[s] = true
	}
	for s := range m.consts {
		if !read[s] {
			m.consts[s] = nil
		}
	}
}
