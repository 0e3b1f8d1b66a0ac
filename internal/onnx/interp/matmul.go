package interp

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Cache blocking of the float32 matrix product: a kcBlock x ncBlock panel
// of B (256 KiB) stays in L2 while every row of A passes over it.
const (
	kcBlock = 128
	ncBlock = 512
	// parallelFlops is the multiply-add count above which a product is
	// split over rows between goroutines.
	parallelFlops = 1 << 22
)

// parallelRows calls fn over [0, m) split in row ranges, concurrently when
// the product is large enough to repay the goroutines.
func parallelRows(m int, flops int, fn func(i0, i1 int)) {
	parallelSplit(m, rowWorkers(m, flops), fn)
}

// parallelSplit calls fn over [0, m) split in ranges for workers
// goroutines, or once on the calling goroutine when workers < 2.
func parallelSplit(m, workers int, fn func(i0, i1 int)) {
	if workers < 2 {
		fn(0, m)
		return
	}
	var wg sync.WaitGroup
	chunk := (m + workers - 1) / workers
	for i0 := 0; i0 < m; i0 += chunk {
		i1 := min(i0+chunk, m)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i0, i1)
		}()
	}
	wg.Wait()
}

// rowWorkers is how many goroutines a product of m rows and flops
// multiply-adds is split over.
func rowWorkers(m, flops int) int {
	if flops < parallelFlops {
		return 1
	}
	return max(1, min(runtime.GOMAXPROCS(0), 8, m/4))
}

// sgemm adds alpha * A·B to C (m x n, row-major, contiguous) where A(i,k)
// is a[i*ars+k*acs] and B (k x n) is row-major and contiguous, with the
// AVX2 kernels where the CPU has them.
func sgemm(m, n, k int, alpha float32, a []float32, ars, acs int, b, c []float32) {
	sgemmOn(haveAVX2FMA, m, n, k, alpha, a, ars, acs, b, c)
}

// sgemmOn is sgemm with the AVX2 kernels if simd is set (only where
// haveAVX2FMA) and the portable Go ones otherwise. Loops run k-j-i over
// cache blocks of B; within a block, the entries of A that multiply it are
// gathered on the stack, scaled by alpha and without the zeros (most, after
// a Relu, are zero), then applied to C: by the AVX2 kernels four rows of C
// at a time (kernel4AVX) and then one (kernel1AVX); by the Go ones one row
// of C at a time, four rows of B at once.
func sgemmOn(simd bool, m, n, k int, alpha float32, a []float32, ars, acs int, b, c []float32) {
	if m == 0 || n == 0 || k == 0 {
		return
	}
	// The assembly kernels address B and C within these bounds.
	b, c = b[:k*n], c[:m*n]
	if rowWorkers(m, m*n*k) < 2 {
		sgemmRows(simd, 0, m, n, k, alpha, a, ars, acs, b, c)
		return
	}
	parallelRows(m, m*n*k, func(i0, i1 int) { sgemmRows(simd, i0, i1, n, k, alpha, a, ars, acs, b, c) })
}

