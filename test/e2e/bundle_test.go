package e2e

import (
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/bundle"
	"outpost.dev/outpost/internal/testenv"
)

// airgap is a hub and clusters that joined it once and never connect again.
type airgap struct {
	h   *hub
	src string
}

// joinOffline joins cluster name (labels tier=air) over the network once,
// as at the depot, and stops its agent: from then on only bundles reach it.
func (g *airgap) joinOffline(t *testing.T, name, tok string) *agentProc {
	t.Helper()
	a := newAgent(t, g.h, name, "tier=air,name="+name, tok)
	a.start()
	stop(a.cmd)
	a.cmd = nil
	return a
}

// push pushes version 1.N.0 of model w.
func (g *airgap) push(t *testing.T, n int) string {
	t.Helper()
	dir := filepath.Join(g.src, fmt.Sprint(n))
	writeWeights(t, dir, n)
	v := fmt.Sprintf("1.%d.0", n)
	g.h.mustRun("model", "push", dir, "--name", "w", "--version", v)
	return v
}

// outpost runs the CLI with no hub (the edge side).
func outpost(args ...string) (string, error) {
	out, err := exec.Command(outpostBin, args...).CombinedOutput()
	return string(out), err
}

func mustOutpost(t *testing.T, args ...string) string {
	t.Helper()
	out, err := outpost(args...)
	if err != nil {
		t.Fatalf("outpost %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// copyTree copies a folder.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s: %v\n%s", src, err, out)
	}
}

func outboxRecords(t *testing.T, a *agentProc) int64 {
	return a.status().outboxRecords()
}

