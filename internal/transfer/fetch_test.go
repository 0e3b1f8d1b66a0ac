package transfer

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/time/rate"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/clock"
)

func TestFetchAllRemote(t *testing.T) {
	data := randomBytes(4<<20+123, 1)
	srv := newBlobServer(t, data)
	fc := chunkBytes(t, data, "model.onnx")
	dst := filepath.Join(t.TempDir(), "model.onnx")
	var progress, perFetch atomic.Int64
	opts := fastOptions()
	opts.Progress = func(n int64) {
		progress.Add(n)
		if _, err := os.Stat(dst); err == nil {
			t.Error("dst exists while the transfer runs")
		}
	}
	st, err := NewFetcher(srv.source(), opts).FetchWith(context.Background(), NewPlan(fc, nil), dst,
		FetchOptions{Priority: PriorityActive, Progress: func(n int64) { perFetch.Add(n) }})
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	size := int64(len(data))
	if st.RemoteBytes != size || progress.Load() != size || perFetch.Load() != size || srv.bytesSent() != size {
		t.Errorf("remote %d, progress %d/%d, server sent %d; want %d", st.RemoteBytes, progress.Load(), perFetch.Load(), srv.bytesSent(), size)
	}
	if st.LocalBytes != 0 || st.WastedBytes != 0 || st.Corrupt != 0 || st.Retries != 0 {
		t.Errorf("stats %+v", st)
	}
	// Adjacent chunks travel together: far fewer requests than chunks.
	if st.Requests > len(fc.Chunks)/4 {
		t.Errorf("%d requests for %d chunks", st.Requests, len(fc.Chunks))
	}
}

func TestFetchEmptyFile(t *testing.T) {
	fc := chunkBytes(t, nil, "empty.txt")
	dst := filepath.Join(t.TempDir(), "empty.txt")
	st, err := NewFetcher(&HTTPSource{BaseURL: "http://127.0.0.1:1"}, Options{}).Fetch(context.Background(), NewPlan(fc, nil), dst, PriorityActive)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, nil)
	if st.Requests != 0 {
		t.Errorf("%d requests for an empty file", st.Requests)
	}
}

// twoVersions returns a v1 and a v2 that differs from it in a tenth of its
// bytes, v1 written to a file, and a have function over v1's chunks.
func twoVersions(t *testing.T) (v1, v2 []byte, v1Path string, have func(digest.Digest) (ChunkRef, bool)) {
	v1 = randomBytes(4<<20, 1)
	v2 = append([]byte(nil), v1...)
	copy(v2[1<<20:], randomBytes(400<<10, 2))
	v1Path = filepath.Join(t.TempDir(), "v1")
	if err := os.WriteFile(v1Path, v1, 0o644); err != nil {
		t.Fatal(err)
	}
	refs := map[digest.Digest]ChunkRef{}
	for _, c := range chunkBytes(t, v1, "v1").Chunks {
		refs[c.Digest] = ChunkRef{Path: v1Path, Offset: c.Offset, Length: c.Length}
	}
	have = func(d digest.Digest) (ChunkRef, bool) { r, ok := refs[d]; return r, ok }
	return v1, v2, v1Path, have
}

func TestFetchLocalAndRemote(t *testing.T) {
	_, v2, _, have := twoVersions(t)
	srv := newBlobServer(t, v2)
	p := NewPlan(chunkBytes(t, v2, "model.onnx"), have)
	if p.LocalBytes() == 0 || p.RemoteBytes() > int64(len(v2))/5 {
		t.Fatalf("plan: local %d remote %d of %d", p.LocalBytes(), p.RemoteBytes(), len(v2))
	}
	dst := filepath.Join(t.TempDir(), "model.onnx")
	st, err := NewFetcher(srv.source(), fastOptions()).Fetch(context.Background(), p, dst, PriorityActive)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, v2)
	if srv.bytesSent() != p.RemoteBytes() || st.RemoteBytes != p.RemoteBytes() || st.LocalBytes != p.LocalBytes() {
		t.Errorf("server sent %d, stats %+v; plan remote %d local %d", srv.bytesSent(), st, p.RemoteBytes(), p.LocalBytes())
	}
}

