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
// packs, while the noisy low planes cost about what they are. The words go
// in blocks of at most a few million, each sorted and compressed on its
// own, so that encoding runs on every core and decoding streams in bounded
// memory. A delta is
//
//	magic "OPWD" | version 3 | width | phase | target length (uvarint) |
//	words per block (uvarint) | the bytes before the first word, XOR base |
//	per block: frame length (uvarint) | zstd frame of the block's planes |
//	the bytes after the last whole word, XOR base
//
// with width the word size in bytes (4 for float32, 2 for float16) and
// phase the offset of the first word (weights need not start at a
// multiple of the width: the words are the target's bytes from phase on,
// whole words only). Where the base is shorter than the target it reads as
// zeros. Encode picks the width and phase that suit the file (Choose).
//
// Decode does not verify the result: the caller checks it against the
// digest the manifest gives, as any fetched file is checked.
package weightdelta

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// Magic starts every delta.
const Magic = "OPWD"

// version is the format's version.
const version = 3

// BlockWords is how many words Encode puts in a block; MaxBlockWords bounds
// what a delta may declare (and so a decoder's memory: a block's bytes a few
// times over).
const (
	BlockWords    = 1 << 22
	MaxBlockWords = 1 << 24
)

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

// starts returns, for each bucket of the words [from, to) of base (read
// at phase, width bytes each), where its words start in the order of their
// buckets: the first pass of a counting sort, whose second pass each loop
// makes as it goes, word by word, advancing its bucket's start (take).
func starts(base []byte, l Layout, from, to int) [256]int {
	var counts [256]int
	for k := from; k < to; k++ {
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
// as words of layout l. Its blocks are encoded on every core.
func EncodeLayout(base, target []byte, l Layout) ([]byte, error) {
	return encodeBlocks(base, target, l, BlockWords)
}

func encodeBlocks(base, target []byte, l Layout, blockWords int) ([]byte, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	n := len(target)
	words := max(0, (n-l.Phase)/l.Width)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("weightdelta: %w", err)
	}
	defer enc.Close()
	blocks := (words + blockWords - 1) / blockWords
	frames := make([][]byte, blocks)
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(runtime.GOMAXPROCS(0), max(blocks, 1)) {
		wg.Go(func() {
			body := make([]byte, 0, min(words, blockWords)*l.Width)
			for j := range next {
				from := j * blockWords
				body = planes(body[:0], base, target, l, from, min(words, from+blockWords))
				// EncodeAll may run concurrently on one encoder.
				frames[j] = enc.EncodeAll(body, nil)
			}
		})
	}
	for j := range blocks {
		next <- j
	}
	close(next)
	wg.Wait()
	out := []byte(Magic)
	out = append(out, version, byte(l.Width), byte(l.Phase))
	out = binary.AppendUvarint(out, uint64(n))
	out = binary.AppendUvarint(out, uint64(blockWords))
	for i := range min(l.Phase, n) {
		out = append(out, target[i]^at(base, i))
	}
	for _, f := range frames {
		out = binary.AppendUvarint(out, uint64(len(f)))
		out = append(out, f...)
	}
	for i := l.Phase + words*l.Width; i < n; i++ {
		out = append(out, target[i]^at(base, i))
	}
	return out, nil
}

// planes appends to body the byte planes of the zigzag differences of
// words [from, to) of target against base, in the order of their base
// words' buckets (stable within a bucket).
func planes(body, base, target []byte, l Layout, from, to int) []byte {
	count := to - from
	body = append(body, make([]byte, count*l.Width)...)
	start := starts(base, l, from, to)
	for k := from; k < to; k++ {
		off := l.Phase + k*l.Width
		bw := word(base, off, l.Width)
		i := take(&start, bucket(bw, l.Width))
		z := zigzag(word(target, off, l.Width)-bw, l.Width)
		for p := range l.Width {
			body[p*count+i] = byte(z >> (8 * p))
		}
	}
	return body
}

// at is b[i], or 0 past b's end.
func at(b []byte, i int) byte {
	if i < len(b) {
		return b[i]
	}
	return 0
}

// maxWindow is the largest zstd window a decoder allows on top of a
// block's size.
const maxWindow = 8 << 20

// Header is what a delta says of itself.
type Header struct {
	// Layout is how it reads the file as words; Size is the target's
	// length; BlockWords the words per block.
	Layout
	Size       int64
	BlockWords int
}

// Words is the number of whole words of the target.
func (h Header) Words() int64 { return max(0, (h.Size-int64(h.Phase))/int64(h.Width)) }

// readHeader reads a delta's header from r.
func readHeader(r *bufio.Reader) (Header, error) {
	var fixed [len(Magic) + 4]byte
	if _, err := io.ReadFull(r, fixed[:len(Magic)+1]); err != nil || string(fixed[:len(Magic)]) != Magic {
		return Header{}, errors.New("weightdelta: not a weight delta (no OPWD magic)")
	}
	if v := fixed[len(Magic)]; v != version {
		return Header{}, fmt.Errorf("weightdelta: format version %d, this build reads %d", v, version)
	}
	if _, err := io.ReadFull(r, fixed[len(Magic)+1:len(Magic)+3]); err != nil {
		return Header{}, errors.New("weightdelta: header cut short")
	}
	h := Header{Layout: Layout{Width: int(fixed[len(Magic)+1]), Phase: int(fixed[len(Magic)+2])}}
	if err := h.check(); err != nil {
		return Header{}, err
	}
	n, err := binary.ReadUvarint(r)
	if err != nil || n > 1<<62 {
		return Header{}, errors.New("weightdelta: malformed target length")
	}
	h.Size = int64(n)
	b, err := binary.ReadUvarint(r)
	if err != nil || b < 1 || b > MaxBlockWords {
		return Header{}, fmt.Errorf("weightdelta: malformed block size (at most %d words)", MaxBlockWords)
	}
	h.BlockWords = int(b)
	return h, nil
}

// ParseHeader reads the header of a delta.
func ParseHeader(delta []byte) (Header, error) {
	return readHeader(bufio.NewReader(bytes.NewReader(delta)))
}

// Decode applies delta to base and returns the target. maxSize bounds the
// target's length (the caller knows it from the manifest): a delta that
// claims more, or holds more or less than it claims, is refused.
func Decode(base, delta []byte, maxSize int64) ([]byte, error) {
	var out bytes.Buffer
	if h, err := ParseHeader(delta); err == nil && h.Size <= maxSize {
		out.Grow(int(h.Size))
	}
	if _, err := DecodeTo(&out, bytes.NewReader(base), bytes.NewReader(delta), maxSize); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// DecodeTo applies the delta read from delta to the file base and writes
// the target to w, front to back, a block at a time: its memory is a few
// times a block's bytes, whatever the file's size. It returns the bytes
// written. maxSize bounds the target's length; a delta that claims more,
// holds more or less than it claims, or whose frames do not decode is
// refused (w may have received part of the target then).
func DecodeTo(w io.Writer, base io.ReaderAt, delta io.Reader, maxSize int64) (int64, error) {
	r := bufio.NewReaderSize(delta, 1<<16)
	h, err := readHeader(r)
	if err != nil {
		return 0, err
	}
	if h.Size > maxSize {
		return 0, fmt.Errorf("weightdelta: the delta makes %d bytes, more than the %d expected", h.Size, maxSize)
	}
	l, words := h.Layout, int(h.Words())
	blockBytes := min(words, h.BlockWords) * l.Width
	blocks := (words + h.BlockWords - 1) / h.BlockWords
	workers := max(1, min(runtime.GOMAXPROCS(0), blocks))
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(workers), zstd.WithDecoderMaxMemory(uint64(blockBytes)+maxWindow))
	if err != nil {
		return 0, fmt.Errorf("weightdelta: %w", err)
	}
	defer dec.Close()
	var written int64
	// raw copies the n bytes of the target at off that travel XORed with
	// the base.
	raw := func(off int64, n int) error {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return errors.New("weightdelta: the delta is cut short")
		}
		b := make([]byte, n)
		readBase(base, b, off)
		for i := range buf {
			buf[i] ^= b[i]
		}
		k, err := w.Write(buf)
		written += int64(k)
		return err
	}
	if err := raw(0, int(min(int64(l.Phase), h.Size))); err != nil {
		return written, err
	}
	n, err := decodeBlocks(w, base, r, dec, h, workers)
	written += n
	if err != nil {
		return written, err
	}
	if tail := h.Size - int64(l.Phase) - int64(words)*int64(l.Width); tail > 0 {
		if err := raw(int64(l.Phase)+int64(words)*int64(l.Width), int(tail)); err != nil {
			return written, err
		}
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return written, fmt.Errorf("weightdelta: the delta holds more bytes than the %d it makes", h.Size)
	}
	return written, nil
}

