package interp

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

// qdqCase is a Gemm or MatMul in QDQ form: x -> QuantizeLinear ->
// DequantizeLinear -> the node, whose weight is DequantizeLinear of an
// 8-bit initializer.
type qdqCase struct {
	name     string
	op       string
	k, n     int
	xType    DType // uint8 or int8 activations
	transB   bool
	perCol   bool  // per-column weight scales (else per tensor)
	wZero    bool  // nonzero weight zero points
	bias     []int // the shape of Gemm's C; nil: none
	alpha    float32
	dqOutput bool  // the dequantized input is also a graph output
	xShape   []int // the input's declared shape; nil: unknown rank
	fused    bool  // whether Load runs the node in integers
}

// qdqModel builds c's model and returns it with the reference of what it
// computes for x: the quantization of x, by the operator's definition,
// dequantized and multiplied in float64.
func qdqModel(t testing.TB, r *rand.Rand, c qdqCase) ([]byte, func(x *Tensor) *Tensor) {
	t.Helper()
	sx, zx := float32(0.02), 7
	if c.xType == Uint8 {
		zx = 131
	}
	wType := Int8
	w := New(wType, c.k, c.n)
	if c.transB {
		w = New(wType, c.n, c.k)
	}
	for i := range w.I8 {
		w.I8[i] = int8(r.IntN(255) - 127)
	}
	scales := 1
	if c.perCol {
		scales = c.n
	}
	sw, zw := make([]float32, scales), New(Int8, scales)
	for j := range sw {
		sw[j] = 0.001 + r.Float32()*0.01
		if c.wZero {
			zw.I8[j] = int8(r.IntN(11) - 5)
		}
	}
	axis := int64(1)
	if c.transB {
		axis = 0
	}
	zxT := New(c.xType, 1)
	if c.xType == Uint8 {
		zxT.U8[0] = uint8(zx)
	} else {
		zxT.I8[0] = int8(zx)
	}
	b := onnx.NewBuilder("qdq", 13).
		Float32("sx", []float32{sx}).Float32("sw", sw, int64(scales)).
		Node("QuantizeLinear", "q", []string{"x", "sx", "zx"}, []string{"xq"}).
		Node("DequantizeLinear", "dq", []string{"xq", "sx", "zx"}, []string{"xd"}).
		Node("DequantizeLinear", "wdq", []string{"wq", "sw", "zw"}, []string{"w"}, onnx.AttrInt("axis", axis))
	inputs := []string{"xd", "w"}
	var attrs []onnx.Attr
	var bias []float32
	if c.op == "Gemm" {
		if c.transB {
			attrs = append(attrs, onnx.AttrInt("transB", 1))
		}
		if c.alpha != 0 {
			attrs = append(attrs, onnx.AttrFloat("alpha", c.alpha))
		}
		if c.bias != nil {
			bias = make([]float32, Size(c.bias))
			for j := range bias {
				bias[j] = r.Float32() - 0.5
			}
			dims := make([]int64, len(c.bias))
			for i, d := range c.bias {
				dims[i] = int64(d)
			}
			b.Float32("c", bias, dims...)
			inputs = append(inputs, "c")
		}
	}
	b.Node(c.op, "node", inputs, []string{"y"}, attrs...)
	mp, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	// Of unknown rank, so that one model takes inputs of every shape,
	// unless c says.
	mp.Graph.Input = append(mp.Graph.Input, declared("x", c.xShape))
	mp.Graph.Output = append(mp.Graph.Output, tensorInfo("y", Float32))
	if c.dqOutput {
		mp.Graph.Output = append(mp.Graph.Output, tensorInfo("xd", Float32))
	}
	mp.Graph.Initializer = append(mp.Graph.Initializer, quantProto("zx", zxT), quantProto("wq", w), quantProto("zw", zw))
	data, err := onnx.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	alpha := float64(1)
	if c.alpha != 0 {
		alpha = float64(c.alpha)
	}
	lo, hi := 0.0, 255.0
	if c.xType == Int8 {
		lo, hi = -128, 127
	}
	ref := func(x *Tensor) *Tensor {
		rows := x.Len() / c.k
		shape := append(append([]int(nil), x.Shape[:len(x.Shape)-1]...), c.n)
		if len(x.Shape) == 1 {
			shape = []int{c.n}
		}
		y := New(Float32, shape...)
		for i := range rows {
			for j := range c.n {
				s, z := float64(sw[0]), float64(zw.I8[0])
				if c.perCol {
					s, z = float64(sw[j]), float64(zw.I8[j])
				}
				var sum float64
				for kk := range c.k {
					q := math.Max(lo, math.Min(hi, math.RoundToEven(float64(x.F32[i*c.k+kk])/float64(sx))+float64(zx)))
					wv := float64(w.I8[kk*c.n+j])
					if c.transB {
						wv = float64(w.I8[j*c.k+kk])
					}
					sum += (q - float64(zx)) * float64(sx) * (wv - z) * s
				}
				sum *= alpha
				if bias != nil {
					sum += float64(bias[j%len(bias)])
				}
				y.F32[i*c.n+j] = float32(sum)
			}
		}
		return y
	}
	return data, ref
}

