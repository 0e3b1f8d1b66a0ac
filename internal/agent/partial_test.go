package agent

import (
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/internal/testenv"
)

// TestAgentCollectsPartsOfCancelledSyncs: a transfer cut short because its
// deployment left the cluster leaves no partial files behind, even when
// nothing else changes afterwards.
func TestAgentCollectsPartsOfCancelledSyncs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t)
		wd, _ := pushRandomModel(t, h, "slow", 3<<20, 5, 6)
		stall := func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.HasSuffix(r.URL.Path, "/blobs/"+wd.String()) {
				return false
			}
			<-r.Context().Done() // a link that stalls mid-transfer
			return true
		}
		h.Blobs.Store(&stall)
		h.deploy("slow", "slow", "1.0.0", false)
		dir := filepath.Join(t.TempDir(), "agent")
		a, stop, _ := startAgent(t, agentConfig(h, dir, h.joinToken()))
		defer stop()
		parts := func() []string {
			p, _ := filepath.Glob(filepath.Join(a.cache.root, "blobs", "sha256", "*.part*"))
			return p
		}
		testenv.WaitFor(t, 10*time.Second, "the transfer under way", func() bool { return len(parts()) > 0 })

		if code, b := h.api(http.MethodDelete, "/modeldeployments/slow", "", nil); code >= 300 {
			t.Fatalf("delete deployment: %d %s", code, b)
		}
		testenv.WaitFor(t, 10*time.Second, "the partial files removed", func() bool { return len(parts()) == 0 })
	})
}

// pushRandomModel pushes version 1.0.0 of model name: one model.onnx of size
// random bytes drawn from seeds. It returns the file's digest and size.
func pushRandomModel(t *testing.T, h *testHub, name string, size int, seed1, seed2 uint64) (digest.Digest, int64) {
	t.Helper()
	weights := make([]byte, size)
	r := rand.New(rand.NewPCG(seed1, seed2))
	for i := range weights {
		weights[i] = byte(r.Uint32())
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "model.onnx"), weights, 0o644); err != nil {
		t.Fatal(err)
	}
	h.push(src, name, "1.0.0")
	return digest.FromBytes(weights), int64(size)
}
