package interp

import (
	"errors"
	"fmt"
	"math"
)

// addDimsOps registers the operators that compute or change shapes and
// move elements without arithmetic: Shape, Size, Squeeze, Unsqueeze,
// Expand, Tile, ConstantOfShape, Slice, Split, DepthToSpace and
// SpaceToDepth. They work on every element type.
func addDimsOps(t ops) {
	unary := checkInputs(1, 1)
	t["Shape"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: unary, Run: shapeKernel, Fresh: true}
	t["Size"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: unary, Run: sizeKernel, Fresh: true}
	t["Squeeze"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: checkSqueeze, Run: squeeze, View: true}
	t["Unsqueeze"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: checkUnsqueeze, Run: unsqueeze, View: true}
	t["Expand"] = Op{MinOpset: 8, MaxOpset: MaxOpset, Check: checkInputs(2, 2), Run: expand, Fresh: true}
	t["Tile"] = Op{MinOpset: 6, MaxOpset: MaxOpset, Check: checkInputs(2, 2), Run: tile, Fresh: true}
	t["ConstantOfShape"] = Op{MinOpset: 9, MaxOpset: MaxOpset, Check: all(unary, checkConstantOfShape), Run: constantOfShape, Fresh: true}
	t["Slice"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: checkSlice, Run: slice, Fresh: true}
	t["Split"] = Op{MinOpset: 2, MaxOpset: MaxOpset, Check: checkSplit, Run: split, Fresh: true}
	t["DepthToSpace"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: all(unary, checkDepthToSpace), Run: depthToSpace, Fresh: true}
	t["SpaceToDepth"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: all(unary, checkBlocksize), Run: spaceToDepth, Fresh: true}
}

// shapeKernel is Shape: the input's dimensions as int64, from start to end
// (opset 15; negative values count from the end, both are clamped).
func shapeKernel(n *Node, in []*Tensor) ([]*Tensor, error) {
	r := int64(len(in[0].Shape))
	clamp := func(v int64) int64 {
		if v < 0 {
			v += r
		}
		return min(max(v, 0), r)
	}
	start, end := clamp(n.Int("start", 0)), clamp(n.Int("end", r))
	out := New(Int64, int(max(end-start, 0)))
	for i := range out.I64 {
		out.I64[i] = int64(in[0].Shape[int(start)+i])
	}
	return []*Tensor{out}, nil
}

func sizeKernel(_ *Node, in []*Tensor) ([]*Tensor, error) {
	return []*Tensor{FromInt64([]int64{int64(in[0].Len())})}, nil
}

// axesInput returns a node's axes: the attribute before opset 13, the
// optional second input from 13 on (nil when absent either way).
func axesInput(n *Node, in []*Tensor) ([]int64, error) {
	if n.Opset < 13 {
		return n.Ints("axes", nil), nil
	}
	if len(in) < 2 || in[1] == nil {
		return nil, nil
	}
	return intList(in[1], "axes")
}

// checkAxesForm refuses the axes attribute from opset 13 on (axes are an
// input there) and an axes input before it.
func checkAxesForm(n *Node) error {
	if n.Opset >= 13 && n.Has("axes") {
		return fmt.Errorf("attribute axes is an input from opset 13 on")
	}
	if n.Opset < 13 && len(n.Proto.GetInput()) > 1 {
		return fmt.Errorf("axes is an attribute before opset 13, not an input")
	}
	return nil
}

func checkSqueeze(n *Node) error {
	if c := len(n.Proto.GetInput()); c < 1 || c > 2 || n.Proto.GetInput()[0] == "" {
		return fmt.Errorf("%d inputs, want data and optional axes", c)
	}
	return checkAxesForm(n)
}

