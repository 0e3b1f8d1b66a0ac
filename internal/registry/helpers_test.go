package registry

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	_ "modernc.org/sqlite"

	"outpost.dev/outpost/internal/auth"
)

// testEnv is a registry served over a loopback HTTP server, with its layout dir and database.
type testEnv struct {
	t    *testing.T
	root string
	dbp  string
	db   *sql.DB
	reg  *Registry
	srv  *httptest.Server
	// stop ends the registry's background work.
	stop context.CancelFunc
}

func openDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatalf("open db: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newEnv starts a registry in a fresh temp dir; opts.Root and opts.DB are filled in.
func newEnv(t *testing.T, opts Options) *testEnv {
	t.Helper()
	dir := t.TempDir()
	e := &testEnv{t: t, root: filepath.Join(dir, "oci"), dbp: filepath.Join(dir, "hub.db")}
	e.start(opts)
	return e
}

// start (re)opens the database and a new Registry over the env's dir and serves it.
func (e *testEnv) start(opts Options) {
	e.t.Helper()
	e.db = openDB(e.t, e.dbp)
	opts.Root, opts.DB = e.root, e.db
	ctx, stop := context.WithCancel(context.Background())
	e.t.Cleanup(stop)
	reg, err := New(ctx, opts)
	if err != nil {
		stop()
		e.t.Fatalf("New: %v", err)
	}
	e.reg, e.stop = reg, stop
	e.srv = httptest.NewServer(reg)
	e.t.Cleanup(e.srv.Close)
}

// restart drops the server, registry and database handle (as a crash would) and opens new ones.
func (e *testEnv) restart(opts Options) {
	e.t.Helper()
	e.srv.CloseClientConnections()
	e.srv.Close()
	e.stop()
	e.db.Close()
	e.start(opts)
}

// passwordAuth allows requests whose Basic password or Bearer token is token; readOnly forbids writes.
func passwordAuth(token string, readOnly bool) func(r *http.Request, write bool) error {
	return func(r *http.Request, write bool) error {
		_, p, ok := r.BasicAuth()
		if !ok {
			if h := r.Header.Get("Authorization"); len(h) > 7 && h[:7] == "Bearer " {
				p, ok = h[7:], true
			}
		}
		if !ok || p != token {
			return fmt.Errorf("bad credentials: %w", auth.ErrUnauthenticated)
		}
		if write && readOnly {
			return fmt.Errorf("read only: %w", auth.ErrForbidden)
		}
		return nil
	}
}

// blobFiles lists files under blobs/ (relative paths).
func blobFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(root, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("walk blobs: %v", err)
	}
	return out
}

// req sends a request to the env's server and returns the response with its body read.
func (e *testEnv) req(method, path string, body []byte, hdr ...string) (*http.Response, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	r, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(r)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

// expect fails the test unless resp has status want.
func expect(t *testing.T, resp *http.Response, body []byte, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, want, body)
	}
}

// errCode returns the first OCI error code in body.
func errCode(t *testing.T, body []byte) string {
	t.Helper()
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) == 0 {
		t.Fatalf("not an OCI error body: %s", body)
	}
	return eb.Errors[0].Code
}

// pushBlob uploads data monolithically to repo and returns its digest.
func (e *testEnv) pushBlob(repo string, data []byte) digest.Digest {
	e.t.Helper()
	d := digest.FromBytes(data)
	resp, b := e.req(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), data,
		"Content-Type", "application/octet-stream")
	expect(e.t, resp, b, http.StatusCreated)
	return d
}

// image is a test image manifest with its config and layers.
type image struct {
	manifest []byte
	digest   digest.Digest
}

// makeImage pushes config and layer blobs to repo and builds (but does not push) a manifest for them.
func (e *testEnv) makeImage(repo, artifactType string, subject *ocispec.Descriptor, layers ...[]byte) image {
	e.t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: artifactType,
		Config:       ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: e.pushBlob(repo, cfg), Size: int64(len(cfg))},
		Layers:       []ocispec.Descriptor{},
		Subject:      subject,
	}
	for _, l := range layers {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: e.pushBlob(repo, l), Size: int64(len(l))})
	}
	b, err := json.Marshal(m)
	if err != nil {
		e.t.Fatal(err)
	}
	return image{manifest: b, digest: digest.FromBytes(b)}
}

// putManifest PUTs an OCI image manifest body to repo at ref.
func (e *testEnv) putManifest(repo, ref string, body []byte) (*http.Response, []byte) {
	e.t.Helper()
	return e.req(http.MethodPut, "/v2/"+repo+"/manifests/"+ref, body, "Content-Type", ocispec.MediaTypeImageManifest)
}