// sgemmRows is sgemmOn for the rows [i0, i1) of C.
func sgemmRows(simd bool, i0, i1, n, k int, alpha float32, a []float32, ars, acs int, b, c []float32) {
	// off[q] is the offset in b of the q-th row of B the block uses; val
	// holds the entries of A it is scaled by, four rows interleaved.
	var off [kcBlock]int
	var val [4 * kcBlock]float32
	for k0 := 0; k0 < k; k0 += kcBlock {
		k1 := min(k0+kcBlock, k)
		for j0 := 0; j0 < n; j0 += ncBlock {
			j1 := min(j0+ncBlock, n)
			i := i0
			if simd {
				for ; i+4 <= i1; i += 4 {
					if nz := gather4(&off, &val, alpha, a, i*ars, ars, acs, k0, k1, n); nz > 0 {
						kernel4AVX(&c[i*n+j0], n, j1-j0, &b[j0], &off[0], &val[0], nz)
					}
				}
			}
			for ; i < i1; i++ {
				nz := 0
				for kk := k0; kk < k1; kk++ {
					if av := a[i*ars+kk*acs]; av != 0 {
						off[nz], val[nz] = kk*n, alpha*av
						nz++
					}
				}
				if nz == 0 {
					continue
				}
				if simd {
					kernel1AVX(&c[i*n+j0], j1-j0, &b[j0], &off[0], &val[0], nz)
					continue
				}
				crow := c[i*n+j0 : i*n+j1]
				q := 0
				for ; q+4 <= nz; q += 4 {
					axpy4(crow, val[q], val[q+1], val[q+2], val[q+3],
						b[off[q]+j0:off[q]+j1], b[off[q+1]+j0:off[q+1]+j1],
						b[off[q+2]+j0:off[q+2]+j1], b[off[q+3]+j0:off[q+3]+j1])
				}
				for ; q < nz; q++ {
					axpy1(crow, val[q], b[off[q]+j0:off[q]+j1])
				}
			}
		}
	}
}

// gather4 lists, for the rows of A starting at offset base (ars apart)
// and the columns [k0, k1), the columns where any of the four rows is
// nonzero: off gets the column's offset in a row-major B of n columns, val
// the four entries scaled by alpha. It returns how many it listed. Every
// column is written at the next free place and kept only if nonzero,
// without a branch on the data.
func gather4(off *[kcBlock]int, val *[4 * kcBlock]float32, alpha float32, a []float32, base, ars, acs, k0, k1, n int) int {
	nz := 0
	for kk := k0; kk < k1; kk++ {
		p := base + kk*acs
		a0, a1, a2, a3 := a[p], a[p+ars], a[p+2*ars], a[p+3*ars]
		off[nz] = kk * n
		v := val[4*nz : 4*nz+4]
		v[0], v[1], v[2], v[3] = alpha*a0, alpha*a1, alpha*a2, alpha*a3
		// Nonzero unless all four are +0 or -0 (the sign bit shifted out).
		bits := math.Float32bits(a0) | math.Float32bits(a1) | math.Float32bits(a2) | math.Float32bits(a3)
		nz += int((bits<<1 | -(bits << 1)) >> 31)
	}
	return nz
}

// axpy4 adds a0*b0 + a1*b1 + a2*b2 + a3*b3 to c.
func axpy4(c []float32, a0, a1, a2, a3 float32, b0, b1, b2, b3 []float32) {
	b0, b1, b2, b3 = b0[:len(c)], b1[:len(c)], b2[:len(c)], b3[:len(c)]
	for j := range c {
		c[j] += a0*b0[j] + a1*b1[j] + a2*b2[j] + a3*b3[j]
	}
}

// axpy1 adds a*b to c.
func axpy1(c []float32, a float32, b []float32) {
	b = b[:len(c)]
	for j := range c {
		c[j] += a * b[j]
	}
}

// sgemmNT adds alpha * A·Bᵀ to C (m x n) where A (m x k) and B (n x k) are
// row-major and contiguous, with the AVX2 kernels where the CPU has them.
func sgemmNT(m, n, k int, alpha float32, a, b, c []float32) {
	sgemmNTOn(haveAVX2FMA, m, n, k, alpha, a, b, c)
}

// sgemmNTOn is sgemmNT with the AVX2 kernel if simd is set (only where
// haveAVX2FMA) and the portable Go one otherwise: dot products of rows,
// four columns of C at a time, with B blocked by rows to stay in cache.
func sgemmNTOn(simd bool, m, n, k int, alpha float32, a, b, c []float32) {
	if m == 0 || n == 0 || k == 0 {
		return
	}
	// The assembly kernel addresses A, B and C within these bounds.
	a, b, c = a[:m*k], b[:n*k], c[:m*n]
	if rowWorkers(m, m*n*k) < 2 {
		sgemmNTRows(simd, 0, m, n, k, alpha, a, b, c)
		return
	}
	parallelRows(m, m*n*k, func(i0, i1 int) { sgemmNTRows(simd, i0, i1, n, k, alpha, a, b, c) })
}

