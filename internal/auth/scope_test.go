package auth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
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
		{"cluster pushes a fleet model", credA, http.MethodPut, "/v2/models/m/manifests/1.0.0", ErrForbidden, "writes only its own repositories, under /v2/edge/a/"},
		{"cluster pushes its own edge model", credA, http.MethodPut, "/v2/edge/a/m/manifests/1.0.0", nil, ""},
		{"cluster mounts from another cluster", credA, http.MethodPost, "/v2/edge/a/m/blobs/uploads/?mount=sha256:00&from=edge/b/m", ErrForbidden, "which it may not read"},
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
		{http.MethodPut, "/v2/models/resnet/manifests/1.0.0", false},
		// Its own edge repositories: read and write, not delete.
		{http.MethodPost, "/v2/edge/a/fmnist/blobs/uploads/", true},
		{http.MethodPost, "/v2/edge/a/fmnist/blobs/uploads", true},
		{http.MethodPatch, "/v2/edge/a/fmnist/blobs/uploads/x", true},
		{http.MethodPut, "/v2/edge/a/fmnist/blobs/uploads/x", true},
		{http.MethodPut, "/v2/edge/a/fmnist/manifests/1.0.0", true},
		{http.MethodPut, "/v2/edge/a/org/fmnist/manifests/sha256:ab", true},
		{http.MethodHead, "/v2/edge/a/fmnist/blobs/sha256:ab", true},
		{http.MethodGet, "/v2/edge/a/fmnist/manifests/1.0.0", true},
		{http.MethodGet, "/v2/edge/a/fmnist/referrers/sha256:ab", true},
		{http.MethodPut, "/v2/edge/a/fmnist/_outpost/blocksums/sha256:ab", true},
		{http.MethodDelete, "/v2/edge/a/fmnist/manifests/1.0.0", false},
		{http.MethodDelete, "/v2/edge/a/fmnist/blobs/sha256:ab", false},
		{http.MethodPost, "/v2/edge/a/blobs/uploads/", false}, // the repository edge/a is not under edge/a/
		{http.MethodPut, "/v2/edge/a/manifests/1.0.0", false},
		{http.MethodPut, "/v2/edge/a/fmnist", false},
		{http.MethodPost, "/v2/edge/a/", false},
		{http.MethodPost, "/v2/edge/a/fmnist/../../b/m/blobs/uploads/", false},
		{http.MethodPost, "/v2/edge/ab/m/blobs/uploads/", false},
		{http.MethodPost, "/v2/models/edge/a/m/blobs/uploads/", false},
		{"TRACE", "/v2/edge/a/fmnist/manifests/1.0.0", false},
		// Another cluster's edge repositories: nothing at all.
		{http.MethodPost, "/v2/edge/b/fmnist/blobs/uploads/", false},
		{http.MethodPut, "/v2/edge/b/fmnist/manifests/1.0.0", false},
		{http.MethodGet, "/v2/edge/b/fmnist/manifests/1.0.0", false},
		{http.MethodHead, "/v2/edge/b/fmnist/blobs/sha256:ab", false},
		{http.MethodGet, "/v2/edge/b/fmnist/tags/list", false},
		{http.MethodGet, "/v2/edge/", false},
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

// The refusals of registry writes name what the cluster may write.
func TestClusterMayRegistryMessages(t *testing.T) {
	for _, tt := range []struct{ method, path, want string }{
		{http.MethodPut, "/v2/models/fmnist/manifests/2.0.0", `cluster "a" may not PUT /v2/models/fmnist/manifests/2.0.0: a cluster credential writes only its own repositories, under /v2/edge/a/ (edge/a/MODEL)`},
		{http.MethodPost, "/v2/edge/b/fmnist/blobs/uploads/", `the repositories under /v2/edge/b/ hold cluster "b"'s models; its own are under /v2/edge/a/`},
		{http.MethodDelete, "/v2/edge/a/fmnist/manifests/1.0.0", "a version, once pushed, stays"},
	} {
		err := ClusterMay("a", tt.method, tt.path)
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ClusterMay(a, %s, %s) = %v, want it to say %q", tt.method, tt.path, err, tt.want)
		}
	}
}

