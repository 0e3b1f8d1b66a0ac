package interp

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

type opCase struct {
	name    string
	op      string
	attrs   []*onnxpb.AttributeProto
	in      []*Tensor
	want    *Tensor
	wantErr string // substring of the load or run error
}

func runOpCases(t *testing.T, cases []opCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			outType := Float32
			if c.want != nil {
				outType = c.want.DType
			} else if len(c.in) > 0 && c.in[0] != nil {
				outType = c.in[0].DType
			}
			got, err := runOp(t, c.op, []DType{outType}, c.attrs, c.in...)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := sameTensor(got[0], c.want, 1e-6); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestBinaryOps(t *testing.T) {
	runOpCases(t, []opCase{
		{name: "same shape", op: "Add", in: []*Tensor{cF32(sh(2), 1, 2), cF32(sh(2), 10, 20)}, want: cF32(sh(2), 11, 22)},
		{name: "row vector", op: "Add", in: []*Tensor{cF32(sh(2, 3), 1, 2, 3, 4, 5, 6), cF32(sh(3), 10, 20, 30)}, want: cF32(sh(2, 3), 11, 22, 33, 14, 25, 36)},
		{name: "column vs row", op: "Sub", in: []*Tensor{cF32(sh(2, 1), 1, 2), cF32(sh(1, 3), 1, 2, 3)}, want: cF32(sh(2, 3), 0, -1, -2, 1, 0, -1)},
		{name: "scalar left", op: "Mul", in: []*Tensor{cF32(sh(), 2), cF32(sh(2, 2), 1, 2, 3, 4)}, want: cF32(sh(2, 2), 2, 4, 6, 8)},
		{name: "scalar both", op: "Div", in: []*Tensor{cF32(sh(), 1), cF32(sh(), 4)}, want: cF32(sh(), 0.25)},
		{name: "middle broadcast", op: "Add", in: []*Tensor{cF32(sh(2, 1, 2), 1, 2, 3, 4), cF32(sh(3, 1), 10, 20, 30)},
			want: cF32(sh(2, 3, 2), 11, 12, 21, 22, 31, 32, 13, 14, 23, 24, 33, 34)},
		{name: "outer broadcast", op: "Mul", in: []*Tensor{cF32(sh(2, 1, 1), 1, 2), cF32(sh(1, 2, 2), 1, 2, 3, 4)},
			want: cF32(sh(2, 2, 2), 1, 2, 3, 4, 2, 4, 6, 8)},
		{name: "empty dimension", op: "Add", in: []*Tensor{cF32(sh(0, 3)), cF32(sh(3), 1, 2, 3)}, want: cF32(sh(0, 3))},
		{name: "int32", op: "Mul", in: []*Tensor{cI32(sh(3), 1, -2, 3), cI32(sh(1), 7)}, want: cI32(sh(3), 7, -14, 21)},
		{name: "int64 div truncates", op: "Div", in: []*Tensor{cI64(sh(3), 7, -7, 6), cI64(sh(), 2)}, want: cI64(sh(3), 3, -3, 3)},
		{name: "int8 wraps", op: "Add", in: []*Tensor{cI8(sh(2), 127, -128), cI8(sh(2), 1, -1)}, want: cI8(sh(2), -128, 127)},
		{name: "uint8", op: "Sub", in: []*Tensor{cU8(sh(2), 5, 0), cU8(sh(2), 3, 1)}, want: cU8(sh(2), 2, 255)},
		{name: "int division by zero", op: "Div", in: []*Tensor{cI32(sh(2), 1, 2), cI32(sh(2), 1, 0)}, wantErr: "division by zero"},
		{name: "float division by zero", op: "Div", in: []*Tensor{cF32(sh(1), 1), cF32(sh(1), 0)}, want: cF32(sh(1), float32(math.Inf(1)))},
		{name: "incompatible shapes", op: "Add", in: []*Tensor{cF32(sh(2), 1, 2), cF32(sh(3), 1, 2, 3)}, wantErr: "do not broadcast"},
		{name: "mixed types", op: "Add", in: []*Tensor{cF32(sh(1), 1), cI64(sh(1), 1)}, wantErr: "types"},
		{name: "bool refused", op: "Add", in: []*Tensor{cB(sh(1), true), cB(sh(1), true)}, wantErr: "not supported"},
	})
}

func TestBroadcastMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	shapes := [][2][]int{
		{{4, 1, 3, 1}, {5, 1, 2}}, {{1}, {3, 4}}, {{2, 3, 4}, {2, 1, 4}}, {{3, 1, 1, 2}, {1, 4, 5, 1}}, {{6}, {1}},
	}
	for _, s := range shapes {
		a, b := New(Float32, s[0]...), New(Float32, s[1]...)
		for i := range a.F32 {
			a.F32[i] = r.Float32()
		}
		for i := range b.F32 {
			b.F32[i] = r.Float32()
		}
		got, err := runOp(t, "Sub", []DType{Float32}, nil, a, b)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := BroadcastShapes(s[0], s[1])
		want := New(Float32, out...)
		idx := make([]int, len(out))
		for i := range want.F32 {
			want.F32[i] = a.F32[bIndex(idx, s[0])] - b.F32[bIndex(idx, s[1])]
			for d := len(idx) - 1; d >= 0; d-- {
				if idx[d]++; idx[d] < out[d] {
					break
				}
				idx[d] = 0
			}
		}
		if err := sameTensor(got[0], want, 0); err != nil {
			t.Errorf("%v - %v: %v", s[0], s[1], err)
		}
	}
}

