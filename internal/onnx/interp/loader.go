package interp

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// Limits and versions of the models Load accepts.
const (
	// MaxModelBytes is the largest serialized model Load reads.
	MaxModelBytes = 512 << 20
	// MaxOpset is the newest default-domain opset Load accepts. Older
	// opsets load when every node's operator is implemented at that opset
	// (Op.MinOpset); the runtime targets opsets 13 to 17.
	MaxOpset = 17
	// MinIRVersion and MaxIRVersion bound the ONNX IR versions Load reads
	// (IR 3 introduced opset imports; IR 10 is ONNX 1.16's).
	MinIRVersion = 3
	MaxIRVersion = 10
)

// ErrUnsupported is wrapped by load errors for models that are well formed
// but use something the interpreter does not implement: an operator, an
// opset, an element type, external data. A caller may then try another
// runtime.
var ErrUnsupported = errors.New("not supported by the Go runtime")

// ValueInfo describes a graph input or output.
type ValueInfo struct {
	Name  string
	DType DType
	// Shape has -1 for a dynamic (symbolic or unknown) dimension. It is nil
	// when the model does not give the rank, and empty for a scalar.
	Shape []int
}

// Model is a loaded, validated graph ready to run. It is safe for concurrent
// use: Run keeps all per-request state on its own.
type Model struct {
	opset   int64
	inputs  []ValueInfo
	outputs []ValueInfo
	inSlot  []int
	outSlot []int
	// cloneOut marks outputs whose tensor may share data with an
	// initializer, an input or another output: Run returns a copy.
	cloneOut []bool
	consts   []*Tensor // per slot: the initializer, or nil
	steps    []step
	maxArgs  int
	states   sync.Pool // *runState
}

// step is one node ready to run.
type step struct {
	node *Node
	op   Op
	run  Kernel
	in   []int // value slots; -1 for an omitted optional input
	out  []int // value slots; -1 for an omitted optional output
	// free lists the slots whose last use is this step.
	free []int
	// inPlace, when set, computes the node by overwriting its only input,
	// which the executor has proven dead after this step.
	inPlace func(n *Node, t *Tensor) error
	// release, when set, takes back the data of the step's first output
	// for a later request once no step will read it.
	release func(*Tensor)
	// recycle lists the values, read by this step, whose data no later
	// step reads: each is given back to its producer's release.
	recycle []recycled
}

// recycled is a value whose data a step gives back after it runs.
type recycled struct {
	slot    int
	release func(*Tensor)
}

// unsupportedOpsError lists every node whose operator the interpreter lacks.
type unsupportedOpsError struct{ nodes []string }

func (e *unsupportedOpsError) Error() string {
	return "interp: unsupported operators: " + strings.Join(e.nodes, ", ")
}

func (e *unsupportedOpsError) Unwrap() error { return ErrUnsupported }

// Load parses and validates a serialized ONNX model: IR version, opset,
// initializers, graph inputs and outputs, and every node (an implemented
// operator at the model's opset whose Check passes, with inputs defined by
// earlier nodes; nodes out of order are sorted topologically and cycles
// refused). All unsupported operators are named in one error. Nodes whose
// inputs are all known at load (initializers, Constants, the Shape or Size
// of a graph input of fully given shape, and what such nodes compute) run
// once here and become constants; an error there fails the load. A
// malformed model gives an error, never a panic.
func Load(data []byte) (*Model, error) {
	if len(data) > MaxModelBytes {
		return nil, fmt.Errorf("interp: model is %d bytes, more than the %d allowed", len(data), MaxModelBytes)
	}
	mp := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(data, mp); err != nil {
		return nil, fmt.Errorf("interp: decoding model: %w", err)
	}
	return LoadProto(mp)
}

