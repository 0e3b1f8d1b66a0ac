//go:build !purego

package interp

import "unsafe"

// qgemm4AVX sets the four rows of 16 int32 starting at c (ldc elements
// apart) to the products of the four rows of 2*k2 int16 starting at a
// (lda elements apart) with the panel of 16 columns at b, packed as qPackB
// packs them (k2 steps of 32 int8), plus rs[r]*off[j] (the row sums of A
// times the panel's column offsets). The caller guarantees that every
// element addressed is in bounds.
//
//go:noescape
func qgemm4AVX(c *int32, ldc int, a *int16, lda int, rs *int32, b *int8, off *int32, k2 int)

// qgemm1AVX is qgemm4AVX for one row.
//
//go:noescape
func qgemm1AVX(c *int32, a *int16, rs *int32, b *int8, off *int32, k2 int)

// quantizeAVX sets the n bytes at dst (uint8 or int8), n a multiple of 8,
// to quantizeValue(src[i], s, z, lo, hi), z being within [lo, hi]. The
// caller guarantees that dst and src hold n elements.
//
//go:noescape
func quantizeAVX(dst unsafe.Pointer, src *float32, n int, s, z, lo, hi float32)

// qPackU8AVX sets dst[i] to src[i] - z for the n bytes at src, n a
// multiple of 16, and returns the sum of the differences. The caller
// guarantees that dst and src hold n elements.
//
//go:noescape
func qPackU8AVX(dst *int16, src *uint8, n int, z int) int32

// qPackPairsAVX writes, for each of the panels groups of 16 bytes of the
// rows r0 and r1 (uint8 or int8), their 32 bytes interleaved (r0's first)
// at dst, stride bytes apart from one group to the next, each XORed with
// the low byte of flip; a nil r1 pairs r0 with zeros. The caller
// guarantees that every element addressed is in bounds.
//
//go:noescape
func qPackPairsAVX(dst *int8, stride int, r0, r1 unsafe.Pointer, panels, flip int)

// qScaleAVX sets dst[i] to float32(src[i])*s + b for i < n, n a multiple
// of 8, rounding the product and the sum as Go does. The caller
// guarantees that dst and src hold n elements.
//
//go:noescape
func qScaleAVX(dst *float32, src *int32, n int, s, b float32)