func squeeze(n *Node, in []*Tensor) ([]*Tensor, error) {
	t := in[0]
	axes, err := axesInput(n, in)
	if err != nil {
		return nil, err
	}
	drop := make([]bool, len(t.Shape))
	if len(axes) == 0 { // absent or empty: every dimension of size 1, as ONNX Runtime does
		for i, d := range t.Shape {
			drop[i] = d == 1
		}
	} else {
		ax, err := normAxes(axes, len(t.Shape))
		if err != nil {
			return nil, err
		}
		for _, a := range ax {
			if t.Shape[a] != 1 {
				return nil, fmt.Errorf("cannot squeeze axis %d of shape %s: its size is not 1", a, ShapeString(t.Shape))
			}
			drop[a] = true
		}
	}
	shape := make([]int, 0, len(t.Shape))
	for i, d := range t.Shape {
		if !drop[i] {
			shape = append(shape, d)
		}
	}
	return []*Tensor{t.WithShape(shape)}, nil
}

func checkUnsqueeze(n *Node) error {
	in := n.Proto.GetInput()
	if n.Opset >= 13 {
		if len(in) != 2 || in[0] == "" || in[1] == "" {
			return fmt.Errorf("%d inputs, want data and axes", len(in))
		}
	} else {
		if len(in) != 1 || in[0] == "" {
			return fmt.Errorf("%d inputs, want 1", len(in))
		}
		if !n.Has("axes") {
			return fmt.Errorf("missing attribute axes")
		}
	}
	return checkAxesForm(n)
}

func unsqueeze(n *Node, in []*Tensor) ([]*Tensor, error) {
	t := in[0]
	axes, err := axesInput(n, in)
	if err != nil {
		return nil, err
	}
	r := len(t.Shape) + len(axes)
	ax, err := normAxes(axes, r)
	if err != nil {
		return nil, err
	}
	insert := make([]bool, r)
	for _, a := range ax {
		insert[a] = true
	}
	shape := make([]int, r)
	j := 0
	for i := range shape {
		if insert[i] {
			shape[i] = 1
			continue
		}
		shape[i] = t.Shape[j]
		j++
	}
	return []*Tensor{t.WithShape(shape)}, nil
}

// broadcastView returns the strides of t viewed at the broadcast shape out
// (0 on the dimensions t repeats).
func broadcastView(t []int, out []int) []int {
	st := contiguousStrides(t)
	view := make([]int, len(out))
	off := len(out) - len(t)
	for i := range t {
		if t[i] != 1 || out[off+i] == 1 {
			view[off+i] = st[i]
		}
	}
	return view
}

func expand(_ *Node, in []*Tensor) ([]*Tensor, error) {
	t := in[0]
	want, err := intList(in[1], "shape")
	if err != nil {
		return nil, err
	}
	target, err := shapeFrom(want)
	if err != nil {
		return nil, fmt.Errorf("shape %v: %w", want, err)
	}
	shape, err := BroadcastShapes(t.Shape, target)
	if err != nil {
		return nil, err
	}
	if err := checkedShape(shape); err != nil {
		return nil, err
	}
	out, err := copyView(t, shape, 0, broadcastView(t.Shape, shape))
	if err != nil {
		return nil, err
	}
	return []*Tensor{out}, nil
}

func tile(_ *Node, in []*Tensor) ([]*Tensor, error) {
	t := in[0]
	reps, err := intList(in[1], "repeats")
	if err != nil {
		return nil, err
	}
	r := len(t.Shape)
	if len(reps) != r {
		return nil, fmt.Errorf("repeats %v for an input of rank %d", reps, r)
	}
	// The output is the view [rep0, d0, rep1, d1, ...] of the input with
	// stride 0 on the repeats.
	st := contiguousStrides(t.Shape)
	view, strides := make([]int, 2*r), make([]int, 2*r)
	shape := make([]int, r)
	dims := make([]int64, r)
	for i, k := range reps {
		if k < 0 {
			return nil, fmt.Errorf("repeats %v has a negative count", reps)
		}
		dims[i] = int64(t.Shape[i]) * k
		if k > maxElements || (t.Shape[i] > 0 && dims[i]/int64(t.Shape[i]) != k) {
			return nil, fmt.Errorf("repeats %v give too many elements", reps)
		}
		view[2*i], view[2*i+1] = int(k), t.Shape[i]
		strides[2*i+1] = st[i]
	}
	if _, err := checkedSize(dims); err != nil {
		return nil, fmt.Errorf("repeats %v: %w", reps, err)
	}
	for i, d := range dims {
		shape[i] = int(d)
	}
	out := New(t.DType, shape...)
	if err := moveSpans(out, t, viewSpans(view, 0, strides), nil); err != nil {
		return nil, err
	}
	return []*Tensor{out}, nil
}

