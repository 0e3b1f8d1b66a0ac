package interp

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// redOp is a reduction.
type redOp int

const (
	redSum redOp = iota
	redMean
	redMax
	redMin
	redProd
	redL1
	redL2
	redSumSquare
	redLogSum
	redLogSumExp
)

// addReduceOps registers the reductions, ArgMax, ArgMin, CumSum and TopK.
func addReduceOps(t ops) {
	for name, op := range map[string]redOp{
		"ReduceSum":       redSum,
		"ReduceMean":      redMean,
		"ReduceMax":       redMax,
		"ReduceMin":       redMin,
		"ReduceProd":      redProd,
		"ReduceL1":        redL1,
		"ReduceL2":        redL2,
		"ReduceSumSquare": redSumSquare,
		"ReduceLogSum":    redLogSum,
		"ReduceLogSumExp": redLogSumExp,
	} {
		t[name] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: checkReduce, Run: reduceKernel(op), Fresh: true}
	}
	argCheck := all(checkInputs(1, 1), checkArg)
	t["ArgMax"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: argCheck, Run: argKernel(true), Fresh: true}
	t["ArgMin"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: argCheck, Run: argKernel(false), Fresh: true}
	t["CumSum"] = Op{MinOpset: 11, MaxOpset: MaxOpset, Check: all(checkInputs(2, 2), checkCumSum), Run: cumsum, Fresh: true}
	t["TopK"] = Op{MinOpset: 10, MaxOpset: MaxOpset, Check: checkTopK, Run: topk, Fresh: true}
}

// reduceAxesAsInput reports whether the node takes its axes as an input rather
// than an attribute: ReduceSum from opset 13 (the others from opset 18,
// beyond MaxOpset).
func reduceAxesAsInput(n *Node) bool {
	return n.Proto.GetOpType() == "ReduceSum" && n.Opset >= 13
}

func checkReduce(n *Node) error {
	in := n.Proto.GetInput()
	maxIn := 1
	if reduceAxesAsInput(n) {
		maxIn = 2
		if n.Has("axes") {
			return fmt.Errorf("axes is an input at opset %d, not an attribute", n.Opset)
		}
	}
	if len(in) < 1 || len(in) > maxIn || in[0] == "" {
		return fmt.Errorf("%d inputs, want 1 to %d with the first present", len(in), maxIn)
	}
	if len(n.Proto.GetOutput()) != 1 {
		return fmt.Errorf("%d outputs, want 1", len(n.Proto.GetOutput()))
	}
	if k := n.Int("keepdims", 1); k != 0 && k != 1 {
		return fmt.Errorf("keepdims is %d, want 0 or 1", k)
	}
	if k := n.Int("noop_with_empty_axes", 0); k != 0 && k != 1 {
		return fmt.Errorf("noop_with_empty_axes is %d, want 0 or 1", k)
	}
	if axes := n.Ints("axes", nil); hasDuplicate(axes) {
		return fmt.Errorf("axes %v repeat an axis", axes)
	}
	return nil
}

func hasDuplicate(v []int64) bool {
	s := slices.Clone(v)
	slices.Sort(s)
	for i := 1; i < len(s); i++ {
		if s[i] == s[i-1] {
			return true
		}
	}
	return false
}

// reducedAxes marks the axes a reduction node reduces over a rank r input;
// noop is true when it must return its input unchanged (ReduceSum with no
// axes and noop_with_empty_axes=1).
func reducedAxes(n *Node, in []*Tensor, r int) (red []bool, noop bool, err error) {
	var axes []int64
	if reduceAxesAsInput(n) {
		if len(in) > 1 && in[1] != nil {
			a := in[1]
			if a.DType != Int64 || len(a.Shape) > 1 {
				return nil, false, fmt.Errorf("axes must be a 1-D int64 tensor, got %s %s", a.DType, ShapeString(a.Shape))
			}
			axes = a.I64
		}
	} else {
		axes = n.Ints("axes", nil)
	}
	red = make([]bool, r)
	if len(axes) == 0 {
		if n.Int("noop_with_empty_axes", 0) == 1 {
			return red, true, nil
		}
		for i := range red {
			red[i] = true
		}
		return red, false, nil
	}
	for _, a := range axes {
		k, err := NormAxis(a, r)
		if err != nil {
			return nil, false, err
		}
		if red[k] {
			return nil, false, fmt.Errorf("axes %v repeat axis %d", axes, k)
		}
		red[k] = true
	}
	return red, false, nil
}

