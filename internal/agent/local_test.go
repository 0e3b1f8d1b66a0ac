package agent

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"oras.land/oras-go/v2/content/memory"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/testenv"
)

// TestDeployLocal: a version produced on the cluster becomes active with no
// hub involved, survives a restart, stays active while the hub desires the
// version it was derived from, and gives way when the hub desires a higher
// one. A version not higher than the active one is refused.
func TestDeployLocal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t)
		src := t.TempDir()
		v1, v2 := filepath.Join(src, "v1"), filepath.Join(src, "v2")
		writeModel(t, v1, v2)
		h.push(v1, "demo", "1.0.0")
		h.deploy("fashion", "demo", ">=1.0.0", false)

		dir := filepath.Join(t.TempDir(), "agent")
		cfg := agentConfig(h, dir, h.joinToken())
		var evMu sync.Mutex
		var events []string
		cfg.OnEvent = func(ev Event) {
			evMu.Lock()
			defer evMu.Unlock()
			events = append(events, fmt.Sprintf("%s %s %s", ev.Type, ev.Deployment, ev.Version))
		}
		a, stop, _ := startAgent(t, cfg)
		testenv.WaitFor(t, 30*time.Second, "v1 active", func() bool { return activeVersion(a, "fashion") == "1.0.0" })

		// The pipeline's output: v2's files as demo 1.0.1-edge.1, in a store of its own.
		store := memory.New()
		desc, err := artifact.Push(t.Context(), store, v2, artifact.PushOptions{Name: "demo", Version: "1.0.1-edge.1", Parent: "demo@1.0.0",
			Profile: testProfile(t, 50)})
		if err != nil {
			t.Fatal(err)
		}
		lv := LocalVersion{Deployment: "fashion", Model: "demo", Version: "1.0.1-edge.1", Manifest: desc, Store: store}

		h.partition(true) // no hub needed
		prev, err := a.DeployLocal(t.Context(), lv)
		if err != nil || prev != "1.0.0" {
			t.Fatalf("DeployLocal = %q, %v; want 1.0.0 replaced", prev, err)
		}
		if got := activeVersion(a, "fashion"); got != "1.0.1-edge.1" {
			t.Fatalf("active %q after DeployLocal", got)
		}
		sameFiles(t, a.Active()[0], v2)
		if ref := a.Active()[0].Reference; ref == "" {
			t.Error("the local version's reference profile is not used for monitoring")
		} else if b, err := os.ReadFile(ref); err != nil || !bytes.Equal(b, testProfile(t, 50)) {
			t.Errorf("reference profile %s: %v", ref, err)
		}
		// Again: nothing changes.
		if prev, err := a.DeployLocal(t.Context(), lv); err != nil || prev != "1.0.1-edge.1" {
			t.Fatalf("second DeployLocal = %q, %v", prev, err)
		}
		// Backwards is refused, and so is another deployment's model or an unknown deployment.
		old, err := artifact.Push(t.Context(), store, v1, artifact.PushOptions{Name: "demo", Version: "1.0.0-edge.1"})
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []struct {
			lv   LocalVersion
			want string
		}{
			{LocalVersion{Deployment: "fashion", Model: "demo", Version: "1.0.0-edge.1", Manifest: old, Store: store}, "never goes backwards"},
			{LocalVersion{Deployment: "fashion", Model: "other", Version: "9.0.0", Manifest: old, Store: store}, "serves model demo"},
			{LocalVersion{Deployment: "nope", Model: "demo", Version: "9.0.0", Manifest: old, Store: store}, "not on this cluster"},
		} {
			if _, err := a.DeployLocal(t.Context(), bad.lv); err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Errorf("DeployLocal(%s@%s to %s) = %v, want %q", bad.lv.Model, bad.lv.Version, bad.lv.Deployment, err, bad.want)
			}
		}
		if got := activeVersion(a, "fashion"); got != "1.0.1-edge.1" {
			t.Fatalf("a refused deploy changed the active version to %q", got)
		}
		stop()

		// Restarted with the link still down, it serves the local version from its cache.
		a, stop, _ = startAgent(t, cfg)
		if got := activeVersion(a, "fashion"); got != "1.0.1-edge.1" {
			t.Fatalf("after restart: active %q", got)
		}
		sameFiles(t, a.Active()[0], v2)

		// The hub's desired state changes (a new revision) but still wants 1.0.0: the local
		// version stays, and its status is Active, not a refused downgrade.
		h.partition(false)
		h.deploy("fashion", "demo", ">=1.0.0 <1.1.0", false)
		testenv.WaitFor(t, 30*time.Second, "new revision applied", func() bool {
			st := modelStatus(t, dir, "fashion")
			return st.DesiredVersion == "1.0.0" && st.Phase == v1alpha1.PhaseActive
		})
		if st := modelStatus(t, dir, "fashion"); st.ActiveVersion != "1.0.1-edge.1" || st.Error != "" || st.BytesOwed != 0 {
			t.Fatalf("status while keeping the local version: %+v", st)
		}

		// The fleet moves on: 1.1.0 replaces the local version.
		h.push(v1, "demo", "1.1.0")
		h.deploy("fashion", "demo", ">=1.0.0", false)
		testenv.WaitFor(t, 30*time.Second, "1.1.0 active", func() bool { return activeVersion(a, "fashion") == "1.1.0" })
		sameFiles(t, a.Active()[0], v1)
		stop()
		// Each version the hub sent is a NewVersion event (pipelines' trigger); a local one is not.
		evMu.Lock()
		defer evMu.Unlock()
		if got := strings.Join(events, "; "); got != "NewVersion fashion 1.0.0; NewVersion fashion 1.1.0" {
			t.Errorf("events: %s", got)
		}
	})
}

