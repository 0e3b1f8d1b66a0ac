package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the README's first command, 'outpost demo', and requires it
// to exit 0 with every check held.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, outpostBin, "demo", "--dir", t.TempDir()).CombinedOutput()
	if err != nil {
		t.Fatalf("outpost demo: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "every check held") || strings.Contains(string(out), "FAIL") {
		t.Fatalf("outpost demo did not hold:\n%s", out)
	}
}
