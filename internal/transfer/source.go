package transfer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode"

	"github.com/opencontainers/go-digest"
	"outpost.dev/outpost/internal/artifact"
)

// RangeSource opens byte ranges of blobs.
type RangeSource interface {
	// OpenRange returns a reader of the n bytes of blob starting at off.
	// The reader may end early (a cut); the caller then asks again for
	// what it lacks. Errors that asking again cannot fix are marked with
	// Permanent. A source that learns the blob's whole size returns a
	// reader that is also a BlobSizer, or, when the range does not fit in
	// the blob, an error wrapping *BlobSizeError.
	OpenRange(ctx context.Context, blob digest.Digest, off, n int64) (io.ReadCloser, error)
}

// BlobSizer is implemented by readers of OpenRange that know the size of
// the whole blob, so that Fetch can refuse a blob whose size is not its
// plan's.
type BlobSizer interface {
	// BlobSize is the size of the whole blob in bytes.
	BlobSize() int64
}

// BlobSizeError is a source's answer that a blob is too short for the
// range asked.
type BlobSizeError struct {
	// Blob is the blob's digest.
	Blob digest.Digest
	// Size is its size at the source.
	Size int64
}

// Error describes the blob's size.
func (e *BlobSizeError) Error() string { return fmt.Sprintf("blob %s is %d bytes", e.Blob, e.Size) }

// sizedBody is a response body that knows the size of the whole blob.
type sizedBody struct {
	io.ReadCloser
	size int64
}

// BlobSize implements BlobSizer.
func (b *sizedBody) BlobSize() int64 { return b.size }

// BlockSummer is a RangeSource that can also return the block sums
// (artifact.BlockSums) of a range of a blob, so that a Fetch holding a
// similar range (Plan.Similar) fetches only the blocks that differ.
type BlockSummer interface {
	// BlockSums returns the sums of the blocks of block bytes that cut
	// bytes off to off+n-1 of blob.
	BlockSums(ctx context.Context, blob digest.Digest, off, n int64, block int) ([]byte, error)
}

