// Package hubclient is the one client of a hub's resource API and agent
// protocol (under v1alpha1.APIPath). The CLI, the edge agent and the
// benchmarks all talk to a hub through it: it owns the paths, the bearer
// token, TLS and the HTTP/1.1 transport, the decoding of the hub's error
// answers, and the retries of idempotent requests. Model bytes travel over
// the OCI distribution API with the same HTTP client (HTTPClient).
package hubclient

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
)

// Defaults of Options.
const (
	// DefaultAttempts is how many times an idempotent request is tried.
	DefaultAttempts = 3
	// DefaultMaxResponseBytes bounds what is read of one answer.
	DefaultMaxResponseBytes = 64 << 20
)

// DefaultBackoff is the wait between attempts when Options.Backoff is zero.
var DefaultBackoff = clock.Backoff{Base: 250 * time.Millisecond, Max: 5 * time.Second}

// Options configures a Client.
type Options struct {
	// Token is the bearer token sent with every request that needs one: an
	// admin token, or a cluster's credential.
	Token string
	// TLS configures connections to an https hub; nil means the system roots.
	TLS *tls.Config
	// HTTPClient, if set, is used instead of NewHTTPClient(TLS), for
	// example to share one transport among many clients.
	HTTPClient *http.Client
	// Attempts is how many times a GET, PUT or DELETE is tried when the
	// hub cannot be reached or answers 429, 502, 503 or 504; 0 means
	// DefaultAttempts, 1 tries once (for callers that retry on their own).
	Attempts int
	// Backoff is the wait between attempts; a longer Retry-After from the
	// hub is honoured up to Backoff.Max (see RetryDelay). Zero means
	// DefaultBackoff.
	Backoff clock.Backoff
	// Clock times the waits between attempts; nil means the real clock.
	Clock clock.Clock
	// MaxResponseBytes bounds what is read of one answer; 0 means
	// DefaultMaxResponseBytes.
	MaxResponseBytes int64
	// RefusedWait, if positive, is how long any request (the OCI client's
	// through HTTPClient too) is sent again while the hub's address refuses
	// connections: a hub started a moment before, or restarting (see
	// RetryRefused). Such refusals are then not retried as Attempts again.
	RefusedWait time.Duration
}

// Client talks to one hub. It is safe for concurrent use.
type Client struct {
	base *url.URL
	http *http.Client
	opts Options

	mu    sync.Mutex
	token string
}

// New returns a client of the hub at base, such as https://hub.example:8443.
func New(base string, opts Options) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("hub address %q: want https://HOST:PORT", base)
	}
	u.Path, u.RawQuery, u.Fragment = strings.TrimRight(u.Path, "/"), "", ""
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultAttempts
	}
	if opts.Backoff.Base <= 0 {
		opts.Backoff = DefaultBackoff
	}
	opts.Clock = clock.OrReal(opts.Clock)
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = NewHTTPClient(opts.TLS)
	}
	if opts.RefusedWait > 0 {
		wrapped := *hc
		rt := hc.Transport
		if rt == nil {
			rt = http.DefaultTransport
		}
		wrapped.Transport = RetryRefused(rt, opts.Clock, opts.RefusedWait)
		hc = &wrapped
	}
	return &Client{base: u, http: hc, opts: opts, token: opts.Token}, nil
}

// NewHTTPClient returns the HTTP client for a hub, trusting tlsConfig's
// roots. It speaks HTTP/1.1: bulk blob transfers run markedly faster than
// over Go's HTTP/2 (no per-stream flow-control windows, larger writes).
func NewHTTPClient(tlsConfig *tls.Config) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig
	tr.MaxIdleConnsPerHost = 16
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.WriteBufferSize, tr.ReadBufferSize = 256<<10, 256<<10
	tr.ResponseHeaderTimeout = 5 * time.Minute
	return &http.Client{Transport: tr}
}

// BaseURL returns the hub's base URL.
func (c *Client) BaseURL() *url.URL {
	u := *c.base
	return &u
}

// Host is the hub's host:port, as OCI references name a registry.
func (c *Client) Host() string { return c.base.Host }

// PlainHTTP reports whether the hub is reached without TLS.
func (c *Client) PlainHTTP() bool { return c.base.Scheme == "http" }

// HTTPClient returns the HTTP client the Client sends requests with, for
// the OCI distribution API of the same hub.
func (c *Client) HTTPClient() *http.Client { return c.http }

// SetToken replaces the bearer token, such as after an agent joined.
func (c *Client) SetToken(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token = tok
}

// Token returns the bearer token.
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// Error is an error answer from the hub.
type Error struct {
	// Code is the HTTP status code.
	Code int
	// Reason is the reason of the hub's Status answer, if it sent one.
	Reason metav1.StatusReason
	// Message is the hub's message, or what it answered when that was not
	// a Status.
	Message string
	// RetryAfter is how long the hub asked the client to wait (Retry-After).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// Code returns the HTTP status code of the hub's answer that err wraps, or
// 0 when err is not an answer from the hub.
func Code(err error) int {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return 0
}

// RetryAfter returns how long the hub's answer that err wraps asked the
// client to wait, or 0.
func RetryAfter(err error) time.Duration {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.RetryAfter
	}
	return 0
}

