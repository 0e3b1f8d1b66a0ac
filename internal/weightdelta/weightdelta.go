// Package weightdelta encodes a new version of a file of model weights as a
// lossless delta against the version it came from, in a way that suits
// floating-point weights that all moved a little, as a full fine-tune
// leaves them.
//
// Content-defined chunks (internal/artifact) send nothing of a layer that
// did not change, but every chunk of a layer whose weights all moved. The
// bytes of such weights still have structure. IEEE floats of one sign are
// ordered like the integers of their bit patterns, so the integer
// difference of a weight's old and new patterns is small when the weight
// moved a little (even across a power of two), and zigzag-encoded it has
// zero high bytes. How small depends on the old weight's exponent (a small
// weight has a fine grid), so the words are put in the order of their old
// exponent before their bytes are grouped by position within the word
// (byte planes): each plane then holds runs of bytes alike, which zstd
// packs, while the noisy low planes cost about what they are. A delta is
//
//	magic "OPWD" | version 2 | width | phase | target length (uvarint) |
//	zstd(planes of the words' zigzag differences | the other bytes XOR base)
//
// with width the word size in bytes (4 for float32, 2 for float16) and
// phase the offset of the first word (weights need not start at a
// multiple of the width: the words are the target's bytes from phase on,
// whole words only; the bytes before and after them travel XORed with the
// base's). Where the base is shorter than the target it reads as zeros.
// Encode picks the width and phase that suit the file (Choose).
//
// Decode does not verify the result: the caller checks it against the
// digest the manifest gives, as any fetched file is checked.
package weightdelta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// Magic starts every delta.
const Magic = "OPWD"

// version is the format's version.
const version = 2

// Widths a delta may use: float32 and float16 words.
const (
	Float32 = 4
	Float16 = 2
)

// Layout is how a delta reads the file as words: Width bytes each (Float32
// or Float16), the first at offset Phase (below Width).
type Layout struct {
	Width, Phase int
}

func (l Layout) check() error {
	if l.Width != Float32 && l.Width != Float16 {
		return fmt.Errorf("weightdelta: width %d: want %d (float32) or %d (float16)", l.Width, Float32, Float16)
	}
	if l.Phase < 0 || l.Phase >= l.Width {
		return fmt.Errorf("weightdelta: phase %d: want 0 to %d", l.Phase, l.Width-1)
	}
	return nil
}

// Encode returns the delta that turns base into target, in the layout
// Choose picks.
func Encode(base, target []byte) ([]byte, error) {
	return EncodeLayout(base, target, Choose(base, target))
}

// sampleBytes bounds the bytes Choose encodes to compare layouts.
const sampleBytes = 1 << 18

// Choose returns the layout under which target's delta against base is
// smallest, judged by encoding a sample from the middle of the file under
// each: float32 before float16 and the lower phase on a tie.
func Choose(base, target []byte) Layout {
	from := (len(target)/2 - sampleBytes/2) &^ 3 // a multiple of both widths, so phases keep their meaning
	from = max(from, 0)
	to := min(len(target), from+sampleBytes)
	b, t := base[min(from, len(base)):min(to, len(base))], target[from:to]
	best, bestSize := Layout{Width: Float32}, -1
	for _, l := range []Layout{{4, 0}, {4, 1}, {4, 2}, {4, 3}, {2, 0}, {2, 1}} {
		d, err := EncodeLayout(b, t, l)
		if err != nil {
			continue
		}
		if bestSize < 0 || len(d) < bestSize {
			best, bestSize = l, len(d)
		}
	}
	return best
}

// word reads the little-endian word of width bytes at off in b, with zeros
// past b's end.
func word(b []byte, off, width int) uint32 {
	if off+width <= len(b) {
		if width == Float32 {
			return binary.LittleEndian.Uint32(b[off : off+4])
		}
		return uint32(binary.LittleEndian.Uint16(b[off : off+2]))
	}
	var w uint32
	for i := width - 1; i >= 0; i-- {
		w <<= 8
		if off+i < len(b) {
			w |= uint32(b[off+i])
		}
	}
	return w
}

