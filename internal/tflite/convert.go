package tflite

import (
	"fmt"
	"math"
	"slices"
	"strings"

	flatbuffers "github.com/google/flatbuffers/go"

	"outpost.dev/outpost/internal/onnx/onnxpb"
	fb "outpost.dev/outpost/internal/tflite/schema/tflite"
)

// Options tune Convert.
type Options struct {
	// Batch is the size given to the inputs' first dimension when the
	// ONNX model leaves it symbolic (TensorFlow Lite tensors have fixed
	// shapes); 0 means 1.
	Batch int
}

// Supported returns the ONNX operators Convert knows, sorted.
func Supported() []string {
	return []string{"Add", "AveragePool", "Conv", "DequantizeLinear", "Flatten", "Gemm", "MaxPool",
		"QuantizeLinear", "Relu", "Reshape", "Softmax"}
}

// value is an ONNX value as a tensor of the graph being written.
type value struct {
	t     int32
	shape []int // ONNX's shape (NCHW for rank 4)
	// nhwc: a rank-4 value, stored as [N, H, W, C].
	nhwc bool
	// perm, for a value flattened from NHWC whose order differs from
	// ONNX's: stored element i is ONNX's element perm[i] (nil: the same).
	perm []int
	q    *quant // int8 per tensor; nil: float32
	deq  int32  // its float32 tensor, once a DEQUANTIZE made it (-1: none)
}

// stored is v's shape as stored.
func (v *value) stored() []int32 {
	s := v.shape
	if v.nhwc {
		s = []int{s[0], s[2], s[3], s[1]}
	}
	out := make([]int32, len(s))
	for i, d := range s {
		out[i] = int32(d)
	}
	return out
}

type converter struct {
	g       *graph
	opset   int64
	batch   int
	consts  map[string]*constant
	vals    map[string]*value
	uses    map[string][]*onnxpb.NodeProto
	outputs map[string]bool
	skip    map[*onnxpb.NodeProto]bool // nodes folded into an earlier one
}

// nodeError names node n and its operator.
func nodeError(n *onnxpb.NodeProto, format string, args ...any) error {
	name := n.GetName()
	if name == "" && len(n.GetOutput()) > 0 {
		name = "-> " + n.GetOutput()[0] // an unnamed node, by its output
	}
	return fmt.Errorf("tflite: node %q (%s): %s", name, n.GetOpType(), fmt.Sprintf(format, args...))
}

// Convert returns m as a TensorFlow Lite model (see the package
// documentation for what it supports and how). m is not changed.
func Convert(m *onnxpb.ModelProto, opts Options) ([]byte, error) {
	if m == nil || m.Graph == nil {
		return nil, fmt.Errorf("tflite: model has no graph")
	}
	if opts.Batch < 0 || opts.Batch > 1<<16 {
		return nil, fmt.Errorf("tflite: batch %d: want 0 to 65536", opts.Batch)
	}
	c := &converter{g: newGraph(), batch: max(opts.Batch, 1), consts: map[string]*constant{}, vals: map[string]*value{},
		uses: map[string][]*onnxpb.NodeProto{}, outputs: map[string]bool{}, skip: map[*onnxpb.NodeProto]bool{}}
	for _, o := range m.OpsetImport {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			c.opset = o.GetVersion()
		}
	}
	g := m.Graph
	for _, t := range g.Initializer {
		k, err := readConstant(t)
		if err != nil {
			return nil, fmt.Errorf("tflite: %w", err)
		}
		c.consts[k.name] = k
	}
	for _, n := range g.Node {
		for _, in := range n.Input {
			c.uses[in] = append(c.uses[in], n)
		}
	}
	for _, o := range g.Output {
		c.outputs[o.GetName()] = true
	}
	for _, in := range g.Input {
		if _, ok := c.consts[in.GetName()]; ok {
			continue
		}
		if err := c.input(in); err != nil {
			return nil, err
		}
	}
	if len(c.g.inputs) == 0 {
		return nil, fmt.Errorf("tflite: model has no input")
	}
	for _, n := range g.Node {
		if c.skip[n] {
			continue
		}
		if d := n.GetDomain(); d != "" && d != "ai.onnx" {
			return nil, nodeError(n, "domain %q is not supported", d)
		}
		if err := c.node(n); err != nil {
			return nil, err
		}
	}
	if len(g.Output) == 0 {
		return nil, fmt.Errorf("tflite: model has no output")
	}
	for _, o := range g.Output {
		v, ok := c.vals[o.GetName()]
		if !ok {
			return nil, fmt.Errorf("tflite: output %q is not computed by any node", o.GetName())
		}
		if v.perm != nil {
			return nil, fmt.Errorf("tflite: output %q: a flattened image in a permuted order", o.GetName())
		}
		c.g.outputs = append(c.g.outputs, c.asFloat(o.GetName(), v))
	}
	return c.g.marshal("ONNX graph " + g.GetName() + " converted by outpost"), nil
}

// input adds graph input in: float32, its first dimension the batch.
func (c *converter) input(in *onnxpb.ValueInfoProto) error {
	tt := in.GetType().GetTensorType()
	if tt == nil || tt.GetElemType() != int32(onnxpb.TensorProto_FLOAT) {
		return fmt.Errorf("tflite: input %q: want a float32 tensor", in.GetName())
	}
	dims := tt.GetShape().GetDim()
	if len(dims) < 1 {
		return fmt.Errorf("tflite: input %q: want a shape [N, ...]", in.GetName())
	}
	shape := make([]int, len(dims))
	for i, d := range dims {
		switch {
		case d.GetDimParam() != "" || (i == 0 && d.GetDimValue() <= 0):
			if i != 0 {
				return fmt.Errorf("tflite: input %q: dimension %d is not fixed", in.GetName(), i)
			}
			shape[i] = c.batch
		case d.GetDimValue() > 0 && d.GetDimValue() <= 1<<24:
			shape[i] = int(d.GetDimValue())
		default:
			return fmt.Errorf("tflite: input %q: dimension %d of size %d", in.GetName(), i, d.GetDimValue())
		}
	}
	if e, err := size(int64s(shape)); err != nil || e > maxElements {
		return fmt.Errorf("tflite: input %q of shape %v: more than %d elements", in.GetName(), shape, maxElements)
	}
	v := &value{shape: shape, nhwc: len(shape) == 4, deq: -1}
	v.t = c.g.addTensor(tensor{name: in.GetName(), shape: v.stored(), typ: fb.TensorTypeFLOAT32}, nil)
	c.vals[in.GetName()] = v
	c.g.inputs = append(c.g.inputs, v.t)
	return nil
}

