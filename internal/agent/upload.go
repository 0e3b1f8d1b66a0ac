package agent

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/transfer"
)

// UploadStats says what an upload sent.
type UploadStats struct {
	// Blobs counts the blobs sent (the hub lacked them); Bytes their bytes.
	Blobs int
	Bytes int64
}

// UploadLocal uploads a version produced on this cluster to the hub's
// registry, into the cluster's own repository edge/<cluster>/<model>, with
// its referrers (the chunk index), and tags it with its version last, so
// that the tag never names a version the hub holds only part of. Blobs go
// up in chunks, resumably (see transfer.HTTPUpload), and only those the hub
// lacks; uploading a version the hub holds sends no blob. The manifest
// keeps its digest, and with it its lineage annotations.
func (a *Agent) UploadLocal(ctx context.Context, v LocalVersion) (UploadStats, error) {
	var st UploadStats
	if a.hub == nil {
		return st, errors.New("upload: no hub configured")
	}
	repo := v1alpha1.ModelName{Cluster: a.name, Name: v.Model}.Repository()
	r, err := a.remoteRepo(repo)
	if err != nil {
		return st, err
	}
	// The model's manifest, then its referrers: each with its blobs first.
	nodes := []ocispec.Descriptor{v.Manifest}
	refs, err := v.Store.Predecessors(ctx, v.Manifest)
	if err != nil {
		return st, fmt.Errorf("upload: referrers of %s: %w", v.Manifest.Digest, err)
	}
	nodes = append(nodes, refs...)
	for _, node := range nodes {
		mb, err := fetchSmall(ctx, v.Store, node, artifact.MaxManifestBytes)
		if err != nil {
			return st, fmt.Errorf("upload: manifest %s: %w", node.Digest, err)
		}
		m, err := artifact.ParseManifest(mb)
		if err != nil {
			return st, fmt.Errorf("upload: manifest %s: %w", node.Digest, err)
		}
		for _, b := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
			n, err := a.uploadBlob(ctx, repo, v.Store, b)
			if err != nil {
				return st, err
			}
			if n > 0 {
				st.Blobs++
				st.Bytes += n
			}
		}
		if err := r.Manifests().Push(ctx, node, bytes.NewReader(mb)); err != nil {
			return st, fmt.Errorf("upload: push manifest %s to %s: %w", node.Digest, repo, err)
		}
	}
	if err := r.Tag(ctx, v.Manifest, v.Version); err != nil {
		return st, fmt.Errorf("upload: tag %s:%s: %w", repo, v.Version, err)
	}
	return st, nil
}

// uploadBlob sends blob d of src to repo unless the hub has it, resuming
// the session recorded for it. It returns the bytes sent.
func (a *Agent) uploadBlob(ctx context.Context, repo string, src oras.ReadOnlyGraphTarget, d ocispec.Descriptor) (int64, error) {
	base := a.hub.BaseURL()
	a.mu.Lock()
	tok := a.credential
	a.mu.Unlock()
	up := &transfer.HTTPUpload{Client: a.hub.HTTPClient(), BaseURL: base.Scheme + "://" + base.Host, Repo: repo, Token: tok}
	sess, err := a.state.uploadSession(ctx, repo, d.Digest)
	if err != nil {
		return 0, err
	}
	save := func(s transfer.UploadSession) error { return a.state.setUploadSession(ctx, repo, d.Digest, s) }
	ra := &fetchReaderAt{ctx: ctx, src: src, desc: d}
	defer ra.close()
	n, err := up.Upload(ctx, d.Digest, d.Size, ra, &sess, save)
	if err != nil {
		return n, fmt.Errorf("upload: blob %s to %s: %w", d.Digest, repo, err)
	}
	return n, nil
}

// fetchReaderAt reads a blob of a store at any offset, reading on from
// where the last read stopped and fetching the blob again only to go back.
type fetchReaderAt struct {
	ctx  context.Context
	src  oras.ReadOnlyGraphTarget
	desc ocispec.Descriptor
	rc   io.ReadCloser
	pos  int64
}

func (f *fetchReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if f.rc == nil || off < f.pos {
		f.close()
		rc, err := f.src.Fetch(f.ctx, f.desc)
		if err != nil {
			return 0, err
		}
		f.rc, f.pos = rc, 0
	}
	if off > f.pos {
		n, err := io.CopyN(io.Discard, f.rc, off-f.pos)
		f.pos += n
		if err != nil {
			return 0, err
		}
	}
	n, err := io.ReadFull(f.rc, p)
	f.pos += int64(n)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

func (f *fetchReaderAt) close() {
	if f.rc != nil {
		f.rc.Close()
		f.rc = nil
	}
}

func (s *stateDB) uploadSession(ctx context.Context, repo string, d digest.Digest) (transfer.UploadSession, error) {
	var loc string
	err := s.db.QueryRowContext(ctx, `SELECT location FROM uploads WHERE repo = ? AND digest = ?`, repo, d.String()).Scan(&loc)
	if errors.Is(err, sql.ErrNoRows) {
		return transfer.UploadSession{}, nil
	}
	if err != nil {
		return transfer.UploadSession{}, fmt.Errorf("state: upload session: %w", err)
	}
	return transfer.UploadSession{Location: loc}, nil
}

func (s *stateDB) setUploadSession(ctx context.Context, repo string, d digest.Digest, sess transfer.UploadSession) error {
	return s.update(ctx, func(tx *sql.Tx) error {
		var err error
		if sess.Location == "" {
			_, err = tx.ExecContext(ctx, `DELETE FROM uploads WHERE repo = ? AND digest = ?`, repo, d.String())
		} else {
			_, err = tx.ExecContext(ctx, `INSERT INTO uploads(repo, digest, location) VALUES (?, ?, ?)
				ON CONFLICT(repo, digest) DO UPDATE SET location = excluded.location`, repo, d.String(), sess.Location)
		}
		if err != nil {
			return fmt.Errorf("state: upload session: %w", err)
		}
		return nil
	})
}
