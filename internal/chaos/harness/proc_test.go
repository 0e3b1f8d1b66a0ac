package harness

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

func TestGoroutines(t *testing.T) {
	tests := []struct {
		name string
		body string
		want int
		err  string
	}{
		{"a profile", "goroutine profile: total 17\n3 @ 0x1 0x2\n", 17, ""},
		{"something else", "404 page not found\n", 0, "starts with"},
		{"no line", "goroutine profile: total 3", 0, "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/debug/pprof/goroutine" || r.URL.Query().Get("debug") != "1" {
					http.NotFound(w, r)
					return
				}
				fmt.Fprint(w, tt.body)
			}))
			defer srv.Close()
			got, err := goroutines(t.Context(), srv.Client(), strings.TrimPrefix(srv.URL, "http://"))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("goroutines = %d, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("goroutines = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

func TestThreads(t *testing.T) {
	n, err := threads(os.Getpid())
	if err != nil {
		t.Skip("no /proc:", err)
	}
	if n < 1 {
		t.Errorf("threads = %d", n)
	}
}
