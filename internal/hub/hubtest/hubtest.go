// Package hubtest runs a real hub (store, registry, model index, resource
// API, join, reports and outbox) over plain HTTP on an in-memory network,
// for the tests of the packages that talk to a hub: the agent and what
// runs beside it. Its connections are net.Pipe pairs, so a goroutine
// blocked on one is durably blocked and a testing/synctest bubble can
// advance its clock: create the Hub inside the bubble, and the hub, its
// clients and the agents all run on the bubble's clock, minutes of
// partition in milliseconds.
package hubtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/auth"
	"outpost.dev/outpost/internal/hub"
	"outpost.dev/outpost/internal/models"
	"outpost.dev/outpost/internal/registry"
	"outpost.dev/outpost/internal/store"
)

// URL is the hub's address on the in-memory network.
const URL = "http://hub.test"

// Hub is a hub served on an in-memory network. Its zero value is not
// usable: create it with New.
type Hub struct {
	t testing.TB
	// Admin is the admin token.
	Admin string
	// Server is the hub.
	Server *hub.Server
	// Client reaches the hub over the in-memory network.
	Client *http.Client
	// Served counts the bytes of GET /v2/*/blobs/* responses.
	Served atomic.Int64
	// Blobs, when set, may answer a GET of a blob instead of the registry:
	// it returns false to leave the request to the registry.
	Blobs atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
	// Lose, while positive, is how many answers to outbox batches to lose
	// after the hub applied them (the connection drops instead).
	Lose atomic.Int64
	// OnRequest, when set, sees every request before the hub serves it.
	OnRequest atomic.Pointer[func(r *http.Request)]

	hs     *http.Server
	ln     *pipeListener
	connMu sync.Mutex
	conns  map[net.Conn]bool // the server's open connections
}

// New starts a hub on the in-memory network; configure, if given, may
// change its Config. It stops when the test ends.
func New(t testing.TB, configure ...func(*hub.Config)) *Hub {
	t.Helper()
	srv, admin := Build(t, configure...)
	h := &Hub{t: t, Admin: admin, Server: srv, conns: map[net.Conn]bool{}}
	handler := srv.Handler()
	h.hs = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f := h.OnRequest.Load(); f != nil {
			(*f)(r)
		}
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v2/") && strings.Contains(r.URL.Path, "/blobs/") {
			w = &countingWriter{ResponseWriter: w, n: &h.Served}
			if f := h.Blobs.Load(); f != nil && (*f)(w, r) {
				return
			}
		}
		if strings.HasSuffix(r.URL.Path, "/outbox") && h.Lose.Add(-1) >= 0 {
			handler.ServeHTTP(httptest.NewRecorder(), r)
			panic(http.ErrAbortHandler) // the hub applied the batch; its answer is lost
		}
		handler.ServeHTTP(w, r)
	})}
	ln := newPipeListener()
	h.ln = ln
	h.hs.ConnState = func(c net.Conn, s http.ConnState) {
		h.connMu.Lock()
		defer h.connMu.Unlock()
		if s == http.StateNew {
			h.conns[c] = true
		} else if s == http.StateClosed || s == http.StateHijacked {
			delete(h.conns, c)
		}
	}
	go func() { _ = h.hs.Serve(ln) }()
	tr := &http.Transport{DialContext: ln.dial}
	h.Client = &http.Client{Transport: tr}
	t.Cleanup(func() {
		h.Close()
		tr.CloseIdleConnections()
	})
	return h
}

