package artifact

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// Block sums let a client that holds a range similar to a missing chunk
// (the bytes that followed the chunk's unchanged neighbour in an older
// version, say) fetch only the blocks of the chunk that differ: the hub
// returns the sums of the chunk's blocks, the client compares them with the
// sums of its own range, and asks for the rest by HTTP Range. The chunk's
// full SHA-256 is still checked once it is assembled, so a weak block sum
// costs at most a re-fetch, never bad data.
const (
	// BlockSumSize is the length of one block sum: the first bytes of the
	// block's SHA-256.
	BlockSumSize = 8
	// MinSumBlock and MaxSumBlock bound the block size of a block sum
	// request.
	MinSumBlock = 512
	MaxSumBlock = 1 << 20
	// MaxSumRange bounds the bytes one block sum request covers: the
	// largest chunk.
	MaxSumRange = maxChunkMax
)

// BlockSums returns the block sums of the n bytes read from r, cut into
// blocks of block bytes (the last block may be shorter): BlockSumSize
// bytes per block, in order. It reads with one buffer of block bytes.
func BlockSums(r io.Reader, n int64, block int) ([]byte, error) {
	if block < MinSumBlock || block > MaxSumBlock {
		return nil, fmt.Errorf("block size %d outside [%d, %d]", block, MinSumBlock, MaxSumBlock)
	}
	if n < 0 || n > MaxSumRange {
		return nil, fmt.Errorf("range of %d bytes outside [0, %d]", n, MaxSumRange)
	}
	blocks := (n + int64(block) - 1) / int64(block)
	out := make([]byte, 0, blocks*BlockSumSize)
	buf := make([]byte, min(int64(block), n))
	for n > 0 {
		k := min(int64(block), n)
		if _, err := io.ReadFull(r, buf[:k]); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		sum := sha256.Sum256(buf[:k])
		out = append(out, sum[:BlockSumSize]...)
		n -= k
	}
	return out, nil
}

// AppendBlockSums appends to dst the block sums of b, as BlockSums would
// compute them over b's bytes.
func AppendBlockSums(dst, b []byte, block int) []byte {
	for len(b) > 0 {
		k := min(block, len(b))
		sum := sha256.Sum256(b[:k])
		dst = append(dst, sum[:BlockSumSize]...)
		b = b[k:]
	}
	return dst
}
