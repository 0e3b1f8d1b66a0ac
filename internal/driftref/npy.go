package driftref

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// npyMagic starts every .npy file.
const npyMagic = "\x93NUMPY"

// maxNPYHeader bounds the header of a .npy file (NumPy writes a few hundred
// bytes; format 1.0 cannot exceed 65535).
const maxNPYHeader = 1 << 16

// ErrNPY is wrapped by every error about a malformed .npy file.
var ErrNPY = errors.New("malformed .npy file")

func npyErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNPY, fmt.Sprintf(format, args...))
}

// npyType is an element type of a .npy file.
type npyType struct {
	kind  byte // 'f', 'i' or 'u'
	size  int  // bytes
	order binary.ByteOrder
}

// ReadNPY decodes a NumPy .npy file (format 1.0, 2.0 or 3.0) of a
// C-ordered array with at least one dimension, the first counting the
// samples, of float32, float64 or integers of 1 to 8 bytes (little- or
// big-endian), into Data. Its elements are at most maxElements (<= 0 means
// DefaultMaxElements). Memory grows with the bytes actually read, so a short
// file claiming a huge shape costs no more than its real size. Arrays in
// Fortran order, and other element types (bool, complex, strings, objects),
// are refused by name.
func ReadNPY(r io.Reader, maxElements int) (*Data, error) {
	if maxElements <= 0 {
		maxElements = DefaultMaxElements
	}
	br := bufio.NewReader(r)
	var pre [10]byte
	if _, err := io.ReadFull(br, pre[:8]); err != nil {
		return nil, npyErr("preamble: %v", err)
	}
	if string(pre[:6]) != npyMagic {
		return nil, npyErr("no %q magic", npyMagic)
	}
	var hlen int
	switch major := pre[6]; major {
	case 1:
		if _, err := io.ReadFull(br, pre[8:10]); err != nil {
			return nil, npyErr("header length: %v", err)
		}
		hlen = int(binary.LittleEndian.Uint16(pre[8:10]))
	case 2, 3:
		var l [4]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return nil, npyErr("header length: %v", err)
		}
		n := binary.LittleEndian.Uint32(l[:])
		if n > maxNPYHeader {
			return nil, npyErr("header of %d bytes, above %d", n, maxNPYHeader)
		}
		hlen = int(n)
	default:
		return nil, npyErr("format version %d.%d, want 1.0, 2.0 or 3.0", major, pre[7])
	}
	head := make([]byte, hlen)
	if _, err := io.ReadFull(br, head); err != nil {
		return nil, npyErr("header: %v", err)
	}
	descr, fortran, shape, err := parseNPYHeader(string(head), maxElements)
	if err != nil {
		return nil, err
	}
	typ, err := parseDescr(descr)
	if err != nil {
		return nil, err
	}
	if fortran && len(shape) > 1 {
		return nil, npyErr("the array is in Fortran order: save it C-ordered (numpy.ascontiguousarray)")
	}
	if len(shape) == 0 {
		return nil, npyErr("a scalar: want an array whose first dimension counts the samples")
	}
	total := 1
	for _, d := range shape {
		if d == 0 {
			return nil, npyErr("shape %v holds no values", shape)
		}
		total *= d // parseNPYHeader bounded the product
	}
	want := int64(total) * int64(typ.size)
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(br, want+1))
	if err != nil {
		return nil, npyErr("data: %v", err)
	}
	switch {
	case n < want:
		return nil, npyErr("data: %d bytes, shape %v of %s needs %d", n, shape, descr, want)
	case n > want:
		return nil, npyErr("trailing data after %d bytes", want)
	}
	d := &Data{Shape: sampleShape(shape), Values: make([]float64, total), Bytes: typ.kind == 'u' && typ.size == 1}
	decodeNPY(buf.Bytes(), typ, d.Values)
	return d, nil
}

// sampleShape is the shape of one sample of an array of the given shape:
// its dimensions after the first, or [1] for a vector.
func sampleShape(shape []int) []int {
	if len(shape) == 1 {
		return []int{1}
	}
	return append([]int(nil), shape[1:]...)
}

// decodeNPY converts the elements of b to float64.
func decodeNPY(b []byte, t npyType, out []float64) {
	for i := range out {
		e := b[i*t.size : (i+1)*t.size]
		switch {
		case t.kind == 'f' && t.size == 4:
			out[i] = float64(math.Float32frombits(t.order.Uint32(e)))
		case t.kind == 'f':
			out[i] = math.Float64frombits(t.order.Uint64(e))
		case t.kind == 'u':
			out[i] = float64(uintOf(e, t))
		default:
			u := uintOf(e, t)
			shift := 64 - 8*t.size
			out[i] = float64(int64(u<<shift) >> shift)
		}
	}
}

func uintOf(e []byte, t npyType) uint64 {
	switch t.size {
	case 1:
		return uint64(e[0])
	case 2:
		return uint64(t.order.Uint16(e))
	case 4:
		return uint64(t.order.Uint32(e))
	}
	return t.order.Uint64(e)
}

