package kube

import (
	"context"
	"crypto/ed25519"

	"oras.land/oras-go/v2/registry/remote"

	"outpost.dev/outpost/internal/models"
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
	// requires signed versions and variants.
	Trusted []ed25519.PublicKey
}

var _ Resolver = (*Registry)(nil)

// Resolve resolves constraint with the hub's own resolver (models.Index,
// over the registry's distribution API): the highest version of model
// matching it, with requireSigned only versions with a valid signature
// from a trusted key; its digest and size (manifest, config and files);
// and its variants, by name, the newest of a name, only those an agent
// would serve, and with requireSigned only signed ones.
func (r *Registry) Resolve(ctx context.Context, model, constraint string, requireSigned bool) (Resolved, error) {
	x := models.NewIndex(&models.Remote{Host: r.Host, PlainHTTP: r.PlainHTTP, Client: r.Client}, r.Trusted)
	m, err := x.ResolveModel(ctx, model, constraint, requireSigned)
	if err != nil {
		return Resolved{}, err
	}
	return Resolved{Version: m.Version, Digest: m.Digest, Size: m.Size, Variants: m.Variants}, nil
}
