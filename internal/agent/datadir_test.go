package agent

import (
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
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