// declared is a float32 value of the given shape, or of unknown rank
// when shape is nil.
func declared(name string, shape []int) *onnxpb.ValueInfoProto {
	vi := tensorInfo(name, Float32)
	if shape != nil {
		st := &onnxpb.TensorShapeProto{}
		for _, d := range shape {
			st.Dim = append(st.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}})
		}
		vi.GetType().GetTensorType().Shape = st
	}
	return vi
}

// TestQDQLinear loads Gemm and MatMul nodes in QDQ form, checks which of
// them Load runs in integers (their input's DequantizeLinear is gone), and
// compares every one with the product computed here in float64 from the
// operators' definitions, over inputs of several shapes, an input of a
// shape the integer kernel does not take among them.
func TestQDQLinear(t *testing.T) {
	tests := []qdqCase{
		{name: "gemm per column", op: "Gemm", k: 37, n: 21, xType: Uint8, perCol: true, bias: []int{21}, fused: true},
		{name: "gemm transB", op: "Gemm", k: 64, n: 33, xType: Uint8, transB: true, perCol: true, bias: []int{1, 33}, fused: true},
		{name: "gemm per tensor no bias", op: "Gemm", k: 16, n: 16, xType: Uint8, fused: true},
		{name: "gemm int8 input, weight zero points", op: "Gemm", k: 50, n: 40, xType: Int8, perCol: true, wZero: true, bias: []int{1}, fused: true},
		{name: "matmul", op: "MatMul", k: 30, n: 17, xType: Uint8, perCol: true, fused: true},
		{name: "gemm alpha", op: "Gemm", k: 20, n: 10, xType: Uint8, perCol: true, alpha: 0.5, fused: false},
		{name: "dequantized input also an output", op: "Gemm", k: 20, n: 10, xType: Uint8, perCol: true, dqOutput: true, fused: false},
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			data, ref := qdqModel(t, r, c)
			m, err := Load(data)
			if err != nil {
				t.Fatal(err)
			}
			dq := 0
			for _, st := range m.steps {
				if st.node.Proto.GetOpType() == "DequantizeLinear" {
					dq++
				}
			}
			if fused := dq == 0; fused != c.fused {
				t.Errorf("run in integers: %v, want %v", fused, c.fused)
			}
			// Fused, the model holds the weight packed, not in float32
			// nor as the initializer it was packed from.
			var held []DType
			for _, k := range m.consts {
				if k != nil && k.Len() == c.k*c.n {
					held = append(held, k.DType)
				}
			}
			if c.fused && len(held) != 0 || !c.fused && !slices.Equal(held, []DType{Float32}) {
				t.Errorf("weights held as constants: %v", held)
			}
			shapes := [][]int{{1, c.k}, {4, c.k}, {33, c.k}}
			if c.op == "MatMul" {
				shapes = append(shapes, []int{2, 3, c.k}, []int{c.k}) // the last one unfused
			}
			for _, shape := range shapes {
				x := New(Float32, shape...)
				for i := range x.F32 {
					x.F32[i] = float32(r.NormFloat64()) * 2 // some beyond the quantized range
				}
				out, err := m.Run(context.Background(), map[string]*Tensor{"x": x})
				if err != nil {
					t.Fatalf("input %v: %v", shape, err)
				}
				want := ref(x)
				tol := 0.0
				for _, v := range want.F32 {
					tol = math.Max(tol, math.Abs(float64(v)))
				}
				if err := sameTensor(out["y"], want, 1e-5*tol+1e-6); err != nil {
					t.Errorf("input %v: %v", shape, err)
				}
			}
		})
	}
}

