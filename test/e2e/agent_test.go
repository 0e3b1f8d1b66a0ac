package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/linksim"
	"outpost.dev/outpost/internal/testenv"
)

// agentProc is an agent process behind its own simulated link to the hub.
type agentProc struct {
	t      *testing.T
	h      *hub
	name   string
	dir    string
	labels string
	link   *linksim.Link
	cmd    *exec.Cmd
	log    *testenv.Buffer
	extra  []string
	joined bool
	token  string
	// defaultServe leaves the inference address to the agent's default
	// (8080, or a free port when taken); otherwise a free port serves.
	defaultServe bool
}

// newAgent sets up an agent's link and data directory; start runs it.
func newAgent(t *testing.T, h *hub, name, labels, joinToken string, extra ...string) *agentProc {
	t.Helper()
	link, err := linksim.Listen(h.addr, linksim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { link.Close() })
	a := &agentProc{t: t, h: h, name: name, dir: filepath.Join(t.TempDir(), name), labels: labels, link: link, token: joinToken, extra: extra, log: &testenv.Buffer{}}
	t.Cleanup(func() {
		if a.cmd != nil {
			stop(a.cmd)
			a.cmd = nil
		}
		if t.Failed() {
			t.Logf("agent %s log:\n%s", name, tail(a.log.String(), 4000))
		}
	})
	return a
}

func (a *agentProc) start() {
	a.t.Helper()
	ready := filepath.Join(a.dir, "ready")
	os.Remove(ready)
	args := []string{"agent", "--hub", "https://" + a.link.Addr(), "--data", a.dir, "--name", a.name,
		"--labels", a.labels, "--ca-file", a.h.caFile(), "--ready-file", ready,
		"--poll-timeout", "5s", "--report-interval", "1s"}
	if !a.joined {
		args = append(args, "--join-token", a.token)
	}
	if !a.defaultServe && !slices.Contains(a.extra, "--serve") {
		// Off the default 8080, which tests of other packages take turns
		// on (testenv.TakeFixedPorts).
		args = append(args, "--serve", "127.0.0.1:0")
	}
	a.cmd = exec.Command(outpostBin, append(args, a.extra...)...)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	testenv.WaitFor(a.t, 60*time.Second, "agent "+a.name+" ready", func() bool {
		_, err := os.Stat(ready)
		return err == nil
	})
	a.joined = true
}

// kill stops the agent with SIGKILL: no chance to clean up.
func (a *agentProc) kill() {
	if a.cmd != nil && a.cmd.Process != nil {
		a.cmd.Process.Signal(syscall.SIGKILL)
		a.cmd.Wait()
		a.cmd = nil
	}
}

// status reads the agent's local status, as 'outpost agent status' prints it.
func (a *agentProc) status() agentStatus {
	a.t.Helper()
	out, err := exec.Command(outpostBin, "agent", "status", "--data", a.dir, "-o", "json").Output()
	if err != nil {
		a.t.Fatalf("agent status %s: %v", a.name, err)
	}
	var s agentStatus
	if err := json.Unmarshal(out, &s); err != nil {
		a.t.Fatalf("agent status %s: %v\n%s", a.name, err, out)
	}
	return s
}

// agentStatus is the part of 'outpost agent status -o json' the tests read.
type agentStatus struct {
	AppliedRevision int64 `json:"appliedRevision"`
	RejectedStale   int64 `json:"rejectedStale"`
	Models          []struct {
		Deployment     string `json:"deployment"`
		ActiveVersion  string `json:"activeVersion"`
		ActiveDigest   string `json:"activeDigest"`
		DesiredVersion string `json:"desiredVersion"`
		Phase          string `json:"phase"`
		Error          string `json:"error"`
	} `json:"models"`
	Outbox struct {
		Records int64 `json:"records"`
	} `json:"outbox"`
}

// outboxRecords is how many records wait in the agent's outbox.
func (s agentStatus) outboxRecords() int64 { return s.Outbox.Records }

func (s agentStatus) active(deployment string) string {
	for _, m := range s.Models {
		if m.Deployment == deployment {
			return m.ActiveVersion
		}
	}
	return ""
}

