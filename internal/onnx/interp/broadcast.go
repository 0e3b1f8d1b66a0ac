package interp

import "fmt"

// numeric are the element types arithmetic kernels compute with.
type numeric interface {
	~float32 | ~int32 | ~int64 | ~int8 | ~uint8
}

// BroadcastShapes returns the shape numpy-style (multidirectional)
// broadcasting gives shapes a and b, or an error when they do not broadcast.
func BroadcastShapes(a, b []int) ([]int, error) {
	r := max(len(a), len(b))
	out := make([]int, r)
	for i := range r {
		da, db := 1, 1
		if j := i - (r - len(a)); j >= 0 {
			da = a[j]
		}
		if j := i - (r - len(b)); j >= 0 {
			db = b[j]
		}
		switch {
		case da == db, db == 1:
			out[i] = da
		case da == 1:
			out[i] = db
		default:
			return nil, fmt.Errorf("shapes %s and %s do not broadcast", ShapeString(a), ShapeString(b))
		}
	}
	return out, nil
}

// BroadcastsTo reports whether shape from broadcasts unidirectionally to
// shape to (as Gemm's C, or a bias, must).
func BroadcastsTo(from, to []int) bool {
	if len(from) > len(to) {
		return false
	}
	off := len(to) - len(from)
	for i, d := range from {
		if d != 1 && d != to[off+i] {
			return false
		}
	}
	return true
}

// bcast is a broadcast of two operands to an output shape, with adjacent
// dimensions of the same broadcast pattern merged: the loops run over
// outer dimensions and call a vector kernel on the innermost one.
type bcast struct {
	outer      []int // merged outer dimensions
	strA, strB []int // element strides of a and b per outer dimension (0: broadcast)
	inner      int   // length of the innermost merged dimension
	sa, sb     int   // 1 when a (b) varies along the inner dimension, else 0
}

// newBcast plans the broadcast of shapes a and b to out (which must be
// their broadcast shape).
func newBcast(a, b, out []int) bcast {
	r := len(out)
	type dim struct {
		n        int
		fa, fb   bool // a (b) has the full size on this dimension
		sta, stb int
	}
	dims := make([]dim, 0, r)
	for i := range r {
		if out[i] == 1 {
			continue
		}
		da, db := 1, 1
		if j := i - (r - len(a)); j >= 0 {
			da = a[j]
		}
		if j := i - (r - len(b)); j >= 0 {
			db = b[j]
		}
		d := dim{n: out[i], fa: da == out[i], fb: db == out[i]}
		if k := len(dims) - 1; k >= 0 && dims[k].fa == d.fa && dims[k].fb == d.fb {
			dims[k].n *= d.n
			continue
		}
		dims = append(dims, d)
	}
	if len(dims) == 0 {
		return bcast{inner: 1, sa: 1, sb: 1}
	}
	sa, sb := 1, 1
	for k := len(dims) - 1; k >= 0; k-- {
		if dims[k].fa {
			dims[k].sta = sa
			sa *= dims[k].n
		}
		if dims[k].fb {
			dims[k].stb = sb
			sb *= dims[k].n
		}
	}
	last := dims[len(dims)-1]
	bc := bcast{inner: last.n}
	if last.fa {
		bc.sa = 1
	}
	if last.fb {
		bc.sb = 1
	}
	for _, d := range dims[:len(dims)-1] {
		bc.outer = append(bc.outer, d.n)
		bc.strA = append(bc.strA, d.sta)
		bc.strB = append(bc.strB, d.stb)
	}
	return bc
}

// runBcast applies the vector kernel f over the broadcast: f gets a slice
// of dst of the inner length and the operands from their current offsets;
// sa (sb) of 0 means f must read only a[0] (b[0]).
func runBcast[T, U any](bc *bcast, dst []U, a, b []T, f func(d []U, a, b []T, sa, sb int)) {
	if len(dst) == 0 {
		return
	}
	L := bc.inner
	if len(bc.outer) == 0 {
		f(dst, a, b, bc.sa, bc.sb)
		return
	}
	var idxBuf [8]int
	idx := idxBuf[:0]
	if len(bc.outer) > len(idxBuf) {
		idx = make([]int, 0, len(bc.outer))
	}
	idx = idx[:len(bc.outer)]
	offA, offB := 0, 0
	for o := 0; o < len(dst); o += L {
		f(dst[o:o+L], a[offA:], b[offB:], bc.sa, bc.sb)
		for j := len(idx) - 1; j >= 0; j-- {
			idx[j]++
			offA += bc.strA[j]
			offB += bc.strB[j]
			if idx[j] < bc.outer[j] {
				break
			}
			offA -= bc.strA[j] * bc.outer[j]
			offB -= bc.strB[j] * bc.outer[j]
			idx[j] = 0
		}
	}
}
