package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TakeFixedPorts holds, until the test ends, an inter-process lock for the
// fixed ports that documentation examples use (the hub's 8443, an agent's
// 8080 and 8081): go test runs packages in parallel processes, and tests
// of different packages that need those ports take turns through it,
// rather than find them taken and skip or fail. It blocks until the lock
// is free.
func TakeFixedPorts(t testing.TB) {
	t.Helper()
	path := filepath.Join(os.TempDir(), "outpost-test-fixed-ports.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatalf("fixed ports lock: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("fixed ports lock %s: %v", path, fmt.Errorf("flock: %w", err))
	}
	t.Cleanup(func() { f.Close() }) // closing releases the lock
}