// TestUploadLocal: a version produced here reaches the hub's edge
// repository with its manifest digest (and so its lineage) and its chunk
// index; a second upload sends nothing.
func TestUploadLocal(t *testing.T) {
	h := newTestHub(t)
	src := t.TempDir()
	v1, v2 := filepath.Join(src, "v1"), filepath.Join(src, "v2")
	writeModel(t, v1, v2)
	store := memory.New()
	desc, err := artifact.Push(t.Context(), store, v2, artifact.PushOptions{Name: "demo", Version: "1.0.1-edge.1",
		Parent: "demo@1.0.0", ProducedBy: "pipeline/retrain/run/retrain-1"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := agentConfig(h, filepath.Join(t.TempDir(), "agent"), "")
	cfg.Credential = h.admin
	a, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	lv := LocalVersion{Deployment: "fashion", Model: "demo", Version: "1.0.1-edge.1", Manifest: desc, Store: store}
	st, err := a.UploadLocal(t.Context(), lv)
	if err != nil {
		t.Fatal(err)
	}
	if st.Blobs < 3 || st.Bytes < 8<<20 {
		t.Errorf("first upload sent %d blobs, %d bytes: want the files, config and chunk index", st.Blobs, st.Bytes)
	}
	r := h.Repo("edge/edge-1/demo")
	got, err := r.Resolve(t.Context(), "1.0.1-edge.1")
	if err != nil || got.Digest != desc.Digest {
		t.Fatalf("hub resolves edge/edge-1/demo:1.0.1-edge.1 to %v, %v; want %s", got.Digest, err, desc.Digest)
	}
	info, err := artifact.Inspect(t.Context(), r, "1.0.1-edge.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Lineage.Parent != "demo@1.0.0" || info.Lineage.ProducedBy != "pipeline/retrain/run/retrain-1" || !info.HasChunkIndex {
		t.Errorf("hub's view of the version: lineage %+v, chunk index %v", info.Lineage, info.HasChunkIndex)
	}
	again, err := a.UploadLocal(t.Context(), lv)
	if err != nil || again.Blobs != 0 {
		t.Fatalf("second upload: %+v, %v; want nothing sent", again, err)
	}
}

// TestDeployLocalUnsigned: a deployment that serves only signed versions
// refuses a version produced here, which nobody signed.
func TestDeployLocalUnsigned(t *testing.T) {
	a, err := New(t.Context(), Config{Dir: t.TempDir(), Name: "edge-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	doc := &v1alpha1.DesiredState{Cluster: "edge-1", Revision: 1, Models: []v1alpha1.DesiredModel{{
		Deployment: "fashion", Model: "demo", Version: "1.0.0", RequireSignature: true,
		Digest: "sha256:" + strings.Repeat("a", 64)}}}
	if d, err := a.Apply(t.Context(), doc, SourceNetwork); err != nil || d.Verdict != Apply {
		t.Fatalf("Apply = %v, %v", d.Verdict, err)
	}
	src := t.TempDir()
	writeModel(t, filepath.Join(src, "v1"), filepath.Join(src, "v2"))
	store := memory.New()
	desc, err := artifact.Push(t.Context(), store, filepath.Join(src, "v2"), artifact.PushOptions{Name: "demo", Version: "1.0.1-edge.1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.DeployLocal(t.Context(), LocalVersion{Deployment: "fashion", Model: "demo", Version: "1.0.1-edge.1", Manifest: desc, Store: store})
	if err == nil || !strings.Contains(err.Error(), "serves only versions signed") || !strings.Contains(err.Error(), "outpost model promote edge/edge-1/demo@1.0.1-edge.1") {
		t.Fatalf("DeployLocal of an unsigned version under requireSignature: %v", err)
	}
	if len(a.Active()) != 0 {
		t.Fatalf("a refused deploy activated %v", a.Active())
	}
}
