package interp

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// fuzzNode is a node of op at opset with attrs, as a kernel sees it.
func fuzzNode(op string, opset int64, outs int, a ...*onnxpb.AttributeProto) *Node {
	p := &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String("f"), Attribute: a}
	for range outs {
		p.Output = append(p.Output, "y")
	}
	return &Node{Proto: p, Opset: opset}
}

// small maps any value to [-lim, lim].
func fuzzSmall(v int64, lim int64) int64 { return v % (lim + 1) }

// FuzzDataKernels runs the shape, indexing, padding, resize and
// convolution-transpose kernels on a small tensor with parameters a model
// could give (its initializers are outside input): any error is fine, a
// panic or an output that does not match its shape is not.
func FuzzDataKernels(f *testing.F) {
	f.Add(uint8(0), int64(1), int64(-1), int64(1), int64(-2), float32(1.5))
	f.Add(uint8(1), int64(2), int64(-1), int64(0), int64(3), float32(0.5))
	f.Add(uint8(2), int64(3), int64(9), int64(-9), int64(1), float32(0.3))
	f.Add(uint8(5), int64(-3), int64(2), int64(1), int64(0), float32(2))
	f.Fuzz(func(t *testing.T, sel uint8, a, b, c, d int64, scale float32) {
		x := iota32(2, 3, 4)
		i64 := func(v ...int64) *Tensor { return cI64(sh(len(v)), v...) }
		var n *Node
		var in []*Tensor
		modes := []string{"constant", "reflect", "edge"}
		rmodes := []string{"nearest", "linear", "cubic"}
		coords := []string{"half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize"}
		k := int(sel >> 4)
		var run Kernel
		switch sel % 12 {
		case 0:
			n, in, run = fuzzNode("Slice", 13, 1), []*Tensor{x, i64(a), i64(b), i64(fuzzSmall(c, 3)), i64(d)}, slice
		case 1:
			n = fuzzNode("Pad", 13, 1, onnx.AttrString("mode", modes[k%3]))
			in, run = []*Tensor{x, i64(fuzzSmall(a, 9), fuzzSmall(b, 9), fuzzSmall(c, 9), fuzzSmall(d, 9), 0, -1)}, pad
		case 2:
			n = fuzzNode("Resize", 13, 1, onnx.AttrString("mode", rmodes[k%3]), onnx.AttrString("coordinate_transformation_mode", coords[k%6]))
			if scale != scale || scale > 16 {
				scale = 1
			}
			in, run = []*Tensor{x, cF32(sh(6), 0, 0, float32(fuzzSmall(a, 2))/2, 1, 1, 1), cF32(sh(3), 1, 1, scale)}, resize
		case 3:
			n = fuzzNode("Resize", 13, 1, onnx.AttrString("mode", rmodes[k%3]), onnx.AttrString("nearest_mode", "ceil"))
			in, run = []*Tensor{x, nil, nil, i64(fuzzSmall(a, 5), 3, fuzzSmall(b, 9))}, resize
		case 4:
			n, in, run = fuzzNode("Tile", 13, 1), []*Tensor{x, i64(fuzzSmall(a, 3), fuzzSmall(b, 3), fuzzSmall(c, 3))}, tile
		case 5:
			n, in, run = fuzzNode("Expand", 13, 1), []*Tensor{x, i64(fuzzSmall(a, 4), fuzzSmall(b, 4), 4)}, expand
		case 6:
			n, in, run = fuzzNode("Gather", 13, 1, onnx.AttrInt("axis", fuzzSmall(c, 4))), []*Tensor{x, i64(a, b)}, gather
		case 7:
			n, in, run = fuzzNode("Split", 13, 2, onnx.AttrInt("axis", fuzzSmall(c, 4))), []*Tensor{x, i64(a, b)}, split
		case 8:
			n, in, run = fuzzNode("Unsqueeze", 13, 1), []*Tensor{x, i64(a, b)}, unsqueeze
		case 9:
			n, in, run = fuzzNode("GatherElements", 13, 1, onnx.AttrInt("axis", fuzzSmall(c, 4))), []*Tensor{x, cI64(sh(1, 1, 2), a, b)}, gatherElements
		case 10:
			n, in, run = fuzzNode("ScatterND", 16, 1), []*Tensor{x, cI64(sh(1, 2), a, b), cF32(sh(1, 4), 1, 2, 3, 4)}, scatterND
		default:
			n = fuzzNode("ConvTranspose", 13, 1, onnx.AttrInts("strides", fuzzSmall(a, 3)+4), onnx.AttrInts("pads", fuzzSmall(b, 3), fuzzSmall(c, 3)),
				onnx.AttrInts("output_padding", fuzzSmall(d, 2)+2))
			in, run = []*Tensor{x, iota32(3, 1, 2)}, runConvTranspose
		}
		res, err := run(n, in)
		if err != nil {
			return
		}
		for i, r := range res {
			if r == nil {
				t.Fatalf("output %d missing", i)
			}
			if err := r.Validate(); err != nil {
				t.Fatalf("output %d: %v", i, err)
			}
		}
	})
}

// FuzzEinsumEquation parses equations and runs those that parse on small
// operands: errors are fine, panics are not.
func FuzzEinsumEquation(f *testing.F) {
	for _, s := range []string{"ij,jk->ik", "bhqd,bhkd->bhqk", "...ii->...i", "i,i", "ij->ji", "a...b,b...c", "ii->"} {
		f.Add(s, uint8(2), uint8(3))
	}
	f.Fuzz(func(t *testing.T, eq string, d0, d1 uint8) {
		for k := 1; k <= 2; k++ {
			e, err := parseEinsum(eq, k)
			if err != nil {
				continue
			}
			in := make([]*Tensor, k)
			for i := range in {
				shape := make([]int, len(e.in[i]))
				for j := range shape {
					shape[j] = 1 + int(d0+d1*uint8(j))%3
				}
				if e.inEll[i] >= 0 {
					shape = append(shape, 1+int(d1)%2)
				}
				if len(shape) > 8 || Size(shape) > 256 {
					return
				}
				in[i] = iota32(shape...)
			}
			res, err := einsum(fuzzNode("Einsum", 13, 1, onnx.AttrString("equation", eq)), in)
			if err == nil {
				if err := res[0].Validate(); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}