// TestBundleRoundTrip brings a cluster that has no link up to date by
// bundles, refuses every kind of tampered, stale or misdirected bundle
// without applying anything, and brings its status and outbox records back
// to the hub exactly once, also when the same records arrive online.
func TestBundleRoundTrip(t *testing.T) {
	g := &airgap{h: startHub(t), src: t.TempDir()}
	h := g.h
	tok := joinToken(t, h, "1h")
	a := g.joinOffline(t, "sub-1", tok)
	b := g.joinOffline(t, "sub-2", tok)
	pristine := filepath.Join(t.TempDir(), "pristine")
	copyTree(t, a.dir, pristine)
	joined := a.status().AppliedRevision

	v1 := g.push(t, 1)
	applyYAML(t, h, deployment("w", "w", v1, "tier: air", ""))
	usb := t.TempDir()
	b1 := filepath.Join(usb, "b1")
	out := h.mustRun("bundle", "create", "--cluster", "sub-1", "--out", b1, "--max-part-size", "1MiB")
	t.Log(strings.TrimSpace(out))
	parts, _ := filepath.Glob(filepath.Join(b1, "*.tar"))
	if len(parts) < 8 {
		t.Fatalf("%d parts of at most 1 MiB for an 8 MiB model", len(parts))
	}
	for _, p := range parts {
		if st, _ := os.Stat(p); st.Size() > 1<<20 {
			t.Fatalf("part %s has %d bytes", p, st.Size())
		}
	}
	bOther := filepath.Join(usb, "b-sub-2")
	h.mustRun("bundle", "create", "--cluster", "sub-2", "--out", bOther, "--max-part-size", "1MiB")

	// A second hub, whose bundles no cluster of the first trusts.
	h2 := startHub(t)
	tok2 := joinToken(t, h2, "1h")
	imposter := newAgent(t, h2, "sub-1", "tier=air", tok2)
	imposter.start()
	stop(imposter.cmd)
	imposter.cmd = nil
	g2 := &airgap{h: h2, src: t.TempDir()}
	g2.push(t, 1)
	applyYAML(t, h2, deployment("w", "w", v1, "tier: air", ""))
	bForeign := filepath.Join(usb, "foreign")
	h2.mustRun("bundle", "create", "--cluster", "sub-1", "--out", bForeign, "--max-part-size", "1MiB")

	tampered := func(name string, change func(dir string)) string {
		dir := filepath.Join(t.TempDir(), name)
		copyTree(t, b1, dir)
		change(dir)
		return dir
	}
	cases := []struct {
		name, path, want string
	}{
		{"flipped byte", tampered("flip", func(dir string) {
			p := filepath.Join(dir, "bundle.0003.tar")
			buf, _ := os.ReadFile(p)
			buf[1234] ^= 0x01
			os.WriteFile(p, buf, 0o644)
		}), "refused (damaged, or a part of another bundle)"},
		{"part from another bundle", tampered("mixed", func(dir string) {
			// The part of the other bundle that differs from this one's
			// (where both hold the same model bytes, the parts are equal).
			for _, p := range parts {
				mine, _ := os.ReadFile(p)
				theirs, err := os.ReadFile(filepath.Join(bOther, filepath.Base(p)))
				if err == nil && string(mine) != string(theirs) {
					os.WriteFile(filepath.Join(dir, filepath.Base(p)), theirs, 0o644)
					return
				}
			}
			t.Fatal("the two bundles' parts are all equal")
		}), "refused (damaged, or a part of another bundle)"},
		{"missing part", tampered("missing", func(dir string) { os.Remove(filepath.Join(dir, "bundle.0005.tar")) }), "missing bundle.0005.tar"},
		{"signed by another hub", bForeign, "signature does not verify"},
		{"for another cluster", bOther, "bundle is for another cluster"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "agent")
			copyTree(t, pristine, dir)
			out, err := outpost("bundle", "import", c.path, "--data", dir)
			if err == nil || !strings.Contains(out, c.want) {
				t.Fatalf("import: err %v, want an error saying %q:\n%s", err, c.want, out)
			}
			st := (&agentProc{t: t, dir: dir}).status()
			if st.AppliedRevision != joined || len(st.Models) != 0 {
				t.Fatalf("a refused bundle changed the state: %+v", st)
			}
		})
	}

	// Parts over two trips, in any order: the first stages what it brings.
	trip := filepath.Join(t.TempDir(), "trip1")
	os.Mkdir(trip, 0o755)
	for i, p := range parts {
		if i%2 == 0 {
			copyTree(t, p, filepath.Join(trip, filepath.Base(p)))
		}
	}
	copyTree(t, filepath.Join(b1, bundle.PartsFile("bundle")), filepath.Join(trip, bundle.PartsFile("bundle")))
	if out, err := outpost("bundle", "import", trip, "--data", a.dir); err == nil || !strings.Contains(out, "bundle incomplete") {
		t.Fatalf("import of half the parts: %v\n%s", err, out)
	}
	start := time.Now()
	out = mustOutpost(t, "bundle", "import", b1, "--data", a.dir)
	t.Logf("import: %s (%v)", strings.TrimSpace(out), time.Since(start))
	if got := a.status().active("w"); got != v1 {
		t.Fatalf("active %q after import, want %s", got, v1)
	}
	checkBlobs(t, a)
	// Twice: nothing changes.
	if out := mustOutpost(t, "bundle", "import", b1, "--data", a.dir); !strings.Contains(out, "unchanged") {
		t.Fatalf("second import: %s", out)
	}

	// Version 2: only what changed travels; then the old bundle is stale.
	v2 := g.push(t, 2)
	applyYAML(t, h, deployment("w", "w", v2, "tier: air", ""))
	// The hub learns what sub-1 holds from its status bundle.
	mustOutpost(t, "agent", "outbox", "put", "--data", a.dir, "--key", "n1", "--text", "hello from the deep")
	mustOutpost(t, "agent", "outbox", "put", "--data", a.dir, "--key", "n2", "--text", "second note")
	s1 := filepath.Join(usb, "status-1.json")
	mustOutpost(t, "bundle", "export-status", "--data", a.dir, "--out", s1)
	out = h.mustRun("bundle", "import-status", s1)
	if !strings.Contains(out, "2 records applied") {
		t.Fatalf("import-status: %s", out)
	}
	// The same status bundle again is a replay: refused, nothing counted twice.
	if out, err := h.run("bundle", "import-status", s1); err == nil || !strings.Contains(out, "already imported") {
		t.Fatalf("replayed status bundle: %v\n%s", err, out)
	}
	// A status bundle claiming to be sub-1's, signed by sub-2's key, is refused.
	forged := forgeStatus(t, b.dir, "sub-1")
	if out, err := h.run("bundle", "import-status", forged); err == nil || !strings.Contains(out, "signature does not verify") {
		t.Fatalf("forged status bundle: %v\n%s", err, out)
	}
	// --have says what a cluster holds when the hub has not heard: a bundle
	// made for sub-2 as if it held v1 lacks chunks sub-2 does not have, and
	// its import says so, applying nothing.
	var v1Digest string
	for _, m := range a.status().Models {
		if m.Deployment == "w" {
			v1Digest = m.ActiveDigest
		}
	}
	have := filepath.Join(t.TempDir(), "have.txt")
	os.WriteFile(have, []byte(v1Digest+"\n"), 0o644)
	bHave := filepath.Join(usb, "b-have")
	h.mustRun("bundle", "create", "--cluster", "sub-2", "--out", bHave, "--have", have)
	if n := dirSize(t, bHave); n >= weightsSize/4 {
		t.Fatalf("a bundle made --have v1 carries %d bytes: v1's chunks travelled", n)
	}
	if out, err := outpost("bundle", "import", bHave, "--data", b.dir); err == nil || !strings.Contains(out, "bundle incomplete") {
		t.Fatalf("import of a bundle made for what another cache holds: %v\n%s", err, out)
	}
	if st := b.status(); len(st.Models) != 0 {
		t.Fatalf("a refused bundle changed sub-2's state: %+v", st)
	}
	// One bundle for sub-1 (which holds v1) and sub-2 (which holds nothing)
	// leaves out only what both hold: sub-2 can use it.
	both := filepath.Join(usb, "both")
	h.mustRun("bundle", "create", "--cluster", "sub-1", "--cluster", "sub-2", "--out", both)
	sub2 := filepath.Join(t.TempDir(), "sub-2")
	copyTree(t, b.dir, sub2)
	mustOutpost(t, "bundle", "import", both, "--data", sub2)
	if v := (&agentProc{t: t, dir: sub2}).status().active("w"); v != v2 {
		t.Fatalf("sub-2 active %q from the shared bundle, want %s", v, v2)
	}
	b2 := filepath.Join(usb, "b2")
	h.mustRun("bundle", "create", "--cluster", "sub-1", "--out", b2)
	full, small := dirSize(t, b1), dirSize(t, b2)
	t.Logf("bundle v1: %d bytes (parts), v1->v2: %d bytes (%.2f of v1's)", full, small, float64(small)/float64(full))
	if small >= full/4 {
		t.Fatalf("v1->v2 bundle %d bytes, the full one %d: more than the changed chunks travelled", small, full)
	}
	// A flipped byte in the chunks of the changed file: refused, v1 stays.
	before := filepath.Join(t.TempDir(), "before-v2")
	copyTree(t, a.dir, before)
	bad := filepath.Join(t.TempDir(), "b2-flipped")
	copyTree(t, b2, bad)
	flipLargestBlob(t, bad)
	if out, err := outpost("bundle", "import", bad, "--data", before); err == nil || !strings.Contains(out, "digest mismatch") {
		t.Fatalf("import of a flipped pack: %v\n%s", err, out)
	}
	if st := (&agentProc{t: t, dir: before}).status(); st.active("w") != v1 || st.AppliedRevision != a.status().AppliedRevision {
		t.Fatalf("a refused bundle changed the state: active %s, revision %d", st.active("w"), st.AppliedRevision)
	}
	out = mustOutpost(t, "bundle", "import", b2, "--data", a.dir)
	if got := a.status().active("w"); got != v2 {
		t.Fatalf("active %q after the v2 bundle, want %s\n%s", got, v2, out)
	}
	// The v2 bundle acknowledged status bundle 1: its records are freed.
	if !strings.Contains(out, "2 outbox records freed") {
		t.Fatalf("v2 import freed nothing: %s", out)
	}
	if n := outboxRecords(t, a); n != 0 {
		t.Fatalf("%d records left in the outbox after the acknowledgment", n)
	}
	// The old bundle after the newer: refused as stale, and counted.
	if out, err := outpost("bundle", "import", b1, "--data", a.dir); err == nil || !strings.Contains(out, "older than the applied") {
		t.Fatalf("stale bundle: %v\n%s", err, out)
	}
	if st := a.status(); st.active("w") != v2 || st.RejectedStale != 1 {
		t.Fatalf("after the stale bundle: active %s, rejectedStale %d", st.active("w"), st.RejectedStale)
	}

	// A record in a status bundle and also sent online counts once.
	mustOutpost(t, "agent", "outbox", "put", "--data", a.dir, "--key", "n3", "--text", "both ways")
	s2 := filepath.Join(usb, "status-2.json")
	mustOutpost(t, "bundle", "export-status", "--data", a.dir, "--out", s2)
	h.mustRun("bundle", "import-status", s2)
	a.start() // the link is back for a while: the outbox drains online
	testenv.WaitFor(t, 30*time.Second, "outbox drained online", func() bool { return outboxRecords(t, a) == 0 })
	var notes v1alpha1.NoteList
	if err := json.Unmarshal([]byte(h.mustRun("cluster", "notes", "sub-1", "-o", "json")), &notes); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, n := range notes.Items {
		seen[n.Key]++
	}
	if len(notes.Items) != 3 || seen["n1"] != 1 || seen["n2"] != 1 || seen["n3"] != 1 {
		t.Fatalf("notes at the hub: %v, want n1, n2, n3 once each", seen)
	}
}

