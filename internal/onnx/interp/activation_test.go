package interp

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// vCase is an operator case at a given opset (13 when zero), with one or
// more expected outputs.
type vCase struct {
	name    string
	op      string
	opset   int64
	attrs   []*onnxpb.AttributeProto
	in      []*Tensor
	want    []*Tensor
	wantErr string // substring of the load or run error
}

// runAt loads a one-node model at opset and runs it on in.
func runAt(t testing.TB, op string, opset int64, outTypes []DType, attrs []*onnxpb.AttributeProto, in ...*Tensor) ([]*Tensor, error) {
	t.Helper()
	data, err := proto.Marshal(opModel(op, opset, in, outTypes, attrs...))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(data)
	if err != nil {
		return nil, err
	}
	feed := map[string]*Tensor{}
	for i, x := range in {
		if x != nil {
			feed["x"+string(rune('0'+i))] = x
		}
	}
	res, err := m.Run(context.Background(), feed)
	if err != nil {
		return nil, err
	}
	out := make([]*Tensor, len(outTypes))
	for i := range out {
		out[i] = res["y"+string(rune('0'+i))]
	}
	return out, nil
}

func runVCases(t *testing.T, cases []vCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opset := c.opset
			if opset == 0 {
				opset = 13
			}
			var types []DType
			for _, w := range c.want {
				types = append(types, w.DType)
			}
			if len(types) == 0 {
				types = []DType{Float32}
				if len(c.in) > 0 && c.in[0] != nil {
					types[0] = c.in[0].DType
				}
			}
			got, err := runAt(t, c.op, opset, types, c.attrs, c.in...)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range c.want {
				if err := sameTensor(got[i], w, 1e-6); err != nil {
					t.Fatalf("output %d: %v", i, err)
				}
			}
		})
	}
}

func f32s(v ...float32) []*Tensor { return []*Tensor{cF32(sh(len(v)), v...)} }

func TestActivations(t *testing.T) {
	inf := float32(math.Inf(1))
	x := cF32(sh(5), -2, -0.5, 0, 0.5, 2)
	runVCases(t, []vCase{
		{name: "leakyrelu alpha", op: "LeakyRelu", attrs: []onnx.Attr{onnx.AttrFloat("alpha", 0.5)}, in: []*Tensor{x}, want: f32s(-1, -0.25, 0, 0.5, 2)},
		{name: "elu", op: "Elu", in: []*Tensor{x}, want: f32s(float32(math.Exp(-2)-1), float32(math.Exp(-0.5)-1), 0, 0.5, 2)},
		{name: "hardsigmoid", op: "HardSigmoid", in: []*Tensor{x}, want: f32s(0.1, 0.4, 0.5, 0.6, 0.9)},
		{name: "hardswish saturates", op: "HardSwish", opset: 14, in: []*Tensor{cF32(sh(3), -4, 1, 4)}, want: f32s(0, float32(1*(1.0/6+0.5)), 4)},
		{name: "softplus large", op: "Softplus", in: []*Tensor{cF32(sh(3), 100, -100, 0)}, want: f32s(100, float32(math.Exp(-100)), float32(math.Ln2))},
		{name: "round half to even", op: "Round", in: []*Tensor{cF32(sh(5), 0.5, 1.5, 2.5, -0.5, -1.5)}, want: f32s(0, 2, 2, 0, -2)},
		{name: "floor ceil keep inf", op: "Floor", in: []*Tensor{cF32(sh(3), -1.5, inf, 2)}, want: f32s(-2, inf, 2)},
		{name: "sign int64", op: "Sign", in: []*Tensor{cI64(sh(3), -7, 0, 9)}, want: []*Tensor{cI64(sh(3), -1, 0, 1)}},
		{name: "sign int8", op: "Sign", in: []*Tensor{cI8(sh(2), -128, 127)}, want: []*Tensor{cI8(sh(2), -1, 1)}},
		{name: "sign uint8", op: "Sign", in: []*Tensor{cU8(sh(2), 0, 200)}, want: []*Tensor{cU8(sh(2), 0, 1)}},
		{name: "erf int refused", op: "Erf", in: []*Tensor{cI32(sh(1), 1)}, wantErr: "not supported"},
		{name: "hardswish before opset 14", op: "HardSwish", in: []*Tensor{x}, wantErr: "HardSwish at opset 13"},
	})
}