func int64s(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

// node converts one node.
func (c *converter) node(n *onnxpb.NodeProto) error {
	if len(n.Output) < 1 || n.Output[0] == "" {
		return nodeError(n, "no output")
	}
	switch n.GetOpType() {
	case "Gemm":
		return c.gemm(n)
	case "Conv":
		return c.conv(n)
	case "MaxPool", "AveragePool":
		return c.pool(n)
	case "Relu":
		return c.relu(n)
	case "Softmax":
		return c.softmax(n)
	case "Flatten", "Reshape":
		return c.reshape(n)
	case "Add":
		return c.add(n)
	case "QuantizeLinear":
		return c.quantize(n)
	case "DequantizeLinear":
		return c.dequantize(n)
	}
	return nodeError(n, "operator not supported (supported: %s)", strings.Join(Supported(), ", "))
}

// in returns node n's input i as a value.
func (c *converter) in(n *onnxpb.NodeProto, i int) (*value, error) {
	if i >= len(n.Input) || n.Input[i] == "" {
		return nil, nodeError(n, "input %d missing", i)
	}
	v, ok := c.vals[n.Input[i]]
	if !ok {
		if _, k := c.consts[n.Input[i]]; k {
			return nil, nodeError(n, "input %q is a constant: want a computed value", n.Input[i])
		}
		return nil, nodeError(n, "input %q is not computed before the node", n.Input[i])
	}
	return v, nil
}

// constIn returns node n's input i as a constant (nil when absent and
// optional).
func (c *converter) constIn(n *onnxpb.NodeProto, i int, optional bool) (*constant, error) {
	if i >= len(n.Input) || n.Input[i] == "" {
		if optional {
			return nil, nil
		}
		return nil, nodeError(n, "input %d missing", i)
	}
	k, ok := c.consts[n.Input[i]]
	if !ok {
		return nil, nodeError(n, "input %q: want an initializer", n.Input[i])
	}
	return k, nil
}

// maxElements bounds the elements of one value (with the batch).
const maxElements = 1 << 24

// set records n's output as v, checking the name is new.
func (c *converter) set(n *onnxpb.NodeProto, name string, v *value) error {
	if e, err := size(int64s(v.shape)); err != nil || e > maxElements {
		return nodeError(n, "output %q of shape %v: more than %d elements", name, v.shape, maxElements)
	}
	if _, ok := c.vals[name]; ok {
		return nodeError(n, "output %q is computed twice", name)
	}
	if _, ok := c.consts[name]; ok {
		return nodeError(n, "output %q is also an initializer", name)
	}
	c.vals[name] = v
	return nil
}

// newValue adds a tensor for a value of shape, int8 when q is not nil.
func (c *converter) newValue(name string, shape []int, nhwc bool, q *quant) *value {
	v := &value{shape: shape, nhwc: nhwc, q: q, deq: -1}
	t := tensor{name: name, shape: v.stored(), typ: fb.TensorTypeFLOAT32}
	if q != nil {
		t.typ, t.q = fb.TensorTypeINT8, q
	}
	v.t = c.g.addTensor(t, nil)
	return v
}

// asFloat returns v's float32 tensor, with a DEQUANTIZE for an int8 one.
func (c *converter) asFloat(name string, v *value) int32 {
	if v.q == nil {
		return v.t
	}
	if v.deq < 0 {
		f := c.newValue(name+"_dequantized", v.shape, v.nhwc, nil)
		c.g.ops = append(c.g.ops, operator{code: fb.BuiltinOperatorDEQUANTIZE, version: 2, in: []int32{v.t}, out: []int32{f.t},
			opts: func(b *flatbuffers.Builder) (fb.BuiltinOptions, flatbuffers.UOffsetT) {
				fb.DequantizeOptionsStart(b)
				return fb.BuiltinOptionsDequantizeOptions, fb.DequantizeOptionsEnd(b)
			}})
		v.deq = f.t
	}
	return v.deq
}

// attrs returns n's attributes by name.
func attrs(n *onnxpb.NodeProto) map[string]*onnxpb.AttributeProto {
	out := map[string]*onnxpb.AttributeProto{}
	for _, a := range n.Attribute {
		out[a.GetName()] = a
	}
	return out
}

func attrInt(a map[string]*onnxpb.AttributeProto, name string, def int64) int64 {
	if x, ok := a[name]; ok {
		return x.GetI()
	}
	return def
}

func attrInts(a map[string]*onnxpb.AttributeProto, name string, def []int64) []int64 {
	if x, ok := a[name]; ok {
		return x.Ints
	}
	return def
}

// known refuses attributes of n outside names.
func known(n *onnxpb.NodeProto, names ...string) error {
	for _, a := range n.Attribute {
		if !slices.Contains(names, a.GetName()) {
			return nodeError(n, "attribute %q is not supported", a.GetName())
		}
	}
	return nil
}

// fusedRelu returns the Relu that alone reads out, to fold into the node
// making out (nil when there is none).
func (c *converter) fusedRelu(out string) *onnxpb.NodeProto {
	us := c.uses[out]
	if len(us) != 1 || c.outputs[out] || us[0].GetOpType() != "Relu" || len(us[0].Output) != 1 || len(us[0].Attribute) != 0 ||
		(us[0].GetDomain() != "" && us[0].GetDomain() != "ai.onnx") {
		return nil
	}
	return us[0]
}

// outputQuant returns the int8 parameters of out, when the model gives
// them: out (through operators that keep a value's scale and range)
// feeds a QuantizeLinear and nothing else.
func (c *converter) outputQuant(out string) *quant {
	for range 64 {
		us := c.uses[out]
		if len(us) != 1 || c.outputs[out] || len(us[0].Output) < 1 {
			return nil
		}
		u := us[0]
		switch u.GetOpType() {
		case "QuantizeLinear":
			q, err := c.qdqParams(u)
			if err != nil {
				return nil
			}
			return q
		case "MaxPool", "Flatten", "Reshape":
			// These commute with rounding and clamping to the output's
			// range; AveragePool does not (it narrows the range, and a
			// value clamped before it would average wrongly).
			if u.Input[0] != out {
				return nil
			}
			out = u.Output[0]
		default:
			return nil
		}
	}
	return nil
}

// qdqParams are the int8 parameters of a per-tensor QuantizeLinear or
// DequantizeLinear node n (a uint8 zero point shifted by -128).
func (c *converter) qdqParams(n *onnxpb.NodeProto) (*quant, error) {
	s, err := c.constIn(n, 1, false)
	if err != nil {
		return nil, err
	}
	if s.f32 == nil || len(s.f32) != 1 || len(s.dims) > 1 {
		return nil, nodeError(n, "scale %q: want one float32 (per-tensor quantization)", s.name)
	}
	if !(s.f32[0] > 0) || math.IsInf(float64(s.f32[0]), 0) {
		return nil, nodeError(n, "scale %q is %v", s.name, s.f32[0])
	}
	zp, err := c.constIn(n, 2, true)
	if err != nil {
		return nil, err
	}
	z := int64(-128) // uint8 0, the default
	if zp != nil {
		if zp.i8 == nil || len(zp.i8) != 1 || len(zp.dims) > 1 {
			return nil, nodeError(n, "zero point %q: want one int8 or uint8", zp.name)
		}
		z = int64(zp.i8[0])
	}
	return &quant{scale: []float32{s.f32[0]}, zero: []int64{z}}, nil
}

func sameQuant(a, b *quant) bool {
	return a != nil && b != nil && slices.Equal(a.scale, b.scale) && slices.Equal(a.zero, b.zero) && a.dim == b.dim
}

func (c *converter) quantize(n *onnxpb.NodeProto) error {
	if err := known(n, "axis", "saturate"); err != nil {
		return err
	}
	x, err := c.in(n, 0)
	if err != nil {
		return err
	}
	q, err := c.qdqParams(n)
	if err != nil {
		return err
	}
	if sameQuant(x.q, q) {
		return c.set(n, n.Output[0], x)
	}
	f := c.asFloat(n.Input[0], x)
	v := c.newValue(n.Output[0], x.shape, x.nhwc, q)
	v.perm = x.perm
	c.g.ops = append(c.g.ops, operator{code: fb.BuiltinOperatorQUANTIZE, version: 2, in: []int32{f}, out: []int32{v.t},
		opts: func(b *flatbuffers.Builder) (fb.BuiltinOptions, flatbuffers.UOffsetT) {
			fb.QuantizeOptionsStart(b)
			return fb.BuiltinOptionsQuantizeOptions, fb.QuantizeOptionsEnd(b)
		}})
	return c.set(n, n.Output[0], v)
}

func (c *converter) dequantize(n *onnxpb.NodeProto) error {
	if err := known(n, "axis"); err != nil {
		return err
	}
	if len(n.Input) > 0 {
		if k, ok := c.consts[n.Input[0]]; ok {
			return c.dequantizeWeight(n, k)
		}
	}
	x, err := c.in(n, 0)
	if err != nil {
		return err
	}
	q, err := c.qdqParams(n)
	if err != nil {
		return err
	}
	if !sameQuant(x.q, q) {
		return nodeError(n, "input %q is not the output of a QuantizeLinear of the same scale and zero point", n.Input[0])
	}
	return c.set(n, n.Output[0], x)
}

// dequantizeWeight makes the float32 constant a DequantizeLinear of an
// int8 or uint8 initializer gives, keeping the int8 form when it is
// symmetric.
func (c *converter) dequantizeWeight(n *onnxpb.NodeProto, k *constant) error {
	if k.i8 == nil {
		return nodeError(n, "initializer %q: want int8 or uint8", k.name)
	}
	s, err := c.constIn(n, 1, false)
	if err != nil {
		return err
	}
	zp, err := c.constIn(n, 2, true)
	if err != nil {
		return err
	}
	if s.f32 == nil {
		return nodeError(n, "scale %q: want float32", s.name)
	}
	axis := -1
	if len(s.f32) != 1 || len(s.dims) == 1 {
		a := int(attrInt(attrs(n), "axis", 1))
		if a < -len(k.dims) || a >= len(k.dims) {
			return nodeError(n, "axis %d of a weight of dims %v", a, k.dims)
		}
		if a < 0 {
			a += len(k.dims)
		}
		axis = a
		if len(s.dims) != 1 || s.dims[0] != k.dims[axis] {
			return nodeError(n, "scale %q of dims %v for axis %d of dims %v", s.name, s.dims, axis, k.dims)
		}
	}
	zero := make([]int8, len(s.f32))
	if zp != nil {
		if zp.i8 == nil || len(zp.i8) != len(s.f32) || zp.u8 != k.u8 {
			return nodeError(n, "zero point %q does not match the scale and the weight's type", zp.name)
		}
		copy(zero, zp.i8)
	} else if k.u8 {
		for i := range zero {
			zero[i] = -128 // uint8 0
		}
	}
	inner := len(k.i8)
	if axis >= 0 {
		inner = 1
		for _, d := range k.dims[axis+1:] {
			inner *= d
		}
	}
	f := make([]float32, len(k.i8))
	// The int8 form needs int8 values, zero points of 0 and scales that
	// TensorFlow Lite takes (positive, finite).
	symmetric := !k.u8
	for _, x := range s.f32 {
		if !(x > 0) || math.IsInf(float64(x), 0) {
			symmetric = false
		}
	}
	for i, q := range k.i8 {
		ch := 0
		if axis >= 0 {
			ch = (i / inner) % len(s.f32)
		}
		if zero[ch] != 0 {
			symmetric = false
		}
		f[i] = float32(int32(q)-int32(zero[ch])) * s.f32[ch]
	}
	out := &constant{name: n.Output[0], dims: k.dims, f32: f}
	if symmetric {
		out.q = &qweight{data: k.i8, scale: s.f32, axis: axis}
	}
	if _, ok := c.consts[out.name]; ok {
		return nodeError(n, "output %q is also an initializer", out.name)
	}
	c.consts[out.name] = out
	return nil
}

// layer is a FULLY_CONNECTED, CONV_2D or DEPTHWISE_CONV_2D about to be
// written: its weight in TensorFlow Lite's layout, the axis of its output
// channels there, and its bias.
type layer struct {
	n       *onnxpb.NodeProto
	x       *value
	w       []float32
	wq      []int8    // nil: float
	wscale  []float32 // per output channel
	wshape  []int32
	chAxis  int
	bias    []float32
	outName string
	shape   []int
	nhwc    bool
	act     fb.ActivationFunctionType
	code    fb.BuiltinOperator
	opts    func(act fb.ActivationFunctionType) options
}

// emit writes l in int8 when its input, weight and output allow it,
// otherwise in float32.
func (c *converter) emit(l *layer) error {
	relu := c.fusedRelu(l.outName)
	name := l.outName
	if relu != nil {
		l.act = fb.ActivationFunctionTypeRELU
		name = relu.Output[0]
	}
	outQ := c.outputQuant(name)
	version := int32(1)
	var in, wt, bt int32
	var out *value
	if l.x.q != nil && l.wq != nil && outQ != nil {
		in = l.x.t
		sIn := float64(l.x.q.scale[0])
		bq := make([]int32, len(l.wscale))
		bscale := make([]float32, len(l.wscale))
		for ch, s := range l.wscale {
			bscale[ch] = float32(sIn * float64(s))
			if l.bias != nil {
				r := math.RoundToEven(float64(l.bias[ch]) / (sIn * float64(s)))
				bq[ch] = int32(max(math.MinInt32, min(math.MaxInt32, r)))
			}
		}
		wt = c.g.addTensor(tensor{name: l.n.Input[1] + "_int8", shape: l.wshape, typ: fb.TensorTypeINT8,
			q: &quant{scale: l.wscale, zero: make([]int64, len(l.wscale)), dim: int32(l.chAxis)}}, int8Bytes(l.wq))
		bt = c.g.addTensor(tensor{name: l.outName + "_bias_int32", shape: []int32{int32(len(bq))}, typ: fb.TensorTypeINT32,
			q: &quant{scale: bscale, zero: make([]int64, len(bq))}}, int32Bytes(bq))
		out = c.newValue(name, l.shape, l.nhwc, outQ)
		version = 3
		if l.code == fb.BuiltinOperatorFULLY_CONNECTED {
			c.fullyConnectedAsConv(l, in, wt, bt, out)
			if relu != nil {
				c.skip[relu] = true
			}
			return c.set(l.n, name, out)
		}
	} else {
		in = c.asFloat(l.n.Input[0], l.x)
		wt = c.g.addTensor(tensor{name: l.n.Input[1], shape: l.wshape, typ: fb.TensorTypeFLOAT32}, float32Bytes(l.w))
		b := l.bias
		if b == nil {
			b = make([]float32, l.wshape[l.chAxis])
		}
		bt = c.g.addTensor(tensor{name: l.outName + "_bias", shape: []int32{int32(len(b))}, typ: fb.TensorTypeFLOAT32}, float32Bytes(b))
		out = c.newValue(name, l.shape, l.nhwc, nil)
	}
	c.g.ops = append(c.g.ops, operator{code: l.code, version: version, in: []int32{in, wt, bt}, out: []int32{out.t}, opts: l.opts(l.act)})
	if relu != nil {
		c.skip[relu] = true
	}
	return c.set(l.n, name, out)
}

// fullyConnectedAsConv writes an int8 FULLY_CONNECTED with per-channel
// weights as the 1x1 CONV_2D it is, between two RESHAPEs: Arm NN (20.08)
// and TensorFlow Lite runtimes older than per-channel FULLY_CONNECTED run
// per-channel int8 only in convolutions.
func (c *converter) fullyConnectedAsConv(l *layer, in, wt, bt int32, out *value) {
	B, K, N := int32(l.x.shape[0]), l.wshape[1], l.wshape[0]
	c.g.tensors[wt].shape = []int32{N, 1, 1, K}
	image := func(name string, v *value, ch int32) int32 {
		shape := []int32{B, 1, 1, ch}
		t := c.g.addTensor(tensor{name: name, shape: shape, typ: fb.TensorTypeINT8, q: v.q}, nil)
		return t
	}
	x4 := image(l.n.Input[0]+"_image", l.x, K)
	y4 := image(l.outName+"_image", out, N)
	c.reshapeOp(in, x4, []int32{B, 1, 1, K})
	act := l.act
	c.g.ops = append(c.g.ops, operator{code: fb.BuiltinOperatorCONV_2D, version: 3, in: []int32{x4, wt, bt}, out: []int32{y4},
		opts: func(b *flatbuffers.Builder) (fb.BuiltinOptions, flatbuffers.UOffsetT) {
			fb.Conv2DOptionsStart(b)
			fb.Conv2DOptionsAddPadding(b, fb.PaddingVALID)
			fb.Conv2DOptionsAddStrideW(b, 1)
			fb.Conv2DOptionsAddStrideH(b, 1)
			fb.Conv2DOptionsAddFusedActivationFunction(b, act)
			fb.Conv2DOptionsAddDilationWFactor(b, 1)
			fb.Conv2DOptionsAddDilationHFactor(b, 1)
			return fb.BuiltinOptionsConv2DOptions, fb.Conv2DOptionsEnd(b)
		}})
	c.reshapeOp(y4, out.t, out.stored())
}

// reshapeOp writes a RESHAPE of tensor in to tensor out, of shape.
func (c *converter) reshapeOp(in, out int32, shape []int32) {
	st := c.g.addTensor(tensor{name: c.g.tensors[out].name + "_shape", shape: []int32{int32(len(shape))}, typ: fb.TensorTypeINT32}, int32Bytes(shape))
	c.g.ops = append(c.g.ops, operator{code: fb.BuiltinOperatorRESHAPE, in: []int32{in, st}, out: []int32{out},
		opts: func(b *flatbuffers.Builder) (fb.BuiltinOptions, flatbuffers.UOffsetT) {
			v := int32Vector(b, fb.ReshapeOptionsStartNewShapeVector, shape)
			fb.ReshapeOptionsStart(b)
			fb.ReshapeOptionsAddNewShape(b, v)
			return fb.BuiltinOptionsReshapeOptions, fb.ReshapeOptionsEnd(b)
		}})
}

// weightOf returns the float32 weight k and, when it is a symmetric int8
// one quantized along axis (per channel or per tensor), its int8 values
// and one scale per channel of axis.
func weightOf(k *constant, axis int) ([]int8, []float32) {
	if k.q == nil {
		return nil, nil
	}
	if k.q.axis == -1 {
		s := make([]float32, k.dims[axis])
		for i := range s {
			s[i] = k.q.scale[0]
		}
		return k.q.data, s
	}
	if k.q.axis != axis {
		return nil, nil
	}
	return k.q.data, k.q.scale
}

func (c *converter) gemm(n *onnxpb.NodeProto) error {
	if err := known(n, "alpha", "beta", "transA", "transB"); err != nil {
		return err
	}
	a := attrs(n)
	if x, ok := a["alpha"]; ok && x.GetF() != 1 {
		return nodeError(n, "alpha %v: want 1", x.GetF())
	}
	if x, ok := a["beta"]; ok && x.GetF() != 1 {
		return nodeError(n, "beta %v: want 1", x.GetF())
	}
	if attrInt(a, "transA", 0) != 0 {
		return nodeError(n, "transA: want 0")
	}
	transB := attrInt(a, "transB", 0) != 0
	x, err := c.in(n, 0)
	if err != nil {
		return err
	}
	if len(x.shape) != 2 || x.nhwc {
		return nodeError(n, "input %q of shape %v: want [N, K]", n.Input[0], x.shape)
	}
	w, err := c.constIn(n, 1, false)
	if err != nil {
		return err
	}
	if w.f32 == nil || len(w.dims) != 2 {
		return nodeError(n, "weight %q: want a float32 matrix (or a DequantizeLinear of one)", w.name)
	}
	K, N, nAxis := w.dims[0], w.dims[1], 1
	if transB {
		N, K, nAxis = w.dims[0], w.dims[1], 0
	}
	if K != x.shape[1] {
		return nodeError(n, "weight %q of dims %v for an input of shape %v", w.name, w.dims, x.shape)
	}
	bias, err := c.bias(n, 2, N)
	if err != nil {
		return err
	}
	q, scale := weightOf(w, nAxis)
	// TensorFlow Lite's weight is [N, K]; its column k reads stored
	// input element k, which is ONNX's element perm[k].
	wf := make([]float32, N*K)
	var wq []int8
	if q != nil {
		wq = make([]int8, N*K)
	}
	for j := range N {
		for k := range K {
			src := k
			if x.perm != nil {
				src = x.perm[k]
			}
			i := src*N + j
			if transB {
				i = j*K + src
			}
			wf[j*K+k] = w.f32[i]
			if q != nil {
				wq[j*K+k] = q[i]
			}
		}
	}
	return c.emit(&layer{n: n, x: x, w: wf, wq: wq, wscale: scale, wshape: []int32{int32(N), int32(K)}, chAxis: 0, bias: bias,
		outName: n.Output[0], shape: []int{x.shape[0], N}, code: fb.BuiltinOperatorFULLY_CONNECTED,
		opts: func(act fb.ActivationFunctionType) options {
			return func(b *flatbuffers.Builder) (fb.BuiltinOptions, flatbuffers.UOffsetT) {
				fb.FullyConnectedOptionsStart(b)
				fb.FullyConnectedOptionsAddFusedActivationFunction(b, act)
				return fb.BuiltinOptionsFullyConnectedOptions, fb.FullyConnectedOptionsEnd(b)
			}
		}})
}

// bias returns node n's optional input i, a float32 vector of n values
// (or [1, n]).
func (c *converter) bias(n *onnxpb.NodeProto, i, size int) ([]float32, error) {
	b, err := c.constIn(n, i, true)
	if err != nil || b == nil {
		return nil, err
	}
	ok := b.f32 != nil && len(b.f32) == size && (len(b.dims) == 1 || len(b.dims) == 2 && b.dims[0] == 1)
	if !ok {
		return nil, nodeError(n, "bias %q of dims %v: want %d float32 values", b.name, b.dims, size)
	}
	return b.f32, nil
}

// window reads the kernel, strides, dilations and padding of a Conv or
// pooling node on an input of height h and width w, and returns the
// output's height and width.
type window struct {
	kh, kw, sh, sw, dh, dw int
	padding                fb.Padding
	oh, ow                 int
}

func windowOf(n *onnxpb.NodeProto, a map[string]*onnxpb.AttributeProto, kernel []int64, h, w int) (window, error) {
	if len(kernel) != 2 || kernel[0] < 1 || kernel[1] < 1 || kernel[0] > 1<<12 || kernel[1] > 1<<12 {
		return window{}, nodeError(n, "kernel_shape %v: want two positive sizes", kernel)
	}
	strides := attrInts(a, "strides", []int64{1, 1})
	dil := attrInts(a, "dilations", []int64{1, 1})
	if len(strides) != 2 || len(dil) != 2 || min(strides[0], strides[1], dil[0], dil[1]) < 1 || max(strides[0], strides[1], dil[0], dil[1]) > 1<<12 {
		return window{}, nodeError(n, "strides %v, dilations %v: want two positive values each", strides, dil)
	}
	wd := window{kh: int(kernel[0]), kw: int(kernel[1]), sh: int(strides[0]), sw: int(strides[1]), dh: int(dil[0]), dw: int(dil[1])}
	pads := attrInts(a, "pads", []int64{0, 0, 0, 0})
	if len(pads) != 4 {
		return window{}, nodeError(n, "pads %v: want 4 values", pads)
	}
	ekh, ekw := (wd.kh-1)*wd.dh+1, (wd.kw-1)*wd.dw+1
	// TensorFlow's SAME: output ceil(in/stride), the padding's odd pixel
	// at the end (ONNX's SAME_UPPER).
	same := func(in, k, s int) (int, int) {
		total := max((ceilDiv(in, s)-1)*s+k-in, 0)
		return total / 2, total - total/2
	}
	t, b := same(h, ekh, wd.sh)
	l, r := same(w, ekw, wd.sw)
	switch ap := string(a["auto_pad"].GetS()); ap {
	case "", "NOTSET":
		switch {
		case slices.Equal(pads, []int64{0, 0, 0, 0}):
			wd.padding = fb.PaddingVALID
		case slices.Equal(pads, []int64{int64(t), int64(l), int64(b), int64(r)}):
			wd.padding = fb.PaddingSAME
		default:
			return window{}, nodeError(n, "pads %v: want none (VALID) or %v (SAME)", pads, []int{t, l, b, r})
		}
	case "VALID":
		wd.padding = fb.PaddingVALID
	case "SAME_UPPER":
		wd.padding = fb.PaddingSAME
	default:
		return window{}, nodeError(n, "auto_pad %q is not supported", ap)
	}
	if wd.padding == fb.PaddingSAME {
		wd.oh, wd.ow = ceilDiv(h, wd.sh), ceilDiv(w, wd.sw)
	} else {
		if h < ekh || w < ekw {
			return window{}, nodeError(n, "a %dx%d window over a %dx%d input", ekh, ekw, h, w)
		}
		wd.oh, wd.ow = (h-ekh)/wd.sh+1, (w-ekw)/wd.sw+1
	}
	return wd, nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func (c *converter) conv(n *onnxpb.NodeProto) error {
	if err := known(n, "auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"); err != nil {
		return err
	}
	a := attrs(n)
	x, err := c.in(n, 0)
	if err != nil {
		return err
	}
	if !x.nhwc {
		return nodeError(n, "input %q of shape %v: want an image [N, C, H, W]", n.Input[0], x.shape)
	}
	w, err := c.constIn(n, 1, false)
	if err != nil {
		return err
	}
	if w.f32 == nil || len(w.dims) != 4 {
		return nodeError(n, "weight %q: want float32 [M, C/group, kH, kW] (or a DequantizeLinear of one)", w.name)
	}
	M, cg, kh, kw := w.dims[0], w.dims[1], w.dims[2], w.dims[3]
	C := x.shape[1]
	group := int(attrInt(a, "group", 1))
	if k, ok := a["kernel_shape"]; ok && !slices.Equal(k.Ints, []int64{int64(kh), int64(kw)}) {
		return nodeError(n, "kernel_shape %v for a weight of dims %v", k.Ints, w.dims)
	}
	wd, err := windowOf(n, a, []int64{int64(kh), int64(kw)}, x.shape[2], x.shape[3])
	if err != nil {
		return err
	}
	bias, err := c.bias(n, 2, M)
	if err != nil {
		return err
	}
	q, scale := weightOf(w, 0)
	l := &layer{n: n, x: x, wscale: scale, bias: bias, outName: n.Output[0], shape: []int{x.shape[0], M, wd.oh, wd.ow}, nhwc: true}
	wf := make([]float32, len(w.f32))
	var wq []int8
	if q != nil {
		wq = make([]int8, len(q))
	}
	switch {
	case group == 1 && cg == C:
		// OIHW -> OHWI.
		for o := range M {
			for i := range C {
				for y := range kh {
					for z := range kw {
						src, dst := ((o*C+i)*kh+y)*kw+z, ((o*kh+y)*kw+z)*C+i
						wf[dst] = w.f32[src]
						if q != nil {
							wq[dst] = q[src]
						}
					}
				}
			}
		}
		l.wshape, l.chAxis, l.code = []int32{int32(M), int32(kh), int32(kw), int32(C)}, 0, fb.BuiltinOperatorCONV_2D
		l.opts = func(act fb.ActivationFunctionType) options {
			return func(b *flatbuffers.Builder) (fb.BuiltinOptions, flatbuffers.UOffsetT) {
				fb.Conv2DOptionsStart(b)
				fb.Conv2DOptionsAddPadding(b, wd.padding)
				fb.Conv2DOptionsAddStrideW(b, int32(wd.sw))
				fb.Conv2DOptionsAddStrideH(b, int32(wd.sh))
				fb.Conv2DOptionsAddFusedActivationFunction(b, act)
				fb.Conv2DOptionsAddDilationWFactor(b, int32(wd.dw))
				fb.Conv2DOptionsAddDilationHFactor(b, int32(wd.dh))
				return fb.BuiltinOptionsConv2DOptions, fb.Conv2DOptionsEnd(b)
			}
		}
	case group == C && cg == 1 && M%C == 0:
		// [M, 1, kH, kW] -> [1, kH, kW, M].
		for o := range M {
			for y := range kh {
				for z := range kw {
					src, dst := (o*kh+y)*kw+z, (y*kw+z)*M+o
					wf[dst] = w.f32[src]
					if q != nil {
						wq[dst] = q[src]
					}
				}
			}
		}
		mult := M / C
		l.wshape, l.chAxis, l.code = []int32{1, int32(kh), int32(kw), int32(M)}, 3, fb.BuiltinOperatorDEPTHWISE_CONV_2D
		l.opts = func(act fb.ActivationFunctionType) options {
			return func(b *flatbuffers.Builder) (fb.BuiltinOptions, flatbuffers.UOffsetT) {
				fb.DepthwiseConv2DOptionsStart(b)
				fb.DepthwiseConv2DOptionsAddPadding(b, wd.padding)
				fb.DepthwiseConv2DOptionsAddStrideW(b, int32(wd.sw))
				fb.DepthwiseConv2DOptionsAddStrideH(b, int32(wd.sh))
				fb.DepthwiseConv2DOptionsAddDepthMultiplier(b, int32(mult))
				fb.DepthwiseConv2DOptionsAddFusedActivationFunction(b, act)
				fb.DepthwiseConv2DOptionsAddDilationWFactor(b, int32(wd.dw))
				fb.DepthwiseConv2DOptionsAddDilationHFactor(b, int32(wd.dh))
				return fb.BuiltinOptionsDepthwiseConv2DOptions, fb.DepthwiseConv2DOptionsEnd(b)
			}
		}
	default:
		return nodeError(n, "group %d with a weight of dims %v on %d channels: want 1 (CONV_2D) or one group per channel (DEPTHWISE_CONV_2D)", group, w.dims, C)
	}
	l.w, l.wq = wf, wq
	return c.emit(l)
}

func (c *converter) pool(n *onnxpb.NodeProto) error {
	names := []string{"auto_pad", "ceil_mode", "kernel_shape", "pads", "strides", "dilations", "storage_order", "count_include_pad"}
	if err := known(n, names...); err != nil {
		return err
	}
	if len(n.Output) > 1 && n.Output[1] != "" {
		return nodeError(n, "the Indices output is not supported")
	}
	a := attrs(n)
	if attrInt(a, "ceil_mode", 0) != 0 || attrInt(a, "storage_order", 0) != 0 {
		return nodeError(n, "ceil_mode and storage_order: want 0")
	}
	if d := attrInts(a, "dilations", []int64{1, 1}); !slices.Equal(d, []int64{1, 1}) {
		return nodeError(n, "dilations %v: want [1 1]", d)
	}
	x, err := c.in(n, 0)
	if err != nil {
		return err
	}
	if !x.nhwc {
		return nodeError(n, "input %q of shape %v: want an image [N, C, H, W]", n.Input[0], x.shape)
	}
	wd, err := windowOf(n, a, attrInts(a, "kernel_shape", nil), x.shape[2], x.shape[3])
	if err != nil {
		return err
	}
	code := fb.BuiltinOperatorMAX_POOL_2D
	if n.GetOpType() == "AveragePool" {
		code = fb.BuiltinOperatorAVERAGE_POOL_2D
		if attrInt(a, "count_include_pad", 0) != 0 && wd.padding == fb.PaddingSAME {
			return nodeError(n, "count_include_pad 1 with padding: TensorFlow Lite leaves padding out of the average")
		}
	}
	in := x.t
	var q *quant
	version := int32(1)
	if x.q != nil {
		q, version = x.q, 2
	}
	out := c.newValue(n.Output[0], []int{x.shape[0], x.shape[1], wd.oh, wd.ow}, true, q)
	c.g.ops = append(c.g.ops, operator{code: code, version: version, in: []int32{in}, out: []int32{out.t},
		opts: func(b *flatbuffers.Builder) (fb.BuiltinOptions, flatbuffers.UOffsetT) {
			fb.Pool2DOptionsStart(b)
			fb.Pool2DOptionsAddPadding(b, wd.padding)
			fb.Pool2DOptionsAddStrideW(b, int32(wd.sw))
			fb.Pool2DOptionsAddStrideH(b, int32(wd.sh))
			fb.Pool2DOptionsAddFilterWidth(b, int32(wd.kw))
			fb.Pool2DOptionsAddFilterHeight(b, int32(wd.kh))
			return fb.BuiltinOptionsPool2DOptions, fb.Pool2DOptionsEnd(b)
		}})
	return c.set(n, n.Output[0], out)
}

func (c *converter) relu(n *onnxpb.NodeProto) error {
	if err := known(n); err != nil {
		return err
	}
	x, err := c.in(n, 0)
	if err != nil {
		return err
	}
	if x.perm != nil {
		return nodeError(n, "input %q is a flattened image in a permuted order", n.Input[0])
	}
	in := c.asFloat(n.Input[0], x)
	out := c.newValue(n.Output[0], x.shape, x.nhwc, nil)
	c.g.ops = append(c.g.ops, operator{code: fb.BuiltinOperatorRELU, in: []int32{in}, out: []int32{out.t}})
	return c.set(n, n.Output[0], out)
}

func (c *converter) softmax(n *onnxpb.NodeProto) error {
	if err := known(n, "axis"); err != nil {
		return err
	}
	x, err := c.in(n, 0)
	if err != nil {
		return err
	}
	def := int64(-1)
	if c.opset > 0 && c.opset < 13 {
		def = 1
	}
	axis := attrInt(attrs(n), "axis", def)
	r := int64(len(x.shape))
	if x.nhwc || x.perm != nil || (axis != r-1 && axis != -1) {
		return nodeError(n, "axis %d on shape %v: want the last axis of a non-image", axis, x.shape)
	}
	in := c.asFloat(n.Input[0], x)
	out := c.newValue(n.Output[0], x.shape, false, nil)
	c.g.ops = append(c.g.ops, operator{code: fb.BuiltinOperatorSOFTMAX, in: []int32{in}, out: []int32{out.t},
		opts: func(b *flatbuffers.Builder) (fb.BuiltinOptions, flatbuffers.UOffsetT) {
			fb.SoftmaxOptionsStart(b)
			fb.SoftmaxOptionsAddBeta(b, 1)
			return fb.BuiltinOptionsSoftmaxOptions, fb.SoftmaxOptionsEnd(b)
		}})
	return c.set(n, n.Output[0], out)
}

// reshape converts Flatten and Reshape.
func (c *converter) reshape(n *onnxpb.NodeProto) error {
	x, err := c.in(n, 0)
	if err != nil {
		return err
	}
	if x.perm != nil {
		return nodeError(n, "input %q is a flattened image in a permuted order", n.Input[0])
	}
	total := 1
	for _, d := range x.shape {
		total *= d
	}
	var shape []int
	if n.GetOpType() == "Flatten" {
		if err := known(n, "axis"); err != nil {
			return err
		}
		axis := attrInt(attrs(n), "axis", 1)
		r := int64(len(x.shape))
		if axis < -r || axis > r {
			return nodeError(n, "axis %d on shape %v", axis, x.shape)
		}
		if axis < 0 {
			axis += r
		}
		outer := 1
		for _, d := range x.shape[:axis] {
			outer *= d
		}
		shape = []int{outer, total / max(outer, 1)}
	} else {
		if err := known(n, "allowzero"); err != nil {
			return err
		}
		k, err := c.constIn(n, 1, false)
		if err != nil {
			return err
		}
		if k.i64 == nil || len(k.dims) != 1 {
			return nodeError(n, "shape %q: want an int64 vector", k.name)
		}
		if shape, err = reshaped(x.shape, k.i64, attrInt(attrs(n), "allowzero", 0) != 0); err != nil {
			return nodeError(n, "%v", err)
		}
	}
	if len(shape) == 4 {
		return nodeError(n, "a reshape to an image %v is not supported", shape)
	}
	in := x.t
	var perm []int
	if x.nhwc {
		if len(shape) != 2 || shape[0] != x.shape[0] {
			return nodeError(n, "an image %v reshaped to %v: want [N, C*H*W]", x.shape, shape)
		}
		C, H, W := x.shape[1], x.shape[2], x.shape[3]
		if C > 1 && H*W > 1 {
			// Stored element (h*W+w)*C+ch is ONNX's element (ch*H+h)*W+w.
			perm = make([]int, C*H*W)
			for h := range H {
				for w := range W {
					for ch := range C {
						perm[(h*W+w)*C+ch] = (ch*H+h)*W + w
					}
				}
			}
			if !c.onlyGemms(n.Output[0], 0) {
				in, perm = c.transposeNCHW(n.Input[0], x), nil
			}
		}
	}
	out := c.newValue(n.Output[0], shape, false, x.q)
	out.perm = perm
	newShape := make([]int32, len(shape))
	for i, d := range shape {
		newShape[i] = int32(d)
	}
	c.reshapeOp(in, out.t, newShape)
	return c.set(n, n.Output[0], out)
}

// onlyGemms says whether every reader of name is a Gemm taking it as its
// data input (which can take the elements in any order), directly or
// through QuantizeLinear and DequantizeLinear (which keep the order).
func (c *converter) onlyGemms(name string, depth int) bool {
	us := c.uses[name]
	if len(us) == 0 || c.outputs[name] || depth > 16 {
		return false
	}
	for _, u := range us {
		if len(u.Input) < 1 || u.Input[0] != name || slices.Index(u.Input[1:], name) >= 0 || len(u.Output) < 1 {
			return false
		}
		switch u.GetOpType() {
		case "Gemm":
		case "QuantizeLinear", "DequantizeLinear":
			if !c.onlyGemms(u.Output[0], depth+1) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// transposeNCHW writes x (stored NHWC) as NCHW, for a flatten in ONNX's
// order.
func (c *converter) transposeNCHW(name string, x *value) int32 {
	perm := c.g.addTensor(tensor{name: name + "_nchw_perm", shape: []int32{4}, typ: fb.TensorTypeINT32}, int32Bytes([]int32{0, 3, 1, 2}))
	s := x.shape
	t := tensor{name: name + "_nchw", shape: []int32{int32(s[0]), int32(s[1]), int32(s[2]), int32(s[3])}, typ: fb.TensorTypeFLOAT32}
	if x.q != nil {
		t.typ, t.q = fb.TensorTypeINT8, x.q
	}
	out := c.g.addTensor(t, nil)
	version := int32(1)
	if x.q != nil {
		version = 2 // int8
	}
	c.g.ops = append(c.g.ops, operator{code: fb.BuiltinOperatorTRANSPOSE, version: version, in: []int32{x.t, perm}, out: []int32{out},
		opts: func(b *flatbuffers.Builder) (fb.BuiltinOptions, flatbuffers.UOffsetT) {
			fb.TransposeOptionsStart(b)
			return fb.BuiltinOptionsTransposeOptions, fb.TransposeOptionsEnd(b)
		}})
	return out
}

// reshaped is ONNX Reshape's output shape for in and target.
func reshaped(in []int, target []int64, allowZero bool) ([]int, error) {
	total := 1
	for _, d := range in {
		total *= d
	}
	out := make([]int, len(target))
	known, free := 1, -1
	for i, d := range target {
		switch {
		case d == -1 && free < 0:
			free = i
			continue
		case d == 0 && !allowZero:
			if i >= len(in) {
				return nil, fmt.Errorf("shape %v: 0 at %d copies no input dimension of %v", target, i, in)
			}
			out[i] = in[i]
		case d >= 0 && d <= 1<<30:
			out[i] = int(d)
		default:
			return nil, fmt.Errorf("shape %v", target)
		}
		if out[i] > 0 && known > total {
			return nil, fmt.Errorf("shape %v for %v", target, in)
		}
		known *= out[i]
	}
	if free >= 0 {
		if known == 0 || total%known != 0 {
			return nil, fmt.Errorf("shape %v for %v", target, in)
		}
		out[free] = total / known
		known *= out[free]
	}
	if known != total {
		return nil, fmt.Errorf("shape %v for %v: %d elements, want %d", target, in, known, total)
	}
	return out, nil
}

func (c *converter) add(n *onnxpb.NodeProto) error {
	if err := known(n); err != nil {
		return err
	}
	if len(n.Input) != 2 {
		return nodeError(n, "want 2 inputs")
	}
	var ins [2]int32
	var x *value
	for i, name := range n.Input {
		if v, ok := c.vals[name]; ok {
			if v.perm != nil {
				return nodeError(n, "input %q is a flattened image in a permuted order", name)
			}
			if x != nil && !slices.Equal(x.shape, v.shape) {
				return nodeError(n, "inputs of shapes %v and %v: want the same shape", x.shape, v.shape)
			}
			x = v
			ins[i] = c.asFloat(name, v)
		}
	}
	if x == nil {
		return nodeError(n, "both inputs are constants")
	}
	for i, name := range n.Input {
		if _, ok := c.vals[name]; ok {
			continue
		}
		k, ok := c.consts[name]
		if !ok {
			return nodeError(n, "input %q is not computed before the node", name)
		}
		if k.f32 == nil {
			return nodeError(n, "constant %q: want float32", name)
		}
		// A constant adds along the channels (of an image) or the last
		// axis: [C, 1, 1], [1, C, 1, 1], [K], [1, K] or one value.
		ch := x.shape[len(x.shape)-1]
		if x.nhwc {
			ch = x.shape[1]
		}
		dims := slices.DeleteFunc(slices.Clone(k.dims), func(d int) bool { return d == 1 })
		switch {
		case len(k.f32) == 1:
		case len(dims) == 1 && dims[0] == ch && (!x.nhwc && k.dims[len(k.dims)-1] == ch ||
			x.nhwc && len(k.dims) >= 3 && k.dims[len(k.dims)-3] == ch):
		default:
			return nodeError(n, "constant %q of dims %v does not broadcast along the channels of %v", name, k.dims, x.shape)
		}
		ins[i] = c.g.addTensor(tensor{name: name, shape: []int32{int32(len(k.f32))}, typ: fb.TensorTypeFLOAT32}, float32Bytes(k.f32))
	}
	out := c.newValue(n.Output[0], x.shape, x.nhwc, nil)
	c.g.ops = append(c.g.ops, operator{code: fb.BuiltinOperatorADD, in: ins[:], out: []int32{out.t},
		opts: func(b *flatbuffers.Builder) (fb.BuiltinOptions, flatbuffers.UOffsetT) {
			fb.AddOptionsStart(b)
			return fb.BuiltinOptionsAddOptions, fb.AddOptionsEnd(b)
		}})
	return c.set(n, n.Output[0], out)
}
