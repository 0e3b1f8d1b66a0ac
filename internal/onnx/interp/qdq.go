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

// fuseQDQ runs in integers each Gemm and MatMul whose data input is
// dequantized per tensor from uint8 or int8 by a DequantizeLinear that
// nothing else reads, and whose weight is a constant the loader
// dequantized from 8 bits, per tensor or per output column: the QDQ form
// of a statically quantized model. The step then reads the quantized
// input itself, multiplies it with the packed 8-bit weight by qgemm into
// int32, and scales the sums to float32 (adding Gemm's bias); the
// DequantizeLinear step is dropped. Integer sums are exact, so the results
// differ from the float product only by its rounding. The step no longer
// reads the dequantized weight, which dropUnread then frees: the model
// holds the weight in 8 bits.
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
		if op := st.node.Proto.GetOpType(); op != "Gemm" && op != "MatMul" || len(st.in) < 2 {
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
		ql := b.qLinearOf(st, d)
		if ql == nil {
			continue
		}
		drop[producer[a]] = true
		st.in[0], st.in[1] = d.in[0], -1
		st.run = ql.run
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

// qLinear is a Gemm or MatMul step run in integers (fuseQDQ): its data
// input arrives quantized, as q with x = (q - zx) * sx.
type qLinear struct {
	gemm    bool
	xType   DType   // Uint8 or Int8: the type of q
	sx      *Tensor // the input's scale
	zx      *Tensor // the input's zero point (nil: none)
	za      qZero   // zx resolved
	k, n    int
	w       dequantized // the weight
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
	if d.node.Has("block_size") || len(d.in) < 2 || d.in[1] < 0 {
		return nil
	}
	sx := consts[d.in[1]]
	if sx == nil || sx.DType != Float32 || sx.Len() != 1 {
		return nil
	}
	ql := &qLinear{sx: sx, xType: Uint8, unfused: st.run}
	if len(d.in) > 2 && d.in[2] >= 0 {
		zx := consts[d.in[2]]
		if zx == nil || zx.Len() != 1 || zx.DType != Uint8 && zx.DType != Int8 {
			return nil
		}
		ql.zx, ql.xType = zx, zx.DType
		ql.za = qZero{all: int32(quantElem(zx, 0))}
	}
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
	ql.k, ql.n, ql.w = k, n, w
	ql.b, ql.off = make([]int8, qPackedSize(k, n)), make([]int32, qPackedCols(n))
	qPackBOf(ql.b, ql.off, wkn, 0, k, n, &zw, 0)
	ql.scale = make([]float32, n)
	for j := range ql.scale {
		s := w.scale.F32[0]
		if perColumn {
			s = w.scale.F32[j]
		}
		ql.scale[j] = sx.F32[0] * s
	}
	return ql
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
	dq := []*Tensor{in[0], ql.sx}
	if ql.zx != nil {
		dq = append(dq, ql.zx)
	}
	x, err := runDequantizeLinear(n, dq)
	if err != nil {
		return nil, err
	}
	w, err := runDequantizeLinear(ql.w.node, ql.w.args())
	if err != nil {
		return nil, err
	}
	args := append([]*Tensor{x[0], w[0]}, in[2:]...)
	return ql.unfused(n, args)
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
