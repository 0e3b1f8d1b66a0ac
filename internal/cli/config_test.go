package cli

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"outpost.dev/outpost/internal/clientconfig"
)

// runWithConfig runs the command line with the client config at path.
func runWithConfig(t *testing.T, path string, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code = Main(t.Context(), append([]string{"--config", path}, args...), strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

func TestConfigViewAndToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg := &clientconfig.Config{}
	cfg.SetContext(clientconfig.Context{Name: "lab", Hub: "https://127.0.0.1:8443", Token: "opt_secret-lab"})
	cfg.SetContext(clientconfig.Context{Name: "ship", Hub: "https://ship:8443", Token: "opt_secret-ship"})
	cfg.CurrentContext = "lab"
	if err := cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	none := map[string]string{"OUTPOST_TOKEN": "", "OUTPOST_CONTEXT": "", "OUTPOST_HUB": ""}

	out, errOut, code := runWithConfig(t, path, none, "config", "view")
	if code != 0 || strings.Contains(out, "opt_secret") || strings.Count(out, "token: REDACTED") != 2 ||
		!strings.Contains(out, "current-context: lab") || !strings.Contains(out, "https://ship:8443") {
		t.Fatalf("config view = %d, stderr %q:\n%s", code, errOut, out)
	}
	out, _, code = runWithConfig(t, path, none, "config", "view", "--raw")
	if code != 0 || !strings.Contains(out, "token: opt_secret-lab") || !strings.Contains(out, "token: opt_secret-ship") {
		t.Fatalf("config view --raw = %d:\n%s", code, out)
	}

	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"current context", none, nil, "opt_secret-lab"},
		{"--context", none, []string{"--context", "ship"}, "opt_secret-ship"},
		{"OUTPOST_CONTEXT", map[string]string{"OUTPOST_CONTEXT": "ship", "OUTPOST_TOKEN": ""}, nil, "opt_secret-ship"},
		{"OUTPOST_TOKEN wins over the context", map[string]string{"OUTPOST_TOKEN": "opt_env", "OUTPOST_CONTEXT": ""}, nil, "opt_env"},
		{"--token wins over all", map[string]string{"OUTPOST_TOKEN": "opt_env"}, []string{"--token", "opt_flag"}, "opt_flag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := runWithConfig(t, path, tt.env, append(tt.args, "config", "token")...)
			if code != 0 || out != tt.want+"\n" {
				t.Fatalf("config token = %d, %q (stderr %q), want %q", code, out, errOut, tt.want)
			}
		})
	}

	missing := filepath.Join(t.TempDir(), "none.yaml")
	if _, errOut, code := runWithConfig(t, missing, none, "config", "view"); code == 0 || !strings.Contains(errOut, "no client config at "+missing) {
		t.Errorf("config view of a missing file = %d, %q", code, errOut)
	}
}

// TestUnknownSubcommand checks that a word that is no subcommand of a group
// fails, with the nearest ones suggested, where cobra printed help and exit 0.
func TestUnknownSubcommand(t *testing.T) {
	tests := []struct {
		args    []string
		want    string
		suggest string
	}{
		{[]string{"model", "lst"}, `unknown command "lst" for "outpost model"`, "list"},
		{[]string{"cluster", "tokn"}, `unknown command "tokn" for "outpost cluster"`, "token"},
		{[]string{"hub", "serv"}, `unknown command "serv" for "outpost hub"`, "serve"},
		{[]string{"config", "veiw"}, `unknown command "veiw" for "outpost config"`, "view"},
		{[]string{"model", "frobnicate"}, `unknown command "frobnicate" for "outpost model"`, ""},
		{[]string{"modle"}, `unknown command "modle" for "outpost"`, "model"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, errOut, code := runCLI(t, tt.args...)
			if code == 0 || !strings.Contains(errOut, tt.want) || out != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want a failure saying %q", code, out, errOut, tt.want)
			}
			if tt.suggest != "" && !strings.Contains(errOut, "Did you mean this?\n\t"+tt.suggest) {
				t.Errorf("no suggestion of %q: %q", tt.suggest, errOut)
			}
		})
	}
	// The group alone still prints its help and succeeds.
	out, _, code := runCLI(t, "model")
	if code != 0 || !strings.Contains(out, "Available Commands") {
		t.Errorf("outpost model = %d:\n%s", code, out)
	}
}

// TestUnreachableHub checks that a command that cannot reach its hub says
// which hub it asked, where that came from, and how to start or choose one.
func TestUnreachableHub(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String()
	ln.Close() // nothing listens there now

	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg := &clientconfig.Config{}
	cfg.SetContext(clientconfig.Context{Name: "lab", Hub: url, Token: "opt_x"})
	cfg.CurrentContext = "lab"
	if err := cfg.Save(path); err != nil {
		t.Fatal(err)
	}
	none := map[string]string{"OUTPOST_TOKEN": "", "OUTPOST_CONTEXT": "", "OUTPOST_HUB": ""}
	tests := []struct {
		name string
		args []string
		from string
	}{
		{"resources, hub from the context", []string{"get", "clusters"}, `(from context "lab" of the client config)`},
		{"registry, hub from the context", []string{"model", "list"}, `(from context "lab" of the client config)`},
		{"hub from --hub", []string{"--hub", url, "model", "list"}, "(from --hub or OUTPOST_HUB)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := runWithConfig(t, path, none, tt.args...)
			want := "no hub answers at " + url + " " + tt.from + ": start it with 'outpost hub serve --data DIR'"
			if code == 0 || !strings.Contains(errOut, want) {
				t.Fatalf("exit %d, stderr %q; want it to say %q", code, errOut, want)
			}
		})
	}
	// An error that is not about reaching the hub gets no such hint.
	_, errOut, _ := runWithConfig(t, path, none, "model", "show", "BAD NAME")
	if strings.Contains(errOut, "no hub answers") {
		t.Errorf("a bad model name got the unreachable hint: %q", errOut)
	}
}