// block is one block of words on its way through decodeBlocks.
type block struct {
	from, count int
	buf         *blockBuf
	err         error
	done        chan struct{}
}

// blockBuf holds what decoding a block needs.
type blockBuf struct {
	frame, body, base, target []byte
}

// decodeBlocks reads the blocks' frames from r in order, decodes them on
// workers goroutines and writes the rebuilt words to w in order, holding
// at most workers+1 blocks at a time. It returns the bytes written.
func decodeBlocks(w io.Writer, base io.ReaderAt, r *bufio.Reader, dec *zstd.Decoder, h Header, workers int) (int64, error) {
	l, words := h.Layout, int(h.Words())
	if words == 0 {
		return 0, nil
	}
	blockBytes := min(words, h.BlockWords) * l.Width
	free := make(chan *blockBuf, workers+1)
	for range workers + 1 {
		free <- &blockBuf{frame: make([]byte, 0, blockBytes+blockBytes/64+1024), body: make([]byte, 0, blockBytes),
			base: make([]byte, blockBytes), target: make([]byte, blockBytes)}
	}
	work, pending := make(chan *block), make(chan *block, workers+1)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for b := range work {
				b.err = b.decode(base, dec, l)
				close(b.done)
			}
		})
	}
	var failed atomic.Bool
	var written int64
	wrote := make(chan error, 1)
	go func() {
		var err error
		for b := range pending {
			<-b.done
			if err == nil {
				err = b.err
			}
			if err == nil {
				var k int
				k, err = w.Write(b.buf.target[:b.count*l.Width])
				written += int64(k)
			}
			if err != nil {
				failed.Store(true)
			}
			free <- b.buf
		}
		wrote <- err
	}()
	var readErr error
	for from := 0; from < words && !failed.Load(); from += h.BlockWords {
		buf := <-free
		fl, err := binary.ReadUvarint(r)
		if err != nil || fl > uint64(cap(buf.frame)) {
			readErr = fmt.Errorf("weightdelta: block at word %d: malformed frame length", from)
			break
		}
		buf.frame = buf.frame[:fl]
		if _, err := io.ReadFull(r, buf.frame); err != nil {
			readErr = errors.New("weightdelta: the delta is cut short")
			break
		}
		b := &block{from: from, count: min(words-from, h.BlockWords), buf: buf, done: make(chan struct{})}
		pending <- b
		work <- b
	}
	close(work)
	close(pending)
	err := <-wrote
	wg.Wait()
	if err == nil {
		err = readErr
	}
	return written, err
}

