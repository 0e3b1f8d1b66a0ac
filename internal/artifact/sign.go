package artifact

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
)

// ErrUntrusted is matched by VerifyEnvelope errors when no signature of the
// envelope verifies with a trusted key.
var ErrUntrusted = errors.New("no valid signature from a trusted key")

// GenerateKey returns a new ed25519 signing key pair.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	return ed25519.GenerateKey(rand.Reader)
}

// MarshalPrivateKeyPEM encodes key as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM decodes a PKCS#8 "PRIVATE KEY" PEM block holding an
// ed25519 key.
func ParsePrivateKeyPEM(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("parse private key: no PRIVATE KEY PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("parse private key: %T is not an ed25519 key", k)
	}
	return ek, nil
}

// MarshalPublicKeyPEM encodes pub as a PKIX "PUBLIC KEY" PEM block.
func MarshalPublicKeyPEM(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeyPEM decodes a PKIX "PUBLIC KEY" PEM block holding an ed25519
// key.
func ParsePublicKeyPEM(b []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("parse public key: no PUBLIC KEY PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("parse public key: %T is not an ed25519 key", k)
	}
	return ek, nil
}

// KeyID returns the identifier of pub: the first 16 hex characters of the
// sha256 of its PKIX DER encoding. It returns "" for a malformed key.
func KeyID(pub ed25519.PublicKey) string {
	if len(pub) != ed25519.PublicKeySize {
		return ""
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])[:16]
}

// Envelope is a DSSE envelope (github.com/secure-systems-lab/dsse).
type Envelope struct {
	PayloadType string              `json:"payloadType"`
	Payload     string              `json:"payload"` // base64
	Signatures  []EnvelopeSignature `json:"signatures"`
}

// EnvelopeSignature is one signature of a DSSE envelope.
type EnvelopeSignature struct {
	KeyID string `json:"keyid,omitempty"`
	Sig   string `json:"sig"` // base64
}

// Statement is an in-toto Statement v1.
type Statement struct {
	Type          string             `json:"_type"`
	Subject       []StatementSubject `json:"subject"`
	PredicateType string             `json:"predicateType"`
	Predicate     SignaturePredicate `json:"predicate"`
}

// StatementSubject names a signed artifact and its digests.
type StatementSubject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// SignaturePredicate is the predicate of an Outpost model signature.
type SignaturePredicate struct {
	SignedAt time.Time `json:"signedAt"`
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

// NewEnvelope signs an in-toto statement naming subjectName (such as
// "models/resnet:1.2.0") with the manifest digest, and returns the DSSE
// envelope JSON.
func NewEnvelope(manifest digest.Digest, subjectName string, key ed25519.PrivateKey, signedAt time.Time) ([]byte, error) {
	if err := validateSHA256(manifest); err != nil {
		return nil, err
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("invalid ed25519 private key")
	}
	st := Statement{
		Type:          StatementTypeV1,
		Subject:       []StatementSubject{{Name: subjectName, Digest: map[string]string{"sha256": manifest.Encoded()}}},
		PredicateType: PredicateTypeSignature,
		Predicate:     SignaturePredicate{SignedAt: signedAt.UTC().Truncate(time.Second)},
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	return SignDSSE(PayloadTypeInToto, payload, key)
}

// SignDSSE wraps payload in a DSSE envelope of payloadType signed with key
// (an ed25519 private key), as model signatures and bundle documents are.
func SignDSSE(payloadType string, payload []byte, key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("invalid ed25519 private key")
	}
	sig := ed25519.Sign(key, pae(payloadType, payload))
	return json.Marshal(Envelope{
		PayloadType: payloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures: []EnvelopeSignature{{
			KeyID: KeyID(key.Public().(ed25519.PublicKey)),
			Sig:   base64.StdEncoding.EncodeToString(sig),
		}},
	})
}

// Sign signs the model manifest described by manifestDesc and pushes the
// signature to dst as a referrer (artifactType ArtifactTypeSignature, one
// DSSE envelope layer). subjectName names the model in the statement, such
// as "models/resnet:1.2.0".
func Sign(ctx context.Context, dst oras.Target, manifestDesc ocispec.Descriptor, subjectName string, key ed25519.PrivateKey) (ocispec.Descriptor, error) {
	now := time.Now().UTC().Truncate(time.Second)
	env, err := NewEnvelope(manifestDesc.Digest, subjectName, key, now)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("sign: %w", err)
	}
	layer := ocispec.Descriptor{MediaType: MediaTypeDSSEEnvelope, Digest: digest.FromBytes(env), Size: int64(len(env))}
	ann := map[string]string{
		AnnotationCreated: now.Format(time.RFC3339),
		AnnotationKeyID:   KeyID(key.Public().(ed25519.PublicKey)),
	}
	desc, err := pushReferrer(ctx, dst, manifestDesc, ArtifactTypeSignature, layer, env, ann)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("push signature: %w", err)
	}
	return desc, nil
}

// decodeBase64 accepts standard and URL-safe base64, padded or not, as DSSE
// requires of verifiers.
func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("invalid base64")
}