// bIndex is the flat index into a tensor of shape s broadcast to the
// output index idx.
func bIndex(idx, s []int) int {
	off, stride := 0, 1
	for d := len(s) - 1; d >= 0; d-- {
		i := idx[len(idx)-len(s)+d]
		if s[d] == 1 {
			i = 0
		}
		off += i * stride
		stride *= s[d]
	}
	return off
}

func TestUnaryOps(t *testing.T) {
	e := float32(1 / (1 + math.Exp(-1)))
	runOpCases(t, []opCase{
		{name: "relu", op: "Relu", in: []*Tensor{cF32(sh(4), -1, 0, 2, -0.5)}, want: cF32(sh(4), 0, 0, 2, 0)},
		{name: "relu int32", op: "Relu", in: []*Tensor{cI32(sh(2), -3, 3)}, want: cI32(sh(2), 0, 3)},
		{name: "relu scalar", op: "Relu", in: []*Tensor{cF32(sh(), -1)}, want: cF32(sh(), 0)},
		{name: "sigmoid", op: "Sigmoid", in: []*Tensor{cF32(sh(3), 1, 0, -1000)}, want: cF32(sh(3), e, 0.5, 0)},
		{name: "tanh", op: "Tanh", in: []*Tensor{cF32(sh(2), 0, 100)}, want: cF32(sh(2), 0, 1)},
		{name: "sigmoid int refused", op: "Sigmoid", in: []*Tensor{cI32(sh(1), 1)}, wantErr: "not supported"},
		{name: "neg int64", op: "Neg", in: []*Tensor{cI64(sh(2), 1, -2)}, want: cI64(sh(2), -1, 2)},
		{name: "abs", op: "Abs", in: []*Tensor{cF32(sh(2), -1.5, 2)}, want: cF32(sh(2), 1.5, 2)},
		{name: "exp", op: "Exp", in: []*Tensor{cF32(sh(1), 0)}, want: cF32(sh(1), 1)},
	})
}

func TestSoftmax(t *testing.T) {
	// Softmax of (0, ln 3) is (1/4, 3/4).
	l3 := float32(math.Log(3))
	ax := func(v int64) []*onnxpb.AttributeProto { return []*onnxpb.AttributeProto{onnx.AttrInt("axis", v)} }
	runOpCases(t, []opCase{
		{name: "default last axis", op: "Softmax", in: []*Tensor{cF32(sh(2, 2), 0, l3, l3, 0)}, want: cF32(sh(2, 2), 0.25, 0.75, 0.75, 0.25)},
		{name: "axis 0", op: "Softmax", attrs: ax(0), in: []*Tensor{cF32(sh(2, 2), 0, l3, l3, 0)}, want: cF32(sh(2, 2), 0.25, 0.75, 0.75, 0.25)},
		{name: "negative axis of 3-D", op: "Softmax", attrs: ax(-2), in: []*Tensor{cF32(sh(1, 2, 1), 0, l3)}, want: cF32(sh(1, 2, 1), 0.25, 0.75)},
		{name: "large values", op: "Softmax", in: []*Tensor{cF32(sh(2), 1000, 1000)}, want: cF32(sh(2), 0.5, 0.5)},
		{name: "log", op: "LogSoftmax", in: []*Tensor{cF32(sh(2), 0, l3)}, want: cF32(sh(2), float32(math.Log(0.25)), float32(math.Log(0.75)))},
		{name: "axis out of range", op: "Softmax", attrs: ax(2), in: []*Tensor{cF32(sh(2, 2), 0, 0, 0, 0)}, wantErr: "axis 2 out of range"},
	})
}

