//go:build !amd64 || purego

package interp

// sumAVX is never called without the AVX2 kernels.
func sumAVX(x *float32, n int) float32 {
	panic("interp: no AVX2 kernels on this platform")
}

// sumSqDevAVX is never called without the AVX2 kernels.
func sumSqDevAVX(x *float32, n int, mean float32) float32 {
	panic("interp: no AVX2 kernels on this platform")
}

// normAffineAVX is never called without the AVX2 kernels.
func normAffineAVX(dst, src, scale, bias *float32, n int, mean, inv float32) {
	panic("interp: no AVX2 kernels on this platform")
}
