//go:build !amd64 || purego

package interp

// expSumAVX is never called without the AVX2 kernels.
func expSumAVX(dst, src *float32, n int, mx float32) float32 {
	panic("interp: no AVX2 kernels on this platform")
}