func TestShapeOps(t *testing.T) {
	x := cF32(sh(2, 3, 4), make([]float32, 24)...)
	for i := range x.F32 {
		x.F32[i] = float32(i)
	}
	axis := func(v int64) []*onnxpb.AttributeProto { return []*onnxpb.AttributeProto{onnx.AttrInt("axis", v)} }
	flat := func(s []int) *Tensor { return &Tensor{DType: Float32, Shape: s, F32: x.F32} }
	runOpCases(t, []opCase{
		{name: "flatten default", op: "Flatten", in: []*Tensor{x}, want: flat(sh(2, 12))},
		{name: "flatten axis 0", op: "Flatten", attrs: axis(0), in: []*Tensor{x}, want: flat(sh(1, 24))},
		{name: "flatten axis -1", op: "Flatten", attrs: axis(-1), in: []*Tensor{x}, want: flat(sh(6, 4))},
		{name: "flatten axis 3", op: "Flatten", attrs: axis(3), in: []*Tensor{x}, want: flat(sh(24, 1))},
		{name: "flatten bad axis", op: "Flatten", attrs: axis(4), in: []*Tensor{x}, wantErr: "out of range"},
		{name: "reshape -1", op: "Reshape", in: []*Tensor{x, cI64(sh(2), -1, 4)}, want: flat(sh(6, 4))},
		{name: "reshape 0 copies", op: "Reshape", in: []*Tensor{x, cI64(sh(3), 0, 4, -1)}, want: flat(sh(2, 4, 3))},
		{name: "reshape to scalar", op: "Reshape", in: []*Tensor{cF32(sh(1, 1), 5), cI64(sh(0))}, want: cF32(sh(), 5)},
		{name: "reshape allowzero", op: "Reshape", attrs: []*onnxpb.AttributeProto{onnx.AttrInt("allowzero", 1)},
			in: []*Tensor{cF32(sh(0, 3)), cI64(sh(2), 3, 0)}, want: cF32(sh(3, 0))},
		{name: "reshape two -1", op: "Reshape", in: []*Tensor{x, cI64(sh(2), -1, -1)}, wantErr: "more than one -1"},
		{name: "reshape wrong size", op: "Reshape", in: []*Tensor{x, cI64(sh(2), 5, 5)}, wantErr: "cannot reshape"},
		{name: "reshape int32 shape", op: "Reshape", in: []*Tensor{x, cI32(sh(1), 24)}, wantErr: "int64"},
		{name: "identity", op: "Identity", in: []*Tensor{cI64(sh(2), 1, 2)}, want: cI64(sh(2), 1, 2)},
		{name: "transpose default", op: "Transpose", in: []*Tensor{cF32(sh(2, 3), 1, 2, 3, 4, 5, 6)}, want: cF32(sh(3, 2), 1, 4, 2, 5, 3, 6)},
		{name: "transpose perm", op: "Transpose", attrs: []*onnxpb.AttributeProto{onnx.AttrInts("perm", 1, 0, 2)},
			in: []*Tensor{cI32(sh(2, 2, 2), 1, 2, 3, 4, 5, 6, 7, 8)}, want: cI32(sh(2, 2, 2), 1, 2, 5, 6, 3, 4, 7, 8)},
		{name: "transpose 3-D reversed", op: "Transpose",
			in: []*Tensor{cU8(sh(1, 2, 3), 1, 2, 3, 4, 5, 6)}, want: cU8(sh(3, 2, 1), 1, 4, 2, 5, 3, 6)},
		{name: "transpose bad perm", op: "Transpose", attrs: []*onnxpb.AttributeProto{onnx.AttrInts("perm", 0, 0)},
			in: []*Tensor{cF32(sh(1, 1), 1)}, wantErr: "not a permutation"},
		{name: "transpose perm rank", op: "Transpose", attrs: []*onnxpb.AttributeProto{onnx.AttrInts("perm", 1, 0)},
			in: []*Tensor{cF32(sh(1), 1)}, wantErr: "perm"},
		{name: "concat axis 0", op: "Concat", attrs: axis(0), in: []*Tensor{cF32(sh(1, 2), 1, 2), cF32(sh(2, 2), 3, 4, 5, 6)},
			want: cF32(sh(3, 2), 1, 2, 3, 4, 5, 6)},
		{name: "concat axis -1", op: "Concat", attrs: axis(-1), in: []*Tensor{cI64(sh(2, 1), 1, 2), cI64(sh(2, 2), 3, 4, 5, 6)},
			want: cI64(sh(2, 3), 1, 3, 4, 2, 5, 6)},
		{name: "concat mismatch", op: "Concat", attrs: axis(0), in: []*Tensor{cF32(sh(1, 2), 1, 2), cF32(sh(1, 3), 1, 2, 3)}, wantErr: "does not match"},
		{name: "concat no axis", op: "Concat", in: []*Tensor{cF32(sh(1), 1)}, wantErr: "axis"},
	})
}