// reduceRows calls f for every innermost row of src (of shape) in order,
// with the output offset of its first element and the output step between
// its elements: 0 when the last axis is reduced, else 1. ostride holds the
// output strides per input axis (0 on reduced axes).
func reduceRows[T any](src []T, shape, ostride []int, f func(o, step int, row []T)) {
	if len(src) == 0 {
		return
	}
	r := len(shape)
	if r == 0 {
		f(0, 0, src[:1])
		return
	}
	idx := make([]int, r)
	inner, step := shape[r-1], ostride[r-1]
	off := 0
	for i := 0; i < len(src); i += inner {
		f(off, step, src[i:i+inner])
		for k := r - 2; k >= 0; k-- {
			idx[k]++
			off += ostride[k]
			if idx[k] < shape[k] {
				break
			}
			off -= ostride[k] * shape[k]
			idx[k] = 0
		}
	}
}

// reduceEach calls f for every element of src with its output offset.
func reduceEach[T any](src []T, shape, ostride []int, f func(o int, v T)) {
	reduceRows(src, shape, ostride, func(o, step int, row []T) {
		for j, v := range row {
			f(o+j*step, v)
		}
	})
}

// floatRows returns the row kernel of a float reduction accumulating into
// acc, for reduceRows: a tight loop per row, to one accumulator when the
// row is reduced (step 0) or elementwise into acc otherwise.
func floatRows(op redOp, acc []float64) func(o, step int, row []float32) {
	switch op {
	case redMax, redMin:
		isMax := op == redMax
		return func(o, step int, row []float32) {
			if step == 0 {
				m := acc[o]
				for _, v := range row {
					if isMax {
						m = max(m, float64(v))
					} else {
						m = min(m, float64(v))
					}
				}
				acc[o] = m
				return
			}
			a := acc[o : o+len(row)]
			for j, v := range row {
				if isMax {
					a[j] = max(a[j], float64(v))
				} else {
					a[j] = min(a[j], float64(v))
				}
			}
		}
	case redProd:
		return func(o, step int, row []float32) {
			if step == 0 {
				p := acc[o]
				for _, v := range row {
					p *= float64(v)
				}
				acc[o] = p
				return
			}
			a := acc[o : o+len(row)]
			for j, v := range row {
				a[j] *= float64(v)
			}
		}
	case redL1:
		return func(o, step int, row []float32) {
			if step == 0 {
				s := acc[o]
				for _, v := range row {
					s += math.Abs(float64(v))
				}
				acc[o] = s
				return
			}
			a := acc[o : o+len(row)]
			for j, v := range row {
				a[j] += math.Abs(float64(v))
			}
		}
	case redL2, redSumSquare:
		return func(o, step int, row []float32) {
			if step == 0 {
				s := acc[o]
				for _, v := range row {
					s += float64(v) * float64(v)
				}
				acc[o] = s
				return
			}
			a := acc[o : o+len(row)]
			for j, v := range row {
				a[j] += float64(v) * float64(v)
			}
		}
	}
	// Sum, Mean and LogSum.
	return func(o, step int, row []float32) {
		if step == 0 {
			acc[o] += sumF32(row)
			return
		}
		a := acc[o : o+len(row)]
		for j, v := range row {
			a[j] += float64(v)
		}
	}
}

// reduceShapes gives the output shape (with or without the reduced axes),
// its element count, the output strides per input axis and the number of
// input elements folded into each output element.
func reduceShapes(shape []int, red []bool, keep bool) (out []int, size int, ostride []int, count int) {
	ostride = make([]int, len(shape))
	count, s := 1, 1
	for i := len(shape) - 1; i >= 0; i-- {
		if red[i] {
			count *= shape[i]
			continue
		}
		ostride[i] = s
		s *= shape[i]
	}
	out = []int{}
	for i, d := range shape {
		switch {
		case !red[i]:
			out = append(out, d)
		case keep:
			out = append(out, 1)
		}
	}
	return out, s, ostride, count
}

func reduceKernel(op redOp) Kernel {
	return func(n *Node, in []*Tensor) ([]*Tensor, error) {
		x := in[0]
		red, noop, err := reducedAxes(n, in, len(x.Shape))
		if err != nil {
			return nil, err
		}
		if noop {
			return []*Tensor{x.Clone()}, nil
		}
		shape, size, ostride, count := reduceShapes(x.Shape, red, n.Int("keepdims", 1) == 1)
		switch x.DType {
		case Float32:
			return []*Tensor{reduceFloat(op, x.F32, x.Shape, ostride, shape, size, count)}, nil
		case Int32:
			return reduceIntTyped(op, x.I32, x, ostride, shape, size, count)
		case Int64:
			return reduceIntTyped(op, x.I64, x, ostride, shape, size, count)
		case Int8:
			return reduceIntTyped(op, x.I8, x, ostride, shape, size, count)
		case Uint8:
			return reduceIntTyped(op, x.U8, x, ostride, shape, size, count)
		}
		return nil, fmt.Errorf("element type %s is not supported", x.DType)
	}
}