// Build makes a hub (a SQLite store, the registry with the hub's tag
// policy, the model index, an admin token) in the test's temporary folder
// and returns it with its admin token, for a test to serve as it likes
// (New serves it on the in-memory network). configure may change its
// Config.
func Build(t testing.TB, configure ...func(*hub.Config)) (*hub.Server, string) {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	db, err := store.Open(ctx, filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	admin, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	authn := auth.NewAuthenticator(auth.Hash(admin), auth.WithClusterCredentials(db))
	log := slog.New(slog.DiscardHandler)
	var srv *hub.Server
	var reg *registry.Registry
	reg, err = registry.New(ctx, registry.Options{
		Root: filepath.Join(dir, "oci"), DB: db.SQL(), Authorize: authn.Authorize, CheckTag: models.CheckTag, Logger: log,
		OnChange: func(ctx context.Context, ev registry.Event) {
			if _, err := models.WriteWeightDeltas(ctx, reg, ev); err != nil {
				log.Warn("weight deltas not attached", "repo", ev.Repo, "tag", ev.Tag, "err", err)
			}
			if srv != nil && models.Affects(ev) {
				_ = srv.ModelsChanged(ctx)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, key, err := artifact.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := hub.Config{DB: db, Registry: reg, Models: models.NewIndex(reg, nil), Authorize: authn.Authorize, Logger: log, OfflineAfter: -1,
		Federated: models.NewFederated(reg, key), FederatedInterval: 50 * time.Millisecond}
	for _, c := range configure {
		c(&cfg)
	}
	srv, err = hub.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv, admin
}

// Close takes the hub off the network: its connections drop and new ones
// are refused.
func (h *Hub) Close() { _ = h.hs.Close() }

// Partition cuts the hub off (open connections drop, new ones are refused)
// or heals the cut.
func (h *Hub) Partition(cut bool) {
	h.ln.down.Store(cut)
	if !cut {
		return
	}
	h.connMu.Lock()
	defer h.connMu.Unlock()
	for c := range h.conns {
		c.Close()
	}
}

// Repo opens repository repo of the hub's registry with the admin token.
func (h *Hub) Repo(repo string) *remote.Repository {
	h.t.Helper()
	host := strings.TrimPrefix(URL, "http://")
	r, err := remote.NewRepository(host + "/" + repo)
	if err != nil {
		h.t.Fatal(err)
	}
	r.PlainHTTP = true
	r.Client = &orasauth.Client{Client: h.Client, Cache: orasauth.NewCache(),
		Credential: orasauth.StaticCredential(host, orasauth.Credential{Username: "outpost", Password: h.Admin})}
	return r
}

// Push pushes the model folder dir as models/name:version.
func (h *Hub) Push(dir, name, version string) ocispec.Descriptor {
	h.t.Helper()
	desc, err := artifact.Push(h.t.Context(), h.Repo(v1alpha1.ModelRepositoryPrefix+name), dir, artifact.PushOptions{Name: name, Version: version})
	if err != nil {
		h.t.Fatalf("push %s@%s: %v", name, version, err)
	}
	return desc
}

// API sends an admin request to the resource API (path under
// v1alpha1.APIPath) and returns the status code and body.
func (h *Hub) API(method, path, contentType string, body []byte) (int, []byte) {
	h.t.Helper()
	req, err := http.NewRequestWithContext(h.t.Context(), method, URL+v1alpha1.APIPath+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.Admin)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Apply applies a YAML resource with PUT, failing the test on an error.
func (h *Hub) Apply(plural, name, yaml string) {
	h.t.Helper()
	if code, b := h.API(http.MethodPut, "/"+plural+"/"+name, "application/yaml", []byte(yaml)); code >= 300 {
		h.t.Fatalf("apply %s/%s: %d %s", plural, name, code, b)
	}
}

// JoinToken creates a join token valid for an hour.
func (h *Hub) JoinToken() string {
	h.t.Helper()
	tok, err := h.Server.CreateJoinToken(h.t.Context(), time.Hour, "test")
	if err != nil {
		h.t.Fatal(err)
	}
	return tok.Token
}

// Serve serves handler on an in-memory network of its own until the test
// ends, and returns a client that reaches it at any address (such as URL):
// a stand-in hub that answers as a test wants.
func Serve(t testing.TB, handler http.Handler) *http.Client {
	ln := newPipeListener()
	hs := &http.Server{Handler: handler}
	go func() { _ = hs.Serve(ln) }()
	tr := &http.Transport{DialContext: ln.dial}
	t.Cleanup(func() {
		hs.Close()
		tr.CloseIdleConnections()
	})
	return &http.Client{Transport: tr}
}

// pipeListener is a net.Listener whose connections are net.Pipe pairs made
// by its dial.
type pipeListener struct {
	down      atomic.Bool // refuse new connections, as a partition
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// Accept implements net.Listener.
func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l *pipeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

// Addr implements net.Listener.
func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

// dial connects to the listener, as http.Transport.DialContext.
func (l *pipeListener) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if l.down.Load() {
		return nil, fmt.Errorf("dial %s %s: connection refused", network, addr)
	}
	server, client := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
	case <-ctx.Done():
	}
	server.Close()
	client.Close()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("dial %s %s: connection refused", network, addr)
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n.Add(int64(n))
	return n, err
}
