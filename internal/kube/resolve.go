package kube

import (
	"context"
	"crypto/ed25519"
	"fmt"

	"github.com/opencontainers/go-digest"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/models"
	"outpost.dev/outpost/internal/versions"
)

// Registry resolves version constraints against an OCI registry: the
// hub's own or any conformant one holding models/<name>:<version>.
type Registry struct {
	// Host is the registry's host[:port].
	Host string
	// PlainHTTP talks HTTP instead of HTTPS.
	PlainHTTP bool
	// Client sends the requests, with the registry's credentials; nil
	// means oras-go's default client.
	Client remote.Client
	// Trusted are the keys whose signatures count where a deployment
	// requires signed variants.
	Trusted []ed25519.PublicKey
}

var _ VariantLister = (*Registry)(nil)

// Variants implements VariantLister with the hub's own lister
// (models.Index): the variants of the version res, by name, the newest of
// a name, with requireSigned only those signed by a trusted key, and none
// an agent would not serve.
func (r *Registry) Variants(ctx context.Context, model string, res Resolved, requireSigned bool) ([]v1alpha1.ModelVariant, error) {
	d, err := digest.Parse(res.Digest)
	if err != nil {
		return nil, fmt.Errorf("model %s@%s: digest %q: %w", model, res.Version, res.Digest, err)
	}
	x := models.NewIndex(&models.Remote{Host: r.Host, PlainHTTP: r.PlainHTTP, Client: r.Client}, r.Trusted)
	return x.Variants(ctx, model, d, requireSigned)
}

// Resolve lists the tags of the model's repository, picks the highest
// version matching constraint (internal/versions) and reads its manifest
// for the digest and the total size of its files.
func (r *Registry) Resolve(ctx context.Context, model, constraint string) (Resolved, error) {
	name, err := v1alpha1.ModelRepository(model)
	if err != nil {
		return Resolved{}, err
	}
	repo, err := remote.NewRepository(r.Host + "/" + name)
	if err != nil {
		return Resolved{}, fmt.Errorf("repository %s: %w", name, err)
	}
	repo.PlainHTTP = r.PlainHTTP
	if r.Client != nil {
		repo.Client = r.Client
	}
	var tags []string
	if err := repo.Tags(ctx, "", func(page []string) error {
		tags = append(tags, page...)
		return nil
	}); err != nil {
		return Resolved{}, fmt.Errorf("list versions of %s: %w", model, err)
	}
	v, err := versions.Resolve(constraint, tags)
	if err != nil {
		return Resolved{}, fmt.Errorf("model %s: %w", model, err)
	}
	desc, err := repo.Resolve(ctx, v)
	if err != nil {
		return Resolved{}, fmt.Errorf("resolve %s@%s: %w", model, v, err)
	}
	if desc.Size > artifact.MaxManifestBytes {
		return Resolved{}, fmt.Errorf("manifest of %s@%s is %d bytes, above the %d byte limit", model, v, desc.Size, artifact.MaxManifestBytes)
	}
	b, err := content.FetchAll(ctx, repo, desc)
	if err != nil {
		return Resolved{}, fmt.Errorf("fetch manifest of %s@%s: %w", model, v, err)
	}
	m, err := artifact.ParseManifest(b)
	if err != nil {
		return Resolved{}, fmt.Errorf("manifest of %s@%s: %w", model, v, err)
	}
	files, err := artifact.ModelFiles(m)
	if err != nil {
		return Resolved{}, fmt.Errorf("manifest of %s@%s: %w", model, v, err)
	}
	var size int64
	for _, f := range files {
		size += f.Size
	}
	return Resolved{Version: v, Digest: desc.Digest.String(), Size: size}, nil
}
