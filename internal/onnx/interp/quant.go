package interp

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"
)

// addQuantOps registers QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear and MatMulInteger.
func addQuantOps(t ops) {
	t["DynamicQuantizeLinear"] = Op{MinOpset: 11, MaxOpset: MaxOpset, Check: checkDynamicQuantizeLinear, Run: runDynamicQuantizeLinear, Fresh: true}
	t["QuantizeLinear"] = Op{MinOpset: 10, MaxOpset: 17, Check: checkQuantLinear, Run: runQuantizeLinear, Fresh: true}
	t["DequantizeLinear"] = Op{MinOpset: 10, MaxOpset: 17, Check: checkQuantLinear, Run: runDequantizeLinear, Fresh: true}
	t["MatMulInteger"] = Op{MinOpset: 10, MaxOpset: 17, Check: checkMatMulInteger, Run: runMatMulInteger, Prepare: prepareMatMulInteger, Fresh: true}
}

func checkDynamicQuantizeLinear(n *Node) error {
	if err := nnInputs(n, 1, 1); err != nil {
		return err
	}
	if nnOutputs(n) != 3 {
		return n.Errorf("has %d outputs, want 3 (y, y_scale, y_zero_point)", nnOutputs(n))
	}
	return nil
}

// runDynamicQuantizeLinear quantizes x to uint8 over its own range widened
// to hold 0, as the operator's definition computes in float32:
// y_scale = (max(x, 0) - min(x, 0)) / 255, y_zero_point =
// round_half_to_even(clip(-min(x, 0) / y_scale, 0, 255)), and y =
// saturate(round_half_to_even(x / y_scale) + y_zero_point). An input of
// zeros only (y_scale 0) gives zeros, with zero point 0.
func runDynamicQuantizeLinear(n *Node, in []*Tensor) ([]*Tensor, error) {
	x := in[0]
	if x == nil || x.DType != Float32 {
		return nil, n.Errorf("input x must be float32")
	}
	var lo, hi float32
	for _, v := range x.F32 {
		if v != v {
			return nil, n.Errorf("input x holds NaN: it has no range to quantize over")
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	scale := (hi - lo) / 255
	y := New(Uint8, x.Shape...)
	zp := New(Uint8)
	if scale > 0 && !math.IsInf(float64(scale), 0) {
		z := math.RoundToEven(max(0, min(255, float64(-lo/scale))))
		zp.U8[0] = uint8(z)
		quantizeInto(haveAVX2FMA, y.U8, x.F32, []float32{scale}, zp.U8, 1, 1, x.Len(), 0, 255)
	} else if scale != 0 {
		return nil, n.Errorf("input x spans [%v, %v], beyond float32's range of a scale", lo, hi)
	}
	s := New(Float32)
	s.F32[0] = scale
	return []*Tensor{y, s, zp}, nil
}

func checkQuantLinear(n *Node) error {
	if err := nnInputs(n, 2, 3); err != nil {
		return err
	}
	if nnOutputs(n) != 1 {
		return n.Errorf("has %d outputs, want 1", nnOutputs(n))
	}
	return nil
}

// quantParams validates the scale and zero point of a (de)quantization of
// x and returns how x splits around the quantization axis: outer blocks of
// d channels of inner elements each. A per-tensor scale gives d = 1.
func quantParams(n *Node, x, scale, zp *Tensor, scaleName, zpName string) (outer, d, inner int, err error) {
	if scale == nil || scale.DType != Float32 {
		return 0, 0, 0, n.Errorf("input %s must be float32", scaleName)
	}
	if zp != nil && !qSameShape(zp.Shape, scale.Shape) && (zp.Len() != 1 || scale.Len() != 1) {
		return 0, 0, 0, n.Errorf("input %s of shape %s must have the shape of %s, %s",
			zpName, ShapeString(zp.Shape), scaleName, ShapeString(scale.Shape))
	}
	if len(scale.Shape) == 0 || len(scale.Shape) == 1 && scale.Shape[0] == 1 {
		return 1, 1, x.Len(), nil
	}
	if len(scale.Shape) != 1 {
		return 0, 0, 0, n.Errorf("input %s must be a scalar or a vector, got shape %s", scaleName, ShapeString(scale.Shape))
	}
	axis := int(n.Int("axis", 1))
	r := len(x.Shape)
	if axis < -r || axis >= r {
		return 0, 0, 0, n.Errorf("attribute axis %d is out of range for input of rank %d", axis, r)
	}
	if axis < 0 {
		axis += r
	}
	if scale.Shape[0] != x.Shape[axis] {
		return 0, 0, 0, n.Errorf("input %s has %d elements, want %d (dimension %d of the input, shape %s)",
			scaleName, scale.Shape[0], x.Shape[axis], axis, ShapeString(x.Shape))
	}
	return Size(x.Shape[:axis]), x.Shape[axis], Size(x.Shape[axis+1:]), nil
}

func qSameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func runQuantizeLinear(n *Node, in []*Tensor) ([]*Tensor, error) {
	x, scale := in[0], in[1]
	var zp *Tensor
	if len(in) > 2 {
		zp = in[2]
	}
	if x == nil || x.DType != Float32 && x.DType != Int32 {
		return nil, n.Errorf("input x must be float32 or int32")
	}
	outType := Uint8
	if zp != nil {
		if zp.DType != Uint8 && zp.DType != Int8 {
			return nil, n.Errorf("input y_zero_point has type %s; only uint8 and int8 are supported", zp.DType)
		}
		outType = zp.DType
	}
	outer, d, inner, err := quantParams(n, x, scale, zp, "y_scale", "y_zero_point")
	if err != nil {
		return nil, err
	}
	xf := x.F32
	if x.DType == Int32 {
		xf = make([]float32, len(x.I32))
		for i, v := range x.I32 {
			xf[i] = float32(v)
		}
	}
	y := New(outType, x.Shape...)
	if outType == Uint8 {
		var z []uint8
		if zp != nil {
			z = zp.U8
		}
		quantizeInto(haveAVX2FMA, y.U8, xf, scale.F32, z, outer, d, inner, 0, 255)
	} else {
		quantizeInto(haveAVX2FMA, y.I8, xf, scale.F32, zp.I8, outer, d, inner, -128, 127)
	}
	return []*Tensor{y}, nil
}

// quantizeInto sets y to quantizeValue(x, s, z, lo, hi) over outer blocks
// of d channels of inner elements, with channel c's scale s = scale[c] and
// zero point z = zp[c] (0 when zp is nil): eight at a time with the AVX2
// kernel if simd is set (only where haveAVX2FMA), in Go otherwise.
func quantizeInto[T uint8 | int8](simd bool, y []T, x, scale []float32, zp []T, outer, d, inner int, lo, hi float64) {
	i := 0
	for range outer {
		for c := range d {
			s, z := scale[c], 0.0
			if zp != nil {
				z = float64(zp[c])
			}
			dst, src := y[i:i+inner], x[i:i+inner]
			if simd && inner >= 8 {
				v := inner &^ 7
				quantizeAVX(unsafe.Pointer(&dst[0]), &src[0], v, s, float32(z), float32(lo), float32(hi))
				dst, src = dst[v:], src[v:]
			}
			for j, v := range src {
				dst[j] = T(quantizeValue(v, s, z, lo, hi))
			}
			i += inner
		}
	}
}

// quantizeValue is saturate(round_half_to_even(x / s) + z) into [lo, hi];
// NaN maps to the zero point.
func quantizeValue(x, s float32, z, lo, hi float64) int {
	v := math.RoundToEven(float64(x/s)) + z
	switch {
	case math.IsNaN(v):
		v = max(lo, min(hi, z))
	case v < lo:
		v = lo
	case v > hi:
		v = hi
	}
	return int(v)
}

func runDequantizeLinear(n *Node, in []*Tensor) ([]*Tensor, error) {
	x, scale := in[0], in[1]
	var zp *Tensor
	if len(in) > 2 {
		zp = in[2]
	}
	if x == nil || x.DType != Uint8 && x.DType != Int8 && x.DType != Int32 {
		return nil, n.Errorf("input x must be uint8, int8 or int32")
	}
	if zp != nil && zp.DType != x.DType {
		return nil, n.Errorf("input x_zero_point has type %s, want %s (the type of x)", zp.DType, x.DType)
	}
	outer, d, inner, err := quantParams(n, x, scale, zp, "x_scale", "x_zero_point")
	if err != nil {
		return nil, err
	}
	y := New(Float32, x.Shape...)
	switch x.DType {
	case Uint8:
		var z []uint8
		if zp != nil {
			z = zp.U8
		}
		dequantizeInto(y.F32, x.U8, scale.F32, z, outer, d, inner)
	case Int8:
		var z []int8
		if zp != nil {
			z = zp.I8
		}
		dequantizeInto(y.F32, x.I8, scale.F32, z, outer, d, inner)
	default:
		var z []int32
		if zp != nil {
			z = zp.I32
		}
		dequantizeInto(y.F32, x.I32, scale.F32, z, outer, d, inner)
	}
	return []*Tensor{y}, nil
}

// dequantizeInto sets y to (x - z) * s over outer blocks of d channels of
// inner elements, with channel c's scale s = scale[c] and zero point
// z = zp[c] (0 when zp is nil), in float32.
func dequantizeInto[T uint8 | int8 | int32](y []float32, x []T, scale []float32, zp []T, outer, d, inner int) {
	if inner == 1 {
		// One value per channel: a row of d at a time.
		scale = scale[:d]
		for o := range outer {
			dst, src := y[o*d:(o+1)*d], x[o*d:(o+1)*d]
			for c, s := range scale {
				z := float32(0)
				if zp != nil {
					z = float32(zp[c])
				}
				dst[c] = (float32(src[c]) - z) * s
			}
		}
		return
	}
	i := 0
	for range outer {
		for c := range d {
			s, z := scale[c], float32(0)
			if zp != nil {
				z = float32(zp[c])
			}
			dst := y[i : i+inner]
			for j, v := range x[i : i+inner] {
				dst[j] = (float32(v) - z) * s
			}
			i += inner
		}
	}
}

// quantElem is element i of an integer tensor as float32.
func quantElem(t *Tensor, i int) float32 {
	switch t.DType {
	case Uint8:
		return float32(t.U8[i])
	case Int8:
		return float32(t.I8[i])
	default:
		return float32(t.I32[i])
	}
}

func checkMatMulInteger(n *Node) error {
	if err := nnInputs(n, 2, 4); err != nil {
		return err
	}
	if nnOutputs(n) != 1 {
		return n.Errorf("has %d outputs, want 1", nnOutputs(n))
	}
	return nil
}

// qOperand checks that t, the input name of a MatMulInteger node, is a
// uint8 or int8 tensor.
func qOperand(n *Node, name string, t *Tensor) error {
	if t == nil {
		return n.Errorf("input %s is missing", name)
	}
	if t.DType != Uint8 && t.DType != Int8 {
		return n.Errorf("input %s has type %s, want uint8 or int8", name, t.DType)
	}
	return nil
}

// runMatMulInteger computes a MatMulInteger node, packing B on every call.
func runMatMulInteger(n *Node, in []*Tensor) ([]*Tensor, error) {
	return matMulInteger(n, in, nil, nil)
}

// qPackedB is the B operand of a MatMulInteger node packed at load time:
// every batch matrix of b, with the zero points zp, packed by qPackB one
// after the other.
type qPackedB struct {
	b, zp *Tensor // the constants packed
	data  []int8
	off   []int32
}

// prepareMatMulInteger packs a constant B (with a constant or absent zero
// point) once, and gives the node a pool of scratch buffers for A.
func prepareMatMulInteger(n *Node, consts []*Tensor) Kernel {
	pool := new(sync.Pool)
	pb := qPrepack(n, consts)
	return func(n *Node, in []*Tensor) ([]*Tensor, error) { return matMulInteger(n, in, pb, pool) }
}

// qPrepack packs the constant B input of a MatMulInteger node and its zero
// point, or returns nil when B or its zero point is not constant or not
// valid (Run then reports the error).
func qPrepack(n *Node, consts []*Tensor) *qPackedB {
	names := n.Proto.GetInput()
	if len(consts) < 2 || consts[1] == nil {
		return nil
	}
	b := consts[1]
	var zp *Tensor
	if len(names) > 3 && names[3] != "" {
		if zp = consts[3]; zp == nil || zp.DType != b.DType {
			return nil
		}
	}
	if qOperand(n, "B", b) != nil || len(b.Shape) == 0 {
		return nil
	}
	shape := b.Shape
	if len(shape) == 1 {
		shape = []int{shape[0], 1}
	}
	z, err := qZeroPoints(zp, shape, false)
	if err != nil {
		return nil
	}
	K, N := shape[len(shape)-2], shape[len(shape)-1]
	mats, size, offs := Size(shape[:len(shape)-2]), qPackedSize(K, N), qPackedCols(N)
	pb := &qPackedB{b: b, zp: zp, data: make([]int8, mats*size), off: make([]int32, mats*offs)}
	for mat := range mats {
		qPackBOf(haveAVX2FMA, pb.data[mat*size:(mat+1)*size], pb.off[mat*offs:(mat+1)*offs], b, mat*K*N, K, N, &z, mat)
	}
	return pb
}

// matMulInteger computes a MatMulInteger node: A minus its zero points
// packed by qPackA and B packed by qPackB, multiplied by qgemm. B comes
// from pb when it was packed at load time; scratch buffers come from pool
// (nil: allocated).
func matMulInteger(n *Node, in []*Tensor, pb *qPackedB, pool *sync.Pool) ([]*Tensor, error) {
	a, b := in[0], in[1]
	var aZP, bZP *Tensor
	if len(in) > 2 {
		aZP = in[2]
	}
	if len(in) > 3 {
		bZP = in[3]
	}
	if err := qOperand(n, "A", a); err != nil {
		return nil, err
	}
	if err := qOperand(n, "B", b); err != nil {
		return nil, err
	}
	if len(a.Shape) == 0 || len(b.Shape) == 0 {
		return nil, n.Errorf("inputs A and B must have rank 1 or more, got %s and %s", ShapeString(a.Shape), ShapeString(b.Shape))
	}
	// Promote 1-D operands to matrices as MatMul does.
	aShape, bShape := a.Shape, b.Shape
	if len(aShape) == 1 {
		aShape = []int{1, aShape[0]}
	}
	if len(bShape) == 1 {
		bShape = []int{bShape[0], 1}
	}
	M, K := aShape[len(aShape)-2], aShape[len(aShape)-1]
	K2, N := bShape[len(bShape)-2], bShape[len(bShape)-1]
	if K != K2 {
		return nil, n.Errorf("inner dimensions differ: A %s, B %s", ShapeString(a.Shape), ShapeString(b.Shape))
	}
	aBatch, bBatch := aShape[:len(aShape)-2], bShape[:len(bShape)-2]
	batch, err := BroadcastShapes(aBatch, bBatch)
	if err != nil {
		return nil, n.Errorf("batch dimensions of A %s and B %s do not broadcast", ShapeString(a.Shape), ShapeString(b.Shape))
	}
	// Zero points: per tensor, per row of A, per column of B.
	var za, zb qZero
	if aZP != nil {
		if aZP.DType != a.DType {
			return nil, n.Errorf("input a_zero_point has type %s, want %s (the type of A)", aZP.DType, a.DType)
		}
		if za, err = qZeroPoints(aZP, aShape, true); err != nil {
			return nil, n.Errorf("input a_zero_point of shape %s: %v (A is %s)", ShapeString(aZP.Shape), err, ShapeString(a.Shape))
		}
	}
	if pb != nil && (pb.b != b || pb.zp != bZP) {
		pb = nil
	}
	if bZP != nil && pb == nil {
		if bZP.DType != b.DType {
			return nil, n.Errorf("input b_zero_point has type %s, want %s (the type of B)", bZP.DType, b.DType)
		}
		if zb, err = qZeroPoints(bZP, bShape, false); err != nil {
			return nil, n.Errorf("input b_zero_point of shape %s: %v (B is %s)", ShapeString(bZP.Shape), err, ShapeString(b.Shape))
		}
	}
	outShape := append(append([]int(nil), batch...), M, N)
	y := New(Int32, outShape...)
	k2 := (K + 1) / 2
	lda := 2 * k2
	aMats, bMats, nb := Size(aBatch), Size(bBatch), Size(batch)
	var sc *qScratch
	if pool != nil {
		sc, _ = pool.Get().(*qScratch)
		defer func() { pool.Put(sc) }()
	}
	if sc == nil {
		sc = new(qScratch)
	}
	ap, rs := qGrow(&sc.a, aMats*M*lda), qGrow(&sc.rs, aMats*M)
	for mat := range aMats {
		qPackAOf(haveAVX2FMA, ap[mat*M*lda:(mat+1)*M*lda], rs[mat*M:(mat+1)*M], a, mat*M*K, M, K, &za, mat)
	}
	size, offs := qPackedSize(K, N), qPackedCols(N)
	var bp []int8
	var off []int32
	if pb != nil {
		bp, off = pb.data, pb.off
	} else {
		bp, off = qGrow(&sc.b, bMats*size), qGrow(&sc.off, bMats*offs)
		for mat := range bMats {
			qPackBOf(haveAVX2FMA, bp[mat*size:(mat+1)*size], off[mat*offs:(mat+1)*offs], b, mat*K*N, K, N, &zb, mat)
		}
	}
	if bMats == 1 && aMats == nb {
		// A stack of matrices times one matrix is one tall product.
		qgemm(haveAVX2FMA, nb*M, N, k2, ap, lda, rs, bp, off, y.I32)
	} else {
		aStrides, bStrides := qBatchStrides(aBatch, batch), qBatchStrides(bBatch, batch)
		for bi := 0; bi < nb; bi++ {
			ai, bj := qBatchOffset(bi, batch, aStrides), qBatchOffset(bi, batch, bStrides)
			qgemm(haveAVX2FMA, M, N, k2, ap[ai*M*lda:(ai+1)*M*lda], lda, rs[ai*M:(ai+1)*M],
				bp[bj*size:(bj+1)*size], off[bj*offs:(bj+1)*offs], y.I32[bi*M*N:(bi+1)*M*N])
		}
	}
	// Drop the dimensions added for 1-D operands.
	switch {
	case len(a.Shape) == 1 && len(b.Shape) == 1:
		y.Shape = outShape[:len(outShape)-2]
	case len(a.Shape) == 1:
		y.Shape = append(outShape[:len(outShape)-2], N)
	case len(b.Shape) == 1:
		y.Shape = outShape[:len(outShape)-1]
	}
	return []*Tensor{y}, nil
}

// qZero is a resolved MatMulInteger zero point: one value for every
// element (v nil), or one per row of A or per column of B, stride apart
// from one batch matrix of the operand to the next (0 when shared).
type qZero struct {
	v      []int32
	stride int
	all    int32
}

// at is the zero point of row or column i of the operand's batch matrix
// mat.
func (z *qZero) at(mat, i int) int32 {
	if z.v == nil {
		return z.all
	}
	return z.v[mat*z.stride+i]
}

// qZeroPoints resolves the zero point zp (nil: none) of a matrix operand
// of shape (batch..., R, C). A zero point with one element applies to all;
// otherwise it applies per row (rows true, A) or per column (B), given as
// a vector or as a tensor of the operand's shape with the other matrix
// dimension 1.
func qZeroPoints(zp *Tensor, shape []int, rows bool) (qZero, error) {
	if zp == nil {
		return qZero{}, nil
	}
	if zp.Len() == 1 {
		return qZero{all: int32(quantElem(zp, 0))}, nil
	}
	R, C := shape[len(shape)-2], shape[len(shape)-1]
	per := C
	if rows {
		per = R
	}
	z := qZero{}
	switch {
	case len(zp.Shape) == 1 && zp.Shape[0] == per:
	case len(zp.Shape) == len(shape) && (rows && zp.Shape[len(shape)-1] == 1 && qSameShape(zp.Shape[:len(shape)-1], shape[:len(shape)-1]) ||
		!rows && zp.Shape[len(shape)-2] == 1 && qSameShape(zp.Shape[:len(shape)-2], shape[:len(shape)-2]) && zp.Shape[len(shape)-1] == C):
		z.stride = per
	default:
		if rows {
			return z, fmt.Errorf("want a scalar, a vector of %d (rows of A) or shape [batch..., %d, 1]", R, R)
		}
		return z, fmt.Errorf("want a scalar, a vector of %d (columns of B) or shape [batch..., 1, %d]", C, C)
	}
	z.v = make([]int32, zp.Len())
	for i := range z.v {
		z.v[i] = int32(quantElem(zp, i))
	}
	return z, nil
}

// qPackedSize is the number of int8 qPackB writes for a k x n matrix.
func qPackedSize(k, n int) int {
	return (n + 15) / 16 * ((k + 1) / 2) * 32
}

// qPackedCols is the number of column offsets qPackB writes for n
// columns: n padded to whole panels of 16.
func qPackedCols(n int) int {
	return (n + 15) / 16 * 16
}

// qScratch holds the buffers of one MatMulInteger run: A packed and its
// row sums, and B packed and its column offsets when B was not packed at
// load time.
type qScratch struct {
	a   []int16
	rs  []int32
	b   []int8
	off []int32
}

// qGrow returns the first n elements of *buf, reallocated when shorter.
func qGrow[T any](buf *[]T, n int) []T {
	if cap(*buf) < n {
		*buf = make([]T, n)
	}
	return (*buf)[:n]
}

// qPackAOf packs the m x k matrix at offset off of the uint8 or int8
// tensor t as qPackA does; uint8 rows with one zero point go through the
// AVX2 kernel if simd is set (only where haveAVX2FMA).
func qPackAOf(simd bool, dst []int16, sums []int32, t *Tensor, off, m, k int, z *qZero, mat int) {
	switch {
	case t.DType == Uint8 && simd && z.v == nil && k >= 16:
		qPackU8(dst, sums, t.U8[off:off+m*k], m, k, z.all)
	case t.DType == Uint8:
		qPackA(dst, sums, t.U8[off:off+m*k], m, k, z, mat)
	default:
		qPackA(dst, sums, t.I8[off:off+m*k], m, k, z, mat)
	}
}

// qPackA writes the m x k matrix a, minus the zero point z.at(mat, i) of
// each row i, into dst as m rows of 2*((k+1)/2) int16 (an odd k padded
// with a zero), and the sum of each row into sums: the A operand of
// qgemm. The differences of two uint8 or two int8 values fit in int16.
func qPackA[T uint8 | int8](dst []int16, sums []int32, a []T, m, k int, z *qZero, mat int) {
	lda := 2 * ((k + 1) / 2)
	for i := 0; i < m; i++ {
		zi := z.at(mat, i)
		row := a[i*k : (i+1)*k]
		d := dst[i*lda : (i+1)*lda]
		d, pad := d[:len(row)], d[len(row):] // no bounds checks in the loop
		var sum int32
		for kk, v := range row {
			x := int32(v) - zi
			d[kk] = int16(x)
			sum += x
		}
		clear(pad)
		sums[i] = sum
	}
}

// qPackU8 is qPackA for uint8 rows with the one zero point z, sixteen
// bytes at a time with the AVX2 kernel.
func qPackU8(dst []int16, sums []int32, a []uint8, m, k int, z int32) {
	lda := 2 * ((k + 1) / 2)
	body := k &^ 15
	for i := 0; i < m; i++ {
		row := a[i*k : (i+1)*k]
		d := dst[i*lda : (i+1)*lda]
		sum := qPackU8AVX(&d[0], &row[0], body, int(z))
		for kk := body; kk < k; kk++ {
			x := int32(row[kk]) - z
			d[kk] = int16(x)
			sum += x
		}
		clear(d[k:])
		sums[i] = sum
	}
}

// qPackBOf packs the k x n matrix at offset off of the uint8 or int8
// tensor t as qPackB does.
func qPackBOf(simd bool, dst []int8, offs []int32, t *Tensor, off, k, n int, z *qZero, mat int) {
	if t.DType == Uint8 {
		qPackB(simd, dst, offs, t.U8[off:off+k*n], k, n, 128, z, mat)
	} else {
		qPackB(simd, dst, offs, t.I8[off:off+k*n], k, n, 0, z, mat)
	}
}

// qPackB writes the k x n matrix b, less bias (128 for uint8 values, 0
// for int8, so that they fit in int8), into dst (qPackedSize(k, n) int8)
// as the B operand of qgemm: panels of 16 columns, the last padded with
// zero columns, each of k2 = (k+1)/2 steps of 32 int8 holding, for the
// panel's columns in order, the pair of rows 2q and 2q+1 (an odd k padded
// with a zero row). offs (qPackedCols(n)) gets, per column j, bias minus
// its zero point z.at(mat, j): since B - zb is the packed B plus that
// offset, a row of A times a column of B is its product with the packed
// column plus the row's sum times the offset. With simd (only where
// haveAVX2FMA), the AVX kernel packs the whole panels of each pair of
// rows.
func qPackB[T uint8 | int8](simd bool, dst []int8, offs []int32, b []T, k, n int, bias int32, z *qZero, mat int) {
	k2 := (k + 1) / 2
	dst, offs = dst[:qPackedSize(k, n)], offs[:qPackedCols(n)]
	clear(offs[n:])
	if z.v == nil {
		fill(offs[:n], bias-z.all)
	} else {
		for j := 0; j < n; j++ {
			offs[j] = bias - z.at(mat, j)
		}
	}
	whole := n / 16 // panels without padding columns
	clear(dst[whole*k2*32:])
	b = b[:k*n]
	for q := 0; q < k2; q++ {
		r0, r1 := b[2*q*n:(2*q+1)*n], []T(nil) // r1 nil: the zero row of an odd k
		if 2*q+1 < k {
			r1 = b[(2*q+1)*n : (2*q+2)*n]
		}
		j0 := 0
		if simd && whole > 0 {
			// Less bias is the same bits as flipping the top one.
			var p1 unsafe.Pointer
			if r1 != nil {
				p1 = unsafe.Pointer(&r1[0])
			}
			qPackPairsAVX(&dst[q*32], k2*32, unsafe.Pointer(&r0[0]), p1, whole, int(bias))
			j0 = 16 * whole
		}
		for j := j0; j < n; j++ {
			d := dst[(j/16)*k2*32+q*32+2*(j%16):][:2]
			d[0], d[1] = int8(int32(r0[j])-bias), 0
			if r1 != nil {
				d[1] = int8(int32(r1[j]) - bias)
			}
		}
	}
}

// qUnpackB returns the k x n matrix of type dt (Uint8 or Int8) that
// qPackB packed into b: each value is its packed byte plus the bias
// qPackB took off (128 for uint8).
func qUnpackB(dt DType, b []int8, k, n int) *Tensor {
	out := New(dt, k, n)
	k2 := (k + 1) / 2
	for r := range k {
		for j := range n {
			v := int32(b[(j/16)*k2*32+(r/2)*32+2*(j%16)+r%2])
			if dt == Uint8 {
				out.U8[r*n+j] = uint8(v + 128)
			} else {
				out.I8[r*n+j] = int8(v)
			}
		}
	}
	return out
}

// qUnpackA returns the tensor of type dt (Uint8 or Int8) and shape, m
// rows of k values, that qPackA packed into a less the zero point z.at(0,
// i) of each row i.
func qUnpackA(dt DType, a []int16, shape []int, z *qZero) *Tensor {
	out := New(dt, shape...)
	m := shape[0]
	k := out.Len() / m
	lda := 2 * ((k + 1) / 2)
	for i := range m {
		zi := z.at(0, i)
		for kk := range k {
			v := int32(a[i*lda+kk]) + zi
			if dt == Uint8 {
				out.U8[i*k+kk] = uint8(v)
			} else {
				out.I8[i*k+kk] = int8(v)
			}
		}
	}
	return out
}

// qgemm sets C (m x n int32, row-major, contiguous) to A·B, wrapping on
// overflow as int32 accumulators do. A is m rows of 2*k2 int16, lda apart,
// with their sums rs, packed by qPackA; B and its column offsets off are
// packed by qPackB. The AVX2 kernels run if simd is set (only where
// haveAVX2FMA), the portable Go one otherwise. Large products are split
// between goroutines by panels of B, so that each reads only its share of
// B, or by rows when B has one panel.
func qgemm(simd bool, m, n, k2 int, a []int16, lda int, rs []int32, b []int8, off []int32, c []int32) {
	if m == 0 || n == 0 {
		return
	}
	c = c[:m*n]
	if k2 == 0 {
		clear(c)
		return
	}
	// The kernels address A, B and the offsets within these bounds.
	panels := (n + 15) / 16
	a, rs, b, off = a[:(m-1)*lda+2*k2], rs[:m], b[:panels*k2*32], off[:panels*16]
	flops := m * n * 2 * k2
	workers := rowWorkers(m, flops)
	if panels > 1 && flops >= parallelFlops {
		workers = min(runtime.GOMAXPROCS(0), 8, panels)
	}
	switch {
	case workers < 2:
		qgemmPart(simd, 0, panels, 0, m, n, k2, a, lda, rs, b, off, c)
	case panels == 1:
		parallelSplit(m, workers, func(i0, i1 int) { qgemmPart(simd, 0, 1, i0, i1, n, k2, a, lda, rs, b, off, c) })
	default:
		parallelSplit(panels, workers, func(p0, p1 int) { qgemmPart(simd, p0, p1, 0, m, n, k2, a, lda, rs, b, off, c) })
	}
}

// qgemmPart is qgemm for the panels [p0, p1) of B (columns 16*p0 to
// 16*p1 of C) and the rows [i0, i1) of A: four rows against a panel at a
// time, then one, through a buffer for a last panel narrower than 16
// columns.
func qgemmPart(simd bool, p0, p1, i0, i1, n, k2 int, a []int16, lda int, rs []int32, b []int8, off []int32, c []int32) {
	var tmp [4 * 16]int32
	for p := p0; p < p1; p++ {
		j0 := 16 * p
		w := min(16, n-j0)
		panel, po := b[p*k2*32:(p+1)*k2*32], off[j0:j0+16]
		for i := i0; i < i1; {
			rows := 1
			if i+4 <= i1 {
				rows = 4
			}
			ar, rr := a[i*lda:(i+rows-1)*lda+2*k2], rs[i:i+rows]
			dst, ldd := c[i*n+j0:], n
			if w < 16 {
				dst, ldd = tmp[:], 16
			}
			dst = dst[:(rows-1)*ldd+16]
			switch {
			case !simd:
				qgemmBlock(dst, ldd, rows, ar, lda, rr, panel, po, k2)
			case rows == 4:
				qgemm4AVX(&dst[0], ldd, &ar[0], lda, &rr[0], &panel[0], &po[0], k2)
			default:
				qgemm1AVX(&dst[0], &ar[0], &rr[0], &panel[0], &po[0], k2)
			}
			if w < 16 {
				for r := range rows {
					copy(c[(i+r)*n+j0:(i+r)*n+j0+w], tmp[r*16:r*16+w])
				}
			}
			i += rows
		}
	}
}

// qgemmBlock sets the rows (1 to 4) rows of 16 int32 of c, ldc apart, to
// the products of as many rows of a (2*k2 int16, lda apart, their sums in
// rs) with the panel b of qPackB and its column offsets off, skipping the
// steps where a row's pair is zero.
func qgemmBlock(c []int32, ldc, rows int, a []int16, lda int, rs []int32, b []int8, off []int32, k2 int) {
	off = off[:16]
	for r := 0; r < rows; r++ {
		var acc [16]int32
		ar := a[r*lda : r*lda+2*k2]
		for q := 0; q < k2; q++ {
			a0, a1 := int32(ar[2*q]), int32(ar[2*q+1])
			if a0 == 0 && a1 == 0 {
				continue
			}
			bq := b[q*32 : q*32+32]
			for j := range acc {
				acc[j] += a0*int32(bq[2*j]) + a1*int32(bq[2*j+1])
			}
		}
		cr := c[r*ldc : r*ldc+16]
		for j, o := range off {
			cr[j] = acc[j] + rs[r]*o
		}
	}
}

// qBatchStrides returns, for each dimension of the broadcast batch shape
// out, the stride in matrices of an operand with batch shape in (0 where
// the operand broadcasts).
func qBatchStrides(in, out []int) []int {
	s := make([]int, len(out))
	step := 1
	for i := len(out) - 1; i >= 0; i-- {
		j := i - (len(out) - len(in))
		if j >= 0 && in[j] != 1 {
			s[i] = step
		}
		if j >= 0 {
			step *= in[j]
		}
	}
	return s
}

// qBatchOffset maps the flat index of a broadcast batch to an operand's
// matrix index.
func qBatchOffset(flat int, shape, strides []int) int {
	off := 0
	for i := len(shape) - 1; i >= 0; i-- {
		off += (flat % shape[i]) * strides[i]
		flat /= shape[i]
	}
	return off
}
