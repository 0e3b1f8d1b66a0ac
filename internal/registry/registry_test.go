package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/testenv"
)

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAuthorization(t *testing.T) {
	const token = "s3cret"
	tests := []struct {
		name       string
		readOnly   bool
		method     string
		path       string
		hdr        []string
		wantStatus int
		wantCode   string
	}{
		{name: "ping without credentials", method: "GET", path: "/v2/", wantStatus: 401, wantCode: CodeUnauthorized},
		{name: "ping with wrong password", method: "GET", path: "/v2/", hdr: []string{"Authorization", basic("x", "nope")}, wantStatus: 401, wantCode: CodeUnauthorized},
		{name: "ping with basic password", method: "GET", path: "/v2/", hdr: []string{"Authorization", basic("x", token)}, wantStatus: 200},
		{name: "ping with bearer token", method: "GET", path: "/v2/", hdr: []string{"Authorization", "Bearer " + token}, wantStatus: 200},
		{name: "read-only token reads", readOnly: true, method: "GET", path: "/v2/_catalog", hdr: []string{"Authorization", "Bearer " + token}, wantStatus: 200},
		{name: "read-only token cannot upload", readOnly: true, method: "POST", path: "/v2/a/blobs/uploads/", hdr: []string{"Authorization", "Bearer " + token}, wantStatus: 403, wantCode: CodeDenied},
		{name: "read-only token cannot delete", readOnly: true, method: "DELETE", path: "/v2/a/manifests/v1", hdr: []string{"Authorization", "Bearer " + token}, wantStatus: 403, wantCode: CodeDenied},
		{name: "anonymous upload", method: "POST", path: "/v2/a/blobs/uploads/", wantStatus: 401, wantCode: CodeUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{Authorize: passwordAuth(token, tc.readOnly)})
			resp, body := e.req(tc.method, tc.path, nil, tc.hdr...)
			expect(t, resp, body, tc.wantStatus)
			if tc.wantCode != "" {
				if got := errCode(t, body); got != tc.wantCode {
					t.Errorf("code %s, want %s", got, tc.wantCode)
				}
			}
			if tc.wantStatus == 401 && resp.Header.Get("WWW-Authenticate") != `Basic realm="outpost"` {
				t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestAuthorizeFailureIsUnavailable checks that a request whose credential
// could not be checked (the authorizer failed, say its store was busy) is
// answered 503 with Retry-After, not refused as unauthenticated: the
// credential may well be valid, and the client should try again.
func TestAuthorizeFailureIsUnavailable(t *testing.T) {
	e := newEnv(t, Options{Authorize: func(*http.Request, bool) error {
		return errors.New("look up cluster credential: database is locked")
	}})
	for _, method := range []string{"GET", "HEAD"} {
		resp, body := e.req(method, "/v2/", nil, "Authorization", "Bearer valid")
		expect(t, resp, body, http.StatusServiceUnavailable)
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("%s: Retry-After = %q, want a number of seconds", method, resp.Header.Get("Retry-After"))
		}
		if resp.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("%s: WWW-Authenticate = %q on a 503", method, resp.Header.Get("WWW-Authenticate"))
		}
	}
}

func basic(u, p string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(u, p)
	return r.Header.Get("Authorization")
}

// uploadFlow uploads data to repo by some route and returns the final response.
type uploadFlow func(t *testing.T, e *testEnv, repo string, data []byte) *http.Response

func TestUploads(t *testing.T) {
	data := randBytes(t, 3*copyBufferSize+12345)
	tests := []struct {
		name string
		flow uploadFlow
	}{
		{"monolithic POST", func(t *testing.T, e *testEnv, repo string, data []byte) *http.Response {
			resp, _ := e.req("POST", "/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(data).String(), data)
			return resp
		}},
		{"POST then PUT with body", func(t *testing.T, e *testEnv, repo string, data []byte) *http.Response {
			loc := startUpload(t, e, repo)
			resp, _ := e.req("PUT", loc+"?digest="+digest.FromBytes(data).String(), data)
			return resp
		}},
		{"chunked PATCH with Content-Range", func(t *testing.T, e *testEnv, repo string, data []byte) *http.Response {
			loc := startUpload(t, e, repo)
			for off := 0; off < len(data); off += 1 << 20 {
				end := min(off+1<<20, len(data))
				resp, b := e.req("PATCH", loc, data[off:end], "Content-Range", fmt.Sprintf("%d-%d", off, end-1))
				expect(t, resp, b, 202)
				if got, want := resp.Header.Get("Range"), fmt.Sprintf("0-%d", end-1); got != want {
					t.Fatalf("Range = %q, want %q", got, want)
				}
				loc = resp.Header.Get("Location")
			}
			resp, _ := e.req("PUT", loc+"?digest="+digest.FromBytes(data).String(), nil)
			return resp
		}},
		{"streamed PATCH and final chunk in PUT", func(t *testing.T, e *testEnv, repo string, data []byte) *http.Response {
			loc := startUpload(t, e, repo)
			half := len(data) / 2
			resp, b := e.req("PATCH", loc, data[:half])
			expect(t, resp, b, 202)
			resp, _ = e.req("PUT", loc+"?digest="+digest.FromBytes(data).String(), data[half:],
				"Content-Range", fmt.Sprintf("%d-%d", half, len(data)-1))
			return resp
		}},
		{"cross-repo mount", func(t *testing.T, e *testEnv, repo string, data []byte) *http.Response {
			e.pushBlob("other/source", data)
			resp, _ := e.req("POST", "/v2/"+repo+"/blobs/uploads/?mount="+digest.FromBytes(data).String()+"&from=other/source", nil)
			return resp
		}},
		{"mount of unknown blob falls back to a session", func(t *testing.T, e *testEnv, repo string, data []byte) *http.Response {
			resp, b := e.req("POST", "/v2/"+repo+"/blobs/uploads/?mount="+digest.FromBytes(data).String()+"&from=other/source", nil)
			expect(t, resp, b, 202)
			resp, _ = e.req("PUT", resp.Header.Get("Location")+"?digest="+digest.FromBytes(data).String(), data)
			return resp
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			repo := "models/resnet"
			d := digest.FromBytes(data)
			resp := tc.flow(t, e, repo, data)
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("final status %d, want 201", resp.StatusCode)
			}
			if got := resp.Header.Get("Docker-Content-Digest"); got != d.String() {
				t.Errorf("Docker-Content-Digest = %q", got)
			}
			if got := resp.Header.Get("Location"); got != "/v2/"+repo+"/blobs/"+d.String() {
				t.Errorf("Location = %q", got)
			}
			get, body := e.req("GET", "/v2/"+repo+"/blobs/"+d.String(), nil)
			expect(t, get, body, 200)
			if !bytes.Equal(body, data) {
				t.Fatalf("blob content differs")
			}
			if get.Header.Get("Accept-Ranges") != "bytes" || get.Header.Get("Content-Length") != strconv.Itoa(len(data)) {
				t.Errorf("headers %v", get.Header)
			}
			if _, err := os.Stat(filepath.Join(e.root, "blobs", "sha256", d.Encoded())); err != nil {
				t.Errorf("blob not in layout: %v", err)
			}
		})
	}
}

func startUpload(t *testing.T, e *testEnv, repo string) string {
	t.Helper()
	resp, b := e.req("POST", "/v2/"+repo+"/blobs/uploads/", nil)
	expect(t, resp, b, 202)
	loc := resp.Header.Get("Location")
	if loc == "" || resp.Header.Get("Docker-Upload-UUID") == "" || resp.Header.Get("Range") != "0-0" {
		t.Fatalf("bad session headers: %v", resp.Header)
	}
	return loc
}

// uploadOffset asks the server how many bytes of the session it holds.
func uploadOffset(t *testing.T, e *testEnv, loc string) int {
	t.Helper()
	resp, b := e.req("GET", loc, nil)
	expect(t, resp, b, 204)
	last, err := strconv.Atoi(strings.TrimPrefix(resp.Header.Get("Range"), "0-"))
	if err != nil {
		t.Fatalf("Range %q: %v", resp.Header.Get("Range"), err)
	}
	return last + 1
}

func TestUploadResume(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			e := newEnv(t, Options{})
			data := randBytes(t, 5<<20+7)
			d := digest.FromBytes(data)
			loc := startUpload(t, e, "a/b")
			cut := 2<<20 + 3
			resp, b := e.req("PATCH", loc, data[:cut], "Content-Range", fmt.Sprintf("0-%d", cut-1))
			expect(t, resp, b, 202)
			if restart {
				e.restart(Options{})
			}
			// A new client only knows the upload URL.
			off := uploadOffset(t, e, loc)
			if off != cut {
				t.Fatalf("offset %d, want %d", off, cut)
			}
			resp, b = e.req("PATCH", loc, data[off:], "Content-Range", fmt.Sprintf("%d-%d", off, len(data)-1))
			expect(t, resp, b, 202)
			resp, b = e.req("PUT", loc+"?digest="+d.String(), nil)
			expect(t, resp, b, 201)
			get, body := e.req("GET", "/v2/a/b/blobs/"+d.String(), nil)
			expect(t, get, body, 200)
			if !bytes.Equal(body, data) {
				t.Fatal("resumed blob differs")
			}
			resp, b = e.req("GET", loc, nil)
			expect(t, resp, b, 404)
			if errCode(t, b) != CodeBlobUploadUnknown {
				t.Errorf("completed session code %s", errCode(t, b))
			}
		})
	}
}

