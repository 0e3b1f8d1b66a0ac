package artifact

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/opencontainers/go-digest"
)

func chunk(off, n int64, s string) Chunk {
	return Chunk{Offset: off, Length: n, Digest: digest.FromString(s)}
}

func TestComputeDelta(t *testing.T) {
	v1 := &ChunkIndex{Files: []FileChunks{
		{Path: "w.bin", Digest: digest.FromString("w1"), Size: 30, Chunks: []Chunk{chunk(0, 10, "a"), chunk(10, 10, "b"), chunk(20, 10, "c")}},
	}}
	v2 := &ChunkIndex{Files: []FileChunks{
		{Path: "w.bin", Digest: digest.FromString("w2"), Size: 30, Chunks: []Chunk{chunk(0, 10, "a"), chunk(10, 10, "B"), chunk(20, 10, "c")}},
		{Path: "moved.bin", Digest: digest.FromString("m"), Size: 20, Chunks: []Chunk{chunk(0, 10, "c"), chunk(10, 10, "B")}},
	}}
	other := &ChunkIndex{Files: []FileChunks{
		{Path: "x", Digest: digest.FromString("w2"), Size: 30, Chunks: []Chunk{chunk(0, 30, "whole")}},
	}}
	tests := []struct {
		name          string
		have          []*ChunkIndex
		wantMissing   int64
		wantChunks    int
		wantMissChunk int
		wantFiles     int
	}{
		{"nothing held: repeated chunks counted once", nil, 30, 3, 3, 2},
		{"v1 held: one changed chunk", []*ChunkIndex{v1}, 10, 3, 1, 2},
		{"v2 itself held", []*ChunkIndex{v2}, 0, 3, 0, 0},
		{"whole file held under another path", []*ChunkIndex{v1, other}, 10, 3, 1, 1},
		{"nil entries ignored", []*ChunkIndex{nil, v1}, 10, 3, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ComputeDelta(v2, tt.have...)
			if d.MissingBytes != tt.wantMissing || d.Chunks != tt.wantChunks || d.MissingChunks != tt.wantMissChunk || len(d.Missing) != tt.wantFiles {
				t.Errorf("got missing %d bytes, %d/%d chunks, %d files; want %d, %d/%d, %d",
					d.MissingBytes, d.MissingChunks, d.Chunks, len(d.Missing), tt.wantMissing, tt.wantMissChunk, tt.wantChunks, tt.wantFiles)
			}
			if d.TotalBytes != 50 {
				t.Errorf("total %d, want 50", d.TotalBytes)
			}
		})
	}
}

// TestChunkParamsForSizeKeepsDeltasSmall checks that every tier is valid and
// that, at each tier, a change to a tenth of a file costs little more than a
// tenth of its bytes.
func TestChunkParamsForSizeKeepsDeltasSmall(t *testing.T) {
	tests := []struct {
		size    int64
		wantAvg int
	}{
		{1 << 10, 64 << 10},
		{5 << 20, 64 << 10},
		{32 << 20, 64 << 10},
		{100 << 20, 256 << 10},
		{1 << 30, 1 << 20},
	}
	for _, tt := range tests {
		p := ChunkParamsForSize(tt.size)
		if err := p.Validate(); err != nil || p.Avg != tt.wantAvg {
			t.Errorf("ChunkParamsForSize(%d) = %+v (%v), want avg %d", tt.size, p, err, tt.wantAvg)
		}
	}
	if testing.Short() {
		return
	}
	ctx := context.Background()
	for _, size := range []int{5 << 20, 48 << 20} {
		p := ChunkParamsForSize(int64(size))
		v1 := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(size >> 20)}).Read(v1)
		v2 := append([]byte(nil), v1...)
		start := size - size/10 // a fine-tune of the last layers: the tail changes
		for i := start; i < size; i++ {
			v2[i] ^= 0x5a
		}
		f1, err := ChunkReader(ctx, bytes.NewReader(v1), p)
		if err != nil {
			t.Fatal(err)
		}
		f2, err := ChunkReader(ctx, bytes.NewReader(v2), p)
		if err != nil {
			t.Fatal(err)
		}
		d := ComputeDelta(&ChunkIndex{Files: []FileChunks{f2}}, &ChunkIndex{Files: []FileChunks{f1}})
		// The data is seeded, so the share is exact: docs/artifact-format.md
		// states it as 10-11%.
		share := float64(d.MissingBytes) / float64(d.TotalBytes)
		t.Logf("size %d: a change to the last 10%% costs %.2f%% of the bytes (%d of %d chunks)", size, 100*share, d.MissingChunks, d.Chunks)
		if share < 0.10 || share > 0.11 {
			t.Errorf("size %d: a 10%% change costs %.2f%% of the bytes; docs/artifact-format.md says 10-11%%", size, 100*share)
		}
	}
}
