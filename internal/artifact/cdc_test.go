package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
)

// chunkAll returns the chunks of b.
func chunkAll(t testing.TB, r io.Reader, p ChunkParams) [][]byte {
	t.Helper()
	c, err := NewChunker(r, p)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for {
		ch, err := c.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(ch))
	}
}

func chunkDigests(chunks [][]byte) map[[32]byte]bool {
	m := map[[32]byte]bool{}
	for _, c := range chunks {
		m[sha256.Sum256(c)] = true
	}
	return m
}

var smallParams = ChunkParams{Min: 2 << 10, Avg: 8 << 10, Max: 32 << 10}

func TestChunkParamsValidate(t *testing.T) {
	tests := []struct {
		p  ChunkParams
		ok bool
	}{
		{DefaultChunkParams(), true},
		{smallParams, true},
		{ChunkParams{Min: 32, Avg: 64, Max: 128}, false},
		{ChunkParams{Min: 1024, Avg: 3000, Max: 8192}, false},
		{ChunkParams{Min: 4096, Avg: 4096, Max: 8192}, false},
		{ChunkParams{Min: 1024, Avg: 4096, Max: 4096}, false},
		{ChunkParams{Min: 1 << 20, Avg: 32 << 20, Max: 128 << 20}, false},
		{ChunkParams{}, false},
	}
	for _, tt := range tests {
		if err := tt.p.Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tt.p, err, tt.ok)
		}
	}
}

func TestChunkerReassemblesWithinBounds(t *testing.T) {
	for _, p := range []ChunkParams{DefaultChunkParams(), smallParams} {
		for _, n := range []int{0, 1, p.Min, p.Min + 1, p.Max, 3*p.Max + 17, 8 << 20} {
			t.Run(fmt.Sprintf("avg%d/n%d", p.Avg, n), func(t *testing.T) {
				data := randBytes(uint64(n), n)
				chunks := chunkAll(t, bytes.NewReader(data), p)
				if got := bytes.Join(chunks, nil); !bytes.Equal(got, data) {
					t.Fatal("chunks do not reassemble the input")
				}
				for i, c := range chunks {
					last := i == len(chunks)-1
					if len(c) > p.Max || len(c) == 0 || (!last && len(c) < p.Min) {
						t.Fatalf("chunk %d length %d outside [%d, %d]", i, len(c), p.Min, p.Max)
					}
				}
				// Short reads must not move boundaries.
				again := chunkAll(t, iotest.HalfReader(bytes.NewReader(data)), p)
				if len(again) != len(chunks) {
					t.Fatalf("short reads gave %d chunks, want %d", len(again), len(chunks))
				}
				for i := range again {
					if !bytes.Equal(again[i], chunks[i]) {
						t.Fatalf("short reads moved chunk %d", i)
					}
				}
			})
		}
	}
}

func TestChunkerAverageNearTarget(t *testing.T) {
	data := randBytes(7, 16<<20)
	chunks := chunkAll(t, bytes.NewReader(data), smallParams)
	avg := len(data) / len(chunks)
	if avg < smallParams.Avg/2 || avg > smallParams.Avg*2 {
		t.Fatalf("average chunk %d bytes, want near %d", avg, smallParams.Avg)
	}
}

// TestChunkerGolden pins the boundaries: they are part of the chunk index
// format, so a change to the gear table or cut rule must be deliberate.
func TestChunkerGolden(t *testing.T) {
	data := randBytes(42, 8<<20)
	h := sha256.New()
	var lens []int
	for _, c := range chunkAll(t, bytes.NewReader(data), DefaultChunkParams()) {
		lens = append(lens, len(c))
		fmt.Fprintf(h, "%d,", len(c))
	}
	got := fmt.Sprintf("%x", h.Sum(nil))[:16]
	const want = "72a2b529a0669604"
	if got != want {
		t.Fatalf("chunk boundaries changed: lengths %v hash %s, want %s", lens, got, want)
	}
}

func TestChunkerContentDefined(t *testing.T) {
	tests := []struct {
		name    string
		p       ChunkParams
		minKept float64
	}{
		{"default", DefaultChunkParams(), 0.6},
		{"small", smallParams, 0.95},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := randBytes(1, 8<<20)
			shifted := append(randBytes(2, 100), orig...)
			a := chunkAll(t, bytes.NewReader(orig), tt.p)
			b := chunkDigests(chunkAll(t, bytes.NewReader(shifted), tt.p))
			kept := 0
			for d := range chunkDigests(a) {
				if b[d] {
					kept++
				}
			}
			if frac := float64(kept) / float64(len(a)); frac < tt.minKept {
				t.Fatalf("after inserting 100 bytes at the start, %d of %d chunks kept (%.2f), want >= %.2f", kept, len(a), frac, tt.minKept)
			}
		})
	}
}

func TestChunkerLocalChange(t *testing.T) {
	// Overwrite 10 regions of 1% each (10% of the file, like a few
	// fine-tuned tensors): about 10% of chunks change, plus the chunks
	// straddling each region's edges.
	const n = 8 << 20
	orig := randBytes(3, n)
	mod := bytes.Clone(orig)
	for i := range 10 {
		off := i * n / 10
		copy(mod[off:off+n/100], randBytes(uint64(100+i), n/100))
	}
	a := chunkAll(t, bytes.NewReader(orig), smallParams)
	old := chunkDigests(a)
	b := chunkAll(t, bytes.NewReader(mod), smallParams)
	changed := 0
	for d := range chunkDigests(b) {
		if !old[d] {
			changed++
		}
	}
	frac := float64(changed) / float64(len(b))
	t.Logf("%d of %d chunks changed (%.3f)", changed, len(b), frac)
	if frac < 0.08 || frac > 0.2 {
		t.Fatalf("a 10%% change changed %.3f of chunks, want about 0.1", frac)
	}
}

func TestChunkReaderIndex(t *testing.T) {
	data := randBytes(9, 3<<20+5)
	fc, err := ChunkReader(context.Background(), bytes.NewReader(data), smallParams)
	if err != nil {
		t.Fatal(err)
	}
	fc.Path = "w.bin"
	idx := &ChunkIndex{Version: ChunkIndexVersion, Params: smallParams, Files: []FileChunks{fc}}
	if err := idx.Validate(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if fc.Digest.Encoded() != fmt.Sprintf("%x", sum) || fc.Size != int64(len(data)) {
		t.Fatalf("file digest/size wrong: %s %d", fc.Digest, fc.Size)
	}
	for _, c := range fc.Chunks {
		s := sha256.Sum256(data[c.Offset : c.Offset+c.Length])
		if c.Digest.Encoded() != fmt.Sprintf("%x", s) {
			t.Fatalf("chunk at %d has wrong digest", c.Offset)
		}
	}
}

func benchData(b *testing.B) []byte {
	b.Helper()
	return randBytes(11, 64<<20)
}

// BenchmarkChunker measures boundary detection alone.
func BenchmarkChunker(b *testing.B) {
	data := benchData(b)
	c, err := NewChunker(nil, DefaultChunkParams())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		c.Reset(bytes.NewReader(data))
		for {
			if _, err := c.Next(); err != nil {
				break
			}
		}
	}
}

// BenchmarkChunkReader measures what Push does per file: chunking plus the
// sha256 of every chunk and of the whole file.
func BenchmarkChunkReader(b *testing.B) {
	data := benchData(b)
	fh, err := newFileHasher(DefaultChunkParams())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := fh.hashReader(context.Background(), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}