func TestCast(t *testing.T) {
	to := func(dt DType) []*onnxpb.AttributeProto {
		return []*onnxpb.AttributeProto{onnx.AttrInt("to", int64(dt))}
	}
	runOpCases(t, []opCase{
		{name: "float to int32 truncates", op: "Cast", attrs: to(Int32), in: []*Tensor{cF32(sh(4), 2.7, -2.7, 0.5, -0.5)}, want: cI32(sh(4), 2, -2, 0, 0)},
		{name: "float to int64 NaN", op: "Cast", attrs: to(Int64), in: []*Tensor{cF32(sh(1), float32(math.NaN()))}, want: cI64(sh(1), 0)},
		{name: "int32 to uint8 wraps", op: "Cast", attrs: to(Uint8), in: []*Tensor{cI32(sh(2), 300, -1)}, want: cU8(sh(2), 44, 255)},
		{name: "int64 to float", op: "Cast", attrs: to(Float32), in: []*Tensor{cI64(sh(2), -3, 1<<40)}, want: cF32(sh(2), -3, 1<<40)},
		{name: "to bool", op: "Cast", attrs: to(Bool), in: []*Tensor{cF32(sh(3), 0, 0.1, -2)}, want: cB(sh(3), false, true, true)},
		{name: "from bool", op: "Cast", attrs: to(Int8), in: []*Tensor{cB(sh(2), true, false)}, want: cI8(sh(2), 1, 0)},
		{name: "same type", op: "Cast", attrs: to(Float32), in: []*Tensor{cF32(sh(1), 1.5)}, want: cF32(sh(1), 1.5)},
		{name: "to double refused at load", op: "Cast", attrs: to(11), in: []*Tensor{cF32(sh(1), 1)}, wantErr: "DOUBLE"},
		{name: "missing to", op: "Cast", in: []*Tensor{cF32(sh(1), 1)}, wantErr: "missing attribute to"},
	})
}

func TestRange(t *testing.T) {
	runOpCases(t, []opCase{
		{name: "float", op: "Range", in: []*Tensor{cF32(sh(), 1), cF32(sh(), 2), cF32(sh(), 0.25)}, want: cF32(sh(4), 1, 1.25, 1.5, 1.75)},
		{name: "int descending", op: "Range", in: []*Tensor{cI64(sh(), 5), cI64(sh(), 0), cI64(sh(), -2)}, want: cI64(sh(3), 5, 3, 1)},
		{name: "empty", op: "Range", in: []*Tensor{cI32(sh(), 5), cI32(sh(), 0), cI32(sh(), 1)}, want: cI32(sh(0))},
		{name: "zero delta", op: "Range", in: []*Tensor{cI32(sh(), 0), cI32(sh(), 1), cI32(sh(), 0)}, wantErr: "zero"},
	})
}

// naiveMatMul multiplies row-major matrices a (m x k) and b (k x n).
func naiveMatMul(a, b []float32, m, k, n int) []float32 {
	c := make([]float32, m*n)
	for i := range m {
		for j := range n {
			s := 0.0
			for p := range k {
				s += float64(a[i*k+p]) * float64(b[p*n+j])
			}
			c[i*n+j] = float32(s)
		}
	}
	return c
}

func randTensor(r *rand.Rand, shape ...int) *Tensor {
	t := New(Float32, shape...)
	for i := range t.F32 {
		t.F32[i] = r.Float32()*2 - 1
	}
	return t
}