// reduceFloat reduces in float64. Reducing nothing gives the operator's
// identity (0 for sums, 1 for a product, -Inf and +Inf for Max and Min).
func reduceFloat(op redOp, src []float32, inShape, ostride, shape []int, size, count int) *Tensor {
	acc := make([]float64, size)
	var init float64
	switch op {
	case redMax:
		init = math.Inf(-1)
	case redMin:
		init = math.Inf(1)
	case redProd:
		init = 1
	}
	if init != 0 {
		for i := range acc {
			acc[i] = init
		}
	}
	switch op {
	default:
		reduceRows(src, inShape, ostride, floatRows(op, acc))
	case redLogSumExp:
		// log(sum(exp(x))) = m + log(sum(exp(x-m))) with m the maximum,
		// so large inputs do not overflow.
		mx := make([]float64, size)
		for i := range mx {
			mx[i] = math.Inf(-1)
		}
		reduceRows(src, inShape, ostride, floatRows(redMax, mx))
		for i, m := range mx {
			if math.IsInf(m, 0) {
				mx[i] = 0
			}
		}
		reduceEach(src, inShape, ostride, func(o int, v float32) { acc[o] += math.Exp(float64(v) - mx[o]) })
		for i := range acc {
			acc[i] = mx[i] + math.Log(acc[i])
		}
	}
	out := New(Float32, shape...)
	for i, v := range acc {
		switch op {
		case redMean:
			v /= float64(count)
		case redL2:
			v = math.Sqrt(v)
		case redLogSum:
			v = math.Log(v)
		}
		out.F32[i] = float32(v)
	}
	return out
}

// reduceIntTyped reduces integers in int64 (wrapping back to the input's
// type as numpy does); Mean truncates toward zero, L2 is the floor of the
// square root.
func reduceIntTyped[T int8 | uint8 | int32 | int64](op redOp, src []T, x *Tensor, ostride, shape []int, size, count int) ([]*Tensor, error) {
	acc := make([]int64, size)
	var init int64
	switch op {
	case redMax:
		init = math.MinInt64
		if x.DType == Uint8 {
			init = 0
		}
	case redMin:
		init = math.MaxInt64
	case redProd:
		init = 1
	case redLogSum, redLogSumExp:
		return nil, fmt.Errorf("element type %s is not supported", x.DType)
	}
	if init != 0 {
		for i := range acc {
			acc[i] = init
		}
	}
	switch op {
	case redSum, redMean:
		reduceEach(src, x.Shape, ostride, func(o int, v T) { acc[o] += int64(v) })
	case redMax:
		reduceEach(src, x.Shape, ostride, func(o int, v T) { acc[o] = max(acc[o], int64(v)) })
	case redMin:
		reduceEach(src, x.Shape, ostride, func(o int, v T) { acc[o] = min(acc[o], int64(v)) })
	case redProd:
		reduceEach(src, x.Shape, ostride, func(o int, v T) { acc[o] *= int64(v) })
	case redL1:
		reduceEach(src, x.Shape, ostride, func(o int, v T) {
			w := int64(v)
			if w < 0 {
				w = -w
			}
			acc[o] += w
		})
	case redL2, redSumSquare:
		reduceEach(src, x.Shape, ostride, func(o int, v T) { acc[o] += int64(v) * int64(v) })
	}
	for i, v := range acc {
		switch op {
		case redMean:
			if count > 0 {
				acc[i] = v / int64(count)
			}
		case redL2:
			acc[i] = int64(math.Sqrt(float64(v)))
		}
	}
	out := New(x.DType, shape...)
	if err := Convert(out, wrap(acc, shape)); err != nil {
		return nil, err
	}
	return []*Tensor{out}, nil
}

func checkArg(n *Node) error {
	if k := n.Int("keepdims", 1); k != 0 && k != 1 {
		return fmt.Errorf("keepdims is %d, want 0 or 1", k)
	}
	if k := n.Int("select_last_index", 0); k != 0 && k != 1 {
		return fmt.Errorf("select_last_index is %d, want 0 or 1", k)
	}
	return nil
}

