package bundle

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"path/filepath"
	"testing"
)

func FuzzParseContents(f *testing.F) {
	f.Add([]byte(`{"id":"b","created":"2026-01-01T00:00:00Z","clusters":[{"cluster":"c","desired":{"cluster":"c","revision":3}}],"blobs":[{"digest":"sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881","size":1}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseContents(b)
		if err == nil {
			if c.Validate() != nil {
				t.Fatal("parsed contents do not validate")
			}
		}
	})
}

func FuzzParseParts(f *testing.F) {
	f.Add([]byte(`{"bundle":"b","size":3,"parts":[{"name":"b.0001.tar","offset":0,"size":3,"digest":"sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParseParts(b)
		if err == nil {
			var sum int64
			for _, pt := range p.Parts {
				sum += pt.Size
			}
			if sum != p.Size {
				t.Fatal("parts do not cover the stream")
			}
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(`{"cluster":"c","seq":1,"records":[{"key":"k","kind":"note","payload":"aGk="}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := ParseStatus(b); err == nil && (s.Seq <= 0 || s.Cluster == "") {
			t.Fatal("invalid status accepted")
		}
	})
}

func FuzzParseIndex(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881","size":1,"annotations":{"org.opencontainers.image.ref.name":"outpost-bundle"}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseIndex(b)
	})
}

func FuzzVerify(f *testing.F) {
	_, priv, _ := ed25519.GenerateKey(nil)
	env, _ := Sign(PayloadStatus, []byte(`{}`), priv)
	f.Add(env)
	pub := priv.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, _, err := Verify(b, PayloadStatus, []ed25519.PublicKey{pub}); err == nil && !bytes.Equal(b, env) && p == nil {
			t.Fatal("verified an envelope with no payload")
		}
	})
}

func FuzzUntar(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := filepath.Join(t.TempDir(), "x")
		Untar(context.Background(), bytes.NewReader(b), dir)
	})
}
