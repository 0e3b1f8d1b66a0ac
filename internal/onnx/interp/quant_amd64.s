//go:build !purego

#include "textflag.h"

// func qgemm4AVX(c *int32, ldc int, a *int16, lda int, rs *int32, b *int8, off *int32, k2 int)
//
// Sets the four rows of 16 int32 at c (ldc apart) to the products of the
// four rows of a (2*k2 int16 each, lda apart) with the panel of 16 columns
// at b (k2 steps of 32 int8, for each column the pair of rows 2q and
// 2q+1), plus rs[r] * off[j]. Each step widens the panel's 32 values to
// int16 (VPMOVSXBW), broadcasts a pair of a row's values and multiplies
// them by VPMADDWD, which adds the two products of a pair into an int32
// lane exactly (the operands are within ±255 and ±128), then adds that to
// the row's accumulators, wrapping as int32 does.
TEXT ·qgemm4AVX(SB), NOSPLIT, $0-64
	MOVQ c+0(FP), DI
	MOVQ ldc+8(FP), R8
	SHLQ $2, R8
	MOVQ a+16(FP), AX
	MOVQ lda+24(FP), R9
	SHLQ $1, R9
	MOVQ b+40(FP), SI
	MOVQ k2+56(FP), CX
	LEAQ (AX)(R9*2), BX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3
	VPXOR Y4, Y4, Y4
	VPXOR Y5, Y5, Y5
	VPXOR Y6, Y6, Y6
	VPXOR Y7, Y7, Y7
	TESTQ CX, CX
	JLE  q4store

q4loop:
	VPMOVSXBW (SI), Y8
	VPMOVSXBW 16(SI), Y9
	VPBROADCASTD (AX), Y10
	VPMADDWD Y8, Y10, Y11
	VPMADDWD Y9, Y10, Y12
	VPADDD Y11, Y0, Y0
	VPADDD Y12, Y1, Y1
	VPBROADCASTD (AX)(R9*1), Y13
	VPMADDWD Y8, Y13, Y14
	VPMADDWD Y9, Y13, Y15
	VPADDD Y14, Y2, Y2
	VPADDD Y15, Y3, Y3
	VPBROADCASTD (BX), Y10
	VPMADDWD Y8, Y10, Y11
	VPMADDWD Y9, Y10, Y12
	VPADDD Y11, Y4, Y4
	VPADDD Y12, Y5, Y5
	VPBROADCASTD (BX)(R9*1), Y13
	VPMADDWD Y8, Y13, Y14
	VPMADDWD Y9, Y13, Y15
	VPADDD Y14, Y6, Y6
	VPADDD Y15, Y7, Y7
	ADDQ $4, AX
	ADDQ $4, BX
	ADDQ $32, SI
	DECQ CX
	JNZ  q4loop

q4store:
	MOVQ off+48(FP), DX
	VMOVDQU (DX), Y12
	VMOVDQU 32(DX), Y13
	MOVQ rs+32(FP), DX
	VPBROADCASTD (DX), Y14
	VPMULLD Y12, Y14, Y15
	VPADDD Y15, Y0, Y0
	VPMULLD Y13, Y14, Y15
	VPADDD Y15, Y1, Y1
	VPBROADCASTD 4(DX), Y14
	VPMULLD Y12, Y14, Y15
	VPADDD Y15, Y2, Y2
	VPMULLD Y13, Y14, Y15
	VPADDD Y15, Y3, Y3
	VPBROADCASTD 8(DX), Y14
	VPMULLD Y12, Y14, Y15
	VPADDD Y15, Y4, Y4
	VPMULLD Y13, Y14, Y15
	VPADDD Y15, Y5, Y5
	VPBROADCASTD 12(DX), Y14
	VPMULLD Y12, Y14, Y15
	VPADDD Y15, Y6, Y6
	VPMULLD Y13, Y14, Y15
	VPADDD Y15, Y7, Y7
	VMOVDQU Y0, (DI)
	VMOVDQU Y1, 32(DI)
	VMOVDQU Y2, (DI)(R8*1)
	VMOVDQU Y3, 32(DI)(R8*1)
	LEAQ (DI)(R8*2), DI
	VMOVDQU Y4, (DI)
	VMOVDQU Y5, 32(DI)
	VMOVDQU Y6, (DI)(R8*1)
	VMOVDQU Y7, 32(DI)(R8*1)
	VZEROUPPER
	RET