// parseEnvelope decodes a DSSE envelope of payloadType of at most limit
// bytes.
func parseEnvelope(b []byte, payloadType string, limit int) (*Envelope, []byte, error) {
	if len(b) > limit {
		return nil, nil, fmt.Errorf("envelope is %d bytes, above the %d byte limit", len(b), limit)
	}
	var env Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, nil, fmt.Errorf("decode envelope: %w", err)
	}
	if env.PayloadType != payloadType {
		return nil, nil, fmt.Errorf("envelope payloadType %q, want %s", env.PayloadType, payloadType)
	}
	if len(env.Signatures) == 0 || len(env.Signatures) > 16 {
		return nil, nil, fmt.Errorf("envelope has %d signatures, want 1 to 16", len(env.Signatures))
	}
	payload, err := decodeBase64(env.Payload)
	if err != nil {
		return nil, nil, fmt.Errorf("envelope payload: %w", err)
	}
	return &env, payload, nil
}

// VerifyEnvelope checks a DSSE envelope: one of its signatures must verify,
// over the DSSE pre-authentication encoding, with one of the trusted keys;
// the payload must be an in-toto Statement v1 with the Outpost signature
// predicate type whose subject carries the sha256 of manifest. It returns the
// ID of the key that verified. A signature copied onto another manifest
// fails the subject check.
func VerifyEnvelope(envelope []byte, manifest digest.Digest, trusted []ed25519.PublicKey) (keyID string, err error) {
	if err := validateSHA256(manifest); err != nil {
		return "", err
	}
	payload, keyID, err := OpenDSSE(envelope, PayloadTypeInToto, MaxEnvelopeBytes, trusted)
	if err != nil {
		return "", err
	}
	// Only the authenticated payload is parsed.
	var st Statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return keyID, fmt.Errorf("decode statement: %w", err)
	}
	if st.Type != StatementTypeV1 {
		return keyID, fmt.Errorf("statement _type %q, want %s", st.Type, StatementTypeV1)
	}
	if st.PredicateType != PredicateTypeSignature {
		return keyID, fmt.Errorf("statement predicateType %q, want %s", st.PredicateType, PredicateTypeSignature)
	}
	for _, s := range st.Subject {
		if s.Digest["sha256"] == manifest.Encoded() {
			return keyID, nil
		}
	}
	return keyID, fmt.Errorf("statement does not name manifest %s", manifest)
}

// ErrMalformedEnvelope is matched by OpenDSSE errors for an envelope that
// does not parse, is too large, or holds another payload type.
var ErrMalformedEnvelope = errors.New("malformed DSSE envelope")

// OpenDSSE checks that env, at most limit bytes, is a DSSE envelope of
// payloadType with a signature by one of trusted, and returns its payload
// and the id of the key that verified. An envelope no trusted key signed
// gives ErrUntrusted; one that does not parse, ErrMalformedEnvelope.
func OpenDSSE(env []byte, payloadType string, limit int, trusted []ed25519.PublicKey) ([]byte, string, error) {
	e, payload, err := parseEnvelope(env, payloadType, limit)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrMalformedEnvelope, err)
	}
	msg := pae(e.PayloadType, payload)
	for _, s := range e.Signatures {
		sig, err := decodeBase64(s.Sig)
		if err != nil || len(sig) != ed25519.SignatureSize {
			continue
		}
		for _, pub := range trusted {
			if len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig) {
				return payload, KeyID(pub), nil
			}
		}
	}
	ids := make([]string, 0, len(e.Signatures))
	for _, s := range e.Signatures {
		ids = append(ids, s.KeyID)
	}
	return nil, "", fmt.Errorf("%w: signed by key %v", ErrUntrusted, ids)
}

// SignatureInfo is the result of verifying one signature referrer.
type SignatureInfo struct {
	Digest   digest.Digest `json:"digest"`          // the signature referrer manifest
	KeyID    string        `json:"keyID,omitempty"` // verified key, or the envelope's unverified hint
	SignedAt time.Time     `json:"signedAt,omitzero"`
	Valid    bool          `json:"valid"`
	Error    string        `json:"error,omitempty"`
}

// Signatures lists the signature referrers of the manifest described by
// manifestDesc and verifies each against trusted.
func Signatures(ctx context.Context, src oras.ReadOnlyGraphTarget, manifestDesc ocispec.Descriptor, trusted []ed25519.PublicKey) ([]SignatureInfo, error) {
	refs, err := referrers(ctx, src, manifestDesc, ArtifactTypeSignature)
	if err != nil {
		return nil, fmt.Errorf("list signatures: %w", err)
	}
	out := make([]SignatureInfo, 0, len(refs))
	for _, ref := range refs {
		info := SignatureInfo{Digest: ref.Digest}
		if t, err := time.Parse(time.RFC3339, ref.Annotations[AnnotationCreated]); err == nil {
			info.SignedAt = t
		}
		env, err := fetchEnvelope(ctx, src, ref)
		if err == nil {
			info.KeyID, err = VerifyEnvelope(env, manifestDesc.Digest, trusted)
		}
		if err != nil {
			info.Error = err.Error()
			if info.KeyID == "" {
				info.KeyID = ref.Annotations[AnnotationKeyID]
			}
		} else {
			info.Valid = true
		}
		out = append(out, info)
	}
	return out, nil
}

func fetchEnvelope(ctx context.Context, src oras.ReadOnlyTarget, ref ocispec.Descriptor) ([]byte, error) {
	b, err := fetchLimited(ctx, src, ref, MaxManifestBytes)
	if err != nil {
		return nil, fmt.Errorf("fetch signature manifest: %w", err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, err
	}
	for _, l := range m.Layers {
		if l.MediaType == MediaTypeDSSEEnvelope {
			return fetchLimited(ctx, src, l, MaxEnvelopeBytes)
		}
	}
	return nil, fmt.Errorf("signature manifest has no %s layer", MediaTypeDSSEEnvelope)
}
