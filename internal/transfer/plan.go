package transfer

import (
	"fmt"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/internal/artifact"
)

// ChunkRef is where a verified copy of a chunk lies locally: Length bytes
// at Offset in the file at Path.
type ChunkRef struct {
	Path           string
	Offset, Length int64
}

// Plan says where each chunk of File comes from. Local and Copies are keyed
// by index into File.Chunks, and Remote lists indexes in ascending order.
// Every chunk is in exactly one of Local, Remote and Copies.
type Plan struct {
	// File is the file to assemble.
	File artifact.FileChunks
	// Local maps a chunk to a local copy of its bytes.
	Local map[int]ChunkRef
	// Remote lists the chunks to fetch from the source.
	Remote []int
	// Copies maps a chunk to an earlier chunk of Remote with the same
	// digest: its bytes are copied from the assembled file instead of
	// crossing the link twice.
	Copies map[int]int
	// Similar maps some chunks of Remote to a local range that probably
	// shares most of their bytes: the range that follows, in a local file,
	// the copy of the chunk's local predecessor, or that precedes the copy
	// of its local successor. An in-place edit (fine-tuning some weights)
	// leaves a chunk whose start or end is unchanged where the edit
	// begins or ends; with block sums from the source, only the blocks
	// that differ need to cross the link. The range may run past the end
	// of its file, or hold nothing alike: it is only a hint.
	Similar map[int]ChunkRef
}

// NewPlan works out where each chunk of file comes from. A chunk for which
// have returns a ChunkRef of the right length is local; a chunk whose digest
// an earlier remote chunk already has is a copy of it; every other chunk is
// remote. have may be nil, making every chunk remote. NewPlan does no I/O
// beyond what have does.
func NewPlan(file artifact.FileChunks, have func(d digest.Digest) (ChunkRef, bool)) Plan {
	p := Plan{File: file, Local: map[int]ChunkRef{}, Copies: map[int]int{}}
	firstRemote := map[digest.Digest]int{}
	for i, c := range file.Chunks {
		if have != nil {
			if ref, ok := have(c.Digest); ok && ref.Length == c.Length && ref.Offset >= 0 {
				p.Local[i] = ref
				continue
			}
		}
		if j, ok := firstRemote[c.Digest]; ok && file.Chunks[j].Length == c.Length {
			p.Copies[i] = j
			continue
		}
		firstRemote[c.Digest] = i
		p.Remote = append(p.Remote, i)
	}
	p.Similar = similarRanges(file, p.Local, p.Remote)
	return p
}

// similarEdge is how many chunks at each end of a run of non-local chunks
// get a similar range. An in-place edit leaves unchanged bytes in the
// chunk where it begins and in the chunk where it ends; after the end, the
// chunker may cut the next chunk at a new place too before it falls back
// in step with the old cuts, so two chunks are tried on each side.
const similarEdge = 2

// similarRanges finds, for the remote chunks at each end of a run of
// chunks held nowhere locally, the local range at the same distance from
// the local chunk that borders the run (see Plan.Similar).
func similarRanges(file artifact.FileChunks, local map[int]ChunkRef, remote []int) map[int]ChunkRef {
	isRemote := make(map[int]bool, len(remote))
	for _, i := range remote {
		isRemote[i] = true
	}
	out := map[int]ChunkRef{}
	// aligned is chunk j's range in the file of ref, the local copy of
	// chunk k, at the same distance from it as in file.
	aligned := func(j, k int, ref ChunkRef) {
		c := file.Chunks[j]
		off := ref.Offset + c.Offset - file.Chunks[k].Offset
		if isRemote[j] && off >= 0 {
			out[j] = ChunkRef{Path: ref.Path, Offset: off, Length: c.Length}
		}
	}
	for a := 0; a < len(file.Chunks); a++ {
		if _, ok := local[a]; ok {
			continue
		}
		b := a // the run is chunks a to b
		for b+1 < len(file.Chunks) {
			if _, ok := local[b+1]; ok {
				break
			}
			b++
		}
		if next, ok := local[b+1]; ok {
			for j := b; j >= max(a, b-similarEdge+1); j-- {
				aligned(j, b+1, next)
			}
		}
		if prev, ok := local[a-1]; ok {
			for j := a; j <= min(b, a+similarEdge-1); j++ {
				aligned(j, a-1, prev)
			}
		}
		a = b
	}
	return out
}

