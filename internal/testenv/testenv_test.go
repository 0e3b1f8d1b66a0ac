package testenv

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	var n atomic.Int64
	if err := Poll(10*time.Second, func() bool { return n.Add(1) >= 5 }); err != nil || n.Load() != 5 {
		t.Errorf("Poll: %v after %d calls, want nil after 5", err, n.Load())
	}
	start := time.Now()
	if err := Poll(50*time.Millisecond, func() bool { return false }); err == nil {
		t.Error("Poll of a condition that never holds returned nil")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("Poll gave up after %v, before its limit", d)
	}
}

// fakeT records how a test ended.
type fakeT struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (f *fakeT) Helper()                           {}
func (f *fakeT) Skip(args ...any)                  { f.skipped, f.msg = true, args[0].(string) }
func (f *fakeT) Fatalf(format string, args ...any) { f.failed = true }

func TestMissingPeer(t *testing.T) {
	t.Setenv(EnvRequirePeers, "")
	f := &fakeT{}
	if v := PeerEnv(f, "OUTPOST_TEST_NO_SUCH_PEER", "the thing"); v != "" || !f.skipped || f.failed {
		t.Errorf("unset peer without the requirement: skipped %v failed %v", f.skipped, f.failed)
	}
	t.Setenv(EnvRequirePeers, "1")
	f = &fakeT{}
	MissingPeer(f, "no thing")
	if !f.failed || f.skipped {
		t.Errorf("missing peer with %s=1: skipped %v failed %v, want failed", EnvRequirePeers, f.skipped, f.failed)
	}
	t.Setenv("OUTPOST_TEST_PEER", "/bin/true")
	f = &fakeT{}
	if v := PeerEnv(f, "OUTPOST_TEST_PEER", "true"); v != "/bin/true" || f.skipped || f.failed {
		t.Errorf("PeerEnv of a set peer = %q (skipped %v failed %v)", v, f.skipped, f.failed)
	}
}

// TestTakeFixedPorts checks that the lock excludes another holder (another
// open of the file, as another process's would be) until the test ends.
func TestTakeFixedPorts(t *testing.T) {
	tryLock := func() error {
		f, err := os.OpenFile(filepath.Join(os.TempDir(), "outpost-test-fixed-ports.lock"), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	t.Run("held", func(t *testing.T) {
		TakeFixedPorts(t)
		if err := tryLock(); !errors.Is(err, syscall.EWOULDBLOCK) {
			t.Fatalf("another holder locked while the test held the ports: %v", err)
		}
	})
	// Other packages' tests may take their turn meanwhile: wait for one.
	if err := Poll(5*time.Minute, func() bool { return tryLock() == nil }); err != nil {
		t.Fatalf("the lock was not released when the test ended: %v", err)
	}
}
