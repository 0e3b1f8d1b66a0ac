package transfer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/internal/registry"
	"outpost.dev/outpost/internal/store"
	"outpost.dev/outpost/internal/transfer"
)

// cutter passes requests to a real registry, and cuts the connection of
// the PATCH it is told to, after half of its body crossed.
type cutter struct {
	next      http.Handler
	patches   atomic.Int64
	cutAt     atomic.Int64 // the PATCH (1-based) to cut; 0 cuts none
	bodyBytes atomic.Int64
}

func (c *cutter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPatch {
		n := c.patches.Add(1)
		if n == c.cutAt.Load() {
			half := make([]byte, r.ContentLength/2)
			k, _ := io.ReadFull(r.Body, half)
			c.bodyBytes.Add(int64(k))
			panic(http.ErrAbortHandler) // the connection drops mid-body
		}
		r.Body = countingBody{r.Body, &c.bodyBytes}
	}
	c.next.ServeHTTP(w, r)
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countingBody) Read(p []byte) (int, error) {
	k, err := b.ReadCloser.Read(p)
	b.n.Add(int64(k))
	return k, err
}

func newRegistry(t *testing.T) (*cutter, string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	reg, err := registry.New(ctx, registry.Options{Root: filepath.Join(dir, "oci"), DB: db.SQL()})
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{next: reg}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return c, srv.URL
}

// TestUploadResumes: a cut in the middle of an upload costs at most the
// chunk it cut; the next attempt, even from a new process that kept only
// the session, sends the rest, and the registry holds the exact blob.
func TestUploadResumes(t *testing.T) {
	c, base := newRegistry(t)
	blob := make([]byte, 5<<20+123)
	rand.Read(blob)
	d := digest.FromBytes(blob)
	up := &transfer.HTTPUpload{BaseURL: base, Repo: "edge/ship-1/fmnist", Chunk: 1 << 20}

	var saved transfer.UploadSession
	saves := 0
	save := func(s transfer.UploadSession) error { saved = s; saves++; return nil }
	c.cutAt.Store(3)
	var sess transfer.UploadSession
	sent, err := up.Upload(t.Context(), d, int64(len(blob)), bytes.NewReader(blob), &sess, save)
	if err == nil {
		t.Fatal("upload through a cut link succeeded")
	}
	if transfer.IsPermanent(err) {
		t.Fatalf("a cut link is a permanent error: %v", err)
	}
	if saved.Location == "" || saves == 0 {
		t.Fatalf("no session saved to resume from (saves %d)", saves)
	}
	if sent != 2<<20 {
		t.Errorf("sent %d bytes before the cut, want two whole chunks", sent)
	}

	// A new attempt with only the saved session.
	c.cutAt.Store(0)
	resumed := saved
	sent, err = up.Upload(t.Context(), d, int64(len(blob)), bytes.NewReader(blob), &resumed, save)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(len(blob)) - 2<<20; sent != want {
		t.Errorf("resumed upload sent %d bytes, want the %d the registry lacked", sent, want)
	}
	if total := c.bodyBytes.Load(); total > int64(len(blob))+(1<<20) {
		t.Errorf("%d bytes crossed for a %d byte blob: more than one chunk again", total, len(blob))
	}
	if resumed.Location != "" || saved.Location != "" {
		t.Errorf("finished upload left a session: %q", resumed.Location)
	}
	resp, err := http.Get(base + "/v2/edge/ship-1/fmnist/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, blob) {
		t.Fatalf("registry holds %d bytes that differ from the blob", len(got))
	}

	// Once the registry has it, nothing crosses.
	n := c.bodyBytes.Load()
	var fresh transfer.UploadSession
	if sent, err := up.Upload(t.Context(), d, int64(len(blob)), bytes.NewReader(blob), &fresh, nil); err != nil || sent != 0 || c.bodyBytes.Load() != n {
		t.Fatalf("upload of a present blob: sent %d, err %v", sent, err)
	}
}

// TestUploadStaleSession: a session the registry forgot starts over.
func TestUploadStaleSession(t *testing.T) {
	_, base := newRegistry(t)
	blob := []byte(strings.Repeat("outpost ", 1000))
	d := digest.FromBytes(blob)
	up := &transfer.HTTPUpload{BaseURL: base, Repo: "edge/ship-1/m", Chunk: 3000}
	sess := transfer.UploadSession{Location: base + "/v2/edge/ship-1/m/blobs/uploads/does-not-exist"}
	if _, err := up.Upload(t.Context(), d, int64(len(blob)), bytes.NewReader(blob), &sess, nil); err != nil {
		t.Fatal(err)
	}
}

// TestUploadWrongDigest: bytes that do not match the digest are refused
// for good, and nothing is stored under the digest.
func TestUploadWrongDigest(t *testing.T) {
	_, base := newRegistry(t)
	blob := []byte("the real bytes")
	d := digest.FromBytes([]byte("other bytes"))
	up := &transfer.HTTPUpload{BaseURL: base, Repo: "edge/ship-1/m"}
	var sess transfer.UploadSession
	_, err := up.Upload(t.Context(), d, int64(len(blob)), bytes.NewReader(blob), &sess, nil)
	if err == nil || !transfer.IsPermanent(err) {
		t.Fatalf("err = %v, want a permanent refusal", err)
	}
	var se *transfer.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusBadRequest {
		t.Errorf("error is not the registry's 400: %v", err)
	}
	resp, err := http.Head(base + "/v2/edge/ship-1/m/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD after a refused upload: %s", resp.Status)
	}
}