func (s agentStatus) errorOf(deployment string) string {
	for _, m := range s.Models {
		if m.Deployment == deployment {
			return m.Error
		}
	}
	return ""
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// writeWeights writes a model folder whose weights file changes in its last
// tenth between versions, as a fine-tune of the last layers does.
func writeWeights(t *testing.T, dir string, version int) {
	t.Helper()
	const n = 2 << 20 // 8 MiB of float32
	rng := rand.New(rand.NewPCG(42, 42))
	b := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		w := float32(rng.NormFloat64())
		if i >= n-n/10 {
			w += float32(version) * 0.01
		}
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(w))
	}
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"layers": 3}`), 0o644)
}

func applyYAML(t *testing.T, h *hub, doc string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "spec.yaml")
	os.WriteFile(f, []byte(doc), 0o644)
	h.mustRun("apply", "-f", f)
}

func deployment(name, model, version, selector string, extra string) string {
	return fmt.Sprintf(`apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata: {name: %s}
spec:
  model: {name: %s, version: %q}
  clusterSelectors:
  - matchLabels: {%s}
%s`, name, model, version, selector, extra)
}

func joinToken(t *testing.T, h *hub, ttl string) string {
	t.Helper()
	out := h.mustRun("cluster", "token", "create", "--ttl", ttl)
	for _, f := range strings.Fields(out) {
		if strings.HasPrefix(f, "opj_") {
			return f
		}
	}
	t.Fatalf("no token in: %s", out)
	return ""
}

// fileDigest hashes a file.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	d, err := digest.FromReader(f)
	return d.String(), err
}

// hubDeployment reads a ModelDeployment from the hub.
func hubDeployment(t *testing.T, h *hub, name string) v1alpha1.ModelDeployment {
	t.Helper()
	var d v1alpha1.ModelDeployment
	if err := json.Unmarshal([]byte(h.mustRun("get", "modeldeployment", name, "-o", "json")), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// weightsSize is the size of writeWeights' file.
const weightsSize = 8 << 20

// maxChunk is the largest chunk of a model that small (ChunkParamsForSize).
const maxChunk = 256 << 10

// fleet is a hub with three agents, each behind its own link.
type fleet struct {
	h      *hub
	agents []*agentProc
	src    string
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	h := startHub(t, "--offline-after", "5s")
	f := &fleet{h: h, src: t.TempDir()}
	tok := joinToken(t, h, "1h")
	for i, region := range []string{"north", "south", "east"} {
		a := newAgent(t, h, fmt.Sprintf("edge-%d", i), "tier=edge,region="+region, tok)
		a.start()
		f.agents = append(f.agents, a)
	}
	return f
}

// push pushes version 1.N.0 of model w, whose weights differ from 1.(N-1).0 in their last tenth.
func (f *fleet) push(t *testing.T, n int) string {
	t.Helper()
	dir := filepath.Join(f.src, fmt.Sprint(n))
	writeWeights(t, dir, n)
	v := fmt.Sprintf("1.%d.0", n)
	f.h.mustRun("model", "push", dir, "--name", "w", "--version", v)
	return v
}

// waitActive waits until every agent in as serves version v of deployment w.
func waitActive(t *testing.T, limit time.Duration, v string, as ...*agentProc) {
	t.Helper()
	for _, a := range as {
		testenv.WaitFor(t, limit, a.name+" active at "+v, func() bool { return a.status().active("w") == v })
	}
}

// checkBlobs re-hashes every blob in an agent's cache: a blob is only ever
// visible under its name once every byte matches (DESIGN invariants 2 and 5).
func checkBlobs(t *testing.T, a *agentProc) {
	t.Helper()
	blobs, _ := filepath.Glob(filepath.Join(a.dir, "cache", "blobs", "sha256", "*"))
	if len(blobs) == 0 {
		t.Fatalf("%s: empty cache", a.name)
	}
	for _, b := range blobs {
		if strings.Contains(filepath.Base(b), ".") {
			continue // a .part file of a transfer in progress
		}
		got, err := fileDigest(b)
		if errors.Is(err, fs.ErrNotExist) {
			continue // collected by the agent since the listing: no longer visible
		}
		if err != nil {
			t.Fatal(err)
		}
		if got != "sha256:"+filepath.Base(b) {
			t.Fatalf("%s: blob %s holds %s", a.name, filepath.Base(b), got)
		}
	}
}

// TestAgentsSyncUnderFaults runs a hub and three agent processes behind
// simulated links and checks, in order: delta transfers, resume after a
// cut, corruption, then random partitions and kill -9 during transfers.
func TestAgentsSyncUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub and three agents for about a minute")
	}
	f := newFleet(t)
	f.push(t, 0)
	applyYAML(t, f.h, deployment("w", "w", "^1.0", "tier: edge", ""))
	waitActive(t, 60*time.Second, "1.0.0", f.agents...)

	t.Run("delta", func(t *testing.T) {
		for _, a := range f.agents {
			a.link.ResetStats()
		}
		v := f.push(t, 1)
		waitActive(t, 60*time.Second, v, f.agents...)
		for _, a := range f.agents {
			down := a.link.Stats().Down
			t.Logf("%s fetched %d bytes for %s (%.1f%% of %d)", a.name, down, v, 100*float64(down)/weightsSize, weightsSize)
			if down > weightsSize*15/100 {
				t.Errorf("%s: %d bytes crossed the link for a 10%% change, more than 15%% of %d", a.name, down, weightsSize)
			}
		}
	})

	t.Run("resume after a cut at 60%", func(t *testing.T) {
		cut, ref := f.agents[0], f.agents[1]
		cut.link.ResetStats()
		ref.link.ResetStats()
		// About 60% of what a 10% change costs (see the delta step).
		cut.link.CutDownAfter(weightsSize / 10 * 6 / 10)
		v := f.push(t, 2)
		waitActive(t, 60*time.Second, v, cut, ref)
		c, r := cut.link.Stats(), ref.link.Stats()
		t.Logf("cut link: %d bytes down, %d cuts; uncut link: %d bytes down", c.Down, c.Cut, r.Down)
		if c.Cut == 0 {
			t.Fatal("the link was never cut")
		}
		// Control traffic (long-polls, reports, TLS handshakes) differs a little between agents.
		if slack := int64(maxChunk + 64<<10); c.Down > r.Down+slack {
			t.Errorf("the cut transfer cost %d bytes, the uncut one %d: more than one chunk extra", c.Down, r.Down)
		}
	})

	t.Run("corruption", func(t *testing.T) {
		a := f.agents[1]
		a.link.CorruptDown(150_000)
		v := f.push(t, 3)
		waitActive(t, 90*time.Second, v, a)
		a.link.CorruptDown(0)
		if a.link.Stats().Corrupted == 0 {
			t.Fatal("no byte was corrupted")
		}
		checkBlobs(t, a)
		waitActive(t, 60*time.Second, v, f.agents...)
	})

	t.Run("partitions and kill -9", func(t *testing.T) {
		seed := uint64(time.Now().UnixNano())
		if s := os.Getenv("OUTPOST_E2E_SEED"); s != "" {
			var err error
			if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
				t.Fatalf("OUTPOST_E2E_SEED: %v", err)
			}
		}
		t.Logf("faults drawn from seed %d (OUTPOST_E2E_SEED=%d replays them)", seed, seed)
		rng := rand.New(rand.NewPCG(seed, 1))
		highest := map[string]string{}
		observe := func() {
			for _, a := range f.agents {
				v := a.status().active("w")
				if prev := highest[a.name]; prev != "" && v != "" && compareVersions(v, prev) < 0 {
					t.Fatalf("%s went back from %s to %s", a.name, prev, v)
				}
				if v != "" {
					highest[a.name] = v
				}
			}
		}
		var last string
		for round := 4; round < 8; round++ {
			for _, a := range f.agents {
				a.link.SetBandwidth(4 << 20) // slow enough for faults to land mid-transfer
			}
			last = f.push(t, round)
			for step := 0; step < 6; step++ {
				a := f.agents[rng.IntN(len(f.agents))]
				switch rng.IntN(3) {
				case 0:
					a.link.Partition(true)
				case 1:
					a.link.Partition(false)
				case 2:
					if a.cmd != nil {
						a.kill()
						observe()
						a.start()
					}
				}
				observe()
				time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
			}
		}
		// Heal everything; every agent must converge within the bound.
		start := time.Now()
		for _, a := range f.agents {
			a.link.Partition(false)
			a.link.SetBandwidth(0)
		}
		waitActive(t, 90*time.Second, last, f.agents...)
		t.Logf("all agents converged on %s %.1fs after healing", last, time.Since(start).Seconds())
		observe()
		for _, a := range f.agents {
			checkBlobs(t, a)
			if s := a.status(); s.errorOf("w") != "" {
				t.Errorf("%s: error after convergence: %s", a.name, s.errorOf("w"))
			}
		}
		d := hubDeployment(t, f.h, "w")
		testenv.WaitFor(t, 30*time.Second, "hub rows active at "+last, func() bool {
			d = hubDeployment(t, f.h, "w")
			n := 0
			for _, row := range d.Status.Clusters {
				if row.ActiveVersion == last && row.Phase == v1alpha1.PhaseActive {
					n++
				}
			}
			return n == len(f.agents)
		})
	})

	t.Run("offline restart serves the cache", func(t *testing.T) {
		a := f.agents[2]
		want := a.status().active("w")
		a.kill()
		a.link.Partition(true)
		a.start()
		if got := a.status().active("w"); got != want {
			t.Fatalf("restarted with no hub: active %q, want %q", got, want)
		}
		out, err := exec.Command(outpostBin, "agent", "status", "--data", a.dir).CombinedOutput()
		if err != nil || !strings.Contains(string(out), want) {
			t.Fatalf("agent status with no hub: %v\n%s", err, out)
		}
		// The hub notices the silence.
		testenv.WaitFor(t, 30*time.Second, "hub marks "+a.name+" disconnected", func() bool {
			return strings.Contains(f.h.mustRun("get", "clusters"), "Disconnected")
		})
		a.link.ResetStats()
		a.link.Partition(false)
		testenv.WaitFor(t, 30*time.Second, "hub marks "+a.name+" connected again", func() bool {
			return !strings.Contains(f.h.mustRun("get", "clusters"), "Disconnected")
		})
		// Catching up re-fetches nothing it holds.
		if down := a.link.Stats().Down; down > 256<<10 {
			t.Errorf("reconnecting cost %d bytes with nothing new to fetch", down)
		}
	})
}

// compareVersions compares two 1.N.0 versions by N.
func compareVersions(a, b string) int {
	var x, y int
	fmt.Sscanf(a, "1.%d.0", &x)
	fmt.Sscanf(b, "1.%d.0", &y)
	return x - y
}

// TestAgentBadInput: bad join tokens stop the agent with a clear message;
// a desired version whose bytes are gone, a downgrade, or an untrusted
// signature leave the previous version serving with the reason in status.
func TestAgentBadInput(t *testing.T) {
	h := startHub(t)
	t.Run("join tokens", func(t *testing.T) {
		expired := joinToken(t, h, "1s")
		created := time.Now()
		tests := []struct{ token, want string }{
			{"opj_not-a-token", "not recognised"},
			{expired, "expired"},
		}
		testenv.WaitFor(t, 10*time.Second, "the short token to expire", func() bool { return time.Since(created) > 1500*time.Millisecond })
		for _, tt := range tests {
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			out, err := exec.CommandContext(ctx, outpostBin, "agent", "--hub", h.url(), "--ca-file", h.caFile(),
				"--data", dir, "--name", "intruder", "--join-token", tt.token).CombinedOutput()
			cancel()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Errorf("join with %q: err %v, output lacks %q:\n%s", tt.token, err, tt.want, tail(string(out), 2000))
			}
		}
		if out, _ := h.run("get", "cluster", "intruder"); !strings.Contains(out, "not found") {
			t.Errorf("a refused join created a cluster: %s", out)
		}
	})

	keys := t.TempDir()
	h.mustRun("keygen", "--out", filepath.Join(keys, "hubkey"))
	h.mustRun("keygen", "--out", filepath.Join(keys, "edgekey"))
	a := newAgent(t, h, "edge", "tier=edge", joinToken(t, h, "1h"), "--trusted-key", filepath.Join(keys, "edgekey.pub"))
	a.start()
	src := t.TempDir()
	writeWeights(t, filepath.Join(src, "1"), 1)
	writeWeights(t, filepath.Join(src, "2"), 2)
	h.mustRun("model", "push", filepath.Join(src, "1"), "--name", "w", "--version", "1.0.0")
	applyYAML(t, h, deployment("w", "w", "1.0.0", "tier: edge", ""))
	waitActive(t, 60*time.Second, "1.0.0", a)

	t.Run("desired version whose bytes are gone", func(t *testing.T) {
		dir := filepath.Join(src, "gone")
		writeWeights(t, dir, 9)
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"gone": true}`), 0o644)
		h.mustRun("model", "push", dir, "--name", "w", "--version", "1.1.0")
		// Delete the weights blob behind the hub's back.
		weights, err := fileDigest(filepath.Join(dir, "weights.bin"))
		if err != nil {
			t.Fatal(err)
		}
		deleteBlob(t, h, "models/w", weights)
		applyYAML(t, h, deployment("w", "w", "1.1.0", "tier: edge", ""))
		testenv.WaitFor(t, 60*time.Second, "an error in status", func() bool { return a.status().errorOf("w") != "" })
		if s := a.status(); s.active("w") != "1.0.0" {
			t.Fatalf("active %q, want 1.0.0 to keep serving", s.active("w"))
		}
		t.Logf("status error: %s", a.status().errorOf("w"))
	})

	t.Run("downgrade refused", func(t *testing.T) {
		h.mustRun("model", "push", filepath.Join(src, "2"), "--name", "w", "--version", "1.2.0")
		applyYAML(t, h, deployment("w", "w", "1.2.0", "tier: edge", ""))
		waitActive(t, 60*time.Second, "1.2.0", a)
		applyYAML(t, h, deployment("w", "w", "1.0.0", "tier: edge", ""))
		testenv.WaitFor(t, 60*time.Second, "a downgrade refusal", func() bool { return strings.Contains(a.status().errorOf("w"), "downgrade") })
		if got := a.status().active("w"); got != "1.2.0" {
			t.Fatalf("active %q after a refused downgrade", got)
		}
		applyYAML(t, h, deployment("w", "w", "1.0.0", "tier: edge", "  allowDowngrade: true\n"))
		waitActive(t, 60*time.Second, "1.0.0", a)
	})

	t.Run("signature from a key the edge does not trust", func(t *testing.T) {
		dir := filepath.Join(src, "signed")
		writeWeights(t, dir, 5)
		h.mustRun("model", "push", dir, "--name", "w", "--version", "1.5.0")
		h.mustRun("model", "sign", "w@1.5.0", "--key", filepath.Join(keys, "hubkey.key"))
		applyYAML(t, h, deployment("w", "w", "1.5.0", "tier: edge", "  requireSignature: false\n"))
		// The deployment does not ask for a signature, but this agent does for
		// every version it was given a key for: run it again with --require-signature.
		a.kill()
		a.extra = append(a.extra, "--require-signature")
		a.start()
		testenv.WaitFor(t, 60*time.Second, "a signature error", func() bool { return strings.Contains(a.status().errorOf("w"), "signature") })
		if got := a.status().active("w"); got != "1.0.0" {
			t.Fatalf("active %q: an untrusted signature must not activate", got)
		}
		h.mustRun("model", "sign", "w@1.5.0", "--key", filepath.Join(keys, "edgekey.key"))
		waitActive(t, 60*time.Second, "1.5.0", a)
	})
}

// deleteBlob deletes a blob from the hub's registry with the admin token.
func deleteBlob(t *testing.T, h *hub, repo, digest string) {
	t.Helper()
	out, err := exec.Command("curl", "-sS", "--fail", "--cacert", h.caFile(), "-H", "Authorization: Bearer "+h.token(),
		"-X", "DELETE", h.url()+"/v2/"+repo+"/blobs/"+digest).CombinedOutput()
	if err != nil {
		t.Fatalf("delete blob: %v\n%s", err, out)
	}
}
