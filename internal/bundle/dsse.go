package bundle

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"

	"outpost.dev/outpost/internal/artifact"
)

// The bundle's documents are DSSE envelopes signed as model signatures are
// (internal/artifact's SignDSSE and OpenDSSE), under their own payload types.

// KeyID names an ed25519 public key, as model signatures name theirs.
func KeyID(pub ed25519.PublicKey) string { return artifact.KeyID(pub) }

// Sign wraps payload in a DSSE envelope of payloadType signed with key.
func Sign(payloadType string, payload []byte, key ed25519.PrivateKey) ([]byte, error) {
	env, err := artifact.SignDSSE(payloadType, payload, key)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", payloadType, err)
	}
	return env, nil
}

// Verify checks that env is a DSSE envelope of payloadType with a signature
// by one of trusted, and returns its payload and the signing key's id. An
// envelope no trusted key signed gives an error wrapping ErrSignature; one
// that does not parse, ErrMalformed.
func Verify(env []byte, payloadType string, trusted []ed25519.PublicKey) ([]byte, string, error) {
	payload, id, err := artifact.OpenDSSE(env, payloadType, MaxDocBytes, trusted)
	switch {
	case errors.Is(err, artifact.ErrUntrusted):
		return nil, "", fmt.Errorf("%w: %v, not by %s", ErrSignature, err, keyIDs(trusted))
	case err != nil:
		return nil, "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return payload, id, nil
}

func keyIDs(keys []ed25519.PublicKey) string {
	if len(keys) == 0 {
		return "any key held (none pinned)"
	}
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = KeyID(k)
	}
	return strings.Join(ids, ", ")
}
