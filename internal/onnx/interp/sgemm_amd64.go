//go:build !purego

package interp

import "golang.org/x/sys/cpu"

// haveAVX2FMA reports whether the CPU runs the AVX2 and FMA kernels of
// sgemm_amd64.s. It is computed once from the CPU's feature flags and
// never changes.
var haveAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// kernel4AVX adds, for the rows r = 0..3 of C (ldc elements apart, starting
// at c) and their first n columns j, ap[4q+r] * b[off[q]+j] for q < nz.
// The caller guarantees that every element addressed is in bounds.
//
//go:noescape
func kernel4AVX(c *float32, ldc, n int, b *float32, off *int, ap *float32, nz int)

// kernel1AVX adds, for the first n columns j of the row starting at c,
// ap[q] * b[off[q]+j] for q < nz. The caller guarantees that every element
// addressed is in bounds.
//
//go:noescape
func kernel1AVX(c *float32, n int, b *float32, off *int, ap *float32, nz int)

// dot4AVX adds alpha times the dot products of a (k elements) with the
// four rows of k elements starting at b, ldb elements apart, to c[0..3].
// The caller guarantees that every element addressed is in bounds.
//
//go:noescape
func dot4AVX(c *float32, alpha float32, a, b *float32, ldb, k int)

// dot2x4AVX adds alpha times the dot products of the two rows of k elements
// starting at a (k apart) with the four rows of k elements starting at b
// (k apart) to c[0..3] and c[ldc..ldc+3]. The caller guarantees that every
// element addressed is in bounds.
//
//go:noescape
func dot2x4AVX(c *float32, ldc int, alpha float32, a, b *float32, k int)
