package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"oras.land/oras-go/v2/registry/remote"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/auth"
	"outpost.dev/outpost/internal/hub"
	"outpost.dev/outpost/internal/hub/hubtest"
	"outpost.dev/outpost/internal/outbox"
	"outpost.dev/outpost/internal/store"
	"outpost.dev/outpost/internal/testenv"
)

// testHub is a hub on an in-memory network (internal/hub/hubtest), with the
// agent tests' shorthands. Create it inside a synctest bubble: the hub, its
// clients and the agents then all run on the bubble's clock.
type testHub struct {
	*hubtest.Hub
	t      *testing.T
	url    string
	admin  string
	srv    *hub.Server
	client *http.Client
}

// newTestHub starts a hub; configure, if given, may change its Config.
func newTestHub(t *testing.T, configure ...func(*hub.Config)) *testHub {
	t.Helper()
	h := hubtest.New(t, configure...)
	return &testHub{Hub: h, t: t, url: hubtest.URL, admin: h.Admin, srv: h.Server, client: h.Client}
}

// close takes the hub off the network.
func (h *testHub) close() { h.Close() }

// partition cuts the hub off or heals the cut.
func (h *testHub) partition(cut bool) { h.Partition(cut) }

// repo opens models/<name> with the admin token.
func (h *testHub) repo(name string) *remote.Repository {
	return h.Repo(v1alpha1.ModelRepositoryPrefix + name)
}

func (h *testHub) push(dir, name, version string) ocispec.Descriptor {
	return h.Push(dir, name, version)
}

// api sends an admin request to the resource API.
func (h *testHub) api(method, path, contentType string, body []byte) (int, []byte) {
	h.t.Helper()
	return h.API(method, path, contentType, body)
}

func (h *testHub) deploy(name, model, version string, allowDowngrade bool) {
	h.t.Helper()
	y := fmt.Sprintf("apiVersion: ml.outpost.dev/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: %s\nspec:\n  model: {name: %s, version: %q}\n  clusterSelectors: [{matchLabels: {region: eu}}]\n  allowDowngrade: %v\n",
		name, model, version, allowDowngrade)
	if code, b := h.api(http.MethodPut, "/modeldeployments/"+name, "application/yaml", []byte(y)); code >= 300 {
		h.t.Fatalf("apply deployment: %d %s", code, b)
	}
}

func (h *testHub) joinToken() string { return h.JoinToken() }

// writeModel writes two versions of a synthetic model with an 8 MiB
// weights file; v2 changes the last 10% of the weights.
func writeModel(t *testing.T, v1, v2 string) {
	t.Helper()
	const n = 2 << 20
	rng := rand.New(rand.NewPCG(7, 8))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.05)
	}
	enc := func(w []float32) []byte {
		b := make([]byte, 4*len(w))
		for i, x := range w {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b
	}
	cfg := []byte(`{"architecture": "mlp"}` + "\n")
	for _, dir := range []string{v1, v2} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(v1, "weights.bin"), enc(w), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := n - n/10; i < n; i++ {
		w[i] += float32(rng.NormFloat64() * 0.01)
	}
	if err := os.WriteFile(filepath.Join(v2, "weights.bin"), enc(w), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls ok until it holds, failing after limit. In a synctest
// bubble both its sleeps and limit are on the bubble's clock.
func activeVersion(a *Agent, dep string) string {
	for _, m := range a.Active() {
		if m.Deployment == dep {
			return m.Version
		}
	}
	return ""
}

func modelStatus(t *testing.T, dir, dep string) DeploymentStatus {
	t.Helper()
	st, err := ReadStatus(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Models {
		if m.Deployment == dep {
			return m
		}
	}
	return DeploymentStatus{}
}

// sameFiles checks that the active model's files hold the bytes of dir.
func sameFiles(t *testing.T, m ActiveModel, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(m.Files) {
		t.Fatalf("active model has %d files, want %d", len(m.Files), len(ents))
	}
	for _, e := range ents {
		want, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		got, err := os.ReadFile(m.Files[e.Name()])
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("file %s differs from %s (err %v)", e.Name(), dir, err)
		}
	}
}

func startAgent(t *testing.T, cfg Config) (*Agent, context.CancelFunc, <-chan error) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		if testing.Verbose() {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
	}
	a, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("agent run: %v", err)
		}
		a.Close()
	}
	return a, stop, errc
}

