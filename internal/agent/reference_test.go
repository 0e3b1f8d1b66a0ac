package agent

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/testenv"
)

// testProfile returns the encoding of a reference profile of n samples of
// a model with two inputs and three output probabilities.
func testProfile(t *testing.T, n int) []byte {
	t.Helper()
	f, err := drift.NewFeaturizer(drift.FeaturizerConfig{InputShape: []int{2}, OutputShape: []int{3}})
	if err != nil {
		t.Fatal(err)
	}
	b := drift.Batch{InputShape: []int{n, 2}, OutputShape: []int{n, 3}}
	for i := range n {
		b.Input = append(b.Input, float32(i%7), float32(i%5)/5)
		b.Output = append(b.Output, 0.2, 0.3, 0.5)
	}
	draft := f.NewProfile(1)
	if err := f.Observe(draft, b); err != nil {
		t.Fatal(err)
	}
	ref, err := draft.Binned(4, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Observe(ref, b); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(ref)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// active returns the active model of a deployment.
func active(a *Agent, dep string) ActiveModel {
	for _, m := range a.Active() {
		if m.Deployment == dep {
			return m
		}
	}
	return ActiveModel{}
}

// holds reports whether m's reference profile is the profile p.
func holds(m ActiveModel, p []byte) bool {
	if m.Reference == "" {
		return false
	}
	b, err := os.ReadFile(m.Reference)
	return err == nil && bytes.Equal(b, p)
}

// TestAgentReferenceProfile: an agent fetches a version's reference profile
// with the model, verifies and caches it, and hands it out with the active
// model; a version without one, or with a malformed one, activates all the
// same, and a profile attached later is picked up.
func TestAgentReferenceProfile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		h := newTestHub(t)
		src := t.TempDir()
		v1, v2 := filepath.Join(src, "v1"), filepath.Join(src, "v2")
		writeModel(t, v1, v2)
		first, second := testProfile(t, 50), testProfile(t, 80)
		if _, err := artifact.Push(ctx, h.repo("demo"), v1, artifact.PushOptions{Name: "demo", Version: "1.0.0", Profile: first}); err != nil {
			t.Fatal(err)
		}
		h.deploy("fashion", "demo", ">=1.0.0", false)

		dir := filepath.Join(t.TempDir(), "agent")
		cfg := agentConfig(h, dir, h.joinToken())
		cfg.ProfileInterval, cfg.KeepVersions = 5*time.Second, -1
		var changes atomic.Int64
		cfg.OnActive = func() { changes.Add(1) }
		a, stop, _ := startAgent(t, cfg)
		stopped := false
		defer func() {
			if !stopped {
				stop()
			}
		}()

		testenv.WaitFor(t, 30*time.Second, "v1 active", func() bool { return activeVersion(a, "fashion") == "1.0.0" })
		if m := active(a, "fashion"); !holds(m, first) || m.Reference != filepath.Join(a.cache.root, "blobs", "sha256", digest.FromBytes(first).Encoded()) {
			t.Fatalf("v1 reference %q", m.Reference)
		}
		if st := modelStatus(t, dir, "fashion"); st.Reference != digest.FromBytes(first).String() || st.ReferenceError != "" || st.Error != "" {
			t.Fatalf("status %+v", st)
		}

		// A version without a profile activates, unmonitored.
		desc2 := h.push(v2, "demo", "1.1.0")
		testenv.WaitFor(t, 30*time.Second, "v2 active", func() bool { return activeVersion(a, "fashion") == "1.1.0" })
		if m := active(a, "fashion"); m.Reference != "" {
			t.Fatalf("v2 has a reference %q", m.Reference)
		}
		// A profile attached later is picked up, and serving hears of it.
		before := changes.Load()
		if _, err := artifact.PushProfile(ctx, h.repo("demo"), desc2, second, artifact.ProfilePushOptions{}); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 30*time.Second, "v2's profile picked up", func() bool { return holds(active(a, "fashion"), second) })
		if changes.Load() == before {
			t.Error("OnActive not called for a new reference profile")
		}
		if st := modelStatus(t, dir, "fashion"); st.Reference != digest.FromBytes(second).String() {
			t.Errorf("status reference %q", st.Reference)
		}
		// v1's profile went with v1.
		testenv.WaitFor(t, 30*time.Second, "v1's profile collected", func() bool {
			_, err := os.Stat(filepath.Join(a.cache.root, "blobs", "sha256", digest.FromBytes(first).Encoded()))
			return os.IsNotExist(err)
		})

		// After a restart, the cached profile comes with the active model at once.
		stop()
		stopped = true
		again, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if m := active(again, "fashion"); m.Version != "1.1.0" || !holds(m, second) {
			t.Fatalf("after restart: %+v", m)
		}
		again.Close()
		a, stop, _ = startAgent(t, cfg)
		stopped = false

		// A malformed profile is reported and does not block activation.
		desc3, err := artifact.Push(ctx, h.repo("demo"), v1, artifact.PushOptions{Name: "demo", Version: "1.2.0", Profile: []byte(`{"version": 1}`)})
		if err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 30*time.Second, "v3 active", func() bool { return activeVersion(a, "fashion") == "1.2.0" })
		if m := active(a, "fashion"); m.Reference != "" {
			t.Fatalf("malformed profile handed out: %q", m.Reference)
		}
		const malformed = "reference profile of demo@1.2.0 is malformed"
		if st := modelStatus(t, dir, "fashion"); st.Phase != v1alpha1.PhaseActive || !strings.HasPrefix(st.ReferenceError, malformed) || st.Reference != "" {
			t.Fatalf("status %+v", st)
		}
		testenv.WaitFor(t, 10*time.Second, "hub hears of the malformed profile", func() bool {
			return strings.HasPrefix(hubError(t, h, "fashion"), malformed)
		})
		// Replaced by a good one: picked up, the error cleared.
		if _, err := artifact.PushProfile(ctx, h.repo("demo"), desc3, first, artifact.ProfilePushOptions{Replace: true}); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 30*time.Second, "v3's good profile picked up", func() bool { return holds(active(a, "fashion"), first) })
		if st := modelStatus(t, dir, "fashion"); st.ReferenceError != "" || st.Reference != digest.FromBytes(first).String() {
			t.Fatalf("status after the fix %+v", st)
		}
		// Replaced by a malformed one: reported, the good one held stays.
		if _, err := artifact.PushProfile(ctx, h.repo("demo"), desc3, []byte(`{"version": 1, "spec": null}`), artifact.ProfilePushOptions{Replace: true}); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 30*time.Second, "malformed replacement reported", func() bool {
			return strings.HasPrefix(modelStatus(t, dir, "fashion").ReferenceError, malformed)
		})
		if !holds(active(a, "fashion"), first) {
			t.Error("a malformed replacement dropped the good profile")
		}
	})
}

