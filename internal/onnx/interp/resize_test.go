package interp

import (
	"testing"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

func TestResize(t *testing.T) {
	mode := func(m string) []*onnxpb.AttributeProto { return attrList(onnx.AttrString("mode", m)) }
	scales := func(v ...float32) *Tensor { return cF32(sh(len(v)), v...) }
	runMultiCases(t, []multiCase{
		{name: "linear half pixel", op: "Resize", attrs: mode("linear"), in: []*Tensor{cF32(sh(1, 2), 1, 2), nil, scales(1, 2)},
			want: []*Tensor{cF32(sh(1, 4), 1, 1.25, 1.75, 2)}},
		{name: "nearest int64 by sizes", op: "Resize", in: []*Tensor{cI64(sh(2), 5, 6), nil, nil, cI64(sh(1), 4)},
			want: []*Tensor{cI64(sh(4), 5, 5, 6, 6)}},
		{name: "nearest bool asymmetric downsample", op: "Resize",
			attrs: attrList(onnx.AttrString("coordinate_transformation_mode", "asymmetric")),
			in:    []*Tensor{cB(sh(4), true, false, false, true), nil, scales(0.5)}, want: []*Tensor{cB(sh(2), true, false)}},
		{name: "nearest crop extrapolated", op: "Resize",
			attrs: attrList(onnx.AttrString("coordinate_transformation_mode", "tf_crop_and_resize"), onnx.AttrFloat("extrapolation_value", 9)),
			in:    []*Tensor{cI64(sh(1, 4), 1, 2, 3, 4), cF32(sh(4), 0, 0, 1, 2), nil, cI64(sh(2), 1, 4)},
			want:  []*Tensor{cI64(sh(1, 4), 1, 3, 9, 9)}},
		{name: "same size is a copy", op: "Resize", attrs: mode("cubic"), in: []*Tensor{cF32(sh(1, 3), 1, 5, 2), nil, scales(1, 1)},
			want: []*Tensor{cF32(sh(1, 3), 1, 5, 2)}},
		{name: "empty output", op: "Resize", attrs: mode("linear"), in: []*Tensor{cF32(sh(2), 1, 2), nil, scales(0.1)},
			want: []*Tensor{cF32(sh(0))}},
		{name: "scales and sizes", op: "Resize", in: []*Tensor{cF32(sh(2), 1, 2), nil, scales(2), cI64(sh(1), 4)}, wantErr: "exactly one"},
		{name: "scales rank", op: "Resize", in: []*Tensor{cF32(sh(2), 1, 2), nil, scales(2, 2)}, wantErr: "scales must be 1"},
		{name: "negative scale", op: "Resize", in: []*Tensor{cF32(sh(2), 1, 2), nil, scales(-2)}, wantErr: "positive"},
		{name: "linear int", op: "Resize", attrs: mode("linear"), in: []*Tensor{cI64(sh(2), 1, 2), nil, scales(2)}, wantErr: "only float32"},
		{name: "bad mode", op: "Resize", attrs: mode("area"), in: []*Tensor{cF32(sh(2), 1, 2), nil, scales(2)}, wantErr: `Resize node "n0": attribute mode`},
		{name: "bad nearest mode", op: "Resize", attrs: attrList(onnx.AttrString("nearest_mode", "up")), in: []*Tensor{cF32(sh(2), 1, 2), nil, scales(2)},
			wantErr: "nearest_mode"},
	})
}
