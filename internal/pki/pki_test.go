package pki

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
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
