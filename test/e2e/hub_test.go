package e2e

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/testenv"
)

func writeRandom(t *testing.T, path string, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// column returns the cells of the column headed name in a table that
// 'outpost get' printed, one per row: each cell is read at the offset of
// its header, so empty cells in other columns do not shift it.
func column(t *testing.T, table, name string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	loc := regexp.MustCompile(`(^|\s)` + regexp.QuoteMeta(name) + `(\s|$)`).FindStringIndex(lines[0])
	if loc == nil {
		t.Fatalf("no column %s in:\n%s", name, table)
	}
	at := loc[0]
	if at > 0 {
		at++ // past the space before the header
	}
	var cells []string
	for _, l := range lines[1:] {
		cell := ""
		if len(l) > at {
			cell, _, _ = strings.Cut(l[at:], " ")
		}
		cells = append(cells, cell)
	}
	return cells
}

// keyID is the key id of the public key in the PEM file path.
func keyID(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := artifact.ParsePublicKeyPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return artifact.KeyID(k)
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Fatalf("%s and %s differ", a, b)
	}
}

// TestOrasInterop: the real oras CLI pulls what 'outpost model push' stored,
// byte-identical, and 'outpost model pull' reads what 'oras push' stored.
func TestOrasInterop(t *testing.T) {
	oras := testenv.PeerEnv(t, "OUTPOST_ORAS", "the oras CLI")
	h := startHub(t)
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "model.onnx"), 3<<20)
	writeRandom(t, filepath.Join(src, "sub", "tokenizer.json"), 1000)
	h.mustRun("model", "push", src, "--name", "interop", "--version", "1.0.0")

	orasArgs := func(args ...string) []string {
		return append(args, "--ca-file", h.caFile(), "-u", "outpost", "-p", h.token())
	}
	dst := t.TempDir()
	cmd := exec.Command(oras, orasArgs("pull", h.addr+"/models/interop:1.0.0", "-o", dst)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oras pull: %v\n%s", err, out)
	}
	sameFile(t, filepath.Join(src, "model.onnx"), filepath.Join(dst, "model.onnx"))
	sameFile(t, filepath.Join(src, "sub", "tokenizer.json"), filepath.Join(dst, "sub", "tokenizer.json"))

	// And the other way round: oras pushes, outpost pulls.
	up := t.TempDir()
	writeRandom(t, filepath.Join(up, "weights.safetensors"), 2<<20)
	cmd = exec.Command(oras, orasArgs("push", h.addr+"/models/from-oras:2.0.0", "weights.safetensors")...)
	cmd.Dir = up
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oras push: %v\n%s", err, out)
	}
	got := t.TempDir()
	h.mustRun("model", "pull", "from-oras@2.0.0", got)
	sameFile(t, filepath.Join(up, "weights.safetensors"), filepath.Join(got, "weights.safetensors"))

	// oras cannot move a published version to other content either.
	writeRandom(t, filepath.Join(up, "weights.safetensors"), 1<<20)
	cmd = exec.Command(oras, orasArgs("push", h.addr+"/models/from-oras:2.0.0", "weights.safetensors")...)
	cmd.Dir = up
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("oras push of different content to an existing version succeeded:\n%s", out)
	}
	again := t.TempDir()
	h.mustRun("model", "pull", "from-oras@2.0.0", again)
	sameFile(t, filepath.Join(got, "weights.safetensors"), filepath.Join(again, "weights.safetensors"))
}

