package interp

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// benchOp runs one operator's kernel on in, b.N times.
func benchOp(b *testing.B, op string, opset int64, attrs []onnx.Attr, nOut int, in ...*Tensor) {
	b.Helper()
	p := &onnxpb.NodeProto{OpType: proto.String(op), Attribute: attrs}
	for range in {
		p.Input = append(p.Input, "x")
	}
	for range nOut {
		p.Output = append(p.Output, "y")
	}
	n := &Node{Proto: p, Opset: opset}
	k := opTable()[op]
	if k.Check != nil {
		if err := k.Check(n); err != nil {
			b.Fatal(err)
		}
	}
	bytes := int64(0)
	for _, t := range in {
		bytes += int64(4 * t.Len())
	}
	b.SetBytes(bytes)
	b.ResetTimer()
	for range b.N {
		if _, err := k.Run(n, in); err != nil {
			b.Fatal(err)
		}
	}
}

func benchF32(shape ...int) *Tensor {
	t := New(Float32, shape...)
	for i := range t.F32 {
		t.F32[i] = float32(i%17) - 8
	}
	return t
}

func BenchmarkReduceMeanLastAxis(b *testing.B) {
	benchOp(b, "ReduceMean", 13, []onnx.Attr{onnx.AttrInts("axes", -1)}, 1, benchF32(64, 1024))
}

func BenchmarkReduceSumFirstAxis(b *testing.B) {
	benchOp(b, "ReduceSum", 13, nil, 1, benchF32(64, 1024), cI64(sh(1), 0))
}

func BenchmarkGreaterBroadcast(b *testing.B) {
	benchOp(b, "Greater", 13, nil, 1, benchF32(64, 1024), benchF32(1024))
}

func BenchmarkWhere(b *testing.B) {
	c := New(Bool, 64, 1024)
	for i := range c.B {
		c.B[i] = i%3 == 0
	}
	benchOp(b, "Where", 13, nil, 1, c, benchF32(64, 1024), benchF32(1))
}

func BenchmarkTopK(b *testing.B) {
	benchOp(b, "TopK", 13, nil, 2, benchF32(64, 1024), cI64(sh(1), 5))
}

func BenchmarkPowSquare(b *testing.B) {
	benchOp(b, "Pow", 13, nil, 1, benchF32(64, 1024), cF32(sh(), 2))
}
