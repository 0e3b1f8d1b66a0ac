//go:build !purego

#include "textflag.h"

// func maxPoolAVX(y *float32, ldy, rows, n int, x *float32, xstep, ldx, kh, kw, stride int)
//
// For rows output rows (ldy apart in y; the windows of one row start xstep
// further in x than those of the row before) and n outputs o per row:
// y[o] is the maximum of the kh x kw window whose first element is
// x[o*stride] (its rows ldx apart), taken in row-major order with
// best = v > best ? v : best, which is VMAXPS with v as its first source.
// Eight outputs at a time; the last 1..7 of a row are computed as eight
// and stored in part. stride is 1 or 2: with 2, each tap loads 16
// values and keeps the even ones (VSHUFPS, lanes in 0 2 1 3 quadword
// order, put right by one VPERMPD before the store). The last 1..7 outputs
// of a row go through the 32 bytes of the frame, then one by one: a masked
// store is slow on some CPUs.
TEXT ·maxPoolAVX(SB), NOSPLIT, $32-80
	MOVQ y+0(FP), DI
	MOVQ rows+16(FP), R9
	MOVQ n+24(FP), R10
	MOVQ x+32(FP), SI
	MOVQ ldx+48(FP), R12
	SHLQ $2, R12
	MOVQ kw+64(FP), R13
	TESTQ R9, R9
	JLE  mpdone
	TESTQ R10, R10
	JLE  mpdone
	MOVQ stride+72(FP), AX
	CMPQ AX, $2
	JEQ  s2row

s1row:
	MOVQ DI, AX
	MOVQ SI, BX
	MOVQ R10, CX

s1group:
	VMOVUPS (BX), Y0
	MOVQ BX, DX
	MOVQ kh+56(FP), R11
	MOVQ $1, R8

s1tap:
	CMPQ R8, R13
	JGE  s1tapRow
	VMOVUPS (DX)(R8*4), Y1
	VMAXPS Y0, Y1, Y0
	INCQ R8
	JMP  s1tap

s1tapRow:
	ADDQ R12, DX
	XORQ R8, R8
	DECQ R11
	JNZ  s1tap
	CMPQ CX, $8
	JLT  s1tail
	VMOVUPS Y0, (AX)
	ADDQ $32, AX
	ADDQ $32, BX
	SUBQ $8, CX
	JNZ  s1group
	JMP  s1next

s1tail:
	VMOVUPS Y0, (SP)

s1tailLoop:
	DECQ CX
	MOVL (SP)(CX*4), R8
	MOVL R8, (AX)(CX*4)
	JNZ  s1tailLoop

s1next:
	MOVQ ldy+8(FP), R8
	LEAQ (DI)(R8*4), DI
	MOVQ xstep+40(FP), R8
	LEAQ (SI)(R8*4), SI
	DECQ R9
	JNZ  s1row
	JMP  mpdone

s2row:
	MOVQ DI, AX
	MOVQ SI, BX
	MOVQ R10, CX

s2group:
	VMOVUPS (BX), Y0
	VSHUFPS $0x88, 32(BX), Y0, Y0
	MOVQ BX, DX
	MOVQ kh+56(FP), R11
	MOVQ $1, R8

s2tap:
	CMPQ R8, R13
	JGE  s2tapRow
	VMOVUPS (DX)(R8*4), Y1
	VSHUFPS $0x88, 32(DX)(R8*4), Y1, Y1
	VMAXPS Y0, Y1, Y0
	INCQ R8
	JMP  s2tap

s2tapRow:
	ADDQ R12, DX
	XORQ R8, R8
	DECQ R11
	JNZ  s2tap
	VPERMPD $0xd8, Y0, Y0
	CMPQ CX, $8
	JLT  s2tail
	VMOVUPS Y0, (AX)
	ADDQ $32, AX
	ADDQ $64, BX
	SUBQ $8, CX
	JNZ  s2group
	JMP  s2next

s2tail:
	VMOVUPS Y0, (SP)

s2tailLoop:
	DECQ CX
	MOVL (SP)(CX*4), R8
	MOVL R8, (AX)(CX*4)
	JNZ  s2tailLoop

s2next:
	MOVQ ldy+8(FP), R8
	LEAQ (DI)(R8*4), DI
	MOVQ xstep+40(FP), R8
	LEAQ (SI)(R8*4), SI
	DECQ R9
	JNZ  s2row

mpdone:
	VZEROUPPER
	RET

// func maxPool2x2AVX(y *float32, ldy, rows, n int, x *float32, xstep, ldx int)
//
// maxPoolAVX for 2x2 windows at stride 2: per eight outputs, the 16 values
// of each of the two input rows split into even and odd columns, then
// best = x00, x01, x10 and x11 in that order.
TEXT ·maxPool2x2AVX(SB), NOSPLIT, $32-56
	MOVQ y+0(FP), DI
	MOVQ rows+16(FP), R9
	MOVQ n+24(FP), R10
	MOVQ x+32(FP), SI
	MOVQ ldx+48(FP), R12
	SHLQ $2, R12
	TESTQ R9, R9
	JLE  p2done
	TESTQ R10, R10
	JLE  p2done

