package interp

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"outpost.dev/outpost/internal/onnx"
)

// naiveConvTranspose2D scatters every input pixel times the kernel into
// the output: y[n][g*Mg+m][ih*s-pad+ki*d][...] += x[n][c][ih][iw] * w[c][m][ki][kj].
func naiveConvTranspose2D(x, w, b *Tensor, group, sH, sW, dH, dW, padT, padL, outH, outW int) *Tensor {
	N, C, H, W := x.Shape[0], x.Shape[1], x.Shape[2], x.Shape[3]
	Mg, kH, kW := w.Shape[1], w.Shape[2], w.Shape[3]
	M, Cg := Mg*group, C/group
	y := New(Float32, N, M, outH, outW)
	for n := range N {
		for c := range C {
			g := c / Cg
			for m := range Mg {
				oc := g*Mg + m
				for ih := range H {
					for iw := range W {
						v := x.F32[((n*C+c)*H+ih)*W+iw]
						for ki := range kH {
							for kj := range kW {
								oh, ow := ih*sH-padT+ki*dH, iw*sW-padL+kj*dW
								if oh < 0 || oh >= outH || ow < 0 || ow >= outW {
									continue
								}
								y.F32[((n*M+oc)*outH+oh)*outW+ow] += v * w.F32[((c*Mg+m)*kH+ki)*kW+kj]
							}
						}
					}
				}
			}
		}
	}
	if b != nil {
		for i := range y.F32 {
			y.F32[i] += b.F32[(i/(outH*outW))%M]
		}
	}
	return y
}

func TestConvTransposeMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, tt := range []struct {
		n, c, h, w, mg, k, group, s, d, pad, outPad int
	}{
		{1, 1, 3, 3, 2, 3, 1, 1, 1, 0, 0},
		{2, 4, 5, 4, 3, 3, 2, 2, 1, 1, 1},
		{1, 6, 4, 4, 1, 3, 6, 2, 1, 1, 1}, // depthwise, as decoders use
		{1, 2, 3, 5, 2, 2, 1, 3, 2, 0, 2},
		{3, 3, 7, 6, 4, 1, 1, 1, 1, 0, 0},
	} {
		t.Run(fmt.Sprintf("%+v", tt), func(t *testing.T) {
			x := randTensor(r, tt.n, tt.c, tt.h, tt.w)
			w := randTensor(r, tt.c, tt.mg, tt.k, tt.k)
			b := randTensor(r, tt.mg*tt.group)
			ext := tt.d*(tt.k-1) + 1
			outH := tt.s*(tt.h-1) + tt.outPad + ext - 2*tt.pad
			outW := tt.s*(tt.w-1) + tt.outPad + ext - 2*tt.pad
			want := naiveConvTranspose2D(x, w, b, tt.group, tt.s, tt.s, tt.d, tt.d, tt.pad, tt.pad, outH, outW)
			p := int64(tt.pad)
			got, err := runOpAt(t, 13, "ConvTranspose", []DType{Float32}, attrList(
				onnx.AttrInt("group", int64(tt.group)), intsAttr("strides", int64(tt.s), int64(tt.s)), intsAttr("dilations", int64(tt.d), int64(tt.d)),
				intsAttr("pads", p, p, p, p), intsAttr("output_padding", int64(tt.outPad), int64(tt.outPad))), x, w, b)
			if err != nil {
				t.Fatal(err)
			}
			if err := sameTensor(got[0], want, 1e-4); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConvTransposeShapes(t *testing.T) {
	x := cF32(sh(1, 1, 2), 1, 2)
	w := cF32(sh(1, 1, 2), 1, 10)
	runMultiCases(t, []multiCase{
		{name: "1-D", op: "ConvTranspose", in: []*Tensor{x, w}, want: []*Tensor{cF32(sh(1, 1, 3), 1, 12, 20)}},
		{name: "1-D output_shape larger", op: "ConvTranspose", attrs: attrList(intsAttr("output_shape", 4)), in: []*Tensor{x, w},
			want: []*Tensor{cF32(sh(1, 1, 4), 1, 12, 20, 0)}},
		{name: "same upper", op: "ConvTranspose", attrs: attrList(onnx.AttrString("auto_pad", "SAME_UPPER"), intsAttr("strides", 2)), in: []*Tensor{x, w},
			want: []*Tensor{cF32(sh(1, 1, 4), 1, 10, 2, 20)}},
		{name: "huge stride", op: "ConvTranspose", attrs: attrList(intsAttr("strides", 1<<40)), in: []*Tensor{x, w}, wantErr: "above"},
		{name: "group mismatch", op: "ConvTranspose", attrs: attrList(onnx.AttrInt("group", 2)), in: []*Tensor{x, w}, wantErr: "does not fit"},
		{name: "3-D", op: "ConvTranspose", attrs: attrList(intsAttr("strides", 1, 1, 1)), in: []*Tensor{x, w}, wantErr: "only 1-D and 2-D"},
		{name: "output_padding length", op: "ConvTranspose", attrs: attrList(intsAttr("strides", 1), intsAttr("output_padding", 1, 1)), in: []*Tensor{x, w},
			wantErr: `ConvTranspose node "n0": attribute output_padding`},
	})
}
