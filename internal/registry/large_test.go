package registry

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// TestLargeBlobStreaming streams a large blob up (one PATCH without Content-Range) and down, checking that
// neither direction buffers the blob in memory. The size is OUTPOST_LARGE_BLOB_MB (default 64).
func TestLargeBlobStreaming(t *testing.T) {
	if testing.Short() {
		t.Skip("short mode")
	}
	mb := 64
	if v := os.Getenv("OUTPOST_LARGE_BLOB_MB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("OUTPOST_LARGE_BLOB_MB: %v", err)
		}
		mb = n
	}
	size := int64(mb) << 20
	e := newEnv(t, Options{})
	src := func() io.Reader { return io.LimitReader(rand.NewChaCha8([32]byte{1}), size) }
	h := sha256.New()
	if _, err := io.Copy(h, src()); err != nil {
		t.Fatal(err)
	}
	d := digest.NewDigest(digest.SHA256, h)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	loc := startUpload(t, e, "big")
	start := time.Now()
	req, _ := http.NewRequest("PATCH", e.srv.URL+loc, src())
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("PATCH status %d", resp.StatusCode)
	}
	up := time.Since(start)
	r2, b := e.req("PUT", loc+"?digest="+d.String(), nil)
	expect(t, r2, b, 201)

	start = time.Now()
	resp, err = e.srv.Client().Get(e.srv.URL + "/v2/big/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	h.Reset()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || digest.NewDigest(digest.SHA256, h) != d {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	down := time.Since(start)

	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > size/2 && grown > 32<<20 {
		t.Errorf("heap grew by %d bytes for a %d byte blob", grown, size)
	}
	t.Log(fmt.Sprintf("%d MiB: upload %.0f MiB/s, download %.0f MiB/s (client hashing included)",
		mb, float64(mb)/up.Seconds(), float64(mb)/down.Seconds()))
}
