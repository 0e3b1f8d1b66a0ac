package kubetest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/testenv"
)

// staging returns the staging modules a go.mod replaces: with local paths
// (k8s.io/kubernetes's own) or, by version, with their releases.
func staging(t *testing.T, gomod []byte, re *regexp.Regexp) []string {
	t.Helper()
	var mods []string
	for _, m := range re.FindAllSubmatch(gomod, -1) {
		mods = append(mods, string(m[1]))
	}
	slices.Sort(mods)
	return mods
}

// hack/kubebin replaces every staging module of k8s.io/kubernetes with its
// v0.37.2 release: all of them, as that version's go.mod lists them.
func TestKubeBinReplacesEveryStagingModule(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(RepoRoot(t), "hack", "kubebin", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^(require)?\s+k8s\.io/kubernetes v1\.37\.2$`).Match(b) {
		t.Fatal("hack/kubebin does not require k8s.io/kubernetes v1.37.2")
	}
	release := regexp.MustCompile(`(?m)^\s+(k8s\.io/[a-z-]+) => (k8s\.io/[a-z-]+) v0\.37\.2$`)
	ours := staging(t, b, release)
	for _, line := range release.FindAllSubmatch(b, -1) {
		if string(line[1]) != string(line[2]) {
			t.Errorf("%s is replaced by %s", line[1], line[2])
		}
	}
	if len(ours) != 33 {
		t.Errorf("%d staging modules replaced, want 33", len(ours))
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	upstream, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "cache", "download", "k8s.io", "kubernetes", "@v", "v1.37.2.mod"))
	if err != nil {
		testenv.MissingPeer(t, "k8s.io/kubernetes v1.37.2's go.mod is not in the module cache (scripts/kube.sh downloads it)")
	}
	theirs := staging(t, upstream, regexp.MustCompile(`(?m)^\s+(k8s\.io/[a-z-]+) => \./staging/src/k8s\.io/[a-z-]+$`))
	if !slices.Equal(ours, theirs) {
		t.Errorf("hack/kubebin replaces %v, k8s.io/kubernetes v1.37.2 has %v", ours, theirs)
	}
}

// Once the binaries are built, scripts/kube.sh builds nothing and prints
// the same environment.
func TestKubeScriptReusesTheCache(t *testing.T) {
	assets := testenv.PeerEnv(t, EnvAssets, "kube-apiserver and etcd")
	cmd := exec.CommandContext(t.Context(), filepath.Join(RepoRoot(t), "scripts", "kube.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kube.sh: %v: %s", err, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("kube.sh with its binaries built said: %s", stderr.String())
	}
	want := "export KUBEBUILDER_ASSETS=" + assets + "\n" +
		"export OUTPOST_KUBECTL=" + os.Getenv(EnvKubectl) + "\n" +
		"export OUTPOST_HELM=" + os.Getenv(EnvHelm) + "\n"
	if string(out) != want {
		t.Errorf("kube.sh printed\n%s\nwant\n%s", out, want)
	}
	for _, bin := range []string{"kube-apiserver", "etcd", "kubectl"} {
		if fi, err := os.Stat(filepath.Join(assets, bin)); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s in %s: %v", bin, assets, err)
		}
	}
}