func TestUploadOutOfOrderChunk(t *testing.T) {
	e := newEnv(t, Options{})
	data := randBytes(t, 100)
	loc := startUpload(t, e, "a")
	resp, b := e.req("PATCH", loc, data[:50], "Content-Range", "0-49")
	expect(t, resp, b, 202)
	for _, cr := range []string{"60-99", "0-49", "garbage"} {
		resp, b = e.req("PATCH", loc, data[50:], "Content-Range", cr)
		expect(t, resp, b, 416)
		if resp.Header.Get("Range") != "0-49" || resp.Header.Get("Location") == "" {
			t.Errorf("416 headers %v", resp.Header)
		}
	}
	if off := uploadOffset(t, e, loc); off != 50 {
		t.Fatalf("offset %d after refused chunks", off)
	}
}

func TestWrongDigest(t *testing.T) {
	data := randBytes(t, 4096)
	wrong := digest.FromString("something else")
	tests := []struct {
		name string
		do   func(e *testEnv) (*http.Response, []byte)
	}{
		{"monolithic", func(e *testEnv) (*http.Response, []byte) {
			return e.req("POST", "/v2/a/blobs/uploads/?digest="+wrong.String(), data)
		}},
		{"session", func(e *testEnv) (*http.Response, []byte) {
			loc := startUpload(e.t, e, "a")
			resp, b := e.req("PATCH", loc, data)
			expect(e.t, resp, b, 202)
			return e.req("PUT", loc+"?digest="+wrong.String(), nil)
		}},
		{"sha512 session", func(e *testEnv) (*http.Response, []byte) {
			loc := startUpload(e.t, e, "a")
			return e.req("PUT", loc+"?digest="+digest.SHA512.FromString("x").String(), data)
		}},
		{"malformed digest", func(e *testEnv) (*http.Response, []byte) {
			return e.req("POST", "/v2/a/blobs/uploads/?digest=sha256:1234", data)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			resp, b := tc.do(e)
			expect(t, resp, b, 400)
			if c := errCode(t, b); c != CodeDigestInvalid {
				t.Errorf("code %s", c)
			}
			if files := blobFiles(t, e.root); len(files) != 0 {
				t.Errorf("files under blobs/: %v", files)
			}
			for _, d := range []digest.Digest{wrong, digest.FromBytes(data)} {
				resp, b := e.req("HEAD", "/v2/a/blobs/"+d.String(), nil)
				expect(t, resp, b, 404)
			}
		})
	}
}

