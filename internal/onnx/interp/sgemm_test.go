package interp

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// sgemmPaths lists the kernels this machine can run: the portable Go ones
// always, the AVX2 ones where the CPU has them.
func sgemmPaths() []bool {
	if haveAVX2FMA {
		return []bool{false, true}
	}
	return []bool{false}
}

// pathName names a kernel choice in test output.
func pathName(simd bool) string {
	if simd {
		return "avx2"
	}
	return "go"
}

// randSparse returns n values in [-1, 1), about a third of them zero.
func randSparse(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		if r.IntN(3) != 0 {
			v[i] = r.Float32()*2 - 1
		}
	}
	return v
}

// closeTo reports whether got is within 1e-4 of want, relative to the
// magnitude of the terms that were summed (scale).
func closeTo(got, want, scale float64) bool {
	return math.Abs(got-want) <= 1e-4*math.Max(1, scale)
}

// TestSgemmShapes compares sgemm, with each kernel, to a float64 triple
// loop on random shapes with ragged edges, padded and transposed A, alpha
// other than 1 and C already holding values.
func TestSgemmShapes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	dims := []int{1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 70}
	for _, simd := range sgemmPaths() {
		for trial := range 400 {
			m, n, k := dims[r.IntN(len(dims))], dims[r.IntN(len(dims))], dims[r.IntN(len(dims))]
			if trial == 0 {
				m, n, k = 70, 600, 300 // more than one cache block of B each way
			}
			alpha := []float32{1, -0.5, 2.25}[trial%3]
			// A: row-major with padded rows, or column-major (transposed).
			var ars, acs, size int
			if trial%2 == 0 {
				ars, acs, size = k+trial%5, 1, m*(k+trial%5)
			} else {
				ars, acs, size = 1, m, m*k
			}
			a, b := randSparse(r, size), randSparse(r, k*n)
			c := randSparse(r, m*n)
			want := make([]float64, m*n)
			scale := make([]float64, m*n)
			for i := range m {
				for j := range n {
					s, abs := float64(c[i*n+j]), math.Abs(float64(c[i*n+j]))
					for kk := range k {
						p := float64(alpha) * float64(a[i*ars+kk*acs]) * float64(b[kk*n+j])
						s += p
						abs += math.Abs(p)
					}
					want[i*n+j], scale[i*n+j] = s, abs
				}
			}
			sgemmOn(simd, m, n, k, alpha, a, ars, acs, b, c)
			for i, w := range want {
				if !closeTo(float64(c[i]), w, scale[i]) {
					t.Fatalf("%s: m=%d n=%d k=%d alpha=%v ars=%d acs=%d: C[%d][%d] = %v, want %v",
						pathName(simd), m, n, k, alpha, ars, acs, i/n, i%n, c[i], w)
				}
			}
		}
	}
}

// TestSgemmNTShapes is TestSgemmShapes for sgemmNT (A·Bᵀ).
func TestSgemmNTShapes(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	dims := []int{1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 70}
	for _, simd := range sgemmPaths() {
		for trial := range 400 {
			m, n, k := dims[r.IntN(len(dims))], dims[r.IntN(len(dims))], dims[r.IntN(len(dims))]
			if trial == 0 {
				m, n, k = 9, 70, 2100 // more than one block of B's rows
			}
			alpha := []float32{1, -0.5, 2.25}[trial%3]
			a, b, c := randSparse(r, m*k), randSparse(r, n*k), randSparse(r, m*n)
			want := make([]float64, m*n)
			scale := make([]float64, m*n)
			for i := range m {
				for j := range n {
					s, abs := float64(c[i*n+j]), math.Abs(float64(c[i*n+j]))
					for kk := range k {
						p := float64(alpha) * float64(a[i*k+kk]) * float64(b[j*k+kk])
						s += p
						abs += math.Abs(p)
					}
					want[i*n+j], scale[i*n+j] = s, abs
				}
			}
			sgemmNTOn(simd, m, n, k, alpha, a, b, c)
			for i, w := range want {
				if !closeTo(float64(c[i]), w, scale[i]) {
					t.Fatalf("%s: m=%d n=%d k=%d alpha=%v: C[%d][%d] = %v, want %v",
						pathName(simd), m, n, k, alpha, i/n, i%n, c[i], w)
				}
			}
		}
	}
}

// TestSgemmBounds checks that the kernels touch nothing outside A, B and C:
// each lies inside a larger slice whose margins must keep their values.
func TestSgemmBounds(t *testing.T) {
	const margin = 64
	r := rand.New(rand.NewPCG(7, 8))
	guarded := func(n int) (all, inner []float32) {
		all = make([]float32, n+2*margin)
		for i := range all {
			all[i] = 1
		}
		return all, all[margin : margin+n : margin+n]
	}
	intact := func(name string, all []float32, n int) {
		for i, v := range all {
			if (i < margin || i >= margin+n) && v != 1 {
				t.Fatalf("%s: element %d outside the matrix was written", name, i-margin)
			}
		}
	}
	for _, simd := range sgemmPaths() {
		for _, s := range [][3]int{{1, 1, 1}, {5, 23, 3}, {4, 7, 9}, {9, 70, 17}, {3, 129, 2}} {
			m, n, k := s[0], s[1], s[2]
			aAll, a := guarded(m * k)
			bAll, b := guarded(k * n)
			cAll, c := guarded(m * n)
			copy(a, randSparse(r, m*k))
			copy(b, randSparse(r, k*n))
			sgemmOn(simd, m, n, k, 1, a, k, 1, b, c)
			intact("sgemm C", cAll, m*n)
			sgemmNTOn(simd, m, n, k, 1, a, b, c) // b read as n x k
			intact("sgemmNT C", cAll, m*n)
			intact("A", aAll, m*k)
			intact("B", bAll, k*n)
		}
	}
}

// BenchmarkSgemm measures the float32 product of the 784-256 layer of the
// zoo MLP at batch 32, A·B and A·Bᵀ, with each kernel this machine runs.
func BenchmarkSgemm(b *testing.B) {
	const m, n, k = 32, 256, 784
	r := rand.New(rand.NewPCG(1, 2))
	a, w := randTensor(r, m, k).F32, randTensor(r, k, n).F32
	c := make([]float32, m*n)
	for _, simd := range sgemmPaths() {
		for _, nt := range []bool{false, true} {
			name := fmt.Sprintf("%s/%dx%dx%d", pathName(simd), m, k, n)
			if nt {
				name += "/transB"
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if nt {
						sgemmNTOn(simd, m, n, k, 1, a, w, c)
					} else {
						sgemmOn(simd, m, n, k, 1, a, k, 1, w, c)
					}
				}
				b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
