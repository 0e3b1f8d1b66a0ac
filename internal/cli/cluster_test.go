package cli

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/auth"
	"outpost.dev/outpost/internal/hub"
	"outpost.dev/outpost/internal/store"
)

// testHub serves a hub with the real authenticator over plain HTTP and returns its URL and
// admin token.
func testHub(t *testing.T) (string, string) {
	t.Helper()
	db, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	admin, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	authn := auth.NewAuthenticator(auth.Hash(admin), auth.WithClusterCredentials(db))
	srv, err := hub.New(t.Context(), hub.Config{DB: db, Authorize: authn.Authorize, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return ts.URL, admin
}

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	args = append([]string{"--config", filepath.Join(t.TempDir(), "config.yaml")}, args...)
	code = Main(t.Context(), args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

func TestClusterTokenCommands(t *testing.T) {
	url, admin := testHub(t)

	out, errOut, code := runCLI(t, "--hub", url, "--token", admin, "cluster", "token", "create", "--ttl", "2h", "--description", "north rollout")
	tok := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(tok, auth.JoinTokenPrefix) || strings.Count(out, "\n") != 1 {
		t.Fatalf("create = %d, stdout %q, stderr %q", code, out, errOut)
	}
	if !strings.Contains(errOut, "outpost agent --hub "+url+" --join-token "+tok) || !strings.Contains(errOut, "(in 2h0m0s)") {
		t.Errorf("create stderr lacks the agent command line: %q", errOut)
	}

	out, errOut, code = runCLI(t, "--hub", url, "--token", admin, "cluster", "token", "list")
	if code != 0 || !strings.Contains(out, "north rollout") || !strings.Contains(out, "valid for 2h0m0s") || strings.Contains(out, tok) {
		t.Fatalf("list = %d, stdout %q, stderr %q", code, out, errOut)
	}
	id := strings.Fields(strings.Split(out, "\n")[1])[0]

	out, _, code = runCLI(t, "--hub", url, "--token", admin, "cluster", "token", "list", "-o", "json")
	if code != 0 || !strings.Contains(out, `"id": "`+id+`"`) {
		t.Errorf("list -o json = %d %q", code, out)
	}

	for _, args := range [][]string{
		{"--hub", url, "cluster", "token", "create"},
		{"--hub", url, "--token", "opt_wrong", "cluster", "token", "list"},
		{"--hub", url, "--token", tok, "cluster", "token", "list"},
	} {
		if _, errOut, code := runCLI(t, args...); code == 0 || !strings.Contains(errOut, "error:") {
			t.Errorf("%v = %d %q, want refused", args, code, errOut)
		}
	}
	if _, errOut, code := runCLI(t, "--hub", url, "--token", admin, "cluster", "token", "create", "--ttl", "-1h"); code == 0 || !strings.Contains(errOut, "--ttl") {
		t.Errorf("negative --ttl = %d %q", code, errOut)
	}
	// Too long to be a duration: refused, saying what is accepted.
	if _, errOut, code := runCLI(t, "--hub", url, "--token", admin, "cluster", "token", "create", "--ttl", "9999999h"); code == 0 ||
		!strings.Contains(errOut, `"9999999h" for "--ttl" flag: not a duration`) || !strings.Contains(errOut, "at most 2562047h") {
		t.Errorf("--ttl 9999999h = %d %q", code, errOut)
	}

	if out, errOut, code := runCLI(t, "--hub", url, "--token", admin, "cluster", "token", "delete", id); code != 0 || !strings.Contains(out, id+" deleted") {
		t.Fatalf("delete = %d %q %q", code, out, errOut)
	}
	if _, errOut, code := runCLI(t, "--hub", url, "--token", admin, "cluster", "token", "list"); code != 0 || !strings.Contains(errOut, "no join tokens") {
		t.Errorf("list after delete = %d %q", code, errOut)
	}

	// The longest duration there is: capped by the hub like any TTL over 30 days.
	if _, errOut, code := runCLI(t, "--hub", url, "--token", admin, "cluster", "token", "create", "--ttl", "2562047h47m16.854775807s"); code != 0 ||
		!strings.Contains(errOut, "(in 720h0m0s)") {
		t.Errorf("--ttl of the longest duration = %d %q", code, errOut)
	}
}

func TestCheckOutput(t *testing.T) {
	tests := []struct {
		output  string
		formats []string
		wantErr string
	}{
		{"", []string{"json"}, ""},
		{"json", []string{"json"}, ""},
		{"wide", []string{"yaml", "json", "wide", "name"}, ""},
		{"xml", []string{"json"}, `-o "xml": want json`},
		{"xml", []string{"yaml", "json"}, `-o "xml": want yaml or json`},
		{"xml", []string{"yaml", "json", "wide", "name"}, `-o "xml": want yaml, json, wide or name`},
	}
	for _, tt := range tests {
		err := checkOutput(tt.output, tt.formats...)
		if got := fmt.Sprint(err); (tt.wantErr == "" && err != nil) || (tt.wantErr != "" && got != tt.wantErr) {
			t.Errorf("checkOutput(%q, %v) = %v, want %q", tt.output, tt.formats, err, tt.wantErr)
		}
	}
}