// constantOfShapeValue reads ConstantOfShape's value attribute: one
// element, float32 zero when absent.
func constantOfShapeValue(n *Node) (*Tensor, error) {
	a := n.attr("value")
	if a == nil {
		return FromFloat32([]float32{0}), nil
	}
	if a.GetT() == nil {
		return nil, errors.New("attribute value holds no tensor")
	}
	v, err := TensorFromProto(a.GetT())
	if err != nil {
		return nil, fmt.Errorf("attribute value: %w", err)
	}
	if v.Len() != 1 {
		return nil, fmt.Errorf("attribute value has %d elements, want 1", v.Len())
	}
	return v, nil
}

func checkConstantOfShape(n *Node) error {
	_, err := constantOfShapeValue(n)
	return err
}

func constantOfShape(n *Node, in []*Tensor) ([]*Tensor, error) {
	v, err := constantOfShapeValue(n)
	if err != nil {
		return nil, err
	}
	dims, err := intList(in[0], "input")
	if err != nil {
		return nil, err
	}
	shape, err := shapeFrom(dims)
	if err != nil {
		return nil, fmt.Errorf("shape %v: %w", dims, err)
	}
	out := New(v.DType, shape...)
	if out.Len() > 0 {
		if err := moveSpans(out, nil, []span{{d: 0, s: -1, n: out.Len()}}, v.WithShape(nil)); err != nil {
			return nil, err
		}
	}
	return []*Tensor{out}, nil
}

func checkSlice(n *Node) error {
	in := n.Proto.GetInput()
	if n.Opset < 10 {
		if len(in) != 1 || in[0] == "" {
			return fmt.Errorf("%d inputs, want 1 before opset 10", len(in))
		}
		if !n.Has("starts") || !n.Has("ends") {
			return fmt.Errorf("attributes starts and ends are required before opset 10")
		}
		return nil
	}
	if len(in) < 3 || len(in) > 5 || in[0] == "" || in[1] == "" || in[2] == "" {
		return fmt.Errorf("%d inputs, want data, starts, ends and optional axes and steps", len(in))
	}
	return nil
}

// sliceParams reads Slice's starts, ends, axes and steps from the
// attributes (before opset 10) or the inputs.
func sliceParams(n *Node, in []*Tensor) (starts, ends, axes, steps []int64, err error) {
	if n.Opset < 10 {
		return n.Ints("starts", nil), n.Ints("ends", nil), n.Ints("axes", nil), nil, nil
	}
	if starts, err = intList(in[1], "starts"); err != nil {
		return
	}
	if ends, err = intList(in[2], "ends"); err != nil {
		return
	}
	if len(in) > 3 && in[3] != nil {
		if axes, err = intList(in[3], "axes"); err != nil {
			return
		}
	}
	if len(in) > 4 && in[4] != nil {
		steps, err = intList(in[4], "steps")
	}
	return
}