// LoadProto is Load for a decoded model. The model must not be modified
// afterwards: the loaded Model keeps references to its nodes.
func LoadProto(mp *onnxpb.ModelProto) (*Model, error) {
	if v := mp.GetIrVersion(); v < MinIRVersion || v > MaxIRVersion {
		return nil, fmt.Errorf("interp: IR version %d outside %d..%d: %w", v, MinIRVersion, MaxIRVersion, ErrUnsupported)
	}
	opset := int64(-1)
	for _, o := range mp.GetOpsetImport() {
		if d := o.GetDomain(); d == "" || d == "ai.onnx" {
			if opset >= 0 && opset != o.GetVersion() {
				return nil, errors.New("interp: model imports the default domain twice")
			}
			opset = o.GetVersion()
		}
	}
	if opset < 0 {
		return nil, errors.New("interp: model imports no default-domain opset")
	}
	if opset < 1 || opset > MaxOpset {
		return nil, fmt.Errorf("interp: default-domain opset %d outside 1..%d: %w", opset, MaxOpset, ErrUnsupported)
	}
	g := mp.GetGraph()
	if g == nil {
		return nil, errors.New("interp: model has no graph")
	}
	if len(g.GetSparseInitializer()) > 0 {
		return nil, fmt.Errorf("interp: sparse initializers: %w", ErrUnsupported)
	}
	b := &builder{m: &Model{opset: opset}, slot: map[string]int{}, static: map[int]*Tensor{}}
	if err := b.initializers(g); err != nil {
		return nil, err
	}
	if err := b.graphInputs(g); err != nil {
		return nil, err
	}
	if err := b.nodes(g, opset); err != nil {
		return nil, err
	}
	if err := b.graphOutputs(g); err != nil {
		return nil, err
	}
	b.fuseQDQ()
	b.fuse()
	b.dropUnread()
	b.plan()
	return b.m, nil
}

// builder holds the state of one Load.
type builder struct {
	m     *Model
	slot  map[string]int // value name -> slot
	names []string       // slot -> value name
	input []bool         // slot is a graph input
	// static holds, for a graph input whose shape the model gives in
	// full, a tensor of its type and shape without data: what Shape and
	// Size read when they are folded.
	static map[int]*Tensor
	// dq holds, for a constant computed by DequantizeLinear at load, what
	// it was computed from (fuseQDQ).
	dq map[int]dequantized
	// qconv holds the Conv nodes fuseQDQ runs in integers, for fuse.
	qconv map[*Node]*qConv
}

func (b *builder) define(name string) (int, error) {
	if name == "" {
		return 0, errors.New("empty value name")
	}
	if _, dup := b.slot[name]; dup {
		return 0, fmt.Errorf("value %q defined twice", name)
	}
	s := len(b.names)
	b.slot[name] = s
	b.names = append(b.names, name)
	b.m.consts = append(b.m.consts, nil)
	b.input = append(b.input, false)
	return s, nil
}

func (b *builder) initializers(g *onnxpb.GraphProto) error {
	for _, p := range g.GetInitializer() {
		t, err := TensorFromProto(p)
		if err != nil {
			return fmt.Errorf("interp: initializer: %w", err)
		}
		s, err := b.define(p.GetName())
		if err != nil {
			return fmt.Errorf("interp: initializer: %w", err)
		}
		b.m.consts[s] = t
	}
	return nil
}

// tensorType reads a ValueInfoProto's tensor element type and shape.
func tensorType(vi *onnxpb.ValueInfoProto) (ValueInfo, error) {
	info := ValueInfo{Name: vi.GetName()}
	tt := vi.GetType().GetTensorType()
	if tt == nil {
		return info, fmt.Errorf("%q is not a tensor: %w", vi.GetName(), ErrUnsupported)
	}
	if !supportedDType(tt.GetElemType()) {
		return info, fmt.Errorf("%q has element type %s: %w", vi.GetName(), elemTypeName(tt.GetElemType()), ErrUnsupported)
	}
	info.DType = DType(tt.GetElemType())
	if sh := tt.GetShape(); sh != nil {
		info.Shape = make([]int, len(sh.GetDim()))
		for i, d := range sh.GetDim() {
			info.Shape[i] = -1
			if v, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok {
				if v.DimValue < 0 || v.DimValue > maxElements {
					return info, fmt.Errorf("%q has dimension %d", vi.GetName(), v.DimValue)
				}
				info.Shape[i] = int(v.DimValue)
			}
		}
	}
	return info, nil
}

