package transfer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/internal/artifact"
)

const (
	// sumBlock is the block size of block sum requests: an in-place edit
	// costs at most about one block beyond its own bytes at each edge, and
	// a 256 KiB chunk's sums are 512 bytes.
	sumBlock = 4 << 10
	// maxSimilarChunk bounds the chunks assembled from block sums, which
	// are held in memory.
	maxSimilarChunk = 16 << 20
)

// fetchSimilar brings in the given remote chunks, each with a similar local
// range, block by block: blocks whose sums match the local range's are
// copied from it, and only the others cross the link. It returns the chunks
// it could not complete this way, for the plain path to fetch whole.
func (r *fetchRun) fetchSimilar(ctx context.Context, chunks []int) []int {
	bs, ok := r.f.src.(BlockSummer)
	var left []int
	for _, i := range chunks {
		if !ok || ctx.Err() != nil {
			left = append(left, i)
			continue
		}
		if err := r.fetchBlocks(ctx, bs, i); err != nil {
			if ctx.Err() == nil {
				r.log.Info("fetching the chunk whole", "chunk", i, "reason", err)
			}
			left = append(left, i)
		}
	}
	return left
}

// fetchBlocks assembles chunk i from its similar local range and the
// blocks that differ, verifies it and writes it to the part file.
func (r *fetchRun) fetchBlocks(ctx context.Context, bs BlockSummer, i int) error {
	c := r.plan.File.Chunks[i]
	if c.Length < 2*sumBlock || c.Length > maxSimilarChunk {
		return errors.New("chunk size unsuited to block sums")
	}
	want, err := bs.BlockSums(ctx, r.plan.File.Digest, c.Offset, c.Length, sumBlock)
	if err != nil {
		return fmt.Errorf("block sums: %w", err)
	}
	r.addStats(func(s *Stats) { s.RemoteBytes += int64(len(want)); s.Requests++ })
	buf := make([]byte, c.Length)
	held := readSimilar(r.plan.Similar[i], buf)
	have := artifact.AppendBlockSums(nil, buf[:held], sumBlock)
	var matched int64
	var ranges [][2]int64 // chunk-relative [from, to) to fetch
	for b := int64(0); b*sumBlock < c.Length; b++ {
		from, to := b*sumBlock, min((b+1)*sumBlock, c.Length)
		s := want[b*artifact.BlockSumSize : (b+1)*artifact.BlockSumSize]
		if to <= held && bytes.Equal(s, have[b*artifact.BlockSumSize:(b+1)*artifact.BlockSumSize]) {
			matched += to - from
			continue
		}
		if n := len(ranges); n > 0 && ranges[n-1][1] == from {
			ranges[n-1][1] = to
		} else {
			ranges = append(ranges, [2]int64{from, to})
		}
	}
	if matched == 0 {
		return errors.New("no block of the similar range matches")
	}
	for _, rg := range ranges {
		if err := r.readRange(ctx, c.Offset+rg[0], buf[rg[0]:rg[1]]); err != nil {
			return err
		}
	}
	if got := digest.NewDigestFromBytes(digest.SHA256, sha256Sum(buf)); got != c.Digest {
		r.addStats(func(s *Stats) { s.Corrupt++ })
		return fmt.Errorf("assembled from block sums, the chunk's digest is %s, want %s", got, c.Digest)
	}
	if _, err := r.part.WriteAt(buf, c.Offset); err != nil {
		return fmt.Errorf("write part file: %w", err)
	}
	r.markDone(i)
	r.addStats(func(s *Stats) { s.SimilarBytes += matched })
	return nil
}

// readSimilar reads the similar range ref into buf and returns how many
// bytes it holds: fewer when the file is shorter or unreadable.
func readSimilar(ref ChunkRef, buf []byte) int64 {
	f, err := os.Open(ref.Path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n, _ := f.ReadAt(buf[:ref.Length], ref.Offset)
	return int64(n)
}

// readRange fills dst with the bytes of the file from off, taking the
// bandwidth from the Fetcher's gate.
func (r *fetchRun) readRange(ctx context.Context, off int64, dst []byte) error {
	r.addStats(func(st *Stats) { st.Requests++ })
	rc, err := r.f.src.OpenRange(ctx, r.plan.File.Digest, off, int64(len(dst)))
	if err != nil {
		return err
	}
	defer rc.Close()
	for got := 0; got < len(dst); {
		want := r.f.readSize(len(dst) - got)
		if r.f.gate != nil {
			if err := r.f.gate.wait(ctx, r.prio, want); err != nil {
				return err
			}
		}
		k, err := io.ReadFull(rc, dst[got:got+want])
		if k > 0 {
			r.addStats(func(st *Stats) { st.RemoteBytes += int64(k) })
			r.reportProgress(int64(k))
			got += k
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