// func qgemm1AVX(c *int32, a *int16, rs *int32, b *int8, off *int32, k2 int)
//
// qgemm4AVX for one row: two steps at a time into two sets of
// accumulators, added at the end.
TEXT ·qgemm1AVX(SB), NOSPLIT, $0-48
	MOVQ c+0(FP), DI
	MOVQ a+8(FP), AX
	MOVQ b+24(FP), SI
	MOVQ k2+40(FP), CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
	VPXOR Y2, Y2, Y2
	VPXOR Y3, Y3, Y3

q1loop2:
	CMPQ CX, $2
	JLT  q1tail
	VPMOVSXBW (SI), Y4
	VPMOVSXBW 16(SI), Y5
	VPMOVSXBW 32(SI), Y6
	VPMOVSXBW 48(SI), Y7
	VPBROADCASTD (AX), Y8
	VPBROADCASTD 4(AX), Y9
	VPMADDWD Y4, Y8, Y10
	VPMADDWD Y5, Y8, Y11
	VPMADDWD Y6, Y9, Y12
	VPMADDWD Y7, Y9, Y13
	VPADDD Y10, Y0, Y0
	VPADDD Y11, Y1, Y1
	VPADDD Y12, Y2, Y2
	VPADDD Y13, Y3, Y3
	ADDQ $8, AX
	ADDQ $64, SI
	SUBQ $2, CX
	JMP  q1loop2

q1tail:
	TESTQ CX, CX
	JLE  q1store
	VPMOVSXBW (SI), Y4
	VPMOVSXBW 16(SI), Y5
	VPBROADCASTD (AX), Y8
	VPMADDWD Y4, Y8, Y10
	VPMADDWD Y5, Y8, Y11
	VPADDD Y10, Y0, Y0
	VPADDD Y11, Y1, Y1

q1store:
	VPADDD Y2, Y0, Y0
	VPADDD Y3, Y1, Y1
	MOVQ off+32(FP), DX
	MOVQ rs+16(FP), BX
	VPBROADCASTD (BX), Y14
	VPMULLD (DX), Y14, Y15
	VPADDD Y15, Y0, Y0
	VPMULLD 32(DX), Y14, Y15
	VPADDD Y15, Y1, Y1
	VMOVDQU Y0, (DI)
	VMOVDQU Y1, 32(DI)
	VZEROUPPER
	RET

// quantEven<> selects the low byte of each of eight int16 (VPSHUFB), then
// zeroes the upper eight bytes.
DATA quantEven<>+0(SB)/8, $0x0e0c0a0806040200
DATA quantEven<>+8(SB)/8, $0x8080808080808080
GLOBL quantEven<>(SB), RODATA|NOPTR, $16