// sgemmNTRows is sgemmNTOn for the rows [i0, i1) of C: with the AVX2
// kernels, two rows of A against four rows of B at a time, then the last
// row of A against four rows of B; without, one row of A against four rows
// of B.
func sgemmNTRows(simd bool, i0, i1, n, k int, alpha float32, a, b, c []float32) {
	jb := max(4, (256<<10)/(4*k)) &^ 3
	for j0 := 0; j0 < n; j0 += jb {
		j1 := min(j0+jb, n)
		i := i0
		if simd {
			for ; i+2 <= i1; i += 2 {
				j := j0
				for ; j+4 <= j1; j += 4 {
					dot2x4AVX(&c[i*n+j], n, alpha, &a[i*k], &b[j*k], k)
				}
				for ; j < j1; j++ {
					c[i*n+j] += alpha * dot(a[i*k:i*k+k], b[j*k:j*k+k])
					c[(i+1)*n+j] += alpha * dot(a[(i+1)*k:(i+1)*k+k], b[j*k:j*k+k])
				}
			}
		}
		for ; i < i1; i++ {
			ar := a[i*k : i*k+k]
			crow := c[i*n : i*n+n]
			j := j0
			for ; j+4 <= j1; j += 4 {
				if simd {
					dot4AVX(&crow[j], alpha, &ar[0], &b[j*k], k, k)
					continue
				}
				d0, d1, d2, d3 := dot4(ar, b[j*k:j*k+k], b[(j+1)*k:(j+1)*k+k], b[(j+2)*k:(j+2)*k+k], b[(j+3)*k:(j+3)*k+k])
				crow[j] += alpha * d0
				crow[j+1] += alpha * d1
				crow[j+2] += alpha * d2
				crow[j+3] += alpha * d3
			}
			for ; j < j1; j++ {
				crow[j] += alpha * dot(ar, b[j*k:j*k+k])
			}
		}
	}
}

// dot4 returns the dot products of a with b0, b1, b2 and b3.
func dot4(a, b0, b1, b2, b3 []float32) (s0, s1, s2, s3 float32) {
	b0, b1, b2, b3 = b0[:len(a)], b1[:len(a)], b2[:len(a)], b3[:len(a)]
	for i, v := range a {
		s0 += v * b0[i]
		s1 += v * b1[i]
		s2 += v * b2[i]
		s3 += v * b3[i]
	}
	return
}

// dot returns the dot product of a and b.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

// matmulInt adds A·B to C for integer matrices (m x k, k x n, m x n).
func matmulInt[T int32 | int64](m, n, k int, a, b, c []T) {
	for i := range m {
		crow := c[i*n : i*n+n]
		for kk := range k {
			av := a[i*k+kk]
			if av == 0 {
				continue
			}
			brow := b[kk*n : kk*n+n]
			for j := range crow {
				crow[j] += av * brow[j]
			}
		}
	}
}

func checkGemm(n *Node) error {
	if c := len(n.Proto.GetInput()); c != 2 && c != 3 {
		return fmt.Errorf("%d inputs, want 2 or 3", c)
	}
	for _, a := range []string{"transA", "transB"} {
		if v := n.Int(a, 0); v != 0 && v != 1 {
			return fmt.Errorf("%s is %d, want 0 or 1", a, v)
		}
	}
	return nil
}

