package interp

// depthwisePlan is the layout nnDepthwise computes in: the input region
// the windows cover, padding included (hp x wp), split by row and column
// phase of the strides into sH*sW sub-images of hq x wq, so that every
// tap reads its sub-image at a fixed shift and the output, at row stride
// wq, is one long row for every tap.
type depthwisePlan struct {
	hp, wp, hq, wq int
	n              int // output elements computed per plane at row stride wq
}

func newDepthwisePlan(g *nnGeom) depthwisePlan {
	p := depthwisePlan{
		hp: (g.outH-1)*g.sH + (g.kH-1)*g.dH + 1,
		wp: (g.outW-1)*g.sW + (g.kW-1)*g.dW + 1,
	}
	p.hq, p.wq = (p.hp+g.sH-1)/g.sH, (p.wp+g.sW-1)/g.sW
	p.n = (g.outH-1)*p.wq + g.outW
	return p
}

// nnDepthwiseBuf is the size of the buffer nnDepthwise needs: the
// sub-images, then one output plane at row stride wq.
func nnDepthwiseBuf(g *nnGeom) int {
	p := newDepthwisePlan(g)
	return g.sH*g.sW*p.hq*p.wq + g.outH*p.wq
}

// nnDepthwiseDirect reports whether nnDepthwise is faster than im2col and
// sgemm for a group of one channel: at a column stride, where im2col
// gathers, or on rows long enough that its row-by-row copies are cheap
// beside the product (on planes of 14 x 14 they are not).
func nnDepthwiseDirect(g *nnGeom) bool { return g.sW > 1 || g.outW >= 32 }

// maxDepthwiseTaps is how many taps one pass of nnDepthwise adds.
const maxDepthwiseTaps = 64

// nnDepthwise sets y (Mg planes of outH x outW) to the convolution of one
// input channel x (inH x inW) with the Mg filters w (kH x kW each) plus
// their bias (nil: none): a depthwise convolution's group. The input,
// with its padding as zeros, is first laid out in buf (nnDepthwiseBuf
// elements) as depthwisePlan says; then each output plane, at row stride
// wq, is the bias plus one multi-tap pass over all its taps (kernel1AVX
// where simd is set, only where haveAVX2FMA), and its rows are copied to
// y. The columns past outW of each row are computed and dropped.
func nnDepthwise(simd bool, g *nnGeom, x, w, bias []float32, Mg int, y, buf []float32) {
	p := newDepthwisePlan(g)
	sub := p.hq * p.wq
	planes := buf[:g.sH*g.sW*sub]
	if g.sW == 2 {
		depthwiseLayout2(g, &p, x, planes)
	} else {
		depthwiseLayout(g, &p, x, planes)
	}
	acc := buf[len(planes) : len(planes)+g.outH*p.wq]
	K := g.kH * g.kW
	outHW := g.outH * g.outW
	var off [maxDepthwiseTaps]int
	tapOffsets := func(k0, k1 int) {
		for k := k0; k < k1; k++ {
			ki, kj := k/g.kW, k%g.kW
			rh, rw := ki*g.dH, kj*g.dW
			off[k-k0] = ((rh%g.sH)*g.sW+rw%g.sW)*sub + (rh/g.sH)*p.wq + rw/g.sW
		}
	}
	if K <= maxDepthwiseTaps {
		tapOffsets(0, K)
	}
	for m := range Mg {
		ym := y[m*outHW : (m+1)*outHW]
		b := float32(0)
		if bias != nil {
			b = bias[m]
		}
		fill(acc[:p.n], b)
		for k0 := 0; k0 < K; k0 += maxDepthwiseTaps {
			k1 := min(K, k0+maxDepthwiseTaps)
			if K > maxDepthwiseTaps {
				tapOffsets(k0, k1)
			}
			depthwiseTaps(simd, acc[:p.n], planes, off[:k1-k0], w[m*K+k0:m*K+k1])
		}
		for oh := range g.outH {
			copyShort(ym[oh*g.outW:(oh+1)*g.outW], acc[oh*p.wq:oh*p.wq+g.outW])
		}
	}
}

