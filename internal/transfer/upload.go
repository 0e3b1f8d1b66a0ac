package transfer

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
)

// DefaultUploadChunk is the size of each PATCH of an Upload: what a cut
// link can cost again, at most.
const DefaultUploadChunk = 1 << 20

// UploadSession is where a resumable blob upload stands: the registry's
// session URL. The caller keeps it (in its database) between attempts, and
// across restarts, so that an upload cut in the middle resumes from what
// the registry already holds instead of from the first byte.
type UploadSession struct {
	// Location is the upload session's URL; empty before one is opened.
	Location string `json:"location,omitempty"`
}

// HTTPUpload pushes blobs to an OCI distribution registry in chunks
// (POST, then PATCH with Content-Range, then PUT ?digest=), asking the
// registry how much of a session it holds before resuming it.
type HTTPUpload struct {
	// Client sends the requests; nil means http.DefaultClient.
	Client *http.Client
	// BaseURL is the registry's scheme, host and port.
	BaseURL string
	// Repo is the repository, e.g. edge/ship-1/fmnist.
	Repo string
	// Token, if set, is sent as a Bearer credential.
	Token string
	// Chunk is the size of each PATCH; 0 means DefaultUploadChunk.
	Chunk int64
}

// Upload makes sure the registry holds blob d of size bytes, read from src.
// It does nothing if the registry has it; otherwise it resumes the session
// in *sess if the registry still knows it, or opens one, and sends what the
// registry lacks chunk by chunk. save, if set, is called whenever *sess
// changes, for the caller to persist it. It returns the number of bytes it
// sent. Errors the registry will answer the same way again are marked
// Permanent.
func (u *HTTPUpload) Upload(ctx context.Context, d digest.Digest, size int64, src io.ReaderAt, sess *UploadSession, save func(UploadSession) error) (sent int64, err error) {
	if err := d.Validate(); err != nil {
		return 0, Permanent(fmt.Errorf("blob digest: %w", err))
	}
	base := strings.TrimRight(u.BaseURL, "/") + "/v2/" + strings.Trim(u.Repo, "/")
	resp, err := u.do(ctx, http.MethodHead, base+"/blobs/"+d.String(), nil, nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return 0, nil
	}
	if resp.StatusCode != http.StatusNotFound {
		return 0, fmt.Errorf("check blob: %w", statusError(resp.Request.URL.Redacted(), resp))
	}
	setSession := func(loc string) error {
		sess.Location = loc
		if save != nil {
			return save(*sess)
		}
		return nil
	}
	off := int64(-1)
	if sess.Location != "" {
		resp, err := u.do(ctx, http.MethodGet, sess.Location, nil, nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNoContent {
			off = rangeEnd(resp.Header.Get("Range"))
			if loc := resp.Header.Get("Location"); loc != "" {
				if err := setSession(u.resolve(loc)); err != nil {
					return 0, err
				}
			}
		}
	}
	if off < 0 {
		resp, err := u.do(ctx, http.MethodPost, base+"/blobs/uploads/", nil, nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Location") == "" {
			return 0, fmt.Errorf("open upload session: %w", statusError(resp.Request.URL.Redacted(), resp))
		}
		if err := setSession(u.resolve(resp.Header.Get("Location"))); err != nil {
			return 0, err
		}
		off = 0
	}
	if off > size {
		return 0, Permanent(fmt.Errorf("registry holds %d bytes of a %d byte blob", off, size))
	}
	chunk := u.Chunk
	if chunk <= 0 {
		chunk = DefaultUploadChunk
	}
	for off < size {
		n := min(chunk, size-off)
		hdr := http.Header{}
		hdr.Set("Content-Type", "application/octet-stream")
		hdr.Set("Content-Range", fmt.Sprintf("%d-%d", off, off+n-1))
		hdr.Set("Content-Length", strconv.FormatInt(n, 10))
		resp, err := u.do(ctx, http.MethodPatch, sess.Location, io.NewSectionReader(src, off, n), hdr)
		if err != nil {
			return sent, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
				// The session expired or holds something else: start over next time.
				_ = setSession("")
			}
			return sent, fmt.Errorf("upload chunk: %w", statusError(resp.Request.URL.Redacted(), resp))
		}
		sent += n
		if end := rangeEnd(resp.Header.Get("Range")); end >= 0 {
			off = end
		} else {
			off += n
		}
		if loc := resp.Header.Get("Location"); loc != "" && u.resolve(loc) != sess.Location {
			if err := setSession(u.resolve(loc)); err != nil {
				return sent, err
			}
		}
	}
	q := "digest=" + url.QueryEscape(d.String())
	sep := "?"
	if strings.Contains(sess.Location, "?") {
		sep = "&"
	}
	resp, err = u.do(ctx, http.MethodPut, sess.Location+sep+q, bytes.NewReader(nil), http.Header{"Content-Length": {"0"}})
	if err != nil {
		return sent, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		_ = setSession("")
		return sent, fmt.Errorf("finish upload: %w", statusError(resp.Request.URL.Redacted(), resp))
	}
	return sent, setSession("")
}

// rangeEnd reads a registry's Range header "0-N" (or "bytes=0-N") and
// returns N+1, the next offset; -1 when there is none.
func rangeEnd(h string) int64 {
	h = strings.TrimPrefix(strings.TrimPrefix(h, "bytes="), "bytes ")
	_, end, ok := strings.Cut(h, "-")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(end, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n + 1
}

// resolve makes a Location header absolute against BaseURL.
func (u *HTTPUpload) resolve(loc string) string {
	base, err := url.Parse(strings.TrimRight(u.BaseURL, "/") + "/")
	if err != nil {
		return loc
	}
	ref, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	return base.ResolveReference(ref).String()
}

func (u *HTTPUpload) do(ctx context.Context, method, target string, body io.Reader, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, Permanent(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if cl := hdr.Get("Content-Length"); cl != "" {
		req.ContentLength, _ = strconv.ParseInt(cl, 10, 64)
	}
	if u.Token != "" {
		req.Header.Set("Authorization", "Bearer "+u.Token)
	}
	c := u.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, req.URL.Redacted(), err)
	}
	return resp, nil
}
