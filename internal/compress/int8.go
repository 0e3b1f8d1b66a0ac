package compress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// Range is the range of a tensor's values that its quantization covers.
type Range struct{ Min, Max float32 }

// target is a node whose weight the int8 rewrite quantizes: node index,
// the weight's input index and its output-channel axis.
type target struct {
	node   int
	weight int
	axis   int
}

// ErrNothingToQuantize is what QuantizeInt8 and Calibrate return for a model
// without a Gemm, MatMul or Conv that has a weight initializer.
var ErrNothingToQuantize = errors.New("compress: no Gemm, MatMul or Conv with a weight initializer to quantize")

// targets returns the nodes of g the int8 rewrite quantizes.
func targets(g *onnxpb.GraphProto) ([]target, error) {
	inits := initializers(g)
	var out []target
	for i, n := range g.Node {
		if n.GetDomain() != "" && n.GetDomain() != "ai.onnx" || len(n.Input) < 2 {
			continue
		}
		w, ok := inits[n.Input[1]]
		if !ok || w.GetDataType() != int32(onnxpb.TensorProto_FLOAT) {
			continue
		}
		var axis int
		switch n.GetOpType() {
		case "Gemm":
			if attrInt(n, "transB", 0) == 0 {
				axis = 1 // B is [K, N]
			}
		case "MatMul":
			if len(w.Dims) != 2 {
				continue
			}
			axis = 1
		case "Conv":
			axis = 0 // W is [M, C/group, kH, kW]
		default:
			continue
		}
		if len(w.Dims) < 2 {
			return nil, fmt.Errorf("compress: node %q (%s): weight %q of dims %v", n.GetName(), n.GetOpType(), w.GetName(), w.Dims)
		}
		out = append(out, target{node: i, weight: 1, axis: axis})
	}
	if len(out) == 0 {
		return nil, ErrNothingToQuantize
	}
	return out, nil
}

// QuantizeInt8 returns m quantized to int8 in QDQ form: the weight of every
// Gemm, MatMul and Conv becomes int8, symmetric per output channel, and
// DequantizeLinear gives it back to the node; with ranges (from Calibrate,
// keyed by tensor name), each such node's data input also passes through
// QuantizeLinear and DequantizeLinear to uint8 over its range, so that a
// runtime with int8 kernels runs the node in integers. Without ranges only
// the weights are quantized. Biases stay float32. The nodes it adds are
// unnamed (their outputs name them): on a small model names are a
// share of the file.
func QuantizeInt8(m *onnxpb.ModelProto, ranges map[string]Range) (*onnxpb.ModelProto, error) {
	out, err := graphOf(m)
	if err != nil {
		return nil, err
	}
	g := out.Graph
	ts, err := targets(g)
	if err != nil {
		return nil, err
	}
	names := newNamer(g)
	inits := initializers(g)
	quantized := map[string]bool{}
	var weights []*onnxpb.NodeProto
	acts := map[int][]*onnxpb.NodeProto{} // QDQ nodes to put before node i
	done := map[string]string{}           // activation -> its dequantized name
	drop := map[string]bool{}
	for _, t := range ts {
		n := g.Node[t.node]
		wname := n.Input[t.weight]
		if !quantized[wname] {
			quantized[wname] = true
			w := inits[wname]
			v, err := onnx.Float32Data(w)
			if err != nil {
				return nil, fmt.Errorf("compress: %w", err)
			}
			q, scale, err := quantizeChannels(v, w.Dims, t.axis, 127)
			if err != nil {
				return nil, fmt.Errorf("compress: node %q: weight %q: %w", n.GetName(), wname, err)
			}
			qn, sn, zn := names.fresh(wname+"_quantized"), names.fresh(wname+"_scale"), names.fresh(wname+"_zero_point")
			g.Initializer = append(g.Initializer,
				int8Tensor(qn, q, w.Dims...),
				float32Tensor(sn, scale, int64(len(scale))),
				int8Tensor(zn, make([]int8, len(scale)), int64(len(scale))))
			drop[wname] = true
			weights = append(weights, node("DequantizeLinear", "", []string{qn, sn, zn}, []string{wname},
				attrI("axis", int64(t.axis))))
		}
		if ranges == nil {
			continue
		}
		x := n.Input[0]
		if dq, ok := done[x]; ok {
			n.Input[0] = dq
			continue
		}
		r, ok := ranges[x]
		if !ok {
			return nil, fmt.Errorf("compress: node %q: no calibrated range for its input %q", n.GetName(), x)
		}
		scale, zp, err := uint8Params(r)
		if err != nil {
			return nil, fmt.Errorf("compress: node %q: input %q: %w", n.GetName(), x, err)
		}
		sn, zn := names.fresh(x+"_scale"), names.fresh(x+"_zero_point")
		qn, dq := names.fresh(x+"_quantized"), names.fresh(x+"_dequantized")
		g.Initializer = append(g.Initializer, float32Tensor(sn, []float32{scale}), uint8Tensor(zn, []uint8{zp}))
		acts[t.node] = append(acts[t.node],
			node("QuantizeLinear", "", []string{x, sn, zn}, []string{qn}),
			node("DequantizeLinear", "", []string{qn, sn, zn}, []string{dq}))
		done[x] = dq
		n.Input[0] = dq
	}
	kept := g.Initializer[:0:0]
	for _, t := range g.Initializer {
		if !drop[t.GetName()] {
			kept = append(kept, t)
		}
	}
	g.Initializer = kept
	nodes := append([]*onnxpb.NodeProto(nil), weights...)
	for i, n := range g.Node {
		nodes = append(nodes, acts[i]...)
		nodes = append(nodes, n)
	}
	g.Node = nodes
	return out, nil
}