// sliceRange clamps a start and end on a dimension of size dim for step,
// as ONNX Slice does, and returns the clamped start and the count.
func sliceRange(start, end, step int64, dim int) (int64, int) {
	d := int64(dim)
	if start < 0 {
		start += d
	}
	if end < 0 {
		end += d
	}
	if step > 0 {
		start = min(max(start, 0), d)
		end = min(max(end, 0), d)
		if end <= start {
			return start, 0
		}
		return start, int((end - start + step - 1) / step)
	}
	start = min(max(start, -1), d-1)
	end = min(max(end, -1), d-1)
	if end >= start {
		return start, 0
	}
	return start, int((start - end - step - 1) / -step)
}

func slice(n *Node, in []*Tensor) ([]*Tensor, error) {
	t := in[0]
	starts, ends, axes, steps, err := sliceParams(n, in)
	if err != nil {
		return nil, err
	}
	if len(ends) != len(starts) || (axes != nil && len(axes) != len(starts)) || (steps != nil && len(steps) != len(starts)) {
		return nil, fmt.Errorf("starts %v, ends %v, axes %v and steps %v differ in length", starts, ends, axes, steps)
	}
	r := len(t.Shape)
	ax := make([]int, len(starts))
	if axes == nil {
		if len(starts) > r {
			return nil, fmt.Errorf("%d starts for an input of rank %d", len(starts), r)
		}
		for i := range ax {
			ax[i] = i
		}
	} else if ax, err = normAxes(axes, r); err != nil {
		return nil, err
	}
	st := contiguousStrides(t.Shape)
	shape := append([]int(nil), t.Shape...)
	strides := append([]int(nil), st...)
	base := 0
	for i, a := range ax {
		step := int64(1)
		if steps != nil {
			step = steps[i]
		}
		if step == 0 {
			return nil, errors.New("steps must not be zero")
		}
		if step > math.MaxInt32 || step < -math.MaxInt32 {
			step = int64(t.Shape[a]) + 1 // takes one element at most, as the huge step does
			if steps[i] < 0 {
				step = -step
			}
		}
		s, c := sliceRange(starts[i], ends[i], step, t.Shape[a])
		shape[a] = c
		if c > 0 {
			base += int(s) * st[a]
		}
		strides[a] = int(step) * st[a]
	}
	out, err := copyView(t, shape, base, strides)
	if err != nil {
		return nil, err
	}
	return []*Tensor{out}, nil
}

func checkSplit(n *Node) error {
	in := n.Proto.GetInput()
	if len(in) < 1 || in[0] == "" || len(in) > 2 {
		return fmt.Errorf("%d inputs, want input and optional split", len(in))
	}
	if n.Opset < 13 && len(in) > 1 {
		return fmt.Errorf("split is an attribute before opset 13, not an input")
	}
	if n.Opset >= 13 && n.Has("split") {
		return fmt.Errorf("attribute split is an input from opset 13 on")
	}
	if len(n.Proto.GetOutput()) == 0 {
		return fmt.Errorf("no outputs")
	}
	return nil
}

func split(n *Node, in []*Tensor) ([]*Tensor, error) {
	t := in[0]
	axis, err := NormAxis(n.Int("axis", 0), len(t.Shape))
	if err != nil {
		return nil, err
	}
	outs := len(n.Proto.GetOutput())
	dim := t.Shape[axis]
	var parts []int64
	if n.Opset < 13 {
		parts = n.Ints("split", nil)
	} else if len(in) > 1 && in[1] != nil {
		if parts, err = intList(in[1], "split"); err != nil {
			return nil, err
		}
	}
	if parts == nil && n.Has("num_outputs") {
		// Opset 18's form: parts of ceil(dim/outs), the last one smaller.
		if k := n.Int("num_outputs", 0); k != int64(outs) {
			return nil, fmt.Errorf("attribute num_outputs is %d for %d outputs", k, outs)
		}
		size := (dim + outs - 1) / outs
		parts = make([]int64, outs)
		for i := range parts {
			parts[i] = int64(max(0, min(size, dim-i*size)))
		}
	}
	if parts == nil {
		if dim%outs != 0 {
			return nil, fmt.Errorf("axis %d of size %d does not split into %d equal parts", axis, dim, outs)
		}
		parts = make([]int64, outs)
		for i := range parts {
			parts[i] = int64(dim / outs)
		}
	}
	if len(parts) != outs {
		return nil, fmt.Errorf("split %v has %d parts for %d outputs", parts, len(parts), outs)
	}
	sum := int64(0)
	for _, p := range parts {
		if p < 0 {
			return nil, fmt.Errorf("split %v has a negative part", parts)
		}
		sum += p
	}
	if sum != int64(dim) {
		return nil, fmt.Errorf("split %v sums to %d, not the size %d of axis %d", parts, sum, dim, axis)
	}
	st := contiguousStrides(t.Shape)
	res := make([]*Tensor, outs)
	off := 0
	for i, p := range parts {
		shape := append([]int(nil), t.Shape...)
		shape[axis] = int(p)
		if res[i], err = copyView(t, shape, off*st[axis], st); err != nil {
			return nil, err
		}
		off += int(p)
	}
	return res, nil
}

