package artifact

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// TestPAEKnownAnswers checks pae against the DSSE specification: the
// example in its protocol.md ("Test Vectors"), and encodings worked out by
// hand from its definition, PAE(type, body) = "DSSEv1" SP LEN(type) SP type
// SP LEN(body) SP body, where LEN is the byte length in decimal.
func TestPAEKnownAnswers(t *testing.T) {
	tests := []struct {
		name, payloadType, body, want string
	}{
		{"protocol.md example", "http://example.com/HelloWorld", "hello world", "DSSEv1 29 http://example.com/HelloWorld 11 hello world"},
		{"empty", "", "", "DSSEv1 0  0 "},
		{"lengths count bytes", "é", "\x00\n", "DSSEv1 2 é 2 \x00\n"},
		{"in-toto", PayloadTypeInToto, "{}", "DSSEv1 28 application/vnd.in-toto+json 2 {}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(pae(tt.payloadType, []byte(tt.body))); got != tt.want {
				t.Errorf("pae(%q, %q) = %q, want %q", tt.payloadType, tt.body, got, tt.want)
			}
		})
	}
}

// ed25519Key signs and verifies for the dsse package with an ed25519 key
// pair; its key ID is ours, which the package matches against the
// envelope's keyid hint.
type ed25519Key struct {
	pub  ed25519.PublicKey
	priv ed25519.PrivateKey
}

func (k ed25519Key) Sign(_ context.Context, data []byte) ([]byte, error) {
	return ed25519.Sign(k.priv, data), nil
}

func (k ed25519Key) Verify(_ context.Context, data, sig []byte) error {
	if !ed25519.Verify(k.pub, data, sig) {
		return errors.New("ed25519: signature does not verify")
	}
	return nil
}

func (k ed25519Key) KeyID() (string, error)   { return KeyID(k.pub), nil }
func (k ed25519Key) Public() crypto.PublicKey { return k.pub }

// TestEnvelopeInteropDSSE checks our envelopes against an implementation of
// DSSE we did not write (github.com/secure-systems-lab/go-securesystemslib):
// it verifies what NewEnvelope signs, refuses it once tampered with, and
// signs what VerifyEnvelope accepts.
func TestEnvelopeInteropDSSE(t *testing.T) {
	ctx := context.Background()
	pub, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	key := ed25519Key{pub, priv}
	verifier, err := dsse.NewEnvelopeVerifier(key)
	if err != nil {
		t.Fatal(err)
	}
	m := digest.FromString("manifest")
	ours, err := NewEnvelope(m, "models/x:1.0.0", priv, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}

	var env dsse.Envelope
	if err := json.Unmarshal(ours, &env); err != nil {
		t.Fatal(err)
	}
	accepted, err := verifier.Verify(ctx, &env)
	if err != nil || len(accepted) != 1 || accepted[0].KeyID != KeyID(pub) {
		t.Fatalf("dsse.Verify of our envelope = %+v, %v; want accepted by key %s", accepted, err, KeyID(pub))
	}
	tampered := env
	tampered.PayloadType = "application/json"
	if _, err := verifier.Verify(ctx, &tampered); err == nil {
		t.Error("dsse.Verify accepted our envelope with its payloadType changed")
	}

	// The other way round: the same statement, signed by the dsse package.
	payload, err := env.DecodeB64Payload()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := dsse.NewEnvelopeSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := signer.SignPayload(ctx, PayloadTypeInToto, payload)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(theirs)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := VerifyEnvelope(b, m, []ed25519.PublicKey{pub}); err != nil || id != KeyID(pub) {
		t.Fatalf("VerifyEnvelope of the dsse package's envelope = %q, %v", id, err)
	}
}
