package serving

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// ports runs the endpoints of deployments that ask for a port of their own
// (spec.serving.port): each serves the same REST API as the agent's main
// endpoint, for that deployment only, on host:port. A port that cannot be
// opened (in use, not allowed) is an error in the deployment's status, and
// is tried again on the next Sync; the main endpoint serves it regardless.
type ports struct {
	host    string // "" when the agent serves nothing
	handler func(deployment string) http.Handler
	log     *slog.Logger

	mu     sync.Mutex
	open   map[string]*portServer // by deployment
	errs   map[string]string      // by deployment: why its port is not open
	closed bool                   // close was called: sync opens nothing
}

// portServer is one deployment's own endpoint.
type portServer struct {
	port   int32
	cancel context.CancelFunc
	done   chan struct{}
}

func newPorts(host string, handler func(string) http.Handler, log *slog.Logger) *ports {
	return &ports{host: host, handler: handler, log: log, open: map[string]*portServer{}, errs: map[string]string{}}
}

// sync makes the open endpoints those of want (deployment to port): it
// closes the ones no longer wanted or moved, then opens the missing ones.
func (p *ports) sync(ctx context.Context, want map[string]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		want = nil
	}
	for dep, ps := range p.open {
		if port, ok := want[dep]; !ok || port != ps.port {
			ps.cancel()
			<-ps.done // the port is free again once Serve returned
			delete(p.open, dep)
			p.log.Info("closed the deployment's own inference port", "deployment", dep, "port", ps.port)
		}
	}
	for dep := range p.errs {
		if _, ok := want[dep]; !ok {
			delete(p.errs, dep)
		}
	}
	taken := map[int32]string{}
	for dep, ps := range p.open {
		taken[ps.port] = dep
	}
	for _, dep := range slices.Sorted(maps.Keys(want)) {
		port := want[dep]
		if _, ok := p.open[dep]; ok {
			continue
		}
		if other, ok := taken[port]; ok {
			p.errs[dep] = fmt.Sprintf("serving port %d is already the port of deployment %q", port, other)
			continue
		}
		if p.host == "" {
			p.errs[dep] = fmt.Sprintf("serving port %d not opened: the agent serves no inference endpoint (--serve \"\")", port)
			continue
		}
		addr := net.JoinHostPort(p.host, strconv.Itoa(int(port)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			p.errs[dep] = fmt.Sprintf("serving port %d: %v", port, err)
			p.log.Warn("cannot open the deployment's own inference port", "deployment", dep, "addr", addr, "err", err)
			continue
		}
		delete(p.errs, dep)
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		ps := &portServer{port: port, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(ps.done)
			if err := serveHTTP(pctx, ln, p.handler(dep)); err != nil {
				p.log.Error("deployment's inference port stopped", "deployment", dep, "port", port, "err", err)
			}
		}()
		p.open[dep] = ps
		taken[port] = dep
		p.log.Info("serving the deployment on its own port (Open Inference Protocol v2)", "deployment", dep, "addr", ln.Addr().String())
	}
}

// status returns the port open for dep (0 if none) and why the one it
// asked for is not open.
func (p *ports) status(dep string) (int32, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps, ok := p.open[dep]; ok {
		return ps.port, ""
	}
	return 0, p.errs[dep]
}

// close shuts every endpoint down, waits for them, and keeps later syncs
// (a Sync racing the Server's Close) from opening any.
func (p *ports) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.sync(context.Background(), nil)
}

// onlyDeployment restricts h to deployment dep: a request naming another
// model is answered 404.
func onlyDeployment(dep string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/v2/models/"); ok {
			if name, _, _ := strings.Cut(rest, "/"); name != dep {
				writeError(w, http.StatusNotFound, fmt.Sprintf("model %q is not served on this port: it serves deployment %q", name, dep))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