// func quantizeAVX(dst unsafe.Pointer, src *float32, n int, s, z, lo, hi float32)
//
// For i < n, n a multiple of 8, sets the byte dst[i] to
// clamp(round_half_to_even(src[i] / s) + z, lo, hi), or to z where that is
// NaN, as quantizeValue does: the quotient is the same float32 division,
// rounding a float32 to an integer is exact in float32 as in float64, and
// adding z is exact below 2^24, beyond which the result saturates anyway.
// VMAXPS and VMINPS with the value as first source clamp it (a NaN becomes
// lo, then z by the blend); the int32 values are packed to int16 and their
// low bytes kept, which is the uint8 or int8 value alike.
TEXT ·quantizeAVX(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS s+24(FP), Y8
	VBROADCASTSS z+28(FP), Y9
	VBROADCASTSS lo+32(FP), Y10
	VBROADCASTSS hi+36(FP), Y11
	VMOVDQU quantEven<>(SB), X12

qzloop:
	CMPQ CX, $8
	JLT  qzdone
	VMOVUPS (SI), Y0
	VDIVPS Y8, Y0, Y0
	VROUNDPS $0, Y0, Y0
	VADDPS Y9, Y0, Y0
	VCMPPS $3, Y0, Y0, Y1
	VMAXPS Y10, Y0, Y0
	VMINPS Y11, Y0, Y0
	VBLENDVPS Y1, Y9, Y0, Y0
	VCVTPS2DQ Y0, Y0
	VEXTRACTI128 $1, Y0, X2
	VPACKSSDW X2, X0, X0
	VPSHUFB X12, X0, X0
	VMOVQ X0, (DI)
	ADDQ $32, SI
	ADDQ $8, DI
	SUBQ $8, CX
	JMP  qzloop

qzdone:
	VZEROUPPER
	RET

// func qPackU8AVX(dst *int16, src *uint8, n int, z int) int32
//
// Sets dst[i] to src[i] - z for the n (a multiple of 16) bytes at src and
// returns the sum of the differences: 16 at a time, widened by VPMOVZXBW,
// summed in int32 lanes by VPMADDWD with ones.
TEXT ·qPackU8AVX(SB), NOSPLIT, $0-36
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ z+24(FP), AX
	MOVQ AX, X4
	VPBROADCASTW X4, Y4
	MOVL $0x00010001, AX
	MOVQ AX, X5
	VPBROADCASTD X5, Y5
	VPXOR Y2, Y2, Y2
	SHRQ $4, CX
	JZ   pdone

ploop:
	VPMOVZXBW (SI), Y0
	VPSUBW Y4, Y0, Y0
	VMOVDQU Y0, (DI)
	VPMADDWD Y5, Y0, Y1
	VPADDD Y1, Y2, Y2
	ADDQ $16, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  ploop

pdone:
	VEXTRACTI128 $1, Y2, X3
	VPADDD X3, X2, X2
	VPSHUFD $0x4E, X2, X3
	VPADDD X3, X2, X2
	VPSHUFD $0xB1, X2, X3
	VPADDD X3, X2, X2
	VMOVD X2, AX
	MOVL AX, ret+32(FP)
	VZEROUPPER
	RET

// func qPackPairsAVX(dst *int8, stride int, r0, r1 unsafe.Pointer, panels, flip int)
//
// For each panel, interleaves the next 16 bytes of r0 and r1 (VPUNPCKLBW
// and VPUNPCKHBW, r0's byte first), XORs them with the broadcast low byte
// of flip and stores the 32 bytes at dst, then steps dst by stride. A nil
// r1 stands for bytes equal to flip, which give zeros.
TEXT ·qPackPairsAVX(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ stride+8(FP), R8
	MOVQ r0+16(FP), SI
	MOVQ r1+24(FP), DX
	MOVQ panels+32(FP), CX
	MOVQ flip+40(FP), AX
	MOVQ AX, X4
	VPBROADCASTB X4, X4
	TESTQ CX, CX
	JLE  ppdone
	TESTQ DX, DX
	JZ   pplone

pploop:
	VMOVDQU (SI), X0
	VMOVDQU (DX), X1
	VPUNPCKLBW X1, X0, X2
	VPUNPCKHBW X1, X0, X3
	VPXOR X4, X2, X2
	VPXOR X4, X3, X3
	VMOVDQU X2, (DI)
	VMOVDQU X3, 16(DI)
	ADDQ $16, SI
	ADDQ $16, DX
	ADDQ R8, DI
	DECQ CX
	JNZ  pploop
	JMP  ppdone

pplone:
	VMOVDQU (SI), X0
	VPUNPCKLBW X4, X0, X2
	VPUNPCKHBW X4, X0, X3
	VPXOR X4, X2, X2
	VPXOR X4, X3, X3
	VMOVDQU X2, (DI)
	VMOVDQU X3, 16(DI)
	ADDQ $16, SI
	ADDQ R8, DI
	DECQ CX
	JNZ  pplone

ppdone:
	VZEROUPPER
	RET

// func qScaleAVX(dst *float32, src *int32, n int, s, b float32)
//
// Eight at a time: VCVTDQ2PS (rounding to nearest even, as Go converts),
// then VMULPS and VADDPS, each rounded as Go rounds them.
TEXT ·qScaleAVX(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS s+24(FP), Y1
	VBROADCASTSS b+28(FP), Y2

qsloop:
	CMPQ CX, $8
	JLT  qsdone
	VCVTDQ2PS (SI), Y0
	VMULPS Y1, Y0, Y0
	VADDPS Y2, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  qsloop

qsdone:
	VZEROUPPER
	RET
