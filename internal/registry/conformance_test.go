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

	"outpost.dev/outpost/internal/testenv"
)

// TestConformance runs the OCI distribution-spec conformance suite (built by scripts/conformance.sh)
// against the registry on a loopback listener, with every optional API and data kind enabled.
func TestConformance(t *testing.T) {
	bin := testenv.PeerEnv(t, "OUTPOST_CONFORMANCE_BIN", "the distribution-spec conformance test binary")
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
