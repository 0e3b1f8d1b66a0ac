package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/internal/testenv"
)

// records is a slog.Handler that keeps every record at Debug and above.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) all() []slog.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]slog.Record(nil), r.recs...)
}

// TestServerErrorLog checks the level of the HTTP server's own messages: a
// failed TLS handshake (a client that went away, or never spoke TLS) is
// Debug, for a fleet reconnecting at once fails thousands a second; the
// others stay Warn.
func TestServerErrorLog(t *testing.T) {
	tests := []struct {
		msg  string
		want slog.Level
	}{
		{"http: TLS handshake error from 127.0.0.1:50312: EOF\n", slog.LevelDebug},
		{"http: TLS handshake error from 10.0.0.7:4431: read tcp 10.0.0.1:8443->10.0.0.7:4431: read: connection reset by peer\n", slog.LevelDebug},
		{"http: Accept error: accept tcp [::]:8443: accept4: too many open files; retrying in 5ms\n", slog.LevelWarn},
		{"http: superfluous response.WriteHeader call\n", slog.LevelWarn},
	}
	for _, tt := range tests {
		t.Run(tt.msg, func(t *testing.T) {
			rec := &records{}
			l := serverErrorLog(slog.New(rec))
			l.Print(tt.msg)
			got := rec.all()
			if len(got) != 1 || got[0].Level != tt.want || got[0].Message+"\n" != tt.msg {
				t.Fatalf("logged %+v, want one record at %v saying %q", got, tt.want, tt.msg)
			}
		})
	}

	// Through a real server: a client that closes before its handshake.
	rec := &records{}
	ts := httptest.NewUnstartedServer(http.NotFoundHandler())
	ts.Config.ErrorLog = serverErrorLog(slog.New(rec))
	ts.StartTLS()
	defer ts.Close()
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	testenv.WaitFor(t, 10*time.Second, "the handshake error logged", func() bool { return len(rec.all()) > 0 })
	if r := rec.all()[0]; r.Level != slog.LevelDebug {
		t.Errorf("failed handshake logged at %v: %s", r.Level, r.Message)
	}
}

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
