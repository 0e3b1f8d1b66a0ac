//go:build !purego

#include "textflag.h"

// func sumAVX(x *float32, n int) float32
//
// The sum of x[i] for i < n, n a multiple of 8: 32 elements at a time in
// four accumulators, then 8.
TEXT ·sumAVX(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

sum32:
	CMPQ CX, $32
	JLT  sum8
	VADDPS (SI), Y0, Y0
	VADDPS 32(SI), Y1, Y1
	VADDPS 64(SI), Y2, Y2
	VADDPS 96(SI), Y3, Y3
	ADDQ $128, SI
	SUBQ $32, CX
	JMP  sum32

sum8:
	CMPQ CX, $8
	JLT  sumdone
	VADDPS (SI), Y0, Y0
	ADDQ $32, SI
	SUBQ $8, CX
	JMP  sum8

sumdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+16(FP)
	RET

// func sumSqDevAVX(x *float32, n int, mean float32) float32
//
// The sum of (x[i] - mean)² for i < n, n a multiple of 8: 32 elements at
// a time in four accumulators, then 8.
TEXT ·sumSqDevAVX(SB), NOSPLIT, $0-28
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS mean+16(FP), Y15
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

sq32:
	CMPQ CX, $32
	JLT  sq8
	VMOVUPS (SI), Y4
	VMOVUPS 32(SI), Y5
	VMOVUPS 64(SI), Y6
	VMOVUPS 96(SI), Y7
	VSUBPS Y15, Y4, Y4
	VSUBPS Y15, Y5, Y5
	VSUBPS Y15, Y6, Y6
	VSUBPS Y15, Y7, Y7
	VFMADD231PS Y4, Y4, Y0
	VFMADD231PS Y5, Y5, Y1
	VFMADD231PS Y6, Y6, Y2
	VFMADD231PS Y7, Y7, Y3
	ADDQ $128, SI
	SUBQ $32, CX
	JMP  sq32

sq8:
	CMPQ CX, $8
	JLT  sqdone
	VMOVUPS (SI), Y4
	VSUBPS Y15, Y4, Y4
	VFMADD231PS Y4, Y4, Y0
	ADDQ $32, SI
	SUBQ $8, CX
	JMP  sq8

sqdone:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func normAffineAVX(dst, src, scale, bias *float32, n int, mean, inv float32)
//
// dst[i] = (src[i] - mean) * inv * scale[i] + bias[i] for i < n, n a
// multiple of 8, 16 elements at a time, then 8. dst may be src.
TEXT ·normAffineAVX(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ scale+16(FP), R8
	MOVQ bias+24(FP), R9
	MOVQ n+32(FP), CX
	VBROADCASTSS mean+40(FP), Y14
	VBROADCASTSS inv+44(FP), Y15

norm16:
	CMPQ CX, $16
	JLT  norm8
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y2
	VSUBPS Y14, Y0, Y0
	VSUBPS Y14, Y2, Y2
	VMULPS Y15, Y0, Y0
	VMULPS Y15, Y2, Y2
	VMOVUPS (R9), Y1
	VMOVUPS 32(R9), Y3
	VFMADD231PS (R8), Y0, Y1
	VFMADD231PS 32(R8), Y2, Y3
	VMOVUPS Y1, (DI)
	VMOVUPS Y3, 32(DI)
	ADDQ $64, SI
	ADDQ $64, DI
	ADDQ $64, R8
	ADDQ $64, R9
	SUBQ $16, CX
	JMP  norm16

norm8:
	CMPQ CX, $8
	JLT  normdone
	VMOVUPS (SI), Y0
	VSUBPS Y14, Y0, Y0
	VMULPS Y15, Y0, Y0
	VMOVUPS (R9), Y1
	VFMADD231PS (R8), Y0, Y1
	VMOVUPS Y1, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	ADDQ $32, R8
	ADDQ $32, R9
	SUBQ $8, CX
	JMP  norm8

normdone:
	VZEROUPPER
	RET