// gemm computes alpha * A'·B' + beta * C in float32.
func gemm(n *Node, in []*Tensor) ([]*Tensor, error) {
	a, b := in[0], in[1]
	var c *Tensor
	if len(in) > 2 {
		c = in[2]
	}
	if a.DType != Float32 || b.DType != Float32 || (c != nil && c.DType != Float32) {
		return nil, fmt.Errorf("element type %s is not supported (float32 only)", a.DType)
	}
	if len(a.Shape) != 2 || len(b.Shape) != 2 {
		return nil, fmt.Errorf("A %s and B %s must be matrices", ShapeString(a.Shape), ShapeString(b.Shape))
	}
	transA, transB := n.Int("transA", 0) == 1, n.Int("transB", 0) == 1
	alpha, beta := n.Float("alpha", 1), n.Float("beta", 1)
	m, k := a.Shape[0], a.Shape[1]
	if transA {
		m, k = k, m
	}
	kb, nn := b.Shape[0], b.Shape[1]
	if transB {
		kb, nn = nn, kb
	}
	if k != kb {
		return nil, fmt.Errorf("A %s and B %s do not multiply (transA=%v, transB=%v)", ShapeString(a.Shape), ShapeString(b.Shape), transA, transB)
	}
	out := New(Float32, m, nn)
	if c != nil && beta != 0 {
		if !BroadcastsTo(c.Shape, out.Shape) {
			return nil, fmt.Errorf("C %s does not broadcast to %s", ShapeString(c.Shape), ShapeString(out.Shape))
		}
		fillBroadcast(out.F32, out.Shape, c.F32, c.Shape, beta)
	}
	if alpha == 0 {
		return []*Tensor{out}, nil
	}
	switch {
	case transB && !transA:
		sgemmNT(m, nn, k, alpha, a.F32, b.F32, out.F32)
	case transB:
		bt := make([]float32, k*nn) // rare: transpose B once
		transpose2D(bt, b.F32, nn, k)
		sgemm(m, nn, k, alpha, a.F32, 1, m, bt, out.F32)
	case transA:
		sgemm(m, nn, k, alpha, a.F32, 1, m, b.F32, out.F32)
	default:
		sgemm(m, nn, k, alpha, a.F32, k, 1, b.F32, out.F32)
	}
	return []*Tensor{out}, nil
}

// transpose2D writes the transpose of src (r x c) into dst (c x r).
func transpose2D[T any](dst, src []T, r, c int) {
	const blk = 32
	for i0 := 0; i0 < r; i0 += blk {
		for j0 := 0; j0 < c; j0 += blk {
			for i := i0; i < min(i0+blk, r); i++ {
				for j := j0; j < min(j0+blk, c); j++ {
					dst[j*r+i] = src[i*c+j]
				}
			}
		}
	}
}

// fillBroadcast writes scale * src, broadcast unidirectionally from shape
// from, into dst of shape to.
func fillBroadcast(dst []float32, to []int, src []float32, from []int, scale float32) {
	if n := to[len(to)-1]; len(to) == 2 && n > 0 && ((len(from) == 1 && from[0] == n) || (len(from) == 2 && from[0] == 1 && from[1] == n)) {
		// A bias row, the common case: copy it to every row.
		for o := 0; o < len(dst); o += n {
			row := dst[o : o+n]
			for j, v := range src {
				row[j] = scale * v
			}
		}
		return
	}
	bc := newBcast(from, from, to)
	runBcast(&bc, dst, src, src, func(d, a, _ []float32, sa, _ int) {
		if sa == 0 {
			v := scale * a[0]
			for i := range d {
				d[i] = v
			}
			return
		}
		a = a[:len(d)]
		for i := range d {
			d[i] = scale * a[i]
		}
	})
}

var errMatMulRank = errors.New("MatMul operands must have rank 1 or more")

