package hubclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
)

// seen is what the test hub saw of one request.
type seen struct {
	method, path, query, auth, contentType string
	body                                   []byte
}

// recorder is a handler that records requests and answers with respond.
type recorder struct {
	mu      sync.Mutex
	log     []seen
	respond func(w http.ResponseWriter, r *http.Request, n int)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.log = append(rec.log, seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), b})
	n := len(rec.log)
	rec.mu.Unlock()
	rec.respond(w, r, n)
}

func (rec *recorder) requests() []seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]seen(nil), rec.log...)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

const base = "/apis/ml.outpost.dev/v1alpha1" // written out: the path the hub serves

// Each call sends the method, path, query, token and body the hub's API
// expects, over a real loopback server.
func TestCallsSendWhatTheHubExpects(t *testing.T) {
	rec := &recorder{respond: func(w http.ResponseWriter, r *http.Request, _ int) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/join"):
			writeJSON(w, 200, v1alpha1.JoinResponse{Cluster: "edge-1", Credential: "cred"})
		case strings.HasSuffix(r.URL.Path, "/desiredstate"):
			writeJSON(w, 200, v1alpha1.DesiredState{Cluster: "edge-1", Revision: 7})
		case strings.HasSuffix(r.URL.Path, "/report"):
			writeJSON(w, 200, v1alpha1.ReportResponse{Revision: 9, DesiredStateRevision: 7})
		case strings.HasSuffix(r.URL.Path, "/jointokens") && r.Method == http.MethodPost:
			writeJSON(w, 201, v1alpha1.JoinToken{ID: "id1", Token: "opj_x"})
		case r.URL.Path == "/metrics":
			io.WriteString(w, "# metrics\n")
		case strings.HasSuffix(r.URL.Path, "/jointokens"):
			writeJSON(w, 200, v1alpha1.JoinTokenList{Items: []v1alpha1.JoinToken{{ID: "id1"}}})
		default:
			writeJSON(w, 200, map[string]any{})
		}
	}}
	ts := httptest.NewServer(rec)
	defer ts.Close()
	c, err := New(ts.URL+"/", Options{Token: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	d := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "fashion"}}
	v1alpha1.SetTypeMeta(d)
	var l v1alpha1.ClusterList
	steps := []struct {
		name string
		call func() error
		want seen // body compared only when set
	}{
		{"get", func() error { return c.Get(ctx, "clusters", "edge-1", &v1alpha1.Cluster{}) },
			seen{method: "GET", path: base + "/clusters/edge-1", auth: "Bearer admin"}},
		{"list", func() error { return c.List(ctx, "clusters", "region=eu,tier!=gpu", &l) },
			seen{method: "GET", path: base + "/clusters", query: "labelSelector=region%3Deu%2Ctier%21%3Dgpu", auth: "Bearer admin"}},
		{"list all", func() error { return c.List(ctx, "modeldeployments", "", &l) },
			seen{method: "GET", path: base + "/modeldeployments", auth: "Bearer admin"}},
		{"apply", func() error { return c.Apply(ctx, d, nil) },
			seen{method: "PUT", path: base + "/modeldeployments/fashion", auth: "Bearer admin", contentType: "application/json",
				body: []byte(`"kind":"ModelDeployment"`)}},
		{"delete", func() error { return c.Delete(ctx, "clusters", "a/b") },
			seen{method: "DELETE", path: base + "/clusters/a%2Fb", auth: "Bearer admin"}},
		{"create token", func() error { _, err := c.CreateJoinToken(ctx, 1500*time.Millisecond, "north"); return err },
			seen{method: "POST", path: base + "/jointokens", auth: "Bearer admin", contentType: "application/json",
				body: []byte(`"ttlSeconds":2,"description":"north"`)}},
		{"list tokens", func() error { _, err := c.JoinTokens(ctx); return err },
			seen{method: "GET", path: base + "/jointokens", auth: "Bearer admin"}},
		{"delete token", func() error { return c.DeleteJoinToken(ctx, "id1") },
			seen{method: "DELETE", path: base + "/jointokens/id1", auth: "Bearer admin"}},
		{"join sends no token", func() error { _, err := c.Join(ctx, "opj_t", "edge-1", map[string]string{"r": "eu"}); return err },
			seen{method: "POST", path: base + "/join", contentType: "application/json",
				body: []byte(`"token":"opj_t","cluster":"edge-1","labels":{"r":"eu"}`)}},
		{"desired state", func() error { _, err := c.DesiredState(ctx, "edge-1", 5, 30*time.Second); return err },
			seen{method: "GET", path: base + "/clusters/edge-1/desiredstate", query: "after=5&timeoutSeconds=30", auth: "Bearer admin"}},
		{"report", func() error {
			_, err := c.Report(ctx, &v1alpha1.AgentReport{Cluster: "edge-1", AppliedRevision: 7})
			return err
		},
			seen{method: "POST", path: base + "/clusters/edge-1/report", auth: "Bearer admin", contentType: "application/json",
				body: []byte(`"cluster":"edge-1","appliedRevision":7`)}},
		{"drift windows", func() error { _, err := c.DriftWindows(ctx, "fashion", "edge-1", 20); return err },
			seen{method: "GET", path: base + "/modeldeployments/fashion/drift", query: "cluster=edge-1&limit=20", auth: "Bearer admin"}},
		{"drift windows of every cluster", func() error { _, err := c.DriftWindows(ctx, "fashion", "", 0); return err },
			seen{method: "GET", path: base + "/modeldeployments/fashion/drift", auth: "Bearer admin"}},
		{"metrics, outside the API, kept as text", func() error {
			b, err := c.Metrics(ctx)
			if err == nil && string(b) != "# metrics\n" {
				err = fmt.Errorf("metrics %q", b)
			}
			return err
		},
			seen{method: "GET", path: "/metrics", auth: "Bearer admin"}},
	}
	for i, s := range steps {
		if err := s.call(); err != nil {
			t.Errorf("%s: %v", s.name, err)
			continue
		}
		got := rec.requests()
		if len(got) != i+1 {
			t.Fatalf("%s: %d requests in all, want %d", s.name, len(got), i+1)
		}
		g := got[i]
		if g.method != s.want.method || g.path != s.want.path || g.query != s.want.query || g.auth != s.want.auth || g.contentType != s.want.contentType {
			t.Errorf("%s: sent %s %s?%s auth %q type %q, want %s %s?%s auth %q type %q", s.name,
				g.method, g.path, g.query, g.auth, g.contentType, s.want.method, s.want.path, s.want.query, s.want.auth, s.want.contentType)
		}
		if s.want.body != nil && !strings.Contains(string(g.body), string(s.want.body)) {
			t.Errorf("%s: body %s lacks %s", s.name, g.body, s.want.body)
		}
	}
}

