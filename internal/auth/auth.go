// Package auth authenticates and authorizes requests to the hub.
//
// The hub knows tokens only by their SHA-256 hash, so a stolen data
// directory does not reveal a usable credential. Clients send a token as
// "Authorization: Bearer TOKEN" or, for OCI clients that only speak Basic
// authentication, as the password of "Authorization: Basic" with any user.
//
// Tokens carry a prefix naming their kind, so that they are recognisable in
// logs and by secret scanners: "opt_" for the admin token, "opj_" for join
// tokens (bootstrap tokens an agent trades for its cluster credential) and
// "opc_" for cluster credentials.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"outpost.dev/outpost/api/v1alpha1"
)

// ErrUnauthenticated means the request carried no valid credential; HTTP handlers answer 401.
var ErrUnauthenticated = errors.New("unauthenticated")

// ErrForbidden means the credential is valid but may not do what was asked; HTTP handlers answer 403.
var ErrForbidden = errors.New("forbidden")

// Token prefixes, one per kind of token.
const (
	// AdminPrefix starts the admin token.
	AdminPrefix = "opt_"
	// JoinTokenPrefix starts a join token.
	JoinTokenPrefix = "opj_"
	// ClusterCredentialPrefix starts a cluster credential.
	ClusterCredentialPrefix = "opc_"
)

// NewToken returns a fresh random admin token with 256 bits of entropy.
func NewToken() (string, error) {
	return NewPrefixedToken(AdminPrefix)
}

// NewJoinToken returns a fresh random join token.
func NewJoinToken() (string, error) {
	return NewPrefixedToken(JoinTokenPrefix)
}

// NewClusterCredential returns a fresh random cluster credential.
func NewClusterCredential() (string, error) {
	return NewPrefixedToken(ClusterCredentialPrefix)
}

// NewPrefixedToken returns prefix followed by 256 random bits in unpadded base64url.
func NewPrefixedToken(prefix string) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// Hash returns the SHA-256 hash of a token, the only form the hub stores.
func Hash(token string) [32]byte {
	return sha256.Sum256([]byte(token))
}

// WriteHashFile stores the hash of token in path (hex, mode 0600).
func WriteHashFile(path, token string) error {
	h := Hash(token)
	if err := os.WriteFile(path, []byte(hex.EncodeToString(h[:])+"\n"), 0o600); err != nil {
		return fmt.Errorf("write token hash: %w", err)
	}
	return nil
}

// ReadHashFile reads a token hash written by WriteHashFile.
func ReadHashFile(path string) ([32]byte, error) {
	var h [32]byte
	b, err := os.ReadFile(path)
	if err != nil {
		return h, fmt.Errorf("read token hash: %w", err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != len(h) {
		return h, fmt.Errorf("read token hash %s: not a hex SHA-256", path)
	}
	copy(h[:], raw)
	return h, nil
}

// FromRequest extracts the token of a request: the Bearer token, or the
// password of Basic authentication. It returns "" when there is none.
func FromRequest(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok {
		return ""
	}
	switch strings.ToLower(scheme) {
	case "bearer":
		return strings.TrimSpace(rest)
	case "basic":
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
		if err != nil {
			return ""
		}
		_, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return ""
		}
		return pass
	}
	return ""
}

// ClusterCredentials finds the cluster a credential belongs to.
type ClusterCredentials interface {
	// ClusterForCredential returns the name of the cluster whose current credential has the
	// SHA-256 hash h, with ok false when no cluster has it.
	ClusterForCredential(ctx context.Context, h [32]byte) (cluster string, ok bool, err error)
}

// Principal is who a request authenticated as: the admin, or one cluster.
type Principal struct {
	// Admin is true for the admin token, which may do everything.
	Admin bool
	// Cluster names the cluster of a cluster credential.
	Cluster string
}

// Option configures an Authenticator.
type Option func(*Authenticator)

// WithClusterCredentials makes the Authenticator admit cluster credentials found by c,
// within the scope described at Authorize.
func WithClusterCredentials(c ClusterCredentials) Option {
	return func(a *Authenticator) { a.clusters = c }
}

// Authenticator decides whether a request may read or write.
type Authenticator struct {
	adminHash [32]byte
	clusters  ClusterCredentials
}

// NewAuthenticator returns an Authenticator that admits the admin token whose hash is given,
// and whatever else the options allow.
func NewAuthenticator(adminHash [32]byte, opts ...Option) *Authenticator {
	a := &Authenticator{adminHash: adminHash}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Authenticate returns who the request's token belongs to, or an error wrapping
// ErrUnauthenticated when it carries none that is known.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	tok := FromRequest(r)
	if tok == "" {
		return Principal{}, fmt.Errorf("no token in request: %w", ErrUnauthenticated)
	}
	h := Hash(tok)
	if subtle.ConstantTimeCompare(h[:], a.adminHash[:]) == 1 {
		return Principal{Admin: true}, nil
	}
	if strings.HasPrefix(tok, JoinTokenPrefix) {
		return Principal{}, fmt.Errorf("a join token only serves to join (POST %s/join); use the cluster credential it was traded for: %w",
			v1alpha1.APIPath, ErrUnauthenticated)
	}
	// Cluster credentials are found by the hash of a 256-bit random secret: how long the
	// lookup takes tells nothing about any stored credential.
	if a.clusters != nil {
		name, ok, err := a.clusters.ClusterForCredential(r.Context(), h)
		if err != nil {
			return Principal{}, fmt.Errorf("look up cluster credential: %w", err)
		}
		if ok {
			return Principal{Cluster: name}, nil
		}
	}
	return Principal{}, fmt.Errorf("token not recognised: %w", ErrUnauthenticated)
}

// Authorize admits a request whose token may do what it asks. Every request, read or write,
// needs a credential: a hub holds a fleet's models.
//
// The admin token may do everything. A cluster credential's scope depends on the request's
// method, path and query, which Authorize inspects (write is implied by the method): see
// ClusterMay and ClusterMayRequest. A refusal wraps ErrUnauthenticated (no or unknown token) or ErrForbidden.
func (a *Authenticator) Authorize(r *http.Request, write bool) error {
	p, err := a.Authenticate(r)
	if err != nil {
		return err
	}
	if p.Admin {
		return nil
	}
	return ClusterMayRequest(p.Cluster, r.Method, r.URL)
}
