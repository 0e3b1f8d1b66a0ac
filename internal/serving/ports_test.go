package serving

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int32 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return int32(ln.Addr().(*net.TCPAddr).Port)
}

// getPort sends GET path to the loopback port and returns the status and
// the error message of the body, if any.
func getPort(port int32, path string) (int, string, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e ErrorResponse
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Error, nil
}

func withPort(am Model, port int32) Model {
	am.Serving.Port = &port
	return am
}

func TestDeploymentPort(t *testing.T) {
	h := newHarness(t, false, 0)
	ctx := context.Background()
	p1, p2 := freePort(t), freePort(t)
	fraud := h.active("fraud", "fraud-mlp", "1", "1", "")
	fashion := h.active("fashion", "fashion-mlp", "1", "1", "")
	h.srv.Sync(ctx, []Model{withPort(fraud, p1), fashion})
	h.waitVersion("fraud", "1")
	h.waitVersion("fashion", "1")

	// Its own port serves the deployment, and only it.
	for _, tt := range []struct {
		path       string
		wantStatus int
		wantErr    string
	}{
		{"/v2/models/fraud/ready", http.StatusOK, ""},
		{"/v2/models/fraud", http.StatusOK, ""},
		{"/v2/models/fraud/versions/1/ready", http.StatusOK, ""},
		{"/v2/health/live", http.StatusOK, ""},
		{"/v2/models/fashion/ready", http.StatusNotFound, `model "fashion" is not served on this port: it serves deployment "fraud"`},
	} {
		code, msg, err := getPort(p1, tt.path)
		if err != nil || code != tt.wantStatus || msg != tt.wantErr {
			t.Errorf("GET :%d%s = %d %q %v, want %d %q", p1, tt.path, code, msg, err, tt.wantStatus, tt.wantErr)
		}
	}
	if st := h.waitStatus("fraud", func(ModelStatus) bool { return true }); st.Port != p1 || st.Error != "" {
		t.Errorf("status %+v, want port %d and no error", st, p1)
	}
	// The main endpoint serves it too.
	if code, _, _ := h.do(http.MethodGet, "/v2/models/fraud/ready", nil, nil); code != http.StatusOK {
		t.Errorf("main endpoint: fraud ready = %d", code)
	}

	// A new version keeps the port; a new port closes the old one.
	fraud2 := h.active("fraud", "fraud-mlp", "2", "2", "")
	h.srv.Sync(ctx, []Model{withPort(fraud2, p1), fashion})
	h.waitVersion("fraud", "2")
	if code, _, err := getPort(p1, "/v2/models/fraud/versions/2/ready"); err != nil || code != http.StatusOK {
		t.Errorf("after a version swap: %d %v", code, err)
	}
	h.srv.Sync(ctx, []Model{withPort(fraud2, p2), fashion})
	if _, _, err := getPort(p1, "/v2/health/live"); err == nil {
		t.Errorf("port %d still answers after the deployment moved to %d", p1, p2)
	}
	if code, _, err := getPort(p2, "/v2/models/fraud/ready"); err != nil || code != http.StatusOK {
		t.Errorf("new port: %d %v", code, err)
	}

	// A port taken by another process, or by another deployment, is an
	// error in status; the model still serves on the main endpoint, and the
	// port opens on a later Sync once it is free.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p3 := int32(busy.Addr().(*net.TCPAddr).Port)
	h.srv.Sync(ctx, []Model{withPort(fraud2, p2), withPort(fashion, p3)})
	st := h.waitStatus("fashion", func(st ModelStatus) bool { return st.Error != "" })
	if !strings.Contains(st.Error, fmt.Sprintf("serving port %d", p3)) || st.Port != 0 || st.State != StateReady {
		t.Errorf("fashion on a busy port: status %+v", st)
	}
	if code, _, _ := h.do(http.MethodGet, "/v2/models/fashion/ready", nil, nil); code != http.StatusOK {
		t.Errorf("main endpoint: fashion ready = %d", code)
	}
	busy.Close()
	h.srv.Sync(ctx, []Model{withPort(fraud2, p2), withPort(fashion, p3)})
	if code, _, err := getPort(p3, "/v2/models/fashion/ready"); err != nil || code != http.StatusOK {
		t.Errorf("port freed, then synced: %d %v", code, err)
	}
	h.srv.Sync(ctx, []Model{withPort(fraud2, p2), withPort(fashion, p2)})
	st = h.waitStatus("fashion", func(st ModelStatus) bool { return st.Error != "" })
	if want := fmt.Sprintf(`serving port %d is already the port of deployment "fraud"`, p2); st.Error != want {
		t.Errorf("two deployments on one port: error %q, want %q", st.Error, want)
	}

	// Removing the deployment, then closing the server, closes the ports.
	h.srv.Sync(ctx, []Model{fashion})
	if _, _, err := getPort(p2, "/v2/health/live"); err == nil {
		t.Errorf("port %d still answers after its deployment was removed", p2)
	}
	h.srv.Sync(ctx, []Model{withPort(fashion, p3)})
	if code, _, err := getPort(p3, "/v2/health/live"); err != nil || code != http.StatusOK {
		t.Fatalf("fashion's port: %d %v", code, err)
	}
	h.srv.Close()
	if _, _, err := getPort(p3, "/v2/health/live"); err == nil {
		t.Errorf("port %d still answers after Close", p3)
	}
}

func TestDeploymentPortWithoutServing(t *testing.T) {
	h := newHarness(t, false, 0)
	srv := New(Config{Go: h.goRT, Logger: h.srv.log}) // no PortHost: --serve ""
	t.Cleanup(srv.Close)
	srv.Sync(context.Background(), []Model{withPort(h.active("fraud", "fraud-mlp", "1", "1", ""), freePort(t))})
	for _, st := range srv.Status() {
		if st.Deployment == "fraud" && strings.Contains(st.Error, "the agent serves no inference endpoint") {
			return
		}
	}
	t.Fatalf("status %+v, want an error saying no port is opened", srv.Status())
}

// TestPortsClosedOpenNothing covers a Sync that races the Server's Close:
// once closed, no port opens.
func TestPortsClosedOpenNothing(t *testing.T) {
	p := newPorts("127.0.0.1", func(string) http.Handler { return http.NotFoundHandler() }, slog.New(slog.DiscardHandler))
	port := freePort(t)
	p.close()
	p.sync(context.Background(), map[string]int32{"fraud": port})
	if got, _ := p.status("fraud"); got != 0 {
		t.Fatalf("port %d opened after close", got)
	}
	if _, _, err := getPort(port, "/"); err == nil {
		t.Fatalf("port %d answers after close", port)
	}
}
