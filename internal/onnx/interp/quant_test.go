package interp

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/onnxpb"
)

func u8(shape []int, v ...uint8) *Tensor { return &Tensor{DType: Uint8, Shape: shape, U8: v} }
func i8(shape []int, v ...int8) *Tensor  { return &Tensor{DType: Int8, Shape: shape, I8: v} }
func i32(shape []int, v ...int32) *Tensor {
	return &Tensor{DType: Int32, Shape: shape, I32: v}
}

func TestQuantizeLinear(t *testing.T) {
	halves := FromFloat32([]float32{0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 300, -300, 0.49}, 9)
	tests := []struct {
		name  string
		attrs []*onnxpb.AttributeProto
		in    []*Tensor
		want  *Tensor
	}{
		{"uint8 default zero point, half to even, saturation", nil,
			[]*Tensor{halves, FromFloat32([]float32{1}, 1)},
			u8([]int{9}, 0, 2, 2, 0, 0, 0, 255, 0, 0)},
		{"int8 half to even, saturation", nil,
			[]*Tensor{halves, FromFloat32([]float32{1}, 1), i8(nil, 0)},
			i8([]int{9}, 0, 2, 2, 0, -2, -2, 127, -128, 0)},
		{"uint8 scale and zero point", nil,
			[]*Tensor{FromFloat32([]float32{0, 2, 3, 1000, -254, -1000}, 6), FromFloat32([]float32{2}), u8(nil, 128)},
			u8([]int{6}, 128, 129, 130, 255, 1, 0)},
		{"int32 input", nil,
			[]*Tensor{i32([]int{3}, 10, -10, 5), FromFloat32([]float32{4}), i8(nil, 1)},
			i8([]int{3}, 3, -1, 2)},
		{"per axis 1", nil,
			[]*Tensor{FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 1, 2, 3), FromFloat32([]float32{1, 2}, 2), u8([]int{2}, 0, 10)},
			u8([]int{1, 2, 3}, 1, 2, 3, 12, 12, 13)},
		{"per axis 0", []*onnxpb.AttributeProto{onnx.AttrInt("axis", 0)},
			[]*Tensor{FromFloat32([]float32{1, 2, 3, 4}, 2, 2), FromFloat32([]float32{1, 0.5}, 2), i8([]int{2}, 0, -1)},
			i8([]int{2, 2}, 1, 2, 5, 7)},
		{"negative axis", []*onnxpb.AttributeProto{onnx.AttrInt("axis", -1)},
			[]*Tensor{FromFloat32([]float32{1, 2, 3, 4}, 2, 2), FromFloat32([]float32{1, 0.5}, 2)},
			u8([]int{2, 2}, 1, 4, 3, 8)},
		{"NaN maps to zero point", nil,
			[]*Tensor{FromFloat32([]float32{float32(math.NaN())}, 1), FromFloat32([]float32{1}), u8(nil, 7)},
			u8([]int{1}, 7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := mustRun(t, testNode("QuantizeLinear", len(tt.in), 1, tt.attrs...), tt.in...)
			if err := compareTensors(out[0], tt.want); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDequantizeLinear(t *testing.T) {
	tests := []struct {
		name  string
		attrs []*onnxpb.AttributeProto
		in    []*Tensor
		want  []float32
		shape []int
	}{
		{"uint8", nil, []*Tensor{u8([]int{4}, 0, 3, 128, 255), FromFloat32([]float32{2}), u8(nil, 128)},
			[]float32{-256, -250, 0, 254}, []int{4}},
		{"int8 default zero point", nil, []*Tensor{i8([]int{3}, -128, 0, 127), FromFloat32([]float32{0.5}, 1)},
			[]float32{-64, 0, 63.5}, []int{3}},
		{"int32", nil, []*Tensor{i32([]int{2}, -7, 1<<20), FromFloat32([]float32{0.25})},
			[]float32{-1.75, 1 << 18}, []int{2}},
		{"per axis", nil, []*Tensor{u8([]int{1, 2, 2}, 1, 2, 3, 4), FromFloat32([]float32{1, 10}, 2), u8([]int{2}, 1, 2)},
			[]float32{0, 1, 10, 20}, []int{1, 2, 2}},
		{"per axis 0", []*onnxpb.AttributeProto{onnx.AttrInt("axis", 0)},
			[]*Tensor{i8([]int{2, 1}, 1, 2), FromFloat32([]float32{3, 5}, 2)}, []float32{3, 10}, []int{2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := mustRun(t, testNode("DequantizeLinear", len(tt.in), 1, tt.attrs...), tt.in...)
			assertShape(t, out[0].Shape, tt.shape)
			assertClose(t, out[0].F32, tt.want, 0)
		})
	}
}

func TestQuantRunErrors(t *testing.T) {
	x := FromFloat32([]float32{1, 2, 3, 4}, 2, 2)
	tests := []struct {
		name string
		op   string
		in   []*Tensor
		want string
	}{
		{"zero point type", "QuantizeLinear", []*Tensor{x, FromFloat32([]float32{1}), i32(nil, 0)}, "y_zero_point has type int32"},
		{"scale length", "QuantizeLinear", []*Tensor{x, FromFloat32([]float32{1, 2, 3}, 3)}, "y_scale has 3 elements, want 2"},
		{"scale rank", "QuantizeLinear", []*Tensor{x, FromFloat32([]float32{1, 2, 3, 4}, 2, 2)}, "scalar or a vector"},
		{"zero point shape", "QuantizeLinear", []*Tensor{x, FromFloat32([]float32{1, 2}, 2), u8(nil, 0)}, "must have the shape of y_scale"},
		{"scale type", "QuantizeLinear", []*Tensor{x, i32(nil, 1)}, "y_scale must be float32"},
		{"input type", "QuantizeLinear", []*Tensor{u8([]int{1}, 1), FromFloat32([]float32{1})}, "float32 or int32"},
		{"dequantize input type", "DequantizeLinear", []*Tensor{x, FromFloat32([]float32{1})}, "uint8, int8 or int32"},
		{"dequantize zero point type", "DequantizeLinear", []*Tensor{u8([]int{1}, 1), FromFloat32([]float32{1}), i8(nil, 0)}, "want uint8"},
		{"matmul inner", "MatMulInteger", []*Tensor{u8([]int{1, 2}, 1, 2), u8([]int{3, 1}, 1, 2, 3)}, "inner dimensions"},
		{"matmul type", "MatMulInteger", []*Tensor{x, u8([]int{2, 1}, 1, 2)}, "want uint8 or int8"},
		{"matmul batch", "MatMulInteger", []*Tensor{u8([]int{2, 1, 1}, 1, 2), u8([]int{3, 1, 1}, 1, 2, 3)}, "do not broadcast"},
		{"matmul zero point", "MatMulInteger", []*Tensor{u8([]int{2, 1}, 1, 2), u8([]int{1, 1}, 1), u8([]int{3}, 1, 2, 3)}, "rows of A"},
		{"matmul zero point type", "MatMulInteger", []*Tensor{u8([]int{2, 1}, 1, 2), u8([]int{1, 1}, 1), nil, i8(nil, 1)}, "b_zero_point has type int8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runNode(t, testNode(tt.op, len(tt.in), 1), tt.in...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestQuantCheckRefuses(t *testing.T) {
	table := opTable()
	for _, n := range []*Node{
		testNode("QuantizeLinear", 1, 1), testNode("QuantizeLinear", 4, 1), testNode("DequantizeLinear", 2, 2),
		testNode("MatMulInteger", 1, 1), testNode("MatMulInteger", 5, 1), testNode("MatMulInteger", 2, 2),
	} {
		if err := table[n.Proto.GetOpType()].Check(n); err == nil {
			t.Errorf("%s with %d inputs and %d outputs passed Check", n.Proto.GetOpType(), len(n.Proto.Input), len(n.Proto.Output))
		}
	}
}

// TestQuantizeRoundTrip checks that dequantize(quantize(x)) is within half
// a step of x inside the representable range, for both output types and
// per-tensor and per-axis scales.
func TestQuantizeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for iter := 0; iter < 200; iter++ {
		C, inner := 1+r.IntN(4), 1+r.IntN(5)
		scales := make([]float32, C)
		var zp *Tensor
		signed := r.IntN(2) == 0
		if signed {
			zp = New(Int8, C)
		} else {
			zp = New(Uint8, C)
		}
		lo, hi := make([]float32, C), make([]float32, C)
		for c := range scales {
			scales[c] = float32(0.01 + r.Float64())
			if signed {
				zp.I8[c] = int8(r.IntN(256) - 128)
				lo[c], hi[c] = float32(-128-int(zp.I8[c]))*scales[c], float32(127-int(zp.I8[c]))*scales[c]
			} else {
				zp.U8[c] = uint8(r.IntN(256))
				lo[c], hi[c] = float32(-int(zp.U8[c]))*scales[c], float32(255-int(zp.U8[c]))*scales[c]
			}
		}
		x := make([]float32, 2*C*inner)
		for i := range x {
			c := (i / inner) % C
			x[i] = lo[c] + float32(r.Float64())*(hi[c]-lo[c])
		}
		scale := FromFloat32(scales, C)
		xt := FromFloat32(x, 2, C, inner)
		q := mustRun(t, testNode("QuantizeLinear", 3, 1), xt, scale, zp)[0]
		y := mustRun(t, testNode("DequantizeLinear", 3, 1), q, scale, zp)[0]
		for i := range x {
			s := scales[(i/inner)%C]
			if d := math.Abs(float64(x[i] - y.F32[i])); d > float64(s)/2*1.0001 {
				t.Fatalf("x %v came back as %v (scale %v)", x[i], y.F32[i], s)
			}
		}
	}
}

func TestMatMulIntegerHandComputed(t *testing.T) {
	// The example of the ONNX operator documentation.
	a := u8([]int{4, 3}, 11, 7, 3, 10, 6, 2, 9, 5, 1, 8, 4, 0)
	b := u8([]int{3, 2}, 1, 4, 2, 5, 3, 6)
	out := mustRun(t, testNode("MatMulInteger", 4, 1), a, b, u8(nil, 12), u8(nil, 0))
	if err := compareTensors(out[0], i32([]int{4, 2}, -38, -83, -44, -98, -50, -113, -56, -128)); err != nil {
		t.Fatal(err)
	}
	// 1-D operands.
	out = mustRun(t, testNode("MatMulInteger", 2, 1), i8([]int{2}, -1, 2), i8([]int{2}, 3, 4))
	if err := compareTensors(out[0], i32([]int{}, 5)); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, testNode("MatMulInteger", 2, 1), i8([]int{2}, -1, 2), i8([]int{2, 2}, 3, 4, 5, 6))
	if err := compareTensors(out[0], i32([]int{2}, 7, 8)); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, testNode("MatMulInteger", 2, 1), i8([]int{2, 2}, 3, 4, 5, 6), i8([]int{2}, -1, 2))
	if err := compareTensors(out[0], i32([]int{2}, 5, 7)); err != nil {
		t.Fatal(err)
	}
	// Mixed types, per-row and per-column zero points.
	out = mustRun(t, testNode("MatMulInteger", 4, 1), u8([]int{2, 2}, 1, 2, 3, 4), i8([]int{2, 2}, 1, 2, 3, 4),
		u8([]int{2}, 1, 3), i8([]int{2}, 1, 2))
	// A-za = [[0,1],[0,1]], B-zb = [[0,0],[2,2]].
	if err := compareTensors(out[0], i32([]int{2, 2}, 2, 2, 2, 2)); err != nil {
		t.Fatal(err)
	}
}

// naiveMatMulInteger multiplies one broadcast batch element by element.
func naiveMatMulInteger(a, b []int32, aShape, bShape []int, za, zb func(batch, i int) int32) ([]int32, []int) {
	batch, _ := BroadcastShapes(aShape[:len(aShape)-2], bShape[:len(bShape)-2])
	M, K, N := aShape[len(aShape)-2], aShape[len(aShape)-1], bShape[len(bShape)-1]
	var out []int32
	for bi := 0; bi < Size(batch); bi++ {
		// Index each operand by unraveling bi over the broadcast shape.
		ai, bj := 0, 0
		rem := bi
		aMul, bMul := 1, 1
		for d := len(batch) - 1; d >= 0; d-- {
			idx := rem % batch[d]
			rem /= batch[d]
			if j := d - (len(batch) - (len(aShape) - 2)); j >= 0 {
				if aShape[j] != 1 {
					ai += idx * aMul
				}
				aMul *= aShape[j]
			}
			if j := d - (len(batch) - (len(bShape) - 2)); j >= 0 {
				if bShape[j] != 1 {
					bj += idx * bMul
				}
				bMul *= bShape[j]
			}
		}
		for i := 0; i < M; i++ {
			for j := 0; j < N; j++ {
				var s int32
				for k := 0; k < K; k++ {
					s += (a[(ai*M+i)*K+k] - za(ai, i)) * (b[(bj*K+k)*N+j] - zb(bj, j))
				}
				out = append(out, s)
			}
		}
	}
	return out, append(batch, M, N)
}

func TestMatMulIntegerMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	batchShapes := [][]int{{}, {2}, {1}, {3, 1}, {1, 2}, {2, 3}}
	for iter := 0; iter < 200; iter++ {
		M, K, N := 1+r.IntN(5), 1+r.IntN(6), 1+r.IntN(5)
		aBatch, bBatch := batchShapes[r.IntN(len(batchShapes))], batchShapes[r.IntN(len(batchShapes))]
		if _, err := BroadcastShapes(aBatch, bBatch); err != nil {
			continue
		}
		aShape := append(append([]int(nil), aBatch...), M, K)
		bShape := append(append([]int(nil), bBatch...), K, N)
		a, b := New(Uint8, aShape...), New(Int8, bShape...)
		av, bv := make([]int32, a.Len()), make([]int32, b.Len())
		for i := range a.U8 {
			a.U8[i] = uint8(r.IntN(256))
			av[i] = int32(a.U8[i])
		}
		for i := range b.I8 {
			b.I8[i] = int8(r.IntN(256) - 128)
			bv[i] = int32(b.I8[i])
		}
		in := []*Tensor{a, b, nil, nil}
		za := func(int, int) int32 { return 0 }
		zb := func(int, int) int32 { return 0 }
		switch r.IntN(4) {
		case 1:
			z := uint8(r.IntN(256))
			in[2] = u8(nil, z)
			za = func(int, int) int32 { return int32(z) }
		case 2:
			zt := New(Uint8, M)
			for i := range zt.U8 {
				zt.U8[i] = uint8(r.IntN(256))
			}
			in[2] = zt
			za = func(_, i int) int32 { return int32(zt.U8[i]) }
		case 3: // [batch..., M, 1]
			zt := New(Uint8, append(append([]int(nil), aBatch...), M, 1)...)
			for i := range zt.U8 {
				zt.U8[i] = uint8(r.IntN(256))
			}
			in[2] = zt
			za = func(bi, i int) int32 { return int32(zt.U8[bi*M+i]) }
		}
		switch r.IntN(4) {
		case 1:
			z := int8(r.IntN(256) - 128)
			in[3] = i8([]int{1}, z)
			zb = func(int, int) int32 { return int32(z) }
		case 2:
			zt := New(Int8, N)
			for i := range zt.I8 {
				zt.I8[i] = int8(r.IntN(256) - 128)
			}
			in[3] = zt
			zb = func(_, j int) int32 { return int32(zt.I8[j]) }
		case 3: // [batch..., 1, N]
			zt := New(Int8, append(append([]int(nil), bBatch...), 1, N)...)
			for i := range zt.I8 {
				zt.I8[i] = int8(r.IntN(256) - 128)
			}
			in[3] = zt
			zb = func(bj, j int) int32 { return int32(zt.I8[bj*N+j]) }
		}
		want, shape := naiveMatMulInteger(av, bv, aShape, bShape, za, zb)
		out := mustRun(t, testNode("MatMulInteger", 4, 1), in...)
		if err := compareTensors(out[0], i32(shape, want...)); err != nil {
			t.Fatalf("A %v B %v zero points %v %v: %v", aShape, bShape, in[2] != nil, in[3] != nil, err)
		}
	}
}

// randQuant returns a uint8 or int8 tensor of the given shape with random
// values, or with the type's extreme values where extreme is set.
func randQuant(r *rand.Rand, dt DType, extreme bool, shape ...int) *Tensor {
	t := New(dt, shape...)
	for i := range t.Len() {
		v := r.IntN(256)
		if extreme {
			v = 255 * r.IntN(2)
		}
		if dt == Uint8 {
			t.U8[i] = uint8(v)
		} else {
			t.I8[i] = int8(v - 128)
		}
	}
	return t
}

// randQZero returns a zero point for a uint8 or int8 operand: one value,
// or one per row or column (n of them).
func randQZero(r *rand.Rand, dt DType, n int, extreme bool) qZero {
	if r.IntN(3) == 0 {
		return qZero{all: int32(quantElem(randQuant(r, dt, extreme, 1), 0))}
	}
	z := randQuant(r, dt, extreme, n)
	v := make([]int32, n)
	for i := range v {
		v[i] = int32(quantElem(z, i))
	}
	return qZero{v: v}
}

// TestQgemmPaths compares qgemm, with each kernel, with an int32 triple
// loop on operands packed by qPackAOf (with each kernel too: uint8 rows
// with one zero point have an AVX2 one) and qPackB: random shapes (panels
// narrower than 16 columns, row blocks of fewer than four, odd k), both
// element types, zero points per tensor, row and column, the extreme
// differences ±255, a product long enough to wrap around int32, and
// products split between goroutines by panels and by rows.
func TestQgemmPaths(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	dims := []int{1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 70}
	types := []DType{Uint8, Int8}
	for _, simd := range sgemmPaths() {
		for trial := range 300 {
			m, n, k := dims[r.IntN(len(dims))], dims[r.IntN(len(dims))], dims[r.IntN(len(dims))]
			extreme := trial%5 == 0
			switch trial {
			case 0:
				m, n, k = 64, 300, 785 // split between goroutines, many panels
			case 1:
				m, n, k, extreme = 5, 17, 40001, true // sums beyond int32
			case 2:
				m, n, k = 70, 10, 6001 // one panel, split by rows
			}
			at, bt := types[r.IntN(2)], types[r.IntN(2)]
			a, b := randQuant(r, at, extreme, m, k), randQuant(r, bt, extreme, k, n)
			za, zb := randQZero(r, at, m, extreme), randQZero(r, bt, n, extreme)
			k2 := (k + 1) / 2
			ap, rs := make([]int16, m*2*k2), make([]int32, m)
			bp, off := make([]int8, qPackedSize(k, n)), make([]int32, qPackedCols(n))
			for i := range bp {
				bp[i] = int8(r.Uint32()) // every element must be set
			}
			qPackAOf(simd, ap, rs, a, 0, m, k, &za, 0)
			qPackBOf(simd, bp, off, b, 0, k, n, &zb, 0)
			// What the fused steps' fallbacks read back, instead of holding
			// the weight beside its packed copy.
			if got := qUnpackA(at, ap, []int{m, k}, &za); !slices.Equal(got.U8, a.U8) || !slices.Equal(got.I8, a.I8) {
				t.Fatalf("%s: %s %dx%d unpacked from A differs", pathName(simd), at, m, k)
			}
			if got := qUnpackB(bt, bp, k, n); !slices.Equal(got.U8, b.U8) || !slices.Equal(got.I8, b.I8) {
				t.Fatalf("%s: %s %dx%d unpacked from B differs", pathName(simd), bt, k, n)
			}
			c := make([]int32, m*n)
			for i := range c {
				c[i] = int32(r.Uint32()) // every element must be set
			}
			qgemm(simd, m, n, k2, ap, 2*k2, rs, bp, off, c)
			for i := range m {
				for j := range n {
					var want int32
					for kk := range k {
						want += (int32(quantElem(a, i*k+kk)) - za.at(0, i)) * (int32(quantElem(b, kk*n+j)) - zb.at(0, j))
					}
					if got := c[i*n+j]; got != want {
						t.Fatalf("%s: %s %dx%d times %s %dx%d: C[%d,%d] = %d, want %d", pathName(simd), at, m, k, bt, k, n, i, j, got, want)
					}
				}
			}
		}
	}
}

// TestQuantizeIntoPaths compares quantizeInto, with each kernel, with
// quantizeValue on values around the rounding ties and the saturation
// bounds, NaN, infinities and huge values, per tensor and per channel.
func TestQuantizeIntoPaths(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	specials := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, float32(math.Copysign(0, -1)),
		1e30, -1e30, 3e9, -3e9, 1 << 24, -(1 << 24), 0.5, 1.5, 2.5, -0.5, -1.5, 127.5, 128.5, 254.5, 255.5, -128.5, -127.5}
	for _, simd := range sgemmPaths() {
		for trial := range 300 {
			outer, d, inner := 1+r.IntN(3), 1+r.IntN(3), r.IntN(40)
			scale := make([]float32, d)
			for c := range scale {
				scale[c] = []float32{1, 0.5, 1.0 / 255, 3}[r.IntN(4)]
			}
			x := make([]float32, outer*d*inner)
			for i := range x {
				switch r.IntN(3) {
				case 0:
					x[i] = specials[r.IntN(len(specials))] * scale[(i/inner)%d]
				default:
					x[i] = (r.Float32()*700 - 350) * scale[(i/inner)%d]
				}
			}
			check := func(name string, got []int, lo, hi float64, zp func(c int) float64) {
				i := 0
				for range outer {
					for c := range d {
						for range inner {
							if want := quantizeValue(x[i], scale[c], zp(c), lo, hi); got[i] != want {
								t.Fatalf("%s %s trial %d: x %v scale %v zero point %v: got %d, want %d", pathName(simd), name, trial, x[i], scale[c], zp(c), got[i], want)
							}
							i++
						}
					}
				}
			}
			zu, zs := make([]uint8, d), make([]int8, d)
			for c := range d {
				zu[c], zs[c] = uint8(r.IntN(256)), int8(r.IntN(256)-128)
			}
			yu, ys := make([]uint8, len(x)), make([]int8, len(x))
			if trial%2 == 0 {
				quantizeInto(simd, yu, x, scale, zu, outer, d, inner, 0, 255)
				check("uint8", widen(yu), 0, 255, func(c int) float64 { return float64(zu[c]) })
			} else {
				quantizeInto(simd, yu, x, scale, nil, outer, d, inner, 0, 255)
				check("uint8 without zero point", widen(yu), 0, 255, func(int) float64 { return 0 })
			}
			quantizeInto(simd, ys, x, scale, zs, outer, d, inner, -128, 127)
			check("int8", widen(ys), -128, 127, func(c int) float64 { return float64(zs[c]) })
		}
	}
}