// A cross-repository mount may take a blob only from a repository the cluster may read.
func TestClusterMayMount(t *testing.T) {
	const d = "sha256:" + "ab"
	tests := []struct {
		method, url string
		ok          bool
		want        string
	}{
		{http.MethodPost, "/v2/edge/a/m/blobs/uploads/?mount=" + d + "&from=models/fmnist", true, ""},
		{http.MethodPost, "/v2/edge/a/m/blobs/uploads/?mount=" + d + "&from=edge/a/other", true, ""},
		{http.MethodPost, "/v2/edge/a/m/blobs/uploads/?mount=" + d + "&from=edge/b/secret", false, "which it may not read"},
		{http.MethodPost, "/v2/edge/a/m/blobs/uploads/?mount=" + d + "&from=edge/a/../b/secret", false, "not a repository name"},
		{http.MethodPost, "/v2/edge/a/m/blobs/uploads/?mount=" + d + "&from=/edge/b/secret", false, "not a repository name"},
		{http.MethodPost, "/v2/edge/a/m/blobs/uploads/?mount=" + d, false, "without from"},
		{http.MethodPost, "/v2/edge/a/m/blobs/uploads/?mount=" + d + "&from=", false, "without from"},
		{http.MethodPost, "/v2/models/m/blobs/uploads/?mount=" + d + "&from=edge/a/m", false, "writes only its own repositories"},
		{http.MethodPost, "/v2/edge/a/m/blobs/uploads/?digest=" + d, true, ""},
		{http.MethodGet, "/v2/edge/a/m/tags/list?mount=x", true, ""},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		err = ClusterMayRequest("a", tt.method, u)
		if (err == nil) != tt.ok || err != nil && (!errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("ClusterMayRequest(a, %s, %s) = %v, want ok=%v saying %q", tt.method, tt.url, err, tt.ok, tt.want)
		}
	}
}

func TestRegistryRepository(t *testing.T) {
	for p, want := range map[string]string{
		"/v2/edge/a/m/blobs/uploads/":            "edge/a/m",
		"/v2/edge/a/m/blobs/uploads/id":          "edge/a/m",
		"/v2/edge/a/m/blobs/sha256:ab":           "edge/a/m",
		"/v2/a/b/c/manifests/1.0.0":              "a/b/c",
		"/v2/edge/a/m/tags/list":                 "edge/a/m",
		"/v2/edge/a/m/referrers/sha256:ab":       "edge/a/m",
		"/v2/edge/a/m/_outpost/blocksums/sha:ab": "edge/a/m",
		"/v2/blobs/uploads/":                     "",
		"/v2/manifests/1":                        "",
		"/v2/_catalog":                           "",
		"/v2/":                                   "",
		"/v3/a/manifests/1":                      "",
	} {
		got, ok := registryRepository(p)
		if got != want || ok != (want != "") {
			t.Errorf("registryRepository(%q) = %q, %v; want %q", p, got, ok, want)
		}
	}
}

// FuzzClusterMay checks that whatever the path, a cluster is admitted only to registry
// reads (not of other clusters' edge repositories), writes of its own edge repositories,
// and its own four API paths.
func FuzzClusterMay(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/x/../../apis", v1alpha1.APIPath + "/clusters/a/report", v1alpha1.APIPath + "/clusters/a/desiredstate",
		v1alpha1.APIPath + "/clusters/a", v1alpha1.APIPath + "/clusters/a//report", "/v2/%2e%2e/", v1alpha1.APIPath + "/clusters/a/",
		v1alpha1.APIPath + "/clusters/a/outbox", v1alpha1.APIPath + "/clusters/b/outbox"} {
		f.Add("GET", s)
		f.Add("POST", s)
	}
	f.Add("PUT", "/v2/edge/a/m/manifests/1.0.0")
	f.Add("POST", "/v2/edge/a/blobs/uploads/")
	f.Add("GET", "/v2/edge/b/m/tags/list")
	f.Fuzz(func(t *testing.T, method, p string) {
		if ClusterMay("a", method, p) != nil {
			return
		}
		read := method == http.MethodGet || method == http.MethodHead
		own := v1alpha1.APIPath + "/clusters/a"
		if strings.HasPrefix(p, "/v2/edge/") && !strings.HasPrefix(p, "/v2/edge/a/") {
			t.Fatalf("cluster a admitted to %s %q, another cluster's", method, p)
		}
		write := method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
		switch {
		case read && (p == "/v2" || strings.HasPrefix(p, "/v2/")) && path.Clean(p) == strings.TrimSuffix(p, "/"):
		case write && strings.HasPrefix(p, "/v2/edge/a/") && path.Clean(p) == strings.TrimSuffix(p, "/"):
			if repo, ok := registryRepository(p); !ok || !strings.HasPrefix(repo, "edge/a/") {
				t.Fatalf("cluster a admitted to write %q, of repository %q", p, repo)
			}
		case read && (p == own || p == own+"/desiredstate"):
		case method == http.MethodPost && (p == own+"/report" || p == own+"/outbox"):
		default:
			t.Fatalf("cluster a admitted to %s %q", method, p)
		}
	})
}
