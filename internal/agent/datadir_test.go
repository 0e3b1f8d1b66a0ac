package agent

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// TestDataDirPermissions: the data directory is the agent's alone (0700) and
// its database, with the WAL and shared-memory files beside it, is 0600,
// whether the agent makes them or finds them made more open.
func TestDataDirPermissions(t *testing.T) {
	check := func(t *testing.T, dir string) {
		t.Helper()
		want := map[string]fs.FileMode{dir: 0o700, filepath.Join(dir, dbFile): 0o600}
		for _, suffix := range []string{"-wal", "-shm"} {
			p := filepath.Join(dir, dbFile+suffix)
			if _, err := os.Stat(p); err == nil {
				want[p] = 0o600
			}
		}
		if len(want) != 4 {
			t.Errorf("the database has no WAL or shared-memory file beside it: %v", want)
		}
		for p, mode := range want {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != mode {
				t.Errorf("%s has mode %v, want %v", filepath.Base(p), got, mode)
			}
		}
	}
	open := func(t *testing.T, dir string) *Agent {
		t.Helper()
		a, err := New(t.Context(), Config{Dir: dir, Name: "edge-1", Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	dir := filepath.Join(t.TempDir(), "agent")
	a := open(t, dir)
	check(t, dir)
	a.Close()

	// Made more open by an older agent, or by hand: tightened at start.
	for p, mode := range map[string]fs.FileMode{dir: 0o755, filepath.Join(dir, dbFile): 0o644} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	a = open(t, dir)
	defer a.Close()
	check(t, dir)
}

// TestFailedJoinResumes: a first start whose join the hub refuses binds the
// data directory to nothing, so the next start may correct the token, the
// cluster name and the hub address, and joins.
func TestFailedJoinResumes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t)
		dir := filepath.Join(t.TempDir(), "agent")
		bad := agentConfig(h, dir, "opj_not-a-token")
		bad.Name = "edge-typo"
		bad.Logger = slog.New(slog.DiscardHandler)
		a, err := New(t.Context(), bad)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "not recognised") {
			t.Fatalf("run with a bad token: %v", err)
		}
		a.Close()
		if _, err := os.Stat(filepath.Join(dir, credentialFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a refused join left a credential: %v", err)
		}

		good := agentConfig(h, dir, h.joinToken())
		good.Name = "edge-1"
		b, stop, _ := startAgent(t, good)
		defer stop()
		select {
		case <-b.Ready():
		case <-time.After(10 * time.Second):
			t.Fatal("the second start did not join")
		}
		if b.Name() != "edge-1" {
			t.Errorf("joined as %q, want edge-1", b.Name())
		}
		st, err := ReadStatus(t.Context(), dir)
		if err != nil || st.Cluster != "edge-1" {
			t.Errorf("status after the second start: %+v %v", st, err)
		}
		// Once joined, the directory belongs to its cluster.
		other := agentConfig(h, dir, "")
		other.Name = "edge-other"
		if _, err := New(t.Context(), other); err == nil || !strings.Contains(err.Error(), `belongs to cluster "edge-1"`) {
			t.Errorf("a joined directory opened as another cluster: %v", err)
		}
	})
}