// argKernel is ArgMax (or ArgMin): the int64 index of the largest
// (smallest) value along axis, the first one unless select_last_index; a
// NaN counts as the extreme, as in numpy.
func argKernel(isMax bool) Kernel {
	return func(n *Node, in []*Tensor) ([]*Tensor, error) {
		x := in[0]
		axis, err := NormAxis(n.Int("axis", 0), len(x.Shape))
		if err != nil {
			return nil, err
		}
		if x.Shape[axis] == 0 {
			return nil, fmt.Errorf("axis %d has no elements", axis)
		}
		last := n.Int("select_last_index", 0) == 1
		outer, l, inner := Size(x.Shape[:axis]), x.Shape[axis], Size(x.Shape[axis+1:])
		shape := slices.Clone(x.Shape)
		if n.Int("keepdims", 1) == 1 {
			shape[axis] = 1
		} else {
			shape = slices.Delete(shape, axis, axis+1)
		}
		out := New(Int64, shape...)
		switch x.DType {
		case Float32:
			argTyped(out.I64, x.F32, outer, l, inner, isMax, last)
		case Int32:
			argTyped(out.I64, x.I32, outer, l, inner, isMax, last)
		case Int64:
			argTyped(out.I64, x.I64, outer, l, inner, isMax, last)
		case Int8:
			argTyped(out.I64, x.I8, outer, l, inner, isMax, last)
		case Uint8:
			argTyped(out.I64, x.U8, outer, l, inner, isMax, last)
		default:
			return nil, fmt.Errorf("element type %s is not supported", x.DType)
		}
		return []*Tensor{out}, nil
	}
}

func argTyped[T numeric](dst []int64, src []T, outer, l, inner int, isMax, last bool) {
	for o := range outer {
		for j := range inner {
			base := o*l*inner + j
			best, bi := src[base], 0
			for k := 1; k < l; k++ {
				v := src[base+k*inner]
				if best != best { // NaN found: it stays, or its last copy
					if last && v != v {
						bi = k
					}
					continue
				}
				better := v != v || (isMax && v > best) || (!isMax && v < best) || (last && v == best)
				if better {
					best, bi = v, k
				}
			}
			dst[o*inner+j] = int64(bi)
		}
	}
}

func checkCumSum(n *Node) error {
	for _, a := range []string{"exclusive", "reverse"} {
		if k := n.Int(a, 0); k != 0 && k != 1 {
			return fmt.Errorf("%s is %d, want 0 or 1", a, k)
		}
	}
	return nil
}

// cumsum is the cumulative sum along the axis input, optionally exclusive
// (each output excludes its own element) and reversed.
func cumsum(n *Node, in []*Tensor) ([]*Tensor, error) {
	x, a := in[0], in[1]
	if a.Len() != 1 || len(a.Shape) > 1 || (a.DType != Int64 && a.DType != Int32) {
		return nil, fmt.Errorf("axis must be an int32 or int64 scalar, got %s %s", a.DType, ShapeString(a.Shape))
	}
	ax := int64(0)
	if a.DType == Int64 {
		ax = a.I64[0]
	} else {
		ax = int64(a.I32[0])
	}
	if len(x.Shape) == 0 {
		return nil, fmt.Errorf("input is a scalar")
	}
	axis, err := NormAxis(ax, len(x.Shape))
	if err != nil {
		return nil, err
	}
	excl, rev := n.Int("exclusive", 0) == 1, n.Int("reverse", 0) == 1
	outer, l, inner := Size(x.Shape[:axis]), x.Shape[axis], Size(x.Shape[axis+1:])
	out := New(x.DType, x.Shape...)
	switch x.DType {
	case Float32:
		cumsumTyped(out.F32, x.F32, outer, l, inner, excl, rev)
	case Int32:
		cumsumTyped(out.I32, x.I32, outer, l, inner, excl, rev)
	case Int64:
		cumsumTyped(out.I64, x.I64, outer, l, inner, excl, rev)
	default:
		return nil, fmt.Errorf("element type %s is not supported", x.DType)
	}
	return []*Tensor{out}, nil
}

func cumsumTyped[T float32 | int32 | int64](dst, src []T, outer, l, inner int, excl, rev bool) {
	for o := range outer {
		for j := range inner {
			base := o*l*inner + j
			var sum T
			for s := range l {
				k := s
				if rev {
					k = l - 1 - s
				}
				i := base + k*inner
				if excl {
					dst[i] = sum
					sum += src[i]
				} else {
					sum += src[i]
					dst[i] = sum
				}
			}
		}
	}
}

