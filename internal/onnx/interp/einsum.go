package interp

import (
	"fmt"
	"slices"
	"strings"
)

// addEinsumOps registers Einsum.
func addEinsumOps(t ops) {
	t["Einsum"] = Op{MinOpset: 12, MaxOpset: MaxOpset, Check: checkEinsum, Run: einsum, Fresh: true}
}

// einsumEq is a parsed Einsum equation: the labels of each operand and of
// the output, with ellipsis marking where "..." stands (-1: absent).
type einsumEq struct {
	in     [][]rune
	inEll  []int
	out    []rune
	outEll int
}

// ellLabel is the label of the k-th ellipsis dimension counted from the
// right: ellipsis dimensions align on the right, as in numpy.
func ellLabel(k int) rune { return rune(0x10000 + k) }

// parseEinsumTerm reads one term: letters and at most one "...".
func parseEinsumTerm(s string) ([]rune, int, error) {
	ell := -1
	if i := strings.Index(s, "..."); i >= 0 {
		if strings.Contains(s[i+3:], "...") {
			return nil, 0, fmt.Errorf("term %q has two ellipses", s)
		}
		ell = len([]rune(s[:i]))
		s = s[:i] + s[i+3:]
	}
	labels := []rune(s)
	for _, c := range labels {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return nil, 0, fmt.Errorf("term %q has %q; labels are letters", s, c)
		}
	}
	return labels, ell, nil
}

// parseEinsum parses an equation for k operands. Without "->" the output
// is every label that appears once, in alphabetical order, after the
// ellipsis dimensions.
func parseEinsum(eq string, k int) (*einsumEq, error) {
	eq = strings.ReplaceAll(eq, " ", "")
	lhs, rhs, explicit := strings.Cut(eq, "->")
	terms := strings.Split(lhs, ",")
	if len(terms) != k {
		return nil, fmt.Errorf("equation %q has %d operands for %d inputs", eq, len(terms), k)
	}
	e := &einsumEq{}
	count := map[rune]int{}
	anyEll := false
	for _, term := range terms {
		labels, ell, err := parseEinsumTerm(term)
		if err != nil {
			return nil, err
		}
		e.in, e.inEll = append(e.in, labels), append(e.inEll, ell)
		anyEll = anyEll || ell >= 0
		for _, c := range labels {
			count[c]++
		}
	}
	if explicit {
		labels, ell, err := parseEinsumTerm(rhs)
		if err != nil {
			return nil, err
		}
		for i, c := range labels {
			if count[c] == 0 {
				return nil, fmt.Errorf("output label %q is not in any operand", c)
			}
			if slices.Contains(labels[:i], c) {
				return nil, fmt.Errorf("output label %q repeated", c)
			}
		}
		if ell >= 0 && !anyEll {
			return nil, fmt.Errorf("output has an ellipsis that no operand has")
		}
		e.out, e.outEll = labels, ell
		return e, nil
	}
	for c, n := range count {
		if n == 1 {
			e.out = append(e.out, c)
		}
	}
	slices.Sort(e.out)
	e.outEll = -1
	if anyEll {
		e.outEll = 0
	}
	return e, nil
}

func checkEinsum(n *Node) error {
	in := n.Proto.GetInput()
	if len(in) < 1 || len(in) > 2 {
		return fmt.Errorf("%d operands; only Einsum of one or two operands is supported: %w", len(in), ErrUnsupported)
	}
	if !n.Has("equation") {
		return fmt.Errorf("missing attribute equation")
	}
	_, err := parseEinsum(n.String("equation", ""), len(in))
	if err != nil {
		return fmt.Errorf("attribute equation: %w", err)
	}
	return nil
}

// einsumOperand is an operand viewed with one dimension per distinct
// label (repeated labels take the diagonal): its labels, sizes and
// strides in the operand's data.
type einsumOperand struct {
	t       *Tensor
	labels  []rune
	dims    []int
	strides []int
}

