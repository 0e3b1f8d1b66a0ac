package transfer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestHTTPSourceOpenRange(t *testing.T) {
	blob := randomBytes(1000, 1)
	d := digest.FromBytes(blob)
	tests := []struct {
		name          string
		handler       http.HandlerFunc // nil: the blob server
		off, n        int64
		wantErr       string
		wantPermanent bool
	}{
		{name: "range", off: 100, n: 50},
		{name: "whole blob as range", off: 0, n: 1000},
		{name: "200 for the whole blob", handler: func(w http.ResponseWriter, r *http.Request) { w.Write(blob) }, off: 0, n: 1000},
		{name: "200 for part of the blob", handler: func(w http.ResponseWriter, r *http.Request) { w.Write(blob) }, off: 0, n: 10,
			wantErr: "ignored the range request", wantPermanent: true},
		{name: "wrong content range", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Range", "bytes 0-9/1000")
			w.WriteHeader(http.StatusPartialContent)
			w.Write(blob[:10])
		}, off: 10, n: 10, wantErr: `got Content-Range "bytes 0-9/1000"`, wantPermanent: true},
		{name: "no content range", handler: func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusPartialContent)
		}, off: 10, n: 10, wantErr: `got Content-Range ""`, wantPermanent: true},
		{name: "unauthorized", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad token"}]}`, http.StatusUnauthorized)
		}, off: 0, n: 10, wantErr: "401 Unauthorized (credential missing or not accepted): UNAUTHORIZED bad token", wantPermanent: true},
		{name: "forbidden", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", http.StatusForbidden)
		}, off: 0, n: 10, wantErr: "403 Forbidden (credential not allowed to read this repository): no", wantPermanent: true},
		{name: "not found", off: 0, n: 10, handler: func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			wantErr: "404 Not Found (blob not in the registry)", wantPermanent: true},
		{name: "range not satisfiable", off: 1000, n: 20, wantErr: "is 1000 bytes", wantPermanent: true},
		{name: "range not satisfiable, size not given", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", http.StatusRequestedRangeNotSatisfiable)
		}, off: 1000, n: 20, wantErr: "416 Requested Range Not Satisfiable (range outside the blob)", wantPermanent: true},
		{name: "range past the end", off: 990, n: 20, wantErr: "is 1000 bytes", wantPermanent: true},
		{name: "200 for a blob shorter than the range", handler: func(w http.ResponseWriter, r *http.Request) { w.Write(blob) }, off: 0, n: 2000,
			wantErr: "is 1000 bytes", wantPermanent: true},
		{name: "unavailable", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "busy", http.StatusServiceUnavailable)
		}, off: 0, n: 10, wantErr: "503 Service Unavailable: busy"},
		{name: "too many requests", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "slow down", http.StatusTooManyRequests)
		}, off: 0, n: 10, wantErr: "429"},
		{name: "empty range", off: 0, n: 0, wantErr: "invalid range", wantPermanent: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newBlobServer(t, blob)
			if tt.handler != nil {
				srv.Config.Handler = tt.handler
			}
			rc, err := srv.source().OpenRange(context.Background(), d, tt.off, tt.n)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if IsPermanent(err) != tt.wantPermanent {
					t.Fatalf("IsPermanent(%v) = %v", err, !tt.wantPermanent)
				}
				var se *BlobSizeError
				if strings.HasPrefix(tt.wantErr, "is ") != errors.As(err, &se) || (se != nil && (se.Size != int64(len(blob)) || se.Blob != d)) {
					t.Errorf("error %v: BlobSizeError %+v", err, se)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil || string(got) != string(blob[tt.off:tt.off+tt.n]) {
				t.Fatalf("read %d bytes, err %v; want bytes %d-%d", len(got), err, tt.off, tt.off+tt.n-1)
			}
			if bs, ok := rc.(BlobSizer); !ok || bs.BlobSize() != int64(len(blob)) {
				t.Errorf("reader does not give the blob's size %d", len(blob))
			}
		})
	}
}

func TestHTTPSourceSendsCredentialAndRange(t *testing.T) {
	var gotAuth, gotRange, gotPath string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotRange, gotPath = r.Header.Get("Authorization"), r.Header.Get("Range"), r.URL.Path
		w.Header().Set("Content-Range", "bytes 5-7/100")
		w.WriteHeader(http.StatusPartialContent)
		w.Write([]byte("abc"))
	}))
	defer srv.Close()
	d := digest.FromString("blob")
	src := &HTTPSource{Client: srv.Client(), BaseURL: srv.URL + "/", Repo: "models/resnet", Token: "opc_t"}
	rc, err := src.OpenRange(context.Background(), d, 5, 3)
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if gotAuth != "Bearer opc_t" || gotRange != "bytes=5-7" || gotPath != "/v2/models/resnet/blobs/"+d.String() {
		t.Fatalf("sent Authorization %q Range %q path %q", gotAuth, gotRange, gotPath)
	}
}

func TestHTTPSourceConnectionErrorIsRetryable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	src := &HTTPSource{BaseURL: "http://" + addr, Repo: "models/x"}
	_, err = src.OpenRange(context.Background(), digest.FromString("x"), 0, 10)
	if err == nil || IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable error", err)
	}
}

func TestPermanent(t *testing.T) {
	base := errors.New("gone")
	p := Permanent(base)
	wrapped := fmt.Errorf("fetch: %w", p)
	if !IsPermanent(wrapped) || !errors.Is(wrapped, base) || IsPermanent(base) || Permanent(nil) != nil || Permanent(p) != p {
		t.Fatal("Permanent does not mark, wrap or pass nil through")
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in         string
		a, b, size int64
		ok         bool
	}{
		{"bytes 0-9/100", 0, 9, 100, true},
		{"bytes 5-5/*", 5, 5, -1, true},
		{"bytes 9-0/100", 0, 0, 0, false},
		{"bytes 0-100/100", 0, 0, 0, false},
		{"bytes */100", 0, 0, 0, false},
		{"items 0-9/100", 0, 0, 0, false},
		{"bytes -1-9/100", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	}
	for _, tt := range tests {
		a, b, size, ok := parseContentRange(tt.in)
		if ok != tt.ok || (ok && (a != tt.a || b != tt.b || size != tt.size)) {
			t.Errorf("parseContentRange(%q) = %d %d %d %v", tt.in, a, b, size, ok)
		}
	}
}
