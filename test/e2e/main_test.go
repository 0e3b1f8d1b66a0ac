// Package e2e runs the outpost binary as real processes: a hub over HTTPS,
// the CLI against it, and real peers (the oras CLI) beside it.
package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"outpost.dev/outpost/internal/clientconfig"
	"outpost.dev/outpost/internal/testenv"
)

// outpostBin is the binary built once for the package's tests.
var outpostBin string

// envCoverDir names a directory. When it is set, the outpost binary is built
// with coverage counters for every package of the module, and every process
// the tests start writes them there (GOCOVERDIR) as it exits, for 'go tool
// covdata'; make test counts them into its coverage table.
const envCoverDir = "OUTPOST_E2E_COVERDIR"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "outpost-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	outpostBin = filepath.Join(dir, "outpost")
	args := []string{"build", "-o", outpostBin}
	if cover := os.Getenv(envCoverDir); cover != "" {
		cover, err = filepath.Abs(cover)
		if err == nil {
			err = os.MkdirAll(cover, 0o755)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, envCoverDir+":", err)
			os.Exit(1)
		}
		args = append(args, "-cover", "-coverpkg=outpost.dev/outpost/...")
		os.Setenv("GOCOVERDIR", cover)
	}
	build := exec.Command("go", append(args, "outpost.dev/outpost/cmd/outpost")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build outpost:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// hub is a hub process with its own data directory and client config.
type hub struct {
	t      *testing.T
	dir    string
	config string
	addr   string
	cmd    *exec.Cmd
	log    *testenv.Buffer
}

func startHub(t *testing.T, extra ...string) *hub {
	t.Helper()
	dir := t.TempDir()
	h := &hub{t: t, dir: filepath.Join(dir, "hub"), config: filepath.Join(dir, "client.yaml"), log: &testenv.Buffer{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	h.mustRun("hub", "init", "--data", h.dir, "--listen", listen, "--context-name", "e2e")
	ready := filepath.Join(dir, "ready")
	h.cmd = exec.Command(outpostBin, append([]string{"hub", "serve", "--data", h.dir, "--ready-file", ready}, extra...)...)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop(h.cmd)
		if t.Failed() {
			t.Logf("hub log:\n%s", h.log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(ready)
		if err == nil && len(b) > 0 {
			h.addr = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub did not start: %s", h.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return h
}

// stop ends a process the tests started as an operator would, with SIGTERM,
// so that it exits through main (and writes its coverage counters), and
// kills it when it has not exited within 10 seconds.
func stop(cmd *exec.Cmd) {
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// logText is what the hub wrote to its log so far.
func (h *hub) logText() string { return h.log.String() }

// url is the hub's URL, for --hub.
func (h *hub) url() string { return "https://" + h.addr }

// run runs the outpost CLI against the hub and returns its combined output.
func (h *hub) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, outpostBin, append([]string{"--config", h.config}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (h *hub) mustRun(args ...string) string {
	h.t.Helper()
	out, err := h.run(args...)
	if err != nil {
		h.t.Fatalf("outpost %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// token reads the admin token from the client config that 'hub init' wrote.
func (h *hub) token() string {
	h.t.Helper()
	cfg, err := clientconfig.Load(h.config)
	if err != nil {
		h.t.Fatal(err)
	}
	c, ok := cfg.Context("")
	if !ok || c.Token == "" {
		h.t.Fatal("no token in client config")
	}
	return c.Token
}

func (h *hub) caFile() string { return filepath.Join(h.dir, "pki", "ca.crt") }
