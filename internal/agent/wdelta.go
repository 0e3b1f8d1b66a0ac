package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/transfer"
)

// chooseDeltas decides which missing files come as a weight delta against
// a file the cache holds rather than as their missing chunks: those whose
// delta is smaller than the chunks still to fetch (chunks held anywhere do
// not count). It is pure.
func chooseDeltas(missing []artifact.FileChunks, deltas []artifact.FileDelta, have map[digest.Digest]chunkLoc, holds func(d digest.Digest, size int64) bool) map[digest.Digest]artifact.FileDelta {
	out := map[digest.Digest]artifact.FileDelta{}
	for _, fc := range missing {
		for _, fd := range deltas {
			if fd.Target != fc.Digest || !holds(fd.Base, fd.BaseSize) {
				continue
			}
			if fd.Blob.Size < remoteBytes([]artifact.FileChunks{fc}, have) {
				if cur, ok := out[fc.Digest]; !ok || fd.Blob.Size < cur.Blob.Size {
					out[fc.Digest] = fd
				}
			}
		}
	}
	return out
}

// transferBytes is what the files cost to bring over the link, each by its
// chosen weight delta or else by its missing chunks.
func transferBytes(missing []artifact.FileChunks, byDelta map[digest.Digest]artifact.FileDelta, have map[digest.Digest]chunkLoc) int64 {
	var rest []artifact.FileChunks
	var n int64
	for _, fc := range missing {
		if fd, ok := byDelta[fc.Digest]; ok {
			n += fd.Blob.Size
			continue
		}
		rest = append(rest, fc)
	}
	return n + remoteBytes(rest, have)
}

// weightDeltas lists the weight deltas of the version manifest (of want's
// digest) attached in the hub's registry, when its manifest names a parent;
// none otherwise or when they cannot be read (the chunks serve then).
func (a *Agent) weightDeltas(ctx context.Context, repo string, rec manifestRecord) []artifact.FileDelta {
	mb, err := a.cache.readBlob(digest.Digest(rec.Digest), artifact.MaxManifestBytes)
	if err != nil {
		return nil
	}
	m, err := artifact.ParseManifest(mb)
	if err != nil || m.Annotations[artifact.AnnotationParent] == "" {
		return nil
	}
	r, err := a.remoteRepo(repo)
	if err != nil {
		return nil
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(rec.Digest), Size: rec.Size}
	ds, err := artifact.FetchWeightDeltas(ctx, r, desc)
	if err != nil {
		a.log.Warn("weight deltas unusable: fetching chunks", "model", rec.Model, "version", rec.Version, "err", err)
		return nil
	}
	return ds
}

// fetchByDelta brings a file into the cache by fetching its weight delta
// (resumable, verified, as any blob) and applying it to the parent's file
// the cache holds; the result is checked against the file's digest.
func (a *Agent) fetchByDelta(ctx context.Context, repo string, fd artifact.FileDelta, p *progress) error {
	fc := artifact.FileChunks{Path: fd.Path, Digest: fd.Blob.Digest, Size: fd.Blob.Size,
		Chunks: []artifact.Chunk{{Offset: 0, Length: fd.Blob.Size, Digest: fd.Blob.Digest}}}
	plan := transfer.NewPlan(fc, func(digest.Digest) (transfer.ChunkRef, bool) { return transfer.ChunkRef{}, false })
	a.src.route(fd.Blob.Digest, repo)
	dst := a.cache.blobPath(fd.Blob.Digest)
	start := a.clock.Now()
	stats, err := a.fetcher.FetchWith(ctx, plan, dst, transfer.FetchOptions{
		Priority: transfer.PriorityActive,
		Progress: func(n int64) { p.add(ctx, n) },
	})
	a.link.observeTransfer(stats.RemoteBytes, clock.Since(a.clock, start))
	if err != nil {
		return fmt.Errorf("weight delta of %s: %w", fd.Path, err)
	}
	defer os.Remove(dst)
	delta, err := os.Open(dst)
	if err != nil {
		return err
	}
	defer delta.Close()
	if err := a.applyDelta(fd, delta); err != nil {
		return err
	}
	a.log.Debug("fetched file by weight delta", "path", fd.Path, "delta", fd.Blob.Size, "file", fd.TargetSize)
	return nil
}

// applyDelta rebuilds fd's file into the cache from the parent's file the
// cache holds and the delta read from delta, a block at a time, checked
// against the file's digest. The parent's file is read unverified: what it
// makes is checked.
func (a *Agent) applyDelta(fd artifact.FileDelta, delta io.Reader) error {
	base, err := os.Open(a.cache.blobPath(fd.Base))
	if err != nil {
		return fmt.Errorf("weight delta of %s: the parent's file: %w", fd.Path, err)
	}
	defer base.Close()
	return a.cache.putChecked(fd.Target, func(w io.Writer) error {
		return artifact.ApplyWeightDelta(w, base, bufio.NewReaderSize(delta, 1<<20), fd)
	})
}
