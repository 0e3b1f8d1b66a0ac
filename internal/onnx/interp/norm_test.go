package interp

import (
	"math"
	"math/rand/v2"
	"testing"

	"outpost.dev/outpost/internal/onnx"
)

// TestNormKernelsAgree compares the AVX2 and Go paths of the
// normalization kernels on every length up to 70 (the multiples of eight
// and the tails), against float64 sums.
func TestNormKernelsAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for n := 1; n <= 70; n++ {
		x, scale, bias := randFloats(r, n), randFloats(r, n), randFloats(r, n)
		for i := range x {
			x[i] += 3 // a mean away from zero
		}
		var s, sq float64
		for _, v := range x {
			s += float64(v)
		}
		mean := s / float64(n)
		for _, v := range x {
			sq += (float64(v) - mean) * (float64(v) - mean)
		}
		inv := 1 / math.Sqrt(sq/float64(n)+1e-5)
		want := make([]float32, n)
		for i, v := range x {
			want[i] = float32((float64(v)-mean)*inv*float64(scale[i]) + float64(bias[i]))
		}
		for _, simd := range []bool{false, haveAVX2FMA} {
			m, iv := meanInvStdOn(simd, x, 1e-5)
			if math.Abs(float64(m)-mean) > 1e-5 || math.Abs(float64(iv)-inv) > 1e-4*inv {
				t.Fatalf("n=%d simd=%v: mean %v inv %v, want %v %v", n, simd, m, iv, mean, inv)
			}
			got := make([]float32, n)
			normalizeRow(simd, got, x, m, iv, scale, bias)
			assertClose(t, got, want, 1e-4)
		}
	}
}

// TestLayerNormLarge normalizes a tensor large enough to be split between
// goroutines (run with -race) and compares it with a float64 reference.
func TestLayerNormLarge(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	const rows, l = 300, 257
	x, scale, bias := randTensor(r, rows, l), randTensor(r, l), randTensor(r, l)
	want := New(Float32, rows, l)
	for i := range rows {
		row := x.F32[i*l : (i+1)*l]
		var s, sq float64
		for _, v := range row {
			s += float64(v)
		}
		mean := s / l
		for _, v := range row {
			sq += (float64(v) - mean) * (float64(v) - mean)
		}
		inv := 1 / math.Sqrt(sq/l+1e-5)
		for j, v := range row {
			want.F32[i*l+j] = float32((float64(v)-mean)*inv*float64(scale.F32[j]) + float64(bias.F32[j]))
		}
	}
	got, err := runOpAt(t, 17, "LayerNormalization", []DType{Float32}, attrList(onnx.AttrInt("axis", -1)), x, scale, bias)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameTensor(got[0], want, 1e-4); err != nil {
		t.Fatal(err)
	}
}