func TestCrashMidUpload(t *testing.T) {
	c := clock.NewFake(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC))
	e := newEnv(t, Options{Clock: c})
	// A session idle for longer than DefaultUploadMaxAge at the restart below.
	oldLoc := startUpload(t, e, "crash/me")
	c.Advance(DefaultUploadMaxAge)
	data := randBytes(t, 1<<20)
	d := digest.FromBytes(data)
	loc := startUpload(t, e, "crash/me")
	resp, b := e.req("PATCH", loc, data[:len(data)/2])
	expect(t, resp, b, 202)
	// Also leave a monolithic upload's temp file behind, as a kill during the request would.
	if err := os.WriteFile(filepath.Join(e.root, "uploads", tmpPrefix+"dead"), data[:10], 0o644); err != nil {
		t.Fatal(err)
	}
	// A session file whose row was never written.
	orphan := filepath.Join(e.root, "uploads", randomID())
	if err := os.WriteFile(orphan, data[:10], 0o644); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Hour)
	e.restart(Options{Clock: c})
	if _, err := os.Stat(orphan); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan session file not cleaned: %v", err)
	}
	resp, b = e.req("GET", oldLoc, nil)
	expect(t, resp, b, 404)
	if _, err := os.Stat(filepath.Join(e.root, "uploads", filepath.Base(oldLoc))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("expired session file not cleaned: %v", err)
	}
	resp, b = e.req("HEAD", "/v2/crash/me/blobs/"+d.String(), nil)
	expect(t, resp, b, 404)
	if files := blobFiles(t, e.root); len(files) != 0 {
		t.Fatalf("files under blobs/ after crash: %v", files)
	}
	if _, err := os.Stat(filepath.Join(e.root, "uploads", tmpPrefix+"dead")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp upload not cleaned: %v", err)
	}
	// The session survives, so the client can still finish it.
	if off := uploadOffset(t, e, loc); off != len(data)/2 {
		t.Fatalf("offset after restart %d", off)
	}
	resp, b = e.req("PUT", loc+"?digest="+d.String(), data[len(data)/2:])
	expect(t, resp, b, 201)
}

// TestAbandonedUploadsExpire: sessions idle for UploadMaxAge, such as the
// one a push killed mid-request leaves, are removed while the registry
// runs, on its clock, and only those.
func TestAbandonedUploadsExpire(t *testing.T) {
	c := clock.NewFake(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC))
	e := newEnv(t, Options{Clock: c, UploadMaxAge: time.Hour})
	data := randBytes(t, 1<<20)
	// A push killed mid-request: its session holds what arrived.
	killed := startUpload(t, e, "abandon/me")
	req, _ := http.NewRequest("PUT", e.srv.URL+killed+"?digest="+digest.FromBytes(data).String(), &cutReader{data: data[:len(data)/2]})
	req.ContentLength = int64(len(data))
	if resp, err := e.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("cut request succeeded with %d", resp.StatusCode)
	}
	file := func(loc string) string { return filepath.Join(e.root, "uploads", filepath.Base(loc)) }
	testenv.WaitFor(t, 10*time.Second, "the cut request's bytes in the session", func() bool {
		fi, err := os.Stat(file(killed))
		return err == nil && fi.Size() > 0
	})
	// A slow push, older than the limit but never idle that long.
	slow := startUpload(t, e, "abandon/me")
	for range 3 {
		resp, b := e.req("PATCH", slow, data[:1000])
		expect(t, resp, b, 202)
		c.Advance(40 * time.Minute)
	}
	// 120 minutes on: the killed session has been idle that long, the slow one 40 minutes.
	testenv.WaitFor(t, 10*time.Second, "the abandoned session to expire", func() bool {
		_, err := os.Stat(file(killed))
		return errors.Is(err, os.ErrNotExist)
	})
	resp, b := e.req("GET", killed, nil)
	expect(t, resp, b, 404)
	if off := uploadOffset(t, e, slow); off != 3000 {
		t.Fatalf("slow session offset %d, want 3000", off)
	}
	var n int
	if err := e.db.QueryRow(`SELECT COUNT(*) FROM reg_uploads`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d session rows (%v), want the slow one alone", n, err)
	}
}

func TestCancelUpload(t *testing.T) {
	e := newEnv(t, Options{})
	loc := startUpload(t, e, "a")
	resp, b := e.req("PATCH", loc, []byte("hello"))
	expect(t, resp, b, 202)
	resp, b = e.req("DELETE", loc, nil)
	expect(t, resp, b, 204)
	resp, b = e.req("GET", loc, nil)
	expect(t, resp, b, 404)
	entries, _ := os.ReadDir(filepath.Join(e.root, "uploads"))
	if len(entries) != 0 {
		t.Errorf("uploads left: %d", len(entries))
	}
}