func TestAnswersDecoded(t *testing.T) {
	tests := []struct {
		name      string
		respond   func(w http.ResponseWriter)
		wantCode  int
		wantMsg   string
		wantRsn   metav1.StatusReason
		wantAfter time.Duration
	}{
		{"status", func(w http.ResponseWriter) {
			writeJSON(w, 404, metav1.Status{Status: "Failure", Reason: metav1.StatusReasonNotFound, Message: `cluster "x" not found`, Code: 404})
		}, 404, `cluster "x" not found`, metav1.StatusReasonNotFound, 0},
		{"not a status", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "  upstream gone \n")
		}, 502, "hub answered 502 Bad Gateway: upstream gone", "", 0},
		{"empty body", func(w http.ResponseWriter) { w.WriteHeader(http.StatusForbidden) }, 403, "hub answered 403 Forbidden", "", 0},
		{"long body cut", func(w http.ResponseWriter) {
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, strings.Repeat("x", 2000))
		}, 500, "hub answered 500 Internal Server Error: " + strings.Repeat("x", 512) + "...", "", 0},
		{"retry-after seconds", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "7")
			writeJSON(w, 429, metav1.Status{Message: "slow down", Reason: metav1.StatusReasonTooManyRequests})
		}, 429, "slow down", metav1.StatusReasonTooManyRequests, 7 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { tt.respond(w) }))
			defer ts.Close()
			c, err := New(ts.URL, Options{Attempts: 1})
			if err != nil {
				t.Fatal(err)
			}
			err = c.Get(t.Context(), "clusters", "x", &v1alpha1.Cluster{})
			e, ok := errors.AsType[*Error](err)
			if !ok {
				t.Fatalf("error %v (%T), want *Error", err, err)
			}
			if e.Code != tt.wantCode || e.Message != tt.wantMsg || e.Reason != tt.wantRsn || e.RetryAfter != tt.wantAfter {
				t.Errorf("got %+v, want code %d message %q reason %q retry after %v", *e, tt.wantCode, tt.wantMsg, tt.wantRsn, tt.wantAfter)
			}
			if err.Error() != tt.wantMsg || Code(err) != tt.wantCode || RetryAfter(err) != tt.wantAfter {
				t.Errorf("Error() %q Code %d RetryAfter %v", err, Code(err), RetryAfter(err))
			}
		})
	}
}

