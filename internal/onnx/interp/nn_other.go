//go:build !amd64 || purego

package interp

// maxPoolAVX is never called without the AVX2 kernels.
func maxPoolAVX(y *float32, ldy, rows, n int, x *float32, xstep, ldx, kh, kw, stride int) {
	panic("interp: no AVX2 kernels on this platform")
}

// maxPool2x2AVX is never called without the AVX2 kernels.
func maxPool2x2AVX(y *float32, ldy, rows, n int, x *float32, xstep, ldx int) {
	panic("interp: no AVX2 kernels on this platform")
}

// erfAVX is never called without the AVX2 kernels.
func erfAVX(dst, src *float32, n int, k *[20][8]uint32) {
	panic("interp: no AVX2 kernels on this platform")
}

// sigmoidAVX is never called without the AVX2 kernels.
func sigmoidAVX(dst, src *float32, n int, k *[13][8]uint32) {
	panic("interp: no AVX2 kernels on this platform")
}

// clampAVX is never called without the AVX2 kernels.
func clampAVX(dst, src *float32, n int, lo, hi float32) {
	panic("interp: no AVX2 kernels on this platform")
}

// reluAVX is never called without the AVX2 kernels.
func reluAVX(dst, src *float32, n int) {
	panic("interp: no AVX2 kernels on this platform")
}