func TestRange(t *testing.T) {
	e := newEnv(t, Options{})
	data := randBytes(t, 1000)
	d := e.pushBlob("r", data)
	tests := []struct {
		rng        string
		wantStatus int
		from, to   int // expected bytes data[from:to]
	}{
		{"bytes=0-9", 206, 0, 10},
		{"bytes=500-599", 206, 500, 600},
		{"bytes=990-", 206, 990, 1000},
		{"bytes=-25", 206, 975, 1000},
		{"bytes=995-5000", 206, 995, 1000},
		{"bytes=999-999", 206, 999, 1000},
		{"bytes=1000-", 416, 0, 0},
		{"bytes=5000-6000", 416, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.rng, func(t *testing.T) {
			resp, body := e.req("GET", "/v2/r/blobs/"+d.String(), nil, "Range", tc.rng)
			expect(t, resp, body, tc.wantStatus)
			if tc.wantStatus != 206 {
				return
			}
			if !bytes.Equal(body, data[tc.from:tc.to]) {
				t.Fatalf("got %d bytes, want data[%d:%d]", len(body), tc.from, tc.to)
			}
			if want := fmt.Sprintf("bytes %d-%d/1000", tc.from, tc.to-1); resp.Header.Get("Content-Range") != want {
				t.Errorf("Content-Range %q, want %q", resp.Header.Get("Content-Range"), want)
			}
			if resp.Header.Get("Docker-Content-Digest") != d.String() {
				t.Errorf("digest header missing")
			}
		})
	}
	resp, body := e.req("HEAD", "/v2/r/blobs/"+d.String(), nil)
	expect(t, resp, body, 200)
	if resp.Header.Get("Content-Length") != "1000" || len(body) != 0 {
		t.Errorf("HEAD: %v, %d body bytes", resp.Header, len(body))
	}
}

func TestBlockSums(t *testing.T) {
	e := newEnv(t, Options{})
	data := randBytes(t, 5000)
	d := e.pushBlob("r", data)
	path := func(repo string, dg digest.Digest, q string) string {
		return "/v2/" + repo + "/_outpost/blocksums/" + dg.String() + "?" + q
	}
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		from, to   int // the block sums of data[from:to], 512-byte blocks
	}{
		{"whole blob", "GET", path("r", d, "offset=0&length=5000&block=512"), 200, 0, 5000},
		{"a range", "GET", path("r", d, "offset=1000&length=1100&block=512"), 200, 1000, 2100},
		{"to the end", "GET", path("r", d, "offset=4999&length=1&block=512"), 200, 4999, 5000},
		{"past the end", "GET", path("r", d, "offset=4000&length=1001&block=512"), 416, 0, 0},
		{"zero length", "GET", path("r", d, "offset=0&length=0&block=512"), 400, 0, 0},
		{"negative offset", "GET", path("r", d, "offset=-1&length=10&block=512"), 400, 0, 0},
		{"block too small", "GET", path("r", d, "offset=0&length=10&block=64"), 400, 0, 0},
		{"missing parameter", "GET", path("r", d, "offset=0&length=10"), 400, 0, 0},
		{"unknown blob", "GET", path("r", digest.FromString("nope"), "offset=0&length=10&block=512"), 404, 0, 0},
		{"blob of another repository", "GET", path("other", d, "offset=0&length=10&block=512"), 404, 0, 0},
		{"bad digest", "GET", "/v2/r/_outpost/blocksums/sha256:xyz?offset=0&length=10&block=512", 400, 0, 0},
		{"not a GET", "POST", path("r", d, "offset=0&length=10&block=512"), 405, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.req(tc.method, tc.path, nil)
			expect(t, resp, body, tc.wantStatus)
			if tc.wantStatus != 200 {
				return
			}
			if want := artifact.AppendBlockSums(nil, data[tc.from:tc.to], 512); !bytes.Equal(body, want) {
				t.Fatalf("got %d bytes of sums, want the %d of data[%d:%d]", len(body), len(want), tc.from, tc.to)
			}
		})
	}
}