func TestFetchSimilarBlocks(t *testing.T) {
	v1, v2, _, have := twoVersions(t)
	const changed = 400 << 10 // twoVersions' in-place edit
	tests := []struct {
		name string
		// sums answers the block sum request, nil for a registry without
		// the extension.
		sums func(off, n int64, block int) []byte
		// wantSimilar: whether the edge chunks come from block sums.
		wantSimilar bool
		// wantCorrupt: whether a chunk assembled from block sums fails
		// verification.
		wantCorrupt bool
	}{
		{"registry without block sums", nil, false, false},
		{"block sums", func(off, n int64, block int) []byte {
			return artifact.AppendBlockSums(nil, v2[off:off+n], block)
		}, true, false},
		// The sums of v1's bytes say every block of an edited chunk is
		// unchanged: the chunk fails verification and is fetched whole.
		{"block sums that lie", func(off, n int64, block int) []byte {
			return artifact.AppendBlockSums(nil, v1[off:off+n], block)
		}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newBlobServer(t, v2)
			srv.set(func(s *blobServer) { s.sums = tt.sums })
			p := NewPlan(chunkBytes(t, v2, "model.onnx"), have)
			if len(p.Similar) == 0 {
				t.Fatal("the plan has no similar ranges")
			}
			dst := filepath.Join(t.TempDir(), "model.onnx")
			st, err := NewFetcher(srv.source(), fastOptions()).Fetch(context.Background(), p, dst, PriorityActive)
			if err != nil {
				t.Fatal(err)
			}
			checkFile(t, dst, v2)
			t.Logf("plan remote %d, sent %d, stats %+v", p.RemoteBytes(), srv.bytesSent(), st)
			if st.RemoteBytes != srv.bytesSent() {
				t.Errorf("stats count %d remote bytes, the server sent %d", st.RemoteBytes, srv.bytesSent())
			}
			if (st.Corrupt > 0) != tt.wantCorrupt {
				t.Errorf("%d chunks failed verification, want some: %v", st.Corrupt, tt.wantCorrupt)
			}
			if tt.sums == nil && (st.SimilarBytes != 0 || srv.bytesSent() != p.RemoteBytes()) {
				t.Errorf("sent %d of the plan's %d, similar %d: want whole chunks", srv.bytesSent(), p.RemoteBytes(), st.SimilarBytes)
			}
			if !tt.wantSimilar {
				return
			}
			// The edit's bytes, at most one block more at each edge, and the sums.
			limit := int64(changed + 2*sumBlock + 2*maxChunk(p.File)/sumBlock*artifact.BlockSumSize)
			if st.SimilarBytes == 0 || srv.bytesSent() > limit || srv.bytesSent()+st.SimilarBytes < p.RemoteBytes() {
				t.Errorf("sent %d (limit %d) of the plan's %d, similar %d", srv.bytesSent(), limit, p.RemoteBytes(), st.SimilarBytes)
			}
		})
	}
}

func TestFetchLocalChunkChangedOnDisk(t *testing.T) {
	_, v2, v1Path, have := twoVersions(t)
	srv := newBlobServer(t, v2)
	p := NewPlan(chunkBytes(t, v2, "model.onnx"), have)
	// Damage the local copy of one planned chunk after planning.
	var victim ChunkRef
	for _, ref := range p.Local {
		victim = ref
		break
	}
	f, err := os.OpenFile(v1Path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("XX"), victim.Offset+victim.Length/2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	dst := filepath.Join(t.TempDir(), "model.onnx")
	st, err := NewFetcher(srv.source(), fastOptions()).Fetch(context.Background(), p, dst, PriorityActive)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, v2)
	if want := p.RemoteBytes() + victim.Length; srv.bytesSent() != want || st.LocalBytes != p.LocalBytes()-victim.Length {
		t.Errorf("server sent %d, want %d; local %d", srv.bytesSent(), want, st.LocalBytes)
	}
}

func TestFetchCopiesRepeatedChunks(t *testing.T) {
	block := randomBytes(512<<10, 3)
	var data []byte
	for range 4 {
		data = append(data, block...)
	}
	data = append(data, randomBytes(100<<10, 4)...)
	srv := newBlobServer(t, data)
	p := NewPlan(chunkBytes(t, data, "model.onnx"), nil)
	if len(p.Copies) == 0 {
		t.Fatal("no repeated chunks in the test file")
	}
	dst := filepath.Join(t.TempDir(), "model.onnx")
	st, err := NewFetcher(srv.source(), fastOptions()).Fetch(context.Background(), p, dst, PriorityActive)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if srv.bytesSent() != p.RemoteBytes() || st.LocalBytes != p.CopiedBytes() || p.RemoteBytes() >= int64(len(data))/2 {
		t.Errorf("server sent %d, plan remote %d copied %d, stats %+v", srv.bytesSent(), p.RemoteBytes(), p.CopiedBytes(), st)
	}
}

