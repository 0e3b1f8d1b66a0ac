package interp

import (
	"fmt"
	"math"
)

// addResizeOps registers Resize.
func addResizeOps(t ops) {
	t["Resize"] = Op{MinOpset: 11, MaxOpset: MaxOpset, Check: checkResize, Run: resize, Fresh: true}
}

// resizeAttrs are Resize's attributes.
type resizeAttrs struct {
	mode, coord, nearest string
	cubicA               float64
	excludeOutside       bool
	extrapolation        float32
}

func readResizeAttrs(n *Node) (resizeAttrs, error) {
	a := resizeAttrs{
		mode:           n.String("mode", "nearest"),
		coord:          n.String("coordinate_transformation_mode", "half_pixel"),
		nearest:        n.String("nearest_mode", "round_prefer_floor"),
		cubicA:         float64(n.Float("cubic_coeff_a", -0.75)),
		excludeOutside: n.Int("exclude_outside", 0) != 0,
		extrapolation:  n.Float("extrapolation_value", 0),
	}
	switch a.mode {
	case "nearest", "linear", "cubic":
	default:
		return a, fmt.Errorf("attribute mode is %q, want nearest, linear or cubic", a.mode)
	}
	switch a.coord {
	case "half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize":
	default:
		return a, fmt.Errorf("attribute coordinate_transformation_mode is %q: %w", a.coord, ErrUnsupported)
	}
	switch a.nearest {
	case "round_prefer_floor", "round_prefer_ceil", "floor", "ceil":
	default:
		return a, fmt.Errorf("attribute nearest_mode is %q, want round_prefer_floor, round_prefer_ceil, floor or ceil", a.nearest)
	}
	for _, name := range []string{"antialias", "axes", "keep_aspect_ratio_policy"} {
		if n.Has(name) {
			return a, fmt.Errorf("attribute %s (opset 18): %w", name, ErrUnsupported)
		}
	}
	return a, nil
}

func checkResize(n *Node) error {
	in := n.Proto.GetInput()
	if len(in) < 2 || len(in) > 4 || in[0] == "" {
		return fmt.Errorf("%d inputs, want X, roi, scales and sizes", len(in))
	}
	_, err := readResizeAttrs(n)
	return err
}

// resizeAxis says how one axis is resampled: each output coordinate o
// reads taps input coordinates idx[o*taps+k] with weights w[o*taps+k], or
// is the extrapolation value when out[o] is set.
type resizeAxis struct {
	in, out  int
	identity bool
	taps     int
	idx      []int
	w        []float32
	outside  []bool
}

// resizeCoord maps output coordinate o to the input coordinate, as the
// coordinate transformation mode says; roi is the axis's [start, end].
// The resized length is in*scale before rounding, as in ONNX's reference
// (it differs from the output size when scales are given).
func resizeCoord(a *resizeAttrs, o, in int, scale float64, roi [2]float64) float64 {
	x, length := float64(o), float64(in)*scale
	switch a.coord {
	case "half_pixel":
		return (x+0.5)/scale - 0.5
	case "pytorch_half_pixel":
		if length > 1 {
			return (x+0.5)/scale - 0.5
		}
		return 0
	case "align_corners":
		if length == 1 {
			return 0
		}
		return x * float64(in-1) / (length - 1)
	case "asymmetric":
		return x / scale
	case "tf_half_pixel_for_nn":
		return (x + 0.5) / scale
	}
	// tf_crop_and_resize
	if length > 1 {
		return roi[0]*float64(in-1) + x*(roi[1]-roi[0])*float64(in-1)/(length-1)
	}
	return 0.5 * (roi[0] + roi[1]) * float64(in-1)
}

// cubicWeight is the cubic convolution kernel with coefficient a at
// distance s.
func cubicWeight(s, a float64) float64 {
	s = math.Abs(s)
	switch {
	case s <= 1:
		return ((a+2)*s-(a+3))*s*s + 1
	case s < 2:
		return ((a*s-5*a)*s+8*a)*s - 4*a
	}
	return 0
}