func agentConfig(h *testHub, dir, joinToken string) Config {
	return Config{
		Dir: dir, Hub: h.url, HTTPClient: h.client, Name: "edge-1", Labels: map[string]string{"region": "eu"}, JoinToken: joinToken,
		PollTimeout: 2 * time.Second, ReportInterval: 200 * time.Millisecond,
		RetryBase: 20 * time.Millisecond, RetryMax: 500 * time.Millisecond, AgentVersion: "test",
	}
}

func TestAgentSync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t)
		src := t.TempDir()
		v1, v2 := filepath.Join(src, "v1"), filepath.Join(src, "v2")
		writeModel(t, v1, v2)
		h.push(v1, "demo", "1.0.0")
		h.deploy("fashion", "demo", ">=1.0.0", false)

		dir := filepath.Join(t.TempDir(), "agent")
		first := agentConfig(h, dir, h.joinToken())
		var activeChanges atomic.Int64
		first.OnActive = func() { activeChanges.Add(1) }
		a, stop, _ := startAgent(t, first)
		stopped := false
		defer func() {
			if !stopped {
				stop()
			}
		}()

		testenv.WaitFor(t, 30*time.Second, "v1 active", func() bool { return activeVersion(a, "fashion") == "1.0.0" })
		sameFiles(t, a.Active()[0], v1)
		if b, err := os.ReadFile(filepath.Join(dir, credentialFile)); err != nil || !strings.HasPrefix(string(b), auth.ClusterCredentialPrefix) {
			t.Fatalf("credential not stored: %q %v", b, err)
		}
		if fi, _ := os.Stat(filepath.Join(dir, credentialFile)); fi.Mode().Perm() != 0o600 {
			t.Errorf("credential mode %v, want 0600", fi.Mode().Perm())
		}

		// v2 changes 10% of the weights: at most 15% of its bytes cross the link.
		h.Served.Store(0)
		desc2 := h.push(v2, "demo", "1.1.0")
		testenv.WaitFor(t, 30*time.Second, "v2 active", func() bool { return activeVersion(a, "fashion") == "1.1.0" })
		sameFiles(t, a.Active()[0], v2)
		if n := activeChanges.Load(); n < 2 {
			t.Errorf("OnActive called %d times for two activations", n)
		}
		var v2Size int64
		for _, f := range []string{"weights.bin", "config.json"} {
			fi, _ := os.Stat(filepath.Join(v2, f))
			v2Size += fi.Size()
		}
		served := h.Served.Load()
		t.Logf("v2: %d of %d bytes fetched (%.1f%%)", served, v2Size, 100*float64(served)/float64(v2Size))
		if served > v2Size*15/100 {
			t.Errorf("fetched %d bytes of v2's %d: more than 15%%", served, v2Size)
		}
		st := modelStatus(t, dir, "fashion")
		if st.Phase != v1alpha1.PhaseActive || st.ActiveDigest != desc2.Digest.String() || st.BytesOwed != 0 || st.Error != "" {
			t.Errorf("status after v2: %+v", st)
		}
		if st.BytesTotal <= 0 || st.BytesTotal > v2Size*15/100 {
			t.Errorf("bytesTotal %d, want the missing bytes (0, %d]", st.BytesTotal, v2Size*15/100)
		}

		// The hub hears about it: the deployment's row for the cluster shows v2 active.
		testenv.WaitFor(t, 10*time.Second, "hub sees v2 active", func() bool {
			code, b := h.api(http.MethodGet, "/modeldeployments/fashion", "", nil)
			if code != http.StatusOK {
				return false
			}
			var md v1alpha1.ModelDeployment
			if json.Unmarshal(b, &md) != nil {
				return false
			}
			for _, c := range md.Status.Clusters {
				if c.Cluster == "edge-1" && c.ActiveVersion == "1.1.0" && c.Phase == v1alpha1.PhaseActive {
					return true
				}
			}
			return false
		})

		// A lower version without allowDowngrade is refused, and 1.1.0 keeps serving.
		h.deploy("fashion", "demo", "1.0.0", false)
		testenv.WaitFor(t, 10*time.Second, "downgrade refused", func() bool {
			return modelStatus(t, dir, "fashion").Error == "downgrade from 1.1.0 to 1.0.0 refused: allowDowngrade is false"
		})
		if v := activeVersion(a, "fashion"); v != "1.1.0" {
			t.Fatalf("active %q after a refused downgrade, want 1.1.0", v)
		}
		if st := modelStatus(t, dir, "fashion"); st.Phase != v1alpha1.PhaseFailed {
			t.Errorf("phase %s after refused downgrade, want Failed", st.Phase)
		}
		// With allowDowngrade it happens, from the cache (the previous version was kept), and is flagged.
		h.Served.Store(0)
		h.deploy("fashion", "demo", "1.0.0", true)
		testenv.WaitFor(t, 10*time.Second, "downgrade done", func() bool { return activeVersion(a, "fashion") == "1.0.0" })
		sameFiles(t, a.Active()[0], v1)
		if n := h.Served.Load(); n != 0 {
			t.Errorf("downgrade to a cached version fetched %d bytes", n)
		}
		if st := modelStatus(t, dir, "fashion"); st.DowngradedFrom != "1.1.0" || st.Error != "" {
			t.Errorf("downgrade not flagged: %+v", st)
		}
		rep, err := a.Report(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if c := findCondition(rep.Status.Conditions, ConditionDowngraded); c == nil || c.Status != "True" {
			t.Errorf("report lacks a Downgraded=True condition: %+v", rep.Status.Conditions)
		}
		h.deploy("fashion", "demo", ">=1.0.0", false)
		testenv.WaitFor(t, 10*time.Second, "back to v2", func() bool { return activeVersion(a, "fashion") == "1.1.0" })

		// A stale desired state, here from a bundle, is refused and counted.
		applied, err := a.state.applied(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		stale := &v1alpha1.DesiredState{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindDesiredState, Cluster: "edge-1",
			Revision: applied.Revision - 1, Models: []v1alpha1.DesiredModel{{Deployment: "fashion", Model: "demo", Version: "1.0.0",
				Digest: a.Active()[0].Digest, AllowDowngrade: true}}}
		d, err := a.Apply(t.Context(), stale, SourceBundle)
		if err != nil || d.Verdict != RejectStale {
			t.Fatalf("stale bundle: %v %v", d.Verdict, err)
		}
		if s, _ := ReadStatus(t.Context(), dir); s.RejectedStale != 1 || s.AppliedRevision != applied.Revision {
			t.Errorf("after stale bundle: rejected %d applied %d, want 1 and %d", s.RejectedStale, s.AppliedRevision, applied.Revision)
		}

		// A desired state naming a digest the hub lacks: clear error, v2 keeps serving.
		missing := digest.FromString("no such manifest").String()
		bad := &v1alpha1.DesiredState{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindDesiredState, Cluster: "edge-1",
			Revision: applied.Revision + 1, Models: []v1alpha1.DesiredModel{{Deployment: "fashion", Model: "demo", Version: "1.2.0", Digest: missing}}}
		if d, err := a.Apply(t.Context(), bad, SourceBundle); err != nil || d.Verdict != Apply {
			t.Fatalf("apply: %v %v", d.Verdict, err)
		}
		testenv.WaitFor(t, 10*time.Second, "missing digest error", func() bool {
			return strings.Contains(modelStatus(t, dir, "fashion").Error, "manifest "+missing+" of demo@1.2.0 not found")
		})
		if v := activeVersion(a, "fashion"); v != "1.1.0" {
			t.Fatalf("active %q with a missing desired digest, want 1.1.0", v)
		}

		// Restart with the hub gone: the last active version serves at once, status reads locally.
		stop()
		stopped = true
		h.close()
		cfg := agentConfig(h, dir, "")
		cfg.Logger = slog.New(slog.DiscardHandler)
		b, err := New(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		act := b.Active()
		if len(act) != 1 || act[0].Version != "1.1.0" {
			t.Fatalf("after restart with no hub: active %+v, want fashion@1.1.0", act)
		}
		sameFiles(t, act[0], v2)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- b.Run(ctx) }()
		<-b.Ready()
		s, err := ReadStatus(t.Context(), dir)
		if err != nil {
			t.Fatal(err)
		}
		if s.Cluster != "edge-1" || s.LastContact == nil || len(s.Models) != 1 || s.Models[0].ActiveVersion != "1.1.0" {
			t.Errorf("offline status: %+v", s)
		}
		if got := activeVersion(b, "fashion"); got != "1.1.0" {
			t.Errorf("active %q while offline", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("offline run: %v", err)
		}
	})
}

