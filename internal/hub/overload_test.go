package hub

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"outpost.dev/outpost/internal/store"
	"outpost.dev/outpost/internal/store/storetest"
)

// TestBusyStoreAnswersUnavailable checks that a hub whose store stays
// locked beyond its busy timeout answers 503 with Retry-After, never 500,
// to agents with valid credentials, and serves them again once the lock
// is gone.
func TestBusyStoreAnswersUnavailable(t *testing.T) {
	e := newAgentEnv(t, nil, store.WithBusyTimeout(50*time.Millisecond))
	jt := e.createToken(3600, "")
	used := e.mustJoin(jt.Token, "a", nil)
	fresh := e.mustJoin(jt.Token, "b", nil)
	ds := "/clusters/a/desiredstate?timeoutSeconds=0"
	if r := e.do(http.MethodGet, ds, used, "", nil); r.code != http.StatusOK {
		t.Fatalf("desired state before the lock = %d %s", r.code, r.body)
	}
	report := []byte(`{"kind":"AgentReport","cluster":"a","status":{}}`)
	tests := []struct {
		name, method, path, token string
		body                      []byte
	}{
		{"credential not seen before", http.MethodGet, "/clusters/b/desiredstate?timeoutSeconds=0", fresh, nil},
		{"desired state", http.MethodGet, ds, used, nil},
		{"report", http.MethodPost, "/clusters/a/report", used, report},
		{"admin read", http.MethodGet, "/clusters/a", e.admin, nil},
	}
	release := storetest.Lock(t, e.db.SQL(), e.path)
	for _, tt := range tests {
		t.Run("locked/"+tt.name, func(t *testing.T) {
			r := e.do(tt.method, tt.path, tt.token, "application/json", tt.body)
			if r.code != http.StatusServiceUnavailable {
				t.Fatalf("%s %s = %d %s, want 503", tt.method, tt.path, r.code, r.body)
			}
			if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
				t.Errorf("Retry-After = %q, want a number of seconds", r.header.Get("Retry-After"))
			}
		})
	}
	release()
	for _, tt := range tests {
		t.Run("released/"+tt.name, func(t *testing.T) {
			if r := e.do(tt.method, tt.path, tt.token, "application/json", tt.body); r.code != http.StatusOK {
				t.Errorf("%s %s = %d %s, want 200", tt.method, tt.path, r.code, r.body)
			}
		})
	}
}
