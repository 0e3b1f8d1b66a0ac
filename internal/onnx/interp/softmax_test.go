package interp

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestExpF32 compares expF32 with math.Exp over the range softmax uses
// and at the edges.
func TestExpF32(t *testing.T) {
	worst := 0.0
	for x := float32(-87.3); x <= 88.7; x += 0.0137 {
		want := math.Exp(float64(x))
		got := float64(expF32(x))
		if rel := math.Abs(got-want) / want; rel > worst {
			worst = rel
		}
	}
	if worst > 4e-7 {
		t.Errorf("relative error up to %g, want at most 4e-7", worst)
	}
	for _, tt := range []struct{ x, want float32 }{
		{0, 1}, {-100, 0}, {float32(math.Inf(-1)), 0}, {100, float32(math.Inf(1))},
	} {
		if got := expF32(tt.x); got != tt.want {
			t.Errorf("expF32(%v) = %v, want %v", tt.x, got, tt.want)
		}
	}
	if got := expF32(float32(math.NaN())); got == got {
		t.Errorf("expF32(NaN) = %v, want NaN", got)
	}
}

// TestSoftmaxRows compares the last-axis softmax and log-softmax with a
// float64 reference on rows large enough to be split between goroutines
// (run with -race), and keeps the reference's NaN for rows of -Inf.
func TestSoftmaxRows(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	const rows, l = 200, 333
	src := make([]float32, rows*l)
	for i := range src {
		src[i] = float32(r.NormFloat64() * 10)
	}
	for _, log := range []bool{false, true} {
		dst := make([]float32, len(src))
		softmaxRows(dst, src, rows, l, log)
		// The Go path, row by row, where softmaxRows took the AVX2 one.
		gopath := make([]float32, len(src))
		for i := range rows {
			softmaxRow(false, gopath[i*l:(i+1)*l], src[i*l:(i+1)*l], log)
		}
		assertClose(t, gopath, dst, 1e-6)
		for i := range rows {
			row := src[i*l : (i+1)*l]
			mx := math.Inf(-1)
			for _, v := range row {
				mx = math.Max(mx, float64(v))
			}
			sum := 0.0
			for _, v := range row {
				sum += math.Exp(float64(v) - mx)
			}
			for j, v := range row {
				want := math.Exp(float64(v)-mx) / sum
				if log {
					want = float64(v) - mx - math.Log(sum)
				}
				if got := float64(dst[i*l+j]); math.Abs(got-want) > 1e-6+1e-5*math.Abs(want) {
					t.Fatalf("log=%v row %d element %d: %v, want %v", log, i, j, got, want)
				}
			}
		}
	}
	nan := float32(math.NaN())
	row := []float32{1, nan, 2, 3, 4, 5, 6, 7, 8}
	softmaxRows(row, row, 1, len(row), false)
	for i, v := range row {
		if v == v {
			t.Fatalf("softmax of a row with NaN: element %d is %v, want NaN", i, v)
		}
	}
	inf := float32(math.Inf(-1))
	dst := make([]float32, 2)
	softmaxRows(dst, []float32{inf, inf}, 1, 2, false)
	if dst[0] == dst[0] {
		t.Errorf("softmax of -Inf row = %v, want NaN as the reference gives", dst)
	}
}