// einsumView replaces an operand's ellipsis by labels for its dimensions and
// merges repeated labels into diagonal views.
func einsumView(t *Tensor, labels []rune, ell int) (einsumOperand, int, error) {
	full := labels
	nEll := 0
	if ell >= 0 {
		nEll = len(t.Shape) - len(labels)
		if nEll < 0 {
			return einsumOperand{}, 0, fmt.Errorf("operand of rank %d for %d labels", len(t.Shape), len(labels))
		}
		full = append(append([]rune{}, labels[:ell]...), make([]rune, nEll)...)
		for k := range nEll {
			full[ell+k] = ellLabel(nEll - 1 - k)
		}
		full = append(full, labels[ell:]...)
	}
	if len(full) != len(t.Shape) {
		return einsumOperand{}, 0, fmt.Errorf("operand of rank %d for %d labels", len(t.Shape), len(full))
	}
	st := contiguousStrides(t.Shape)
	op := einsumOperand{t: t}
	for i, c := range full {
		if j := slices.Index(op.labels, c); j >= 0 {
			if op.dims[j] != t.Shape[i] {
				return einsumOperand{}, 0, fmt.Errorf("label %q repeated on dimensions of sizes %d and %d", c, op.dims[j], t.Shape[i])
			}
			op.strides[j] += st[i]
			continue
		}
		op.labels = append(op.labels, c)
		op.dims = append(op.dims, t.Shape[i])
		op.strides = append(op.strides, st[i])
	}
	return op, nEll, nil
}

// arrange returns the operand's data with its dimensions in the order of
// labels (all of its own), copied unless it already is in that layout.
func (o *einsumOperand) arrange(labels []rune) (*Tensor, error) {
	shape, strides := make([]int, len(labels)), make([]int, len(labels))
	for i, c := range labels {
		j := slices.Index(o.labels, c)
		shape[i], strides[i] = o.dims[j], o.strides[j]
	}
	if Size(shape) == o.t.Len() && slices.Equal(strides, contiguousStrides(shape)) {
		return o.t.WithShape(shape), nil
	}
	return copyView(o.t, shape, 0, strides)
}

// sumOut sums the operand over the labels it has that keep does not
// list, leaving a contiguous operand.
func (o *einsumOperand) sumOut(keep func(rune) bool) error {
	var kept, gone []rune
	for _, c := range o.labels {
		if keep(c) {
			kept = append(kept, c)
		} else {
			gone = append(gone, c)
		}
	}
	t, err := o.arrange(append(append([]rune{}, kept...), gone...))
	if err != nil {
		return err
	}
	dims := make([]int, len(kept))
	for i, c := range kept {
		dims[i] = o.dims[slices.Index(o.labels, c)]
	}
	if len(gone) > 0 {
		inner := Size(t.Shape[len(kept):])
		s := New(t.DType, dims...)
		switch t.DType {
		case Float32:
			sumRows(s.F32, t.F32, inner)
		case Int32:
			sumRows(s.I32, t.I32, inner)
		case Int64:
			sumRows(s.I64, t.I64, inner)
		default:
			return fmt.Errorf("element type %s is not supported", t.DType)
		}
		t = s
	}
	*o = einsumOperand{t: t, labels: kept, dims: dims, strides: contiguousStrides(dims)}
	return nil
}

func sumRows[T float32 | int32 | int64](dst, src []T, inner int) {
	for i := range dst {
		var s T
		for _, v := range src[i*inner : (i+1)*inner] {
			s += v
		}
		dst[i] = s
	}
}

