//go:build !amd64 || purego

package interp

import "unsafe"

// qgemm4AVX is never called without the AVX2 kernels.
func qgemm4AVX(c *int32, ldc int, a *int16, lda int, rs *int32, b *int8, off *int32, k2 int) {
	panic("interp: no AVX2 kernels on this platform")
}

// qgemm1AVX is never called without the AVX2 kernels.
func qgemm1AVX(c *int32, a *int16, rs *int32, b *int8, off *int32, k2 int) {
	panic("interp: no AVX2 kernels on this platform")
}

// quantizeAVX is never called without the AVX2 kernels.
func quantizeAVX(dst unsafe.Pointer, src *float32, n int, s, z, lo, hi float32) {
	panic("interp: no AVX2 kernels on this platform")
}

// qPackU8AVX is never called without the AVX2 kernels.
func qPackU8AVX(dst *int16, src *uint8, n int, z int) int32 {
	panic("interp: no AVX2 kernels on this platform")
}

// qPackPairsAVX is never called without the AVX2 kernels.
func qPackPairsAVX(dst *int8, stride int, r0, r1 unsafe.Pointer, panels, flip int) {
	panic("interp: no AVX2 kernels on this platform")
}

// qScaleAVX is never called without the AVX2 kernels.
func qScaleAVX(dst *float32, src *int32, n int, s, b float32) {
	panic("interp: no AVX2 kernels on this platform")
}