// forgeStatus writes a status bundle that claims to come from cluster
// claim, signed with the bundle key in the data directory dir.
func forgeStatus(t *testing.T, dir, claim string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "bundle.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := artifact.ParsePrivateKeyPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(bundle.Status{Cluster: claim, Seq: 99, Created: time.Now(),
		Records: []v1alpha1.OutboxRecord{{Key: "forged", Kind: "note", Payload: json.RawMessage(`{"text":"forged"}`)}}})
	env, err := bundle.Sign(bundle.PayloadStatus, payload, ed25519.PrivateKey(key))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "forged.json")
	os.WriteFile(p, env, 0o644)
	return p
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// TestBundleKill9 kills 'bundle create' and 'bundle import' with SIGKILL at
// many points: a killed create leaves nothing an import takes for a bundle,
// a killed import leaves the cache and state consistent (nothing active,
// or the whole version), and running either again completes.
func TestBundleKill9(t *testing.T) {
	g := &airgap{h: startHub(t), src: t.TempDir()}
	h := g.h
	a := g.joinOffline(t, "mine-1", joinToken(t, h, "1h"))
	pristine := filepath.Join(t.TempDir(), "pristine")
	copyTree(t, a.dir, pristine)
	v1 := g.push(t, 1)
	applyYAML(t, h, deployment("w", "w", v1, "tier: air", ""))

	// How long each takes, to spread the kill points over it.
	ref := filepath.Join(t.TempDir(), "ref")
	start := time.Now()
	h.mustRun("bundle", "create", "--cluster", "mine-1", "--out", ref, "--max-part-size", "1MiB")
	createTime := time.Since(start)
	refDir := filepath.Join(t.TempDir(), "ref-dir") // the same as a folder, no parts
	h.mustRun("bundle", "create", "--cluster", "mine-1", "--out", refDir)
	refAgent := filepath.Join(t.TempDir(), "ref-agent")
	copyTree(t, pristine, refAgent)
	start = time.Now()
	mustOutpost(t, "bundle", "import", ref, "--data", refAgent)
	importTime := time.Since(start)
	t.Logf("create %v, import %v", createTime, importTime)

	// Random points over each command's run, from a logged seed: 12 of
	// them, the first at once.
	const points = 12
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill points from seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	killAt := func(i int, d time.Duration) time.Duration {
		if i == 0 {
			return 0
		}
		return time.Duration(rng.Int64N(int64(d) + 1))
	}
	run := func(d time.Duration, args ...string) {
		cmd := exec.Command(outpostBin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(d, func() { cmd.Process.Signal(syscall.SIGKILL) })
		cmd.Wait()
		timer.Stop()
	}
	for i := 0; i < points; i++ {
		// Import, killed: of the parts, or of the folder, in turn.
		src := ref
		if i%2 == 1 {
			src = refDir
		}
		dir := filepath.Join(t.TempDir(), "agent")
		copyTree(t, pristine, dir)
		run(killAt(i, importTime), "bundle", "import", src, "--data", dir)
		p := &agentProc{t: t, name: "mine-1", dir: dir}
		if v := p.status().active("w"); v != "" && v != v1 {
			t.Fatalf("point %d: active %q after a killed import", i, v)
		}
		if p.status().active("w") == v1 {
			checkBlobs(t, p)
		}
		mustOutpost(t, "bundle", "import", src, "--data", dir)
		if v := p.status().active("w"); v != v1 {
			t.Fatalf("point %d: active %q after the import ran again, want %s", i, v, v1)
		}
		checkBlobs(t, p)

		// Create, killed: an import of what is left is refused; create again completes.
		out := filepath.Join(t.TempDir(), "usb")
		run(killAt(i, createTime), "--config", h.config, "bundle", "create", "--cluster", "mine-1", "--out", out, "--max-part-size", "1MiB")
		dir2 := filepath.Join(t.TempDir(), "agent2")
		copyTree(t, pristine, dir2)
		if _, err := os.Stat(filepath.Join(out, bundle.PartsFile("bundle"))); err != nil {
			if o, err := outpost("bundle", "import", out, "--data", dir2); err == nil {
				t.Fatalf("point %d: import of a killed create's leftovers succeeded:\n%s", i, o)
			}
		}
		h.mustRun("bundle", "create", "--cluster", "mine-1", "--out", out, "--max-part-size", "1MiB")
		mustOutpost(t, "bundle", "import", out, "--data", dir2)
		if v := (&agentProc{t: t, dir: dir2}).status().active("w"); v != v1 {
			t.Fatalf("point %d: active %q after the create ran again, want %s", i, v, v1)
		}
	}
}

// TestBundleOrasCopy: a bundle is an OCI image layout that the real oras
// CLI pushes on to another registry, here a second hub, from which
// 'outpost model pull' gets the model byte-identical.
func TestBundleOrasCopy(t *testing.T) {
	oras := testenv.PeerEnv(t, "OUTPOST_ORAS", "the oras CLI")
	g := &airgap{h: startHub(t), src: t.TempDir()}
	h := g.h
	tok := joinToken(t, h, "1h")
	sites := []*agentProc{g.joinOffline(t, "site-1", tok), g.joinOffline(t, "site-2", tok)}
	v1 := g.push(t, 1)
	applyYAML(t, h, deployment("w", "w", v1, "tier: air", ""))
	b := filepath.Join(t.TempDir(), "bundle")
	h.mustRun("bundle", "create", "--selector", "tier=air", "--out", b)
	// One bundle for both clusters, their common blobs once.
	if n := dirSize(t, b); n > weightsSize*3/2 {
		t.Fatalf("a bundle for two clusters of one %d-byte model has %d bytes", weightsSize, n)
	}
	for _, a := range sites {
		mustOutpost(t, "bundle", "import", b, "--data", a.dir)
		if v := a.status().active("w"); v != v1 {
			t.Fatalf("%s: active %q, want %s", a.name, v, v1)
		}
	}

	h2 := startHub(t)
	dst := h2.addr + "/models/w:" + v1
	cmd := exec.Command(oras, "copy", "-r", "--from-oci-layout", b+":"+bundle.ModelTag("w", v1), dst,
		"--to-ca-file", h2.caFile(), "--to-username", "outpost", "--to-password", h2.token())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oras copy: %v\n%s", err, out)
	}
	got := t.TempDir()
	h2.mustRun("model", "pull", "w@"+v1, got)
	src := filepath.Join(g.src, "1")
	for _, f := range []string{"weights.bin", "config.json"} {
		sameFile(t, filepath.Join(src, f), filepath.Join(got, f))
	}
	// The referrers came along: the second hub's copy has its chunk index.
	if out := h2.mustRun("model", "show", "w@"+v1); !strings.Contains(strings.ToLower(out), "chunk") {
		t.Fatalf("model show on the second hub names no chunk index:\n%s", out)
	}
}

