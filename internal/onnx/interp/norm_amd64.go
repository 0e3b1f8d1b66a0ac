//go:build !purego

package interp

// sumAVX returns the sum of x[i] for i < n, n a multiple of 8. The caller
// guarantees that x holds n elements.
//
//go:noescape
func sumAVX(x *float32, n int) float32

// sumSqDevAVX returns the sum of (x[i] - mean)² for i < n, n a multiple of
// 8. The caller guarantees that x holds n elements.
//
//go:noescape
func sumSqDevAVX(x *float32, n int, mean float32) float32

// normAffineAVX sets dst[i] = (src[i] - mean) * inv * scale[i] + bias[i]
// for i < n, n a multiple of 8; dst may be src. The caller guarantees
// that all four hold n elements.
//
//go:noescape
func normAffineAVX(dst, src, scale, bias *float32, n int, mean, inv float32)
