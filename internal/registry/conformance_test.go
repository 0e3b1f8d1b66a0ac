package registry

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// requirePeer returns the value of env var name, skipping the test when it is unset
// (or failing it when OUTPOST_REQUIRE_PEERS=1).
func requirePeer(t *testing.T, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("OUTPOST_REQUIRE_PEERS") == "1" {
			t.Fatalf("%s is not set: it must name %s (OUTPOST_REQUIRE_PEERS=1)", name, what)
		}
		t.Skipf("set %s to %s to run this test", name, what)
	}
	return v
}

// TestConformance runs the OCI distribution-spec conformance suite (built by scripts/conformance.sh)
// against the registry on a loopback listener, with every optional API and data kind enabled.
func TestConformance(t *testing.T) {
	bin := requirePeer(t, "OUTPOST_CONFORMANCE_BIN", "the distribution-spec conformance test binary")
	const token = "conformance-secret"
	e := newEnv(t, Options{Authorize: passwordAuth(token, false)})
	u, err := url.Parse(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	results := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.v")
	cmd.Dir = results
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+u.Host,
		"OCI_TLS=disabled",
		"OCI_VERSION=1.1",
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/crossmount",
		"OCI_USERNAME=outpost",
		"OCI_PASSWORD="+token,
		"OCI_RESULTS_DIR="+results,
		"OCI_API_PULL=true",
		"OCI_API_PUSH=true",
		"OCI_API_BLOBS_DELETE=true",
		"OCI_API_BLOBS_DIGEST_HEADER=true",
		"OCI_API_BLOBS_MOUNT_ANONYMOUS=true",
		"OCI_API_BLOBS_UPLOAD_CANCEL=true",
		"OCI_API_MANIFESTS_DELETE=true",
		"OCI_API_MANIFESTS_DIGEST_HEADER=true",
		"OCI_API_MANIFESTS_TAG_PARAM=true",
		"OCI_API_TAGS_DELETE=true",
		"OCI_API_TAGS_LIST=true",
		"OCI_API_REFERRER=true",
		"OCI_DATA_SPARSE=false",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	report := out.String()
	if runErr != nil || !strings.Contains(report, "OCI Conformance Result: Pass") {
		t.Fatalf("conformance suite failed (%v):\n%s", runErr, report)
	}
	if testing.Verbose() {
		t.Log(report)
	}
}
