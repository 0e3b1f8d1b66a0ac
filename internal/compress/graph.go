package compress

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// MinOpset is the lowest opset a rewritten model may have: per-axis
// DequantizeLinear came with opset 13.
const MinOpset = 13

// graphOf checks m for a rewrite and returns a deep copy of it: the input
// is never changed.
func graphOf(m *onnxpb.ModelProto) (*onnxpb.ModelProto, error) {
	if m == nil || m.Graph == nil {
		return nil, fmt.Errorf("compress: model has no graph")
	}
	if v := opset(m); v < MinOpset {
		return nil, fmt.Errorf("compress: model of opset %d: want %d or later (per-channel DequantizeLinear)", v, MinOpset)
	}
	return proto.Clone(m).(*onnxpb.ModelProto), nil
}

// opset is the model's default-domain opset (0: none).
func opset(m *onnxpb.ModelProto) int64 {
	for _, o := range m.OpsetImport {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			return o.GetVersion()
		}
	}
	return 0
}

// initializers maps the graph's initializers by name.
func initializers(g *onnxpb.GraphProto) map[string]*onnxpb.TensorProto {
	out := make(map[string]*onnxpb.TensorProto, len(g.Initializer))
	for _, t := range g.Initializer {
		out[t.GetName()] = t
	}
	return out
}

// uses counts the nodes reading each value.
func uses(g *onnxpb.GraphProto) map[string]int {
	out := map[string]int{}
	for _, n := range g.Node {
		for _, in := range n.Input {
			out[in]++
		}
	}
	for _, o := range g.Output {
		out[o.GetName()]++
	}
	return out
}

// attrInt returns node n's integer attribute name, or def.
func attrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a.GetI()
		}
	}
	return def
}

// node makes a node, unnamed where name is "" (a node's name is optional in ONNX).
func node(op, name string, inputs, outputs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	n := &onnxpb.NodeProto{OpType: proto.String(op), Input: inputs, Output: outputs, Attribute: attrs}
	if name != "" {
		n.Name = proto.String(name)
	}
	return n
}

func attrI(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

// fresh returns a value name not yet in the graph, from base.
type namer map[string]bool

func newNamer(g *onnxpb.GraphProto) namer {
	n := namer{}
	for _, v := range g.Input {
		n[v.GetName()] = true
	}
	for _, v := range g.Output {
		n[v.GetName()] = true
	}
	for _, t := range g.Initializer {
		n[t.GetName()] = true
	}
	for _, nd := range g.Node {
		n[nd.GetName()] = true
		for _, o := range nd.Output {
			n[o] = true
		}
	}
	return n
}

func (n namer) fresh(base string) string {
	name := base
	for i := 1; n[name]; i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	n[name] = true
	return name
}