func (b *builder) graphInputs(g *onnxpb.GraphProto) error {
	for _, vi := range g.GetInput() {
		if s, ok := b.slot[vi.GetName()]; ok && b.m.consts[s] != nil {
			continue // an initializer listed as input (IR < 4 style): a constant here
		}
		info, err := tensorType(vi)
		if err != nil {
			return fmt.Errorf("interp: graph input %w", err)
		}
		s, err := b.define(vi.GetName())
		if err != nil {
			return fmt.Errorf("interp: graph input: %w", err)
		}
		b.input[s] = true
		if info.Shape != nil && !slices.Contains(info.Shape, -1) {
			b.static[s] = &Tensor{DType: info.DType, Shape: info.Shape}
		}
		b.m.inputs = append(b.m.inputs, info)
		b.m.inSlot = append(b.m.inSlot, s)
	}
	return nil
}

// nodes checks every node and orders them topologically.
func (b *builder) nodes(g *onnxpb.GraphProto, opset int64) error {
	table := opTable()
	var unsupported []string
	pnodes := g.GetNode()
	nodes := make([]*Node, len(pnodes))
	opsOf := make([]Op, len(pnodes))
	for i, p := range pnodes {
		n := &Node{Proto: p, Opset: opset}
		n.attr("") // build the attribute index now: Run only reads it
		nodes[i] = n
		if d := p.GetDomain(); d != "" && d != "ai.onnx" {
			unsupported = append(unsupported, fmt.Sprintf("%s.%s (node %s)", d, p.GetOpType(), n.Name()))
			continue
		}
		op, ok := table[p.GetOpType()]
		if !ok {
			unsupported = append(unsupported, fmt.Sprintf("%s (node %s)", p.GetOpType(), n.Name()))
			continue
		}
		if opset < op.MinOpset || (op.MaxOpset > 0 && opset > op.MaxOpset) {
			unsupported = append(unsupported, fmt.Sprintf("%s at opset %d (node %s; implemented for opsets %d..%d)",
				p.GetOpType(), opset, n.Name(), op.MinOpset, op.MaxOpset))
			continue
		}
		opsOf[i] = op
	}
	if len(unsupported) > 0 {
		return &unsupportedOpsError{nodes: unsupported}
	}
	for i, n := range nodes {
		for _, a := range n.Proto.GetAttribute() {
			if a.GetRefAttrName() != "" {
				return fmt.Errorf("interp: %s node %q: attribute %q refers to a function attribute", n.Proto.GetOpType(), n.Name(), a.GetName())
			}
		}
		if c := opsOf[i].Check; c != nil {
			if err := c(n); err != nil {
				return fmt.Errorf("interp: %w", nodeError(n, err))
			}
		}
	}
	order, err := b.topoSort(nodes)
	if err != nil {
		return err
	}
	for _, i := range order {
		n := nodes[i]
		st := step{node: n, op: opsOf[i], run: opsOf[i].Run}
		for _, name := range n.Proto.GetInput() {
			s := -1
			if name != "" {
				s = b.slot[name] // topoSort proved it defined
			}
			st.in = append(st.in, s)
		}
		for _, name := range n.Proto.GetOutput() {
			s := -1
			if name != "" {
				if s, err = b.define(name); err != nil {
					return fmt.Errorf("interp: %w", nodeError(n, err))
				}
			}
			st.out = append(st.out, s)
		}
		if args, ok := b.foldArgs(&st); ok {
			if err := b.fold(&st, args); err != nil {
				return fmt.Errorf("interp: %w", nodeError(n, err))
			}
			continue
		}
		if prep := opsOf[i].Prepare; prep != nil {
			consts := make([]*Tensor, len(st.in))
			for j, s := range st.in {
				if s >= 0 {
					consts[j] = b.m.consts[s]
				}
			}
			if k := prep(n, consts); k != nil {
				st.run = k
			}
		}
		b.m.maxArgs = max(b.m.maxArgs, len(st.in))
		b.m.steps = append(b.m.steps, st)
	}
	return nil
}

// foldArgs returns the arguments of a step that can be computed once at
// load: every input it reads is a constant (an initializer or a folded
// output), or, for operators that read only their input's shape (Shape,
// Size), a graph input whose shape the model gives in full. Constant
// nodes, which read nothing, always fold; Volatile operators never do.
// The others are functions of their inputs, so running such a step at
// load gives what every request would compute.
func (b *builder) foldArgs(st *step) ([]*Tensor, bool) {
	if st.op.Volatile {
		return nil, false
	}
	args := make([]*Tensor, len(st.in))
	for j, s := range st.in {
		switch {
		case s < 0:
		case b.m.consts[s] != nil:
			args[j] = b.m.consts[s]
		case readsShapeOnly(st.node.Proto.GetOpType()) && b.static[s] != nil:
			args[j] = b.static[s]
		default:
			return nil, false
		}
	}
	return args, true
}

