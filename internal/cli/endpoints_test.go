package cli

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/testenv"
)

// startAgent runs an agent joined to the hub at url as cluster name until
// the test ends, and returns its data directory, once it runs, and what
// stops it.
func startAgent(t *testing.T, url, admin, name string, extra ...string) (dir string, stop func()) {
	t.Helper()
	tok, errOut, code := runCLI(t, "--hub", url, "--token", admin, "cluster", "token", "create")
	if code != 0 {
		t.Fatalf("token create = %d: %s", code, errOut)
	}
	dir = filepath.Join(t.TempDir(), name)
	ready := filepath.Join(t.TempDir(), "ready")
	p := startCLI(t, append([]string{"agent", "--hub", url, "--join-token", strings.TrimSpace(tok), "--data", dir, "--name", name,
		"--ready-file", ready, "--report-interval", "1s"}, extra...)...)
	testenv.WaitFor(t, 60*time.Second, "agent "+name+" running", func() bool {
		_, err := os.Stat(ready)
		return err == nil || strings.Contains(p.stderr.String(), "error:")
	})
	if _, err := os.Stat(ready); err != nil {
		t.Fatalf("agent %s did not start: %s", name, p.stderr)
	}
	return dir, p.stop
}

// hubCluster reads a Cluster from the hub.
func hubCluster(t *testing.T, url, admin, name string) v1alpha1.Cluster {
	t.Helper()
	out, errOut, code := runCLI(t, "--hub", url, "--token", admin, "get", "cluster", name, "-o", "json")
	var c v1alpha1.Cluster
	if code != 0 || json.Unmarshal([]byte(out), &c) != nil {
		t.Fatalf("get cluster %s = %d: %s %s", name, code, out, errOut)
	}
	return c
}

// TestAgentEndpoints runs an agent whose default inference address is
// taken, so that it serves on a free port, and checks that where it really
// serves shows in 'outpost agent status', in its Cluster's status on the
// hub and in 'outpost get clusters -o wide', and that 'outpost infer
// --cluster' reaches it there; and that infer names what exists when it
// cannot.
func TestAgentEndpoints(t *testing.T) {
	holdDefault(t)
	url, admin := testHub(t)
	dir, stopA := startAgent(t, url, admin, "edge-a", "--grpc", "127.0.0.1:0")
	startAgent(t, url, admin, "edge-b", "--serve", "")

	st, err := agent.ReadStatus(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	ep := st.Endpoints
	if ep == nil || !strings.HasPrefix(ep.REST, "http://127.0.0.1:") || ep.REST == "http://"+DefaultServeAddr || !strings.HasPrefix(ep.GRPC, "127.0.0.1:") {
		t.Fatalf("agent status endpoints %+v, want a free port's, the default being taken", ep)
	}
	resp, err := http.Get(ep.REST + "/v2/health/live")
	if err != nil {
		t.Fatalf("the agent does not serve at the endpoint it records: %v", err)
	}
	resp.Body.Close()
	out, errOut, code := runCLI(t, "agent", "status", "--data", dir)
	if want := "Serving:          " + ep.REST + " (REST), " + ep.GRPC + " (gRPC)\n"; code != 0 || !strings.Contains(out, want) {
		t.Errorf("agent status = %d, lacks %q:\n%s%s", code, want, out, errOut)
	}

	testenv.WaitFor(t, 30*time.Second, "the hub to hold edge-a's endpoints", func() bool {
		got := hubCluster(t, url, admin, "edge-a").Status.Endpoints
		return got != nil && *got == *ep
	})
	if got := hubCluster(t, url, admin, "edge-b").Status.Endpoints; got != nil {
		t.Errorf("edge-b serves nothing, yet its Cluster has endpoints %+v", got)
	}
	out, errOut, code = runCLI(t, "--hub", url, "--token", admin, "get", "clusters", "-o", "wide")
	if code != 0 || !strings.Contains(out, ep.REST) || !strings.Contains(out, ep.GRPC) {
		t.Errorf("get clusters -o wide = %d, lacks %s and %s:\n%s%s", code, ep.REST, ep.GRPC, out, errOut)
	}

	in := writeFile(t, `[1, 2, 3, 4]`)
	tests := []struct {
		name    string
		cluster string
		want    string
	}{
		// The agent serves no model: its own 404 shows the request reached it.
		{"reaches the agent", "edge-a", ep.REST + ` (cluster edge-a): 404 Not Found: unknown model "tiny"`},
		{"no endpoint", "edge-b", `--cluster edge-b: no inference endpoint known (link Connected, last seen`},
		{"unknown cluster", "edge-c", "--cluster edge-c: no such cluster on " + url + "; it has edge-a, edge-b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := runCLI(t, "--hub", url, "--token", admin, "infer", "tiny", "--input", in, "--cluster", tt.cluster)
			if code == 0 || !strings.Contains(errOut, tt.want) {
				t.Errorf("infer --cluster %s = %d %q, want an error with %q", tt.cluster, code, errOut, tt.want)
			}
		})
	}
	if _, errOut, code := runCLI(t, "infer", "tiny", "--input", in, "--cluster", "edge-a", "--server", ep.REST); code == 0 ||
		!strings.Contains(errOut, "give --server or --cluster, not both") {
		t.Errorf("infer with --server and --cluster = %d %q", code, errOut)
	}

	// Stopped, the agent names no endpoint; the hub keeps the last one
	// reported, and infer says that nothing answers there.
	stopA()
	if out, _, _ := runCLI(t, "agent", "status", "--data", dir); !strings.Contains(out, "Serving:          nothing (the agent is not running") {
		t.Errorf("status of a stopped agent:\n%s", out)
	}
	_, errOut, code = runCLI(t, "--hub", url, "--token", admin, "infer", "tiny", "--input", in, "--cluster", "edge-a")
	if want := "cluster edge-a's agent does not answer at " + ep.REST + ", the endpoint it reported (link Connected, last seen"; code == 0 || !strings.Contains(errOut, want) {
		t.Errorf("infer --cluster of a stopped agent = %d %q, want an error with %q", code, errOut, want)
	}
}

// cliProc is a command line running in the background.
type cliProc struct {
	stdout, stderr *testenv.Buffer
	stop           func() // ends the command, as Ctrl-C does, and waits for it
}

// startCLI runs the command line in the background until stop is called
// or the test ends; the command must then exit 0.
func startCLI(t *testing.T, args ...string) cliProc {
	t.Helper()
	p := cliProc{stdout: &testenv.Buffer{}, stderr: &testenv.Buffer{}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	args = append([]string{"--config", filepath.Join(t.TempDir(), "config.yaml")}, args...)
	go func() { done <- Main(ctx, args, strings.NewReader(""), p.stdout, p.stderr) }()
	var once sync.Once
	p.stop = func() {
		once.Do(func() {
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("outpost %s = %d: %s", strings.Join(args, " "), code, p.stderr)
			}
		})
	}
	t.Cleanup(p.stop)
	return p
}

// writeFile writes s to a file of its own and returns the file's path.
func writeFile(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// holdDefault makes sure that DefaultServeAddr is taken while the test
// runs: by the test, unless another process holds it already.
func holdDefault(t *testing.T) {
	t.Helper()
	testenv.TakeFixedPorts(t)
	ln, err := net.Listen("tcp", DefaultServeAddr)
	switch {
	case err == nil:
		t.Cleanup(func() { ln.Close() })
	case !errors.Is(err, syscall.EADDRINUSE):
		t.Fatalf("hold %s: %v", DefaultServeAddr, err)
	}
}