func findCondition(cs []metav1.Condition, typ string) *metav1.Condition {
	for i := range cs {
		if cs[i].Type == typ {
			return &cs[i]
		}
	}
	return nil
}

// TestAgentSignatureAndGC: with signatures required, an unsigned or wrongly
// signed version is never activated and the status says why; once signed by
// a trusted key it activates. With no previous versions kept, garbage
// collection removes the replaced version's blobs but none of the active one.
func TestAgentSignatureAndGC(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t)
		src := t.TempDir()
		v1, v2 := filepath.Join(src, "v1"), filepath.Join(src, "v2")
		writeModel(t, v1, v2)
		pub, key, err := artifact.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		_, otherKey, err := artifact.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		desc1 := h.push(v1, "demo", "1.0.0")
		h.deploy("fashion", "demo", ">=1.0.0", false)

		dir := filepath.Join(t.TempDir(), "agent")
		cfg := agentConfig(h, dir, h.joinToken())
		cfg.RequireSignature, cfg.TrustedKeys, cfg.KeepVersions = true, []ed25519.PublicKey{pub}, -1
		a, stop, _ := startAgent(t, cfg)
		defer stop()

		testenv.WaitFor(t, 10*time.Second, "unsigned refused", func() bool {
			return modelStatus(t, dir, "fashion").Error == "signature required for demo@1.0.0: the model is not signed"
		})
		if _, err := artifact.Sign(t.Context(), h.repo("demo"), desc1, "models/demo:1.0.0", otherKey); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 10*time.Second, "untrusted signature refused", func() bool {
			return strings.HasPrefix(modelStatus(t, dir, "fashion").Error, "signature of demo@1.0.0 invalid")
		})
		if n := len(a.Active()); n != 0 {
			t.Fatalf("%d models active without a trusted signature", n)
		}
		if _, err := artifact.Sign(t.Context(), h.repo("demo"), desc1, "models/demo:1.0.0", key); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 10*time.Second, "v1 active once signed", func() bool { return activeVersion(a, "fashion") == "1.0.0" })

		desc2 := h.push(v2, "demo", "1.1.0")
		if _, err := artifact.Sign(t.Context(), h.repo("demo"), desc2, "models/demo:1.1.0", key); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 10*time.Second, "v2 active", func() bool { return activeVersion(a, "fashion") == "1.1.0" })
		sameFiles(t, a.Active()[0], v2)
		weights := func(dir string) string {
			b, _ := os.ReadFile(filepath.Join(dir, "weights.bin"))
			return filepath.Join(a.cache.root, "blobs", "sha256", digest.FromBytes(b).Encoded())
		}
		testenv.WaitFor(t, 10*time.Second, "v1 weights collected", func() bool {
			_, err := os.Stat(weights(v1))
			return os.IsNotExist(err)
		})
		if _, err := os.Stat(weights(v2)); err != nil {
			t.Fatalf("active weights collected: %v", err)
		}
		if _, err := os.Stat(filepath.Join(a.cache.root, "blobs", "sha256", desc1.Digest.Encoded())); !os.IsNotExist(err) {
			t.Errorf("v1 manifest still cached: %v", err)
		}
		ib, _ := os.ReadFile(filepath.Join(a.cache.root, "index.json"))
		if strings.Contains(string(ib), desc1.Digest.String()) || !strings.Contains(string(ib), desc2.Digest.String()) {
			t.Errorf("index.json after GC: %s", ib)
		}
	})
}

