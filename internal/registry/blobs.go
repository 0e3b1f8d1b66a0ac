package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/internal/artifact"
)

func (reg *Registry) serveBlob(w http.ResponseWriter, r *http.Request, repo, ref string) error {
	d, err := parseDigest(ref)
	if err != nil {
		return err
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		f, size, err := reg.serveOpenBlob(r.Context(), repo, d)
		if err != nil {
			return err
		}
		defer f.Close()
		h := w.Header()
		h.Set("Docker-Content-Digest", d.String())
		h.Set("Content-Type", "application/octet-stream")
		h.Set("ETag", `"`+d.String()+`"`)
		h.Set("Cache-Control", "max-age=31536000")
		if r.Header.Get("Range") == "" {
			// ServeContent would also do this; setting it here keeps HEAD cheap and explicit.
			h.Set("Content-Length", strconv.FormatInt(size, 10))
		}
		// ServeContent handles Range and HEAD and, for *os.File, copies with sendfile.
		http.ServeContent(w, r, "", time.Time{}, f)
		return nil
	case http.MethodDelete:
		if err := reg.deleteBlob(r.Context(), repo, d); err != nil {
			return err
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	default:
		return errMethod(r)
	}
}

// serveBlockSums answers GET /v2/<repo>/_outpost/blocksums/<digest>
// ?offset=O&length=N&block=B, an Outpost extension: the block sums
// (artifact.BlockSums) of bytes O to O+N-1 of the blob, as
// application/octet-stream. Agents use them to fetch only the blocks of a
// chunk that differ from a similar range they hold.
func (reg *Registry) serveBlockSums(w http.ResponseWriter, r *http.Request, repo, ref string) error {
	if r.Method != http.MethodGet {
		return errMethod(r)
	}
	d, err := parseDigest(ref)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	param := func(name string, lo, hi int64) (int64, error) {
		v, err := strconv.ParseInt(q.Get(name), 10, 64)
		if err != nil || v < lo || v > hi {
			return 0, newError(http.StatusBadRequest, CodeUnsupported, "query parameter %s=%q: want an integer in [%d, %d]", name, q.Get(name), lo, hi)
		}
		return v, nil
	}
	off, err := param("offset", 0, math.MaxInt64)
	if err != nil {
		return err
	}
	n, err := param("length", 1, artifact.MaxSumRange)
	if err != nil {
		return err
	}
	block, err := param("block", artifact.MinSumBlock, artifact.MaxSumBlock)
	if err != nil {
		return err
	}
	f, size, err := reg.serveOpenBlob(r.Context(), repo, d)
	if err != nil {
		return err
	}
	defer f.Close()
	if off > size-n {
		return newError(http.StatusRequestedRangeNotSatisfiable, CodeSizeInvalid, "bytes %d-%d are outside blob %s of %d bytes", off, off+n-1, d, size)
	}
	sums, err := artifact.BlockSums(io.NewSectionReader(f, off, n), n, int(block))
	if err != nil {
		return fmt.Errorf("block sums of %s: %w", d, err)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(sums)))
	_, _ = w.Write(sums)
	return nil
}

// serveOpenBlob is openBlob for a request: a blob repo does not link is
// the API's BLOB_UNKNOWN.
func (reg *Registry) serveOpenBlob(ctx context.Context, repo string, d digest.Digest) (*os.File, int64, error) {
	f, size, err := reg.openBlob(ctx, repo, d)
	if errors.Is(err, ErrNotFound) {
		return nil, 0, newError(http.StatusNotFound, CodeBlobUnknown, "blob %s unknown to repository %s", d, repo)
	}
	return f, size, err
}

// openBlob opens blob d if repo links it.
func (reg *Registry) openBlob(ctx context.Context, repo string, d digest.Digest) (*os.File, int64, error) {
	if _, err := blobLinked(ctx, reg.db, repo, d.String()); err != nil {
		return nil, 0, err
	}
	f, err := os.Open(reg.blobPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("open blob: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("stat blob: %w", err)
	}
	return f, st.Size(), nil
}

func (reg *Registry) deleteBlob(ctx context.Context, repo string, d digest.Digest) error {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	gone := false
	err := reg.withTx(ctx, func(q querier) error {
		res, err := q.ExecContext(ctx, `DELETE FROM reg_blobs WHERE repo = ? AND digest = ?`, repo, d.String())
		if err != nil {
			return wrapDB("delete blob link", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return newError(http.StatusNotFound, CodeBlobUnknown, "blob %s unknown to repository %s", d, repo)
		}
		ref, err := contentReferenced(ctx, q, d.String())
		if err != nil {
			return err
		}
		gone = !ref
		return nil
	})
	if err != nil {
		return err
	}
	if gone {
		if err := os.Remove(reg.blobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			reg.log.WarnContext(ctx, "remove unreferenced blob", "digest", d, "err", err)
		}
	}
	return nil
}
