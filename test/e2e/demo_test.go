package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"outpost.dev/outpost/internal/testenv"
)

// TestDemo runs the README's first command, 'outpost demo', with --keep: it
// must hold every check, then leave the hub and agents running and
// connected for a user to explore: clusters stay Connected past the hub's
// offline threshold, a new deployment reaches every agent, and an interrupt
// ends it with exit 0.
func TestDemo(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out := &testenv.Buffer{}
	cmd := exec.CommandContext(ctx, outpostBin, "demo", "--keep", "--dir", dir)
	cmd.Stdout, cmd.Stderr = out, out
	// The demo's hub and agents are in its process group: a failed test
	// kills them with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	})
	testenv.WaitFor(t, 4*time.Minute, "the demo to finish its checks", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("outpost demo --keep exited (%v) before it was interrupted", err)
		default:
		}
		return strings.Contains(out.String(), "until Ctrl-C")
	})
	text := out.String()
	if !strings.Contains(text, "every check held") || strings.Contains(text, "FAIL") {
		t.Fatalf("outpost demo did not hold")
	}
	for _, ship := range []string{"ship-1", "ship-2", "ship-3"} {
		if want := filepath.Join(dir, ship); !strings.Contains(text, "outpost agent status --data "+want) {
			t.Errorf("the closing hint does not name %s's data directory %s", ship, want)
		}
	}

	run := func(args ...string) (string, error) {
		c := exec.Command(outpostBin, append([]string{"--config", filepath.Join(dir, "client.yaml")}, args...)...)
		b, err := c.CombinedOutput()
		return string(b), err
	}
	// The hub marks a cluster Disconnected after 5 s of silence in the demo:
	// wait past that, then every cluster with a link (the ships and the
	// camera box) must still be Connected.
	time.Sleep(7 * time.Second) // the threshold to pass: what is tested, not a wait for an event
	got, err := run("get", "clusters")
	if err != nil || strings.Count(got, "Connected") != 4 {
		t.Fatalf("get clusters after the demo (err %v):\n%s", err, got)
	}
	spec := filepath.Join(t.TempDir(), "pinned.yaml")
	doc := fmt.Sprintf(`apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata: {name: pinned}
spec:
  model: {name: fashion, version: "1.0.0"}
  clusterSelectors:
  - matchLabels: {tier: edge}
    matchExpressions: [{key: link, operator: DoesNotExist}] # not the air-gapped sub-1
  allowDowngrade: true
`)
	if err := os.WriteFile(spec, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := run("apply", "-f", spec, "--wait", "--timeout", "2m"); err != nil || !strings.Contains(got, "Active on 3 of 3 clusters") {
		t.Fatalf("a deployment applied after the demo did not reach every agent (err %v):\n%s", err, got)
	}

	cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("outpost demo --keep exited with %v on interrupt", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("outpost demo --keep did not stop on interrupt")
	}
}