func checkBlocksize(n *Node) error {
	if b := n.Int("blocksize", 0); b < 1 || b > math.MaxInt32 {
		return fmt.Errorf("attribute blocksize is %d, want a positive number", b)
	}
	return nil
}

func checkDepthToSpace(n *Node) error {
	if err := checkBlocksize(n); err != nil {
		return err
	}
	if m := n.String("mode", "DCR"); m != "DCR" && m != "CRD" {
		return fmt.Errorf("attribute mode is %q, want DCR or CRD", m)
	}
	return nil
}

// depthToSpace moves blocks of channels into b x b spatial blocks: the
// output [N, C/b², H*b, W*b] is a strided view of the input.
func depthToSpace(n *Node, in []*Tensor) ([]*Tensor, error) {
	t := in[0]
	b := int(n.Int("blocksize", 0))
	if len(t.Shape) != 4 || t.Shape[1]%(b*b) != 0 {
		return nil, fmt.Errorf("input shape %s: want N x C x H x W with C divisible by blocksize² = %d", ShapeString(t.Shape), b*b)
	}
	N, C, H, W := t.Shape[0], t.Shape[1], t.Shape[2], t.Shape[3]
	c := C / (b * b)
	hw := H * W
	// View dimensions: N, c, H, b (rows), W, b (columns).
	var sb1, sb2, sc int
	if n.String("mode", "DCR") == "DCR" { // channels ordered [b1, b2, c]
		sb1, sb2, sc = b*c*hw, c*hw, hw
	} else { // CRD: channels ordered [c, b1, b2]
		sc, sb1, sb2 = b*b*hw, b*hw, hw
	}
	out, err := copyView(t, []int{N, c, H, b, W, b}, 0, []int{C * hw, sc, W, sb1, 1, sb2})
	if err != nil {
		return nil, err
	}
	out.Shape = []int{N, c, H * b, W * b}
	return []*Tensor{out}, nil
}

// spaceToDepth is DepthToSpace's inverse in DCR order.
func spaceToDepth(n *Node, in []*Tensor) ([]*Tensor, error) {
	t := in[0]
	b := int(n.Int("blocksize", 0))
	if len(t.Shape) != 4 || t.Shape[2]%b != 0 || t.Shape[3]%b != 0 {
		return nil, fmt.Errorf("input shape %s: want N x C x H x W with H and W divisible by blocksize %d", ShapeString(t.Shape), b)
	}
	N, C, H, W := t.Shape[0], t.Shape[1], t.Shape[2], t.Shape[3]
	// View dimensions: N, b (rows), b (columns), C, H/b, W/b.
	out, err := copyView(t, []int{N, b, b, C, H / b, W / b}, 0, []int{C * H * W, W, 1, H * W, b * W, b})
	if err != nil {
		return nil, err
	}
	out.Shape = []int{N, C * b * b, H / b, W / b}
	return []*Tensor{out}, nil
}
