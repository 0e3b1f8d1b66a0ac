package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/spf13/cobra"
)

// debugListenUsage describes --debug-listen, which the long-running
// commands (hub serve, agent) take.
const debugListenUsage = `address of a debugging endpoint serving Go's profiles (net/http/pprof) under /debug/pprof/, ` +
	`such as 127.0.0.1:6060; it has no authentication, so bind it to loopback; "" (the default) serves none`

// addDebugListen registers --debug-listen on cmd.
func addDebugListen(cmd *cobra.Command, addr *string) {
	cmd.Flags().StringVar(addr, "debug-listen", "", debugListenUsage)
}

// debugHandler serves Go's runtime profiles: /debug/pprof/ lists them, and
// /debug/pprof/goroutine?debug=1 starts with the number of goroutines.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// serveDebug serves debugHandler on addr until ctx ends; the channel
// closes once it stopped. An empty addr serves nothing.
func serveDebug(ctx context.Context, log *slog.Logger, addr string) (<-chan struct{}, error) {
	done := make(chan struct{})
	if addr == "" {
		close(done)
		return done, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-listen: %w", err)
	}
	srv := &http.Server{Handler: debugHandler(), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	log.Info("serving debugging endpoint", "addr", ln.Addr().String())
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("debugging endpoint stopped", "err", err)
		}
	}()
	context.AfterFunc(ctx, func() { _ = srv.Close() })
	return done, nil
}
