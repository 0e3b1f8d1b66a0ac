package cli

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newDemoCmd(g *globals) *cobra.Command {
	var (
		dir  string
		keep bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a hub on this machine and walk through pushing, signing, deploying and pulling a model",
		Long: `Start a hub in a scratch directory as a separate process, then: create a
signing key, push model v1.0.0 (a 16 MiB weights file and its config), sign it,
register three edge clusters with labels, deploy the model by label selector
with the range ^1.0, push v1.1.0 with about 10% of the weights changed, and
show that the deployment moved to 1.1.0, that only a small share of the
chunks changed, and that bad input is refused. Every step is checked; the
exit status is 0 only if every check held.

With --keep the hub keeps running so you can explore it with the CLI.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDemo(cmd.Context(), g, dir, keep)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "scratch directory (default: a new temporary directory)")
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the hub running at the end")
	return cmd
}

// demo drives the CLI against a hub process and records what it checked.
type demo struct {
	ctx      context.Context
	g        *globals
	dir      string
	config   string
	start    time.Time
	failures []string
}

func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.g.stdout, "\n[%5.1fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

func (d *demo) check(ok bool, format string, args ...any) {
	mark := "ok  "
	if !ok {
		mark = "FAIL"
		d.failures = append(d.failures, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(d.g.stdout, "  %s %s\n", mark, fmt.Sprintf(format, args...))
}

// run runs an outpost command in-process against the demo's client config
// and returns its standard output and error.
func (d *demo) run(args ...string) (string, error) {
	var out, errb bytes.Buffer
	root := NewRoot(strings.NewReader(""), &out, &errb)
	root.SetArgs(append([]string{"--config", d.config}, args...))
	err := root.ExecuteContext(d.ctx)
	if err != nil {
		return out.String(), fmt.Errorf("outpost %s: %w", strings.Join(args, " "), err)
	}
	return out.String(), nil
}

// show runs a command and prints it with its output, indented.
func (d *demo) show(args ...string) string {
	fmt.Fprintf(d.g.stdout, "  $ outpost %s\n", strings.Join(args, " "))
	out, err := d.run(args...)
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if l != "" {
			fmt.Fprintf(d.g.stdout, "    %s\n", l)
		}
	}
	if err != nil {
		d.check(false, "%v", err)
	}
	return out
}

func runDemo(ctx context.Context, g *globals, dir string, keep bool) error {
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "outpost-demo-"); err != nil {
			return err
		}
		if !keep {
			defer os.RemoveAll(dir)
		}
	}
	d := &demo{ctx: ctx, g: g, dir: dir, config: filepath.Join(dir, "client.yaml"), start: time.Now()}
	hubDir := filepath.Join(dir, "hub")
	addr, err := freeAddr()
	if err != nil {
		return err
	}

	d.step("Initialise a hub in %s (CA, TLS certificate, admin token)", hubDir)
	d.show("hub", "init", "--data", hubDir, "--listen", addr, "--context-name", "demo")

	d.step("Create a release signing key; the hub trusts the keys in %s", filepath.Join(hubDir, "trusted-keys"))
	keyPrefix := filepath.Join(dir, "release")
	d.show("keygen", "--out", keyPrefix)
	if err := copyFile(keyPrefix+".pub", filepath.Join(hubDir, "trusted-keys", "release.pub")); err != nil {
		return err
	}

	d.step("Start the hub as its own process: outpost hub serve --data %s", hubDir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	readyFile := filepath.Join(dir, "hub.addr")
	logPath := filepath.Join(dir, "hub.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	hub := exec.Command(self, "hub", "serve", "--data", hubDir, "--ready-file", readyFile)
	hub.Stdout, hub.Stderr = logFile, logFile
	if err := hub.Start(); err != nil {
		return fmt.Errorf("start hub: %w", err)
	}
	stopHub := func() {
		hub.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { hub.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			hub.Process.Kill()
		}
	}
	if !keep {
		defer stopHub()
	}
	if err := waitFile(ctx, readyFile, 30*time.Second); err != nil {
		return fmt.Errorf("hub did not start (log in %s): %w", logPath, err)
	}
	d.check(true, "hub serving on https://%s (log: %s)", addr, logPath)

	d.step("Push model fashion-demo v1.0.0: a 16 MiB weights file and its config")
	v1 := filepath.Join(dir, "model-v1")
	v2 := filepath.Join(dir, "model-v2")
	if err := writeDemoModel(v1, v2); err != nil {
		return err
	}
	d.show("model", "push", v1, "--name", "fashion-demo", "--version", "1.0.0", "--metric", "accuracy=0.842")
	d.show("model", "sign", "fashion-demo@1.0.0", "--key", keyPrefix+".key")
	out := d.show("model", "verify", "fashion-demo@1.0.0", "--key", keyPrefix+".pub")
	d.check(strings.Contains(out, "verified"), "signature of 1.0.0 verifies against the release key")

	d.step("Register three edge clusters and deploy fashion-demo ^1.0, signed versions only, to region=north or tier=gpu")
	fleet := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(fleet, []byte(demoFleet), 0o644); err != nil {
		return err
	}
	d.show("apply", "-f", fleet)
	d.show("get", "clusters")
	out = d.show("get", "modeldeployment", "fashion-demo", "-o", "wide")
	d.check(strings.Count(out, "1.0.0") >= 2 && !strings.Contains(out, "ship-3"), "ship-1 and ship-2 selected for 1.0.0, ship-3 left out")

	d.step("Push v1.1.0, a fine-tune that changes about 10%% of the weights; it is not signed yet")
	d.show("model", "push", v2, "--name", "fashion-demo", "--version", "1.1.0", "--parent", "fashion-demo@1.0.0", "--metric", "accuracy=0.857")
	out = d.show("get", "modeldeployment", "fashion-demo", "-o", "wide")
	d.check(!strings.Contains(out, "1.1.0"), "the deployment stays on signed 1.0.0 while 1.1.0 is unsigned")

	d.step("Sign v1.1.0: the deployment follows ^1.0 to it")
	d.show("model", "sign", "fashion-demo@1.1.0", "--key", keyPrefix+".key")
	out = d.show("get", "modeldeployment", "fashion-demo", "-o", "wide")
	d.check(strings.Count(out, "1.1.0") >= 2, "desired version moved to 1.1.0 on both selected clusters")
	d.show("model", "list")
	d.show("model", "show", "fashion-demo@1.1.0", "--key", keyPrefix+".pub")
	out = d.show("model", "diff", "fashion-demo@1.0.0", "fashion-demo@1.1.0")
	d.check(demoDeltaShare(out) > 0 && demoDeltaShare(out) <= 15, "a cluster holding 1.0.0 needs at most 15%% of 1.1.0's bytes (%.1f%%)", demoDeltaShare(out))

	d.step("Pull v1.1.0 back and compare bytes")
	pulled := filepath.Join(dir, "pulled")
	d.show("model", "pull", "fashion-demo@1.1.0", pulled)
	same, err := sameTree(v2, pulled)
	d.check(err == nil && same, "pulled files are byte-identical to what was pushed")

	d.step("Bad input is refused and changes nothing")
	_, err = d.run("model", "push", v2, "--name", "fashion-demo", "--version", "1.0.0")
	d.check(err != nil && strings.Contains(err.Error(), "different content"), "re-pushing 1.0.0 with other bytes is refused: %v", firstLine(err))
	_, err = d.run("model", "push", v2, "--name", "fashion-demo", "--version", "one")
	d.check(err != nil, "an invalid semver version is refused: %v", firstLine(err))
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: ml.outpost.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\nspec: {model: {name: fashion-demo, verison: 1.0.0}}\n"), 0o644)
	_, err = d.run("apply", "-f", bad)
	d.check(err != nil && strings.Contains(err.Error(), "verison"), "a misspelt field is refused, naming it: %v", firstLine(err))
	_, err = d.run("--token", "wrong", "get", "clusters")
	d.check(err != nil, "a wrong token is refused: %v", firstLine(err))

	fmt.Fprintln(g.stdout)
	if keep {
		fmt.Fprintf(g.stdout, "The hub keeps running (pid %d). Try:\n  export OUTPOST_CONFIG=%s\n  outpost get modeldeployment fashion-demo -o wide\nStop it with: kill %d\n",
			hub.Process.Pid, d.config, hub.Process.Pid)
	}
	if len(d.failures) > 0 {
		return exitError{code: 1, err: fmt.Errorf("%d check(s) failed: %s", len(d.failures), strings.Join(d.failures, "; "))}
	}
	fmt.Fprintf(g.stdout, "demo finished in %.1fs: every check held\n", time.Since(d.start).Seconds())
	return nil
}

const demoFleet = `apiVersion: ml.outpost.dev/v1alpha1
kind: Cluster
metadata:
  name: ship-1
  labels: {region: north, tier: cpu}
---
apiVersion: ml.outpost.dev/v1alpha1
kind: Cluster
metadata:
  name: ship-2
  labels: {region: south, tier: gpu}
---
apiVersion: ml.outpost.dev/v1alpha1
kind: Cluster
metadata:
  name: ship-3
  labels: {region: south, tier: cpu}
---
apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: fashion-demo
spec:
  model: {name: fashion-demo, version: "^1.0"}
  requireSignature: true
  clusterSelectors:
  - matchLabels: {region: north}
  - matchLabels: {tier: gpu}
`

// writeDemoModel writes two versions of a synthetic model: v2 changes
// about 10% of v1's weights, in whole contiguous tensors, as fine-tuning the
// last layers would.
func writeDemoModel(v1, v2 string) error {
	const n = 4 << 20 // float32 weights: 16 MiB
	rng := rand.New(rand.NewPCG(1, 2))
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.05)
	}
	enc := func(w []float32) []byte {
		b := make([]byte, 4*len(w))
		for i, x := range w {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b
	}
	cfg := []byte(`{"architecture": "mlp", "inputs": [784], "hidden": [512, 256], "classes": 10}` + "\n")
	for _, dir := range []string{v1, v2} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(v1, "weights.bin"), enc(w), 0o644); err != nil {
		return err
	}
	start := n - n/10
	for i := start; i < n; i++ {
		w[i] += float32(rng.NormFloat64() * 0.01)
	}
	return os.WriteFile(filepath.Join(v2, "weights.bin"), enc(w), 0o644)
}

func sameTree(a, b string) (bool, error) {
	same := true
	err := filepath.WalkDir(a, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		x, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		y, err := os.ReadFile(filepath.Join(b, rel))
		if err != nil {
			return err
		}
		same = same && bytes.Equal(x, y)
		return nil
	})
	return same, err
}

// demoDeltaShare reads the percentage that 'model diff' printed, or -1.
func demoDeltaShare(out string) float64 {
	i := strings.Index(out, "(")
	j := strings.Index(out, "%)")
	if i < 0 || j < i {
		return -1
	}
	var pct float64
	if _, err := fmt.Sscanf(out[i+1:j], "%g", &pct); err != nil {
		return -1
	}
	return pct
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitFile waits until path exists, polling with a deadline.
func waitFile(ctx context.Context, path string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func firstLine(err error) string {
	if err == nil {
		return "no error"
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