// ErrSizeMismatch marks a blob whose size at the source is not the size the
// plan says (the size its manifest gave). It is permanent: the same blob
// will never have another size.
var ErrSizeMismatch = errors.New("blob size does not match")

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix, such as a missing
// blob or a refused credential. It returns nil for nil.
func Permanent(err error) error {
	if err == nil || IsPermanent(err) {
		return err
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked by
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// StatusError is an unexpected HTTP response to a range request.
type StatusError struct {
	// URL is the requested URL.
	URL string
	// StatusCode is the response's status code.
	StatusCode int
	// Message is the start of the response body, or the registry's error
	// message when the body is an OCI error document.
	Message string
}

// Error describes the response.
func (e *StatusError) Error() string {
	s := fmt.Sprintf("GET %s: %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	switch e.StatusCode {
	case http.StatusUnauthorized:
		s += " (credential missing or not accepted)"
	case http.StatusForbidden:
		s += " (credential not allowed to read this repository)"
	case http.StatusNotFound:
		s += " (blob not in the registry)"
	case http.StatusRequestedRangeNotSatisfiable:
		s += " (range outside the blob)"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Retryable reports whether asking again may succeed: server errors,
// timeouts and rate limiting.
func (e *StatusError) Retryable() bool {
	switch e.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	}
	return e.StatusCode >= 500
}

// HTTPSource reads blob ranges from an OCI distribution registry with
// HTTP Range requests: GET <BaseURL>/v2/<Repo>/blobs/<digest>.
type HTTPSource struct {
	// Client sends the requests; nil means http.DefaultClient. Bulk
	// transfers should use HTTP/1.1 (see clientconfig).
	Client *http.Client
	// BaseURL is the registry's scheme, host and port, e.g.
	// https://hub.example:8443.
	BaseURL string
	// Repo is the repository, e.g. models/resnet.
	Repo string
	// Token, if set, is sent as a Bearer credential.
	Token string
}

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 4 << 10

// OpenRange requests bytes off to off+n-1 of blob. It accepts a 206
// response whose Content-Range names exactly that range, or a 200 response
// when off is 0 and the body is exactly n bytes (the whole blob); the
// reader is a BlobSizer when the response gives the blob's size. A blob too
// short for the range is a permanent *BlobSizeError. 401, 403, 404, 416 and
// other client errors are permanent; server errors, 408, 429 and
// connection errors are not.
func (s *HTTPSource) OpenRange(ctx context.Context, blob digest.Digest, off, n int64) (io.ReadCloser, error) {
	if off < 0 || n <= 0 {
		return nil, Permanent(fmt.Errorf("invalid range of %d bytes at offset %d", n, off))
	}
	if err := blob.Validate(); err != nil {
		return nil, Permanent(fmt.Errorf("blob digest: %w", err))
	}
	u := strings.TrimRight(s.BaseURL, "/") + "/v2/" + strings.Trim(s.Repo, "/") + "/blobs/" + blob.String()
	last := off + n - 1
	resp, err := s.get(ctx, u, fmt.Sprintf("bytes=%d-%d", off, last))
	if err != nil {
		return nil, fmt.Errorf("bytes %d-%d: %w", off, last, err)
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cr := resp.Header.Get("Content-Range")
		a, b, size, ok := parseContentRange(cr)
		if ok && size >= 0 && last >= size {
			resp.Body.Close()
			return nil, Permanent(&BlobSizeError{Blob: blob, Size: size})
		}
		if !ok || a != off || b != last || (resp.ContentLength >= 0 && resp.ContentLength != n) {
			resp.Body.Close()
			return nil, Permanent(fmt.Errorf("GET %s: asked for bytes %d-%d, got Content-Range %q", u, off, last, cr))
		}
		return &sizedBody{ReadCloser: resp.Body, size: size}, nil
	case http.StatusOK:
		if off == 0 && resp.ContentLength == n {
			return &sizedBody{ReadCloser: resp.Body, size: n}, nil
		}
		resp.Body.Close()
		if resp.ContentLength >= 0 && last >= resp.ContentLength {
			return nil, Permanent(&BlobSizeError{Blob: blob, Size: resp.ContentLength})
		}
		return nil, Permanent(fmt.Errorf("GET %s: server ignored the range request for bytes %d-%d and sent %d bytes", u, off, last, resp.ContentLength))
	case http.StatusRequestedRangeNotSatisfiable:
		if size, ok := unsatisfiedRange(resp.Header.Get("Content-Range")); ok && last >= size {
			resp.Body.Close()
			return nil, Permanent(&BlobSizeError{Blob: blob, Size: size})
		}
	}
	defer resp.Body.Close()
	return nil, statusError(u, resp)
}

// unsatisfiedRange parses the Content-Range "bytes */size" of a 416
// response.
func unsatisfiedRange(s string) (int64, bool) {
	rest, found := strings.CutPrefix(s, "bytes */")
	if !found {
		return 0, false
	}
	size, err := strconv.ParseInt(rest, 10, 64)
	return size, err == nil && size >= 0
}

// BlockSums asks the registry's Outpost extension for the block sums of
// bytes off to off+n-1 of blob: GET <BaseURL>/v2/<Repo>/_outpost/
// blocksums/<digest>?offset=&length=&block=. Registries without it answer
// 404, a permanent error.
func (s *HTTPSource) BlockSums(ctx context.Context, blob digest.Digest, off, n int64, block int) ([]byte, error) {
	if off < 0 || n <= 0 || n > artifact.MaxSumRange || block < artifact.MinSumBlock || block > artifact.MaxSumBlock {
		return nil, Permanent(fmt.Errorf("invalid block sum request: %d bytes at offset %d in blocks of %d", n, off, block))
	}
	if err := blob.Validate(); err != nil {
		return nil, Permanent(fmt.Errorf("blob digest: %w", err))
	}
	u := fmt.Sprintf("%s/v2/%s/_outpost/blocksums/%s?offset=%d&length=%d&block=%d",
		strings.TrimRight(s.BaseURL, "/"), strings.Trim(s.Repo, "/"), blob, off, n, block)
	resp, err := s.get(ctx, u, "")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	want := (n + int64(block) - 1) / int64(block) * artifact.BlockSumSize
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(u, resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, want+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if int64(len(b)) != want {
		return nil, Permanent(fmt.Errorf("GET %s: %d bytes of block sums, want %d", u, len(b), want))
	}
	return b, nil
}

// get sends a GET of u with the source's credential, and a Range header
// when rng is set.
func (s *HTTPSource) get(ctx context.Context, u, rng string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, Permanent(fmt.Errorf("build request: %w", err))
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	req.Header.Set("Accept-Encoding", "identity")
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return resp, nil
}

// statusError reads an unexpected response's error, marked Permanent
// unless asking again may succeed.
func statusError(u string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	serr := &StatusError{URL: u, StatusCode: resp.StatusCode, Message: errorMessage(b)}
	if serr.Retryable() {
		return serr
	}
	return Permanent(serr)
}

// parseContentRange parses "bytes a-b/size" (size may be "*", reported as
// -1).
func parseContentRange(s string) (a, b, size int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, total, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	as, bs, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	var err error
	if a, err = strconv.ParseInt(as, 10, 64); err != nil || a < 0 {
		return 0, 0, 0, false
	}
	if b, err = strconv.ParseInt(bs, 10, 64); err != nil || b < a {
		return 0, 0, 0, false
	}
	size = -1
	if total != "*" {
		if size, err = strconv.ParseInt(total, 10, 64); err != nil || size <= b {
			return 0, 0, 0, false
		}
	}
	return a, b, size, true
}

// errorMessage extracts a short message from an error response body: the
// messages of an OCI error document, or the body's first line.
func errorMessage(b []byte) string {
	var doc struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &doc) == nil && len(doc.Errors) > 0 {
		var parts []string
		for _, e := range doc.Errors {
			parts = append(parts, strings.TrimSpace(e.Code+" "+e.Message))
		}
		return strings.Join(parts, "; ")
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	line = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, line)
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	return line
}
