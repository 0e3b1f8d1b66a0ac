// Package weightdelta encodes a new version of a file of model weights as a
// lossless delta against the version it came from, in a way that suits
// floating-point weights that all moved a little, as a full fine-tune
// leaves them.
//
// Content-defined chunks (internal/artifact) send nothing of a layer that
// did not change, but every chunk of a layer whose weights all moved. The
// bytes of such weights still have structure: a float32 that moved a
// little keeps its sign and exponent, so the XOR of its old and new bit
// patterns is zero in its high byte and most of the next, and noise only
// in the low mantissa bytes. Grouping the XOR's bytes by their position
// within a word (byte planes) puts those zero runs together, and zstd
// compresses them to almost nothing, while the noisy planes cost about
// what they are. A delta is then
//
//	magic "OPWD" | version 1 | width | target length (uvarint) | zstd(planes(target XOR base))
//
// with width the word size in bytes (4 for float32, 2 for float16). The
// XOR covers the bytes both files have; what the target has beyond the base
// is XORed with zeros. Words need not be aligned to the file's start: the
// weights of one tensor all have the same offset modulo the width, so
// they share planes, only rotated.
//
// Decode does not verify the result: the caller checks it against the
// digest the manifest gives, as any fetched file is checked.
package weightdelta

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Magic starts every delta.
const Magic = "OPWD"

// version is the format's version.
const version = 1

// Widths a delta may use: float32 and float16 words.
const (
	Float32 = 4
	Float16 = 2
)

// Encode returns the delta that turns base into target, for words of
// width bytes (Float32 or Float16).
func Encode(base, target []byte, width int) ([]byte, error) {
	if width != Float32 && width != Float16 {
		return nil, fmt.Errorf("weightdelta: width %d: want %d (float32) or %d (float16)", width, Float32, Float16)
	}
	planes := make([]byte, len(target))
	per := (len(target) + width - 1) / width // bytes of the largest plane
	offsets := make([]int, width)
	for p := range width {
		offsets[p] = planeStart(len(target), width, per, p)
	}
	for i, t := range target {
		if i < len(base) {
			t ^= base[i]
		}
		p := i % width
		planes[offsets[p]] = t
		offsets[p]++
	}
	var out bytes.Buffer
	out.WriteString(Magic)
	out.WriteByte(version)
	out.WriteByte(byte(width))
	out.Write(binary.AppendUvarint(nil, uint64(len(target))))
	enc, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("weightdelta: %w", err)
	}
	if _, err := enc.Write(planes); err != nil {
		enc.Close()
		return nil, fmt.Errorf("weightdelta: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("weightdelta: %w", err)
	}
	return out.Bytes(), nil
}

// planeStart is where plane p starts among the planes of n bytes: planes
// below n%width (when it is not 0) hold per bytes, the others per-1.
func planeStart(n, width, per, p int) int {
	full := n % width
	if full == 0 {
		return p * per
	}
	if p <= full {
		return p * per
	}
	return full*per + (p-full)*(per-1)
}

// Header is what a delta says of itself.
type Header struct {
	// Width is the word size of its planes; Size the target's length.
	Width int
	Size  int64
}

// ParseHeader reads a delta's header and returns it with the offset of
// the compressed planes.
func ParseHeader(delta []byte) (Header, int, error) {
	if len(delta) < len(Magic)+2 || string(delta[:len(Magic)]) != Magic {
		return Header{}, 0, errors.New("weightdelta: not a weight delta (no OPWD magic)")
	}
	if v := delta[len(Magic)]; v != version {
		return Header{}, 0, fmt.Errorf("weightdelta: format version %d, this build reads %d", v, version)
	}
	h := Header{Width: int(delta[len(Magic)+1])}
	if h.Width != Float32 && h.Width != Float16 {
		return Header{}, 0, fmt.Errorf("weightdelta: width %d", h.Width)
	}
	n, k := binary.Uvarint(delta[len(Magic)+2:])
	if k <= 0 || n > 1<<62 {
		return Header{}, 0, errors.New("weightdelta: malformed target length")
	}
	h.Size = int64(n)
	return h, len(Magic) + 2 + k, nil
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
	dec, err := zstd.NewReader(bytes.NewReader(delta[off:]), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(max(h.Size+1, 1<<20))))
	if err != nil {
		return nil, fmt.Errorf("weightdelta: %w", err)
	}
	defer dec.Close()
	planes := make([]byte, h.Size)
	if _, err := io.ReadFull(dec, planes); err != nil {
		return nil, fmt.Errorf("weightdelta: the planes hold fewer bytes than the %d claimed: %w", h.Size, err)
	}
	if n, _ := dec.Read(make([]byte, 1)); n > 0 {
		return nil, fmt.Errorf("weightdelta: the planes hold more bytes than the %d claimed", h.Size)
	}
	n, width := int(h.Size), h.Width
	per := (n + width - 1) / width
	offsets := make([]int, width)
	for p := range width {
		offsets[p] = planeStart(n, width, per, p)
	}
	target := make([]byte, n)
	for i := range target {
		p := i % width
		t := planes[offsets[p]]
		offsets[p]++
		if i < len(base) {
			t ^= base[i]
		}
		target[i] = t
	}
	return target, nil
}
