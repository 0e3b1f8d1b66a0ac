package agent

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"outpost.dev/outpost/internal/testenv"
)

// TestAgentSharedFileFetchedOnce: two deployments of one version sync at
// the same time; their shared file is assembled by one of them (one .part
// file, one transfer), and both activate it.
func TestAgentSharedFileFetchedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t)
		wd, size := pushRandomModel(t, h, "shared", 2<<20, 11, 12)
		slow := func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasSuffix(r.URL.Path, "/blobs/"+wd.String()) {
				// A slow link: both syncs are under way before either finishes.
				time.Sleep(2 * time.Second)
			}
			return false
		}
		h.Blobs.Store(&slow)
		h.deploy("first", "shared", "1.0.0", false)
		h.deploy("second", "shared", "1.0.0", false)
		a, stop, _ := startAgent(t, agentConfig(h, filepath.Join(t.TempDir(), "agent"), h.joinToken()))
		defer stop()
		testenv.WaitFor(t, time.Minute, "both deployments active", func() bool {
			return len(a.Active()) == 2
		})
		for _, m := range a.Active() {
			if m.Version != "1.0.0" {
				t.Errorf("%s: active %s, want 1.0.0", m.Deployment, m.Version)
			}
		}
		if served := h.Served.Load(); served > size+64<<10 {
			t.Errorf("hub served %d blob bytes for a %d-byte file: the file was fetched twice", served, size)
		}
	})
}
