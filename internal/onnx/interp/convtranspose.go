package interp

import (
	"runtime"
	"sync"
)

// addConvTransposeOps registers ConvTranspose.
func addConvTransposeOps(t ops) {
	t["ConvTranspose"] = Op{MinOpset: 1, MaxOpset: MaxOpset, Check: checkConvTranspose, Run: runConvTranspose, Prepare: prepareConvTranspose, Fresh: true}
}

func checkConvTranspose(n *Node) error {
	if err := nnInputs(n, 2, 3); err != nil {
		return err
	}
	if nnOutputs(n) != 1 {
		return n.Errorf("has %d outputs, want 1", nnOutputs(n))
	}
	if g := n.Int("group", 1); g < 1 {
		return n.Errorf("attribute group: %d, want a positive number", g)
	}
	_, rank, err := nnParseWindow(n, true)
	if err != nil {
		return err
	}
	for _, name := range []string{"output_padding", "output_shape"} {
		v := n.Ints(name, nil)
		if v == nil {
			continue
		}
		if rank != 0 && len(v) != rank {
			return n.Errorf("attribute %s %v: want %d values", name, v, rank)
		}
		for _, x := range v {
			if x < 0 || x > maxElements {
				return n.Errorf("attribute %s %v: want non-negative values", name, v)
			}
		}
	}
	return nil
}

// convTOp is a validated ConvTranspose: operands, geometry (in the
// direction of the equivalent convolution: in is the output's spatial
// size, out the input's), and output shape.
type convTOp struct {
	x, w, bias     []float32
	N, C, M, group int
	inH, inW       int // X's spatial size
	outH, outW     int // Y's spatial size
	kH, kW         int
	sH, sW         int
	dH, dW         int
	padT, padL     int
	shape          []int
}

func convTransposeSetup(n *Node, in []*Tensor) (convTOp, error) {
	x, w := in[0], in[1]
	var b *Tensor
	if len(in) > 2 {
		b = in[2]
	}
	if err := nnSpatialInput(n, "X", x, Float32); err != nil {
		return convTOp{}, err
	}
	r := len(x.Shape) - 2
	if w == nil || w.DType != Float32 || len(w.Shape) != len(x.Shape) {
		return convTOp{}, n.Errorf("input W must be a float32 tensor of rank %d (X is %s)", len(x.Shape), ShapeString(x.Shape))
	}
	a, _, err := nnParseWindow(n, true)
	if err != nil {
		return convTOp{}, err
	}
	group := int(n.Int("group", 1))
	N, C := x.Shape[0], x.Shape[1]
	if w.Shape[0] != C || C%group != 0 {
		return convTOp{}, n.Errorf("W shape %s with group %d does not fit X shape %s: want W[0] = %d input channels, divisible by group", ShapeString(w.Shape), group, ShapeString(x.Shape), C)
	}
	M := w.Shape[1] * group
	kernel := w.Shape[2:]
	if a.kernel != nil {
		for i, k := range a.kernel {
			if i >= len(kernel) || int(k) != kernel[i] {
				return convTOp{}, n.Errorf("attribute kernel_shape %v does not match W shape %s", a.kernel, ShapeString(w.Shape))
			}
		}
	}
	if b != nil && (b.DType != Float32 || len(b.Shape) != 1 || b.Shape[0] != M) {
		return convTOp{}, n.Errorf("input B must be a float32 vector of %d elements, got %s %s", M, b.DType, ShapeString(b.Shape))
	}
	if a.strides != nil && len(a.strides) != r || a.dilations != nil && len(a.dilations) != r || a.pads != nil && len(a.pads) != 2*r {
		return convTOp{}, n.Errorf("attributes describe a different number of spatial dimensions than the %d-D input", r)
	}
	outPad, outShape := n.Ints("output_padding", nil), n.Ints("output_shape", nil)
	if outPad != nil && len(outPad) != r || outShape != nil && len(outShape) != r {
		return convTOp{}, n.Errorf("attributes output_padding %v and output_shape %v must have %d values", outPad, outShape, r)
	}
	get := func(v []int64, i, def int) int {
		if v == nil {
			return def
		}
		return int(v[i])
	}
	var out, pb, s, d [nnMaxSpatial]int
	for i := range r {
		s[i], d[i] = get(a.strides, i, 1), get(a.dilations, i, 1)
		if s[i] > maxConvTStep || d[i] > maxConvTStep || get(outPad, i, 0) > maxConvTStep {
			return convTOp{}, n.Errorf("strides %v, dilations %v or output_padding %v above %d", a.strides, a.dilations, outPad, maxConvTStep)
		}
		ext := d[i]*(kernel[i]-1) + 1
		full := s[i]*(x.Shape[2+i]-1) + get(outPad, i, 0) + ext // output size without pads
		switch {
		case outShape != nil || a.autoPad == "SAME_UPPER" || a.autoPad == "SAME_LOWER":
			want := get(outShape, i, x.Shape[2+i]*s[i])
			// A negative total (output_shape larger than the input
			// reaches) leaves zeros at the end, as ONNX's reference does:
			// its halves round toward minus infinity.
			total := full - want
			half := total / 2
			if total < 0 && total%2 != 0 {
				half--
			}
			out[i] = want
			if a.autoPad == "SAME_UPPER" {
				pb[i] = half
			} else {
				pb[i] = total - half
			}
		case a.autoPad == "VALID":
			out[i] = full
		default:
			begin, end := get(a.pads, i, 0), get(a.pads, i+r, 0)
			out[i] = full - begin - end
			pb[i] = begin
		}
		if out[i] < 0 {
			return convTOp{}, n.Errorf("pads leave a negative output size in spatial dimension %d", i)
		}
	}
	c := convTOp{x: x.F32, w: w.F32, N: N, C: C, M: M, group: group}
	if b != nil {
		c.bias = b.F32
	}
	if r == 1 {
		c.inH, c.outH, c.kH, c.sH, c.dH = 1, 1, 1, 1, 1
		c.inW, c.outW, c.kW, c.sW, c.dW, c.padL = x.Shape[2], out[0], kernel[0], s[0], d[0], pb[0]
	} else {
		c.inH, c.outH, c.kH, c.sH, c.dH, c.padT = x.Shape[2], out[0], kernel[0], s[0], d[0], pb[0]
		c.inW, c.outW, c.kW, c.sW, c.dW, c.padL = x.Shape[3], out[1], kernel[1], s[1], d[1], pb[1]
	}
	c.shape = append([]int{N, M}, out[:r]...)
	if err := checkedShape(c.shape); err != nil {
		return convTOp{}, n.Errorf("output shape %v: %v", c.shape, err)
	}
	return c, nil
}