p2row:
	MOVQ DI, AX
	MOVQ SI, BX
	MOVQ R10, CX

p2group:
	VMOVUPS (BX), Y0
	VMOVUPS 32(BX), Y1
	VSHUFPS $0xdd, Y1, Y0, Y2
	VSHUFPS $0x88, Y1, Y0, Y0
	VMAXPS Y0, Y2, Y0
	VMOVUPS (BX)(R12*1), Y1
	VMOVUPS 32(BX)(R12*1), Y3
	VSHUFPS $0x88, Y3, Y1, Y2
	VSHUFPS $0xdd, Y3, Y1, Y1
	VMAXPS Y0, Y2, Y0
	VMAXPS Y0, Y1, Y0
	VPERMPD $0xd8, Y0, Y0
	CMPQ CX, $8
	JLT  p2tail
	VMOVUPS Y0, (AX)
	ADDQ $32, AX
	ADDQ $64, BX
	SUBQ $8, CX
	JNZ  p2group
	JMP  p2next

p2tail:
	VMOVUPS Y0, (SP)

p2tailLoop:
	DECQ CX
	MOVL (SP)(CX*4), R8
	MOVL R8, (AX)(CX*4)
	JNZ  p2tailLoop

p2next:
	MOVQ ldy+8(FP), R8
	LEAQ (DI)(R8*4), DI
	MOVQ xstep+40(FP), R8
	LEAQ (SI)(R8*4), SI
	DECQ R9
	JNZ  p2row

p2done:
	VZEROUPPER
	RET

