// Package auth authenticates and authorizes requests to the hub.
//
// The hub knows tokens only by their SHA-256 hash, so a stolen data
// directory does not reveal a usable credential. Clients send a token as
// "Authorization: Bearer TOKEN" or, for OCI clients that only speak Basic
// authentication, as the password of "Authorization: Basic" with any user.
package auth

import (
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
)

// ErrUnauthenticated means the request carried no valid credential; HTTP handlers answer 401.
var ErrUnauthenticated = errors.New("unauthenticated")

// ErrForbidden means the credential is valid but may not do what was asked; HTTP handlers answer 403.
var ErrForbidden = errors.New("forbidden")

// tokenPrefix marks Outpost tokens so they are recognisable in logs and secret scanners.
const tokenPrefix = "opt_"

// NewToken returns a fresh random token with 256 bits of entropy.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
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

// Authenticator decides whether a request may read or write.
type Authenticator struct {
	adminHash [32]byte
}

// NewAuthenticator returns an Authenticator that admits the admin token whose hash is given.
func NewAuthenticator(adminHash [32]byte) *Authenticator {
	return &Authenticator{adminHash: adminHash}
}

// Authorize admits a request that carries the admin token. Every request,
// read or write, needs a credential: a hub holds a fleet's models.
func (a *Authenticator) Authorize(r *http.Request, write bool) error {
	tok := FromRequest(r)
	if tok == "" {
		return fmt.Errorf("no token in request: %w", ErrUnauthenticated)
	}
	h := Hash(tok)
	if subtle.ConstantTimeCompare(h[:], a.adminHash[:]) != 1 {
		return fmt.Errorf("token not recognised: %w", ErrUnauthenticated)
	}
	return nil
}