// hubError returns the error the hub shows for the deployment's row of the
// cluster.
func hubError(t *testing.T, h *testHub, dep string) string {
	t.Helper()
	code, b := h.api(http.MethodGet, "/modeldeployments/"+dep, "", nil)
	if code != http.StatusOK {
		return ""
	}
	var md v1alpha1.ModelDeployment
	if json.Unmarshal(b, &md) != nil {
		return ""
	}
	for _, c := range md.Status.Clusters {
		return c.Error
	}
	return ""
}

// TestStateAddsProfileColumns: a database made before reference profiles
// gets their columns on open, and keeps its manifests.
func TestStateAddsProfileColumns(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "agent.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	old := `CREATE TABLE manifests (
	digest TEXT PRIMARY KEY, model TEXT NOT NULL, version TEXT NOT NULL, size INTEGER NOT NULL,
	files_size INTEGER NOT NULL, config_digest TEXT NOT NULL, chunk_index_digest TEXT NOT NULL DEFAULT '',
	signature_digest TEXT NOT NULL DEFAULT '', signature_key TEXT NOT NULL DEFAULT '', cached_at TEXT NOT NULL);
INSERT INTO manifests(digest, model, version, size, files_size, config_digest, cached_at)
	VALUES ('sha256:aa', 'demo', '1.0.0', 10, 20, 'sha256:bb', '2025-01-01T00:00:00Z');`
	if _, err := db.ExecContext(ctx, old); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for range 2 { // and again, once they are there
		st, err := openState(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.setProfile(ctx, "sha256:aa", "sha256:cc", ""); err != nil {
			t.Fatal(err)
		}
		m, ok, err := st.manifest(ctx, "sha256:aa")
		if err != nil || !ok || m.Model != "demo" || m.ProfileDigest != "sha256:cc" {
			t.Fatalf("manifest %+v %v %v", m, ok, err)
		}
		st.Close()
	}
}