// TestModelLifecycle walks the CLI through push, list, show, sign, verify,
// pull and the refusals of bad input.
func TestModelLifecycle(t *testing.T) {
	h := startHub(t)
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "model.onnx"), 1<<20)
	h.mustRun("model", "push", src, "--name", "life", "--version", "1.0.0", "--metric", "accuracy=0.9")
	// The same bytes again: a no-op.
	h.mustRun("model", "push", src, "--name", "life", "--version", "1.0.0", "--metric", "accuracy=0.9")

	other := t.TempDir()
	writeRandom(t, filepath.Join(other, "model.onnx"), 1<<20)
	keys := t.TempDir()
	h.mustRun("keygen", "--out", filepath.Join(keys, "k"))
	h.mustRun("keygen", "--out", filepath.Join(keys, "other"))
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"different content, same version", []string{"model", "push", other, "--name", "life", "--version", "1.0.0"}, "different content"},
		{"invalid semver", []string{"model", "push", other, "--name", "life", "--version", "1.0"}, "version"},
		{"missing path", []string{"model", "push", filepath.Join(other, "nope"), "--name", "life", "--version", "1.0.1"}, "nope"},
		{"wrong token", []string{"--token", "opt_wrong", "model", "list"}, "401"},
		{"unknown version", []string{"model", "pull", "life@9.9.9", t.TempDir()}, "manifest 9.9.9 unknown to repository models/life (versions of life: 1.0.0)"},
		{"unknown model", []string{"model", "show", "death@1.0.0"}, `(model "death" has no versions: 'outpost model list' shows the models there are)`},
		{"verify with a file that is no key", []string{"model", "verify", "life@1.0.0", "--key", filepath.Join(src, "model.onnx")}, "no PUBLIC KEY PEM block"},
		{"verify unsigned", []string{"model", "verify", "life@1.0.0", "--key", filepath.Join(keys, "k.pub")}, "no valid signature from a trusted key (0 signature(s) found)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := h.run(tt.args...)
			if err == nil {
				t.Fatalf("succeeded, want an error:\n%s", out)
			}
			if !strings.Contains(strings.ToLower(out), strings.ToLower(tt.want)) {
				t.Fatalf("output does not mention %q:\n%s", tt.want, out)
			}
		})
	}
	// A failed pull into a new folder leaves no folder behind.
	fresh := filepath.Join(t.TempDir(), "new")
	if out, err := h.run("model", "pull", "life@9.9.9", fresh); err == nil {
		t.Fatalf("pull of a missing version succeeded:\n%s", out)
	}
	if _, err := os.Stat(fresh); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed pull left %s behind (stat: %v)", fresh, err)
	}
	out := h.mustRun("model", "list")
	if !strings.Contains(out, "life") || !strings.Contains(out, "1.0.0") {
		t.Fatalf("model list:\n%s", out)
	}

	h.mustRun("model", "sign", "life@1.0.0", "--key", filepath.Join(keys, "k.key"))
	out = h.mustRun("model", "verify", "life@1.0.0", "--key", filepath.Join(keys, "k.pub"))
	if want := "signed by key " + keyID(t, filepath.Join(keys, "k.pub")); !strings.Contains(out, want) {
		t.Errorf("verify with the signing key: output lacks %q:\n%s", want, out)
	}
	// The one signature there is, from a key the command was not given.
	out, err := h.run("model", "verify", "life@1.0.0", "--key", filepath.Join(keys, "other.pub"))
	if want := "no valid signature from a trusted key (1 signature(s) found)"; err == nil || !strings.Contains(out, want) {
		t.Fatalf("verify with an untrusted key: err %v, output lacks %q:\n%s", err, want, out)
	}
	out = h.mustRun("model", "show", "life@1.0.0", "--key", filepath.Join(keys, "k.pub"))
	for _, want := range []string{"sha256:", "model.onnx", "accuracy", "valid"} {
		if !strings.Contains(out, want) {
			t.Errorf("model show lacks %q:\n%s", want, out)
		}
	}
	dst := t.TempDir()
	if out := h.mustRun("model", "pull", "life@1.0.0", dst); !strings.Contains(out, "(1 file, 1.0 MiB)") {
		t.Errorf("pull says:\n%s", out)
	}
	sameFile(t, filepath.Join(src, "model.onnx"), filepath.Join(dst, "model.onnx"))
}