// RemoteBytes is how many bytes the plan fetches from the source.
func (p Plan) RemoteBytes() int64 {
	var n int64
	for _, i := range p.Remote {
		n += p.File.Chunks[i].Length
	}
	return n
}

// LocalBytes is how many bytes the plan copies from local files.
func (p Plan) LocalBytes() int64 {
	var n int64
	for i := range p.Local {
		n += p.File.Chunks[i].Length
	}
	return n
}

// CopiedBytes is how many bytes the plan copies from chunks fetched earlier
// in the same file.
func (p Plan) CopiedBytes() int64 {
	var n int64
	for i := range p.Copies {
		n += p.File.Chunks[i].Length
	}
	return n
}

// Validate checks that the plan names every chunk of its file exactly once,
// that copies refer to remote chunks of the same digest and length, and that
// the chunks tile the file.
func (p Plan) Validate() error {
	f := p.File
	if err := f.Digest.Validate(); err != nil {
		return fmt.Errorf("plan for %q: file digest: %w", f.Path, err)
	}
	var off int64
	for i, c := range f.Chunks {
		if c.Offset != off || c.Length < 1 {
			return fmt.Errorf("plan for %q: chunk %d at offset %d length %d does not follow the previous chunk", f.Path, i, c.Offset, c.Length)
		}
		if err := c.Digest.Validate(); err != nil {
			return fmt.Errorf("plan for %q: chunk %d: %w", f.Path, i, err)
		}
		off += c.Length
	}
	if off != f.Size {
		return fmt.Errorf("plan for %q: chunks cover %d of %d bytes", f.Path, off, f.Size)
	}
	seen := make([]bool, len(f.Chunks))
	mark := func(i int, what string) error {
		if i < 0 || i >= len(f.Chunks) {
			return fmt.Errorf("plan for %q: %s chunk %d out of range", f.Path, what, i)
		}
		if seen[i] {
			return fmt.Errorf("plan for %q: chunk %d planned twice", f.Path, i)
		}
		seen[i] = true
		return nil
	}
	for i, ref := range p.Local {
		if err := mark(i, "local"); err != nil {
			return err
		}
		if ref.Length != f.Chunks[i].Length || ref.Offset < 0 {
			return fmt.Errorf("plan for %q: local chunk %d has length %d at offset %d, want length %d", f.Path, i, ref.Length, ref.Offset, f.Chunks[i].Length)
		}
	}
	remote := map[int]bool{}
	for k, i := range p.Remote {
		if err := mark(i, "remote"); err != nil {
			return err
		}
		if k > 0 && i <= p.Remote[k-1] {
			return fmt.Errorf("plan for %q: remote chunks not in ascending order", f.Path)
		}
		remote[i] = true
	}
	for i, j := range p.Copies {
		if err := mark(i, "copied"); err != nil {
			return err
		}
		if !remote[j] || f.Chunks[j].Digest != f.Chunks[i].Digest || f.Chunks[j].Length != f.Chunks[i].Length {
			return fmt.Errorf("plan for %q: chunk %d copies chunk %d, which is not a remote chunk with the same content", f.Path, i, j)
		}
	}
	for i, ok := range seen {
		if !ok {
			return fmt.Errorf("plan for %q: chunk %d has no source", f.Path, i)
		}
	}
	for i, ref := range p.Similar {
		if !remote[i] || ref.Length != f.Chunks[i].Length || ref.Offset < 0 {
			return fmt.Errorf("plan for %q: similar range of chunk %d: not a remote chunk, or length %d at offset %d", f.Path, i, ref.Length, ref.Offset)
		}
	}
	return nil
}