// flipLargestBlob flips a byte in the middle of the largest blob of a layout.
func flipLargestBlob(t *testing.T, dir string) {
	t.Helper()
	blobs, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", "*"))
	var largest string
	var size int64
	for _, b := range blobs {
		if st, err := os.Stat(b); err == nil && st.Size() > size {
			largest, size = b, st.Size()
		}
	}
	buf, err := os.ReadFile(largest)
	if err != nil {
		t.Fatal(err)
	}
	buf[len(buf)/2] ^= 0x10
	os.WriteFile(largest, buf, 0o644)
}

// writeFineTune writes the weights of version 1 (8 MiB of float32, N(0, 0.05²))
// at dir1 and of a full fine-tune of it at dir2: every weight moved by N(0, 0.001²).
func writeFineTune(t *testing.T, dir1, dir2 string) {
	t.Helper()
	const n = 2 << 20
	rng := rand.New(rand.NewPCG(9, 9))
	b1, b2 := make([]byte, 4*n), make([]byte, 4*n)
	for i := range n {
		w := rng.NormFloat64() * 0.05
		binary.LittleEndian.PutUint32(b1[4*i:], math.Float32bits(float32(w)))
		binary.LittleEndian.PutUint32(b2[4*i:], math.Float32bits(float32(w+rng.NormFloat64()*0.001)))
	}
	for dir, b := range map[string][]byte{dir1: b1, dir2: b2} {
		os.MkdirAll(dir, 0o755)
		if err := os.WriteFile(filepath.Join(dir, "weights.bin"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBundleWeightDelta: a full fine-tune pushed with --parent travels to
// a cluster that holds the parent as a weight delta, well under the file's
// size (its chunks all changed); the import rebuilds the file exactly, and a
// flipped byte in the delta is refused with nothing applied.
func TestBundleWeightDelta(t *testing.T) {
	g := &airgap{h: startHub(t), src: t.TempDir()}
	h := g.h
	a := g.joinOffline(t, "sub-1", joinToken(t, h, "1h"))
	d1, d2 := filepath.Join(g.src, "1"), filepath.Join(g.src, "2")
	writeFineTune(t, d1, d2)
	h.mustRun("model", "push", d1, "--name", "ft", "--version", "1.0.0")
	applyYAML(t, h, deployment("ft", "ft", "1.0.0", "tier: air", ""))
	usb := t.TempDir()
	b1 := filepath.Join(usb, "b1")
	h.mustRun("bundle", "create", "--cluster", "sub-1", "--out", b1)
	mustOutpost(t, "bundle", "import", b1, "--data", a.dir)
	s1 := filepath.Join(usb, "status-1.json")
	mustOutpost(t, "bundle", "export-status", "--data", a.dir, "--out", s1)
	h.mustRun("bundle", "import-status", s1)

	h.mustRun("model", "push", d2, "--name", "ft", "--version", "1.1.0", "--parent", "ft@1.0.0")
	// The hub's estimate counts the weight delta a holder of 1.0.0 fetches.
	diff := h.mustRun("model", "diff", "ft@1.0.0", "ft@1.1.0")
	t.Log(strings.TrimSpace(diff))
	if !strings.Contains(diff, "or a weight delta of") || !strings.Contains(diff, "with weight deltas:") {
		t.Fatalf("model diff does not count the weight delta:\n%s", diff)
	}
	applyYAML(t, h, deployment("ft", "ft", "1.1.0", "tier: air", ""))
	b2 := filepath.Join(usb, "b2")
	out := h.mustRun("bundle", "create", "--cluster", "sub-1", "--out", b2)
	t.Log(strings.TrimSpace(out))
	if !strings.Contains(out, "as weight deltas: 1") {
		t.Fatalf("the v2 bundle carries no weight delta: %s", out)
	}
	size := dirSize(t, b2)
	t.Logf("v1 -> v2 (every weight moved): bundle %d bytes, %.3f of the %d byte file", size, float64(size)/weightsSize, weightsSize)
	if size > weightsSize*75/100 {
		t.Fatalf("bundle of %d bytes for a file of %d: the delta did not pay", size, weightsSize)
	}
	before := filepath.Join(t.TempDir(), "before")
	copyTree(t, a.dir, before)
	bad := filepath.Join(t.TempDir(), "b2-flipped")
	copyTree(t, b2, bad)
	flipLargestBlob(t, bad)
	if out, err := outpost("bundle", "import", bad, "--data", before); err == nil || !strings.Contains(out, "digest mismatch") {
		t.Fatalf("import of a flipped delta: %v\n%s", err, out)
	}
	if st := (&agentProc{t: t, dir: before}).status(); st.active("ft") != "1.0.0" {
		t.Fatalf("a refused bundle changed the state: active %s", st.active("ft"))
	}
	out = mustOutpost(t, "bundle", "import", b2, "--data", a.dir)
	if got := a.status().active("ft"); got != "1.1.0" {
		t.Fatalf("active %q after the delta bundle, want 1.1.0\n%s", got, out)
	}
	checkBlobs(t, a) // every blob holds the bytes its name says
	want, err := fileDigest(filepath.Join(d2, "weights.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(a.dir, "cache", "blobs", "sha256", strings.TrimPrefix(want, "sha256:"))); err != nil {
		t.Fatalf("v2's weights are not in the cache: %v", err)
	}
}
