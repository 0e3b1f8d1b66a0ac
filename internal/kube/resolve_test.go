package kube

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	orasauth "oras.land/oras-go/v2/registry/remote/auth"

	"outpost.dev/outpost/internal/hub/hubtest"
	"outpost.dev/outpost/internal/versions"
)

// TestRegistryResolve resolves constraints against a real hub's registry.
func TestRegistryResolve(t *testing.T) {
	h := hubtest.New(t)
	src := t.TempDir()
	descs := map[string]string{}
	for i, v := range []string{"1.0.0", "1.2.0", "2.0.0", "1.3.0-rc.1"} {
		dir := filepath.Join(src, v)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "model.onnx"), []byte(strings.Repeat("w", 100+i)), 0o644)
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{}`), 0o644)
		descs[v] = h.Push(dir, "m", v).Digest.String()
	}
	host := strings.TrimPrefix(hubtest.URL, "http://")
	r := &Registry{Host: host, PlainHTTP: true, Client: &orasauth.Client{Client: h.Client,
		Credential: orasauth.StaticCredential(host, orasauth.Credential{Username: "outpost", Password: h.Admin})}}
	tests := []struct {
		constraint string
		want       string
		size       int64
	}{
		{"^1", "1.2.0", 101 + 2},
		{"1.0.0", "1.0.0", 100 + 2},
		{">=1", "2.0.0", 102 + 2},
		{"1.3.0-rc.1", "1.3.0-rc.1", 103 + 2},
	}
	for _, tt := range tests {
		got, err := r.Resolve(t.Context(), "m", tt.constraint)
		if err != nil {
			t.Fatalf("%s: %v", tt.constraint, err)
		}
		if got != (Resolved{Version: tt.want, Digest: descs[tt.want], Size: tt.size}) {
			t.Errorf("%s: %+v, want %s %s size %d", tt.constraint, got, tt.want, descs[tt.want], tt.size)
		}
	}
	if _, err := r.Resolve(t.Context(), "m", "^3"); !errors.Is(err, versions.ErrNoMatch) {
		t.Errorf("^3: %v, want no match", err)
	}
	if _, err := r.Resolve(t.Context(), "absent", "^1"); err == nil {
		t.Error("a model the registry lacks resolved")
	}
	if _, err := r.Resolve(t.Context(), "Bad Name", "^1"); err == nil || !strings.Contains(err.Error(), "Bad Name") {
		t.Errorf("a bad model name: %v", err)
	}
}
