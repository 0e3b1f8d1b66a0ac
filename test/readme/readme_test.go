// Package readme runs the README's walk-through as a user types it, so that
// the README cannot drift from what the commands do.
package readme

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"outpost.dev/outpost/internal/testenv"
)

// buildLine is the walk-through's first line. The test builds the binary
// itself (into a folder of its own, not the clone) and puts it on PATH,
// which is what the line does; every other line runs as written.
const buildLine = `go build -o outpost ./cmd/outpost && export PATH="$PWD:$PATH"`

// usingIt returns the shell block of the README's "Using it" section.
func usingIt(t *testing.T, readme string) string {
	t.Helper()
	_, sec, ok := strings.Cut(readme, "\n## Using it\n")
	if !ok {
		t.Fatal("README.md has no '## Using it' section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	_, block, ok := strings.Cut(sec, "```sh\n")
	if !ok {
		t.Fatal("the 'Using it' section has no ```sh block")
	}
	block, _, ok = strings.Cut(block, "\n```")
	if !ok {
		t.Fatal("the 'Using it' block is not closed")
	}
	return block
}

func TestReadmeWalkThrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds outpost and runs a hub and an agent")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := usingIt(t, string(readme))
	first, rest, _ := strings.Cut(block, "\n")
	if first != buildLine {
		t.Fatalf("the walk-through's first line is %q; this test stands in for %q only", first, buildLine)
	}
	// The agent finds another port when 8080 is taken (and infer --cluster
	// finds it through the hub); the hub's 8443 must be free. Tests of other
	// packages that take these ports wait their turn.
	testenv.TakeFixedPorts(t)
	ln, err := net.Listen("tcp", "127.0.0.1:8443")
	if err != nil {
		t.Skipf("the README's hub listens on 127.0.0.1:8443, which is taken here: %v", err)
	}
	ln.Close()

	work := t.TempDir()
	text := runShell(t, root, work, rest)
	for _, want := range []string{
		"pulled detector@1.0.0 (1 file,",            // model pull
		"Signatures:",                               // model show --key
		"detector 1.0.0: Active on 1 of 1 clusters", // apply --wait
		"store-17", // get clusters
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the walk-through's output lacks %q", want)
		}
	}
	// The last command answered an inference: test image 0 is an ankle
	// boot (class 9), which the example model gets right.
	if !strings.Contains(text, "wrote image.json: test image 0, of class 9 (Ankle boot)") || !strings.Contains(text, "argmax 9 (") {
		t.Errorf("outpost infer did not answer class 9 for test image 0")
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("output:\n%s", text)
	}
	if _, err := os.Stat(filepath.Join(work, "out", "model.onnx")); err != nil {
		t.Errorf("model pull wrote no ./out/model.onnx: %v", err)
	}
}

// runShell runs script with bash in dir, as a user's shell would: outpost
// built from root on PATH, a HOME of its own, errors ending it. Jobs the
// script starts with '&' are stopped with SIGTERM when it ends, however it
// ends. It fails the test if the script fails, and returns its output.
func runShell(t *testing.T, root, dir, script string) string {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "outpost"), "./cmd/outpost")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	script = "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true; wait' EXIT\nset -x\n" + script + "\n"
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), "HOME="+t.TempDir(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("the script ran out of time:\n%s", out.String())
		}
		t.Fatalf("the script failed: %v\n%s", err, out.String())
	}
	return out.String()
}

// cleanEnv is the test's environment without the variables that would
// point the CLI at another hub or config.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "PATH", "OUTPOST_CONFIG", "OUTPOST_HUB", "OUTPOST_TOKEN", "OUTPOST_CONTEXT", "OUTPOST_CA_FILE", "OUTPOST_JOIN_TOKEN":
			continue
		}
		env = append(env, kv)
	}
	return env
}
