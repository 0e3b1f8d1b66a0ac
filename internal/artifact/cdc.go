package artifact

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// ChunkParams are the content-defined chunking sizes, in bytes. Avg must be a
// power of two with Min < Avg < Max.
type ChunkParams struct {
	Min int `json:"min"`
	Avg int `json:"avg"`
	Max int `json:"max"`
}

// Chunking bounds accepted by ChunkParams.Validate.
const (
	minChunkMin = 64       // one gear window
	maxChunkMax = 64 << 20 // bounds the chunker buffer
)

// DefaultChunkParams returns the default chunk sizes: 256 KiB minimum, 1 MiB
// average, 4 MiB maximum (see docs/artifact-format.md for the reasoning).
func DefaultChunkParams() ChunkParams {
	return ChunkParams{Min: 256 << 10, Avg: 1 << 20, Max: 4 << 20}
}

// ChunkParamsForSize picks chunk sizes for a model whose largest file is
// size bytes. Small models get small chunks, so that a fine-tune that
// changes a tenth of a 5 MiB file does not mean fetching the whole file, and
// large ones keep DefaultChunkParams, so that the index stays small. The
// tiers are coarse on purpose: two versions of one model have about the
// same size and so the same chunking, which is what lets chunks match
// across versions.
//
//	size <= 32 MiB:  16 KiB min,  64 KiB average, 256 KiB max
//	size <= 256 MiB: 64 KiB min, 256 KiB average,   1 MiB max
//	larger:          DefaultChunkParams
func ChunkParamsForSize(size int64) ChunkParams {
	switch {
	case size <= 32<<20:
		return ChunkParams{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}
	case size <= 256<<20:
		return ChunkParams{Min: 64 << 10, Avg: 256 << 10, Max: 1 << 20}
	}
	return DefaultChunkParams()
}

// Validate reports whether p is usable.
func (p ChunkParams) Validate() error {
	switch {
	case p.Min < minChunkMin:
		return fmt.Errorf("invalid chunk params: min %d below %d", p.Min, minChunkMin)
	case p.Max > maxChunkMax:
		return fmt.Errorf("invalid chunk params: max %d above %d", p.Max, maxChunkMax)
	case !(p.Min < p.Avg && p.Avg < p.Max):
		return fmt.Errorf("invalid chunk params: need min < avg < max, got %d, %d, %d", p.Min, p.Avg, p.Max)
	case p.Avg&(p.Avg-1) != 0:
		return fmt.Errorf("invalid chunk params: avg %d is not a power of two", p.Avg)
	}
	return nil
}

// orDefault returns p, or the defaults when p is the zero value.
func (p ChunkParams) orDefault() ChunkParams {
	if p == (ChunkParams{}) {
		return DefaultChunkParams()
	}
	return p
}

// gear is the FastCDC gear table: 256 pseudo-random 64-bit values from
// splitmix64 seeded with 0. It is part of the chunk index format: changing
// it moves every chunk boundary.
var gear = func() (t [256]uint64) {
	var x uint64
	for i := range t {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		t[i] = z ^ (z >> 31)
	}
	return t
}()

// topMask returns a mask of the n most significant bits of a uint64. A gear
// hash's high bits depend on the last 64 bytes, its low bits on fewer, so
// cut-point masks use the high bits.
func topMask(n int) uint64 { return ^uint64(0) << (64 - n) }

// Chunker splits a stream into content-defined chunks with FastCDC: a gear
// rolling hash, cut-point skipping below Min, and normalized chunking (a
// stricter mask before Avg and a looser one after it), which keeps chunk
// sizes close to Avg. Boundaries depend only on nearby content, so inserting
// or changing bytes moves only the chunks around the edit.
//
// A Chunker holds one buffer of 2*Max bytes and can be reused with Reset.
type Chunker struct {
	p            ChunkParams
	maskS, maskL uint64
	r            io.Reader
	buf          []byte
	start, end   int // unconsumed data is buf[start:end]
	eof          bool
	err          error
}

// NewChunker returns a Chunker reading r.
func NewChunker(r io.Reader, p ChunkParams) (*Chunker, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b := bits.TrailingZeros(uint(p.Avg))
	return &Chunker{
		p:     p,
		maskS: topMask(b + 2),
		maskL: topMask(b - 2),
		r:     r,
		buf:   make([]byte, 2*p.Max),
	}, nil
}

// Reset makes c read r from the start, keeping its buffer.
func (c *Chunker) Reset(r io.Reader) {
	c.r, c.start, c.end, c.eof, c.err = r, 0, 0, false, nil
}

// Next returns the next chunk. The slice is valid until the next call to Next
// or Reset. At the end of the stream it returns io.EOF.
func (c *Chunker) Next() ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	if c.end-c.start < c.p.Max && !c.eof {
		if err := c.fill(); err != nil {
			c.err = err
			return nil, err
		}
	}
	if c.start == c.end {
		c.err = io.EOF
		return nil, io.EOF
	}
	data := c.buf[c.start:c.end]
	n := c.cut(data)
	c.start += n
	return data[:n:n], nil
}

// fill compacts the buffer and reads until it holds Max bytes or the stream
// ends.
func (c *Chunker) fill() error {
	if c.start > 0 {
		c.end = copy(c.buf, c.buf[c.start:c.end])
		c.start = 0
	}
	for c.end < c.p.Max && !c.eof {
		n, err := c.r.Read(c.buf[c.end:])
		c.end += n
		if errors.Is(err, io.EOF) {
			c.eof = true
		} else if err != nil {
			return err
		}
	}
	return nil
}

// cut returns the length of the chunk at the start of data.
func (c *Chunker) cut(data []byte) int {
	n := len(data)
	if n <= c.p.Min {
		return n
	}
	if n > c.p.Max {
		n = c.p.Max
	}
	normal := c.p.Avg
	if normal > n {
		normal = n
	}
	// Warm the hash over the window before Min so that a cut right at Min
	// already depends on a full 64-byte window.
	var fp uint64
	for _, b := range data[c.p.Min-64 : c.p.Min] {
		fp = (fp << 1) + gear[b]
	}
	i := c.p.Min
	for _, b := range data[i:normal] {
		fp = (fp << 1) + gear[b]
		i++
		if fp&c.maskS == 0 {
			return i
		}
	}
	for _, b := range data[i:n] {
		fp = (fp << 1) + gear[b]
		i++
		if fp&c.maskL == 0 {
			return i
		}
	}
	return n
}