// zigzag maps the difference d of two words of width bytes, taken modulo
// 2^(8·width) as a signed number, to an unsigned one that is small when
// |d| is.
func zigzag(d uint32, width int) uint32 {
	if width == Float16 {
		s := int16(d)
		return uint32(uint16(s<<1) ^ uint16(s>>15))
	}
	s := int32(d)
	return uint32(s<<1) ^ uint32(s>>31)
}

// unzigzag undoes zigzag.
func unzigzag(z uint32, width int) uint32 {
	if width == Float16 {
		u := uint16(z)
		return uint32(u>>1 ^ -(u & 1))
	}
	return z>>1 ^ -(z & 1)
}

// bucket is the class of a base word the words are ordered by: its
// exponent field.
func bucket(w uint32, width int) int {
	if width == Float16 {
		return int(w>>10) & 0x1f
	}
	return int(w>>23) & 0xff
}

// starts returns, for each bucket of the words of base (read at phase,
// width bytes each), where its words start in the order of their buckets:
// the first pass of a counting sort, whose second pass each loop below
// makes as it goes, word by word, advancing its bucket's start.
func starts(base []byte, l Layout, words int) [256]int {
	var counts [256]int
	for k := range words {
		counts[bucket(word(base, l.Phase+k*l.Width, l.Width), l.Width)]++
	}
	var start [256]int
	for b, sum := 0, 0; b < len(counts); b++ {
		start[b], sum = sum, sum+counts[b]
	}
	return start
}

// take returns the next place of a word of bucket b, and advances it.
func take(start *[256]int, b int) int {
	i := start[b]
	start[b]++
	return i
}

// EncodeLayout returns the delta that turns base into target, reading both
// as words of layout l.
func EncodeLayout(base, target []byte, l Layout) ([]byte, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	n := len(target)
	words := max(0, (n-l.Phase)/l.Width)
	body := make([]byte, n)
	per := words // bytes of each plane
	start := starts(base, l, words)
	for k := range words {
		off := l.Phase + k*l.Width
		bw := word(base, off, l.Width)
		i := take(&start, bucket(bw, l.Width))
		z := zigzag(word(target, off, l.Width)-bw, l.Width)
		body[i] = byte(z)
		body[per+i] = byte(z >> 8)
		if l.Width == Float32 {
			body[2*per+i] = byte(z >> 16)
			body[3*per+i] = byte(z >> 24)
		}
	}
	rest := body[words*l.Width:]
	for j, i := range restOffsets(n, l, words) {
		rest[j] = target[i] ^ at(base, i)
	}
	var out bytes.Buffer
	out.WriteString(Magic)
	out.Write([]byte{version, byte(l.Width), byte(l.Phase)})
	out.Write(binary.AppendUvarint(nil, uint64(n)))
	enc, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("weightdelta: %w", err)
	}
	if _, err := enc.Write(body); err != nil {
		enc.Close()
		return nil, fmt.Errorf("weightdelta: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("weightdelta: %w", err)
	}
	return out.Bytes(), nil
}

// restOffsets lists the offsets of the target's bytes outside its words:
// those before the phase, then those after the last whole word.
func restOffsets(n int, l Layout, words int) []int {
	var out []int
	for i := 0; i < min(l.Phase, n); i++ {
		out = append(out, i)
	}
	for i := l.Phase + words*l.Width; i < n; i++ {
		out = append(out, i)
	}
	return out
}

// at is b[i], or 0 past b's end.
func at(b []byte, i int) byte {
	if i < len(b) {
		return b[i]
	}
	return 0
}

// maxWindow is the largest zstd window Decode allows on top of the target's
// size: the encoder's streaming frames declare 8 MiB.
const maxWindow = 8 << 20

