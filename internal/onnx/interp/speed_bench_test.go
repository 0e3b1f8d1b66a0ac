//go:build linux

package interp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// benchModelOp loads a one-node model whose first input is a request input and
// whose other inputs are initializers (weights), as in a real model, and
// runs it in a benchmark loop.
func benchModelOp(b *testing.B, op string, opset int64, attrs []*onnxpb.AttributeProto, x *Tensor, weights ...*Tensor) {
	b.Helper()
	mp := opModel(op, opset, []*Tensor{x}, []DType{x.DType}, attrs...)
	g := mp.GetGraph()
	for i, w := range weights {
		name := fmt.Sprintf("w%d", i)
		p := &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(w.DType)), FloatData: w.F32, Int64Data: w.I64}
		for _, d := range w.Shape {
			p.Dims = append(p.Dims, int64(d))
		}
		g.Initializer = append(g.Initializer, p)
		g.Node[0].Input = append(g.Node[0].Input, name)
	}
	data, err := proto.Marshal(mp)
	if err != nil {
		b.Fatal(err)
	}
	m, err := Load(data)
	if err != nil {
		b.Fatal(err)
	}
	in := map[string]*Tensor{"x0": x}
	ctx := context.Background()
	b.ReportAllocs()
	defer cpuTime(b)()
	for b.Loop() {
		if _, err := m.Run(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// cpuTime starts measuring the process's CPU time; the function it
// returns reports it per iteration as cpu-ns/op, which a machine shared
// with other work inflates less than the wall time of ns/op.
func cpuTime(b *testing.B) func() {
	now := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := now()
	return func() {
		b.ReportMetric(float64(now()-start)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkConvGroups measures the convolutions of MobileNet-like models:
// depthwise (group = channels) at strides 1 and 2, grouped, and 1x1
// (pointwise), at batch 1 and 8.
func BenchmarkConvGroups(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tt := range []struct {
		name                string
		c, m, hw, k, s, grp int
	}{
		{"depthwise3x3s1", 32, 32, 56, 3, 1, 32},
		{"depthwise3x3s2", 64, 64, 56, 3, 2, 64},
		{"grouped4", 32, 32, 56, 3, 1, 4},
		{"pointwise", 32, 64, 56, 1, 1, 1},
	} {
		for _, batch := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/batch%d", tt.name, batch), func(b *testing.B) {
				x := randTensor(r, batch, tt.c, tt.hw, tt.hw)
				w := randTensor(r, tt.m, tt.c/tt.grp, tt.k, tt.k)
				bias := randTensor(r, tt.m)
				p := int64(tt.k / 2)
				benchModelOp(b, "Conv", 13, attrList(onnx.AttrInt("group", int64(tt.grp)), intsAttr("strides", int64(tt.s), int64(tt.s)),
					intsAttr("pads", p, p, p, p)), x, w, bias)
			})
		}
	}
}

// BenchmarkLayerNorm normalizes the last axis of transformer activations.
func BenchmarkLayerNorm(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	x := randTensor(r, 8, 128, 768)
	benchModelOp(b, "LayerNormalization", 17, attrList(onnx.AttrInt("axis", -1)), x, randTensor(r, 768), randTensor(r, 768))
}

// BenchmarkSoftmax is attention's softmax over the last axis.
func BenchmarkSoftmax(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	benchModelOp(b, "Softmax", 13, attrList(onnx.AttrInt("axis", -1)), randTensor(r, 4, 12, 128, 128))
}

// BenchmarkAttentionMatMul is attention's batched products: Q·Kᵀ as a
// MatMul of [B,H,S,D] by [B,H,D,S], and as Einsum bhqd,bhkd->bhqk.
func BenchmarkAttentionMatMul(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	q, kt := randTensor(r, 4, 12, 128, 64), randTensor(r, 4, 12, 64, 128)
	k := randTensor(r, 4, 12, 128, 64)
	flops := 2 * 4 * 12 * 128 * 128 * 64.0
	b.Run("MatMul", func(b *testing.B) {
		benchModelOp(b, "MatMul", 13, nil, q, kt)
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
	b.Run("Einsum", func(b *testing.B) {
		benchModelOp(b, "Einsum", 13, attrList(onnx.AttrString("equation", "bhqd,bhkd->bhqk")), q, k)
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
}

// BenchmarkConvTranspose is a decoder's 2x upsampling.
func BenchmarkConvTranspose(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	x := randTensor(r, 1, 64, 28, 28)
	benchModelOp(b, "ConvTranspose", 13, attrList(intsAttr("strides", 2, 2), intsAttr("pads", 1, 1, 1, 1), intsAttr("output_padding", 1, 1)),
		x, randTensor(r, 64, 32, 3, 3), randTensor(r, 32))
}

// BenchmarkDepthwiseKernels compares, on one image of MobileNet's
// depthwise layers, the convolution by im2col and sgemm per channel (the
// path before nnDepthwise) with nnDepthwise, in the same process.
func BenchmarkDepthwiseKernels(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tt := range []struct{ c, hw, s int }{{32, 56, 1}, {64, 56, 2}, {256, 14, 1}} {
		a := nnWindowAttrs{autoPad: "NOTSET", strides: []int64{int64(tt.s), int64(tt.s)}, pads: []int64{1, 1, 1, 1}}
		g, err := nnResolve(testNode("Conv", 2, 1), &a, []int{tt.hw, tt.hw}, []int{3, 3})
		if err != nil {
			b.Fatal(err)
		}
		x, w := randFloats(r, tt.c*tt.hw*tt.hw), randFloats(r, tt.c*9)
		outHW := g.outH * g.outW
		y := make([]float32, tt.c*outHW)
		name := fmt.Sprintf("c%d_%dx%d_s%d", tt.c, tt.hw, tt.hw, tt.s)
		b.Run(name+"/im2col", func(b *testing.B) {
			col := make([]float32, 9*outHW)
			defer cpuTime(b)()
			for b.Loop() {
				for c := range tt.c {
					nnIm2col(&g, x[c*tt.hw*tt.hw:(c+1)*tt.hw*tt.hw], 1, col, 0)
					sgemm(1, outHW, 9, 1, w[c*9:(c+1)*9], 9, 1, col, y[c*outHW:(c+1)*outHW])
				}
			}
		})
		b.Run(name+"/direct", func(b *testing.B) {
			buf := make([]float32, nnDepthwiseBuf(&g))
			defer cpuTime(b)()
			for b.Loop() {
				for c := range tt.c {
					nnDepthwise(haveAVX2FMA, &g, x[c*tt.hw*tt.hw:(c+1)*tt.hw*tt.hw], w[c*9:(c+1)*9], nil, 1, y[c*outHW:(c+1)*outHW], buf)
				}
			}
		})
	}
}

// BenchmarkResize is a detector's 2x nearest upsampling and a
// segmentation head's bilinear one.
func BenchmarkResize(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	x := randTensor(r, 1, 64, 40, 40)
	scales := cF32(sh(4), 1, 1, 2, 2)
	for _, mode := range []string{"nearest", "linear"} {
		b.Run(mode, func(b *testing.B) {
			benchModelOp(b, "Resize", 13, attrList(onnx.AttrString("mode", mode)), x, New(Float32, 0), scales)
		})
	}
}