// CheckManifest reads the registry's answer for a manifest: nothing when it
// exists, its OCI error message when not.
func TestCheckManifest(t *testing.T) {
	rec := &recorder{respond: func(w http.ResponseWriter, r *http.Request, n int) {
		if strings.HasSuffix(r.URL.Path, "/1.0.0") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest 1.0.0 unknown to repository models/m: the tag was deleted"}]}`)
			return
		}
		io.WriteString(w, "{}")
	}}
	ts := httptest.NewServer(rec)
	defer ts.Close()
	c, err := New(ts.URL, Options{Token: "opt_x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckManifest(t.Context(), "models/m", "1.1.0"); err != nil {
		t.Errorf("existing manifest: %v", err)
	}
	err = c.CheckManifest(t.Context(), "models/m", "1.0.0")
	if Code(err) != http.StatusNotFound || err.Error() != "MANIFEST_UNKNOWN: manifest 1.0.0 unknown to repository models/m: the tag was deleted" {
		t.Errorf("missing manifest: %v (code %d)", err, Code(err))
	}
	if got := rec.requests(); len(got) != 2 || got[1].method != http.MethodGet || got[1].path != "/v2/models/m/manifests/1.0.0" || got[1].auth != "Bearer opt_x" {
		t.Errorf("requests %+v", got)
	}
}

func TestNotModifiedIsNoDesiredState(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotModified) }))
	defer ts.Close()
	c, _ := New(ts.URL, Options{})
	ds, err := c.DesiredState(t.Context(), "edge-1", 3, time.Second)
	if err != nil || ds != nil {
		t.Errorf("304: got %v, %v; want nil, nil", ds, err)
	}
}

func TestBadBase(t *testing.T) {
	for _, b := range []string{"", "hub:8443", "ftp://hub", "https://", "://x"} {
		if _, err := New(b, Options{}); err == nil || !strings.Contains(err.Error(), "want https://HOST:PORT") {
			t.Errorf("New(%q): %v, want an error naming the form", b, err)
		}
	}
}

func TestResponseBounded(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]string{"pad": strings.Repeat("x", 4096)})
	}))
	defer ts.Close()
	c, _ := New(ts.URL, Options{MaxResponseBytes: 1024})
	var out map[string]string
	if err := c.Get(t.Context(), "clusters", "x", &out); err == nil || !strings.Contains(err.Error(), "decode hub answer") {
		t.Errorf("an answer over MaxResponseBytes: %v, want a decode error", err)
	}
}

// handlerTransport serves requests with a handler in this process, so that
// retries can run on a synctest bubble's clock.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	if r.Body == nil {
		r.Body = http.NoBody
	}
	w := httptest.NewRecorder()
	t.h.ServeHTTP(w, r)
	return w.Result(), nil
}

// failing is a transport that cannot reach the hub.
type failing struct{ n atomic.Int64 }

func (f *failing) RoundTrip(*http.Request) (*http.Response, error) {
	f.n.Add(1)
	return nil, errors.New("connection refused")
}