func TestManifestPut(t *testing.T) {
	e := newEnv(t, Options{MaxManifestBytes: 2048})
	img := e.makeImage("m", "", nil, []byte("layer"))
	missing := ocispec.Manifest{}
	_ = json.Unmarshal(img.manifest, &missing)
	missing.Layers = append(missing.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromString("nope"), Size: 4})
	missingBody, _ := json.Marshal(missing)
	big := e.makeImage("m", "", nil)
	var bigM ocispec.Manifest
	_ = json.Unmarshal(big.manifest, &bigM)
	bigM.Annotations = map[string]string{"pad": strings.Repeat("x", 4096)}
	bigBody, _ := json.Marshal(bigM)
	index := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + digest.FromString("unknown").String() + `","size":10}]}`)
	// Descriptors whose sizes lie about the stored content.
	lie := func(edit func(m *ocispec.Manifest)) []byte {
		var m ocispec.Manifest
		_ = json.Unmarshal(img.manifest, &m)
		edit(&m)
		b, _ := json.Marshal(m)
		return b
	}
	layerLie := lie(func(m *ocispec.Manifest) { m.Layers[0].Size = 99999 })
	configLie := lie(func(m *ocispec.Manifest) { m.Config.Size-- })
	// The same key twice: which one counts depends on the parser, so the manifest is refused.
	dupTop := append([]byte(`{"annotations":{"a":"1"},`), bytes.TrimPrefix(img.manifest, []byte("{"))...)
	dupTop = append(dupTop[:len(dupTop)-1], []byte(`,"annotations":{"a":"2"}}`)...)
	dupNested := bytes.Replace(img.manifest, []byte(`"size":5`), []byte(`"size":99999,"size":5`), 1)
	dupFolded := bytes.Replace(img.manifest, []byte(`"layers":`), []byte(`"Layers":[],"layers":`), 1)
	dupEscaped := bytes.Replace(img.manifest, []byte(`"size":5`), []byte(`"size":99999,"s\u0069ze":5`), 1)
	indexLie := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` +
		img.digest.String() + `","size":` + strconv.Itoa(len(img.manifest)+1) + `}]}`)

	tests := []struct {
		name       string
		ref        string
		body       []byte
		ctype      string
		wantStatus int
		wantCode   string
	}{
		{"by tag", "v1", img.manifest, ocispec.MediaTypeImageManifest, 201, ""},
		{"by digest", img.digest.String(), img.manifest, ocispec.MediaTypeImageManifest, 201, ""},
		{"digest mismatch", digest.FromString("x").String(), img.manifest, ocispec.MediaTypeImageManifest, 400, CodeDigestInvalid},
		{"missing layer blob", "broken", missingBody, ocispec.MediaTypeImageManifest, 400, CodeManifestBlobUnknown},
		{"index with unknown child", "idx", index, ocispec.MediaTypeImageIndex, 400, CodeManifestBlobUnknown},
		{"too large", "big", bigBody, ocispec.MediaTypeImageManifest, 413, CodeSizeInvalid},
		{"not json", "junk", []byte("not json"), ocispec.MediaTypeImageManifest, 400, CodeManifestInvalid},
		{"content type mismatch", "ct", img.manifest, ocispec.MediaTypeImageIndex, 400, CodeManifestInvalid},
		{"invalid tag", "-bad", img.manifest, ocispec.MediaTypeImageManifest, 400, CodeManifestInvalid},
		{"layer size lie", "layerlie", layerLie, ocispec.MediaTypeImageManifest, 400, CodeManifestInvalid},
		{"config size lie", "configlie", configLie, ocispec.MediaTypeImageManifest, 400, CodeManifestInvalid},
		{"index child size lie", "indexlie", indexLie, ocispec.MediaTypeImageIndex, 400, CodeManifestInvalid},
		{"duplicate top-level key", "duptop", dupTop, ocispec.MediaTypeImageManifest, 400, CodeManifestInvalid},
		{"duplicate key in a descriptor", "dupnested", dupNested, ocispec.MediaTypeImageManifest, 400, CodeManifestInvalid},
		{"field named twice in other case", "dupfolded", dupFolded, ocispec.MediaTypeImageManifest, 400, CodeManifestInvalid},
		{"duplicate key spelled with an escape", "dupescaped", dupEscaped, ocispec.MediaTypeImageManifest, 400, CodeManifestInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := e.req("PUT", "/v2/m/manifests/"+tc.ref, tc.body, "Content-Type", tc.ctype)
			expect(t, resp, b, tc.wantStatus)
			if tc.wantCode != "" {
				if c := errCode(t, b); c != tc.wantCode {
					t.Errorf("code %s, want %s", c, tc.wantCode)
				}
				if !isDigest(tc.ref) {
					resp, b := e.req("GET", "/v2/m/manifests/"+tc.ref, nil)
					expect(t, resp, b, 404)
				}
				return
			}
			get, body := e.req("GET", "/v2/m/manifests/"+tc.ref, nil)
			expect(t, get, body, 200)
			if !bytes.Equal(body, tc.body) || get.Header.Get("Content-Type") != tc.ctype ||
				get.Header.Get("Docker-Content-Digest") != digest.FromBytes(tc.body).String() {
				t.Errorf("GET returned %v", get.Header)
			}
		})
	}
	tags, err := e.reg.Tags(context.Background(), "m")
	if err != nil || !slices.Equal(tags, []string{"v1"}) {
		t.Fatalf("tags %v, %v", tags, err)
	}
}

func TestTagPagination(t *testing.T) {
	e := newEnv(t, Options{})
	img := e.makeImage("p", "", nil)
	want := []string{"a", "b", "c", "d", "e"}
	for _, tag := range []string{"d", "b", "e", "a", "c"} {
		resp, b := e.putManifest("p", tag, img.manifest)
		expect(t, resp, b, 201)
	}
	var got []string
	next := "/v2/p/tags/list?n=2"
	pages := 0
	for next != "" {
		resp, b := e.req("GET", next, nil)
		expect(t, resp, b, 200)
		var tl struct {
			Name string
			Tags []string
		}
		if err := json.Unmarshal(b, &tl); err != nil {
			t.Fatal(err)
		}
		if len(tl.Tags) > 2 || tl.Name != "p" {
			t.Fatalf("page %s", b)
		}
		got = append(got, tl.Tags...)
		pages++
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			next = strings.TrimPrefix(strings.SplitN(l, ">", 2)[0], "<")
		}
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Fatalf("tags %v in %d pages", got, pages)
	}
	resp, b := e.req("GET", "/v2/p/tags/list?last=c", nil)
	expect(t, resp, b, 200)
	if !strings.Contains(string(b), `["d","e"]`) {
		t.Errorf("last=c gave %s", b)
	}
	resp, b = e.req("GET", "/v2/unknown/tags/list", nil)
	expect(t, resp, b, 404)
	if errCode(t, b) != CodeNameUnknown {
		t.Errorf("code %s", errCode(t, b))
	}
	e.pushBlob("q/z", []byte("x"))
	resp, b = e.req("GET", "/v2/_catalog?n=1", nil)
	expect(t, resp, b, 200)
	if string(b) != `{"repositories":["p"]}` || !strings.Contains(resp.Header.Get("Link"), "last=p") {
		t.Errorf("catalog page %s %v", b, resp.Header)
	}
}

