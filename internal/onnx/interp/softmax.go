package interp

import (
	"math"
	"runtime"
)

// softmaxRows computes softmax (or log-softmax) of each of rows rows of l
// contiguous elements of src into dst (which may be src): the last-axis
// softmax of attention and classifiers, with the AVX2 kernel where the CPU
// has it. Large inputs are split by rows between goroutines.
func softmaxRows(dst, src []float32, rows, l int, log bool) {
	workers := 1
	if rows > 1 && rows*l >= normParallelElements {
		workers = min(runtime.GOMAXPROCS(0), 8, rows)
	}
	parallelSplit(rows, workers, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			softmaxRow(haveAVX2FMA, dst[r*l:(r+1)*l], src[r*l:(r+1)*l], log)
		}
	})
}

// softmaxRow is softmaxRows for one row, with the AVX2 kernel for the
// multiples of eight if simd is set (only where haveAVX2FMA; softmax, not
// log-softmax, which keeps src in place). The exponentials are float32.
func softmaxRow(simd bool, dst, src []float32, log bool) {
	src = src[:len(dst)]
	mx := float32(math.Inf(-1))
	for _, v := range src {
		mx = max(mx, v)
	}
	if math.IsInf(float64(mx), -1) {
		// Every value is -Inf: 0/0, NaN, as the reference gives.
		nan := float32(math.NaN())
		for i := range dst {
			dst[i] = nan
		}
		return
	}
	if log {
		sum := 0.0
		for _, v := range src {
			sum += float64(expF32(v - mx))
		}
		ls := float32(math.Log(sum))
		for i, v := range src {
			dst[i] = v - mx - ls
		}
		return
	}
	v := 0
	var sum float32
	if simd {
		if v = len(dst) &^ 7; v > 0 {
			sum = expSumAVX(&dst[0], &src[0], v, mx)
		}
	}
	for i := v; i < len(dst); i++ {
		e := expF32(src[i] - mx)
		dst[i] = e
		sum += e
	}
	inv := 1 / sum
	for i := range dst {
		dst[i] *= inv
	}
}

// expF32 is e^x in float32 to within a few units in the last place
// (Cephes' expf): x = n·ln2 + r with |r| ≤ ln2/2, e^r by a degree-7
// polynomial, times 2^n. It gives 0 below -87.3 (where the result would
// be subnormal), math.Exp's result above 88, and NaN for NaN.
func expF32(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > 88:
		// 2^n would overflow for n = 128; softmax never gets here.
		return float32(math.Exp(float64(x)))
	case x < -87.33654:
		return 0
	}
	const (
		log2e = 1.44269504088896341
		c1    = 0.693359375
		c2    = -2.12194440e-4
	)
	t := x*log2e + 0.5
	k := int32(t) // toward zero; floor below
	if float32(k) > t {
		k--
	}
	n := float32(k)
	r := x - n*c1 - n*c2
	y := ((((((1.9875691500e-4*r+1.3981999507e-3)*r+8.3334519073e-3)*r+4.1665795894e-2)*r+1.6666665459e-1)*r+5.0000001201e-1)*r*r + r) + 1
	return y * math.Float32frombits(uint32(k+127)<<23)
}
