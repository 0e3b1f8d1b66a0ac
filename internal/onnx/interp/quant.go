package interp

import (
	"fmt"
	"math"
)

// addQuantOps registers QuantizeLinear, DequantizeLinear and MatMulInteger.
func addQuantOps(t ops) {
	t["QuantizeLinear"] = Op{MinOpset: 13, MaxOpset: 17, Check: checkQuantLinear, Run: runQuantizeLinear}
	t["DequantizeLinear"] = Op{MinOpset: 13, MaxOpset: 17, Check: checkQuantLinear, Run: runDequantizeLinear}
	t["MatMulInteger"] = Op{MinOpset: 10, MaxOpset: 17, Check: checkMatMulInteger, Run: runMatMulInteger}
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
	lo, hi := 0.0, 255.0
	if outType == Int8 {
		lo, hi = -128, 127
	}
	i := 0
	for o := 0; o < outer; o++ {
		for c := 0; c < d; c++ {
			s := scale.F32[c]
			z := 0.0
			if zp != nil {
				if outType == Uint8 {
					z = float64(zp.U8[c])
				} else {
					z = float64(zp.I8[c])
				}
			}
			for range inner {
				q := quantizeValue(xf[i], s, z, lo, hi)
				if outType == Uint8 {
					y.U8[i] = uint8(q)
				} else {
					y.I8[i] = int8(q)
				}
				i++
			}
		}
	}
	return []*Tensor{y}, nil
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
	i := 0
	for o := 0; o < outer; o++ {
		for c := 0; c < d; c++ {
			s := scale.F32[c]
			z := float32(0)
			if zp != nil {
				z = quantElem(zp, c)
			}
			for range inner {
				y.F32[i] = (quantElem(x, i) - z) * s
				i++
			}
		}
	}
	return []*Tensor{y}, nil
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

// quantWiden returns the int8 or uint8 values of t, widened to int32.
func quantWiden(n *Node, name string, t *Tensor) ([]int32, error) {
	if t == nil {
		return nil, n.Errorf("input %s is missing", name)
	}
	switch t.DType {
	case Uint8:
		out := make([]int32, len(t.U8))
		for i, v := range t.U8 {
			out[i] = int32(v)
		}
		return out, nil
	case Int8:
		out := make([]int32, len(t.I8))
		for i, v := range t.I8 {
			out[i] = int32(v)
		}
		return out, nil
	}
	return nil, n.Errorf("input %s has type %s, want uint8 or int8", name, t.DType)
}

func runMatMulInteger(n *Node, in []*Tensor) ([]*Tensor, error) {
	a, b := in[0], in[1]
	var aZP, bZP *Tensor
	if len(in) > 2 {
		aZP = in[2]
	}
	if len(in) > 3 {
		bZP = in[3]
	}
	av, err := quantWiden(n, "A", a)
	if err != nil {
		return nil, err
	}
	bv, err := quantWiden(n, "B", b)
	if err != nil {
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
	batch, err := qBroadcastBatch(aBatch, bBatch)
	if err != nil {
		return nil, n.Errorf("batch dimensions of A %s and B %s do not broadcast", ShapeString(a.Shape), ShapeString(b.Shape))
	}
	// Subtract the zero points: per tensor, per row of A, per column of B.
	if aZP != nil {
		if aZP.DType != a.DType {
			return nil, n.Errorf("input a_zero_point has type %s, want %s (the type of A)", aZP.DType, a.DType)
		}
		if err := subZeroPoints(av, aZP, aShape, true); err != nil {
			return nil, n.Errorf("input a_zero_point of shape %s: %v (A is %s)", ShapeString(aZP.Shape), err, ShapeString(a.Shape))
		}
	}
	if bZP != nil {
		if bZP.DType != b.DType {
			return nil, n.Errorf("input b_zero_point has type %s, want %s (the type of B)", bZP.DType, b.DType)
		}
		if err := subZeroPoints(bv, bZP, bShape, false); err != nil {
			return nil, n.Errorf("input b_zero_point of shape %s: %v (B is %s)", ShapeString(bZP.Shape), err, ShapeString(b.Shape))
		}
	}
	outShape := append(append([]int(nil), batch...), M, N)
	y := New(Int32, outShape...)
	nb := Size(batch)
	aStrides, bStrides := qBatchStrides(aBatch, batch), qBatchStrides(bBatch, batch)
	for bi := 0; bi < nb; bi++ {
		ai, bj := qBatchOffset(bi, batch, aStrides), qBatchOffset(bi, batch, bStrides)
		qGemm(M, N, K, av[ai*M*K:(ai+1)*M*K], bv[bj*K*N:(bj+1)*K*N], y.I32[bi*M*N:(bi+1)*M*N])
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

// subZeroPoints subtracts zero points from v, the widened values of a
// matrix operand of shape (batch..., R, C). A zero point with one element
// applies to all; otherwise it applies per row (rows true, A) or per
// column (B), given as a vector or as a tensor of the operand's shape with
// the other matrix dimension 1.
func subZeroPoints(v []int32, zp *Tensor, shape []int, rows bool) error {
	zv := make([]int32, zp.Len())
	for i := range zv {
		zv[i] = int32(quantElem(zp, i))
	}
	R, C := shape[len(shape)-2], shape[len(shape)-1]
	if len(zv) == 1 {
		for i := range v {
			v[i] -= zv[0]
		}
		return nil
	}
	per := C
	if rows {
		per = R
	}
	stride := 0 // zero points per batch matrix, 0 when shared
	switch {
	case len(zp.Shape) == 1 && zp.Shape[0] == per:
	case len(zp.Shape) == len(shape) && (rows && zp.Shape[len(shape)-1] == 1 && qSameShape(zp.Shape[:len(shape)-1], shape[:len(shape)-1]) ||
		!rows && zp.Shape[len(shape)-2] == 1 && qSameShape(zp.Shape[:len(shape)-2], shape[:len(shape)-2]) && zp.Shape[len(shape)-1] == C):
		stride = per
	default:
		if rows {
			return fmt.Errorf("want a scalar, a vector of %d (rows of A) or shape [batch..., %d, 1]", R, R)
		}
		return fmt.Errorf("want a scalar, a vector of %d (columns of B) or shape [batch..., 1, %d]", C, C)
	}
	for m := 0; m < len(v)/(R*C); m++ {
		z := zv[m*stride : m*stride+per]
		mat := v[m*R*C : (m+1)*R*C]
		for r := 0; r < R; r++ {
			row := mat[r*C : (r+1)*C]
			if rows {
				for j := range row {
					row[j] -= z[r]
				}
			} else {
				for j := range row {
					row[j] -= z[j]
				}
			}
		}
	}
	return nil
}

// qBroadcastBatch broadcasts two batch shapes numpy style.
func qBroadcastBatch(a, b []int) ([]int, error) {
	r := max(len(a), len(b))
	out := make([]int, r)
	for i := 0; i < r; i++ {
		da, db := 1, 1
		if j := i - (r - len(a)); j >= 0 {
			da = a[j]
		}
		if j := i - (r - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da == db, db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			return nil, fmt.Errorf("dimension %d: %d vs %d", i, da, db)
		}
	}
	return out, nil
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

// qGemm computes c = a * b for row-major int32 matrices a (m x k), b
// (k x n), c (m x n), wrapping on overflow as int32 accumulators do.
func qGemm(m, n, k int, a, b, c []int32) {
	for i := 0; i < m; i++ {
		ci := c[i*n : (i+1)*n]
		for p := 0; p < k; p++ {
			av := a[i*k+p]
			if av == 0 {
				continue
			}
			br := b[p*n : (p+1)*n]
			br = br[:len(ci)]
			for j, bv := range br {
				ci[j] += av * bv
			}
		}
	}
}
