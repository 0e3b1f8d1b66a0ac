package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func (reg *Registry) serveManifest(w http.ResponseWriter, r *http.Request, repo, ref string) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return reg.getManifest(w, r, repo, ref)
	case http.MethodPut:
		return reg.putManifest(w, r, repo, ref)
	case http.MethodDelete:
		return reg.deleteManifest(w, r, repo, ref)
	default:
		return errMethod(r)
	}
}

func manifestUnknown(repo, ref string) error {
	return newError(http.StatusNotFound, CodeManifestUnknown, "manifest %s unknown to repository %s", ref, repo)
}

func (reg *Registry) getManifest(w http.ResponseWriter, r *http.Request, repo, ref string) error {
	ctx := r.Context()
	if isDigest(ref) {
		if _, err := parseDigest(ref); err != nil {
			return err
		}
	} else if !validTag(ref) {
		return manifestUnknown(repo, ref)
	}
	b, desc, err := reg.readManifest(ctx, repo, ref)
	if errors.Is(err, ErrNotFound) {
		if !isDigest(ref) {
			if ts, err := tombstone(ctx, reg.db, repo, ref); err == nil {
				return newError(http.StatusNotFound, CodeManifestUnknown, "manifest %s unknown to repository %s: the tag was deleted at %s (it named %s)",
					ref, repo, ts.Deleted.Format(time.RFC3339), ts.Digest)
			}
		}
		return manifestUnknown(repo, ref)
	}
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", desc.MediaType)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("Docker-Content-Digest", desc.Digest.String())
	h.Set("ETag", `"`+desc.Digest.String()+`"`)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(b)
	}
	return nil
}

// readManifest resolves ref in repo and reads the manifest bytes.
func (reg *Registry) readManifest(ctx context.Context, repo, ref string) ([]byte, ocispec.Descriptor, error) {
	desc, err := reg.resolve(ctx, reg.db, repo, ref)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	b, err := os.ReadFile(reg.blobPath(desc.Digest))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ocispec.Descriptor{}, ErrNotFound
	}
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("read manifest: %w", err)
	}
	return b, desc, nil
}

const manifestCols = `m.digest, m.media_type, m.artifact_type, m.size, m.annotations`

func scanDescriptor(sc interface{ Scan(...any) error }) (ocispec.Descriptor, error) {
	var dg, mt, at, ann string
	var size int64
	if err := sc.Scan(&dg, &mt, &at, &size, &ann); err != nil {
		return ocispec.Descriptor{}, err
	}
	d := ocispec.Descriptor{MediaType: mt, Digest: digest.Digest(dg), Size: size, ArtifactType: at}
	if ann != "" {
		_ = json.Unmarshal([]byte(ann), &d.Annotations)
	}
	return d, nil
}

// resolve finds the manifest a tag or digest names in repo.
func (reg *Registry) resolve(ctx context.Context, q querier, repo, ref string) (ocispec.Descriptor, error) {
	var row *sql.Row
	if isDigest(ref) {
		row = q.QueryRowContext(ctx, `SELECT `+manifestCols+` FROM reg_manifests m WHERE m.repo = ? AND m.digest = ?`, repo, ref)
	} else {
		row = q.QueryRowContext(ctx, `SELECT `+manifestCols+` FROM reg_tags t
			JOIN reg_manifests m ON m.repo = t.repo AND m.digest = t.digest WHERE t.repo = ? AND t.tag = ?`, repo, ref)
	}
	d, err := scanDescriptor(row)
	if errors.Is(err, sql.ErrNoRows) {
		return ocispec.Descriptor{}, ErrNotFound
	}
	if err != nil {
		return ocispec.Descriptor{}, wrapDB("resolve manifest", err)
	}
	return d, nil
}

func (reg *Registry) putManifest(w http.ResponseWriter, r *http.Request, repo, ref string) error {
	ctx := r.Context()
	tooBig := newError(http.StatusRequestEntityTooLarge, CodeSizeInvalid, "manifest exceeds %d bytes", reg.maxManifest)
	if r.ContentLength > reg.maxManifest {
		return tooBig
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, reg.maxManifest+1))
	if err != nil {
		return newError(http.StatusBadRequest, CodeManifestInvalid, "reading manifest: %v", err)
	}
	if int64(len(body)) > reg.maxManifest {
		return tooBig
	}
	var d digest.Digest
	var tags []string
	if isDigest(ref) {
		want, err := parseDigest(ref)
		if err != nil {
			return err
		}
		d = want.Algorithm().FromBytes(body)
		if d != want {
			return newError(http.StatusBadRequest, CodeDigestInvalid, "manifest digest is %s, not %s", d, want)
		}
	} else {
		if !validTag(ref) {
			return newError(http.StatusBadRequest, CodeManifestInvalid, "invalid tag %q", ref)
		}
		d = digest.SHA256.FromBytes(body)
		tags = append(tags, ref)
	}
	for _, t := range r.URL.Query()["tag"] {
		if !validTag(t) {
			return newError(http.StatusBadRequest, CodeManifestInvalid, "invalid tag %q", t)
		}
		tags = append(tags, t)
	}
	info, err := parseManifest(r.Header.Get("Content-Type"), body)
	if err != nil {
		return err
	}
	evs, err := reg.commitManifest(ctx, repo, d, body, info, tags)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Location", "/v2/"+repo+"/manifests/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	if info.Subject != nil {
		h.Set("OCI-Subject", info.Subject.Digest.String())
	}
	for _, t := range tags {
		h.Add("OCI-Tag", t)
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	reg.emit(ctx, evs...)
	return nil
}

