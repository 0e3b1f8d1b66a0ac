package auth

import (
	"context"
	"errors"
	"net/http"
	"path"
	"strings"
	"testing"

	"outpost.dev/outpost/api/v1alpha1"
)

// fakeCredentials is a ClusterCredentials over a map from token to cluster.
type fakeCredentials map[string]string

func (f fakeCredentials) ClusterForCredential(_ context.Context, h [32]byte) (string, bool, error) {
	for tok, c := range f {
		if Hash(tok) == h {
			return c, true, nil
		}
	}
	return "", false, nil
}

type failingCredentials struct{}

func (failingCredentials) ClusterForCredential(context.Context, [32]byte) (string, bool, error) {
	return "", false, errors.New("database is gone")
}

func TestPrefixedTokens(t *testing.T) {
	for _, tt := range []struct {
		gen    func() (string, error)
		prefix string
	}{{NewToken, AdminPrefix}, {NewJoinToken, JoinTokenPrefix}, {NewClusterCredential, ClusterCredentialPrefix}} {
		a, err := tt.gen()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := tt.gen()
		if !strings.HasPrefix(a, tt.prefix) || a == b || len(a) != len(tt.prefix)+43 {
			t.Errorf("tokens %q %q, want prefix %q and 43 base64url characters", a, b, tt.prefix)
		}
	}
}

func TestAuthorizeClusterCredentials(t *testing.T) {
	admin, _ := NewToken()
	credA, _ := NewClusterCredential()
	joinTok, _ := NewJoinToken()
	a := NewAuthenticator(Hash(admin), WithClusterCredentials(fakeCredentials{credA: "a"}))
	tests := []struct {
		name, token, method, path string
		want                      error
		wantMsg                   string
	}{
		{"admin writes anything", admin, http.MethodDelete, v1alpha1.APIPath + "/clusters/b", nil, ""},
		{"cluster reads the registry", credA, http.MethodGet, "/v2/models/m/blobs/sha256:00", nil, ""},
		{"cluster reads own desired state", credA, http.MethodGet, v1alpha1.APIPath + "/clusters/a/desiredstate", nil, ""},
		{"cluster reads another's desired state", credA, http.MethodGet, v1alpha1.APIPath + "/clusters/b/desiredstate", ErrForbidden,
			`cluster "a" may not read the desired state of cluster "b"`},
		{"cluster pushes", credA, http.MethodPut, "/v2/models/m/manifests/1.0.0", ErrForbidden, "may not write to the registry"},
		{"join token as bearer", joinTok, http.MethodGet, "/v2/", ErrUnauthenticated, "only serves to join"},
		{"unknown", "opc_nobody", http.MethodGet, "/v2/", ErrUnauthenticated, "token not recognised"},
		{"none", "", http.MethodGet, "/v2/", ErrUnauthenticated, "no token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(tt.method, "https://hub"+tt.path, nil)
			if tt.token != "" {
				r.Header.Set("Authorization", "Bearer "+tt.token)
			}
			err := a.Authorize(r, tt.method != http.MethodGet)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantMsg)) {
				t.Errorf("Authorize = %v, want %v with %q", err, tt.want, tt.wantMsg)
			}
		})
	}

	// Without WithClusterCredentials, cluster credentials are unknown.
	r, _ := http.NewRequest(http.MethodGet, "https://hub/v2/", nil)
	r.Header.Set("Authorization", "Bearer "+credA)
	if err := NewAuthenticator(Hash(admin)).Authorize(r, false); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("admin-only authenticator admitted a cluster credential: %v", err)
	}
	// A failing lookup is neither 401 nor 403.
	fa := NewAuthenticator(Hash(admin), WithClusterCredentials(failingCredentials{}))
	if err := fa.Authorize(r, false); err == nil || errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrForbidden) {
		t.Errorf("failing lookup = %v", err)
	}
	if p, err := a.Authenticate(r); err != nil || p != (Principal{Cluster: "a"}) {
		t.Errorf("Authenticate = %+v, %v", p, err)
	}
}