// matmul is numpy's matmul: batched over leading dimensions with
// broadcasting, 1-D operands promoted and their dimension removed.
func matmul(n *Node, in []*Tensor) ([]*Tensor, error) {
	a, b := in[0], in[1]
	if a.DType != b.DType {
		return nil, fmt.Errorf("operands of types %s and %s", a.DType, b.DType)
	}
	if a.DType != Float32 && a.DType != Int32 && a.DType != Int64 {
		return nil, fmt.Errorf("element type %s is not supported", a.DType)
	}
	if len(a.Shape) == 0 || len(b.Shape) == 0 {
		return nil, errMatMulRank
	}
	as, bs := a.Shape, b.Shape
	if len(as) == 1 {
		as = []int{1, as[0]}
	}
	if len(bs) == 1 {
		bs = []int{bs[0], 1}
	}
	m, k := as[len(as)-2], as[len(as)-1]
	kb, nn := bs[len(bs)-2], bs[len(bs)-1]
	if k != kb {
		return nil, fmt.Errorf("shapes %s and %s do not multiply", ShapeString(a.Shape), ShapeString(b.Shape))
	}
	batch, err := BroadcastShapes(as[:len(as)-2], bs[:len(bs)-2])
	if err != nil {
		return nil, err
	}
	shape := append(append([]int{}, batch...), m, nn)
	outShape := append([]int{}, batch...)
	if len(a.Shape) > 1 {
		outShape = append(outShape, m)
	}
	if len(b.Shape) > 1 {
		outShape = append(outShape, nn)
	}
	out := New(a.DType, outShape...)
	if Size(shape) == 0 {
		return []*Tensor{out}, nil
	}
	// A stack of matrices times one matrix is one tall product.
	if len(bs) == 2 {
		rows := Size(as[:len(as)-1])
		if rows*k == a.Len() && Size(batch)*m == rows {
			mulInto(out, a, b, 0, 0, 0, rows, nn, k)
			return []*Tensor{out}, nil
		}
	}
	aOff, bOff := batchOffsets(as[:len(as)-2], bs[:len(bs)-2], batch)
	// Products too small to split by rows (attention's, per head) are
	// split by batch between goroutines.
	workers := 1
	if per := m * nn * k; len(aOff) > 1 && rowWorkers(m, per) < 2 {
		workers = min(rowWorkers(len(aOff)*4, per*len(aOff)), len(aOff))
	}
	parallelSplit(len(aOff), workers, func(i0, i1 int) {
		for i := i0; i < i1; i++ {
			mulInto(out, a, b, aOff[i]*m*k, bOff[i]*k*nn, i*m*nn, m, nn, k)
		}
	})
	return []*Tensor{out}, nil
}

// mulInto adds the product of the matrices at offsets ao of a and bo of b
// to the one at offset co of out.
func mulInto(out, a, b *Tensor, ao, bo, co, m, n, k int) {
	switch a.DType {
	case Float32:
		sgemm(m, n, k, 1, a.F32[ao:ao+m*k], k, 1, b.F32[bo:bo+k*n], out.F32[co:co+m*n])
	case Int32:
		matmulInt(m, n, k, a.I32[ao:ao+m*k], b.I32[bo:bo+k*n], out.I32[co:co+m*n])
	case Int64:
		matmulInt(m, n, k, a.I64[ao:ao+m*k], b.I64[bo:bo+k*n], out.I64[co:co+m*n])
	}
}

// batchOffsets lists, for each index of the broadcast batch shape, the
// matrix index in a's and in b's batch.
func batchOffsets(a, b, batch []int) (ao, bo []int) {
	total := Size(batch)
	ao, bo = make([]int, total), make([]int, total)
	r := len(batch)
	idx := make([]int, r)
	for t := range total {
		oa, ob := 0, 0
		sa, sb := 1, 1
		for d := r - 1; d >= 0; d-- {
			if j := d - (r - len(a)); j >= 0 {
				if a[j] != 1 {
					oa += idx[d] * sa
				}
				sa *= a[j]
			}
			if j := d - (r - len(b)); j >= 0 {
				if b[j] != 1 {
					ob += idx[d] * sb
				}
				sb *= b[j]
			}
		}
		ao[t], bo[t] = oa, ob
		for d := r - 1; d >= 0; d-- {
			if idx[d]++; idx[d] < batch[d] {
				break
			}
			idx[d] = 0
		}
	}
	return ao, bo
}
