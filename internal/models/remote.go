package models

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/registry"
)

// Remote is a Registry read over the OCI distribution API: the hub's own
// registry reached over the network, or any conformant registry holding
// models/<name>:<version>. It reads what the Index reads: tags, manifests,
// referrers and signature envelopes; it keeps no tombstones, and it opens
// only blobs small enough to be a signature envelope.
type Remote struct {
	// Host is the registry's host[:port].
	Host string
	// PlainHTTP talks HTTP instead of HTTPS.
	PlainHTTP bool
	// Client sends the requests, with the registry's credentials; nil
	// means oras-go's default client.
	Client remote.Client
}

var _ Registry = (*Remote)(nil)

// repository returns repo on the registry.
func (r *Remote) repository(repo string) (*remote.Repository, error) {
	rp, err := remote.NewRepository(r.Host + "/" + repo)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", repo, err)
	}
	rp.PlainHTTP = r.PlainHTTP
	if r.Client != nil {
		rp.Client = r.Client
	}
	return rp, nil
}

// remoteNotFound maps oras-go's not-found errors (its own, and a registry's
// 404 answer) to the registry package's, as the Index matches it.
func remoteNotFound(err error) error {
	var resp *errcode.ErrorResponse
	if errors.Is(err, errdef.ErrNotFound) || errors.As(err, &resp) && resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %w", registry.ErrNotFound, err)
	}
	return err
}

// Tags implements Registry.
func (r *Remote) Tags(ctx context.Context, repo string) ([]string, error) {
	rp, err := r.repository(repo)
	if err != nil {
		return nil, err
	}
	var tags []string
	if err := rp.Tags(ctx, "", func(page []string) error {
		tags = append(tags, page...)
		return nil
	}); err != nil {
		return nil, remoteNotFound(err)
	}
	return tags, nil
}

// Resolve implements Registry.
func (r *Remote) Resolve(ctx context.Context, repo, reference string) (ocispec.Descriptor, error) {
	rp, err := r.repository(repo)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc, err := rp.Resolve(ctx, reference)
	return desc, remoteNotFound(err)
}

// Manifest implements Registry: the manifest's bytes, checked against d,
// up to artifact.MaxManifestBytes.
func (r *Remote) Manifest(ctx context.Context, repo string, d digest.Digest) ([]byte, ocispec.Descriptor, error) {
	rp, err := r.repository(repo)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	desc, rc, err := rp.Manifests().FetchReference(ctx, d.String())
	if err != nil {
		return nil, ocispec.Descriptor{}, remoteNotFound(err)
	}
	defer rc.Close()
	if desc.Digest != d {
		return nil, ocispec.Descriptor{}, fmt.Errorf("manifest %s of %s: the registry answered %s", d, repo, desc.Digest)
	}
	if desc.Size > artifact.MaxManifestBytes {
		return nil, ocispec.Descriptor{}, fmt.Errorf("manifest %s of %s is %d bytes, above the %d byte limit", d, repo, desc.Size, artifact.MaxManifestBytes)
	}
	b, err := content.ReadAll(rc, desc)
	if err != nil {
		return nil, ocispec.Descriptor{}, fmt.Errorf("manifest %s of %s: %w", d, repo, err)
	}
	return b, desc, nil
}

// Referrers implements Registry.
func (r *Remote) Referrers(ctx context.Context, repo string, subject digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	rp, err := r.repository(repo)
	if err != nil {
		return nil, err
	}
	out := []ocispec.Descriptor{}
	err = rp.Referrers(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: subject}, artifactType,
		func(refs []ocispec.Descriptor) error {
			out = append(out, refs...)
			return nil
		})
	if err != nil {
		return nil, remoteNotFound(err)
	}
	return out, nil
}

// OpenBlob implements Registry for blobs of at most the size of a signature
// envelope: it copies the blob, checked against d, into an unnamed
// temporary file. A larger blob is an error.
func (r *Remote) OpenBlob(ctx context.Context, repo string, d digest.Digest) (*os.File, int64, error) {
	rp, err := r.repository(repo)
	if err != nil {
		return nil, 0, err
	}
	desc, err := rp.Blobs().Resolve(ctx, d.String())
	if err != nil {
		return nil, 0, remoteNotFound(err)
	}
	if desc.Size > maxEnvelopeBytes {
		return nil, 0, fmt.Errorf("blob %s of %s: %d bytes is more than a signature holds", d, repo, desc.Size)
	}
	rc, err := rp.Blobs().Fetch(ctx, desc)
	if err != nil {
		return nil, 0, remoteNotFound(err)
	}
	defer rc.Close()
	b, err := content.ReadAll(rc, desc)
	if err != nil {
		return nil, 0, fmt.Errorf("blob %s of %s: %w", d, repo, err)
	}
	f, err := os.CreateTemp("", "outpost-blob-*")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(f.Name()) // unnamed: gone once closed
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, 0, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, desc.Size, nil
}

// Tombstone implements Registry: a remote registry keeps none.
func (r *Remote) Tombstone(ctx context.Context, repo, tag string) (registry.Tombstone, error) {
	return registry.Tombstone{}, fmt.Errorf("%w: %s:%s has no tombstone a remote registry shows", registry.ErrNotFound, repo, tag)
}
