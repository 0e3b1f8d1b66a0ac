package interp

import (
	"fmt"
	"sort"

	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// Node is a graph node as a kernel sees it: its operator, attributes and
// the opset of its domain in the model.
type Node struct {
	Proto *onnxpb.NodeProto
	Opset int64
	attrs map[string]*onnxpb.AttributeProto
}

// Name is the node's name, or its operator and first output when unnamed.
func (n *Node) Name() string {
	if n.Proto.GetName() != "" {
		return n.Proto.GetName()
	}
	out := ""
	if len(n.Proto.GetOutput()) > 0 {
		out = n.Proto.GetOutput()[0]
	}
	return n.Proto.GetOpType() + "->" + out
}

func (n *Node) attr(name string) *onnxpb.AttributeProto {
	if n.attrs == nil {
		n.attrs = map[string]*onnxpb.AttributeProto{}
		for _, a := range n.Proto.GetAttribute() {
			n.attrs[a.GetName()] = a
		}
	}
	return n.attrs[name]
}

// Int returns an integer attribute, or def when absent.
func (n *Node) Int(name string, def int64) int64 {
	if a := n.attr(name); a != nil {
		return a.GetI()
	}
	return def
}

// Float returns a float attribute, or def when absent.
func (n *Node) Float(name string, def float32) float32 {
	if a := n.attr(name); a != nil {
		return a.GetF()
	}
	return def
}

// Ints returns an integer list attribute, or def when absent.
func (n *Node) Ints(name string, def []int64) []int64 {
	if a := n.attr(name); a != nil {
		return a.GetInts()
	}
	return def
}

// String returns a string attribute, or def when absent.
func (n *Node) String(name, def string) string {
	if a := n.attr(name); a != nil {
		return string(a.GetS())
	}
	return def
}

// Has reports whether the node sets the attribute.
func (n *Node) Has(name string) bool { return n.attr(name) != nil }

// Errorf returns an error naming the node.
func (n *Node) Errorf(format string, args ...any) error {
	return fmt.Errorf("%s node %q: %s", n.Proto.GetOpType(), n.Name(), fmt.Sprintf(format, args...))
}

// Kernel computes a node's outputs from its inputs. An input that the model
// leaves empty (an omitted optional input) is nil. Kernels must not modify
// their inputs: they may be initializers shared by every request.
type Kernel func(n *Node, in []*Tensor) ([]*Tensor, error)

// Op is an operator the interpreter implements.
type Op struct {
	// MinOpset and MaxOpset bound the opsets of the default domain whose
	// definition of the operator this implementation follows.
	MinOpset, MaxOpset int64
	// Check validates the node's attributes and input count at load time;
	// nil means no check.
	Check func(n *Node) error
	// Run is the kernel.
	Run Kernel
	// Prepare, when set, is called once per node at load time with the
	// node's constant inputs (initializers and folded Constants; nil for
	// the others) and returns the kernel the node runs instead of Run, or
	// nil to keep Run. A prepared kernel may precompute from the constants
	// and keep scratch buffers for its node; it must give Run's results
	// and errors, and be safe for concurrent use.
	Prepare func(n *Node, consts []*Tensor) Kernel
	// Fresh says Run (and Prepare's kernel) always returns newly allocated
	// outputs, which a later step may then overwrite in place.
	Fresh bool
	// View says the first output shares the first input's data.
	View bool
	// InPlace, when set, computes the node by overwriting its only input;
	// the executor uses it when that input is fresh and dead after the node.
	InPlace func(n *Node, t *Tensor) error
	// Volatile says the outputs are not a function of the inputs (a
	// random generator): the loader never computes such a node at load,
	// as it does the others whose inputs are all known.
	Volatile bool
}

// ops maps an operator type of the default ONNX domain to its
// implementation. It is built once by opTable and never modified.
type ops map[string]Op

// opTable lists every operator the interpreter implements. Each file of
// kernels contributes with a function called here.
func opTable() ops {
	t := ops{}
	for _, add := range []func(ops){
		addCoreOps,          // core.go: elementwise, matmul, gemm, activations, shape ops, cast
		addNNOps,            // nn.go: conv, pooling, batch normalization
		addQuantOps,         // quant.go: QuantizeLinear, DequantizeLinear, MatMulInteger
		addLogicOps,         // logic.go: comparisons, And, Or, Xor, Not, Where
		addArithOps,         // arith.go: Pow, Mod, Max, Min, Sum, Mean
		addReduceOps,        // reduce.go: ReduceXxx, ArgMax, ArgMin, CumSum, TopK
		addActivationOps,    // activation.go: Clip, LeakyRelu, Elu, PRelu, Gelu, Dropout, rounding, ...
		addDimsOps,          // dims.go: Shape, Size, Squeeze, Unsqueeze, Expand, Tile, ConstantOfShape, Slice, Split, DepthToSpace, SpaceToDepth
		addIndexOps,         // index.go: Gather, GatherElements, ScatterND
		addPadOps,           // pad.go: Pad
		addNormOps,          // norm.go: LayerNormalization, InstanceNormalization
		addResizeOps,        // resize.go: Resize
		addConvTransposeOps, // convtranspose.go: ConvTranspose
		addEinsumOps,        // einsum.go: Einsum
	} {
		add(t)
	}
	return t
}

// Supported lists the operators the interpreter implements, sorted.
func Supported() []string {
	t := opTable()
	names := make([]string, 0, len(t))
	for k := range t {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}
