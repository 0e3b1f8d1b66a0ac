// Package cli is the outpost command line: one binary whose subcommands run
// the hub, push and pull models, and manage resources.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/internal/clientconfig"
	"outpost.dev/outpost/internal/hubclient"
)

// Version is the version of this build, from the module's build information.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}

// globals are the flags every command that talks to a hub shares.
type globals struct {
	configPath string
	flags      clientconfig.Overrides
	verbose    bool
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer

	resolved *clientconfig.Target // the hub target() last resolved, for messages
}

// configFile is the client config's path: --config, else the default.
func (g *globals) configFile() string {
	if g.configPath != "" {
		return g.configPath
	}
	return clientconfig.DefaultPath()
}

// target resolves which hub to talk to: flags, then environment, then the client config.
func (g *globals) target() (*clientconfig.Target, error) {
	cfg, err := clientconfig.Load(g.configFile())
	if err != nil {
		return nil, err
	}
	t, err := cfg.Resolve(g.flags.Merge(clientconfig.OverridesFromEnv()))
	if err == nil {
		g.resolved = t
	}
	return t, err
}

// unreachableHint says, after an error that is a failure to reach the hub,
// which hub was asked and how to start or choose one; "" otherwise.
func (g *globals) unreachableHint(err error) string {
	var dnsErr *net.DNSError
	if g.resolved == nil || !errors.Is(err, syscall.ECONNREFUSED) && !errors.As(err, &dnsErr) {
		return ""
	}
	return fmt.Sprintf("no hub answers at %s (from %s): start it with 'outpost hub serve --data DIR', or choose another with --hub or --context",
		g.resolved.URL, g.resolved.Source)
}

// hub returns the client of the hub the command talks to, as target resolves it.
func (g *globals) hub() (*hubclient.Client, error) {
	t, err := g.target()
	if err != nil {
		return nil, err
	}
	// A hub started a moment ago ('outpost hub serve &' in a script) or
	// restarting gets a few seconds to listen.
	return hubclient.New(t.URL.String(), hubclient.Options{Token: t.Token, TLS: t.TLS, RefusedWait: refusedRetryTime})
}

// refusedRetryTime is how long commands try again a hub address that
// refuses connections.
const refusedRetryTime = 3 * time.Second

func (g *globals) logger() *slog.Logger {
	level := slog.LevelInfo
	if g.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
}

// Main runs the command line with args and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root, g := newRoot(stdin, stdout, stderr)
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		if hint := g.unreachableHint(err); hint != "" {
			fmt.Fprintln(stderr, hint)
		}
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// NewRoot builds the command tree.
func NewRoot(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root, _ := newRoot(stdin, stdout, stderr)
	return root
}

// newRoot builds the command tree and returns the globals its commands share.
func newRoot(stdin io.Reader, stdout, stderr io.Writer) (*cobra.Command, *globals) {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "outpost",
		Short: "AI/ML for disconnected and air-gapped edge clusters",
		Long: `Outpost distributes models from a hub to edge clusters whose links are slow,
metered or gone for days: versioned, verified, sent chunk by chunk, and
cached for offline serving.

Start a hub with 'outpost hub init' and 'outpost hub serve'; push models with
'outpost model push'; deploy them with 'outpost apply -f deployment.yaml'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.configPath, "config", "", "client config file (default $OUTPOST_CONFIG or ~/.config/outpost/config.yaml)")
	pf.StringVar(&g.flags.Context, "context", "", "context of the client config to use (env OUTPOST_CONTEXT)")
	pf.StringVar(&g.flags.Hub, "hub", "", "hub URL, such as https://hub.example:8443 (env OUTPOST_HUB)")
	pf.StringVar(&g.flags.Token, "token", "", "token to authenticate with (env OUTPOST_TOKEN)")
	pf.StringVar(&g.flags.CAFile, "ca-file", "", "PEM file of the CA that signed the hub's certificate (env OUTPOST_CA_FILE)")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "log debug detail")

	root.AddCommand(
		newVersionCmd(g),
		newHubCmd(g),
		newKeygenCmd(g),
		newModelCmd(g),
		newDriftCmd(g),
		newApplyCmd(g),
		newGetCmd(g),
		newDeleteCmd(g),
		newDemoCmd(g),
		newClusterCmd(g),
		newAgentCmd(g),
		newInferCmd(g),
		newConfigCmd(g),
		newServeCmd(g),
		newPipelineCmd(g),
		newRolloutCmd(g),
		newBundleCmd(g),
		newControllerCmd(g),
		newFLCmd(g),
	)
	refuseUnknownSubcommands(root)
	return root, g
}

// refuseUnknownSubcommands makes every command that only groups others
// ('outpost model', 'outpost hub', ...) fail on a word that is none of its
// subcommands, suggesting the nearest, as the root does. Cobra would print
// the group's help and exit 0, so that 'outpost model lst' seemed to work.
func refuseUnknownSubcommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if c.Runnable() || !c.HasSubCommands() || !c.HasParent() {
		return
	}
	c.Args = cobra.ArbitraryArgs
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2 // as the root's
	}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
		}
		return fmt.Errorf("%s\n\nRun '%s --help' for its commands", msg, cmd.CommandPath())
	}
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this outpost binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(g.stdout, "outpost %s\n", Version())
			return nil
		},
	}
}

// isTerminal reports whether w is a terminal, where progress bars belong.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
