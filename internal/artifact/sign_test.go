package artifact

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"oras.land/oras-go/v2/content/memory"
)

func TestKeyPEMRoundTrip(t *testing.T) {
	pub, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	pp, err := MarshalPrivateKeyPEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	bp, err := MarshalPublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(pp, []byte("-----BEGIN PRIVATE KEY-----")) || !bytes.Contains(bp, []byte("-----BEGIN PUBLIC KEY-----")) {
		t.Fatal("unexpected PEM block types")
	}
	priv2, err := ParsePrivateKeyPEM(pp)
	if err != nil || !priv2.Equal(priv) {
		t.Fatalf("private key round trip: %v", err)
	}
	pub2, err := ParsePublicKeyPEM(bp)
	if err != nil || !pub2.Equal(pub) {
		t.Fatalf("public key round trip: %v", err)
	}
	if id := KeyID(pub); len(id) != 16 || id != KeyID(pub2) {
		t.Fatalf("KeyID = %q", id)
	}
	if _, err := ParsePublicKeyPEM(pp); err == nil {
		t.Fatal("private key parsed as public")
	}
	if _, err := ParsePrivateKeyPEM([]byte("junk")); err == nil {
		t.Fatal("junk parsed")
	}
}

func TestSignAndVerify(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	writeTree(t, src, map[string][]byte{"m.onnx": randBytes(6, 4000)})
	store := memory.New()
	desc, err := Push(ctx, store, src, testOpts("1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	otherSrc := t.TempDir()
	writeTree(t, otherSrc, map[string][]byte{"m.onnx": randBytes(7, 4000)})
	otherDesc, err := Push(ctx, store, otherSrc, testOpts("2.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	pub, priv, _ := GenerateKey()
	wrongPub, _, _ := GenerateKey()

	sigDesc, err := Sign(ctx, store, desc, "models/resnet:1.0.0", priv)
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := Signatures(ctx, store, desc, []ed25519.PublicKey{wrongPub, pub})
	if err != nil {
		t.Fatal(err)
	}
	if len(sigs) != 1 || !sigs[0].Valid || sigs[0].KeyID != KeyID(pub) || sigs[0].Digest != sigDesc.Digest || sigs[0].SignedAt.IsZero() {
		t.Fatalf("signatures = %+v", sigs)
	}
	info, err := Inspect(ctx, store, "1.0.0", []ed25519.PublicKey{pub})
	if err != nil || !info.Signed() {
		t.Fatalf("inspect: %v %+v", err, info)
	}

	// Wrong key: listed, not valid, key hint reported.
	sigs, err = Signatures(ctx, store, desc, []ed25519.PublicKey{wrongPub})
	if err != nil {
		t.Fatal(err)
	}
	if len(sigs) != 1 || sigs[0].Valid || !strings.Contains(sigs[0].Error, "trusted key") || sigs[0].KeyID != KeyID(pub) {
		t.Fatalf("wrong key: %+v", sigs)
	}

	// The other version is unsigned.
	if sigs, _ := Signatures(ctx, store, otherDesc, []ed25519.PublicKey{pub}); len(sigs) != 0 {
		t.Fatalf("unsigned manifest has %d signatures", len(sigs))
	}

	// The same envelope copied onto the other manifest must fail.
	env, err := NewEnvelope(desc.Digest, "models/resnet:1.0.0", priv, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	layer := ocispec.Descriptor{MediaType: MediaTypeDSSEEnvelope, Digest: digest.FromBytes(env), Size: int64(len(env))}
	if _, err := pushReferrer(ctx, store, otherDesc, ArtifactTypeSignature, layer, env, nil); err != nil {
		t.Fatal(err)
	}
	sigs, err = Signatures(ctx, store, otherDesc, []ed25519.PublicKey{pub})
	if err != nil {
		t.Fatal(err)
	}
	if len(sigs) != 1 || sigs[0].Valid || !strings.Contains(sigs[0].Error, "does not name manifest") {
		t.Fatalf("copied signature: %+v", sigs)
	}
	if info, _ := Inspect(ctx, store, "2.0.0", []ed25519.PublicKey{pub}); info.Signed() {
		t.Fatal("copied signature counted as signed")
	}
}

func TestVerifyEnvelope(t *testing.T) {
	pub, priv, _ := GenerateKey()
	wrongPub, wrongPriv, _ := GenerateKey()
	m := digest.FromString("manifest")
	env, err := NewEnvelope(m, "models/x:1.0.0", priv, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if id, err := VerifyEnvelope(env, m, []ed25519.PublicKey{pub}); err != nil || id != KeyID(pub) {
		t.Fatalf("valid envelope: %q %v", id, err)
	}

	var e Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.StdEncoding.DecodeString(e.Payload)
	mutate := func(f func(e *Envelope)) []byte {
		c := e
		c.Signatures = append([]EnvelopeSignature(nil), e.Signatures...)
		f(&c)
		b, _ := json.Marshal(c)
		return b
	}
	// Re-signing a statement for another digest with the right key is
	// a valid signature of that other digest, not of m.
	otherEnv, _ := NewEnvelope(digest.FromString("other"), "models/x:1.0.0", priv, time.Now())
	wrongKeyEnv, _ := NewEnvelope(m, "models/x:1.0.0", wrongPriv, time.Now())
	// A statement with the wrong type, correctly signed (over the
	// pre-authentication encoding of a DSSE implementation we did not write).
	badStmt := bytes.Replace(payload, []byte(StatementTypeV1), []byte("https://example.com/x"), 1)
	badType := mutate(func(e *Envelope) {
		e.Payload = base64.StdEncoding.EncodeToString(badStmt)
		e.Signatures[0].Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, dsse.PAE(PayloadTypeInToto, badStmt)))
	})

	tests := []struct {
		name    string
		env     []byte
		trusted []ed25519.PublicKey
		wantErr string
	}{
		{"wrong key", env, []ed25519.PublicKey{wrongPub}, "trusted key"},
		{"no keys", env, nil, "trusted key"},
		{"signed by untrusted key", wrongKeyEnv, []ed25519.PublicKey{pub}, "trusted key"},
		{"tampered payload", mutate(func(e *Envelope) {
			e.Payload = base64.StdEncoding.EncodeToString(bytes.Replace(payload, []byte("models/x"), []byte("models/y"), 1))
		}), []ed25519.PublicKey{pub}, "trusted key"},
		{"payload type swapped", mutate(func(e *Envelope) { e.PayloadType = "application/json" }), []ed25519.PublicKey{pub}, "payloadType"},
		{"other digest", otherEnv, []ed25519.PublicKey{pub}, "does not name manifest"},
		{"statement type", badType, []ed25519.PublicKey{pub}, "_type"},
		{"no signatures", mutate(func(e *Envelope) { e.Signatures = nil }), []ed25519.PublicKey{pub}, "signatures"},
		{"garbage sig", mutate(func(e *Envelope) { e.Signatures[0].Sig = "!!" }), []ed25519.PublicKey{pub}, "trusted key"},
		{"bad trusted key length", env, []ed25519.PublicKey{pub[:10]}, "trusted key"},
		{"not json", []byte("{"), []ed25519.PublicKey{pub}, "decode envelope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyEnvelope(tt.env, m, tt.trusted)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if _, err := VerifyEnvelope(env, m, []ed25519.PublicKey{wrongPub}); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("err = %v, want ErrUntrusted", err)
	}
}

func FuzzVerifyEnvelope(f *testing.F) {
	pub, priv, _ := GenerateKey()
	m := digest.FromString("manifest")
	env, _ := NewEnvelope(m, "models/x:1.0.0", priv, time.Unix(0, 0))
	f.Add(env)
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"sig":"AA=="}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := VerifyEnvelope(b, m, []ed25519.PublicKey{pub})
		if err == nil && id != KeyID(pub) {
			t.Fatalf("verified with unknown key id %q", id)
		}
	})
}
