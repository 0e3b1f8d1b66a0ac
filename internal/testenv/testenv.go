// Package testenv is what the tests of several packages share: waiting for
// a condition under a deadline, and finding the real peers (tools,
// libraries, data sets) that some tests run against. A test that needs a
// missing peer skips, saying what to install, unless OUTPOST_REQUIRE_PEERS=1
// (set by make test), where it fails instead: CI never passes by skipping.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// EnvRequirePeers is the environment variable that makes a missing peer a failure.
const EnvRequirePeers = "OUTPOST_REQUIRE_PEERS"

// PeersRequired reports whether a missing peer fails the test.
func PeersRequired() bool { return os.Getenv(EnvRequirePeers) == "1" }

// MissingPeer ends t for a peer that is not there: msg says what is missing
// and how to install it. It skips t, or fails it when peers are required.
func MissingPeer(t testing.TB, msg string) {
	t.Helper()
	if PeersRequired() {
		t.Fatalf("%s, and %s=1", msg, EnvRequirePeers)
		return
	}
	t.Skip(msg)
}

// PeerEnv returns the value of the environment variable name, which names a
// peer (what, such as "the oras CLI"); when it is unset the peer is missing.
func PeerEnv(t testing.TB, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		MissingPeer(t, fmt.Sprintf("%s not installed: set %s (scripts/tools.sh installs it)", what, name))
	}
	return v
}

// WaitFor polls cond until it holds, and fails t when it still does not
// after limit. It polls often at first and then every 100 ms.
func WaitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := Poll(limit, cond); err != nil {
		t.Fatalf("timed out after %s waiting for %s", limit, what)
	}
}

// Poll calls cond until it holds (nil) or limit passed (an error).
func Poll(limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	wait := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within %s", limit)
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
	return nil
}

// Python returns a python3 that can import every module of imports (a
// Python import list, such as "onnx" or "grpc, grpc_tools.protoc"):
// $OUTPOST_PYTHON, Debian's /usr/bin/python3 (where Debian's python3-*
// packages live, which another python3 first on PATH may hide), or that
// python3. When none can, it ends t as MissingPeer with msg.
func Python(t testing.TB, imports, msg string) string {
	t.Helper()
	cands := []string{os.Getenv("OUTPOST_PYTHON"), "/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		cands = append(cands, p)
	}
	for _, p := range cands {
		if p != "" && exec.Command(p, "-c", "import "+imports).Run() == nil {
			return p
		}
	}
	MissingPeer(t, msg)
	return ""
}
