package compress

import (
	"fmt"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// dynamicWeightMax bounds the dynamic variant's int8 weights to 7 bits:
// uint8 activations times such weights add in pairs within int16, which
// is how x86 integer kernels without VNNI (ONNX Runtime's among them)
// accumulate, so no sum saturates.
const dynamicWeightMax = 63

// QuantizeDynamic returns the MLP m (a chain of Gemm and MatMul nodes with
// weight initializers) quantized dynamically: each node's input is
// quantized to uint8 over its own range as the model runs
// (DynamicQuantizeLinear), multiplied in integers by the weights stored
// as int8 per output column (MatMulInteger), and the int32 sums scaled
// back to float32, the bias added. It needs no calibration data. A Gemm
// with transA, or alpha or beta other than 1, is refused.
func QuantizeDynamic(m *onnxpb.ModelProto) (*onnxpb.ModelProto, error) {
	out, err := graphOf(m)
	if err != nil {
		return nil, err
	}
	g := out.Graph
	ts, err := targets(g)
	if err != nil {
		return nil, err
	}
	inits := initializers(g)
	names := newNamer(g)
	replace := map[int][]*onnxpb.NodeProto{}
	drop := map[string]bool{}
	for _, t := range ts {
		n := g.Node[t.node]
		op := n.GetOpType()
		if op == "Conv" {
			return nil, fmt.Errorf("compress: node %q (Conv): dynamic quantization covers Gemm and MatMul; use static int8 for convolutions", n.GetName())
		}
		if op == "Gemm" {
			for _, a := range n.Attribute {
				switch {
				case a.GetName() == "transA" && a.GetI() != 0,
					(a.GetName() == "alpha" || a.GetName() == "beta") && a.GetF() != 1:
					return nil, fmt.Errorf("compress: node %q (Gemm): attribute %s is not supported by dynamic quantization", n.GetName(), a.GetName())
				}
			}
		}
		w := inits[n.Input[1]]
		v, err := onnx.Float32Data(w)
		if err != nil {
			return nil, fmt.Errorf("compress: %w", err)
		}
		// MatMulInteger takes B as [K, N]: a Gemm's transposed B is turned.
		k, nOut := int(w.Dims[0]), int(w.Dims[1])
		if t.axis == 0 {
			k, nOut = nOut, k
			tv := make([]float32, len(v))
			for o := range nOut {
				for i := range k {
					tv[i*nOut+o] = v[o*k+i]
				}
			}
			v = tv
		}
		q, scale, err := quantizeChannels(v, []int64{int64(k), int64(nOut)}, 1, dynamicWeightMax)
		if err != nil {
			return nil, fmt.Errorf("compress: node %q: weight %q: %w", n.GetName(), w.GetName(), err)
		}
		base := n.GetName()
		if base == "" {
			base = n.Output[0]
		}
		wq, ws := names.fresh(w.GetName()+"_quantized"), names.fresh(w.GetName()+"_scale")
		g.Initializer = append(g.Initializer, int8Tensor(wq, q, int64(k), int64(nOut)), float32Tensor(ws, scale, int64(nOut)))
		drop[w.GetName()] = true
		xq, xs, xz := names.fresh(base+"_input_quantized"), names.fresh(base+"_input_scale"), names.fresh(base+"_input_zero_point")
		acc, accF, s, y := names.fresh(base+"_int32"), names.fresh(base+"_float"), names.fresh(base+"_scale"), names.fresh(base+"_scaled")
		nodes := []*onnxpb.NodeProto{
			node("DynamicQuantizeLinear", names.fresh(base+"_quantize_input"), []string{n.Input[0]}, []string{xq, xs, xz}),
			node("MatMulInteger", names.fresh(base+"_matmul"), []string{xq, wq, xz}, []string{acc}),
			node("Cast", names.fresh(base+"_cast"), []string{acc}, []string{accF}, attrI("to", int64(onnxpb.TensorProto_FLOAT))),
			node("Mul", names.fresh(base+"_scales"), []string{xs, ws}, []string{s}),
		}
		if len(n.Input) > 2 && n.Input[2] != "" {
			nodes = append(nodes,
				node("Mul", names.fresh(base+"_rescale"), []string{accF, s}, []string{y}),
				node("Add", names.fresh(base+"_bias"), []string{y, n.Input[2]}, []string{n.Output[0]}))
		} else {
			nodes = append(nodes, node("Mul", names.fresh(base+"_rescale"), []string{accF, s}, []string{n.Output[0]}))
		}
		replace[t.node] = nodes
	}
	used := uses(g)
	kept := g.Initializer[:0:0]
	for _, t := range g.Initializer {
		if !drop[t.GetName()] || used[t.GetName()] > countReplaced(g, replace, t.GetName()) {
			kept = append(kept, t) // also read by a node left as it was
		}
	}
	g.Initializer = kept
	var nodes []*onnxpb.NodeProto
	for i, n := range g.Node {
		if r, ok := replace[i]; ok {
			nodes = append(nodes, r...)
			continue
		}
		nodes = append(nodes, n)
	}
	g.Node = nodes
	return out, nil
}

// countReplaced counts the replaced nodes that read value name.
func countReplaced(g *onnxpb.GraphProto, replace map[int][]*onnxpb.NodeProto, name string) int {
	c := 0
	for i := range replace {
		for _, in := range g.Node[i].Input {
			if in == name {
				c++
			}
		}
	}
	return c
}