// TestAgentSizeMismatchIsPermanent: a hub whose blob is not the size the
// manifest says (here cut short on its way out) fails the version for good:
// the status says why, no partial file stays in the cache, and the agent
// does not fetch the same digest again; another version syncs as usual.
func TestAgentSizeMismatchIsPermanent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t)
		src := t.TempDir()
		weights := make([]byte, 3<<20)
		r := rand.New(rand.NewPCG(3, 4))
		for i := range weights {
			weights[i] = byte(r.Uint32())
		}
		if err := os.WriteFile(filepath.Join(src, "model.onnx"), weights, 0o644); err != nil {
			t.Fatal(err)
		}
		h.push(src, "lie", "1.0.0")
		wd := digest.FromBytes(weights)
		var requests atomic.Int64
		cut := func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.HasSuffix(r.URL.Path, "/blobs/"+wd.String()) {
				return false
			}
			requests.Add(1)
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(weights[:len(weights)/2]))
			return true
		}
		h.Blobs.Store(&cut)
		h.deploy("lie", "lie", "1.0.0", false)
		dir := filepath.Join(t.TempDir(), "agent")
		a, stop, _ := startAgent(t, agentConfig(h, dir, h.joinToken()))
		defer stop()

		testenv.WaitFor(t, 10*time.Second, "size mismatch reported", func() bool {
			st := modelStatus(t, dir, "lie")
			return st.Phase == v1alpha1.PhaseFailed && strings.Contains(st.Error, fmt.Sprintf("is %d bytes, want %d", len(weights)/2, len(weights)))
		})
		if st := modelStatus(t, dir, "lie"); !strings.Contains(st.Error, "not retried") {
			t.Errorf("status error %q does not say the failure is permanent", st.Error)
		}
		n := requests.Load()
		// Many retry periods (RetryMax is 500 ms) pass on the bubble's clock.
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := requests.Load(); got != n {
			t.Errorf("the agent asked for the broken blob %d more times", got-n)
		}
		parts, _ := filepath.Glob(filepath.Join(a.cache.root, "blobs", "sha256", "*.part*"))
		if len(parts) != 0 {
			t.Errorf("partial files left in the cache: %v", parts)
		}
		if len(a.Active()) != 0 {
			t.Fatalf("a version with a broken blob is active: %+v", a.Active())
		}

		// Another version, served whole, syncs.
		h.Blobs.Store(nil)
		weights[0] ^= 0xff
		if err := os.WriteFile(filepath.Join(src, "model.onnx"), weights, 0o644); err != nil {
			t.Fatal(err)
		}
		h.push(src, "lie", "1.0.1")
		h.deploy("lie", "lie", "1.0.1", false)
		testenv.WaitFor(t, 10*time.Second, "1.0.1 active", func() bool { return activeVersion(a, "lie") == "1.0.1" })
	})
}