// commitManifest checks references and tag policy, stores the manifest and moves the tags, all under reg.mu.
func (reg *Registry) commitManifest(ctx context.Context, repo string, d digest.Digest, body []byte,
	info *manifestInfo, tags []string) ([]Event, error) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for _, b := range info.Blobs {
		size, err := blobLinked(ctx, reg.db, repo, b.Digest.String())
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				e := newError(http.StatusBadRequest, CodeManifestBlobUnknown, "blob %s unknown to repository %s", b.Digest, repo)
				e.detail = map[string]string{"digest": b.Digest.String()}
				return nil, e
			}
			return nil, err
		}
		if err := checkSize(b, "blob", size); err != nil {
			return nil, err
		}
	}
	for _, m := range info.Manifests {
		child, err := reg.resolve(ctx, reg.db, repo, m.Digest.String())
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				e := newError(http.StatusBadRequest, CodeManifestBlobUnknown, "manifest %s unknown to repository %s", m.Digest, repo)
				e.detail = map[string]string{"digest": m.Digest.String()}
				return nil, e
			}
			return nil, err
		}
		if err := checkSize(m, "manifest", child.Size); err != nil {
			return nil, err
		}
	}
	annJSON := ""
	if len(info.Annotations) > 0 {
		b, _ := json.Marshal(info.Annotations)
		annJSON = string(b)
	}
	newDesc := ocispec.Descriptor{
		MediaType: info.MediaType, Digest: d, Size: int64(len(body)),
		ArtifactType: info.ArtifactType, Annotations: info.Annotations,
	}
	var moved []string
	for _, t := range tags {
		old, err := reg.resolve(ctx, reg.db, repo, t)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		if old.Digest == d {
			continue
		}
		if reg.checkTag != nil {
			c := TagChange{Repo: repo, Tag: t, Old: old, New: newDesc, Manifest: body}
			switch ts, err := tombstone(ctx, reg.db, repo, t); {
			case err == nil:
				c.Deleted = ts.Digest
			case !errors.Is(err, ErrNotFound):
				return nil, err
			}
			if err := reg.checkTag(ctx, c); err != nil {
				return nil, newError(http.StatusConflict, CodeDenied, "tag %s: %v", t, err)
			}
		}
		moved = append(moved, t)
	}
	if err := reg.storeBytesLocked(d, body); err != nil {
		return nil, err
	}
	subject := ""
	if info.Subject != nil {
		subject = info.Subject.Digest.String()
	}
	err := reg.withTx(ctx, func(q querier) error {
		if err := reg.ensureRepo(ctx, q, repo); err != nil {
			return err
		}
		if _, err := q.ExecContext(ctx, `INSERT INTO reg_manifests
			(repo, digest, media_type, artifact_type, subject, size, annotations, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (repo, digest) DO NOTHING`,
			repo, d.String(), info.MediaType, info.ArtifactType, subject, len(body), annJSON, reg.now()); err != nil {
			return wrapDB("insert manifest", err)
		}
		if subject != "" {
			if _, err := q.ExecContext(ctx, `INSERT INTO reg_referrers (repo, subject, digest) VALUES (?, ?, ?)
				ON CONFLICT DO NOTHING`, repo, subject, d.String()); err != nil {
				return wrapDB("insert referrer", err)
			}
		}
		for _, t := range moved {
			if _, err := q.ExecContext(ctx, `INSERT INTO reg_tags (repo, tag, digest, updated_at) VALUES (?, ?, ?, ?)
				ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`,
				repo, t, d.String(), reg.now()); err != nil {
				return wrapDB("upsert tag", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(moved) > 0 {
		if err := reg.writeIndexLocked(ctx); err != nil {
			reg.log.ErrorContext(ctx, "rewrite index.json", "err", err)
		}
	}
	ev := Event{Repo: repo, Digest: d, ArtifactType: info.ArtifactType}
	if info.Subject != nil {
		ev.Subject = info.Subject.Digest
	}
	if len(moved) == 0 {
		return []Event{ev}, nil
	}
	evs := make([]Event, 0, len(moved))
	for _, t := range moved {
		e := ev
		e.Tag = t
		evs = append(evs, e)
	}
	return evs, nil
}

// checkSize refuses a descriptor whose size is not that of the content it names, stored with size
// bytes: a client trusting the descriptor would otherwise expect bytes that never come, or stop
// short of the content.
func checkSize(d fieldDescriptor, what string, size int64) error {
	if d.Size == size {
		return nil
	}
	e := newError(http.StatusBadRequest, CodeManifestInvalid, "%s: size %d, but %s %s is %d bytes", d.Field, d.Size, what, d.Digest, size)
	e.detail = map[string]any{"digest": d.Digest.String(), "size": size}
	return e
}

func (reg *Registry) deleteManifest(w http.ResponseWriter, r *http.Request, repo, ref string) error {
	ctx := r.Context()
	var evs []Event
	var err error
	if isDigest(ref) {
		d, perr := parseDigest(ref)
		if perr != nil {
			return perr
		}
		evs, err = reg.deleteManifestDigest(ctx, repo, d)
	} else {
		if !validTag(ref) {
			return manifestUnknown(repo, ref)
		}
		evs, err = reg.deleteTag(ctx, repo, ref)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	reg.emit(ctx, evs...)
	return nil
}

func (reg *Registry) deleteTag(ctx context.Context, repo, tag string) ([]Event, error) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	desc, err := reg.resolve(ctx, reg.db, repo, tag)
	if errors.Is(err, ErrNotFound) {
		return nil, manifestUnknown(repo, tag)
	}
	if err != nil {
		return nil, err
	}
	err = reg.withTx(ctx, func(q querier) error {
		if _, err := q.ExecContext(ctx, `DELETE FROM reg_tags WHERE repo = ? AND tag = ?`, repo, tag); err != nil {
			return wrapDB("delete tag", err)
		}
		return reg.buryTags(ctx, q, repo, desc.Digest, tag)
	})
	if err != nil {
		return nil, err
	}
	if err := reg.writeIndexLocked(ctx); err != nil {
		reg.log.ErrorContext(ctx, "rewrite index.json", "err", err)
	}
	return []Event{{Repo: repo, Tag: tag, Digest: desc.Digest, Deleted: true, ArtifactType: desc.ArtifactType}}, nil
}

func (reg *Registry) deleteManifestDigest(ctx context.Context, repo string, d digest.Digest) ([]Event, error) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	var evs []Event
	gone := false
	err := reg.withTx(ctx, func(q querier) error {
		var at, subject string
		err := q.QueryRowContext(ctx, `SELECT artifact_type, subject FROM reg_manifests WHERE repo = ? AND digest = ?`,
			repo, d.String()).Scan(&at, &subject)
		if errors.Is(err, sql.ErrNoRows) {
			return manifestUnknown(repo, d.String())
		}
		if err != nil {
			return wrapDB("query manifest", err)
		}
		rows, err := q.QueryContext(ctx, `SELECT tag FROM reg_tags WHERE repo = ? AND digest = ? ORDER BY tag`, repo, d.String())
		if err != nil {
			return wrapDB("query tags", err)
		}
		var tags []string
		for rows.Next() {
			var t string
			if err := rows.Scan(&t); err != nil {
				rows.Close()
				return wrapDB("scan tag", err)
			}
			tags = append(tags, t)
		}
		rows.Close()
		if err := reg.buryTags(ctx, q, repo, d, tags...); err != nil {
			return err
		}
		for _, stmt := range []string{
			`DELETE FROM reg_tags WHERE repo = ? AND digest = ?`,
			`DELETE FROM reg_manifests WHERE repo = ? AND digest = ?`,
			`DELETE FROM reg_referrers WHERE repo = ? AND digest = ?`,
		} {
			if _, err := q.ExecContext(ctx, stmt, repo, d.String()); err != nil {
				return wrapDB("delete manifest", err)
			}
		}
		ref, err := contentReferenced(ctx, q, d.String())
		if err != nil {
			return err
		}
		gone = !ref
		base := Event{Repo: repo, Digest: d, Deleted: true, Subject: digest.Digest(subject), ArtifactType: at}
		for _, t := range tags {
			e := base
			e.Tag = t
			evs = append(evs, e)
		}
		evs = append(evs, base)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(evs) > 1 {
		if err := reg.writeIndexLocked(ctx); err != nil {
			reg.log.ErrorContext(ctx, "rewrite index.json", "err", err)
		}
	}
	if gone {
		if err := os.Remove(reg.blobPath(d)); err != nil && !errors.Is(err, os.ErrNotExist) {
			reg.log.WarnContext(ctx, "remove unreferenced manifest", "digest", d, "err", err)
		}
	}
	return evs, nil
}
