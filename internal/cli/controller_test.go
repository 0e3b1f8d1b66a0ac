package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestKubeStellarFlagErrors: the KubeStellar commands refuse what they
// cannot run with, naming the flag, and touch nothing.
func TestKubeStellarFlagErrors(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "wec.kubeconfig")
	os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: []\n"), 0o600)
	data := filepath.Join(t.TempDir(), "agent")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"controller without a WDS", []string{"controller"}, "--kubeconfig (the WDS) or --in-cluster is required"},
		{"controller with both", []string{"controller", "--kubeconfig", kc, "--in-cluster"}, "not both"},
		{"controller with a missing kubeconfig", []string{"controller", "--kubeconfig", filepath.Join(t.TempDir(), "none")}, "--kubeconfig"},
		{"agent without a name", []string{"agent", "--data", data, "--kubeconfig", kc}, "--name is required with --kubeconfig"},
		{"agent with both", []string{"agent", "--data", data, "--name", "wec1", "--kubeconfig", kc, "--in-cluster"}, "not both"},
	}
	for _, tt := range tests {
		_, errOut, code := runCLI(t, tt.args...)
		if code == 0 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, stderr %q; want an error with %q", tt.name, code, errOut, tt.want)
		}
	}
	if _, err := os.Stat(data); !os.IsNotExist(err) {
		t.Errorf("a refused agent made its data directory: %v", err)
	}
}