// planAxis computes the taps of one axis.
func planAxis(a *resizeAttrs, in, out int, scale float64, roi [2]float64) resizeAxis {
	ax := resizeAxis{in: in, out: out, identity: in == out && a.coord != "tf_crop_and_resize"}
	switch a.mode {
	case "nearest":
		ax.taps = 1
	case "linear":
		ax.taps = 2
	default:
		ax.taps = 4
	}
	ax.idx = make([]int, out*ax.taps)
	ax.w = make([]float32, out*ax.taps)
	for o := range out {
		x := resizeCoord(a, o, in, scale, roi)
		if ax.identity && x != float64(o) {
			ax.identity = false
		}
		if a.coord == "tf_crop_and_resize" && (x < 0 || x > float64(in-1)) {
			if ax.outside == nil {
				ax.outside = make([]bool, out)
			}
			ax.outside[o] = true
			continue
		}
		idx, w := ax.idx[o*ax.taps:(o+1)*ax.taps], ax.w[o*ax.taps:(o+1)*ax.taps]
		switch a.mode {
		case "nearest":
			idx[0], w[0] = min(max(nearestIndex(a.nearest, x), 0), in-1), 1
		case "linear":
			x = min(max(x, 0), float64(in-1))
			i0 := min(int(x), in-1)
			i1 := min(i0+1, in-1)
			t := x - float64(i0)
			idx[0], idx[1] = i0, i1
			w[0], w[1] = float32(1-t), float32(t)
		default:
			f := math.Floor(x)
			t := x - f
			dist := [4]float64{t + 1, t, 1 - t, 2 - t}
			sum := 0.0
			var ws [4]float64
			for k := range 4 {
				i := int(f) - 1 + k
				ws[k] = cubicWeight(dist[k], a.cubicA)
				if i < 0 || i >= in {
					if a.excludeOutside {
						ws[k] = 0
					}
					i = min(max(i, 0), in-1)
				}
				idx[k] = i
				sum += ws[k]
			}
			for k := range 4 {
				if a.excludeOutside && sum != 0 {
					ws[k] /= sum
				}
				w[k] = float32(ws[k])
			}
		}
	}
	return ax
}

// nearestIndex rounds an input coordinate as nearest_mode says.
func nearestIndex(mode string, x float64) int {
	f := math.Floor(x)
	switch mode {
	case "floor":
		return int(f)
	case "ceil":
		return int(math.Ceil(x))
	case "round_prefer_ceil":
		if x-f >= 0.5 {
			return int(f) + 1
		}
		return int(f)
	}
	if x-f > 0.5 {
		return int(f) + 1
	}
	return int(f)
}

// resizeParams reads the output shape, scales and roi of a Resize node.
func resizeParams(n *Node, x *Tensor, a *resizeAttrs, in []*Tensor) (shape []int, scales []float64, roi [][2]float64, err error) {
	r := len(x.Shape)
	get := func(i int) *Tensor {
		if i < len(in) {
			return in[i]
		}
		return nil
	}
	roi = make([][2]float64, r)
	for i := range roi {
		roi[i] = [2]float64{0, 1}
	}
	if t := get(1); t != nil && t.Len() > 0 && a.coord == "tf_crop_and_resize" {
		if t.DType != Float32 || t.Len() != 2*r {
			return nil, nil, nil, fmt.Errorf("roi must be %d float32 values (starts and ends), got %s %s", 2*r, t.DType, ShapeString(t.Shape))
		}
		for i := range roi {
			roi[i] = [2]float64{float64(t.F32[i]), float64(t.F32[i+r])}
		}
	}
	sc, sz := get(2), get(3)
	if sc != nil && sc.Len() == 0 {
		sc = nil
	}
	if sz != nil && sz.Len() == 0 {
		sz = nil
	}
	if (sc == nil) == (sz == nil) {
		return nil, nil, nil, fmt.Errorf("exactly one of scales and sizes must be given")
	}
	shape, scales = make([]int, r), make([]float64, r)
	if sc != nil {
		if sc.DType != Float32 || sc.Len() != r {
			return nil, nil, nil, fmt.Errorf("scales must be %d float32 values, got %s %s", r, sc.DType, ShapeString(sc.Shape))
		}
		for i, s := range sc.F32 {
			if !(s > 0) || s > maxElements {
				return nil, nil, nil, fmt.Errorf("scales %v: want positive values", sc.F32)
			}
			scales[i] = float64(s)
			size := float64(x.Shape[i]) * scales[i]
			if a.coord == "tf_crop_and_resize" {
				size *= roi[i][1] - roi[i][0]
			}
			if size > maxElements {
				return nil, nil, nil, fmt.Errorf("scales %v give too many elements", sc.F32)
			}
			shape[i] = int(size)
		}
	} else {
		dims, err := intList(sz, "sizes")
		if err != nil {
			return nil, nil, nil, err
		}
		if len(dims) != r {
			return nil, nil, nil, fmt.Errorf("sizes %v for an input of rank %d", dims, r)
		}
		if shape, err = shapeFrom(dims); err != nil {
			return nil, nil, nil, fmt.Errorf("sizes %v: %w", dims, err)
		}
		for i := range scales {
			scales[i] = float64(shape[i]) / float64(x.Shape[i])
		}
	}
	if err := checkedShape(shape); err != nil {
		return nil, nil, nil, err
	}
	return shape, scales, roi, nil
}

