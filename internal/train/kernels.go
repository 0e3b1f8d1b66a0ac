package train

import (
	"runtime"
	"sync"
)

// The kernels below work on row-major float32 matrices, with weights stored
// W[k][o] (In rows of Out). They skip zero inputs, which are common: about half
// the pixels of Fashion-MNIST and most ReLU outputs. Each output element is
// summed by exactly one goroutine in a fixed order, so results do not depend on
// the number of workers or on scheduling: training is bit-for-bit deterministic.

// parallel runs fn over [0, n) split into at most workers contiguous ranges.
func parallel(n, workers int, fn func(lo, hi int)) {
	workers = min(workers, n)
	if workers <= 1 {
		fn(0, n)
		return
	}
	step := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += step {
		hi := min(lo+step, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

func defaultWorkers() int { return min(runtime.GOMAXPROCS(0), 8) }

// nonzero appends the indices and values of v's nonzero entries.
func nonzero(idx []int32, val []float32, v []float32) ([]int32, []float32) {
	for k, a := range v {
		if a != 0 {
			idx = append(idx, int32(k))
			val = append(val, a)
		}
	}
	return idx, val
}

// axpy4 adds sum over j of val[j] * rows[idx[j]] to y, four rows at a time;
// rows has len(y) columns.
func axpy4(y []float32, rows []float32, idx []int32, val []float32) {
	n := len(y)
	j := 0
	for ; j+4 <= len(idx); j += 4 {
		k0, k1, k2, k3 := int(idx[j]), int(idx[j+1]), int(idx[j+2]), int(idx[j+3])
		a0, a1, a2, a3 := val[j], val[j+1], val[j+2], val[j+3]
		w0 := rows[k0*n : k0*n+n][:len(y)]
		w1 := rows[k1*n : k1*n+n][:len(y)]
		w2 := rows[k2*n : k2*n+n][:len(y)]
		w3 := rows[k3*n : k3*n+n][:len(y)]
		for o := range y {
			y[o] += a0*w0[o] + a1*w1[o] + a2*w2[o] + a3*w3[o]
		}
	}
	for ; j < len(idx); j++ {
		k, a := int(idx[j]), val[j]
		w0 := rows[k*n : k*n+n][:len(y)]
		for o := range y {
			y[o] += a * w0[o]
		}
	}
}

// forward computes Y[b][o] = bias[o] + sum_k X[b][k] * W[k][o],
// X: bs x in, W: in x out, Y: bs x out.
func forward(y, x, w, bias []float32, bs, in, out, workers int) {
	parallel(bs, workers, func(blo, bhi int) {
		idx := make([]int32, 0, in)
		val := make([]float32, 0, in)
		for b := blo; b < bhi; b++ {
			yr := y[b*out : b*out+out]
			copy(yr, bias)
			idx, val = nonzero(idx[:0], val[:0], x[b*in:b*in+in])
			axpy4(yr, w, idx, val)
		}
	})
}

// gradW sets dW[k][o] = sum_b X[b][k] * dY[b][o] and dB[o] = sum_b dY[b][o],
// X: bs x in, dY: bs x out.
func gradW(dw, db, dy, x []float32, bs, in, out, workers int) {
	clear(db)
	for b := 0; b < bs; b++ {
		d := dy[b*out : b*out+out][:len(db)]
		for o := range db {
			db[o] += d[o]
		}
	}
	parallel(in, workers, func(klo, khi int) {
		idx := make([]int32, 0, bs)
		val := make([]float32, 0, bs)
		for k := klo; k < khi; k++ {
			g := dw[k*out : k*out+out]
			clear(g)
			idx, val = idx[:0], val[:0]
			for b := 0; b < bs; b++ {
				if a := x[b*in+k]; a != 0 {
					idx = append(idx, int32(b))
					val = append(val, a)
				}
			}
			axpy4(g, dy, idx, val)
		}
	})
}

// gradX sets dX[b][k] = sum_o dY[b][o] * W[k][o] where mask[b][k] > 0 (the
// layer's input was a positive ReLU output) and 0 elsewhere.
func gradX(dx, dy, w, mask []float32, bs, in, out, workers int) {
	parallel(bs, workers, func(blo, bhi int) {
		for b := blo; b < bhi; b++ {
			d := dy[b*out : b*out+out]
			g := dx[b*in : b*in+in]
			m := mask[b*in : b*in+in][:len(g)]
			for k := range g {
				if m[k] > 0 {
					g[k] = dot(d, w[k*out:k*out+out])
				} else {
					g[k] = 0
				}
			}
		}
	})
}

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	k := 0
	for ; k+4 <= len(a); k += 4 {
		s0 += a[k] * b[k]
		s1 += a[k+1] * b[k+1]
		s2 += a[k+2] * b[k+2]
		s3 += a[k+3] * b[k+3]
	}
	for ; k < len(a); k++ {
		s0 += a[k] * b[k]
	}
	return (s0 + s1) + (s2 + s3)
}