// parseDescr parses a NumPy type string such as "<f4" or "|u1".
func parseDescr(s string) (npyType, error) {
	if len(s) < 3 {
		return npyType{}, npyErr("element type %q", s)
	}
	t := npyType{kind: s[1]}
	size, err := strconv.Atoi(s[2:])
	if err != nil {
		return npyType{}, npyErr("element type %q", s)
	}
	t.size = size
	switch {
	case t.kind == 'f' && (size == 4 || size == 8):
	case (t.kind == 'i' || t.kind == 'u') && (size == 1 || size == 2 || size == 4 || size == 8):
	default:
		return npyType{}, npyErr("element type %q: want float32, float64 or an integer type", s)
	}
	switch s[0] {
	case '<':
		t.order = binary.LittleEndian
	case '>':
		t.order = binary.BigEndian
	case '|':
		if size != 1 {
			return npyType{}, npyErr("element type %q: no byte order", s)
		}
		t.order = binary.LittleEndian
	default:
		return npyType{}, npyErr("element type %q: byte order %q, want '<', '>' or '|'", s, s[0])
	}
	return t, nil
}

// parseNPYHeader parses the header of a .npy file, a Python dict literal
// such as {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }. The
// shape's element count must be at most maxElements.
func parseNPYHeader(h string, maxElements int) (descr string, fortran bool, shape []int, err error) {
	p := &pyParser{s: strings.TrimRight(h, " \n\x00")}
	p.space()
	if !p.eat('{') {
		return "", false, nil, npyErr("header %q: not a dict", clip(h))
	}
	seen := map[string]bool{}
	for {
		p.space()
		if p.eat('}') {
			break
		}
		key, err := p.str()
		if err != nil {
			return "", false, nil, npyErr("header: %v", err)
		}
		p.space()
		if !p.eat(':') {
			return "", false, nil, npyErr("header: no ':' after %q", key)
		}
		p.space()
		if seen[key] {
			return "", false, nil, npyErr("header: key %q twice", key)
		}
		seen[key] = true
		switch key {
		case "descr":
			if descr, err = p.str(); err != nil {
				return "", false, nil, npyErr("header: descr: %v (only simple types are supported)", err)
			}
		case "fortran_order":
			if fortran, err = p.boolean(); err != nil {
				return "", false, nil, npyErr("header: fortran_order: %v", err)
			}
		case "shape":
			if shape, err = p.shape(maxElements); err != nil {
				return "", false, nil, npyErr("header: shape: %v", err)
			}
		default:
			return "", false, nil, npyErr("header: unknown key %q", key)
		}
		p.space()
		if !p.eat(',') {
			p.space()
			if !p.eat('}') {
				return "", false, nil, npyErr("header: want ',' or '}' after %q", key)
			}
			break
		}
	}
	p.space()
	if p.i != len(p.s) {
		return "", false, nil, npyErr("header: trailing %q", clip(p.s[p.i:]))
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if !seen[k] {
			return "", false, nil, npyErr("header: no %q", k)
		}
	}
	return descr, fortran, shape, nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// pyParser reads the few Python literals of a .npy header.
type pyParser struct {
	s string
	i int
}

func (p *pyParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n') {
		p.i++
	}
}

func (p *pyParser) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a quoted string without escapes.
func (p *pyParser) str() (string, error) {
	if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
		return "", errors.New("want a quoted string")
	}
	q := p.s[p.i]
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", errors.New("unterminated string")
	}
	v := p.s[p.i+1 : p.i+1+end]
	if strings.ContainsRune(v, '\\') {
		return "", errors.New("escapes in a string")
	}
	p.i += end + 2
	return v, nil
}

func (p *pyParser) boolean() (bool, error) {
	switch {
	case strings.HasPrefix(p.s[p.i:], "True"):
		p.i += 4
		return true, nil
	case strings.HasPrefix(p.s[p.i:], "False"):
		p.i += 5
		return false, nil
	}
	return false, errors.New("want True or False")
}

// shape reads a tuple of non-negative integers whose product is at most
// maxElements.
func (p *pyParser) shape(maxElements int) ([]int, error) {
	if !p.eat('(') {
		return nil, errors.New("want a tuple")
	}
	dims := []int{}
	total := 1
	for {
		p.space()
		if p.eat(')') {
			return dims, nil
		}
		start := p.i
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		if p.i == start {
			return nil, fmt.Errorf("want a dimension at %q", clip(p.s[start:]))
		}
		d, err := strconv.Atoi(p.s[start:p.i])
		if err != nil || d > maxElements {
			return nil, fmt.Errorf("dimension %s above the limit of %d elements", p.s[start:p.i], maxElements)
		}
		p.eat('L') // Python 2 longs
		if d > 0 && total > maxElements/d {
			return nil, fmt.Errorf("%v... exceeds the limit of %d elements", append(dims, d), maxElements)
		}
		if len(dims) == maxDims {
			return nil, fmt.Errorf("more than %d dimensions", maxDims)
		}
		dims = append(dims, d)
		total *= d
		p.space()
		if !p.eat(',') {
			p.space()
			if !p.eat(')') {
				return nil, errors.New("want ',' or ')'")
			}
			if len(dims) == 1 {
				// (5) is not a tuple in Python; NumPy writes (5,).
				return nil, errors.New("a one-element shape needs a trailing comma")
			}
			return dims, nil
		}
	}
}