// copyShort is copy without the call to memmove for short slices, which
// depthwise layers' small planes copy a row at a time.
func copyShort(dst, src []float32) {
	if len(dst) >= 32 {
		copy(dst, src)
		return
	}
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = v
	}
}

// depthwiseLayout writes the padded input x into the sub-images of planes
// as depthwisePlan says, for any strides.
func depthwiseLayout(g *nnGeom, p *depthwisePlan, x, planes []float32) {
	sub := p.hq * p.wq
	for a := range g.sH {
		for c := range g.sW {
			dst := planes[(a*g.sW+c)*sub : (a*g.sW+c+1)*sub]
			for i := range p.hq {
				row := dst[i*p.wq : (i+1)*p.wq]
				ih := i*g.sH + a - g.padT
				if ih < 0 || ih >= g.inH {
					clear(row)
					continue
				}
				src := x[ih*g.inW : (ih+1)*g.inW]
				if g.sW == 1 {
					// Sub-image column j is input column j - padL.
					lo, hi := min(g.padL, p.wq), min(p.wq, g.padL+g.inW)
					for j := range lo {
						row[j] = 0
					}
					if hi > lo { // then lo = padL: input column 0
						copyShort(row[lo:hi], src[:hi-lo])
					}
					for j := max(lo, hi); j < len(row); j++ {
						row[j] = 0
					}
					continue
				}
				// Sub-image column j is input column j*sW + c - padL:
				// inside the input for j in [lo, hi).
				off := c - g.padL
				lo := 0
				if off < 0 {
					lo = min(len(row), (-off+g.sW-1)/g.sW)
				}
				hi := lo
				if g.inW-off > 0 {
					hi = max(lo, min(len(row), (g.inW-off+g.sW-1)/g.sW))
				}
				for j := range lo {
					row[j] = 0
				}
				iw := lo*g.sW + off
				for j := lo; j < hi; j++ {
					row[j] = src[iw]
					iw += g.sW
				}
				for j := hi; j < len(row); j++ {
					row[j] = 0
				}
			}
		}
	}
}

// depthwiseLayout2 is depthwiseLayout for a column stride of 2: each
// input row is read once, its elements going alternately to the two
// sub-images of its row phase.
func depthwiseLayout2(g *nnGeom, p *depthwisePlan, x, planes []float32) {
	sub := p.hq * p.wq
	n := min(g.inW, p.wp-g.padL) // input columns inside the padded region
	for a := range g.sH {
		for i := range p.hq {
			r0 := planes[(a*2)*sub+i*p.wq : (a*2)*sub+(i+1)*p.wq]
			r1 := planes[(a*2+1)*sub+i*p.wq : (a*2+1)*sub+(i+1)*p.wq]
			clear(r0)
			clear(r1)
			ih := i*g.sH + a - g.padT
			if ih < 0 || ih >= g.inH || n <= 0 {
				continue
			}
			src := x[ih*g.inW : ih*g.inW+n]
			// Input column iw is padded column q = iw + padL: element
			// q/2 of r0 when q is even, of r1 when odd.
			iw := 0
			if g.padL&1 == 1 {
				r1[g.padL>>1] = src[0]
				iw = 1
			}
			j := (iw + g.padL) >> 1
			for ; iw+1 < n; iw, j = iw+2, j+1 {
				r0[j], r1[j] = src[iw], src[iw+1]
			}
			if iw < n {
				r0[j] = src[iw]
			}
		}
	}
}

// depthwiseTaps adds ap[q] * src[off[q]+j] over the taps q to each d[j].
func depthwiseTaps(simd bool, d, src []float32, off []int, ap []float32) {
	n := len(d)
	if n == 0 {
		return
	}
	ap = ap[:len(off)]
	for _, o := range off {
		_ = src[o : o+n] // the kernel reads these
	}
	if simd {
		kernel1AVX(&d[0], n, &src[0], &off[0], &ap[0], len(off))
		return
	}
	for q, o := range off {
		axpy1(d, ap[q], src[o:o+n])
	}
}
