package compress

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// Float16 returns m with every float32 initializer of at least minValues
// values stored as float16 (half the bytes) and Cast back to float32 where
// the graph reads it: the model computes in float32 as before, on weights
// rounded to half precision. A weight beyond float16's range is refused
// (it would become infinite).
func Float16(m *onnxpb.ModelProto, minValues int) (*onnxpb.ModelProto, error) {
	out, err := graphOf(m)
	if err != nil {
		return nil, err
	}
	g := out.Graph
	inputs := map[string]bool{}
	for _, v := range g.Input {
		inputs[v.GetName()] = true
	}
	names := newNamer(g)
	var casts []*onnxpb.NodeProto
	kept := g.Initializer[:0:0]
	for _, t := range g.Initializer {
		if t.GetDataType() != int32(onnxpb.TensorProto_FLOAT) || inputs[t.GetName()] {
			kept = append(kept, t)
			continue
		}
		v, err := onnx.Float32Data(t)
		if err != nil {
			return nil, fmt.Errorf("compress: %w", err)
		}
		if len(v) < minValues {
			kept = append(kept, t)
			continue
		}
		raw := make([]byte, 2*len(v))
		for i, f := range v {
			h := interp.Float32ToHalf(f)
			if h&0x7c00 == 0x7c00 && !math.IsInf(float64(f), 0) && !math.IsNaN(float64(f)) {
				return nil, fmt.Errorf("compress: initializer %q: value %g is beyond float16's range", t.GetName(), f)
			}
			binary.LittleEndian.PutUint16(raw[2*i:], h)
		}
		half := names.fresh(t.GetName() + "_fp16")
		kept = append(kept, &onnxpb.TensorProto{Name: proto.String(half), DataType: proto.Int32(int32(onnxpb.TensorProto_FLOAT16)),
			Dims: append([]int64(nil), t.Dims...), RawData: raw})
		casts = append(casts, node("Cast", names.fresh(t.GetName()+"_cast"), []string{half}, []string{t.GetName()},
			attrI("to", int64(onnxpb.TensorProto_FLOAT))))
	}
	if len(casts) == 0 {
		return nil, fmt.Errorf("compress: no float32 initializer of %d values or more to store as float16", minValues)
	}
	g.Initializer = kept
	g.Node = append(casts, g.Node...)
	return out, nil
}
