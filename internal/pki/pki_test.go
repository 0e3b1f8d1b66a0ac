package pki

import (
	"crypto/tls"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServerCertificateVerifies serves TLS with an issued certificate and
// checks that a client trusting only the CA connects, and one trusting
// another CA does not.
func TestServerCertificateVerifies(t *testing.T) {
	now := time.Now()
	ca, err := NewCA("test ca", now)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := IssueServer(ca, []string{"localhost", "127.0.0.1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.StartTLS()
	defer ts.Close()

	good, err := ClientTLS(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: good}}
	resp, err := c.Get(ts.URL)
	if err != nil {
		t.Fatalf("trusted client: %v", err)
	}
	resp.Body.Close()

	other, _ := NewCA("other", now)
	bad, _ := ClientTLS(other.CertPEM)
	c = &http.Client{Transport: &http.Transport{TLSClientConfig: bad}}
	if _, err := c.Get(ts.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted client: err = %v, want certificate error", err)
	}
}

func TestIssueNeedsHosts(t *testing.T) {
	ca, _ := NewCA("x", time.Now())
	if _, err := IssueServer(ca, nil, time.Now()); err == nil {
		t.Fatal("want error for no hosts")
	}
	if _, err := IssueServer(Pair{CertPEM: []byte("junk")}, []string{"a"}, time.Now()); err == nil {
		t.Fatal("want error for a broken CA")
	}
}

// TestWriteFiles writes a pair and reads it back: the key is readable by
// its owner alone, and what was written still makes a TLS key pair. A missing directory is an error naming the file.
func TestWriteFiles(t *testing.T) {
	ca, err := NewCA("write test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := ca.WriteFiles(certPath, keyPath); err != nil {
		t.Fatal(err)
	}
	// Modes as the umask leaves them: the key never beyond its owner.
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("key file mode %v: want no access beyond its owner", fi.Mode().Perm())
	}
	if _, err := tls.LoadX509KeyPair(certPath, keyPath); err != nil {
		t.Errorf("the written pair does not load: %v", err)
	}

	missing := filepath.Join(dir, "no", "such")
	tests := []struct {
		name, cert, key, want string
	}{
		{"key directory missing", certPath, filepath.Join(missing, "k"), "write key"},
		{"certificate directory missing", filepath.Join(missing, "c"), keyPath, "write certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ca.WriteFiles(tt.cert, tt.key)
			if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("WriteFiles = %v, want a not-exist error saying %q", err, tt.want)
			}
		})
	}
}