func TestFetchCutResumesInsideChunk(t *testing.T) {
	data := randomBytes(4<<20, 5)
	fc := chunkBytes(t, data, "model.onnx")
	for _, parallel := range []int{1, 4} {
		t.Run(map[int]string{1: "serial", 4: "parallel"}[parallel], func(t *testing.T) {
			srv := newBlobServer(t, data)
			srv.set(func(s *blobServer) { s.cutTotalAt = int64(len(data)) * 6 / 10 })
			dst := filepath.Join(t.TempDir(), "model.onnx")
			opts := fastOptions()
			opts.Parallel = parallel
			p := NewPlan(fc, nil)
			st, err := NewFetcher(srv.source(), opts).Fetch(context.Background(), p, dst, PriorityActive)
			if err != nil {
				t.Fatal(err)
			}
			checkFile(t, dst, data)
			if st.Retries < 1 {
				t.Fatal("the cut did not happen")
			}
			// The cut costs at most one chunk; with resume inside the
			// chunk it costs nothing.
			if sent := srv.bytesSent(); sent > p.RemoteBytes()+maxChunk(fc) || st.WastedBytes != 0 {
				t.Errorf("server sent %d for %d remote bytes (max chunk %d), wasted %d", sent, p.RemoteBytes(), maxChunk(fc), st.WastedBytes)
			}
			t.Logf("cut at 60%%: sent %d of %d bytes, %d retries", srv.bytesSent(), len(data), st.Retries)
		})
	}
}

func TestFetchCorruptChunkFetchedAgain(t *testing.T) {
	data := randomBytes(4<<20, 6)
	fc := chunkBytes(t, data, "model.onnx")
	c := fc.Chunks[len(fc.Chunks)/2]
	srv := newBlobServer(t, data)
	srv.set(func(s *blobServer) { s.flipOnceAt = c.Offset + c.Length/3 })
	dst := filepath.Join(t.TempDir(), "model.onnx")
	st, err := NewFetcher(srv.source(), fastOptions()).Fetch(context.Background(), NewPlan(fc, nil), dst, PriorityActive)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if st.Corrupt != 1 || st.Retries < 1 || st.WastedBytes < c.Length || st.RemoteBytes != int64(len(data))+st.WastedBytes {
		t.Errorf("stats %+v, corrupt chunk of %d bytes", st, c.Length)
	}
}

func TestFetchNeverRenamesBadData(t *testing.T) {
	data := randomBytes(1<<20, 7)
	fc := chunkBytes(t, data, "model.onnx")
	t.Run("chunk always corrupt", func(t *testing.T) {
		srv := newBlobServer(t, data)
		c := fc.Chunks[2]
		srv.set(func(s *blobServer) { s.hook = func(int, int64) fault { return fault{flipAt: c.Offset} } })
		dst := filepath.Join(t.TempDir(), "model.onnx")
		opts := fastOptions()
		opts.MaxAttempts = 3
		st, err := NewFetcher(srv.source(), opts).Fetch(context.Background(), NewPlan(fc, nil), dst, PriorityActive)
		if err == nil || !strings.Contains(err.Error(), "failed verification") || !strings.Contains(err.Error(), "giving up after 3 attempts") {
			t.Fatalf("err = %v", err)
		}
		mustNotExist(t, dst)
		if st.Corrupt != 3 {
			t.Errorf("corrupt = %d, want 3", st.Corrupt)
		}
	})
	t.Run("file digest wrong", func(t *testing.T) {
		srv := newBlobServer(t, data)
		bad := fc
		bad.Digest = digest.FromString("another file")
		// The server serves the blob under the digest the plan names.
		srv.digest = bad.Digest
		dst := filepath.Join(t.TempDir(), "model.onnx")
		_, err := NewFetcher(srv.source(), fastOptions()).Fetch(context.Background(), NewPlan(bad, nil), dst, PriorityActive)
		if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), "every chunk verified but the file's digest") {
			t.Fatalf("err = %v", err)
		}
		mustNotExist(t, dst)
		mustNotExist(t, dst+".part")
		mustNotExist(t, dst+".part.state")
	})
}