func TestClip(t *testing.T) {
	x := cF32(sh(4), -3, -1, 1, 3)
	runVCases(t, []vCase{
		{name: "inputs", op: "Clip", in: []*Tensor{x, cF32(sh(), -2), cF32(sh(), 2)}, want: f32s(-2, -1, 1, 2)},
		{name: "min only", op: "Clip", in: []*Tensor{x, cF32(sh(), 0)}, want: f32s(0, 0, 1, 3)},
		{name: "max only (min omitted)", op: "Clip", in: []*Tensor{x, nil, cF32(sh(1), 0)}, want: f32s(-3, -1, 0, 0)},
		{name: "min above max gives max", op: "Clip", in: []*Tensor{x, cF32(sh(), 5), cF32(sh(), 1)}, want: f32s(1, 1, 1, 1)},
		{name: "int64", op: "Clip", in: []*Tensor{cI64(sh(3), -9, 5, 9), cI64(sh(), -1), cI64(sh(), 6)}, want: []*Tensor{cI64(sh(3), -1, 5, 6)}},
		{name: "int8 default bounds", op: "Clip", in: []*Tensor{cI8(sh(2), -128, 127)}, want: []*Tensor{cI8(sh(2), -128, 127)}},
		{name: "uint8", op: "Clip", in: []*Tensor{cU8(sh(3), 0, 100, 255), cU8(sh(), 10), cU8(sh(), 200)}, want: []*Tensor{cU8(sh(3), 10, 100, 200)}},
		{name: "attributes at opset 6", op: "Clip", opset: 6, attrs: []onnx.Attr{onnx.AttrFloat("min", -1), onnx.AttrFloat("max", 0.5)}, in: []*Tensor{x}, want: f32s(-1, -1, 0.5, 0.5)},
		{name: "attribute form takes one input", op: "Clip", opset: 6, in: []*Tensor{x, cF32(sh(), 0)}, wantErr: `Clip node "n0": 2 inputs, want 1 at opset 6`},
		{name: "bound of another type", op: "Clip", in: []*Tensor{x, cI64(sh(), 0)}, wantErr: "must be a scalar of the input's type"},
		{name: "bound not scalar", op: "Clip", in: []*Tensor{x, cF32(sh(2), 0, 1)}, wantErr: "must be a scalar"},
	})
}

func TestPRelu(t *testing.T) {
	runVCases(t, []vCase{
		{name: "last axis", op: "PRelu", in: []*Tensor{cF32(sh(2, 2), -1, 1, -2, -2), cF32(sh(2), 0.1, 0.5)}, want: []*Tensor{cF32(sh(2, 2), -0.1, 1, -0.2, -1)}},
		{name: "channel slope 3-D", op: "PRelu", in: []*Tensor{cF32(sh(2, 1, 2), -1, -1, -1, -1), cF32(sh(2, 1, 1), 2, 3)}, want: []*Tensor{cF32(sh(2, 1, 2), -2, -2, -3, -3)}},
		{name: "int32", op: "PRelu", opset: 16, in: []*Tensor{cI32(sh(3), -4, 0, 4), cI32(sh(), 3)}, want: []*Tensor{cI32(sh(3), -12, 0, 4)}},
		{name: "slope must not widen x", op: "PRelu", in: []*Tensor{cF32(sh(2), -1, 1), cF32(sh(2, 2), 1, 1, 1, 1)}, wantErr: "does not broadcast to input shape"},
		{name: "types differ", op: "PRelu", in: []*Tensor{cF32(sh(1), -1), cI32(sh(1), 1)}, wantErr: "slope is int32"},
	})
}

func TestDropout(t *testing.T) {
	x := cF32(sh(2, 2), 1, -2, 3, -4)
	all := cB(sh(2, 2), true, true, true, true)
	runVCases(t, []vCase{
		{name: "identity", op: "Dropout", in: []*Tensor{x}, want: []*Tensor{x}},
		{name: "mask", op: "Dropout", in: []*Tensor{x, cF32(sh(), 0.3)}, want: []*Tensor{x, all}},
		{name: "inference mode", op: "Dropout", in: []*Tensor{x, cF32(sh(), 0.3), cB(sh(), false)}, want: []*Tensor{x, all}},
		{name: "training with ratio zero", op: "Dropout", in: []*Tensor{x, cF32(sh(), 0), cB(sh(), true)}, want: []*Tensor{x, all}},
		{name: "training refused", op: "Dropout", in: []*Tensor{x, nil, cB(sh(), true)}, wantErr: "training_mode with ratio 0.5 is not implemented"},
		{name: "opset 10 attribute", op: "Dropout", opset: 10, attrs: []onnx.Attr{onnx.AttrFloat("ratio", 0.2)}, in: []*Tensor{x}, want: []*Tensor{x, all}},
		{name: "bad ratio attribute", op: "Dropout", opset: 10, attrs: []onnx.Attr{onnx.AttrFloat("ratio", 1.5)}, in: []*Tensor{x}, wantErr: `Dropout node "n0": ratio is 1.5`},
		{name: "opset 10 takes one input", op: "Dropout", opset: 10, in: []*Tensor{x, cF32(sh(), 0.1)}, wantErr: "want 1 to 1"},
	})
}