// RetryDelay is how long to wait before trying again after err, the
// attempt-th failure in a row (1 for the first), given u drawn uniformly
// from [0, 1): b's delay for the attempt, or, when the hub's answer asked
// for longer (Retry-After, see RetryAfter), that time capped at b.Max and
// lengthened by up to half at random, so that a fleet told the same time
// does not come back all at once.
func RetryDelay(err error, b clock.Backoff, attempt int, u float64) time.Duration {
	ra := min(RetryAfter(err), b.Max)
	return max(b.Delay(attempt, u), ra+time.Duration(u*float64(ra/2)))
}

// Do sends a request to path under v1alpha1.APIPath with body, if not nil,
// as JSON, and decodes a JSON answer into out, if not nil. It returns the
// status code; an answer of 300 or more other than 304 Not Modified is an
// *Error. GET, PUT and DELETE are retried as Options say.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) (int, error) {
	return c.doJSON(ctx, method, path, query, body, out, true)
}

// doJSON is Do, sending the bearer token only when auth is true.
func (c *Client) doJSON(ctx context.Context, method, path string, query url.Values, body, out any, auth bool) (int, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return 0, fmt.Errorf("encode request: %w", err)
		}
	}
	return c.do(ctx, request{method: method, path: path, query: query, payload: payload, auth: auth}, out)
}

// request is one request to the hub's API.
type request struct {
	method, path string
	query        url.Values
	payload      []byte // JSON, encoded as encoding says
	encoding     string // Content-Encoding of payload, "" for none
	auth         bool   // send the bearer token
}

// do sends req, retrying as Options say, and decodes a JSON answer into
// out, or keeps it as it is when out is a *[]byte.
func (c *Client) do(ctx context.Context, req request, out any) (int, error) {
	u := c.base.JoinPath(v1alpha1.APIPath, req.path)
	u.RawQuery = req.query.Encode()
	attempts := 1
	if req.method == http.MethodGet || req.method == http.MethodPut || req.method == http.MethodDelete {
		attempts = c.opts.Attempts
	}
	for attempt := 1; ; attempt++ {
		code, err := c.send(ctx, u.String(), req, out)
		if err == nil || attempt >= attempts || !retryable(ctx, code, err) ||
			c.opts.RefusedWait > 0 && errors.Is(err, syscall.ECONNREFUSED) {
			return code, err
		}
		if !clock.Sleep(ctx, c.opts.Clock, RetryDelay(err, c.opts.Backoff, attempt, rand.Float64())) {
			return code, err
		}
	}
}

// retryable reports whether a request that failed with code and err may
// succeed if sent again.
func retryable(ctx context.Context, code int, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	switch code {
	case 0: // the hub was not reached, or its answer was cut
		return true
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// send sends one request.
func (c *Client) send(ctx context.Context, u string, r request, out any) (int, error) {
	var rd io.Reader
	if r.payload != nil {
		rd = bytes.NewReader(r.payload)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/json")
	if r.payload != nil {
		req.Header.Set("Content-Type", "application/json")
		if r.encoding != "" {
			req.Header.Set("Content-Encoding", r.encoding)
		}
	}
	if tok := c.Token(); r.auth && tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reach hub: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.opts.MaxResponseBytes))
	if err != nil {
		return 0, fmt.Errorf("read hub answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotModified:
		return resp.StatusCode, nil
	case resp.StatusCode >= 300:
		return resp.StatusCode, c.answerError(resp, b)
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = b
		return resp.StatusCode, nil
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode hub answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// answerError is the *Error of an answer of 300 or more with body b.
func (c *Client) answerError(resp *http.Response, b []byte) *Error {
	e := &Error{Code: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"), c.opts.Clock.Now())}
	var st metav1.Status
	if json.Unmarshal(b, &st) == nil && st.Message != "" {
		e.Reason, e.Message = st.Reason, st.Message
		return e
	}
	// The registry answers with the OCI distribution spec's error document.
	var oci struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &oci) == nil && len(oci.Errors) > 0 {
		msgs := make([]string, 0, len(oci.Errors))
		for _, oe := range oci.Errors {
			msgs = append(msgs, strings.TrimSpace(oe.Code+": "+oe.Message))
		}
		e.Message = strings.Join(msgs, "; ")
		return e
	}
	text := strings.TrimSpace(string(b))
	if len(text) > 512 {
		text = text[:512] + "..."
	}
	e.Message = "hub answered " + resp.Status
	if text != "" {
		e.Message += ": " + text
	}
	return e
}

// retryAfter parses a Retry-After header: seconds, or an HTTP date after now.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		return time.Duration(max(s, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