func TestFetchRetriesServerError(t *testing.T) {
	data := randomBytes(1<<20, 8)
	srv := newBlobServer(t, data)
	srv.set(func(s *blobServer) {
		s.hook = func(n int, _ int64) fault {
			if n == 1 {
				return fault{status: 503, flipAt: -1}
			}
			return noFault
		}
	})
	dst := filepath.Join(t.TempDir(), "model.onnx")
	st, err := NewFetcher(srv.source(), fastOptions()).Fetch(context.Background(), NewPlan(chunkBytes(t, data, "m"), nil), dst, PriorityActive)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, dst, data)
	if st.Retries != 1 || srv.bytesSent() != int64(len(data)) {
		t.Errorf("retries %d, sent %d", st.Retries, srv.bytesSent())
	}
}

func TestFetchPermanentErrorsFailFast(t *testing.T) {
	data := randomBytes(1<<20, 9)
	fc := chunkBytes(t, data, "model.onnx")
	tests := []struct {
		name    string
		edit    func(src *HTTPSource, fc *artifact.FileChunks)
		wantErr string
	}{
		{"missing blob", func(src *HTTPSource, fc *artifact.FileChunks) { src.Repo = "models/other" }, "404 Not Found (blob not in the registry): BLOB_UNKNOWN blob unknown to registry"},
		{"refused credential", func(src *HTTPSource, fc *artifact.FileChunks) { src.Token = "wrong" }, "401 Unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newBlobServer(t, data)
			src := srv.source()
			f := fc
			tt.edit(src, &f)
			dst := filepath.Join(t.TempDir(), "model.onnx")
			opts := fastOptions()
			opts.Backoff = clock.Backoff{Base: time.Hour, Max: time.Hour} // a retry would hang the test
			st, err := NewFetcher(src, opts).Fetch(context.Background(), NewPlan(f, nil), dst, PriorityActive)
			if err == nil || !IsPermanent(err) || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "fetch model.onnx: bytes ") {
				t.Fatalf("err = %v, want a permanent %q", err, tt.wantErr)
			}
			var serr *StatusError
			if !errors.As(err, &serr) {
				t.Errorf("error carries no StatusError")
			}
			if st.Retries != 0 {
				t.Errorf("%d retries", st.Retries)
			}
			mustNotExist(t, dst)
		})
	}
}

// TestFetchSizeMismatch fetches blobs whose size at the source is not the
// size the plan (that is, the manifest) says: a permanent failure that
// leaves no part file behind, not even a sparse one of the size the plan
// claimed.
func TestFetchSizeMismatch(t *testing.T) {
	whole := func(data []byte, size int64) artifact.FileChunks {
		d := digest.FromBytes(data)
		return artifact.FileChunks{Path: "model.onnx", Digest: d, Size: size,
			Chunks: []artifact.Chunk{{Offset: 0, Length: size, Digest: d}}}
	}
	small := randomBytes(171, 21)
	large := randomBytes(1<<20, 22)
	chunked := chunkBytes(t, large, "model.onnx")
	chunked.Size += 4096 // the plan says more than the blob holds
	last := &chunked.Chunks[len(chunked.Chunks)-1]
	chunked.Chunks = append(chunked.Chunks, artifact.Chunk{Offset: last.Offset + last.Length, Length: 4096, Digest: digest.FromString("tail")})
	tests := []struct {
		name    string
		blob    []byte
		fc      artifact.FileChunks
		wantErr string
	}{
		{"blob shorter than said", small, whole(small, 99999), "is 171 bytes, want 99999"},
		{"blob longer than said", large, whole(large, 1000), "is 1048576 bytes, want 1000"},
		{"chunks beyond the blob's end", large, chunked, "is 1048576 bytes, want 1052672"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newBlobServer(t, tt.blob)
			dst := filepath.Join(t.TempDir(), "model.onnx")
			opts := fastOptions()
			opts.Backoff = clock.Backoff{Base: time.Hour, Max: time.Hour} // a retry would hang the test
			st, err := NewFetcher(srv.source(), opts).Fetch(context.Background(), NewPlan(tt.fc, nil), dst, PriorityActive)
			if !errors.Is(err, ErrSizeMismatch) || !IsPermanent(err) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want a permanent ErrSizeMismatch saying %q", err, tt.wantErr)
			}
			if st.Retries != 0 {
				t.Errorf("%d retries", st.Retries)
			}
			for _, name := range []string{dst, dst + ".part", dst + ".part.state"} {
				mustNotExist(t, name)
			}
		})
	}
}