// BenchmarkQDQGemm runs the first layer of the zoo MLP (784 x 256) in QDQ
// form at batch 1 and 32: in integers, as Load runs it, and in float32, as
// it runs when the dequantized input is also a graph output (which keeps
// the node as it is).
func BenchmarkQDQGemm(b *testing.B) {
	t := &testing.T{}
	for _, form := range []struct {
		name     string
		dqOutput bool
	}{{"integers", false}, {"float32", true}} {
		r := rand.New(rand.NewPCG(1, 2))
		data, _ := qdqModel(t, r, qdqCase{op: "Gemm", k: 784, n: 256, xType: Uint8, transB: true, perCol: true, bias: []int{256}, dqOutput: form.dqOutput})
		m, err := Load(data)
		if err != nil {
			b.Fatal(err)
		}
		for _, batch := range []int{1, 32} {
			x := New(Float32, batch, 784)
			for i := range x.F32 {
				x.F32[i] = r.Float32()
			}
			in := map[string]*Tensor{"x": x}
			b.Run(fmt.Sprintf("%s/batch%d", form.name, batch), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := m.Run(context.Background(), in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// qdqConvCase is a Conv in QDQ form, as the int8 rewrite makes it: x ->
// QuantizeLinear -> DequantizeLinear -> Conv, whose weight is
// DequantizeLinear of an 8-bit initializer, then Relu and MaxPool if
// asked.
type qdqConvCase struct {
	name       string
	c, m, k    int   // input channels, output channels, kernel size
	xType      DType // uint8 or int8 activations
	zx         int   // the input's zero point
	perChannel bool  // per-channel weight scales (else per tensor)
	wZero      bool  // nonzero weight zero points
	bias       bool
	stride     int   // 0: 1
	pad        int   // on every side
	group      int   // 0: 1
	relu, pool bool  // Relu, MaxPool 2x2 at stride 2 after the Conv
	dqOutput   bool  // the dequantized input is also a graph output
	xShape     []int // the input's declared shape; nil: unknown rank
	fused      bool  // whether Load runs the Conv in integers
}

// qdqConvModel builds c's model and returns it with the reference of what
// it computes for x (N x C x H x W): the quantization of x and the weight,
// by the operators' definitions, dequantized and convolved in float64.
func qdqConvModel(t testing.TB, r *rand.Rand, c qdqConvCase) ([]byte, func(x *Tensor) *Tensor) {
	t.Helper()
	sx := float32(0.02)
	stride, group := max(c.stride, 1), max(c.group, 1)
	cg := c.c / group
	w := New(Int8, c.m, cg, c.k, c.k)
	for i := range w.I8 {
		w.I8[i] = int8(r.IntN(255) - 127)
	}
	scales := 1
	if c.perChannel {
		scales = c.m
	}
	sw, zw := make([]float32, scales), New(Int8, scales)
	for j := range sw {
		sw[j] = 0.001 + r.Float32()*0.01
		if c.wZero {
			zw.I8[j] = int8(r.IntN(11) - 5)
		}
	}
	zxT := New(c.xType, 1)
	if c.xType == Uint8 {
		zxT.U8[0] = uint8(c.zx)
	} else {
		zxT.I8[0] = int8(c.zx)
	}
	b := onnx.NewBuilder("qdqconv", 13).
		Float32("sx", []float32{sx}).Float32("sw", sw, int64(scales)).
		Node("QuantizeLinear", "q", []string{"x", "sx", "zx"}, []string{"xq"}).
		Node("DequantizeLinear", "dq", []string{"xq", "sx", "zx"}, []string{"xd"}).
		Node("DequantizeLinear", "wdq", []string{"wq", "sw", "zw"}, []string{"w"}, onnx.AttrInt("axis", 0))
	inputs := []string{"xd", "w"}
	var bias []float32
	if c.bias {
		bias = make([]float32, c.m)
		for j := range bias {
			bias[j] = r.Float32() - 0.5
		}
		b.Float32("b", bias, int64(c.m))
		inputs = append(inputs, "b")
	}
	p := int64(c.pad)
	b.Node("Conv", "conv", inputs, []string{"y0"}, onnx.AttrInts("pads", p, p, p, p),
		onnx.AttrInts("strides", int64(stride), int64(stride)), onnx.AttrInt("group", int64(group)))
	out := "y0"
	if c.relu {
		b.Node("Relu", "relu", []string{out}, []string{"y1"})
		out = "y1"
	}
	if c.pool {
		b.Node("MaxPool", "pool", []string{out}, []string{"y2"}, onnx.AttrInts("kernel_shape", 2, 2), onnx.AttrInts("strides", 2, 2))
		out = "y2"
	}
	b.Node("Identity", "out", []string{out}, []string{"y"})
	mp, err := b.Model()
	if err != nil {
		t.Fatal(err)
	}
	mp.Graph.Input = append(mp.Graph.Input, declared("x", c.xShape))
	mp.Graph.Output = append(mp.Graph.Output, tensorInfo("y", Float32))
	if c.dqOutput {
		mp.Graph.Output = append(mp.Graph.Output, tensorInfo("xd", Float32))
	}
	mp.Graph.Initializer = append(mp.Graph.Initializer, quantProto("zx", zxT), quantProto("wq", w), quantProto("zw", zw))
	data, err := onnx.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := 0.0, 255.0
	if c.xType == Int8 {
		lo, hi = -128, 127
	}
	ref := func(x *Tensor) *Tensor {
		n, h, wd := x.Shape[0], x.Shape[2], x.Shape[3]
		oh, ow := (h+2*c.pad-c.k)/stride+1, (wd+2*c.pad-c.k)/stride+1
		xd := make([]float64, x.Len())
		for i, v := range x.F32 {
			q := math.Max(lo, math.Min(hi, math.RoundToEven(float64(v)/float64(sx))+float64(c.zx)))
			xd[i] = (q - float64(c.zx)) * float64(sx)
		}
		y := make([]float64, n*c.m*oh*ow)
		for img := range n {
			for m := range c.m {
				s, z := float64(sw[0]), float64(zw.I8[0])
				if c.perChannel {
					s, z = float64(sw[m]), float64(zw.I8[m])
				}
				g := m / (c.m / group)
				for oy := range oh {
					for ox := range ow {
						var sum float64
						for ci := range cg {
							for ky := range c.k {
								for kx := range c.k {
									iy, ix := oy*stride-c.pad+ky, ox*stride-c.pad+kx
									if iy < 0 || iy >= h || ix < 0 || ix >= wd {
										continue // a pad, 0
									}
									wv := (float64(w.I8[((m*cg+ci)*c.k+ky)*c.k+kx]) - z) * s
									sum += xd[((img*c.c+g*cg+ci)*h+iy)*wd+ix] * wv
								}
							}
						}
						if bias != nil {
							sum += float64(bias[m])
						}
						if c.relu {
							sum = math.Max(sum, 0)
						}
						y[((img*c.m+m)*oh+oy)*ow+ox] = sum
					}
				}
			}
		}
		shape := []int{n, c.m, oh, ow}
		if c.pool {
			ph, pw := oh/2, ow/2
			pooled := make([]float64, n*c.m*ph*pw)
			for pl := range n * c.m {
				for py := range ph {
					for px := range pw {
						v := math.Inf(-1)
						for dy := range 2 {
							for dx := range 2 {
								v = math.Max(v, y[(pl*oh+2*py+dy)*ow+2*px+dx])
							}
						}
						pooled[(pl*ph+py)*pw+px] = v
					}
				}
			}
			y, shape = pooled, []int{n, c.m, ph, pw}
		}
		out := New(Float32, shape...)
		for i, v := range y {
			out.F32[i] = float32(v)
		}
		return out
	}
	return data, ref
}

// TestQDQConv loads Conv nodes in QDQ form, checks which of them Load runs
// in integers (their input's DequantizeLinear is gone, and a Relu and
// MaxPool after them are fused), that the weight is then held in 8 bits
// only, and compares every one with the convolution computed here in
// float64 from the operators' definitions, over inputs of several
// shapes; an input of channels the weight does not take must fail.
func TestQDQConv(t *testing.T) {
	tests := []qdqConvCase{
		{name: "per channel, bias, pad, uint8 zero point", c: 3, m: 8, k: 3, xType: Uint8, zx: 131, perChannel: true, bias: true, pad: 1, fused: true},
		{name: "per tensor, no bias", c: 2, m: 5, k: 3, xType: Uint8, zx: 17, pad: 1, fused: true},
		{name: "int8 input, weight zero points", c: 4, m: 6, k: 3, xType: Int8, zx: 7, perChannel: true, wZero: true, bias: true, pad: 2, fused: true},
		{name: "int8 input, negative zero point", c: 3, m: 4, k: 2, xType: Int8, zx: -20, perChannel: true, fused: true},
		{name: "stride 2", c: 3, m: 17, k: 3, xType: Uint8, zx: 90, perChannel: true, bias: true, stride: 2, pad: 1, fused: true},
		{name: "pointwise", c: 9, m: 16, k: 1, xType: Uint8, zx: 3, perChannel: true, bias: true, fused: true},
		{name: "one channel, relu and max pool", c: 1, m: 8, k: 3, xType: Uint8, zx: 0, perChannel: true, bias: true, pad: 1, relu: true, pool: true, fused: true},
		{name: "relu and max pool", c: 8, m: 16, k: 3, xType: Uint8, zx: 40, perChannel: true, bias: true, pad: 1, relu: true, pool: true, fused: true},
		{name: "grouped", c: 4, m: 6, k: 3, xType: Uint8, zx: 10, perChannel: true, bias: true, pad: 1, group: 2, relu: true, pool: true, fused: false},
		{name: "dequantized input also an output", c: 3, m: 8, k: 3, xType: Uint8, zx: 131, perChannel: true, bias: true, pad: 1, dqOutput: true, fused: false},
	}
	r := rand.New(rand.NewPCG(7, 8))
	for _, c := range tests {
		t.Run(c.name, func(t *testing.T) {
			data, ref := qdqConvModel(t, r, c)
			m, err := Load(data)
			if err != nil {
				t.Fatal(err)
			}
			var ops []string
			for _, st := range m.steps {
				ops = append(ops, st.node.Proto.GetOpType())
			}
			want := []string{"QuantizeLinear", "Conv", "Identity"}
			if !c.fused {
				want = []string{"QuantizeLinear", "DequantizeLinear", "Conv", "Identity"}
			}
			if !slices.Equal(ops, want) {
				t.Errorf("steps %v, want %v", ops, want)
			}
			// Fused, the model holds the weight packed, not in float32
			// nor as the initializer it was packed from.
			size := c.m * c.c / max(c.group, 1) * c.k * c.k
			var held []DType
			for _, k := range m.consts {
				if k != nil && k.Len() == size {
					held = append(held, k.DType)
				}
			}
			if c.fused && len(held) != 0 || !c.fused && !slices.Equal(held, []DType{Float32}) {
				t.Errorf("weights held as constants: %v", held)
			}
			for _, shape := range [][]int{{1, c.c, 9, 9}, {3, c.c, 8, 13}, {2, c.c, 16, 6}} {
				x := New(Float32, shape...)
				for i := range x.F32 {
					x.F32[i] = float32(r.NormFloat64()) * 2 // some beyond the quantized range
				}
				out, err := m.Run(context.Background(), map[string]*Tensor{"x": x})
				if err != nil {
					t.Fatalf("input %v: %v", shape, err)
				}
				want := ref(x)
				tol := 0.0
				for _, v := range want.F32 {
					tol = math.Max(tol, math.Abs(float64(v)))
				}
				if err := sameTensor(out["y"], want, 1e-5*tol+1e-6); err != nil {
					t.Errorf("input %v: %v", shape, err)
				}
			}
			x := New(Float32, 1, c.c+1, 9, 9)
			if _, err := m.Run(context.Background(), map[string]*Tensor{"x": x}); err == nil {
				t.Errorf("input %v: no error", x.Shape)
			}
		})
	}
}

// BenchmarkQDQConv runs the two Conv layers of the zoo CNN in QDQ form
// with their Relu and MaxPool (1 to 8 channels on 28x28, 8 to 16 on
// 14x14, 3x3 kernels padded by 1) at batch 32: in integers, as Load runs
// them, and in float32, as they run when the dequantized input is also a
// graph output (which keeps the node as it is).
func BenchmarkQDQConv(b *testing.B) {
	t := &testing.T{}
	for _, layer := range []struct {
		name    string
		c, m, h int
	}{{"conv1", 1, 8, 28}, {"conv2", 8, 16, 14}} {
		for _, form := range []struct {
			name     string
			dqOutput bool
		}{{"integers", false}, {"float32", true}} {
			r := rand.New(rand.NewPCG(1, 2))
			data, _ := qdqConvModel(t, r, qdqConvCase{c: layer.c, m: layer.m, k: 3, xType: Uint8, perChannel: true, bias: true,
				pad: 1, relu: true, pool: true, dqOutput: form.dqOutput})
			m, err := Load(data)
			if err != nil {
				b.Fatal(err)
			}
			x := New(Float32, 32, layer.c, layer.h, layer.h)
			for i := range x.F32 {
				x.F32[i] = r.Float32() * 4
			}
			in := map[string]*Tensor{"x": x}
			b.Run(layer.name+"/"+form.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := m.Run(context.Background(), in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