// decode rebuilds the block's words into its target buffer.
func (b *block) decode(base io.ReaderAt, dec *zstd.Decoder, l Layout) error {
	size := b.count * l.Width
	body, err := dec.DecodeAll(b.buf.frame, b.buf.body[:0])
	if err != nil || len(body) != size {
		return fmt.Errorf("weightdelta: block at word %d is damaged, or holds other than its %d bytes: %v", b.from, size, err)
	}
	b.buf.body = body
	readBase(base, b.buf.base[:size], int64(l.Phase)+int64(b.from)*int64(l.Width))
	unplanes(b.buf.target[:size], body, b.buf.base[:size], l.Width, b.count)
	return nil
}

// readBase reads len(b) bytes of base at off into b, zeros past its end.
func readBase(base io.ReaderAt, b []byte, off int64) {
	n, _ := base.ReadAt(b, off)
	clear(b[max(n, 0):])
}

// unplanes rebuilds count words of width bytes into target from their
// planes in body and the base's words at the same place (in baseBlock).
func unplanes(target, body, baseBlock []byte, width, count int) {
	start := starts(baseBlock, Layout{Width: width}, 0, count)
	if width == Float32 {
		// The common case, without the generic loops over the planes.
		p0, p1, p2, p3 := body[:count], body[count:2*count], body[2*count:3*count], body[3*count:4*count]
		for k := range count {
			bw := binary.LittleEndian.Uint32(baseBlock[4*k : 4*k+4])
			i := take(&start, int(bw>>23&0xff))
			z := uint32(p0[i]) | uint32(p1[i])<<8 | uint32(p2[i])<<16 | uint32(p3[i])<<24
			binary.LittleEndian.PutUint32(target[4*k:4*k+4], bw+(z>>1^-(z&1)))
		}
		return
	}
	for k := range count {
		bw := word(baseBlock, k*width, width)
		i := take(&start, bucket(bw, width))
		var z uint32
		for p := range width {
			z |= uint32(body[p*count+i]) << (8 * p)
		}
		w := bw + unzigzag(z, width)
		for p := range width {
			target[k*width+p] = byte(w >> (8 * p))
		}
	}
}
