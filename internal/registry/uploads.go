package registry

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// upload is an in-progress blob upload session. Its bytes are in uploads/<id>; size and the running
// sha256 always describe exactly the bytes in that file. mu is held for the whole of each request.
type upload struct {
	mu   sync.Mutex
	id   string
	repo string
	path string
	size int64
	h    hash.Hash // sha256 of the file so far; nil until loaded
	gone bool      // completed or cancelled
}

func (reg *Registry) uploadURL(repo, id string) string {
	return "/v2/" + repo + "/blobs/uploads/" + id
}

func rangeHeader(size int64) string {
	if size <= 0 {
		return "0-0"
	}
	return "0-" + strconv.FormatInt(size-1, 10)
}

func (reg *Registry) setUploadHeaders(w http.ResponseWriter, u *upload) {
	h := w.Header()
	h.Set("Location", reg.uploadURL(u.repo, u.id))
	h.Set("Docker-Upload-UUID", u.id)
	h.Set("Range", rangeHeader(u.size))
}

// serveUploadStart handles POST /v2/<repo>/blobs/uploads/: cross-repo mount, monolithic upload or a new session.
func (reg *Registry) serveUploadStart(w http.ResponseWriter, r *http.Request, repo string) error {
	if r.Method != http.MethodPost {
		return errMethod(r)
	}
	ctx := r.Context()
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		d, err := parseDigest(m)
		if err == nil {
			ok, err := reg.mount(ctx, repo, q.Get("from"), d)
			if err != nil {
				return err
			}
			if ok {
				w.Header().Set("Location", "/v2/"+repo+"/blobs/"+d.String())
				w.Header().Set("Docker-Content-Digest", d.String())
				w.WriteHeader(http.StatusCreated)
				return nil
			}
		}
		// Fall through: a mount that cannot be done starts an ordinary session.
	} else if ds := q.Get("digest"); ds != "" {
		d, err := parseDigest(ds)
		if err != nil {
			return err
		}
		return reg.monolithic(w, r, repo, d)
	}
	u, err := reg.newUpload(ctx, repo)
	if err != nil {
		return err
	}
	reg.setUploadHeaders(w, u)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// mount links blob d into repo if it is linked in from (or, when from is empty, in any repository).
func (reg *Registry) mount(ctx context.Context, repo, from string, d digest.Digest) (bool, error) {
	if from != "" && !validRepo(from) {
		return false, nil
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	var size int64
	var err error
	if from != "" {
		size, err = blobLinked(ctx, reg.db, from, d.String())
	} else {
		err = reg.db.QueryRowContext(ctx, `SELECT size FROM reg_blobs WHERE digest = ? LIMIT 1`, d.String()).Scan(&size)
		if errors.Is(err, sql.ErrNoRows) {
			err = ErrNotFound
		}
	}
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, wrapDB("query mount source", err)
	}
	if _, err := os.Stat(reg.blobPath(d)); err != nil {
		return false, nil
	}
	if err := reg.withTx(ctx, func(q querier) error { return reg.linkBlob(ctx, q, repo, d.String(), size) }); err != nil {
		return false, err
	}
	return true, nil
}

// monolithic stores the request body as blob d in one request.
func (reg *Registry) monolithic(w http.ResponseWriter, r *http.Request, repo string, d digest.Digest) error {
	ctx := r.Context()
	tmp := filepath.Join(reg.uploadDir(), tmpPrefix+randomID())
	u := &upload{id: "", repo: repo, path: tmp, h: sha256.New()}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create upload file: %w", err)
	}
	_, werr := reg.appendBody(w, f, u, r.Body)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return werr
	}
	if err := reg.finish(ctx, u, d); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	w.Header().Set("Location", "/v2/"+repo+"/blobs/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (reg *Registry) newUpload(ctx context.Context, repo string) (*upload, error) {
	id := randomID()
	u := &upload{id: id, repo: repo, path: filepath.Join(reg.uploadDir(), id), h: sha256.New()}
	f, err := os.OpenFile(u.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create upload file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("create upload file: %w", err)
	}
	if _, err := reg.db.ExecContext(ctx, `INSERT INTO reg_uploads (id, repo, created_at) VALUES (?, ?, ?)`, id, repo, reg.now()); err != nil {
		_ = os.Remove(u.path)
		return nil, wrapDB("insert upload", err)
	}
	reg.upMu.Lock()
	reg.uploads[id] = u
	reg.upMu.Unlock()
	return u, nil
}

