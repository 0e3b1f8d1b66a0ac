package artifact

import "github.com/opencontainers/go-digest"

// Delta is what a holder of some model versions lacks of another: the
// chunks to fetch, and how many bytes they and the whole version are.
type Delta struct {
	// Missing lists, per file of the wanted version, the chunks that no held
	// version has; a file whose whole digest is held needs nothing.
	Missing []FileChunks
	// MissingBytes is the total length of the missing chunks, counting a
	// chunk that repeats within the wanted version once.
	MissingBytes int64
	// TotalBytes is the size of every file of the wanted version.
	TotalBytes int64
	// Chunks and MissingChunks count the distinct chunks of the wanted
	// version and those of them that are missing.
	Chunks, MissingChunks int
}

// ComputeDelta works out which chunks of want are not in any of have. It is
// pure: chunks are matched by digest wherever they sit, so content that
// moved within a file, or that another model shares, is not fetched again.
func ComputeDelta(want *ChunkIndex, have ...*ChunkIndex) Delta {
	held := map[digest.Digest]bool{}
	heldFiles := map[digest.Digest]bool{}
	for _, h := range have {
		if h == nil {
			continue
		}
		for _, f := range h.Files {
			heldFiles[f.Digest] = true
			for _, c := range f.Chunks {
				held[c.Digest] = true
			}
		}
	}
	var d Delta
	counted, missCounted := map[digest.Digest]bool{}, map[digest.Digest]bool{}
	for _, f := range want.Files {
		d.TotalBytes += f.Size
		var miss []Chunk
		for _, c := range f.Chunks {
			if !counted[c.Digest] {
				counted[c.Digest] = true
				d.Chunks++
			}
			if heldFiles[f.Digest] || held[c.Digest] {
				continue
			}
			miss = append(miss, c)
			if !missCounted[c.Digest] {
				missCounted[c.Digest] = true
				d.MissingChunks++
				d.MissingBytes += c.Length
			}
		}
		if len(miss) > 0 {
			d.Missing = append(d.Missing, FileChunks{Path: f.Path, Digest: f.Digest, Size: f.Size, Chunks: miss})
		}
	}
	return d
}