func TestReferrers(t *testing.T) {
	e := newEnv(t, Options{})
	subj := e.makeImage("s", "", nil, []byte("model weights"))
	resp, b := e.putManifest("s", "v1", subj.manifest)
	expect(t, resp, b, 201)
	sd := &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: subj.digest, Size: int64(len(subj.manifest))}
	sig := e.makeImage("s", "application/vnd.test.signature", sd, []byte("sig"))
	idx := e.makeImage("s", "application/vnd.test.chunks", sd, []byte("chunks"))
	for _, m := range []image{sig, idx} {
		resp, b := e.putManifest("s", m.digest.String(), m.manifest)
		expect(t, resp, b, 201)
		if resp.Header.Get("OCI-Subject") != subj.digest.String() {
			t.Errorf("OCI-Subject = %q", resp.Header.Get("OCI-Subject"))
		}
	}
	tests := []struct {
		name     string
		subject  digest.Digest
		filter   string
		want     []digest.Digest
		filtered bool
	}{
		{"all", subj.digest, "", []digest.Digest{sig.digest, idx.digest}, false},
		{"filtered", subj.digest, "application/vnd.test.signature", []digest.Digest{sig.digest}, true},
		{"filter matches nothing", subj.digest, "application/none", nil, true},
		{"unknown subject", digest.FromString("nothing"), "", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := "/v2/s/referrers/" + tc.subject.String()
			if tc.filter != "" {
				path += "?artifactType=" + tc.filter
			}
			resp, b := e.req("GET", path, nil)
			expect(t, resp, b, 200)
			if resp.Header.Get("Content-Type") != ocispec.MediaTypeImageIndex {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
			if (resp.Header.Get("OCI-Filters-Applied") == "artifactType") != tc.filtered {
				t.Errorf("OCI-Filters-Applied %q", resp.Header.Get("OCI-Filters-Applied"))
			}
			var ix ocispec.Index
			if err := json.Unmarshal(b, &ix); err != nil || ix.Manifests == nil {
				t.Fatalf("index %s: %v", b, err)
			}
			var got []digest.Digest
			for _, m := range ix.Manifests {
				got = append(got, m.Digest)
				if m.ArtifactType == "" || m.Size == 0 || m.MediaType != ocispec.MediaTypeImageManifest {
					t.Errorf("descriptor %+v", m)
				}
			}
			slices.Sort(got)
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("referrers %v, want %v", got, want)
			}
		})
	}
}

func TestDeletes(t *testing.T) {
	e := newEnv(t, Options{})
	layer := []byte("layer bytes")
	img := e.makeImage("d", "", nil, layer)
	for _, tag := range []string{"v1", "latest"} {
		resp, b := e.putManifest("d", tag, img.manifest)
		expect(t, resp, b, 201)
	}
	ld := digest.FromBytes(layer)
	steps := []struct {
		name       string
		method     string
		path       string
		wantStatus int
	}{
		{"delete tag", "DELETE", "/v2/d/manifests/latest", 202},
		{"tag gone", "GET", "/v2/d/manifests/latest", 404},
		{"other tag kept", "GET", "/v2/d/manifests/v1", 200},
		{"delete unknown tag", "DELETE", "/v2/d/manifests/nope", 404},
		{"delete by digest", "DELETE", "/v2/d/manifests/" + img.digest.String(), 202},
		{"manifest gone", "GET", "/v2/d/manifests/" + img.digest.String(), 404},
		{"its tags gone", "GET", "/v2/d/manifests/v1", 404},
		{"delete manifest again", "DELETE", "/v2/d/manifests/" + img.digest.String(), 404},
		{"delete blob", "DELETE", "/v2/d/blobs/" + ld.String(), 202},
		{"blob gone", "HEAD", "/v2/d/blobs/" + ld.String(), 404},
		{"delete blob again", "DELETE", "/v2/d/blobs/" + ld.String(), 404},
	}
	for _, s := range steps {
		resp, b := e.req(s.method, s.path, nil)
		if resp.StatusCode != s.wantStatus {
			t.Fatalf("%s: status %d, want %d: %s", s.name, resp.StatusCode, s.wantStatus, b)
		}
	}
	for _, d := range []digest.Digest{ld, img.digest} {
		if _, err := os.Stat(filepath.Join(e.root, "blobs", "sha256", d.Encoded())); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still on disk: %v", d, err)
		}
	}
}

func TestCheckTagAndEvents(t *testing.T) {
	var mu sync.Mutex
	var events []Event
	opts := Options{
		CheckTag: func(ctx context.Context, c TagChange) error {
			if c.Old.Digest != "" && c.New.Annotations["version"] < c.Old.Annotations["version"] {
				return errors.New("version goes backwards")
			}
			return nil
		},
		OnChange: func(ctx context.Context, ev Event) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, ev)
		},
	}
	e := newEnv(t, opts)
	mk := func(version string) []byte {
		img := e.makeImage("c", "", nil)
		var m ocispec.Manifest
		_ = json.Unmarshal(img.manifest, &m)
		m.Annotations = map[string]string{"version": version}
		b, _ := json.Marshal(m)
		return b
	}
	v2, v1 := mk("2"), mk("1")
	resp, b := e.putManifest("c", "stable", v2)
	expect(t, resp, b, 201)
	resp, b = e.putManifest("c", "stable", v1)
	expect(t, resp, b, 409)
	if !strings.Contains(string(b), "version goes backwards") {
		t.Errorf("refusal body %s", b)
	}
	d, err := e.reg.Resolve(context.Background(), "c", "stable")
	if err != nil || d.Digest != digest.FromBytes(v2) {
		t.Fatalf("tag moved despite refusal: %v %v", d.Digest, err)
	}
	if _, err := e.reg.Resolve(context.Background(), "c", digest.FromBytes(v1).String()); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused manifest stored: %v", err)
	}
	resp, b = e.req("DELETE", "/v2/c/manifests/stable", nil)
	expect(t, resp, b, 202)
	mu.Lock()
	defer mu.Unlock()
	want := []Event{
		{Repo: "c", Tag: "stable", Digest: digest.FromBytes(v2), ArtifactType: ocispec.MediaTypeImageConfig},
		{Repo: "c", Tag: "stable", Digest: digest.FromBytes(v2), Deleted: true, ArtifactType: ocispec.MediaTypeImageConfig},
	}
	if !slices.Equal(events, want) {
		t.Errorf("events %+v, want %+v", events, want)
	}
}