// TestResourcesAndDesiredState applies clusters and a deployment and checks
// placement, resolution and the refusals of bad specs.
func TestResourcesAndDesiredState(t *testing.T) {
	h := startHub(t)
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "model.onnx"), 64<<10)
	h.mustRun("model", "push", src, "--name", "det", "--version", "1.0.0")
	h.mustRun("model", "push", src+"/model.onnx", "--name", "det", "--version", "1.2.0")
	specs := filepath.Join(t.TempDir(), "fleet.yaml")
	os.WriteFile(specs, []byte(`apiVersion: ml.outpost.dev/v1alpha1
kind: Cluster
metadata: {name: a, labels: {region: north}}
---
apiVersion: ml.outpost.dev/v1alpha1
kind: Cluster
metadata: {name: b, labels: {region: south, tier: gpu}}
---
apiVersion: ml.outpost.dev/v1alpha1
kind: Cluster
metadata: {name: c, labels: {region: south}}
---
apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata: {name: det}
spec:
  model: {name: det, version: ">=1.0 <2"}
  clusterSelectors:
  - matchLabels: {region: north}
  - matchLabels: {tier: gpu}
`), 0o644)
	h.mustRun("apply", "-f", specs)
	// One row per selected cluster (a by region, b by tier; not c), each
	// desiring the highest version in range.
	out := h.mustRun("get", "modeldeployment", "det", "-o", "wide")
	clusters, desired := column(t, out, "CLUSTER"), column(t, out, "DESIRED")
	slices.Sort(clusters)
	if !slices.Equal(clusters, []string{"a", "b"}) || !slices.Equal(desired, []string{"1.2.0", "1.2.0"}) {
		t.Errorf("get -o wide: clusters %q desiring %q, want a and b desiring 1.2.0:\n%s", clusters, desired, out)
	}
	out = h.mustRun("get", "clusters", "-l", "region=south", "-o", "name")
	if out != "cluster/b\ncluster/c\n" {
		t.Errorf("label selector: %q", out)
	}
	out = h.mustRun("get", "modeldeployment", "det", "-o", "yaml")
	if !strings.Contains(out, "resolvedVersion: 1.2.0") || !strings.Contains(out, "resolvedDigest: sha256:") {
		t.Errorf("status not resolved:\n%s", out)
	}

	bad := []struct{ name, doc, want string }{
		{"unknown field", "apiVersion: ml.outpost.dev/v1alpha1\nkind: Cluster\nmetadata: {name: z}\nspec: {bogus: 1}\n", "bogus"},
		{"unknown kind", "apiVersion: ml.outpost.dev/v1alpha1\nkind: Toaster\nmetadata: {name: z}\n", "Toaster"},
		{"malformed yaml", "kind: Cluster\nmetadata: [\n", "yaml"},
		{"bad version range", "apiVersion: ml.outpost.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: z}\nspec: {model: {name: det, version: \"1.x.y\"}, clusterSelectors: [{}]}\n", "spec.model.version"},
		{"no such version", "apiVersion: ml.outpost.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: z}\nspec: {model: {name: det, version: \"3.0.0\"}, clusterSelectors: [{}]}\n", "3.0.0"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "bad.yaml")
			os.WriteFile(f, []byte(tt.doc), 0o644)
			out, err := h.run("apply", "-f", f)
			if err == nil || !strings.Contains(out, tt.want) {
				t.Fatalf("err %v, output does not name %q:\n%s", err, tt.want, out)
			}
			if out, _ := h.run("get", "modeldeployment", "z"); !strings.Contains(out, "not found") {
				t.Fatalf("bad input stored something: %s", out)
			}
		})
	}
}

// TestRetiredVersion deletes a published version: nothing offers it any
// more, a deployment pinned to it says why, and no other content may take
// its name.
func TestRetiredVersion(t *testing.T) {
	h := startHub(t)
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "model.onnx"), 64<<10)
	h.mustRun("model", "push", src, "--name", "ret", "--version", "1.0.0")
	h.mustRun("model", "push", src, "--name", "ret", "--version", "1.1.0")
	applyYAML(t, h, deployment("pinned", "ret", "1.0.0", "region: none", ""))
	out, err := exec.Command("curl", "-sS", "--fail", "--cacert", h.caFile(), "-H", "Authorization: Bearer "+h.token(),
		"-X", "DELETE", h.url()+"/v2/models/ret/manifests/1.0.0").CombinedOutput()
	if err != nil {
		t.Fatalf("delete version: %v\n%s", err, out)
	}

	if out := h.mustRun("model", "list", "-o", "json"); strings.Contains(out, "1.0.0") {
		t.Errorf("model list offers the deleted version:\n%s", out)
	}
	if out := h.mustRun("model", "show", "ret"); strings.Contains(out, "1.0.0") {
		t.Errorf("model show offers the deleted version:\n%s", out)
	}
	if out, err := h.run("model", "show", "ret@1.0.0"); err == nil || !strings.Contains(out, "deleted") {
		t.Errorf("model show of the deleted version: err %v:\n%s", err, out)
	}
	testenv.WaitFor(t, 10*time.Second, "the deployment to say its version was deleted", func() bool {
		d := hubDeployment(t, h, "pinned")
		for _, c := range d.Status.Conditions {
			if c.Type == "Resolved" && c.Status == "False" && strings.Contains(c.Message, "version 1.0.0 was deleted") {
				return true
			}
		}
		return false
	})
	other := t.TempDir()
	writeRandom(t, filepath.Join(other, "model.onnx"), 64<<10)
	if out, err := h.run("model", "push", other, "--name", "ret", "--version", "1.0.0"); err == nil || !strings.Contains(out, "was deleted") {
		t.Errorf("push of other content as the deleted version: err %v:\n%s", err, out)
	}
}