func TestRetries(t *testing.T) {
	busy := func(after string) func(w http.ResponseWriter, r *http.Request, n int) {
		return func(w http.ResponseWriter, r *http.Request, n int) {
			if n < 3 {
				if after != "" {
					w.Header().Set("Retry-After", after)
				}
				writeJSON(w, http.StatusServiceUnavailable, metav1.Status{Message: "busy"})
				return
			}
			writeJSON(w, 200, v1alpha1.Cluster{})
		}
	}
	tests := []struct {
		name     string
		method   string
		respond  func(w http.ResponseWriter, r *http.Request, n int)
		attempts int
		wantN    int
		wantErr  string
		minWait  time.Duration // clock time the call took at least
		maxWait  time.Duration
	}{
		{"GET retried through 503s", http.MethodGet, busy(""), 0, 3, "", 250 * time.Millisecond, time.Second},
		{"Retry-After honoured", http.MethodGet, busy("2"), 0, 3, "", 4 * time.Second, 6 * time.Second},
		{"Retry-After capped at Backoff.Max", http.MethodGet, busy("3600"), 0, 3, "", 10 * time.Second, 15 * time.Second},
		{"attempts run out", http.MethodGet, busy(""), 2, 2, "busy", 0, time.Second},
		{"one attempt", http.MethodGet, busy(""), 1, 1, "busy", 0, 0},
		{"POST not retried", http.MethodPost, busy(""), 0, 1, "busy", 0, 0},
		{"4xx not retried", http.MethodGet, func(w http.ResponseWriter, r *http.Request, n int) {
			writeJSON(w, http.StatusUnauthorized, metav1.Status{Message: "bad token"})
		}, 0, 1, "bad token", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &recorder{respond: tt.respond}
				c, err := New("https://hub.test", Options{HTTPClient: &http.Client{Transport: handlerTransport{rec}}, Attempts: tt.attempts})
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				_, err = c.Do(t.Context(), tt.method, "clusters/x", nil, nil, nil)
				took := time.Since(start)
				if n := len(rec.requests()); n != tt.wantN {
					t.Errorf("%d requests, want %d", n, tt.wantN)
				}
				if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
					t.Errorf("err %v, want %q", err, tt.wantErr)
				}
				if took < tt.minWait || took > tt.maxWait {
					t.Errorf("took %v of clock time, want [%v, %v]", took, tt.minWait, tt.maxWait)
				}
			})
		})
	}
}

func TestRetryDelay(t *testing.T) {
	b := clock.Backoff{Base: time.Second, Max: time.Minute}
	busy := func(after time.Duration) error {
		return fmt.Errorf("poll: %w", &Error{Code: http.StatusServiceUnavailable, Message: "busy", RetryAfter: after})
	}
	tests := []struct {
		name    string
		err     error
		attempt int
		u       float64
		want    time.Duration
	}{
		{"no answer: the backoff", errors.New("reach hub: refused"), 3, 0, 2 * time.Second},
		{"no Retry-After: the backoff", busy(0), 3, 0.5, 3 * time.Second},
		{"Retry-After longer than the backoff", busy(10 * time.Second), 1, 0, 10 * time.Second},
		{"Retry-After lengthened by up to half", busy(10 * time.Second), 1, 0.5, 12500 * time.Millisecond},
		{"Retry-After shorter than the backoff", busy(time.Second), 6, 0, 16 * time.Second},
		{"Retry-After capped at Max", busy(time.Hour), 1, 0, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RetryDelay(tt.err, b, tt.attempt, tt.u); got != tt.want {
				t.Errorf("RetryDelay = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUnreachableRetriedThenWrapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &failing{}
		c, _ := New("https://hub.test", Options{HTTPClient: &http.Client{Transport: f}})
		err := c.Get(t.Context(), "clusters", "x", nil)
		if err == nil || !strings.HasPrefix(err.Error(), "reach hub: ") || Code(err) != 0 {
			t.Errorf("err %v, want reach hub: ... with no code", err)
		}
		if f.n.Load() != DefaultAttempts {
			t.Errorf("%d attempts, want %d", f.n.Load(), DefaultAttempts)
		}
	})
}

// A retry wait ends with the caller's context.
func TestRetryStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &recorder{respond: func(w http.ResponseWriter, r *http.Request, n int) {
			w.Header().Set("Retry-After", "3")
			writeJSON(w, http.StatusServiceUnavailable, metav1.Status{Message: "busy"})
		}}
		c, _ := New("https://hub.test", Options{HTTPClient: &http.Client{Transport: handlerTransport{rec}}, Attempts: 10})
		// The second attempt comes 3 to 4.5 s after the first (Retry-After
		// and up to half again at random), the third no sooner than 6 s.
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		start := time.Now()
		err := c.Get(ctx, "clusters", "x", nil)
		if took := time.Since(start); took != 5*time.Second || err == nil {
			t.Errorf("took %v, err %v: want the 5s deadline and the last error", took, err)
		}
		if n := len(rec.requests()); n != 2 {
			t.Errorf("%d requests before the deadline, want 2 (0s and 3-4.5s)", n)
		}
	})
}