func TestClusterMay(t *testing.T) {
	p := v1alpha1.APIPath
	tests := []struct {
		method, path string
		ok           bool
	}{
		{http.MethodGet, "/v2/", true},
		{http.MethodGet, "/v2", true},
		{http.MethodHead, "/v2/models/resnet/blobs/sha256:ab", true},
		{http.MethodGet, "/v2/_catalog", true},
		{http.MethodGet, "/v2/models/resnet/tags/list", true},
		{http.MethodPost, "/v2/models/resnet/blobs/uploads/", false},
		{http.MethodPatch, "/v2/models/resnet/blobs/uploads/x", false},
		{http.MethodDelete, "/v2/models/resnet/blobs/sha256:ab", false},
		{http.MethodGet, "/v2/../apis/ml.outpost.dev/v1alpha1/clusters/b", false},
		{http.MethodGet, "//v2/", false},
		{http.MethodGet, "/v2x", false},
		{http.MethodGet, p + "/clusters/a", true},
		{http.MethodHead, p + "/clusters/a", true},
		{http.MethodGet, p + "/clusters/a/", false},
		{http.MethodPost, p + "/clusters/a/report/", false},
		{http.MethodGet, p + "/clusters/b", false},
		{http.MethodGet, p + "/clusters", false},
		{http.MethodGet, p + "/clusters/", false},
		{http.MethodPut, p + "/clusters/a", false},
		{http.MethodDelete, p + "/clusters/a", false},
		{http.MethodPut, p + "/clusters/a/status", false},
		{http.MethodGet, p + "/clusters/a/status", false},
		{http.MethodGet, p + "/clusters/a/desiredstate", true},
		{http.MethodPost, p + "/clusters/a/desiredstate", false},
		{http.MethodGet, p + "/clusters/b/desiredstate", false},
		{http.MethodGet, p + "/clusters/a/desiredstate/x", false},
		{http.MethodPost, p + "/clusters/a/report", true},
		{http.MethodGet, p + "/clusters/a/report", false},
		{http.MethodPost, p + "/clusters/b/report", false},
		{http.MethodPost, p + "/clusters/a/outbox", true},
		{http.MethodGet, p + "/clusters/a/outbox", false},
		{http.MethodPost, p + "/clusters/b/outbox", false},
		{http.MethodPost, p + "/clusters/a/outbox/x", false},
		{http.MethodGet, p + "/clusters/a/../b/desiredstate", false},
		{http.MethodGet, p + "/modeldeployments", false},
		{http.MethodGet, p + "/modeldeployments/a", false},
		{http.MethodGet, p + "/jointokens", false},
		{http.MethodPost, p + "/jointokens", false},
		{http.MethodGet, "/healthz", false},
		{http.MethodGet, "/", false},
	}
	for _, tt := range tests {
		err := ClusterMay("a", tt.method, tt.path)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrForbidden)) {
			t.Errorf("ClusterMay(a, %s, %s) = %v, want ok=%v", tt.method, tt.path, err, tt.ok)
		}
	}
}

// FuzzClusterMay checks that whatever the path, a cluster is admitted only to registry
// reads and its own four API paths.
func FuzzClusterMay(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/x/../../apis", v1alpha1.APIPath + "/clusters/a/report", v1alpha1.APIPath + "/clusters/a/desiredstate",
		v1alpha1.APIPath + "/clusters/a", v1alpha1.APIPath + "/clusters/a//report", "/v2/%2e%2e/", v1alpha1.APIPath + "/clusters/a/",
		v1alpha1.APIPath + "/clusters/a/outbox", v1alpha1.APIPath + "/clusters/b/outbox"} {
		f.Add("GET", s)
		f.Add("POST", s)
	}
	f.Fuzz(func(t *testing.T, method, p string) {
		if ClusterMay("a", method, p) != nil {
			return
		}
		read := method == http.MethodGet || method == http.MethodHead
		own := v1alpha1.APIPath + "/clusters/a"
		switch {
		case read && (p == "/v2" || strings.HasPrefix(p, "/v2/")) && path.Clean(p) == strings.TrimSuffix(p, "/"):
		case read && (p == own || p == own+"/desiredstate"):
		case method == http.MethodPost && (p == own+"/report" || p == own+"/outbox"):
		default:
			t.Fatalf("cluster a admitted to %s %q", method, p)
		}
	})
}