// func reluAVX(dst, src *float32, n int)
//
// dst[i] = max(src[i], 0) for i < n, n a multiple of 8, with Go's max: NaN
// stays NaN and -0 gives +0. VMAXPS with +0 as its first source gives
// src[i] unless 0 > src[i] (so NaN and -0 pass through); adding +0 then
// turns -0 into +0 and changes nothing else.
TEXT ·reluAVX(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VXORPS Y15, Y15, Y15

relu32:
	CMPQ CX, $32
	JLT  relu8
	VMAXPS (SI), Y15, Y0
	VMAXPS 32(SI), Y15, Y1
	VMAXPS 64(SI), Y15, Y2
	VMAXPS 96(SI), Y15, Y3
	VADDPS Y15, Y0, Y0
	VADDPS Y15, Y1, Y1
	VADDPS Y15, Y2, Y2
	VADDPS Y15, Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  relu32

relu8:
	CMPQ CX, $8
	JLT  reludone
	VMAXPS (SI), Y15, Y0
	VADDPS Y15, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  relu8

reludone:
	VZEROUPPER
	RET

// func clampAVX(dst, src *float32, n int, lo, hi float32)
//
// dst[i] = min(max(src[i], lo), hi) for i < n, n a multiple of 8. VMAXPS
// and VMINPS return their second source (the data) when either is NaN, so
// NaN stays NaN; lo above hi gives hi, as Clip says.
TEXT ·clampAVX(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS lo+24(FP), Y14
	VBROADCASTSS hi+28(FP), Y15

clamp32:
	CMPQ CX, $32
	JLT  clamp8
	VMAXPS (SI), Y14, Y0
	VMAXPS 32(SI), Y14, Y1
	VMAXPS 64(SI), Y14, Y2
	VMAXPS 96(SI), Y14, Y3
	VMINPS Y0, Y15, Y0
	VMINPS Y1, Y15, Y1
	VMINPS Y2, Y15, Y2
	VMINPS Y3, Y15, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  clamp32

clamp8:
	CMPQ CX, $8
	JLT  clampdone
	VMAXPS (SI), Y14, Y0
	VMINPS Y0, Y15, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  clamp8

clampdone:
	VZEROUPPER
	RET

// func sigmoidAVX(dst, src *float32, n int, k *[13][8]uint32)
//
// dst[i] = 1/(1+e^-src[i]) for i < n, n a multiple of 8, by the method of
// expNegF32: e = e^-|x| (|x| capped at 87) as 2^n times the degree-7
// Taylor polynomial of the remainder, then 1/(1+e) where x >= 0 and
// e/(1+e) where the sign bit is set; NaN stays NaN. k holds the constants,
// eight copies each: |x| mask, 87, log2 e, ln 2 (high, low), the
// polynomial's coefficients from 1/5040 to 1/2, 1, and 127 (an int).
TEXT ·sigmoidAVX(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ k+24(FP), R8

sig8:
	CMPQ CX, $8
	JLT  sigdone
	VMOVUPS (SI), Y0
	VANDPS  0(R8), Y0, Y1
	VMINPS  32(R8), Y1, Y1
	VXORPS  Y2, Y2, Y2
	VSUBPS  Y1, Y2, Y1
	VMULPS  64(R8), Y1, Y2
	VROUNDPS $0, Y2, Y2
	VMOVAPS Y1, Y3
	VFNMADD231PS 96(R8), Y2, Y3
	VFNMADD231PS 128(R8), Y2, Y3
	VMOVUPS 160(R8), Y4
	VFMADD213PS 192(R8), Y3, Y4
	VFMADD213PS 224(R8), Y3, Y4
	VFMADD213PS 256(R8), Y3, Y4
	VFMADD213PS 288(R8), Y3, Y4
	VFMADD213PS 320(R8), Y3, Y4
	VFMADD213PS 352(R8), Y3, Y4
	VFMADD213PS 352(R8), Y3, Y4
	VCVTPS2DQ Y2, Y5
	VPADDD  384(R8), Y5, Y5
	VPSLLD  $23, Y5, Y5
	VMULPS  Y5, Y4, Y4
	VADDPS  352(R8), Y4, Y6
	VDIVPS  Y6, Y4, Y7
	VMOVUPS 352(R8), Y8
	VDIVPS  Y6, Y8, Y8
	VBLENDVPS Y0, Y7, Y8, Y9
	VCMPPS  $3, Y0, Y0, Y10
	VBLENDVPS Y10, Y0, Y9, Y9
	VMOVUPS Y9, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  sig8

sigdone:
	VZEROUPPER
	RET

// func erfAVX(dst, src *float32, n int, k *[20][8]uint32)
//
// dst[i] = erf(src[i]) for i < n, n a multiple of 8, by Abramowitz and
// Stegun's 7.1.26: 1 - (a1 t + ... + a5 t^5) e^{-x^2} with t = 1/(1+p|x|)
// (absolute error under 1.5e-7), the sign of x put back; e^{-x^2} as in
// sigmoidAVX. k holds, eight copies each: the constants of sigmoidAVX
// (k[0] to k[12]), then p, a5, a4, a3, a2, the sign mask and a1.
TEXT ·erfAVX(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ k+24(FP), R8

erf8:
	CMPQ CX, $8
	JLT  erfdone
	VMOVUPS (SI), Y0
	VANDPS  0(R8), Y0, Y1           // a = |x|
	VANDPS  576(R8), Y0, Y10        // the sign of x
	VMOVUPS 416(R8), Y3             // p
	VFMADD213PS 352(R8), Y1, Y3     // 1 + p*a
	VMOVUPS 352(R8), Y11
	VDIVPS  Y3, Y11, Y11            // t = 1/(1+p*a)
	VMOVUPS 448(R8), Y12            // a5
	VFMADD213PS 480(R8), Y11, Y12   // *t + a4
	VFMADD213PS 512(R8), Y11, Y12   // + a3
	VFMADD213PS 544(R8), Y11, Y12   // + a2
	VFMADD213PS 608(R8), Y11, Y12   // + a1
	VMULPS  Y11, Y12, Y12           // poly(t)
	VMULPS  Y1, Y1, Y1              // a^2
	VMINPS  32(R8), Y1, Y1
	VXORPS  Y2, Y2, Y2
	VSUBPS  Y1, Y2, Y1              // y = -min(a^2, 87)
	VMULPS  64(R8), Y1, Y2
	VROUNDPS $0, Y2, Y2
	VMOVAPS Y1, Y3
	VFNMADD231PS 96(R8), Y2, Y3
	VFNMADD231PS 128(R8), Y2, Y3
	VMOVUPS 160(R8), Y4
	VFMADD213PS 192(R8), Y3, Y4
	VFMADD213PS 224(R8), Y3, Y4
	VFMADD213PS 256(R8), Y3, Y4
	VFMADD213PS 288(R8), Y3, Y4
	VFMADD213PS 320(R8), Y3, Y4
	VFMADD213PS 352(R8), Y3, Y4
	VFMADD213PS 352(R8), Y3, Y4
	VCVTPS2DQ Y2, Y5
	VPADDD  384(R8), Y5, Y5
	VPSLLD  $23, Y5, Y5
	VMULPS  Y5, Y4, Y4              // e^{-a^2}
	VFNMADD213PS 352(R8), Y12, Y4   // 1 - poly(t) e^{-a^2}
	VORPS   Y10, Y4, Y4             // the sign of x
	VCMPPS  $3, Y0, Y0, Y9
	VBLENDVPS Y9, Y0, Y4, Y4        // NaN stays NaN
	VMOVUPS Y4, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  erf8

erfdone:
	VZEROUPPER
	RET