// readsShapeOnly reports whether an operator reads only the element type
// and shape of its input.
func readsShapeOnly(op string) bool { return op == "Shape" || op == "Size" }

// fold runs a step at load and makes its outputs constants, shared like
// initializers: the step is dropped from the graph.
func (b *builder) fold(st *step, args []*Tensor) error {
	res, err := st.run(st.node, args)
	if err != nil {
		return err
	}
	for k, s := range st.out {
		if s < 0 {
			continue
		}
		if k >= len(res) || res[k] == nil {
			return fmt.Errorf("kernel gave no output %d (%q)", k, st.node.Proto.GetOutput()[k])
		}
		if err := res[k].Validate(); err != nil {
			return fmt.Errorf("kernel output %d: %w", k, err)
		}
		b.m.consts[s] = res[k]
	}
	if n := st.node; n.Proto.GetOpType() == "DequantizeLinear" && st.out[0] >= 0 && len(args) > 1 && args[0] != nil && args[1] != nil {
		d := dequantized{node: n, x: args[0], scale: args[1], axis: int(n.Int("axis", 1))}
		if len(args) > 2 {
			d.zp = args[2]
		}
		if d.axis < 0 {
			d.axis += len(d.x.Shape)
		}
		if b.dq == nil {
			b.dq = map[int]dequantized{}
		}
		b.dq[st.out[0]] = d
	}
	return nil
}

// topoSort returns the node indices in an order where every node comes
// after the producers of its inputs, keeping the model's order when it is
// already valid. It refuses undefined inputs, values produced twice and
// cycles.
func (b *builder) topoSort(nodes []*Node) ([]int, error) {
	producer := map[string]int{}
	for i, n := range nodes {
		for _, o := range n.Proto.GetOutput() {
			if o == "" {
				continue
			}
			if _, dup := producer[o]; dup {
				return nil, fmt.Errorf("interp: value %q is produced by two nodes", o)
			}
			if _, dup := b.slot[o]; dup {
				return nil, fmt.Errorf("interp: %s node %q redefines %q", n.Proto.GetOpType(), n.Name(), o)
			}
			producer[o] = i
		}
	}
	indeg := make([]int, len(nodes))
	users := make([][]int, len(nodes))
	for i, n := range nodes {
		for _, in := range n.Proto.GetInput() {
			if in == "" {
				continue
			}
			if p, ok := producer[in]; ok {
				indeg[i]++
				users[p] = append(users[p], i)
			} else if _, ok := b.slot[in]; !ok {
				return nil, fmt.Errorf("interp: %s node %q uses undefined value %q", n.Proto.GetOpType(), n.Name(), in)
			}
		}
	}
	// Kahn's algorithm, always taking the lowest ready index first.
	var ready, order []int
	for i, d := range indeg {
		if d == 0 {
			ready = append(ready, i)
		}
	}
	for len(ready) > 0 {
		k := slices.Index(ready, slices.Min(ready))
		i := ready[k]
		ready = slices.Delete(ready, k, k+1)
		order = append(order, i)
		for _, u := range users[i] {
			if indeg[u]--; indeg[u] == 0 {
				ready = append(ready, u)
			}
		}
	}
	if len(order) != len(nodes) {
		return nil, errors.New("interp: graph has a cycle")
	}
	return order, nil
}

func (b *builder) graphOutputs(g *onnxpb.GraphProto) error {
	if len(g.GetOutput()) == 0 {
		return errors.New("interp: graph has no outputs")
	}
	for _, vi := range g.GetOutput() {
		info, err := tensorType(vi)
		if err != nil {
			return fmt.Errorf("interp: graph output %w", err)
		}
		s, ok := b.slot[vi.GetName()]
		if !ok {
			return fmt.Errorf("interp: graph output %q is not computed by the graph", vi.GetName())
		}
		b.m.outputs = append(b.m.outputs, info)
		b.m.outSlot = append(b.m.outSlot, s)
	}
	return nil
}

