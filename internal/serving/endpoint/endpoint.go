// Package endpoint runs a serving.Server on the network: the Open Inference
// Protocol v2 REST API and, when asked, its gRPC API, with ONNX Runtime
// beside the Go runtime when its library is given. The agent and 'outpost
// serve' both start their inference servers through it; where the models
// come from (an agent's cache, local files) is the caller's business, given
// to the server with Sync or Watch.
package endpoint

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/onnx/ort"
	"outpost.dev/outpost/internal/serving"
)

// Config says where and how to serve. Errors name the settings by the
// flags the commands give them: --serve, --grpc, --onnxruntime-lib.
type Config struct {
	// REST is the address of the REST endpoint, such as 127.0.0.1:8080;
	// "" serves none.
	REST string
	// FreePortIfBusy lets a REST address that another process holds fall
	// back to a free port of the same host, with a warning in the log,
	// instead of failing: for a default address, which several servers on
	// one host would all ask for. An address given explicitly must be free.
	FreePortIfBusy bool
	// GRPC is the address of the gRPC endpoint, such as 127.0.0.1:8081;
	// "" serves none. It must be free.
	GRPC string
	// ONNXRuntimeLib is ONNX Runtime's shared library (libonnxruntime.so);
	// "" serves with the Go runtime alone.
	ONNXRuntimeLib string
	// Serving configures the server: version, request limits, logger,
	// status callback. Start sets its ONNXRuntime and PortHost.
	Serving serving.Config
}

// Server is a serving.Server that answers on its endpoints until the
// context given to Start ends.
type Server struct {
	*serving.Server
	endpoints v1alpha1.ServingEndpoints
	done      chan struct{}
}

// Start listens on the endpoints of cfg (at least one), loads ONNX Runtime
// if cfg names its library, and serves until ctx ends; then it closes the
// server. The server serves no model until Sync or Watch gives it some.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.REST == "" && cfg.GRPC == "" {
		return nil, errors.New("no endpoint to serve on: give a REST or a gRPC address")
	}
	log := cfg.Serving.Logger
	if log == nil {
		log = slog.Default()
		cfg.Serving.Logger = log
	}
	if cfg.ONNXRuntimeLib != "" {
		r, err := ort.New(cfg.ONNXRuntimeLib)
		if err != nil {
			return nil, fmt.Errorf("--onnxruntime-lib: %w", err)
		}
		log.Info("ONNX Runtime available", "version", r.Version(), "library", r.Library())
		cfg.Serving.ONNXRuntime = r
	}
	var ln, grpcLn net.Listener
	if cfg.REST != "" {
		var err error
		ln, err = net.Listen("tcp", cfg.REST)
		if err != nil && cfg.FreePortIfBusy && errors.Is(err, syscall.EADDRINUSE) {
			host, _, _ := net.SplitHostPort(cfg.REST)
			ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
			if err == nil {
				log.Warn("inference address in use, serving on a free port instead", "busy", cfg.REST, "addr", ln.Addr().String())
			}
		}
		if err != nil {
			return nil, fmt.Errorf("--serve: %w", err)
		}
	}
	if cfg.GRPC != "" {
		var err error
		if grpcLn, err = net.Listen("tcp", cfg.GRPC); err != nil {
			if ln != nil {
				ln.Close()
			}
			return nil, fmt.Errorf("--grpc: %w", err)
		}
	}
	s := &Server{done: make(chan struct{})}
	if ln != nil {
		// Deployments with a port of their own are served beside REST.
		cfg.Serving.PortHost, _, _ = net.SplitHostPort(ln.Addr().String())
		s.endpoints.REST = "http://" + dialAddr(ln.Addr())
	}
	if grpcLn != nil {
		s.endpoints.GRPC = dialAddr(grpcLn.Addr())
	}
	s.Server = serving.New(cfg.Serving)
	var wg sync.WaitGroup
	if ln != nil {
		log.Info("serving inference (Open Inference Protocol v2, REST)", "url", s.endpoints.REST)
		wg.Go(func() {
			if err := s.Serve(ctx, ln); err != nil {
				log.Error("inference endpoint stopped", "err", err)
			}
		})
	}
	if grpcLn != nil {
		log.Info("serving inference (Open Inference Protocol v2, gRPC)", "addr", s.endpoints.GRPC)
		wg.Go(func() {
			if err := s.ServeGRPC(ctx, grpcLn); err != nil {
				log.Error("gRPC inference endpoint stopped", "err", err)
			}
		})
	}
	go func() {
		wg.Wait()
		s.Close()
		close(s.done)
	}()
	return s, nil
}

// Endpoints returns where the server answers: the REST API's base URL and
// the gRPC API's host:port, each empty when not served. The ports are those
// listened on, after any fallback; a server listening on every address
// gives the host's name.
func (s *Server) Endpoints() v1alpha1.ServingEndpoints { return s.endpoints }

// Done is closed once the endpoints stopped, after the context given to
// Start ended, and the server was closed.
func (s *Server) Done() <-chan struct{} { return s.done }

// dialAddr is the host:port clients reach a listener at: its address, or,
// for one listening on every address, the host's name and its port.
func dialAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return a.String()
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return net.JoinHostPort(host, fmt.Sprint(tcp.Port))
}
