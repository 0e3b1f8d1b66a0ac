//go:build !purego

#include "textflag.h"

// Eight-lane constants of expSumAVX (Cephes' expf, as expF32).
DATA expLo<>+0(SB)/8, $0xc2aeac4fc2aeac4f
DATA expLo<>+8(SB)/8, $0xc2aeac4fc2aeac4f
DATA expLo<>+16(SB)/8, $0xc2aeac4fc2aeac4f
DATA expLo<>+24(SB)/8, $0xc2aeac4fc2aeac4f
GLOBL expLo<>(SB), RODATA|NOPTR, $32
DATA expLog2e<>+0(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expLog2e<>+8(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expLog2e<>+16(SB)/8, $0x3fb8aa3b3fb8aa3b
DATA expLog2e<>+24(SB)/8, $0x3fb8aa3b3fb8aa3b
GLOBL expLog2e<>(SB), RODATA|NOPTR, $32
DATA expHalf<>+0(SB)/8, $0x3f0000003f000000
DATA expHalf<>+8(SB)/8, $0x3f0000003f000000
DATA expHalf<>+16(SB)/8, $0x3f0000003f000000
DATA expHalf<>+24(SB)/8, $0x3f0000003f000000
GLOBL expHalf<>(SB), RODATA|NOPTR, $32
DATA expC1<>+0(SB)/8, $0x3f3180003f318000
DATA expC1<>+8(SB)/8, $0x3f3180003f318000
DATA expC1<>+16(SB)/8, $0x3f3180003f318000
DATA expC1<>+24(SB)/8, $0x3f3180003f318000
GLOBL expC1<>(SB), RODATA|NOPTR, $32
DATA expC2<>+0(SB)/8, $0xb95e8083b95e8083
DATA expC2<>+8(SB)/8, $0xb95e8083b95e8083
DATA expC2<>+16(SB)/8, $0xb95e8083b95e8083
DATA expC2<>+24(SB)/8, $0xb95e8083b95e8083
GLOBL expC2<>(SB), RODATA|NOPTR, $32
DATA expP0<>+0(SB)/8, $0x3950696739506967
DATA expP0<>+8(SB)/8, $0x3950696739506967
DATA expP0<>+16(SB)/8, $0x3950696739506967
DATA expP0<>+24(SB)/8, $0x3950696739506967
GLOBL expP0<>(SB), RODATA|NOPTR, $32
DATA expP1<>+0(SB)/8, $0x3ab743ce3ab743ce
DATA expP1<>+8(SB)/8, $0x3ab743ce3ab743ce
DATA expP1<>+16(SB)/8, $0x3ab743ce3ab743ce
DATA expP1<>+24(SB)/8, $0x3ab743ce3ab743ce
GLOBL expP1<>(SB), RODATA|NOPTR, $32
DATA expP2<>+0(SB)/8, $0x3c0889083c088908
DATA expP2<>+8(SB)/8, $0x3c0889083c088908
DATA expP2<>+16(SB)/8, $0x3c0889083c088908
DATA expP2<>+24(SB)/8, $0x3c0889083c088908
GLOBL expP2<>(SB), RODATA|NOPTR, $32
DATA expP3<>+0(SB)/8, $0x3d2aa9c13d2aa9c1
DATA expP3<>+8(SB)/8, $0x3d2aa9c13d2aa9c1
DATA expP3<>+16(SB)/8, $0x3d2aa9c13d2aa9c1
DATA expP3<>+24(SB)/8, $0x3d2aa9c13d2aa9c1
GLOBL expP3<>(SB), RODATA|NOPTR, $32
DATA expP4<>+0(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA expP4<>+8(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA expP4<>+16(SB)/8, $0x3e2aaaaa3e2aaaaa
DATA expP4<>+24(SB)/8, $0x3e2aaaaa3e2aaaaa
GLOBL expP4<>(SB), RODATA|NOPTR, $32
DATA expP5<>+0(SB)/8, $0x3f0000003f000000
DATA expP5<>+8(SB)/8, $0x3f0000003f000000
DATA expP5<>+16(SB)/8, $0x3f0000003f000000
DATA expP5<>+24(SB)/8, $0x3f0000003f000000
GLOBL expP5<>(SB), RODATA|NOPTR, $32
DATA expOne<>+0(SB)/8, $0x3f8000003f800000
DATA expOne<>+8(SB)/8, $0x3f8000003f800000
DATA expOne<>+16(SB)/8, $0x3f8000003f800000
DATA expOne<>+24(SB)/8, $0x3f8000003f800000
GLOBL expOne<>(SB), RODATA|NOPTR, $32
DATA expBias<>+0(SB)/8, $0x0000007f0000007f
DATA expBias<>+8(SB)/8, $0x0000007f0000007f
DATA expBias<>+16(SB)/8, $0x0000007f0000007f
DATA expBias<>+24(SB)/8, $0x0000007f0000007f
GLOBL expBias<>(SB), RODATA|NOPTR, $32

// func expSumAVX(dst, src *float32, n int, mx float32) float32
//
// dst[i] = e^(src[i] - mx) for i < n, n a multiple of 8, as expF32 computes
// it but for arguments below -87.33654, which give e^-87.33654 rather than
// 0; returns the sum of dst[i] (eight float32 lanes). NaN stays NaN. dst
// may be src.
TEXT ·expSumAVX(SB), NOSPLIT, $0-36
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VBROADCASTSS mx+24(FP), Y15
	VMOVUPS expLo<>(SB), Y14
	VXORPS Y5, Y5, Y5

exp8:
	CMPQ CX, $8
	JLT  expdone
	VMOVUPS (SI), Y0
	VSUBPS Y15, Y0, Y0
	VMAXPS Y0, Y14, Y0 // max(lo, x), x when NaN
	VMOVUPS expLog2e<>(SB), Y1
	VFMADD213PS expHalf<>(SB), Y0, Y1 // x*log2e + 0.5
	VROUNDPS $1, Y1, Y1 // n = floor
	VFNMADD231PS expC1<>(SB), Y1, Y0 // r = x - n*c1 - n*c2
	VFNMADD231PS expC2<>(SB), Y1, Y0
	VMOVUPS expP0<>(SB), Y2
	VFMADD213PS expP1<>(SB), Y0, Y2
	VFMADD213PS expP2<>(SB), Y0, Y2
	VFMADD213PS expP3<>(SB), Y0, Y2
	VFMADD213PS expP4<>(SB), Y0, Y2
	VFMADD213PS expP5<>(SB), Y0, Y2
	VMULPS Y0, Y0, Y3
	VFMADD213PS Y0, Y3, Y2 // y*r² + r
	VADDPS expOne<>(SB), Y2, Y2
	VCVTTPS2DQ Y1, Y4
	VPADDD expBias<>(SB), Y4, Y4
	VPSLLD $23, Y4, Y4 // 2^n
	VMULPS Y4, Y2, Y2
	VMOVUPS Y2, (DI)
	VADDPS Y2, Y5, Y5
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  exp8

expdone:
	VEXTRACTF128 $1, Y5, X1
	VADDPS X1, X5, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+32(FP)
	RET