// TestTombstones: a deleted tag leaves a tombstone naming what it pointed at,
// which CheckTag sees when the tag is pushed again, a GET of the tag
// mentions, and a restart keeps.
func TestTombstones(t *testing.T) {
	c := clock.NewFake(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC))
	var mu sync.Mutex
	var changes []TagChange
	opts := Options{Clock: c, CheckTag: func(ctx context.Context, ch TagChange) error {
		mu.Lock()
		defer mu.Unlock()
		ch.Manifest = nil
		changes = append(changes, ch)
		return nil
	}}
	e := newEnv(t, opts)
	ctx := context.Background()
	a := e.makeImage("t", "", nil, []byte("a"))
	b := e.makeImage("t", "", nil, []byte("b"))
	for _, tag := range []string{"v1", "v2"} {
		resp, body := e.putManifest("t", tag, a.manifest)
		expect(t, resp, body, 201)
	}
	if _, err := e.reg.Tombstone(ctx, "t", "v1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("tombstone of a live tag: %v", err)
	}
	// v1 by tag, v2 with the manifest it names.
	resp, body := e.req("DELETE", "/v2/t/manifests/v1", nil)
	expect(t, resp, body, 202)
	c.Advance(time.Minute)
	resp, body = e.req("DELETE", "/v2/t/manifests/"+a.digest.String(), nil)
	expect(t, resp, body, 202)
	e.restart(opts)
	for tag, when := range map[string]time.Time{"v1": c.Now().Add(-time.Minute), "v2": c.Now()} {
		ts, err := e.reg.Tombstone(ctx, "t", tag)
		if err != nil || ts.Digest != a.digest || !ts.Deleted.Equal(when) {
			t.Errorf("tombstone of %s: %+v %v, want %s deleted at %v", tag, ts, err, a.digest, when)
		}
		resp, body := e.req("GET", "/v2/t/manifests/"+tag, nil)
		expect(t, resp, body, 404)
		if !strings.Contains(string(body), "deleted") || !strings.Contains(string(body), a.digest.String()) {
			t.Errorf("GET of deleted tag %s: %s", tag, body)
		}
	}
	resp, body = e.putManifest("t", "v1", b.manifest)
	expect(t, resp, body, 201)
	mu.Lock()
	defer mu.Unlock()
	last := changes[len(changes)-1]
	if last.Repo != "t" || last.Tag != "v1" || last.Old.Digest != "" || last.Deleted != a.digest || last.New.Digest != b.digest {
		t.Errorf("CheckTag saw %+v, want v1 from tombstone %s to %s", last, a.digest, b.digest)
	}
}

func TestRestartKeepsEverything(t *testing.T) {
	e := newEnv(t, Options{})
	img := e.makeImage("models/resnet", "application/vnd.test.model", nil, []byte("weights"))
	resp, b := e.putManifest("models/resnet", "1.0.0", img.manifest)
	expect(t, resp, b, 201)
	sd := &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: img.digest, Size: int64(len(img.manifest))}
	ref := e.makeImage("models/resnet", "application/vnd.test.sig", sd)
	resp, b = e.putManifest("models/resnet", ref.digest.String(), ref.manifest)
	expect(t, resp, b, 201)

	e.restart(Options{})
	ctx := context.Background()
	checks := []struct {
		path string
		want int
	}{
		{"/v2/models/resnet/manifests/1.0.0", 200},
		{"/v2/models/resnet/manifests/" + ref.digest.String(), 200},
		{"/v2/models/resnet/blobs/" + digest.FromString("weights").String(), 200},
		{"/v2/models/resnet/tags/list", 200},
	}
	for _, c := range checks {
		resp, b := e.req("GET", c.path, nil)
		expect(t, resp, b, c.want)
	}
	refs, err := e.reg.Referrers(ctx, "models/resnet", img.digest, "")
	if err != nil || len(refs) != 1 || refs[0].Digest != ref.digest {
		t.Fatalf("referrers after restart %v %v", refs, err)
	}
	repos, err := e.reg.Repositories(ctx, "models/")
	if err != nil || !slices.Equal(repos, []string{"models/resnet"}) {
		t.Fatalf("repositories %v %v", repos, err)
	}
	var ix ocispec.Index
	raw, err := os.ReadFile(filepath.Join(e.root, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &ix); err != nil || len(ix.Manifests) != 1 ||
		ix.Manifests[0].Annotations[ocispec.AnnotationRefName] != "models/resnet:1.0.0" || ix.Manifests[0].Digest != img.digest {
		t.Fatalf("index.json %s", raw)
	}
	if _, err := os.Stat(filepath.Join(e.root, "oci-layout")); err != nil {
		t.Fatal(err)
	}
}

func TestQueryAPI(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := context.Background()
	img := e.makeImage("q", "", nil, []byte("abc"))
	resp, b := e.putManifest("q", "v1", img.manifest)
	expect(t, resp, b, 201)
	body, desc, err := e.reg.Manifest(ctx, "q", img.digest)
	if err != nil || !bytes.Equal(body, img.manifest) || desc.MediaType != ocispec.MediaTypeImageManifest || desc.Size != int64(len(body)) {
		t.Fatalf("Manifest: %v %+v", err, desc)
	}
	f, size, err := e.reg.OpenBlob(ctx, "q", digest.FromString("abc"))
	if err != nil || size != 3 {
		t.Fatalf("OpenBlob: %v %d", err, size)
	}
	f.Close()
	notFound := []error{
		func() error { _, err := e.reg.Resolve(ctx, "q", "v2"); return err }(),
		func() error { _, err := e.reg.Resolve(ctx, "nope", "v1"); return err }(),
		func() error { _, _, err := e.reg.Manifest(ctx, "q", digest.FromString("x")); return err }(),
		func() error { _, _, err := e.reg.OpenBlob(ctx, "other", digest.FromString("abc")); return err }(),
		func() error { _, err := e.reg.Tags(ctx, "nope"); return err }(),
	}
	for i, err := range notFound {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("case %d: %v, want ErrNotFound", i, err)
		}
	}
}