// TestKilledPushLeavesNothing kills 'outpost model push' mid-upload with
// SIGKILL: no version appears, no partial blob is visible, and a new push
// of the same model succeeds.
func TestKilledPushLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 256 MiB")
	}
	h := startHub(t)
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "big.bin"), 256<<20)
	cmd := exec.Command(outpostBin, "--config", h.config, "model", "push", src, "--name", "big", "--version", "1.0.0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the upload is under way, then kill -9.
	uploads := filepath.Join(h.dir, "oci", "uploads")
	deadline := time.Now().Add(60 * time.Second)
	for {
		var size int64
		filepath.Walk(uploads, func(p string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() {
				size += fi.Size()
			}
			return nil
		})
		if size > 1<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("upload never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	if out, err := h.run("model", "show", "big@1.0.0"); err == nil || !strings.Contains(out, "manifest 1.0.0 unknown to repository models/big") {
		t.Fatalf("a killed push left a visible version (err %v):\n%s", err, out)
	}
	blobs, _ := filepath.Glob(filepath.Join(h.dir, "oci", "blobs", "sha256", "*"))
	for _, b := range blobs {
		fi, _ := os.Stat(b)
		if fi.Size() > 1<<20 {
			t.Fatalf("a large blob %s (%d bytes) is visible after a killed push", b, fi.Size())
		}
	}
	h.mustRun("model", "push", src, "--name", "big", "--version", "1.0.0")
	dst := t.TempDir()
	h.mustRun("model", "pull", "big@1.0.0", dst)
	sameFile(t, filepath.Join(src, "big.bin"), filepath.Join(dst, "big.bin"))
}

// TestTrustedKeysWithoutRestart adds a key to a running hub's trusted-keys
// folder, as the README does after 'hub serve': a deployment that requires
// signatures resolves once the hub reads it, a file that is no key changes
// nothing, and removing the key unresolves the deployment again.
func TestTrustedKeysWithoutRestart(t *testing.T) {
	h := startHub(t, "--require-signature")
	src := t.TempDir()
	writeRandom(t, filepath.Join(src, "model.onnx"), 64<<10)
	h.mustRun("model", "push", src, "--name", "trust", "--version", "1.0.0")
	keys := t.TempDir()
	h.mustRun("keygen", "--out", filepath.Join(keys, "release"))
	h.mustRun("model", "sign", "trust@1.0.0", "--key", filepath.Join(keys, "release.key"))
	spec := filepath.Join(t.TempDir(), "deployment.yaml")
	if err := os.WriteFile(spec, []byte(deployment("trust", "trust", "^1.0", "tier: edge", "")), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := h.run("apply", "-f", spec); err == nil || !strings.Contains(out, "has a valid signature from a trusted key") {
		t.Fatalf("a deployment of a version signed by an untrusted key: err %v\n%s", err, out)
	}
	resolved := func() string { return hubDeployment(t, h, "trust").Status.ResolvedVersion }

	trusted := filepath.Join(h.dir, "trusted-keys")
	pub, err := os.ReadFile(filepath.Join(keys, "release.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(trusted, "release.pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the deployment to apply with the new key", func() bool {
		_, err := h.run("apply", "-f", spec)
		return err == nil
	})
	if v := resolved(); v != "1.0.0" {
		t.Fatalf("the deployment resolves to %q, want 1.0.0", v)
	}

	// A file that is no key is logged, and the keys read before stay trusted.
	if err := os.WriteFile(filepath.Join(trusted, "junk.pub"), []byte("not a key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "the hub to log the bad key file", func() bool {
		return strings.Contains(h.logText(), "trusted keys not reloaded")
	})
	if v := resolved(); v != "1.0.0" {
		t.Fatalf("after a bad key file the deployment resolves to %q, want 1.0.0", v)
	}

	for _, f := range []string{"junk.pub", "release.pub"} {
		if err := os.Remove(filepath.Join(trusted, f)); err != nil {
			t.Fatal(err)
		}
	}
	// With the key gone no version qualifies: the deployment says so, and
	// keeps the version it resolved last (agents keep what they have).
	testenv.WaitFor(t, 30*time.Second, "the deployment to lose its resolution once the key is gone", func() bool {
		c := meta.FindStatusCondition(hubDeployment(t, h, "trust").Status.Conditions, v1alpha1.ConditionResolved)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "valid signature from a trusted key")
	})
	if v := resolved(); v != "1.0.0" {
		t.Fatalf("after the key was removed the last resolved version is %q, want 1.0.0 kept", v)
	}
}