// resize resamples X to a new shape: nearest (any element type), linear
// or cubic (float32), separably along each axis whose size or coordinates
// change.
func resize(n *Node, in []*Tensor) ([]*Tensor, error) {
	x := in[0]
	a, err := readResizeAttrs(n)
	if err != nil {
		return nil, err
	}
	shape, scales, roi, err := resizeParams(n, x, &a, in)
	if err != nil {
		return nil, err
	}
	r := len(x.Shape)
	for i := range r {
		if x.Shape[i] == 0 && shape[i] > 0 {
			return nil, fmt.Errorf("cannot resize the empty axis %d to %d", i, shape[i])
		}
	}
	out := New(x.DType, shape...)
	if out.Len() == 0 {
		return []*Tensor{out}, nil
	}
	axes := make([]resizeAxis, r)
	for i := range r {
		axes[i] = planAxis(&a, x.Shape[i], shape[i], scales[i], roi[i])
	}
	if a.mode == "nearest" {
		src := make([][]int, r)
		for i, ax := range axes {
			src[i] = ax.idx
			for o, outside := range ax.outside {
				if outside {
					src[i][o] = -1
				}
			}
		}
		fill := New(x.DType)
		if err := Convert(fill, FromFloat32([]float32{a.extrapolation})); err != nil {
			return nil, err
		}
		if err := gatherMapped(out, x, x.Shape, shape, src, fill); err != nil {
			return nil, err
		}
		return []*Tensor{out}, nil
	}
	if x.DType != Float32 {
		return nil, fmt.Errorf("%s resize of element type %s: only float32 is supported", a.mode, x.DType)
	}
	cur, curShape := x.F32, append([]int(nil), x.Shape...)
	for i := r - 1; i >= 0; i-- {
		ax := &axes[i]
		if ax.identity {
			continue
		}
		next := append([]int(nil), curShape...)
		next[i] = ax.out
		dst := make([]float32, Size(next))
		resizePass(dst, cur, Size(curShape[:i]), Size(curShape[i+1:]), ax, a.extrapolation)
		cur, curShape = dst, next
	}
	if len(cur) > 0 && &cur[0] == &x.F32[0] {
		copy(out.F32, cur)
	} else {
		out.F32 = cur
	}
	return []*Tensor{out}, nil
}

// resizePass resamples the middle dimension of src, [outer, ax.in, inner],
// into dst, [outer, ax.out, inner].
func resizePass(dst, src []float32, outer, inner int, ax *resizeAxis, extrapolation float32) {
	for o := range outer {
		s := src[o*ax.in*inner : (o+1)*ax.in*inner]
		for j := range ax.out {
			d := dst[(o*ax.out+j)*inner : (o*ax.out+j+1)*inner]
			if ax.outside != nil && ax.outside[j] {
				fill(d, extrapolation)
				continue
			}
			idx, w := ax.idx[j*ax.taps:(j+1)*ax.taps], ax.w[j*ax.taps:(j+1)*ax.taps]
			row := s[idx[0]*inner : (idx[0]+1)*inner]
			w0 := w[0]
			for k := range d {
				d[k] = w0 * row[k]
			}
			for t := 1; t < ax.taps; t++ {
				if w[t] == 0 {
					continue
				}
				axpy1(d, w[t], s[idx[t]*inner:(idx[t]+1)*inner])
			}
		}
	}
}