func TestRequestValidation(t *testing.T) {
	e := newEnv(t, Options{})
	tests := []struct {
		method, path string
		wantStatus   int
		wantCode     string
	}{
		{"GET", "/v2/UPPER/tags/list", 400, CodeNameInvalid},
		{"GET", "/v2/a//b/tags/list", 400, CodeNameInvalid},
		{"POST", "/v2/bad..name/blobs/uploads/", 400, CodeNameInvalid},
		{"GET", "/v2/a/blobs/sha256:short", 400, CodeDigestInvalid},
		{"GET", "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", 400, CodeDigestInvalid},
		{"GET", "/v2/a/referrers/notadigest", 400, CodeDigestInvalid},
		{"GET", "/v2/a/blobs/" + digest.FromString("x").String(), 404, CodeBlobUnknown},
		{"GET", "/v2/a/manifests/v1", 404, CodeManifestUnknown},
		{"PATCH", "/v2/a/blobs/uploads/0123456789abcdef0123456789abcdef", 404, CodeBlobUploadUnknown},
		{"GET", "/v2/a/blobs/uploads/../../x", 404, ""},
		{"POST", "/v2/a/manifests/v1", 405, CodeUnsupported},
		{"GET", "/v3/", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			resp, b := e.req(tc.method, tc.path, nil)
			expect(t, resp, b, tc.wantStatus)
			if tc.wantCode != "" && errCode(t, b) != tc.wantCode {
				t.Errorf("code %s, want %s", errCode(t, b), tc.wantCode)
			}
		})
	}
}

func TestConcurrentPushes(t *testing.T) {
	e := newEnv(t, Options{})
	shared := randBytes(t, 256<<10)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			repo := fmt.Sprintf("conc/r%d", i%2)
			d := digest.FromBytes(shared)
			r, err := http.Post(e.srv.URL+"/v2/"+repo+"/blobs/uploads/?digest="+d.String(), "application/octet-stream", bytes.NewReader(shared))
			if err != nil {
				errs <- err
				return
			}
			r.Body.Close()
			if r.StatusCode != 201 {
				errs <- fmt.Errorf("blob push %d", r.StatusCode)
				return
			}
			cfg := fmt.Sprintf(`{"n":%d}`, i)
			cd := digest.FromString(cfg)
			r, err = http.Post(e.srv.URL+"/v2/"+repo+"/blobs/uploads/?digest="+cd.String(), "application/octet-stream", strings.NewReader(cfg))
			if err != nil {
				errs <- err
				return
			}
			r.Body.Close()
			m := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":%d}]}`,
				ocispec.MediaTypeImageManifest, cd, len(cfg), d, len(shared))
			req, _ := http.NewRequest("PUT", e.srv.URL+"/v2/"+repo+"/manifests/t"+strconv.Itoa(i), strings.NewReader(m))
			req.Header.Set("Content-Type", ocispec.MediaTypeImageManifest)
			r, err = http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			r.Body.Close()
			if r.StatusCode != 201 {
				errs <- fmt.Errorf("manifest push %d", r.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var ix ocispec.Index
	raw, _ := os.ReadFile(filepath.Join(e.root, "index.json"))
	if err := json.Unmarshal(raw, &ix); err != nil || len(ix.Manifests) != 8 {
		t.Fatalf("index.json has %d entries: %v", len(ix.Manifests), err)
	}
}

// cutReader yields data and then fails, like a link that drops mid-request.
type cutReader struct {
	data []byte
	off  int
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.off >= len(c.data) {
		return 0, errors.New("link cut")
	}
	n := copy(p, c.data[c.off:])
	c.off += n
	return n, nil
}

func TestResumeAfterCutRequest(t *testing.T) {
	e := newEnv(t, Options{})
	data := randBytes(t, 4<<20)
	d := digest.FromBytes(data)
	loc := startUpload(t, e, "cut")
	sent := 3 << 20
	req, _ := http.NewRequest("PATCH", e.srv.URL+loc, &cutReader{data: data[:sent]})
	req.ContentLength = int64(len(data)) // promise more than is sent
	if resp, err := e.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("cut request succeeded with %d", resp.StatusCode)
	}
	resp, b := e.req("HEAD", "/v2/cut/blobs/"+d.String(), nil)
	expect(t, resp, b, 404)
	// The server keeps what arrived. Like any resuming client, ask for the offset and continue from there;
	// the cut request may still be draining into the session, in which case the server answers 416 and
	// the client asks again. ("0-0" is ambiguous between 0 and 1 bytes, so on 416 try 0 as well.)
	deadline := time.Now().Add(10 * time.Second)
	for done := false; !done; {
		if time.Now().After(deadline) {
			t.Fatal("could not resume the upload before the deadline")
		}
		off := uploadOffset(t, e, loc)
		if off > sent {
			t.Fatalf("offset %d beyond the %d bytes sent", off, sent)
		}
		for _, start := range []int{off, 0} {
			resp, b = e.req("PUT", loc+"?digest="+d.String(), data[start:], "Content-Range", fmt.Sprintf("%d-%d", start, len(data)-1))
			if resp.StatusCode == 201 {
				done = true
				break
			}
			expect(t, resp, b, 416)
			if off != 1 {
				break
			}
		}
	}
	resp, b = e.req("GET", "/v2/cut/blobs/"+d.String(), nil)
	expect(t, resp, b, 200)
	if !bytes.Equal(b, data) {
		t.Fatal("resumed blob differs")
	}
}

// TestCanceledWriteLeavesNoTransactionOpen races a context's end with
// withTx's BEGIN: the driver may report the context's error for a BEGIN that
// ran, and the connection then went back to the pool inside a transaction,
// failing every later write on it.
func TestCanceledWriteLeavesNoTransactionOpen(t *testing.T) {
	e := newEnv(t, Options{})
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				// Deadlines spread over the time a transaction takes.
				c, cancel := context.WithTimeout(ctx, time.Duration((i*7+g)%200)*time.Microsecond)
				_ = e.reg.withTx(c, func(q querier) error { return e.reg.ensureRepo(c, q, "r") })
				cancel()
			}
		})
	}
	wg.Wait()
	testenv.NoOpenTransaction(t, e.db, e.db.Stats().OpenConnections)
}
