//go:build !purego

package interp

// expSumAVX sets dst[i] = e^(src[i] - mx) for i < n, n a multiple of 8,
// and returns their sum; dst may be src. Arguments below -87.33654 give
// e^-87.33654, not 0. The caller guarantees that dst and src hold n
// elements.
//
//go:noescape
func expSumAVX(dst, src *float32, n int, mx float32) float32