// lockUpload finds session id of repo, locks it and makes sure its hash state matches its file
// (after a restart the state is rebuilt from the file). The caller must unlock u.mu.
func (reg *Registry) lockUpload(ctx context.Context, repo, id string) (*upload, error) {
	unknown := newError(http.StatusNotFound, CodeBlobUploadUnknown, "upload %s unknown", id)
	if !validUploadID(id) {
		return nil, unknown
	}
	reg.upMu.Lock()
	u := reg.uploads[id]
	if u == nil {
		var dbRepo string
		err := reg.db.QueryRowContext(ctx, `SELECT repo FROM reg_uploads WHERE id = ?`, id).Scan(&dbRepo)
		if err != nil {
			reg.upMu.Unlock()
			if errors.Is(err, sql.ErrNoRows) {
				return nil, unknown
			}
			return nil, wrapDB("query upload", err)
		}
		u = &upload{id: id, repo: dbRepo, path: filepath.Join(reg.uploadDir(), id)}
		reg.uploads[id] = u
	}
	reg.upMu.Unlock()
	u.mu.Lock()
	if u.gone || u.repo != repo {
		u.mu.Unlock()
		return nil, unknown
	}
	if u.h == nil {
		if err := u.rehash(); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				reg.dropUpload(ctx, u)
				err = unknown
			}
			u.mu.Unlock()
			return nil, err
		}
	}
	return u, nil
}

