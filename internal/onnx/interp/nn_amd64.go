//go:build !purego

package interp

// maxPoolAVX sets, for rows output rows (ldy elements apart in y, their
// windows xstep elements apart in x) and the first n outputs o of each,
// y[o] to the maximum of the kh x kw window (rows ldx apart) starting at
// x[o*stride], in row-major order, the first value winning ties and a NaN
// only when first, as nnMaxPool does. stride is 1 or 2. Outputs are
// computed eight at a time: the caller guarantees that every window of
// every group of eight, the last group of a row included in full, lies in
// bounds.
//
//go:noescape
func maxPoolAVX(y *float32, ldy, rows, n int, x *float32, xstep, ldx, kh, kw, stride int)

// maxPool2x2AVX is maxPoolAVX for kh = kw = stride = 2.
//
//go:noescape
func maxPool2x2AVX(y *float32, ldy, rows, n int, x *float32, xstep, ldx int)

// reluAVX sets dst[i] = max(src[i], 0) for i < n, n a multiple of 8, as
// Go's max does (NaN stays NaN, -0 gives +0). dst may be src. The caller
// guarantees that both hold n elements.
//
//go:noescape
func reluAVX(dst, src *float32, n int)

// clampAVX sets dst[i] = min(max(src[i], lo), hi) for i < n, n a multiple
// of 8 (NaN stays NaN; lo above hi gives hi). dst may be src. The caller
// guarantees that both hold n elements.
//
//go:noescape
func clampAVX(dst, src *float32, n int, lo, hi float32)

// sigmoidAVX sets dst[i] = 1/(1+e^-src[i]) for i < n, n a multiple of 8,
// as expNegF32 computes e^-x, with the constants k (sigmoidConstants).
// dst may be src.
//
//go:noescape
func sigmoidAVX(dst, src *float32, n int, k *[13][8]uint32)

// erfAVX sets dst[i] = erf(src[i]) for i < n, n a multiple of 8, as erfF32
// computes it, with the constants k (erfConstants). dst may be src.
//
//go:noescape
func erfAVX(dst, src *float32, n int, k *[20][8]uint32)