// TestAgentBandwidthLimit: --max-bandwidth caps model transfers.
func TestAgentBandwidthLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newTestHub(t)
		src := t.TempDir()
		b := make([]byte, 3<<20)
		r := rand.New(rand.NewPCG(1, 1))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if err := os.WriteFile(filepath.Join(src, "model.onnx"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		h.push(src, "big", "1.0.0")
		h.deploy("big", "big", "1.0.0", false)
		cfg := agentConfig(h, filepath.Join(t.TempDir(), "agent"), h.joinToken())
		cfg.MaxBandwidth = 2 << 20
		start := time.Now()
		a, stop, _ := startAgent(t, cfg)
		defer stop()
		testenv.WaitFor(t, 20*time.Second, "model active", func() bool { return activeVersion(a, "big") == "1.0.0" })
		// 3 MiB at 2 MiB/s, less the limiter's initial burst of 512 KiB, is
		// 1.25 s of the bubble's clock, which the agent's limiter waits on.
		if d := time.Since(start); d < time.Second {
			t.Errorf("3 MiB arrived in %v under a 2 MiB/s limit", d)
		}
	})
}

// appliedLog is a hub record handler that counts how often each key is applied.
type appliedLog struct {
	mu   sync.Mutex
	keys map[string]int
}

func (l *appliedLog) handle(ctx context.Context, tx *store.Tx, cluster string, rec v1alpha1.OutboxRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys[rec.Key]++
	return nil
}