func TestFetchResumesAfterRestart(t *testing.T) {
	data := randomBytes(4<<20, 10)
	size := int64(len(data))
	fc := chunkBytes(t, data, "model.onnx")
	tests := []struct {
		name string
		// interrupt runs the first Fetch, which must fail.
		interrupt func(t *testing.T, srv *blobServer, dst string) Stats
		// damage runs between the two Fetches.
		damage func(t *testing.T, dst string)
		// extra is how many bytes beyond the rest the second Fetch may take.
		extra int64
	}{
		{"server gone after a cut", func(t *testing.T, srv *blobServer, dst string) Stats {
			srv.set(func(s *blobServer) { s.cutTotalAt, s.downAfterCut = size*6/10, true })
			opts := fastOptions()
			opts.MaxAttempts = 3
			st, err := NewFetcher(srv.source(), opts).Fetch(context.Background(), NewPlan(fc, nil), dst, PriorityActive)
			if err == nil || IsPermanent(err) {
				t.Fatalf("first fetch: err = %v, want a retryable error", err)
			}
			return st
		}, nil, 0},
		{"cancelled", func(t *testing.T, srv *blobServer, dst string) Stats {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var got atomic.Int64
			opts := fastOptions()
			opts.Progress = func(n int64) {
				if got.Add(n) > size/2 {
					cancel()
				}
			}
			st, err := NewFetcher(srv.source(), opts).Fetch(ctx, NewPlan(fc, nil), dst, PriorityActive)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("first fetch: err = %v, want context.Canceled", err)
			}
			return st
		}, nil, 0},
		{"part file damaged meanwhile", func(t *testing.T, srv *blobServer, dst string) Stats {
			srv.set(func(s *blobServer) { s.cutTotalAt, s.downAfterCut = size*6/10, true })
			opts := fastOptions()
			opts.MaxAttempts = 2
			st, _ := NewFetcher(srv.source(), opts).Fetch(context.Background(), NewPlan(fc, nil), dst, PriorityActive)
			return st
		}, func(t *testing.T, dst string) {
			f, err := os.OpenFile(dst+".part", os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{0xde, 0xad}, fc.Chunks[0].Offset+5); err != nil {
				t.Fatal(err)
			}
		}, fc.Chunks[0].Length},
		{"state of another file", func(t *testing.T, srv *blobServer, dst string) Stats {
			if err := os.WriteFile(dst+".part", data, 0o644); err != nil {
				t.Fatal(err)
			}
			st := transferState{Digest: digest.FromString("other"), Size: size, Done: map[int]bool{0: true, 1: true}}
			if err := os.WriteFile(dst+".part.state", st.encode(), 0o644); err != nil {
				t.Fatal(err)
			}
			return Stats{}
		}, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newBlobServer(t, data)
			dst := filepath.Join(t.TempDir(), "model.onnx")
			st1 := tt.interrupt(t, srv, dst)
			mustNotExist(t, dst)
			sent1 := srv.bytesSent()
			if tt.damage != nil {
				tt.damage(t, dst)
			}
			srv.set(func(s *blobServer) { s.down, s.sent, s.cutTotalAt = false, 0, 0 })
			st2, err := NewFetcher(srv.source(), fastOptions()).Fetch(context.Background(), NewPlan(fc, nil), dst, PriorityActive)
			if err != nil {
				t.Fatal(err)
			}
			checkFile(t, dst, data)
			sent2 := srv.bytesSent()
			// What the first run received is kept: the second run fetches
			// the rest, plus at most one chunk. (The server may have sent
			// the first run more than it received: responses in flight
			// when it gave up.)
			if sent2 > size-st1.RemoteBytes+maxChunk(fc)+tt.extra || st1.RemoteBytes+sent2 > size+maxChunk(fc)+tt.extra {
				t.Errorf("first run sent %d (received %d), second %d, of %d (max chunk %d)", sent1, st1.RemoteBytes, sent2, size, maxChunk(fc))
			}
			if st1.RemoteBytes > 0 && st2.ResumedBytes == 0 {
				t.Errorf("nothing resumed")
			}
			if st2.ResumedBytes+st2.RemoteBytes != size+tt.extra && tt.extra == 0 {
				t.Errorf("resumed %d + fetched %d != %d", st2.ResumedBytes, st2.RemoteBytes, size)
			}
			if st2.Corrupt != 0 {
				t.Errorf("%d chunks counted corrupt", st2.Corrupt)
			}
			t.Logf("first run sent %d, second %d, of %d; resumed %d", sent1, sent2, size, st2.ResumedBytes)
		})
	}
}