// fuse merges each Conv step with the Relu, Clip (with bounds known at
// load) and MaxPool steps after it, in that order, any of them, when each
// of them is the only reader of the value before it and these values are
// not graph outputs. The merged step, at the Conv's place, applies them to
// each image while the image's convolution is in cache, and the values
// between them are never made. Moving the later steps up to the Conv keeps
// the order valid: they read nothing else. Every Conv step, fused or not,
// takes its output's data from buffers that planRecycling has the
// output's last reader give back, so that a run reuses the last one's.
func (b *builder) fuse() {
	m := b.m
	reads := make([]int, len(b.names))  // steps reading each slot (a step reading it twice counts twice)
	reader := make([]int, len(b.names)) // the last of them
	for i, st := range m.steps {
		for _, s := range st.in {
			if s >= 0 {
				reads[s]++
				reader[s] = i
			}
		}
	}
	for _, s := range m.outSlot {
		reads[s] += 2 // the caller reads it too
	}
	// next returns the step that alone reads the only output of step i,
	// if it is an op node with one input and one output, or -1.
	next := func(i int, op string) int {
		s := soleOutput(&m.steps[i])
		if s < 0 || reads[s] != 1 {
			return -1
		}
		j := reader[s]
		if st := &m.steps[j]; st.node.Proto.GetOpType() != op || len(st.in) != 1 || soleOutput(st) < 0 {
			return -1
		}
		return j
	}
	drop := make([]bool, len(m.steps))
	for i := range m.steps {
		if m.steps[i].node.Proto.GetOpType() != "Conv" {
			continue
		}
		last, relu, clip, pool := i, false, (*[2]float32)(nil), (*Node)(nil)
		if j := next(last, "Relu"); j >= 0 {
			last, relu, drop[j] = j, true, true
		}
		if j, bounds := b.nextClip(last, reads, reader); j >= 0 {
			last, clip, drop[j] = j, bounds, true
		}
		if j := next(last, "MaxPool"); j >= 0 {
			last, pool, drop[j] = j, m.steps[j].node, true
		}
		// Every Conv gets the fused kernel (with nothing fused, it is
		// the prepared one), whose outputs are recycled.
		m.steps[i].run, m.steps[i].release = fusedConvKernel(relu, clip, pool, b.qconv[m.steps[i].node])
		m.steps[i].out = m.steps[last].out
	}
	steps := m.steps[:0]
	for i, st := range m.steps {
		if !drop[i] {
			steps = append(steps, st)
		}
	}
	m.steps = steps
}

// nextClip returns the Clip step that alone reads the only output of step
// i, with its bounds, when they are known at load (attributes before
// opset 11, constant float32 scalars or omitted inputs after), or -1.
func (b *builder) nextClip(i int, reads, reader []int) (int, *[2]float32) {
	m := b.m
	s := soleOutput(&m.steps[i])
	if s < 0 || reads[s] != 1 {
		return -1, nil
	}
	j := reader[s]
	st := &m.steps[j]
	if st.node.Proto.GetOpType() != "Clip" || len(st.in) == 0 || st.in[0] != s || soleOutput(st) < 0 {
		return -1, nil
	}
	bounds := [2]float32{float32(math.Inf(-1)), float32(math.Inf(1))}
	if st.node.Opset < 11 {
		bounds = [2]float32{st.node.Float("min", -math.MaxFloat32), st.node.Float("max", math.MaxFloat32)}
		return j, &bounds
	}
	for k, slot := range st.in[1:] {
		if slot < 0 {
			continue
		}
		c := m.consts[slot]
		if c == nil || c.DType != Float32 || c.Len() != 1 {
			return -1, nil
		}
		bounds[k] = c.F32[0]
	}
	return j, &bounds
}

// soleOutput returns the slot of a step's first output when it has no
// other (omitted outputs aside), or -1.
func soleOutput(st *step) int {
	if len(st.out) == 0 || st.out[0] < 0 {
		return -1
	}
	for _, s := range st.out[1:] {
		if s >= 0 {
			return -1
		}
	}
	return st.out[0]
}

