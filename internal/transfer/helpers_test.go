package transfer

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/clock"
)

// testParams are small chunks, so that test files have many of them.
var testParams = artifact.ChunkParams{Min: 16 << 10, Avg: 64 << 10, Max: 256 << 10}

const testRepo = "models/x"
const testToken = "opc_secret"

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

// chunkBytes returns the chunk list of data.
func chunkBytes(t testing.TB, data []byte, path string) artifact.FileChunks {
	t.Helper()
	fc, err := artifact.ChunkReader(context.Background(), bytes.NewReader(data), testParams)
	if err != nil {
		t.Fatal(err)
	}
	fc.Path = path
	return fc
}

// fault is what the test server does to one response.
type fault struct {
	status   int   // respond with this status instead of the bytes
	cutAfter int64 // > 0: abort the connection after this many body bytes
	flipAt   int64 // >= 0: flip the byte at this blob offset
}

var noFault = fault{flipAt: -1}

// blobServer serves one blob under /v2/models/x/blobs/<digest> with Range
// support, counting the body bytes it sends and injecting faults.
type blobServer struct {
	*httptest.Server
	blob   []byte
	digest digest.Digest

	mu       sync.Mutex
	sent     int64
	requests int
	// hook decides the fault for request number n (from 1) at offset off.
	hook func(n int, off int64) fault
	// cutTotalAt, when > 0, cuts the response that makes the total sent
	// bytes reach it, once.
	cutTotalAt int64
	// downAfterCut sets down when cutTotalAt cuts.
	downAfterCut bool
	// flipOnceAt, when >= 0, flips the byte at this blob offset in the
	// first response that carries it.
	flipOnceAt int64
	// down aborts every request at once.
	down bool
	// sums, if set, answers block sum requests (the registry extension
	// of BlockSummer) for the blob with the sums it returns.
	sums func(off, n int64, block int) []byte
}

func newBlobServer(t testing.TB, blob []byte) *blobServer {
	s := &blobServer{blob: blob, digest: digest.FromBytes(blob), flipOnceAt: -1}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *blobServer) source() *HTTPSource {
	return &HTTPSource{Client: s.Client(), BaseURL: s.URL, Repo: testRepo, Token: testToken}
}

func (s *blobServer) bytesSent() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

func (s *blobServer) set(fn func(s *blobServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(s)
}

func (s *blobServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return
	}
	s.mu.Lock()
	sums := s.sums
	s.mu.Unlock()
	if sums != nil && r.URL.Path == "/v2/"+testRepo+"/_outpost/blocksums/"+s.digest.String() {
		q := r.URL.Query()
		off, _ := strconv.ParseInt(q.Get("offset"), 10, 64)
		n, _ := strconv.ParseInt(q.Get("length"), 10, 64)
		block, _ := strconv.Atoi(q.Get("block"))
		b := sums(off, n, block)
		s.mu.Lock()
		s.sent += int64(len(b))
		s.mu.Unlock()
		w.Write(b)
		return
	}
	if r.URL.Path != "/v2/"+testRepo+"/blobs/"+s.digest.String() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}`)
		return
	}
	off := rangeStart(r.Header.Get("Range"))
	s.mu.Lock()
	s.requests++
	f := noFault
	if s.hook != nil {
		f = s.hook(s.requests, off)
	}
	down := s.down
	s.mu.Unlock()
	if down {
		panic(http.ErrAbortHandler)
	}
	if f.status != 0 {
		http.Error(w, "injected failure", f.status)
		return
	}
	cw := &faultWriter{ResponseWriter: w, s: s, f: f, pos: off}
	http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(s.blob))
}

// rangeStart returns the first offset of a "bytes=a-b" header, or 0.
func rangeStart(h string) int64 {
	a, _, _ := strings.Cut(strings.TrimPrefix(h, "bytes="), "-")
	n, _ := strconv.ParseInt(a, 10, 64)
	return n
}

// faultWriter counts body bytes and applies a fault.
type faultWriter struct {
	http.ResponseWriter
	s       *blobServer
	f       fault
	pos     int64 // blob offset of the next byte
	written int64
}

func (w *faultWriter) Write(p []byte) (int, error) {
	n := int64(len(p))
	cut := false
	if w.f.cutAfter > 0 && w.written+n >= w.f.cutAfter {
		n, cut = w.f.cutAfter-w.written, true
	}
	w.s.mu.Lock()
	if t := w.s.cutTotalAt; t > 0 && w.s.sent+n >= t {
		n, cut = t-w.s.sent, true
		w.s.cutTotalAt = 0
		w.s.down = w.s.downAfterCut
	}
	w.s.sent += n
	flip := w.f.flipAt
	if at := w.s.flipOnceAt; at >= w.pos && at < w.pos+n {
		flip = at
		w.s.flipOnceAt = -1
	}
	w.s.mu.Unlock()
	out := p[:n]
	if flip >= w.pos && flip < w.pos+n {
		out = append([]byte(nil), out...)
		out[flip-w.pos] ^= 0xff
	}
	k, err := w.ResponseWriter.Write(out)
	w.pos += int64(k)
	w.written += int64(k)
	if cut {
		w.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	return k, err
}

// fastOptions retries quickly.
func fastOptions() Options {
	return Options{Backoff: clock.Backoff{Base: time.Millisecond, Max: 4 * time.Millisecond}}
}

// checkFile fails unless name holds want and no part or state file is left.
func checkFile(t testing.TB, name string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from the blob (%d bytes, want %d)", name, len(got), len(want))
	}
	for _, leftover := range []string{name + ".part", name + ".part.state"} {
		if _, err := os.Stat(leftover); err == nil {
			t.Errorf("%s left behind", filepath.Base(leftover))
		}
	}
}

// mustNotExist fails if name exists.
func mustNotExist(t testing.TB, name string) {
	t.Helper()
	if _, err := os.Stat(name); err == nil {
		t.Fatalf("%s exists", name)
	}
}

// maxChunk returns the length of the largest chunk of fc.
func maxChunk(fc artifact.FileChunks) int64 {
	var m int64
	for _, c := range fc.Chunks {
		m = max(m, c.Length)
	}
	return m
}

// sourceFunc adapts a function to RangeSource.
type sourceFunc func(ctx context.Context, d digest.Digest, off, n int64) (io.ReadCloser, error)

func (f sourceFunc) OpenRange(ctx context.Context, d digest.Digest, off, n int64) (io.ReadCloser, error) {
	return f(ctx, d, off, n)
}

// runOnFake runs fn, advancing f by step whenever a timer of f is pending,
// until fn returns.
func runOnFake(t testing.TB, f *clock.Fake, step time.Duration, fn func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cancel()
		fn()
	}()
	for f.WaitPending(ctx, 1) == nil {
		f.Advance(step)
	}
	<-done
}
