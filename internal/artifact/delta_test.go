package artifact

import (
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
