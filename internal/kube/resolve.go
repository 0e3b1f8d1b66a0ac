package kube

import (
	"context"
	"fmt"

	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
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
