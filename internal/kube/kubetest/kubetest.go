// Package kubetest starts a real kube-apiserver (with etcd, through
// controller-runtime's envtest) for tests, with Outpost's CRDs installed, and
// finds the kubectl and helm CLIs. scripts/kube.sh builds all four from the
// Go module proxy; scripts/tools.sh exports where they are. A test whose
// peer is missing skips, or fails under OUTPOST_REQUIRE_PEERS=1.
package kubetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"outpost.dev/outpost/internal/testenv"
)

// Environment variables naming the peers.
const (
	// EnvAssets is envtest's directory holding kube-apiserver and etcd.
	EnvAssets = "KUBEBUILDER_ASSETS"
	// EnvKubectl is the kubectl binary.
	EnvKubectl = "OUTPOST_KUBECTL"
	// EnvHelm is the helm binary.
	EnvHelm = "OUTPOST_HELM"
)

// RepoRoot returns the repository's root directory, from this file's place.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("kubetest: no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// APIServer is a running kube-apiserver.
type APIServer struct {
	// Config reaches it as an administrator.
	Config *rest.Config
	// Kubeconfig is a kubeconfig file for the same user, for kubectl and helm.
	Kubeconfig string
}

// Start starts kube-apiserver and etcd with the CRDs of deploy/crds
// installed and established, and stops them when t ends.
func Start(t testing.TB) *APIServer {
	t.Helper()
	assets := testenv.PeerEnv(t, EnvAssets, "kube-apiserver and etcd")
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			testenv.MissingPeer(t, fmt.Sprintf("%s not in %s=%s (scripts/kube.sh builds it)", bin, EnvAssets, assets))
		}
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(t), "deploy", "crds")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop kube-apiserver: %v", err)
		}
	})
	user, err := env.AddUser(envtest.User{Name: "outpost-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("add user: %v", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return &APIServer{Config: cfg, Kubeconfig: path}
}

// Tool is a CLI (kubectl or helm) pointed at a kubeconfig.
type Tool struct {
	// Path is the binary.
	Path string
	// Env is added to the process's environment.
	Env []string
}

// Kubectl returns the kubectl of OUTPOST_KUBECTL, talking to s, with its
// caches in a temporary directory.
func (s *APIServer) Kubectl(t testing.TB) *Tool {
	t.Helper()
	bin := testenv.PeerEnv(t, EnvKubectl, "kubectl")
	home := t.TempDir()
	return &Tool{Path: bin, Env: []string{"KUBECONFIG=" + s.Kubeconfig, "HOME=" + home, "KUBECACHEDIR=" + filepath.Join(home, "cache")}}
}

// Helm returns the helm of OUTPOST_HELM, with its configuration and caches
// in a temporary directory; kubeconfig, if not empty, is the cluster it
// talks to.
func Helm(t testing.TB, kubeconfig string) *Tool {
	t.Helper()
	bin := testenv.PeerEnv(t, EnvHelm, "helm")
	home := t.TempDir()
	env := []string{"HOME=" + home, "HELM_CACHE_HOME=" + filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME=" + filepath.Join(home, "config"), "HELM_DATA_HOME=" + filepath.Join(home, "data")}
	if kubeconfig != "" {
		env = append(env, "KUBECONFIG="+kubeconfig)
	}
	return &Tool{Path: bin, Env: env}
}

// Run runs the tool with args and stdin, and returns its standard output
// and an error that carries its standard error.
func (tl *Tool) Run(ctx context.Context, stdin string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, tl.Path, args...)
	cmd.Env = append(os.Environ(), tl.Env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(tl.Path), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}