// counts returns how many keys were applied, and how many more than once.
func (l *appliedLog) counts() (keys, twice int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.keys {
		if n > 1 {
			twice++
		}
	}
	return len(l.keys), twice
}

// TestAgentOutbox: every record put in the outbox reaches the hub once,
// through lost answers, a partition and a restart of the agent.
func TestAgentOutbox(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		applied := &appliedLog{keys: map[string]int{}}
		h := newTestHub(t, func(cfg *hub.Config) {
			cfg.Records = map[string]hub.RecordHandler{"test.note": applied.handle}
		})
		dir := filepath.Join(t.TempDir(), "agent")
		cfg := agentConfig(h, dir, h.joinToken())
		a, stop, _ := startAgent(t, cfg)
		<-a.Ready()
		put := func(a *Agent, from, to int) {
			t.Helper()
			for i := from; i < to; i++ {
				rec := outbox.Record{Key: fmt.Sprintf("note/%04d", i), Kind: "test.note", Priority: outbox.PriorityMetrics,
					Payload: []byte(fmt.Sprintf(`{"i":%d}`, i))}
				if added, err := a.Outbox().Put(t.Context(), rec); err != nil || !added {
					t.Fatalf("put %s: %v %v", rec.Key, added, err)
				}
			}
		}
		delivered := func(n int) func() bool {
			return func() bool {
				keys, _ := applied.counts()
				st, err := a.Outbox().Stats(t.Context())
				return err == nil && keys == n && st.Records == 0
			}
		}
		put(a, 0, 50)
		testenv.WaitFor(t, time.Minute, "50 records at the hub", delivered(50))

		// The hub applies the next two batches but their answers are lost: the
		// agent sends them again and the hub recognises the keys.
		h.Lose.Store(2)
		put(a, 50, 70)
		testenv.WaitFor(t, time.Minute, "70 records at the hub", delivered(70))
		if h.Lose.Load() >= 0 {
			t.Fatal("no answer was lost")
		}

		// Cut off, the agent keeps records; restarted while cut off, it still
		// has them; healed, it sends them.
		h.partition(true)
		put(a, 70, 90)
		stop()
		if st, err := outbox.ReadStats(t.Context(), openTestDB(t, filepath.Join(dir, dbFile))); err != nil || st.Records != 20 {
			t.Fatalf("while cut off and stopped: %+v %v, want 20 records waiting", st, err)
		}
		a, stop, _ = startAgent(t, cfg)
		defer stop()
		h.partition(false)
		testenv.WaitFor(t, time.Minute, "90 records at the hub", delivered(90))
		if keys, twice := applied.counts(); keys != 90 || twice != 0 {
			t.Errorf("the hub applied %d keys, %d of them more than once", keys, twice)
		}
		rep, err := a.Report(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if rep.Status.Outbox != nil {
			t.Errorf("report's outbox %+v with nothing waiting or given up", rep.Status.Outbox)
		}
	})
}

func openTestDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
