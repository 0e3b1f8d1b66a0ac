package cli

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestDebugHandler(t *testing.T) {
	tests := []struct {
		path string
		want string
	}{
		{"/debug/pprof/goroutine?debug=1", "goroutine profile: total "},
		{"/debug/pprof/", "Types of profiles available"},
		{"/debug/pprof/cmdline", ""},
	}
	h := debugHandler()
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tt.path, nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), tt.want) {
			t.Errorf("GET %s: %d %.200q, want 200 with %q", tt.path, rec.Code, rec.Body.String(), tt.want)
		}
	}
}

func TestServeDebug(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	done, err := serveDebug(t.Context(), log, "")
	if err != nil {
		t.Fatal(err)
	}
	<-done // nothing to serve: closed at once

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := serveDebug(t.Context(), log, busy.Addr().String()); err == nil || !strings.Contains(err.Error(), "--debug-listen") {
		t.Errorf("serveDebug on a busy address: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	if done, err = serveDebug(ctx, log, "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the debugging endpoint did not stop with its context")
	}
}
