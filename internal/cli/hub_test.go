package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/testenv"
)

// serveTestHub runs 'outpost hub init' and 'outpost hub serve' on a free
// loopback port and returns the hub's data directory and address.
func serveTestHub(t *testing.T) (dir, addr string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "hub")
	if _, errOut, code := runCLI(t, "hub", "init", "--data", dir, "--listen", "127.0.0.1:0"); code != 0 {
		t.Fatalf("hub init = %d: %s", code, errOut)
	}
	ready := filepath.Join(t.TempDir(), "ready")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	var errb bytes.Buffer
	go func() {
		done <- Main(ctx, []string{"--config", filepath.Join(t.TempDir(), "config.yaml"),
			"hub", "serve", "--data", dir, "--ready-file", ready}, strings.NewReader(""), &bytes.Buffer{}, &errb)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("hub serve = %d: %s", code, errb.String())
		}
	})
	testenv.WaitFor(t, 30*time.Second, "the hub to serve", func() bool {
		b, err := os.ReadFile(ready)
		addr = string(b)
		return err == nil && addr != ""
	})
	return dir, addr
}

// TestHubTLS dials the hub with real TLS clients: it speaks TLS 1.3, and
// TLS 1.2 only with ECDHE and an AEAD cipher, so a client offering nothing
// but CBC suites is refused.
func TestHubTLS(t *testing.T) {
	dir, addr := serveTestHub(t)
	ca, err := os.ReadFile(hubLayout(dir).caCert())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	tests := []struct {
		name     string
		max      uint16
		suites   []uint16
		wantFail bool
	}{
		{"TLS 1.3", tls.VersionTLS13, nil, false},
		{"TLS 1.2 AEAD", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, false},
		{"TLS 1.2 ChaCha20", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}, false},
		{"TLS 1.2 CBC-SHA1 only", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}, true},
		{"TLS 1.2 CBC-SHA256 only", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}, true},
		{"TLS 1.1", tls.VersionTLS11, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1",
				MinVersion: tls.VersionTLS10, MaxVersion: tt.max, CipherSuites: tt.suites})
			if err == nil {
				conn.Close()
			}
			if (err != nil) != tt.wantFail {
				t.Fatalf("handshake error %v, want failure %v", err, tt.wantFail)
			}
		})
	}
}