// TestDropoutViewSharesData checks the planner treats Dropout's output as
// a view of its input: the in-place Sigmoid on the input, its last reader,
// must not overwrite the Dropout output the caller gets.
func TestDropoutViewSharesData(t *testing.T) {
	b := onnx.NewBuilder("dropview", 13).
		Input("x", onnxpb.TensorProto_FLOAT, onnx.D(3)).
		Node("Relu", "relu", []string{"x"}, []string{"r"}).
		Node("Dropout", "drop", []string{"r"}, []string{"d", "mask"}).
		Node("Sigmoid", "sig", []string{"r"}, []string{"s"}).
		Output("d", onnxpb.TensorProto_FLOAT).Output("mask", onnxpb.TensorProto_BOOL).Output("s", onnxpb.TensorProto_FLOAT)
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.Run(context.Background(), map[string]*Tensor{"x": cF32(sh(3), -1, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	if err := sameTensor(res["d"], cF32(sh(3), 0, 0, 2), 0); err != nil {
		t.Fatalf("dropout output: %v", err)
	}
	if err := sameTensor(res["mask"], cB(sh(3), true, true, true), 0); err != nil {
		t.Fatalf("mask: %v", err)
	}
	if err := sameTensor(res["s"], cF32(sh(3), 0.5, 0.5, float32(1/(1+math.Exp(-2)))), 1e-6); err != nil {
		t.Fatalf("sigmoid: %v", err)
	}
}

func TestGelu(t *testing.T) {
	node := func(approx string) *Node {
		p := &onnxpb.NodeProto{OpType: proto.String("Gelu"), Input: []string{"x"}, Output: []string{"y"}}
		if approx != "" {
			p.Attribute = []*onnxpb.AttributeProto{onnx.AttrString("approximate", approx)}
		}
		return &Node{Proto: p, Opset: 20}
	}
	x := cF32(sh(3), -1, 0, 1.5)
	cases := []struct {
		approx string
		f      func(float64) float64
	}{
		{"", func(v float64) float64 { return 0.5 * v * (1 + math.Erf(v/math.Sqrt2)) }},
		{"tanh", func(v float64) float64 {
			return 0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v)))
		}},
	}
	op := opTable()["Gelu"]
	for _, c := range cases {
		got, err := op.Run(node(c.approx), []*Tensor{x})
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, 3)
		for i, v := range x.F32 {
			want[i] = float32(c.f(float64(v)))
		}
		if err := sameTensor(got[0], cF32(sh(3), want...), 1e-6); err != nil {
			t.Fatalf("approximate %q: %v", c.approx, err)
		}
	}
	if got, _ := op.Run(node("tanh"), []*Tensor{x}); got[0].F32[2] == float32(cases[0].f(1.5)) {
		t.Fatal("tanh approximation gives the exact value")
	}
	if err := op.Check(node("fast")); err == nil || !strings.Contains(err.Error(), `approximate is "fast"`) {
		t.Fatalf("bad approximate: %v", err)
	}
	// At the opsets Load accepts, Gelu is not claimed: neither the
	// default-domain operator nor com.microsoft's.
	if _, err := runAt(t, "Gelu", 17, []DType{Float32}, nil, x); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Gelu at opset 17: %v", err)
	}
	mp := opModel("Gelu", 17, []*Tensor{x}, []DType{Float32})
	mp.Graph.Node[0].Domain = proto.String("com.microsoft")
	if _, err := LoadProto(mp); !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "com.microsoft.Gelu") {
		t.Fatalf("com.microsoft Gelu: %v", err)
	}
}

