package train

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// ONNX names of the exported graph.
const (
	ONNXInput  = "input"         // float32 [N, Inputs()], features scaled as in training ([0, 1] pixels)
	ONNXOutput = "probabilities" // float32 [N, Classes()], softmax over classes
	ONNXOpset  = 13
)

// ExportONNX writes the model as an ONNX graph named name: for each layer a Gemm
// (initializers "fcI.weight" [In, Out] and "fcI.bias" [Out]),
// Relu between layers, and Softmax (axis 1) producing ONNXOutput. The batch
// dimension is the symbol "N". The bytes depend only on the weights and name:
// exporting twice gives identical files, and layers whose weights did not change
// are byte-identical runs in both files.
func (m *MLP) ExportONNX(w io.Writer, name string) error {
	data, err := m.MarshalONNX(name)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// MarshalONNX is ExportONNX into a byte slice.
func (m *MLP) MarshalONNX(name string) ([]byte, error) {
	sizes := make([]string, 0, len(m.Layers)+1)
	for _, s := range m.Sizes() {
		sizes = append(sizes, strconv.Itoa(s))
	}
	b := onnx.NewBuilder(name, ONNXOpset).
		SetDoc("multilayer perceptron "+strings.Join(sizes, "-")+" trained by outpost internal/train").
		SetMetadata("outpost.train.sizes", strings.Join(sizes, ",")).
		Input(ONNXInput, onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(int64(m.Inputs())))
	prev := ONNXInput
	for i, l := range m.Layers {
		wn, bn := fmt.Sprintf("fc%d.weight", i), fmt.Sprintf("fc%d.bias", i)
		b.Float32(wn, l.W, int64(l.In), int64(l.Out)).Float32(bn, l.B, int64(l.Out))
		out := fmt.Sprintf("fc%d", i)
		b.Node("Gemm", out, []string{prev, wn, bn}, []string{out})
		prev = out
		if i < len(m.Layers)-1 {
			r := fmt.Sprintf("relu%d", i)
			b.Node("Relu", r, []string{prev}, []string{r})
			prev = r
		}
	}
	b.Node("Softmax", "softmax", []string{prev}, []string{ONNXOutput}, onnx.AttrInt("axis", 1))
	b.Output(ONNXOutput, onnxpb.TensorProto_FLOAT, onnx.P("N"), onnx.D(int64(m.Classes())))
	return b.Marshal()
}

// ImportONNX reads back a model written by ExportONNX (a chain of Gemm with
// transB=1, Relu between, and a final Softmax), for instance to fine-tune or
// average a model pulled from the registry. Gemm weights may be [In, Out] or,
// with transB=1, [Out, In] (PyTorch's layout). Other graphs are refused.
func ImportONNX(data []byte) (*MLP, error) {
	mp, err := onnx.Unmarshal(data)
	if err != nil {
		return nil, err
	}
	g := mp.Graph
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = t
	}
	if len(g.Input) == 0 {
		return nil, fmt.Errorf("train: ONNX graph has no input")
	}
	prev := g.Input[0].GetName()
	m := &MLP{}
	nodes := g.Node
	for i, n := range nodes {
		if len(n.Input) == 0 || n.Input[0] != prev || len(n.Output) != 1 {
			return nil, fmt.Errorf("train: ONNX node %d (%s) does not continue the chain from %q", i, n.GetOpType(), prev)
		}
		switch n.GetOpType() {
		case "Gemm":
			if len(n.Input) != 3 {
				return nil, fmt.Errorf("train: Gemm node %d: %d inputs, want 3", i, len(n.Input))
			}
			transB := int64(0)
			for _, a := range n.Attribute {
				switch a.GetName() {
				case "transB":
					transB = a.GetI()
				case "transA":
					if a.GetI() != 0 {
						return nil, fmt.Errorf("train: Gemm node %d: transA is not supported", i)
					}
				case "alpha", "beta":
					if a.GetF() != 1 {
						return nil, fmt.Errorf("train: Gemm node %d: %s %v is not supported", i, a.GetName(), a.GetF())
					}
				}
			}
			if transB != 0 && transB != 1 {
				return nil, fmt.Errorf("train: Gemm node %d: transB %d", i, transB)
			}
			wt, bt := inits[n.Input[1]], inits[n.Input[2]]
			if wt == nil || bt == nil || len(wt.Dims) != 2 || len(bt.Dims) != 1 || bt.Dims[0] != wt.Dims[1-transB] || wt.Dims[0] < 1 || wt.Dims[1] < 1 {
				return nil, fmt.Errorf("train: Gemm node %d: weights %q and bias %q missing or misshapen", i, n.Input[1], n.Input[2])
			}
			w, err := onnx.Float32Data(wt)
			if err != nil {
				return nil, err
			}
			bias, err := onnx.Float32Data(bt)
			if err != nil {
				return nil, err
			}
			l := Dense{In: int(wt.Dims[0]), Out: int(wt.Dims[1]), W: w, B: bias}
			if transB == 1 {
				l.In, l.Out = l.Out, l.In
				l.W = make([]float32, len(w))
				for o := 0; o < l.Out; o++ {
					for k := 0; k < l.In; k++ {
						l.W[k*l.Out+o] = w[o*l.In+k]
					}
				}
			}
			if k := len(m.Layers); k > 0 && m.Layers[k-1].Out != l.In {
				return nil, fmt.Errorf("train: Gemm node %d takes %d inputs after a layer of %d", i, l.In, m.Layers[k-1].Out)
			}
			if k := len(m.Layers); k > 0 && (i == 0 || nodes[i-1].GetOpType() != "Relu") {
				return nil, fmt.Errorf("train: Gemm node %d is not preceded by Relu", i)
			}
			m.Layers = append(m.Layers, l)
		case "Relu":
			if i == 0 || nodes[i-1].GetOpType() != "Gemm" {
				return nil, fmt.Errorf("train: Relu node %d does not follow a Gemm", i)
			}
		case "Softmax":
			if i != len(nodes)-1 || nodes[i-1].GetOpType() != "Gemm" {
				return nil, fmt.Errorf("train: Softmax node %d must be the last, after a Gemm", i)
			}
		default:
			return nil, fmt.Errorf("train: ONNX op %s is not part of an exported MLP", n.GetOpType())
		}
		prev = n.Output[0]
	}
	if len(m.Layers) == 0 || len(nodes) == 0 || nodes[len(nodes)-1].GetOpType() != "Softmax" {
		return nil, fmt.Errorf("train: ONNX graph is not a Gemm/Relu chain ending in Softmax")
	}
	return m, nil
}