// quantizeChannels quantizes v (of dims) to int8, symmetric per channel
// along axis: q = round(v / s) in [-qmax, qmax], s = max|v| / qmax over the
// channel (1 for a channel of zeros).
func quantizeChannels(v []float32, dims []int64, axis, qmax int) ([]int8, []float32, error) {
	if axis >= len(dims) {
		return nil, nil, fmt.Errorf("axis %d of dims %v", axis, dims)
	}
	outer, d, inner := 1, int(dims[axis]), 1
	for _, x := range dims[:axis] {
		outer *= int(x)
	}
	for _, x := range dims[axis+1:] {
		inner *= int(x)
	}
	if outer*d*inner != len(v) || d == 0 {
		return nil, nil, fmt.Errorf("%d values for dims %v", len(v), dims)
	}
	maxAbs := make([]float64, d)
	for o := range outer {
		for c := range d {
			for _, x := range v[(o*d+c)*inner : (o*d+c+1)*inner] {
				a := math.Abs(float64(x))
				if math.IsNaN(a) || math.IsInf(a, 0) {
					return nil, nil, fmt.Errorf("value %v", x)
				}
				maxAbs[c] = max(maxAbs[c], a)
			}
		}
	}
	scale := make([]float32, d)
	for c, m := range maxAbs {
		scale[c] = 1
		if m > 0 {
			scale[c] = float32(m / float64(qmax))
		}
	}
	q := make([]int8, len(v))
	for o := range outer {
		for c := range d {
			s := float64(scale[c])
			for i := (o*d + c) * inner; i < (o*d+c+1)*inner; i++ {
				q[i] = int8(max(-float64(qmax), min(float64(qmax), math.RoundToEven(float64(v[i])/s))))
			}
		}
	}
	return q, scale, nil
}

// uint8Params are the scale and zero point of uint8 over r, widened to
// hold 0 exactly (as padding and ReLU need).
func uint8Params(r Range) (float32, uint8, error) {
	lo, hi := float64(min(r.Min, 0)), float64(max(r.Max, 0))
	if math.IsNaN(lo) || math.IsNaN(hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		return 0, 0, fmt.Errorf("range [%v, %v]", r.Min, r.Max)
	}
	if hi == lo {
		return 1, 0, nil
	}
	s := (hi - lo) / 255
	zp := math.Round(-lo / s)
	return float32(s), uint8(max(0, min(255, zp))), nil
}

func int8Tensor(name string, v []int8, dims ...int64) *onnxpb.TensorProto {
	raw := make([]byte, len(v))
	for i, x := range v {
		raw[i] = byte(x)
	}
	return &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(onnxpb.TensorProto_INT8)), Dims: dims, RawData: raw}
}

func uint8Tensor(name string, v []uint8, dims ...int64) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(onnxpb.TensorProto_UINT8)), Dims: dims,
		RawData: append([]byte(nil), v...)}
}

func float32Tensor(name string, v []float32, dims ...int64) *onnxpb.TensorProto {
	raw := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(x))
	}
	return &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT)), Dims: dims, RawData: raw}
}