// widen converts integers to int.
func widen[T uint8 | int8](v []T) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// quantProto is t (uint8 or int8) as an initializer named name.
func quantProto(name string, t *Tensor) *onnxpb.TensorProto {
	p := &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(t.DType))}
	for _, d := range t.Shape {
		p.Dims = append(p.Dims, int64(d))
	}
	if t.DType == Uint8 {
		p.RawData = append([]byte(nil), t.U8...)
	} else {
		for _, v := range t.I8 {
			p.RawData = append(p.RawData, byte(v))
		}
	}
	return p
}

// TestMatMulIntegerConstantB loads MatMulInteger nodes whose B (and its
// zero point) are initializers, which Load packs once, and compares two
// runs of each with the element by element product; a zero point given
// as a graph input keeps B packed per run.
func TestMatMulIntegerConstantB(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	for iter := range 60 {
		M, K, N := 1+r.IntN(40), 1+r.IntN(50), 1+r.IntN(40)
		aBatch := [][]int{{}, {3}, {2, 2}}[r.IntN(3)]
		bBatch := [][]int{{}, {}, {2, 1}}[r.IntN(3)]
		if _, err := BroadcastShapes(aBatch, bBatch); err != nil {
			continue
		}
		aShape := append(append([]int(nil), aBatch...), M, K)
		bShape := append(append([]int(nil), bBatch...), K, N)
		at, bt := []DType{Uint8, Int8}[r.IntN(2)], []DType{Uint8, Int8}[r.IntN(2)]
		a, b := randQuant(r, at, false, aShape...), randQuant(r, bt, false, bShape...)
		aZP, bZP := randQuant(r, at, false, M), randQuant(r, bt, false, N)
		constZP := iter%3 != 0
		mp := opModel("MatMulInteger", 13, []*Tensor{a, b, aZP, bZP}, []DType{Int32})
		// B, and the zero point of B unless constZP is false, become
		// initializers.
		g := mp.Graph
		g.Initializer = append(g.Initializer, quantProto("x1", b))
		inputs := g.Input[:0]
		for _, vi := range g.Input {
			if vi.GetName() == "x1" || constZP && vi.GetName() == "x3" {
				continue
			}
			inputs = append(inputs, vi)
		}
		g.Input = inputs
		feed := map[string]*Tensor{"x0": a, "x2": aZP}
		if constZP {
			g.Initializer = append(g.Initializer, quantProto("x3", bZP))
		} else {
			feed["x3"] = bZP
		}
		m, err := Load(marshal(t, mp))
		if err != nil {
			t.Fatal(err)
		}
		av, bv := make([]int32, a.Len()), make([]int32, b.Len())
		for i := range av {
			av[i] = int32(quantElem(a, i))
		}
		for i := range bv {
			bv[i] = int32(quantElem(b, i))
		}
		want, shape := naiveMatMulInteger(av, bv, aShape, bShape,
			func(_, i int) int32 { return int32(quantElem(aZP, i)) }, func(_, j int) int32 { return int32(quantElem(bZP, j)) })
		for range 2 {
			out, err := m.Run(context.Background(), feed)
			if err != nil {
				t.Fatal(err)
			}
			if err := compareTensors(out["y0"], i32(shape, want...)); err != nil {
				t.Fatalf("A %s %v, B %s %v, constant zero point %v: %v", at, aShape, bt, bShape, constZP, err)
			}
		}
	}
}

// BenchmarkQgemm runs the integer product of MatMulInteger, with each
// kernel, on the first layer of the model zoo's mlp-int8 (uint8 pixels
// times int8 weights, 784 x 256) at batch 1 and 32.
func BenchmarkQgemm(b *testing.B) {
	const n, k = 256, 784
	r := rand.New(rand.NewPCG(1, 2))
	w := randQuant(r, Int8, false, k, n)
	bp, off := make([]int8, qPackedSize(k, n)), make([]int32, qPackedCols(n))
	qPackBOf(haveAVX2FMA, bp, off, w, 0, k, n, &qZero{}, 0)
	k2 := (k + 1) / 2
	for _, simd := range sgemmPaths() {
		for _, m := range []int{1, 32} {
			a := randQuant(r, Uint8, false, m, k)
			ap, rs := make([]int16, m*2*k2), make([]int32, m)
			qPackAOf(simd, ap, rs, a, 0, m, k, &qZero{}, 0)
			c := make([]int32, m*n)
			b.Run(fmt.Sprintf("%s/%dx%dx%d", pathName(simd), m, k, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					qgemm(simd, m, n, k2, ap, 2*k2, rs, bp, off, c)
				}
				b.ReportMetric(float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GMAC/s")
			})
		}
	}
}
