package endpoint

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/serving"
)

// busyAddr returns an address another listener holds until the test ends.
func busyAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func TestStart(t *testing.T) {
	quiet := serving.Config{Logger: slog.New(slog.DiscardHandler)}
	busy := busyAddr(t)
	tests := []struct {
		name     string
		cfg      Config
		wantErr  string
		wantREST func(string) bool
		wantGRPC bool
	}{
		{name: "nothing", cfg: Config{}, wantErr: "no endpoint to serve on"},
		{name: "REST and gRPC", cfg: Config{REST: "127.0.0.1:0", GRPC: "127.0.0.1:0"},
			wantREST: func(u string) bool { return strings.HasPrefix(u, "http://127.0.0.1:") && u != "http://127.0.0.1:0" }, wantGRPC: true},
		{name: "gRPC only", cfg: Config{GRPC: "127.0.0.1:0"}, wantREST: func(u string) bool { return u == "" }, wantGRPC: true},
		{name: "busy, given explicitly", cfg: Config{REST: busy}, wantErr: "--serve: listen tcp " + busy},
		{name: "busy default", cfg: Config{REST: busy, FreePortIfBusy: true},
			wantREST: func(u string) bool { return strings.HasPrefix(u, "http://127.0.0.1:") && u != "http://"+busy }},
		{name: "busy gRPC", cfg: Config{REST: "127.0.0.1:0", GRPC: busy}, wantErr: "--grpc: listen tcp " + busy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Serving = quiet
			srv, err := Start(t.Context(), tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Start = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ep := srv.Endpoints()
			if !tt.wantREST(ep.REST) || (ep.GRPC != "") != tt.wantGRPC {
				t.Fatalf("endpoints %+v", ep)
			}
			if ep.REST != "" {
				resp, err := http.Get(ep.REST + "/v2/health/live")
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s/v2/health/live: %v %v", ep.REST, resp, err)
				}
				resp.Body.Close()
			}
		})
	}
}

// TestStartStops checks that the server stops and frees its port once its
// context ends.
func TestStartStops(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	srv, err := Start(ctx, Config{REST: "127.0.0.1:0", Serving: serving.Config{Logger: slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-srv.Done()
	addr := strings.TrimPrefix(srv.Endpoints().REST, "http://")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still held after Done: %v", err)
	}
	ln.Close()
}

func TestDialAddr(t *testing.T) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}, "127.0.0.1:8080"},
		{&net.TCPAddr{IP: net.ParseIP("fd00::7"), Port: 8081}, "[fd00::7]:8081"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 9000}, net.JoinHostPort(host, "9000")},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 9000}, net.JoinHostPort(host, "9000")},
	}
	for _, tt := range tests {
		if got := dialAddr(tt.addr); got != tt.want {
			t.Errorf("dialAddr(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}
