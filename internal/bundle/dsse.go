package bundle

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
)

// envelope is a DSSE envelope (github.com/secure-systems-lab/dsse).
type envelope struct {
	PayloadType string      `json:"payloadType"`
	Payload     string      `json:"payload"`
	Signatures  []signature `json:"signatures"`
}

type signature struct {
	KeyID string `json:"keyid,omitempty"`
	Sig   string `json:"sig"`
}

// KeyID names an ed25519 public key: the first 16 hex digits of its sha256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])[:16]
}

// pae is the DSSE v1 pre-authentication encoding.
func pae(payloadType string, payload []byte) []byte {
	var b bytes.Buffer
	b.WriteString("DSSEv1 ")
	b.WriteString(strconv.Itoa(len(payloadType)))
	b.WriteByte(' ')
	b.WriteString(payloadType)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(len(payload)))
	b.WriteByte(' ')
	b.Write(payload)
	return b.Bytes()
}

// Sign wraps payload in a DSSE envelope of payloadType signed with key.
func Sign(payloadType string, payload []byte, key ed25519.PrivateKey) ([]byte, error) {
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok || len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign %s: not an ed25519 private key", payloadType)
	}
	sig := ed25519.Sign(key, pae(payloadType, payload))
	return json.Marshal(envelope{
		PayloadType: payloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []signature{{KeyID: KeyID(pub), Sig: base64.StdEncoding.EncodeToString(sig)}},
	})
}

// Verify checks that env is a DSSE envelope of payloadType with a signature
// by one of trusted, and returns its payload and the signing key's id. An
// envelope no trusted key signed gives an error wrapping ErrSignature; one
// that does not parse, ErrMalformed.
func Verify(env []byte, payloadType string, trusted []ed25519.PublicKey) ([]byte, string, error) {
	if len(env) > MaxDocBytes {
		return nil, "", fmt.Errorf("%w: envelope of %d bytes, above %d", ErrMalformed, len(env), MaxDocBytes)
	}
	var e envelope
	if err := json.Unmarshal(env, &e); err != nil {
		return nil, "", fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	if e.PayloadType != payloadType {
		return nil, "", fmt.Errorf("%w: envelope holds %q, want %q", ErrMalformed, e.PayloadType, payloadType)
	}
	payload, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		return nil, "", fmt.Errorf("%w: envelope payload: %v", ErrMalformed, err)
	}
	if len(e.Signatures) == 0 {
		return nil, "", fmt.Errorf("%w: envelope has no signature", ErrSignature)
	}
	msg := pae(e.PayloadType, payload)
	for _, s := range e.Signatures {
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil || len(sig) != ed25519.SignatureSize {
			continue
		}
		for _, k := range trusted {
			if len(k) == ed25519.PublicKeySize && ed25519.Verify(k, msg, sig) {
				return payload, KeyID(k), nil
			}
		}
	}
	ids := make([]string, 0, len(e.Signatures))
	for _, s := range e.Signatures {
		ids = append(ids, s.KeyID)
	}
	return nil, "", fmt.Errorf("%w: signed by key %v, not by %s", ErrSignature, ids, keyIDs(trusted))
}

func keyIDs(keys []ed25519.PublicKey) string {
	if len(keys) == 0 {
		return "any key held (none pinned)"
	}
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		s += KeyID(k)
	}
	return s
}
