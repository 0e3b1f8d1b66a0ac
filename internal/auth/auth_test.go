package auth

import (
	"errors"
	"net/http"
	"path/filepath"
	"testing"
)

func TestAuthorize(t *testing.T) {
	tok, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "admin.sha256")
	if err := WriteHashFile(path, tok); err != nil {
		t.Fatal(err)
	}
	h, err := ReadHashFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(h)
	tests := []struct {
		name   string
		header func(r *http.Request)
		want   error
	}{
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }, nil},
		{"basic", func(r *http.Request) { r.SetBasicAuth("anyone", tok) }, nil},
		{"none", func(r *http.Request) {}, ErrUnauthenticated},
		{"wrong bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok+"x") }, ErrUnauthenticated},
		{"wrong basic", func(r *http.Request) { r.SetBasicAuth("anyone", "nope") }, ErrUnauthenticated},
		{"garbage basic", func(r *http.Request) { r.Header.Set("Authorization", "Basic !!!") }, ErrUnauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "https://hub/v2/", nil)
			tt.header(r)
			for _, write := range []bool{false, true} {
				err := a.Authorize(r, write)
				if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
					t.Errorf("Authorize(write=%v) = %v, want %v", write, err, tt.want)
				}
			}
		})
	}
}

func TestTokensAreUnique(t *testing.T) {
	a, _ := NewToken()
	b, _ := NewToken()
	if a == b || len(a) < 40 {
		t.Fatalf("tokens %q %q", a, b)
	}
}
