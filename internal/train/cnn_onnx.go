package train

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// ExportONNX writes the CNN as an ONNX graph (opset ONNXOpset) named name:
// input ONNXInput float32 [N, 1, 28, 28], then Conv, Relu, MaxPool, Conv,
// Relu, MaxPool, Flatten, Gemm and Softmax (axis 1) producing ONNXOutput
// float32 [N, 10]; its metadata outpost.train.arch says the widths
// ("cnn-8-16-10"). The bytes depend only on the weights and name. ImportCNN
// reads the file back.
func (c *CNN) ExportONNX(w io.Writer, name string) error {
	data, err := c.MarshalONNX(name)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// MarshalONNX is ExportONNX into a byte slice.
func (c *CNN) MarshalONNX(name string) ([]byte, error) {
	if err := c.checkShape(); err != nil {
		return nil, err
	}
	return c.builder(name).Marshal()
}

// cnnTensor is one of the CNN's initializers.
type cnnTensor struct {
	name string
	data *[]float32
	dims []int64
}

// tensors lists c's initializers in params() order, with their dims for
// widths c1 and c2.
func (c *CNN) tensors(c1, c2 int) []cnnTensor {
	w1, w2 := int64(c1), int64(c2)
	return []cnnTensor{
		{"conv1.weight", &c.Conv1W, []int64{w1, CNNChannels, cnnK, cnnK}},
		{"conv1.bias", &c.Conv1B, []int64{w1}},
		{"conv2.weight", &c.Conv2W, []int64{w2, w1, cnnK, cnnK}},
		{"conv2.bias", &c.Conv2B, []int64{w2}},
		{"fc.weight", &c.FCW, []int64{w2 * cnnCell, CNNClasses}},
		{"fc.bias", &c.FCB, []int64{CNNClasses}},
	}
}

// builder builds the CNN's graph, named name.
func (c *CNN) builder(name string) *onnx.Builder {
	conv := []onnx.Attr{
		onnx.AttrInts("kernel_shape", cnnK, cnnK),
		onnx.AttrInts("pads", 1, 1, 1, 1),
		onnx.AttrInts("strides", 1, 1),
	}
	pool := []onnx.Attr{
		onnx.AttrInts("kernel_shape", 2, 2),
		onnx.AttrInts("strides", 2, 2),
	}
	c1, c2 := c.Widths()
	b := onnx.NewBuilder(name, ONNXOpset).
		SetDoc(fmt.Sprintf("convolutional network conv3x3(%d)-pool-conv3x3(%d)-pool-fc(%d) on 1x28x28 images, trained by outpost internal/train", c1, c2, CNNClasses)).
		SetMetadata("outpost.train.arch", fmt.Sprintf("cnn-%d-%d-%d", c1, c2, CNNClasses)).
		Input(ONNXInput, onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(CNNChannels), onnx.D(CNNSide), onnx.D(CNNSide))
	for _, t := range c.tensors(c1, c2) {
		b.Float32(t.name, *t.data, t.dims...)
	}
	b.Node("Conv", "conv1", []string{ONNXInput, "conv1.weight", "conv1.bias"}, []string{"conv1"}, conv...).
		Node("Relu", "relu1", []string{"conv1"}, []string{"relu1"}).
		Node("MaxPool", "pool1", []string{"relu1"}, []string{"pool1"}, pool...).
		Node("Conv", "conv2", []string{"pool1", "conv2.weight", "conv2.bias"}, []string{"conv2"}, conv...).
		Node("Relu", "relu2", []string{"conv2"}, []string{"relu2"}).
		Node("MaxPool", "pool2", []string{"relu2"}, []string{"pool2"}, pool...).
		Node("Flatten", "flatten", []string{"pool2"}, []string{"flatten"}, onnx.AttrInt("axis", 1)).
		Node("Gemm", "fc", []string{"flatten", "fc.weight", "fc.bias"}, []string{"fc"}).
		Node("Softmax", "softmax", []string{"fc"}, []string{ONNXOutput}, onnx.AttrInt("axis", 1)).
		Output(ONNXOutput, onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(CNNClasses))
	return b
}

// ImportCNN reads back a CNN that ExportONNX wrote, of any widths, for
// instance the initial model of a federated job or a round's model pulled
// from the registry. The graph must be exactly the exported one: the same
// operator set, input, output, nodes (operators, attributes, tensor names)
// and initializers (names, float32, shapes); the widths are read from the
// biases' lengths, and the weights' shapes must agree with them. Only the
// graph's name, documentation, metadata, node names, the batch dimension
// and value_info annotations may differ. Any other graph is refused with
// an error naming what differs.
func ImportCNN(data []byte) (*CNN, error) {
	mp, err := onnx.Unmarshal(data)
	if err != nil {
		return nil, err
	}
	ref, err := NewCNN(0).builder("").Model()
	if err != nil {
		return nil, err
	}
	if err := sameOpsets(mp.OpsetImport, ref.OpsetImport); err != nil {
		return nil, err
	}
	g, rg := mp.Graph, ref.Graph
	if err := sameValues("input", g.Input, rg.Input); err != nil {
		return nil, err
	}
	if err := sameValues("output", g.Output, rg.Output); err != nil {
		return nil, err
	}
	if len(g.Node) != len(rg.Node) {
		return nil, fmt.Errorf("train: ONNX graph has %d nodes, the CNN's has %d (%s)", len(g.Node), len(rg.Node), opList(rg.Node))
	}
	for i, n := range g.Node {
		if err := sameNode(i, n, rg.Node[i]); err != nil {
			return nil, err
		}
	}
	if len(g.SparseInitializer) > 0 {
		return nil, fmt.Errorf("train: ONNX graph has %d sparse initializers, the CNN's has none", len(g.SparseInitializer))
	}
	if len(g.Initializer) != len(rg.Initializer) {
		return nil, fmt.Errorf("train: ONNX graph has %d initializers, the CNN's has %d", len(g.Initializer), len(rg.Initializer))
	}
	c1, err := widthOf(g.Initializer, "conv1.bias")
	if err != nil {
		return nil, err
	}
	c2, err := widthOf(g.Initializer, "conv2.bias")
	if err != nil {
		return nil, err
	}
	c := &CNN{}
	want := map[string]cnnTensor{}
	for _, t := range c.tensors(c1, c2) {
		want[t.name] = t
	}
	for _, t := range g.Initializer {
		name := t.GetName()
		w, ok := want[name]
		if !ok {
			return nil, fmt.Errorf("train: ONNX initializer %q is not one of the CNN's (or appears twice)", name)
		}
		delete(want, name)
		if !slices.Equal(t.Dims, w.dims) {
			return nil, fmt.Errorf("train: ONNX initializer %q has dims %v, the CNN's (of widths %d and %d, read from the biases) are %v",
				name, t.Dims, c1, c2, w.dims)
		}
		v, err := onnx.Float32Data(t)
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		*w.data = v
	}
	return c, nil
}

// maxCNNWidth bounds the widths ImportCNN reads, so that the weights' sizes
// stay far from overflowing.
const maxCNNWidth = 1 << 16

// widthOf returns the length of the one-dimensional initializer name among
// inits (a bias, whose length is its convolution's width).
func widthOf(inits []*onnxpb.TensorProto, name string) (int, error) {
	for _, t := range inits {
		if t.GetName() != name {
			continue
		}
		if len(t.Dims) != 1 || t.Dims[0] < 1 || t.Dims[0] > maxCNNWidth {
			return 0, fmt.Errorf("train: ONNX initializer %q has dims %v, the CNN's are [C] for a width C from 1 to %d", name, t.Dims, maxCNNWidth)
		}
		return int(t.Dims[0]), nil
	}
	return 0, fmt.Errorf("train: ONNX graph has no initializer %q", name)
}

// sameOpsets checks that got imports exactly the operator sets of want.
func sameOpsets(got, want []*onnxpb.OperatorSetIdProto) error {
	str := func(s []*onnxpb.OperatorSetIdProto) string {
		var parts []string
		for _, o := range s {
			d := o.GetDomain()
			if d == "" {
				d = "ai.onnx"
			}
			parts = append(parts, fmt.Sprintf("%s %d", d, o.GetVersion()))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	if g, w := str(got), str(want); g != w {
		return fmt.Errorf("train: ONNX operator sets %s, the CNN's are %s", g, w)
	}
	return nil
}

// sameValues checks graph inputs or outputs (kind) against the CNN's: names,
// element types and shapes, the first (batch) dimension excepted.
func sameValues(kind string, got, want []*onnxpb.ValueInfoProto) error {
	str := func(s []*onnxpb.ValueInfoProto) string {
		var parts []string
		for _, v := range s {
			tt := v.GetType().GetTensorType()
			dims := []string{}
			for i, d := range tt.GetShape().GetDim() {
				switch {
				case i == 0:
					dims = append(dims, "N")
				case d.GetDimParam() != "":
					dims = append(dims, d.GetDimParam())
				default:
					dims = append(dims, strconv.FormatInt(d.GetDimValue(), 10))
				}
			}
			elem := onnxpb.TensorProto_DataType(tt.GetElemType()).String()
			if tt == nil {
				elem = "not a tensor"
			}
			parts = append(parts, fmt.Sprintf("%q %s [%s]", v.GetName(), elem, strings.Join(dims, " ")))
		}
		return strings.Join(parts, ", ")
	}
	if g, w := str(got), str(want); g != w {
		return fmt.Errorf("train: ONNX graph %s %s, the CNN's is %s", kind, g, w)
	}
	return nil
}

// sameNode checks node i of a graph against the CNN's node want: operator,
// domain, input and output names, and attributes.
func sameNode(i int, got, want *onnxpb.NodeProto) error {
	what := fmt.Sprintf("train: ONNX node %d (%s)", i, got.GetOpType())
	if got.GetOpType() != want.GetOpType() || got.GetDomain() != want.GetDomain() {
		return fmt.Errorf("%s: the CNN's node %d is %s", what, i, want.GetOpType())
	}
	if !slices.Equal(got.Input, want.Input) {
		return fmt.Errorf("%s: inputs %q, the CNN's are %q", what, got.Input, want.Input)
	}
	if !slices.Equal(got.Output, want.Output) {
		return fmt.Errorf("%s: outputs %q, the CNN's are %q", what, got.Output, want.Output)
	}
	if g, w := attrList(got.Attribute), attrList(want.Attribute); g != w {
		return fmt.Errorf("%s: attributes {%s}, the CNN's are {%s}", what, g, w)
	}
	return nil
}

// attrList describes attributes in name order, for comparison and errors.
func attrList(attrs []*onnxpb.AttributeProto) string {
	var parts []string
	for _, a := range attrs {
		var v string
		switch a.GetType() {
		case onnxpb.AttributeProto_INT:
			v = strconv.FormatInt(a.GetI(), 10)
		case onnxpb.AttributeProto_INTS:
			v = fmt.Sprint(a.GetInts())
		case onnxpb.AttributeProto_FLOAT:
			v = strconv.FormatFloat(float64(a.GetF()), 'g', -1, 32)
		case onnxpb.AttributeProto_STRING:
			v = strconv.Quote(string(a.GetS()))
		default:
			v = "(" + a.GetType().String() + ")"
		}
		parts = append(parts, a.GetName()+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// opList names the operators of nodes in order.
func opList(nodes []*onnxpb.NodeProto) string {
	ops := make([]string, len(nodes))
	for i, n := range nodes {
		ops[i] = n.GetOpType()
	}
	return strings.Join(ops, ", ")
}
