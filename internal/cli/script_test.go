package cli

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"outpost.dev/outpost/internal/hub/hubtest"
)

// TestMain lets the scripts under testdata/script run outpost as a user types
// it: the test binary stands in for the outpost command.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"outpost": func() { os.Exit(Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// TestScripts runs the scripts under testdata/script against a hub of their
// own, which OUTPOST_HUB and OUTPOST_TOKEN name.
func TestScripts(t *testing.T) {
	srv, admin := hubtest.Build(t)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "script"),
		Setup: func(env *testscript.Env) error {
			env.Setenv("OUTPOST_HUB", ts.URL)
			env.Setenv("OUTPOST_TOKEN", admin)
			env.Setenv("OUTPOST_CONFIG", filepath.Join(env.WorkDir, "config.yaml"))
			return nil
		},
	})
}