// Header is what a delta says of itself.
type Header struct {
	// Layout is how it reads the file as words; Size is the target's length.
	Layout
	Size int64
}

// ParseHeader reads a delta's header and returns it with the offset of
// the compressed body.
func ParseHeader(delta []byte) (Header, int, error) {
	if len(delta) < len(Magic)+1 || string(delta[:len(Magic)]) != Magic {
		return Header{}, 0, errors.New("weightdelta: not a weight delta (no OPWD magic)")
	}
	if v := delta[len(Magic)]; v != version {
		return Header{}, 0, fmt.Errorf("weightdelta: format version %d, this build reads %d", v, version)
	}
	if len(delta) < len(Magic)+3 {
		return Header{}, 0, errors.New("weightdelta: header cut short")
	}
	h := Header{Layout: Layout{Width: int(delta[len(Magic)+1]), Phase: int(delta[len(Magic)+2])}}
	if err := h.check(); err != nil {
		return Header{}, 0, err
	}
	n, k := binary.Uvarint(delta[len(Magic)+3:])
	if k <= 0 || n > 1<<62 {
		return Header{}, 0, errors.New("weightdelta: malformed target length")
	}
	h.Size = int64(n)
	return h, len(Magic) + 3 + k, nil
}

// Decode applies delta to base and returns the target. maxSize bounds the
// target's length (the caller knows it from the manifest): a delta that
// claims more, or holds more or less than it claims, is refused.
func Decode(base, delta []byte, maxSize int64) ([]byte, error) {
	h, off, err := ParseHeader(delta)
	if err != nil {
		return nil, err
	}
	if h.Size > maxSize {
		return nil, fmt.Errorf("weightdelta: the delta makes %d bytes, more than the %d expected", h.Size, maxSize)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(h.Size)+maxWindow))
	if err != nil {
		return nil, fmt.Errorf("weightdelta: %w", err)
	}
	defer dec.Close()
	body, err := dec.DecodeAll(delta[off:], make([]byte, 0, h.Size))
	switch {
	case err != nil:
		return nil, fmt.Errorf("weightdelta: the body is damaged, or holds fewer or more bytes than the %d claimed: %w", h.Size, err)
	case int64(len(body)) < h.Size:
		return nil, fmt.Errorf("weightdelta: the body holds fewer bytes than the %d claimed", h.Size)
	case int64(len(body)) > h.Size:
		return nil, fmt.Errorf("weightdelta: the body holds more bytes than the %d claimed", h.Size)
	}
	n, l := int(h.Size), h.Layout
	words := max(0, (n-l.Phase)/l.Width)
	target := make([]byte, n)
	per := words
	start := starts(base, l, words)
	if l.Width == Float32 {
		// The common case, without the generic loops over the planes.
		p0, p1, p2, p3 := body[:per], body[per:2*per], body[2*per:3*per], body[3*per:4*per]
		for k := range words {
			off := l.Phase + k*4
			bw := word(base, off, 4)
			i := take(&start, int(bw>>23&0xff))
			z := uint32(p0[i]) | uint32(p1[i])<<8 | uint32(p2[i])<<16 | uint32(p3[i])<<24
			binary.LittleEndian.PutUint32(target[off:off+4], bw+(z>>1^-(z&1)))
		}
	} else {
		for k := range words {
			off := l.Phase + k*l.Width
			bw := word(base, off, l.Width)
			i := take(&start, bucket(bw, l.Width))
			var z uint32
			for p := range l.Width {
				z |= uint32(body[p*per+i]) << (8 * p)
			}
			w := bw + unzigzag(z, l.Width)
			for p := range l.Width {
				target[off+p] = byte(w >> (8 * p))
			}
		}
	}
	rest := body[words*l.Width:]
	for j, i := range restOffsets(n, l, words) {
		target[i] = rest[j] ^ at(base, i)
	}
	return target, nil
}