// einsum computes Einsum of one operand (transposes, diagonals, sums) or
// two (sums of products: each label both operands have and the output
// lacks is contracted by a batched matrix product).
func einsum(n *Node, in []*Tensor) ([]*Tensor, error) {
	e, err := parseEinsum(n.String("equation", ""), len(in))
	if err != nil {
		return nil, err
	}
	ops := make([]einsumOperand, len(in))
	nEll := 0
	for i, t := range in {
		if i > 0 && t.DType != in[0].DType {
			return nil, fmt.Errorf("operands of types %s and %s", in[0].DType, t.DType)
		}
		var k int
		if ops[i], k, err = einsumView(t, e.in[i], e.inEll[i]); err != nil {
			return nil, fmt.Errorf("operand %d: %w", i, err)
		}
		nEll = max(nEll, k)
	}
	out := e.out
	if e.outEll >= 0 {
		out = append([]rune{}, e.out[:e.outEll]...)
		for k := nEll - 1; k >= 0; k-- {
			out = append(out, ellLabel(k))
		}
		out = append(out, e.out[e.outEll:]...)
	}
	size := map[rune]int{}
	for _, o := range ops {
		for j, c := range o.labels {
			if d, ok := size[c]; ok && d != o.dims[j] {
				return nil, fmt.Errorf("label %q has sizes %d and %d (broadcasting is not supported)", c, d, o.dims[j])
			}
			size[c] = o.dims[j]
		}
	}
	inOut := func(c rune) bool { return slices.Contains(out, c) }
	if len(ops) == 1 {
		if err := ops[0].sumOut(inOut); err != nil {
			return nil, err
		}
		res, err := ops[0].arrange(out)
		if err != nil {
			return nil, err
		}
		if sameData(res, in[0]) {
			res = res.Clone() // a plain relabelling: the output must be new
		}
		return []*Tensor{res}, nil
	}
	a, b := &ops[0], &ops[1]
	if a.t.DType != Float32 {
		return nil, fmt.Errorf("Einsum of two operands of element type %s: only float32 is supported", a.t.DType)
	}
	// Labels only one operand has and the output lacks are summed first.
	if err := a.sumOut(func(c rune) bool { return inOut(c) || slices.Contains(b.labels, c) }); err != nil {
		return nil, err
	}
	if err := b.sumOut(func(c rune) bool { return inOut(c) || slices.Contains(a.labels, c) }); err != nil {
		return nil, err
	}
	var batch, contract, aKeep, bKeep []rune
	for _, c := range a.labels {
		switch inB := slices.Contains(b.labels, c); {
		case inB && inOut(c):
			batch = append(batch, c)
		case inB:
			contract = append(contract, c)
		default:
			aKeep = append(aKeep, c)
		}
	}
	for _, c := range b.labels {
		if !slices.Contains(a.labels, c) {
			bKeep = append(bKeep, c)
		}
	}
	dims := func(ls []rune) int {
		p := 1
		for _, c := range ls {
			p *= size[c]
		}
		return p
	}
	nb, m, k, nn := dims(batch), dims(aKeep), dims(contract), dims(bKeep)
	cat := func(parts ...[]rune) []rune { return slices.Concat(parts...) }
	at, err := a.arrange(cat(batch, aKeep, contract))
	if err != nil {
		return nil, err
	}
	// B as [batch, bKeep, contract] when that is its layout (the product
	// then takes dot products of rows, as attention's Q·Kᵀ), else as
	// [batch, contract, bKeep].
	resLabels := cat(batch, aKeep, bKeep)
	shape := make([]int, len(resLabels))
	for i, c := range resLabels {
		shape[i] = size[c]
	}
	if err := checkedShape(shape); err != nil {
		return nil, err
	}
	res := New(Float32, shape...)
	// Products too small to split by rows are split by batch.
	workers := 1
	if per := m * nn * k; nb > 1 && rowWorkers(m, per) < 2 {
		workers = min(rowWorkers(nb*4, per*nb), nb)
	}
	if b.isLayout(cat(batch, bKeep, contract)) {
		bt := b.t.F32
		parallelSplit(nb, workers, func(i0, i1 int) {
			for i := i0; i < i1; i++ {
				sgemmNT(m, nn, k, 1, at.F32[i*m*k:(i+1)*m*k], bt[i*nn*k:(i+1)*nn*k], res.F32[i*m*nn:(i+1)*m*nn])
			}
		})
	} else {
		bt, err := b.arrange(cat(batch, contract, bKeep))
		if err != nil {
			return nil, err
		}
		parallelSplit(nb, workers, func(i0, i1 int) {
			for i := i0; i < i1; i++ {
				sgemm(m, nn, k, 1, at.F32[i*m*k:(i+1)*m*k], k, 1, bt.F32[i*k*nn:(i+1)*k*nn], res.F32[i*m*nn:(i+1)*m*nn])
			}
		})
	}
	r := einsumOperand{t: res, labels: resLabels, dims: shape, strides: contiguousStrides(shape)}
	final, err := r.arrange(out)
	if err != nil {
		return nil, err
	}
	return []*Tensor{final}, nil
}

// isLayout reports whether the operand's data is contiguous in the order
// of labels.
func (o *einsumOperand) isLayout(labels []rune) bool {
	shape, strides := make([]int, len(labels)), make([]int, len(labels))
	for i, c := range labels {
		j := slices.Index(o.labels, c)
		shape[i], strides[i] = o.dims[j], o.strides[j]
	}
	return Size(shape) == o.t.Len() && slices.Equal(strides, contiguousStrides(shape))
}

// sameData reports whether two tensors share their data.
func sameData(a, b *Tensor) bool {
	if a.Len() == 0 || b.Len() == 0 {
		return false
	}
	switch {
	case a.F32 != nil && b.F32 != nil:
		return &a.F32[0] == &b.F32[0]
	case a.I32 != nil && b.I32 != nil:
		return &a.I32[0] == &b.I32[0]
	case a.I64 != nil && b.I64 != nil:
		return &a.I64[0] == &b.I64[0]
	case a.U8 != nil && b.U8 != nil:
		return &a.U8[0] == &b.U8[0]
	case a.I8 != nil && b.I8 != nil:
		return &a.I8[0] == &b.I8[0]
	case a.B != nil && b.B != nil:
		return &a.B[0] == &b.B[0]
	}
	return false
}