// plan computes when each value is last used, which steps may overwrite
// their input, and which outputs need copying.
func (b *builder) plan() {
	m := b.m
	n := len(b.names)
	root := make([]int, n)      // the slot whose data a value shares
	fresh := make([]bool, n)    // the root's data was allocated by a known kernel
	lastUse := make([]int, n)   // per root: the last step using any view of it
	external := make([]bool, n) // per root: escapes the run or belongs to the caller or model
	for s := range root {
		root[s] = s
		lastUse[s] = -1
		external[s] = m.consts[s] != nil || b.input[s]
	}
	for i, st := range m.steps {
		for _, s := range st.in {
			if s >= 0 {
				lastUse[root[s]] = i
			}
		}
		for k, s := range st.out {
			if s < 0 {
				continue
			}
			if k == 0 && st.op.View && len(st.in) > 0 && st.in[0] >= 0 {
				root[s] = root[st.in[0]]
			} else {
				fresh[s] = st.op.Fresh
			}
		}
	}
	for _, s := range m.outSlot {
		external[root[s]] = true
	}
	for i := range m.steps {
		st := &m.steps[i]
		ip := st.op.InPlace
		if ip == nil || len(st.in) != 1 || st.in[0] < 0 || len(st.out) != 1 || st.out[0] < 0 {
			continue
		}
		r := root[st.in[0]]
		if fresh[r] && !external[r] && lastUse[r] == i {
			st.inPlace = ip
			fresh[st.out[0]] = true // it now owns the dead input's data
		}
	}
	// Release each value after its own last use: views keep the data alive
	// through their own slots.
	own := make([]int, n)
	for s := range own {
		own[s] = -1
	}
	for i, st := range m.steps {
		for _, s := range st.in {
			if s >= 0 {
				own[s] = i
			}
		}
	}
	isOut := make([]bool, n)
	for _, s := range m.outSlot {
		isOut[s] = true
	}
	for s, i := range own {
		if i >= 0 && !isOut[s] && m.consts[s] == nil {
			m.steps[i].free = append(m.steps[i].free, s)
		}
	}
	b.planRecycling(root, external)
	seen := map[int]bool{}
	m.cloneOut = make([]bool, len(m.outSlot))
	for k, s := range m.outSlot {
		r := root[s]
		m.cloneOut[k] = m.consts[r] != nil || b.input[r] || seen[r]
		seen[r] = true
	}
}

// planRecycling has the step that last reads the data of a value made by
// a step with release give that data back. Only data the plan fully
// accounts for is given back: not an initializer's, an input's or an
// output's (external), not data a step took over in place, and not data
// read by a step that might return its input as its own output (one
// neither Fresh nor View).
func (b *builder) planRecycling(root []int, external []bool) {
	m := b.m
	release := map[int]func(*Tensor){} // root slot -> its producer's release
	for _, st := range m.steps {
		if st.release != nil && len(st.out) > 0 && st.out[0] >= 0 && !external[st.out[0]] {
			release[st.out[0]] = st.release
		}
	}
	if len(release) == 0 {
		return
	}
	last := map[int]int{} // root -> last step reading it
	for i, st := range m.steps {
		for _, s := range st.in {
			if s < 0 {
				continue
			}
			r := root[s]
			if release[r] == nil {
				continue
			}
			if st.inPlace != nil || !(st.op.Fresh || st.op.View) {
				delete(release, r)
				continue
			}
			last[r] = i
		}
	}
	for r, rel := range release {
		i, ok := last[r]
		if !ok {
			continue
		}
		for _, s := range m.steps[i].in {
			if s >= 0 && root[s] == r {
				m.steps[i].recycle = append(m.steps[i].recycle, recycled{slot: s, release: rel})
				break
			}
		}
	}
}

// Opset is the model's default-domain opset.
func (m *Model) Opset() int64 { return m.opset }

// Inputs describes the graph inputs a request must provide (initializers
// listed as inputs are not among them).
func (m *Model) Inputs() []ValueInfo { return cloneInfos(m.inputs) }

// Outputs describes the graph outputs Run returns.
func (m *Model) Outputs() []ValueInfo { return cloneInfos(m.outputs) }

func cloneInfos(in []ValueInfo) []ValueInfo {
	out := make([]ValueInfo, len(in))
	for i, v := range in {
		out[i] = v
		if v.Shape != nil {
			out[i].Shape = append([]int{}, v.Shape...)
		}
	}
	return out
}

// nodeError names the node in a kernel or check error, unless the error
// (from Node.Errorf) already does.
func nodeError(n *Node, err error) error {
	prefix := fmt.Sprintf("%s node %q", n.Proto.GetOpType(), n.Name())
	if strings.Contains(err.Error(), prefix) {
		return err
	}
	return fmt.Errorf("%s: %w", prefix, err)
}