// maxConvTStep bounds ConvTranspose's strides, dilations and output
// padding, so that the output size computed from them cannot overflow.
const maxConvTStep = 1 << 20

func runConvTranspose(n *Node, in []*Tensor) ([]*Tensor, error) {
	return convTransposeRun(n, in, nil)
}

// prepareConvTranspose gives the node a pool of column buffers.
func prepareConvTranspose(*Node, []*Tensor) Kernel {
	pool := new(sync.Pool)
	return func(n *Node, in []*Tensor) ([]*Tensor, error) { return convTransposeRun(n, in, pool) }
}

// convTransposeRun computes ConvTranspose as the adjoint of a convolution:
// per image and group, the columns Wᵀ·X (sgemm) are scattered and added
// into the output (col2im), then the bias is added.
func convTransposeRun(n *Node, in []*Tensor, pool *sync.Pool) ([]*Tensor, error) {
	c, err := convTransposeSetup(n, in)
	if err != nil {
		return nil, err
	}
	y := New(Float32, c.shape...)
	Cg, Mg := c.C/c.group, c.M/c.group
	K := c.kH * c.kW
	inHW, outHW := c.inH*c.inW, c.outH*c.outW
	rows := Mg * K
	units := c.N * c.group
	work := func(u0, u1 int) {
		buf := getScratch[float32](pool, rows*inHW)
		defer putScratch(pool, buf)
		col := *buf
		for u := u0; u < u1; u++ {
			img, gr := u/c.group, u%c.group
			xg := c.x[(img*c.C+gr*Cg)*inHW : (img*c.C+(gr+1)*Cg)*inHW]
			wg := c.w[gr*Cg*rows : (gr+1)*Cg*rows] // [Cg, Mg*K]
			clear(col)
			sgemm(rows, inHW, Cg, 1, wg, 1, rows, xg, col)
			yg := y.F32[(img*c.M+gr*Mg)*outHW : (img*c.M+(gr+1)*Mg)*outHW]
			convTransposeCol2im(&c, col, yg, Mg)
			if c.bias != nil {
				for m := range Mg {
					b := c.bias[gr*Mg+m]
					p := yg[m*outHW : (m+1)*outHW]
					for i := range p {
						p[i] += b
					}
				}
			}
		}
	}
	workers := 1
	if units > 1 && c.N*c.M*inHW*K*Cg >= convParallelMACs {
		workers = min(runtime.GOMAXPROCS(0), 8, units)
	}
	parallelSplit(units, workers, work)
	return []*Tensor{y}, nil
}

// convTransposeCol2im adds each column row (m, ki, kj) of col, over the
// input positions, into the output positions it reaches.
func convTransposeCol2im(c *convTOp, col, y []float32, Mg int) {
	inHW, outHW := c.inH*c.inW, c.outH*c.outW
	r := 0
	for m := range Mg {
		plane := y[m*outHW : (m+1)*outHW]
		for ki := range c.kH {
			for kj := range c.kW {
				src := col[r*inHW : (r+1)*inHW]
				r++
				offW := kj*c.dW - c.padL
				// Input columns whose output column is inside [0, outW).
				iwLo, iwHi := 0, c.inW
				for iwLo < iwHi && iwLo*c.sW+offW < 0 {
					iwLo++
				}
				for iwHi > iwLo && (iwHi-1)*c.sW+offW >= c.outW {
					iwHi--
				}
				for ih := range c.inH {
					oh := ih*c.sH - c.padT + ki*c.dH
					if oh < 0 || oh >= c.outH {
						continue
					}
					srow := src[ih*c.inW : (ih+1)*c.inW]
					drow := plane[oh*c.outW : (oh+1)*c.outW]
					if c.sW == 1 {
						axpy1(drow[iwLo+offW:iwHi+offW], 1, srow[iwLo:iwHi])
						continue
					}
					ow := iwLo*c.sW + offW
					for iw := iwLo; iw < iwHi; iw++ {
						drow[ow] += srow[iw]
						ow += c.sW
					}
				}
			}
		}
	}
}