func transposed(t *Tensor) *Tensor {
	out := New(t.DType, t.Shape[1], t.Shape[0])
	transpose2D(out.F32, t.F32, t.Shape[0], t.Shape[1])
	return out
}

func TestGemm(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	attrs := func(ta, tb int64, alpha, beta float32) []*onnxpb.AttributeProto {
		return []*onnxpb.AttributeProto{onnx.AttrInt("transA", ta), onnx.AttrInt("transB", tb), onnx.AttrFloat("alpha", alpha), onnx.AttrFloat("beta", beta)}
	}
	for _, sz := range [][3]int{{1, 1, 1}, {3, 5, 7}, {7, 13, 9}, {4, 300, 600}, {33, 130, 515}} {
		m, k, n := sz[0], sz[1], sz[2]
		a, b := randTensor(r, m, k), randTensor(r, k, n)
		ab := naiveMatMul(a.F32, b.F32, m, k, n)
		for _, cs := range [][]int{nil, {}, {n}, {1, n}, {m, 1}, {m, n}} {
			for _, tr := range [][2]int64{{0, 0}, {1, 0}, {0, 1}, {1, 1}} {
				aa, bb := a, b
				if tr[0] == 1 {
					aa = transposed(a)
				}
				if tr[1] == 1 {
					bb = transposed(b)
				}
				in := []*Tensor{aa, bb}
				alpha, beta := float32(0.5), float32(2)
				want := New(Float32, m, n)
				var c *Tensor
				if cs != nil {
					c = randTensor(r, cs...)
					in = append(in, c)
					fillBroadcast(want.F32, want.Shape, c.F32, c.Shape, beta)
				}
				for i := range want.F32 {
					want.F32[i] += alpha * ab[i]
				}
				got, err := runOp(t, "Gemm", []DType{Float32}, attrs(tr[0], tr[1], alpha, beta), in...)
				if err != nil {
					t.Fatalf("%v C%v trans%v: %v", sz, cs, tr, err)
				}
				if err := sameTensor(got[0], want, 1e-4); err != nil {
					t.Errorf("%v C%v trans%v: %v", sz, cs, tr, err)
				}
			}
		}
	}
	runOpCases(t, []opCase{
		{name: "square with column C", op: "Gemm", in: []*Tensor{cF32(sh(2, 2), 1, 0, 0, 1), cF32(sh(2, 2), 0, 0, 0, 0), cF32(sh(2, 1), 1, 2)},
			want: cF32(sh(2, 2), 1, 1, 2, 2)},
		{name: "square with row C", op: "Gemm", in: []*Tensor{cF32(sh(2, 2), 1, 0, 0, 1), cF32(sh(2, 2), 0, 0, 0, 0), cF32(sh(1, 2), 1, 2)},
			want: cF32(sh(2, 2), 1, 2, 1, 2)},
		{name: "defaults", op: "Gemm", in: []*Tensor{cF32(sh(1, 2), 1, 2), cF32(sh(2, 1), 3, 4), cF32(sh(), 1)}, want: cF32(sh(1, 1), 12)},
		{name: "inner mismatch", op: "Gemm", in: []*Tensor{cF32(sh(1, 2), 1, 2), cF32(sh(3, 1), 3, 4, 5)}, wantErr: "do not multiply"},
		{name: "bad C", op: "Gemm", in: []*Tensor{cF32(sh(1, 2), 1, 2), cF32(sh(2, 2), 1, 2, 3, 4), cF32(sh(3), 1, 2, 3)}, wantErr: "broadcast"},
		{name: "vector A", op: "Gemm", in: []*Tensor{cF32(sh(2), 1, 2), cF32(sh(2, 1), 3, 4)}, wantErr: "matrices"},
		{name: "int refused", op: "Gemm", in: []*Tensor{cI32(sh(1, 1), 1), cI32(sh(1, 1), 1)}, wantErr: "float32 only"},
		{name: "bad transA", op: "Gemm", attrs: []*onnxpb.AttributeProto{onnx.AttrInt("transA", 2)},
			in: []*Tensor{cF32(sh(1, 1), 1), cF32(sh(1, 1), 1)}, wantErr: "transA"},
	})
}

func TestMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	cases := []struct{ a, b, out []int }{
		{sh(3, 4), sh(4, 5), sh(3, 5)},
		{sh(4), sh(4, 5), sh(5)},
		{sh(3, 4), sh(4), sh(3)},
		{sh(4), sh(4), sh()},
		{sh(2, 3, 4), sh(4, 5), sh(2, 3, 5)},
		{sh(2, 1, 3, 4), sh(5, 4, 2), sh(2, 5, 3, 2)},
		{sh(4), sh(2, 4, 3), sh(2, 3)},
		{sh(1, 3, 130), sh(2, 130, 520), sh(2, 3, 520)},
	}
	for _, c := range cases {
		a, b := randTensor(r, c.a...), randTensor(r, c.b...)
		got, err := runOp(t, "MatMul", []DType{Float32}, nil, a, b)
		if err != nil {
			t.Fatalf("%v x %v: %v", c.a, c.b, err)
		}
		// Reference: promote, broadcast the batch and multiply each matrix.
		as, bs := c.a, c.b
		if len(as) == 1 {
			as = sh(1, as[0])
		}
		if len(bs) == 1 {
			bs = sh(bs[0], 1)
		}
		m, k, n := as[len(as)-2], as[len(as)-1], bs[len(bs)-1]
		batch, _ := BroadcastShapes(as[:len(as)-2], bs[:len(bs)-2])
		want := New(Float32, c.out...)
		idx := make([]int, len(batch))
		for p := range Size(batch) {
			ai, bi := bIndex(idx, as[:len(as)-2]), bIndex(idx, bs[:len(bs)-2])
			copy(want.F32[p*m*n:], naiveMatMul(a.F32[ai*m*k:(ai+1)*m*k], b.F32[bi*k*n:(bi+1)*k*n], m, k, n))
			for d := len(idx) - 1; d >= 0; d-- {
				if idx[d]++; idx[d] < batch[d] {
					break
				}
				idx[d] = 0
			}
		}
		if err := sameTensor(got[0], want, 1e-4); err != nil {
			t.Errorf("%v x %v: %v", c.a, c.b, err)
		}
	}
	runOpCases(t, []opCase{
		{name: "int32", op: "MatMul", in: []*Tensor{cI32(sh(2, 2), 1, 2, 3, 4), cI32(sh(2, 1), 5, 6)}, want: cI32(sh(2, 1), 17, 39)},
		{name: "int64 batched", op: "MatMul", in: []*Tensor{cI64(sh(2, 1, 2), 1, 2, 3, 4), cI64(sh(2, 1), 1, 1)}, want: cI64(sh(2, 1, 1), 3, 7)},
		{name: "mismatch", op: "MatMul", in: []*Tensor{cF32(sh(2, 3), 1, 2, 3, 4, 5, 6), cF32(sh(2, 3), 1, 2, 3, 4, 5, 6)}, wantErr: "do not multiply"},
		{name: "batch mismatch", op: "MatMul", in: []*Tensor{cF32(sh(2, 1, 1), 1, 2), cF32(sh(3, 1, 1), 1, 2, 3)}, wantErr: "broadcast"},
		{name: "scalar", op: "MatMul", in: []*Tensor{cF32(sh(), 1), cF32(sh(), 1)}, wantErr: "rank"},
		{name: "uint8 refused", op: "MatMul", in: []*Tensor{cU8(sh(1, 1), 1), cU8(sh(1, 1), 1)}, wantErr: "not supported"},
	})
}

// TestReluF32Paths compares reluF32On, with each kernel, out of place and
// in place, with Go's max(v, 0) on every length up to 70, with NaN,
// infinities and signed zeros among the values.
func TestReluF32Paths(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	specials := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32}
	for _, simd := range sgemmPaths() {
		for n := range 71 {
			src := make([]float32, n)
			for i := range src {
				if r.IntN(4) == 0 {
					src[i] = specials[r.IntN(len(specials))]
				} else {
					src[i] = r.Float32()*2 - 1
				}
			}
			dst := make([]float32, n)
			reluF32On(simd, dst, src)
			inPlace := append([]float32(nil), src...)
			reluF32On(simd, inPlace, inPlace)
			for i, v := range src {
				want := max(v, 0)
				for _, got := range []float32{dst[i], inPlace[i]} {
					if math.Float32bits(got) != math.Float32bits(want) && !(got != got && want != want) {
						t.Fatalf("%s, length %d: relu(%v) = %v, want %v", pathName(simd), n, v, got, want)
					}
				}
			}
		}
	}
}
