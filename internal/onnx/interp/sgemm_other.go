//go:build !amd64 || purego

package interp

// haveAVX2FMA is false: the AVX2 kernels exist only on amd64.
const haveAVX2FMA = false

// kernel4AVX is never called without the AVX2 kernels.
func kernel4AVX(c *float32, ldc, n int, b *float32, off *int, ap *float32, nz int) {
	panic("interp: no AVX2 kernels on this platform")
}

// kernel1AVX is never called without the AVX2 kernels.
func kernel1AVX(c *float32, n int, b *float32, off *int, ap *float32, nz int) {
	panic("interp: no AVX2 kernels on this platform")
}

// dot4AVX is never called without the AVX2 kernels.
func dot4AVX(c *float32, alpha float32, a, b *float32, ldb, k int) {
	panic("interp: no AVX2 kernels on this platform")
}

// dot2x4AVX is never called without the AVX2 kernels.
func dot2x4AVX(c *float32, ldc int, alpha float32, a, b *float32, k int) {
	panic("interp: no AVX2 kernels on this platform")
}