func checkTopK(n *Node) error {
	in, out := n.Proto.GetInput(), n.Proto.GetOutput()
	if len(in) != 2 || in[0] == "" || in[1] == "" {
		return fmt.Errorf("%d inputs, want 2", len(in))
	}
	if len(out) != 2 {
		return fmt.Errorf("%d outputs, want 2 (values and indices)", len(out))
	}
	for _, a := range []string{"largest", "sorted"} {
		if k := n.Int(a, 1); k != 0 && k != 1 {
			return fmt.Errorf("%s is %d, want 0 or 1", a, k)
		}
	}
	return nil
}

// topk gives the k largest (or smallest) values along axis and their int64
// indices, sorted, equal values in index order (the order is kept with
// sorted=0 too, which the spec leaves free).
func topk(n *Node, in []*Tensor) ([]*Tensor, error) {
	x, kt := in[0], in[1]
	if kt.DType != Int64 || kt.Len() != 1 || len(kt.Shape) > 1 {
		return nil, fmt.Errorf("k must be a 1-element int64 tensor, got %s %s", kt.DType, ShapeString(kt.Shape))
	}
	axis, err := NormAxis(n.Int("axis", -1), len(x.Shape))
	if err != nil {
		return nil, err
	}
	k := kt.I64[0]
	if k < 0 || k > int64(x.Shape[axis]) {
		return nil, fmt.Errorf("k is %d, axis %d has %d elements", k, axis, x.Shape[axis])
	}
	largest := n.Int("largest", 1) == 1
	shape := slices.Clone(x.Shape)
	shape[axis] = int(k)
	vals, idx := New(x.DType, shape...), New(Int64, shape...)
	outer, l, inner := Size(x.Shape[:axis]), x.Shape[axis], Size(x.Shape[axis+1:])
	switch x.DType {
	case Float32:
		topkTyped(vals.F32, idx.I64, x.F32, outer, l, inner, int(k), largest)
	case Int32:
		topkTyped(vals.I32, idx.I64, x.I32, outer, l, inner, int(k), largest)
	case Int64:
		topkTyped(vals.I64, idx.I64, x.I64, outer, l, inner, int(k), largest)
	case Int8:
		topkTyped(vals.I8, idx.I64, x.I8, outer, l, inner, int(k), largest)
	case Uint8:
		topkTyped(vals.U8, idx.I64, x.U8, outer, l, inner, int(k), largest)
	default:
		return nil, fmt.Errorf("element type %s is not supported", x.DType)
	}
	return []*Tensor{vals, idx}, nil
}

func topkTyped[T numeric](vals []T, idx []int64, src []T, outer, l, inner, k int, largest bool) {
	order := make([]int, 0, l)
	for o := range outer {
		for j := range inner {
			base := o*l*inner + j
			at := func(i int) T { return src[base+i*inner] }
			// before says element a goes before element b: a better value,
			// or an equal one at a lower index. cmp.Compare orders NaN
			// below every number.
			before := func(a, b int) bool {
				c := cmp.Compare(at(a), at(b))
				if largest {
					c = -c
				}
				return c < 0 || (c == 0 && a < b)
			}
			order = order[:0]
			if k <= 16 {
				// Keep the k best seen so far, in order, by insertion.
				for i := range l {
					if len(order) == k && (k == 0 || !before(i, order[k-1])) {
						continue
					}
					if len(order) < k {
						order = append(order, i)
					} else {
						order[k-1] = i
					}
					for p := len(order) - 1; p > 0 && before(order[p], order[p-1]); p-- {
						order[p], order[p-1] = order[p-1], order[p]
					}
				}
			} else {
				for i := range l {
					order = append(order, i)
				}
				slices.SortFunc(order, func(a, b int) int {
					switch {
					case a == b:
						return 0
					case before(a, b):
						return -1
					}
					return 1
				})
			}
			ob := o*k*inner + j
			for r := range k {
				vals[ob+r*inner] = at(order[r])
				idx[ob+r*inner] = int64(order[r])
			}
		}
	}
}

// sumF32 sums in float64 with four independent accumulators, so the
// additions overlap.
func sumF32(row []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(row); i += 4 {
		r := row[i : i+4 : i+4]
		s0 += float64(r[0])
		s1 += float64(r[1])
		s2 += float64(r[2])
		s3 += float64(r[3])
	}
	for ; i < len(row); i++ {
		s0 += float64(row[i])
	}
	return (s0 + s1) + (s2 + s3)
}
