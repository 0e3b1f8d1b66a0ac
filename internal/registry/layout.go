package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"outpost.dev/outpost/internal/durable"
)

const tmpPrefix = "tmp-"

func (reg *Registry) blobPath(d digest.Digest) string {
	return filepath.Join(reg.root, "blobs", string(d.Algorithm()), d.Encoded())
}

func (reg *Registry) uploadDir() string { return filepath.Join(reg.root, "uploads") }

// initLayout creates the layout directories and oci-layout file, drops temporary files left by a crash,
// and rewrites index.json from the metadata (which is authoritative).
func (reg *Registry) initLayout(ctx context.Context) error {
	for _, d := range []string{
		filepath.Join(reg.root, "blobs", "sha256"),
		filepath.Join(reg.root, "blobs", "sha512"),
		reg.uploadDir(),
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create layout: %w", err)
		}
	}
	layoutFile := filepath.Join(reg.root, ocispec.ImageLayoutFile)
	if _, err := os.Stat(layoutFile); errors.Is(err, fs.ErrNotExist) {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := durable.WriteFile(layoutFile, b, 0o644); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("stat oci-layout: %w", err)
	}
	if err := reg.cleanUploads(ctx); err != nil {
		return err
	}
	// A crash may have left durable.WriteFile's temporary index.json behind.
	if tmps, err := filepath.Glob(filepath.Join(reg.root, "."+ocispec.ImageIndexFile+".tmp*")); err == nil {
		for _, t := range tmps {
			_ = os.Remove(t)
		}
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return reg.writeIndexLocked(ctx)
}

// writeIndexLocked rewrites index.json atomically from the tags table. reg.mu must be held.
func (reg *Registry) writeIndexLocked(ctx context.Context) error {
	rows, err := reg.db.QueryContext(ctx, `SELECT t.repo, t.tag, m.digest, m.media_type, m.size, m.artifact_type
		FROM reg_tags t JOIN reg_manifests m ON m.repo = t.repo AND m.digest = t.digest
		ORDER BY t.repo, t.tag`)
	if err != nil {
		return fmt.Errorf("query tags for index.json: %w", err)
	}
	defer rows.Close()
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{},
	}
	for rows.Next() {
		var repo, tag, dg, mt, at string
		var size int64
		if err := rows.Scan(&repo, &tag, &dg, &mt, &size, &at); err != nil {
			return fmt.Errorf("scan tag: %w", err)
		}
		idx.Manifests = append(idx.Manifests, ocispec.Descriptor{
			MediaType:    mt,
			Digest:       digest.Digest(dg),
			Size:         size,
			ArtifactType: at,
			Annotations:  map[string]string{ocispec.AnnotationRefName: repo + ":" + tag},
		})
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read tags: %w", err)
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("encode index.json: %w", err)
	}
	return durable.WriteFile(filepath.Join(reg.root, ocispec.ImageIndexFile), b, 0o644)
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validUploadID reports whether id could have been made by randomID.
func validUploadID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// commitBlobLocked moves the verified, synced file tmp to the blob path of d. If the blob already exists,
// tmp is removed instead. reg.mu must be held.
func (reg *Registry) commitBlobLocked(tmp string, d digest.Digest) error {
	dst := reg.blobPath(d)
	if _, err := os.Stat(dst); err == nil {
		_ = os.Remove(tmp)
		return nil
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("commit blob: %w", err)
	}
	return durable.SyncDir(filepath.Dir(dst))
}

// storeBytesLocked writes small content (a manifest) as the blob d. reg.mu must be held.
func (reg *Registry) storeBytesLocked(d digest.Digest, b []byte) error {
	if _, err := os.Stat(reg.blobPath(d)); err == nil {
		return nil
	}
	tmp := filepath.Join(reg.uploadDir(), tmpPrefix+randomID())
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("create manifest file: %w", err)
	}
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write manifest file: %w", werr)
	}
	return reg.commitBlobLocked(tmp, d)
}