// rehash rebuilds size and sha256 state from the session file.
func (u *upload) rehash() error {
	f, err := os.Open(u.path)
	if err != nil {
		return fmt.Errorf("open upload file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("read upload file: %w", err)
	}
	u.h, u.size = h, n
	return nil
}

// dropUpload forgets a session and removes its file. The caller holds u.mu (or is the only user of u).
func (reg *Registry) dropUpload(ctx context.Context, u *upload) {
	u.gone = true
	reg.upMu.Lock()
	delete(reg.uploads, u.id)
	reg.upMu.Unlock()
	if u.id != "" {
		if _, err := reg.db.ExecContext(context.WithoutCancel(ctx), `DELETE FROM reg_uploads WHERE id = ?`, u.id); err != nil {
			reg.log.WarnContext(ctx, "delete upload row", "upload", u.id, "err", err)
		}
	}
	if err := os.Remove(u.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		reg.log.WarnContext(ctx, "remove upload file", "upload", u.id, "err", err)
	}
}

// serveUpload handles GET, PATCH, PUT and DELETE on an upload session.
func (reg *Registry) serveUpload(w http.ResponseWriter, r *http.Request, repo, id string) error {
	ctx := r.Context()
	switch r.Method {
	case http.MethodGet, http.MethodPatch, http.MethodPut, http.MethodDelete:
	default:
		return errMethod(r)
	}
	u, err := reg.lockUpload(ctx, repo, id)
	if err != nil {
		return err
	}
	defer u.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		reg.setUploadHeaders(w, u)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodDelete:
		reg.dropUpload(ctx, u)
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodPatch:
		if err := reg.writeChunk(w, r, u); err != nil {
			return err
		}
		reg.setUploadHeaders(w, u)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	// PUT: optional final chunk, then verify and commit.
	ds := r.URL.Query().Get("digest")
	if ds == "" {
		return newError(http.StatusBadRequest, CodeDigestInvalid, "digest query parameter is required")
	}
	d, err := parseDigest(ds)
	if err != nil {
		return err
	}
	if err := reg.writeChunk(w, r, u); err != nil {
		return err
	}
	if err := reg.finish(ctx, u, d); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.code == CodeDigestInvalid {
			reg.dropUpload(ctx, u)
		}
		return err
	}
	reg.dropUpload(ctx, u)
	w.Header().Set("Location", "/v2/"+repo+"/blobs/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// writeChunk appends the request body to the session, checking Content-Range against the current offset.
func (reg *Registry) writeChunk(w http.ResponseWriter, r *http.Request, u *upload) error {
	body := io.Reader(r.Body)
	if cr := r.Header.Get("Content-Range"); cr != "" {
		start, end, ok := parseContentRange(cr)
		if !ok || start != u.size || end < start {
			reg.setUploadHeaders(w, u)
			return newError(http.StatusRequestedRangeNotSatisfiable, CodeBlobUploadInvalid,
				"content range %q does not continue the upload at offset %d", cr, u.size)
		}
		n := end - start + 1
		if r.ContentLength >= 0 && r.ContentLength != n {
			return newError(http.StatusBadRequest, CodeBlobUploadInvalid,
				"content length %d does not match content range %q", r.ContentLength, cr)
		}
		body = io.LimitReader(r.Body, n)
	} else if r.ContentLength == 0 {
		return nil
	}
	f, err := os.OpenFile(u.path, os.O_WRONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		reg.dropUpload(r.Context(), u)
		return newError(http.StatusNotFound, CodeBlobUploadUnknown, "upload %s unknown", u.id)
	}
	if err != nil {
		return fmt.Errorf("open upload file: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(u.size, io.SeekStart); err != nil {
		return fmt.Errorf("seek upload file: %w", err)
	}
	n, err := reg.appendBody(w, f, u, body)
	if n > 0 {
		// The session is in use: it expires UploadMaxAge after its last bytes.
		if _, uerr := reg.db.ExecContext(context.WithoutCancel(r.Context()), `UPDATE reg_uploads SET updated_at = ? WHERE id = ?`,
			reg.now(), u.id); uerr != nil {
			reg.log.WarnContext(r.Context(), "record upload activity", "upload", u.id, "err", uerr)
		}
	}
	return err
}

// bodyIdleTimeout bounds how long an upload waits for the next bytes of a request body. A client cut off
// by a partition then frees its session for the resuming request instead of holding it indefinitely.
const bodyIdleTimeout = time.Minute

// appendBody streams body to f (positioned at u.size), keeping u.size and u.h in step with what was written.
// When w is not nil, each read must make progress within bodyIdleTimeout.
func (reg *Registry) appendBody(w http.ResponseWriter, f *os.File, u *upload, body io.Reader) (int64, error) {
	var rc *http.ResponseController
	if w != nil {
		rc = http.NewResponseController(w)
		defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	}
	bp := reg.bufPool.Get().(*[]byte)
	defer reg.bufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		if rc != nil {
			// A connection's deadline is a time of the system clock (the network poller's),
			// not of the registry's clock.
			_ = rc.SetReadDeadline(time.Now().Add(bodyIdleTimeout))
		}
		n, rerr := body.Read(buf)
		if n > 0 {
			wn, werr := f.Write(buf[:n])
			u.h.Write(buf[:wn])
			u.size += int64(wn)
			total += int64(wn)
			if werr != nil {
				return total, fmt.Errorf("write upload file: %w", werr)
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, newError(http.StatusBadRequest, CodeBlobUploadInvalid, "reading upload body: %v", rerr)
		}
	}
}

// finish verifies that the session's bytes have digest d and commits them as that blob in u.repo.
func (reg *Registry) finish(ctx context.Context, u *upload, d digest.Digest) error {
	var got digest.Digest
	if d.Algorithm() == digest.SHA256 {
		got = digest.NewDigest(digest.SHA256, u.h)
	} else {
		f, err := os.Open(u.path)
		if err != nil {
			return fmt.Errorf("open upload file: %w", err)
		}
		v := d.Algorithm().Digester()
		_, err = io.Copy(v.Hash(), f)
		f.Close()
		if err != nil {
			return fmt.Errorf("hash upload file: %w", err)
		}
		got = v.Digest()
	}
	if got != d {
		return newError(http.StatusBadRequest, CodeDigestInvalid, "digest mismatch: content has %s, request said %s", got, d)
	}
	f, err := os.OpenFile(u.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open upload file: %w", err)
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync upload file: %w", err)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if err := reg.commitBlobLocked(u.path, d); err != nil {
		return err
	}
	return reg.withTx(ctx, func(q querier) error {
		if err := reg.linkBlob(ctx, q, u.repo, d.String(), u.size); err != nil {
			return err
		}
		if u.id != "" {
			if _, err := q.ExecContext(ctx, `DELETE FROM reg_uploads WHERE id = ?`, u.id); err != nil {
				return wrapDB("delete upload", err)
			}
		}
		return nil
	})
}

// parseContentRange parses "start-end" (optionally prefixed with "bytes=" or "bytes ").
func parseContentRange(s string) (start, end int64, ok bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "bytes=")
	s = strings.TrimPrefix(s, "bytes ")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	a, b, found := strings.Cut(s, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < 0 {
		return 0, 0, false
	}
	return start, end, true
}

// DefaultUploadMaxAge is how long an upload session may stay idle when Options.UploadMaxAge is zero.
const DefaultUploadMaxAge = 24 * time.Hour

// maxExpiryInterval bounds the time between two looks for expired upload sessions.
const maxExpiryInterval = time.Hour

// expireUploadsLoop removes expired upload sessions every quarter of the maximum age (at most
// hourly) until ctx ends.
func (reg *Registry) expireUploadsLoop(ctx context.Context) {
	t := reg.clock.NewTicker(min(reg.uploadMaxAge/4, maxExpiryInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		if err := reg.expireUploads(ctx); err != nil && ctx.Err() == nil {
			reg.log.WarnContext(ctx, "expire upload sessions", "err", err)
		}
	}
}

// expireUploads removes the sessions, and their files, that nobody wrote to for
// reg.uploadMaxAge. A session a request holds is left alone.
func (reg *Registry) expireUploads(ctx context.Context) error {
	cutoff := reg.clock.Now().Add(-reg.uploadMaxAge).UnixMilli()
	const idle = `MAX(created_at, updated_at) < ?`
	rows, err := reg.db.QueryContext(ctx, `SELECT id, repo FROM reg_uploads WHERE `+idle, cutoff)
	if err != nil {
		return wrapDB("list expired uploads", err)
	}
	type session struct{ id, repo string }
	var expired []session
	for rows.Next() {
		var s session
		if err := rows.Scan(&s.id, &s.repo); err != nil {
			rows.Close()
			return wrapDB("scan upload", err)
		}
		expired = append(expired, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return wrapDB("list expired uploads", err)
	}
	for _, s := range expired {
		reg.upMu.Lock()
		u := reg.uploads[s.id]
		if u == nil {
			// The one in-memory session from now on: requests for it wait for this decision.
			u = &upload{id: s.id, repo: s.repo, path: filepath.Join(reg.uploadDir(), s.id)}
			reg.uploads[s.id] = u
		}
		reg.upMu.Unlock()
		if !u.mu.TryLock() {
			continue // a request is writing to it
		}
		// Bytes may have arrived since the query; requests write them holding u.mu.
		var last int64
		err := reg.db.QueryRowContext(ctx, `SELECT MAX(created_at, updated_at) FROM reg_uploads WHERE id = ?`, s.id).Scan(&last)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// Finished or cancelled meanwhile.
			err = nil
			if !u.gone {
				u.gone = true
				reg.upMu.Lock()
				if reg.uploads[s.id] == u {
					delete(reg.uploads, s.id)
				}
				reg.upMu.Unlock()
			}
		case err == nil && last < cutoff && !u.gone:
			reg.dropUpload(ctx, u)
			reg.log.InfoContext(ctx, "expired idle upload session", "upload", s.id, "repo", s.repo)
		}
		u.mu.Unlock()
		if err != nil {
			return wrapDB("query upload", err)
		}
	}
	return nil
}

// cleanUploads runs at startup: it expires idle sessions and removes session files without a
// session row (left by a crash between creating the file and recording it, or by an expiry)
// and the temporary files of monolithic uploads and manifests.
func (reg *Registry) cleanUploads(ctx context.Context) error {
	if err := reg.expireUploads(ctx); err != nil {
		return err
	}
	rows, err := reg.db.QueryContext(ctx, `SELECT id FROM reg_uploads`)
	if err != nil {
		return wrapDB("list uploads", err)
	}
	live := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return wrapDB("scan upload", err)
		}
		live[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return wrapDB("list uploads", err)
	}
	entries, err := os.ReadDir(reg.uploadDir())
	if err != nil {
		return fmt.Errorf("read uploads: %w", err)
	}
	for _, e := range entries {
		if name := e.Name(); strings.HasPrefix(name, tmpPrefix) || (validUploadID(name) && !live[name]) {
			_ = os.Remove(filepath.Join(reg.uploadDir(), name))
		}
	}
	return nil
}
