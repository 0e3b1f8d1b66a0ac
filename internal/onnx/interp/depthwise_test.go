package interp

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"outpost.dev/outpost/internal/onnx"
)

// TestDepthwiseMatchesNaive runs depthwise convolutions (one input channel
// per group, one or more filters each) of wide rows, large kernels (more
// taps than a pass holds), strides up to 10 and dilations through Conv,
// against the naive convolution.
func TestDepthwiseMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, tt := range []struct{ c, mg, h, w, kh, kw, s, d, pad int }{
		{3, 1, 5, 70, 3, 3, 1, 1, 1},
		{2, 1, 3, 40, 1, 5, 1, 3, 6}, // dilated, padding wider than the kernel
		{2, 2, 9, 37, 3, 3, 2, 1, 1},
		{1, 1, 8, 36, 3, 3, 2, 1, 0}, // stride 2, no padding
		{1, 1, 7, 33, 5, 5, 2, 1, 2}, // stride 2, even padding
		{2, 1, 5, 20, 3, 3, 2, 2, 3}, // stride 2, dilated, odd padding wider than the kernel reach
		{4, 1, 12, 12, 9, 9, 1, 1, 4},
		{1, 1, 8, 40, 5, 3, 3, 2, 2},
		{2, 1, 6, 50, 2, 4, 4, 1, 0},
		{1, 3, 30, 30, 3, 3, 10, 1, 1},
		{2, 1, 4, 3, 3, 3, 1, 1, 2}, // output wider than the input: no column every tap reaches
	} {
		t.Run(fmt.Sprintf("%+v", tt), func(t *testing.T) {
			xs, ws := []int{2, tt.c, tt.h, tt.w}, []int{tt.c * tt.mg, 1, tt.kh, tt.kw}
			x, w, b := randFloats(r, Size(xs)), randFloats(r, Size(ws)), randFloats(r, ws[0])
			strides, dil, pads := []int{tt.s, tt.s}, []int{tt.d, tt.d}, []int{tt.pad, tt.pad, tt.pad, tt.pad}
			want, shape := naiveConv(x, w, b, xs, ws, tt.c, strides, dil, pads)
			p := int64(tt.pad)
			n := testNode("Conv", 3, 1, onnx.AttrInt("group", int64(tt.c)), onnx.AttrInts("strides", int64(tt.s), int64(tt.s)),
				onnx.AttrInts("dilations", int64(tt.d), int64(tt.d)), onnx.AttrInts("pads", p, p, p, p))
			out := mustRun(t, n, FromFloat32(x, xs...), FromFloat32(w, ws...), FromFloat32(b, ws[0]))
			assertShape(t, out[0].Shape, shape)
			assertClose(t, out[0].F32, want, 1e-4)
			// nnDepthwise itself, whichever path Conv took, with each kernel.
			a := nnWindowAttrs{autoPad: "NOTSET", strides: []int64{int64(tt.s), int64(tt.s)}, dilations: []int64{int64(tt.d), int64(tt.d)}, pads: []int64{p, p, p, p}}
			g, err := nnResolve(n, &a, []int{tt.h, tt.w}, []int{tt.kh, tt.kw})
			if err != nil {
				t.Fatal(err)
			}
			inHW, outHW := tt.h*tt.w, g.outH*g.outW
			for _, simd := range []bool{false, haveAVX2FMA} {
				got := make([]float32, len(want))
				buf := make([]float32, nnDepthwiseBuf(&g))
				for img := range 2 {
					for c := range tt.c {
						m0 := c * tt.mg
						nnDepthwise(simd, &g, x[(img*tt.c+c)*inHW:(img*tt.c+c+1)*inHW], w[m0*tt.kh*tt.kw:(m0+tt.mg)*tt.kh*tt.kw],
							b[m0:m0+tt.mg], tt.mg, got[(img*tt.c*tt.mg+m0)*outHW:(img*tt.c*tt.mg+m0+tt.mg)*outHW], buf)
					}
				}
				assertClose(t, got, want, 1e-4)
			}
		})
	}
}

// TestDepthwiseKernelsAgree compares nnDepthwise with and without the AVX2
// kernel (where the CPU has it) on the same geometry.
func TestDepthwiseKernelsAgree(t *testing.T) {
	if !haveAVX2FMA {
		t.Skip("no AVX2 and FMA: only the Go kernel runs")
	}
	r := rand.New(rand.NewPCG(9, 10))
	for _, s := range []int{1, 2, 3} {
		a := nnWindowAttrs{autoPad: "NOTSET", strides: []int64{int64(s), int64(s)}, pads: []int64{1, 1, 1, 1}}
		g, err := nnResolve(testNode("Conv", 2, 1), &a, []int{11, 45}, []int{3, 3})
		if err != nil {
			t.Fatal(err)
		}
		x, w := randFloats(r, 11*45), randFloats(r, 2*9)
		phases := make([]float32, nnDepthwiseBuf(&g))
		y1, y2 := make([]float32, 2*g.outH*g.outW), make([]float32, 2*g.outH*g.outW)
		nnDepthwise(true, &g, x, w, nil, 2, y1, phases)
		nnDepthwise(false, &g, x, w, nil, 2, y2, phases)
		assertClose(t, y1, y2, 1e-5)
	}
}