// TestClampKernels checks the AVX2 clamp against the Go loop, bit for bit,
// NaN, signed zeros, infinities and bounds the wrong way round included.
func TestClampKernels(t *testing.T) {
	if !haveAVX2FMA {
		t.Skip("no AVX2 on this machine: the Go loop is the only kernel")
	}
	r := rand.New(rand.NewPCG(3, 4))
	src := make([]float32, 203)
	for i := range src {
		src[i] = float32(r.NormFloat64())
	}
	src[0], src[1], src[2] = float32(math.NaN()), float32(math.Copysign(0, -1)), float32(math.Inf(1))
	src[50], src[100] = float32(math.Inf(-1)), float32(math.NaN())
	for _, b := range [][2]float32{{-0.5, 0.5}, {0, 6}, {float32(math.Inf(-1)), 0.25}, {1, -1}, {0, 0}} {
		want, got := make([]float32, len(src)), make([]float32, len(src))
		clampF32On(false, want, src, b[0], b[1])
		clampF32On(true, got, src, b[0], b[1])
		for i := range want {
			if math.Float32bits(want[i]) != math.Float32bits(got[i]) && !(want[i] != want[i] && got[i] != got[i]) {
				t.Fatalf("bounds %v, value %d (%v): AVX %v, Go %v", b, i, src[i], got[i], want[i])
			}
			if src[i] != src[i] && got[i] == got[i] {
				t.Fatalf("NaN at %d clamped to %v", i, got[i])
			}
		}
		if b[0] > b[1] && got[7] != b[1] {
			t.Errorf("bounds %v the wrong way: %v, want the max", b, got[7])
		}
	}
}

// TestSigmoidAccuracy checks both sigmoid kernels (AVX2 and Go) against
// the float64 formula over a sweep of inputs, extremes included: within 4
// float32 ulps relative, but below -87 (where e^-x is capped and the true
// result is under 1.7e-38) within 1.7e-38 absolute; NaN for NaN.
func TestSigmoidAccuracy(t *testing.T) {
	var src []float32
	for x := -100.0; x <= 100; x += 0.00731 {
		src = append(src, float32(x))
	}
	src = append(src, 0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
		87, -87, 88, -88, 1e-8, -1e-8, math.MaxFloat32, -math.MaxFloat32)
	kernels := []bool{false}
	if haveAVX2FMA {
		kernels = append(kernels, true)
	}
	for _, simd := range kernels {
		got := make([]float32, len(src))
		sigmoidF32On(simd, got, src)
		worst := 0.0
		for i, v := range src {
			x := float64(v)
			if math.IsNaN(x) {
				if !math.IsNaN(float64(got[i])) {
					t.Fatalf("simd %v: sigmoid(NaN) = %v", simd, got[i])
				}
				continue
			}
			want := 1 / (1 + math.Exp(-x))
			if x < -expMaxX { // e^-x is capped at e^-87 (1.6e-38): an absolute error below 1.7e-38
				if got[i] < 0 || float64(got[i])-want > 1.7e-38 {
					t.Fatalf("simd %v: sigmoid(%v) = %v, want about %v", simd, v, got[i], want)
				}
				continue
			}
			rel := math.Abs(float64(got[i])-want) / want
			worst = max(worst, rel)
			if rel > 4*6e-8 {
				t.Fatalf("simd %v: sigmoid(%v) = %v, want %v (relative error %.2g)", simd, v, got[i], want, rel)
			}
		}
		t.Logf("simd %v: worst relative error %.2g over %d inputs", simd, worst, len(src))
	}
}

// TestErfAccuracy checks both erf kernels (AVX2 and Go) against math.Erf
// over a sweep of inputs, extremes included: within 6e-7 absolute (the
// approximation's 1.5e-7 and float32 rounding), ±1 at ±Inf, NaN for NaN.
func TestErfAccuracy(t *testing.T) {
	var src []float32
	for x := -12.0; x <= 12; x += 0.000913 {
		src = append(src, float32(x))
	}
	src = append(src, 0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
		1e-30, -1e-30, math.MaxFloat32, -math.MaxFloat32)
	kernels := []bool{false}
	if haveAVX2FMA {
		kernels = append(kernels, true)
	}
	for _, simd := range kernels {
		got := make([]float32, len(src))
		erfF32On(simd, got, src)
		worst := 0.0
		for i, v := range src {
			x := float64(v)
			if math.IsNaN(x) {
				if !math.IsNaN(float64(got[i])) {
					t.Fatalf("simd %v: erf(NaN) = %v", simd, got[i])
				}
				continue
			}
			d := math.Abs(float64(got[i]) - math.Erf(x))
			worst = max(worst, d)
			if d > 6e-7 {
				t.Fatalf("simd %v: erf(%v) = %v, want %v (error %.2g)", simd, v, got[i], math.Erf(x), d)
			}
		}
		t.Logf("simd %v: worst absolute error %.2g over %d inputs", simd, worst, len(src))
	}
}
