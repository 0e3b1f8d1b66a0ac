// Package dataset reads image classification data sets stored in the IDX format
// (the format of MNIST and Fashion-MNIST) and ships a small Fashion-MNIST subset
// so that training, the demo and tests work on a machine with nothing installed.
package dataset

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// IDX is a decoded IDX file of unsigned bytes (type code 0x08): an n-dimensional
// array stored row-major.
type IDX struct {
	Dims []int  // sizes, outermost first; Dims[0] is the number of records
	Data []byte // len(Data) == product of Dims
}

// Record returns the i-th record (the slice of Data under Dims[0] == i).
func (x *IDX) Record(i int) []byte {
	n := len(x.Data) / x.Dims[0]
	return x.Data[i*n : (i+1)*n]
}

// DefaultMaxElements bounds the size of an IDX file the reader accepts by default:
// the full Fashion-MNIST training set is 47,040,000 bytes.
const DefaultMaxElements = 64 << 20

// MaxDims is the largest number of dimensions the reader accepts.
const MaxDims = 4

// ErrFormat is wrapped by every error about a malformed IDX file.
var ErrFormat = errors.New("malformed IDX file")

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// ReadIDX decodes an IDX ubyte file, gzip-compressed or not (detected by the gzip
// magic bytes). It accepts only type 0x08 (unsigned byte), 1 to MaxDims
// dimensions, each at least 1, whose product is at most maxElements (<= 0 means
// DefaultMaxElements), followed by exactly that many bytes and nothing else.
// Memory grows with the bytes actually read, so a short file claiming huge
// dimensions costs no more than its real size.
func ReadIDX(r io.Reader, maxElements int) (*IDX, error) {
	if maxElements <= 0 {
		maxElements = DefaultMaxElements
	}
	br := bufio.NewReader(r)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, formatErr("gzip: %v", err)
		}
		defer zr.Close()
		return readIDX(zr, maxElements)
	}
	return readIDX(br, maxElements)
}

func readIDX(r io.Reader, maxElements int) (*IDX, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, formatErr("header: %v", err)
	}
	if head[0] != 0 || head[1] != 0 {
		return nil, formatErr("magic %#x: first two bytes must be zero", head[:])
	}
	if head[2] != 0x08 {
		return nil, formatErr("element type %#02x: only unsigned bytes (0x08) are supported", head[2])
	}
	nd := int(head[3])
	if nd < 1 || nd > MaxDims {
		return nil, formatErr("%d dimensions: want 1 to %d", nd, MaxDims)
	}
	dimBytes := make([]byte, 4*nd)
	if _, err := io.ReadFull(r, dimBytes); err != nil {
		return nil, formatErr("dimensions: %v", err)
	}
	dims := make([]int, nd)
	total := 1
	for i := range dims {
		d := binary.BigEndian.Uint32(dimBytes[4*i:])
		if d == 0 {
			return nil, formatErr("dimension %d is zero", i)
		}
		if uint64(d) > uint64(maxElements) || total > maxElements/int(d) {
			return nil, formatErr("dimensions %v... exceed the limit of %d elements", dims[:i+1], maxElements)
		}
		dims[i] = int(d)
		total *= int(d)
	}
	// Read at most total+1 bytes, growing as data arrives, so that a lying header
	// cannot make us allocate more than the input really holds.
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, int64(total)+1))
	if err != nil {
		return nil, formatErr("data: %v", err)
	}
	switch {
	case n < int64(total):
		return nil, formatErr("data: %d bytes, header %v needs %d", n, dims, total)
	case n > int64(total):
		return nil, formatErr("trailing data after %d bytes", total)
	}
	return &IDX{Dims: dims, Data: buf.Bytes()}, nil
}