func TestFetchBandwidthLimit(t *testing.T) {
	data := randomBytes(2<<20, 11)
	srv := newBlobServer(t, data)
	opts := fastOptions()
	opts.Limiter = rate.NewLimiter(4<<20, 256<<10)
	fake := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	opts.Clock = fake
	dst := filepath.Join(t.TempDir(), "model.onnx")
	start := fake.Now()
	runOnFake(t, fake, 10*time.Millisecond, func() {
		if _, err := NewFetcher(srv.source(), opts).Fetch(context.Background(), NewPlan(chunkBytes(t, data, "m"), nil), dst, PriorityActive); err != nil {
			t.Error(err)
		}
	})
	// 2 MiB at 4 MiB/s with a 256 KiB burst takes at least 0.4375 s of the
	// Fetcher's clock.
	if d := clock.Since(fake, start); d < 400*time.Millisecond {
		t.Fatalf("took %v, faster than the limit allows", d)
	}
	checkFile(t, dst, data)
}

func TestFetchHigherPriorityGetsBandwidthFirst(t *testing.T) {
	low, high := randomBytes(4<<20, 12), randomBytes(256<<10, 13)
	lowSrv, highSrv := newBlobServer(t, low), newBlobServer(t, high)
	opts := fastOptions()
	opts.BufferSize = 32 << 10
	opts.Limiter = rate.NewLimiter(8<<20, 32<<10)
	// Both transfers go through one Fetcher whose source picks the server
	// by blob.
	f := NewFetcher(sourceFunc(func(ctx context.Context, d digest.Digest, off, n int64) (io.ReadCloser, error) {
		if d == highSrv.digest {
			return highSrv.source().OpenRange(ctx, d, off, n)
		}
		return lowSrv.source().OpenRange(ctx, d, off, n)
	}), opts)
	dir := t.TempDir()
	lowPlan, highPlan := NewPlan(chunkBytes(t, low, "low"), nil), NewPlan(chunkBytes(t, high, "high"), nil)
	var lowGot atomic.Int64
	started := make(chan struct{})
	var once sync.Once
	lowDone := make(chan error, 1)
	go func() {
		_, err := f.FetchWith(context.Background(), lowPlan, filepath.Join(dir, "low"), FetchOptions{
			Priority: PriorityLogs,
			Progress: func(n int64) {
				if lowGot.Add(n) >= 256<<10 {
					once.Do(func() { close(started) })
				}
			},
		})
		lowDone <- err
	}()
	<-started
	if _, err := f.Fetch(context.Background(), highPlan, filepath.Join(dir, "high"), PriorityControl); err != nil {
		t.Fatal(err)
	}
	// The high-priority transfer took the link: the low one, which needed
	// far longer than the high one's share, is still far from done.
	if got := lowGot.Load(); got > int64(len(low))*3/4 {
		t.Errorf("low priority transfer had %d of %d bytes when the high one finished", got, len(low))
	}
	if err := <-lowDone; err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(dir, "low"), low)
	checkFile(t, filepath.Join(dir, "high"), high)
}

func TestFetcherWait(t *testing.T) {
	if err := NewFetcher(nil, Options{}).Wait(context.Background(), PriorityLogs, 1<<30); err != nil {
		t.Fatalf("unlimited Wait: %v", err)
	}
	lim := rate.NewLimiter(rate.Limit(1<<20), 64<<10)
	f := NewFetcher(nil, Options{Limiter: lim})
	// More than the burst is taken in pieces, not refused.
	if err := f.Wait(context.Background(), PriorityControl, 100<<10); err != nil {
		t.Fatalf("Wait above the burst: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Wait(ctx, PriorityControl, 1<<20); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Wait: %v", err)
	}
}

func BenchmarkFetch(b *testing.B) {
	data := randomBytes(32<<20, 14)
	fc, err := artifact.ChunkReader(context.Background(), strings.NewReader(string(data)), artifact.DefaultChunkParams())
	if err != nil {
		b.Fatal(err)
	}
	fc.Path = "model.onnx"
	srv := newBlobServer(b, data)
	f := NewFetcher(srv.source(), Options{})
	dir := b.TempDir()
	b.SetBytes(int64(len(data)))
	for i := 0; b.Loop(); i++ {
		dst := filepath.Join(dir, "model.onnx")
		if _, err := f.Fetch(context.Background(), NewPlan(fc, nil), dst, PriorityActive); err != nil {
			b.Fatal(err)
		}
		os.Remove(dst)
	}
}
