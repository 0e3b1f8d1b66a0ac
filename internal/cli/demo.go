package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/bytesize"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/linksim"
	"outpost.dev/outpost/internal/train"
	"outpost.dev/outpost/internal/versions"
)

func newDemoCmd(g *globals) *cobra.Command {
	var (
		dir       string
		keep      bool
		bandwidth string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a hub and three edge agents on this machine, with links that fail",
		Long: `Run the main job of Outpost on this machine, start to finish, and check it.

A hub and three edge agents start as separate processes, each agent behind
its own simulated link. A small network is trained on Fashion-MNIST and
pushed as v1.0.0 (signed), deployed by label selector, and fetched by every
cluster. Then one link is cut, v1.1.0 (fine-tuned: only the last layers
change) is pushed, the connected clusters move to it while the cut one keeps
serving v1.0.0 from its cache, the link comes back, and the cut cluster
catches up fetching only the chunks that changed. Last, drift monitoring is
turned on, one cluster is cut off again and salt spray fogs its camera: it
detects the drift on its own, keeps its window reports in its outbox, and
its drift alarm starts a pipeline there that fine-tunes the served model on
the images its crew labelled and registers the result only because it
evaluates better. When the link returns the hub learns of the drift in a
few kilobytes, sends one alert to a webhook, and receives the run and the
new version with its lineage; promoted and signed at the hub, the version
reaches every cluster. Then the deployment becomes a Canary rollout and a
signed version that does not load is pushed: it stops at its canary, which is
rolled back with the reason, while the other clusters keep the good version.

Every step is timed and checked: versions never go backwards, every cached
byte matches its digest, the cut cluster kept serving, and updates cost a
small part of the model's size. The exit status is 0 only if every check
held. With --keep everything keeps running until interrupted, so you can
explore with the CLI.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			bps, err := agent.ParseBandwidth(bandwidth)
			if err != nil {
				return fmt.Errorf("--link-bandwidth: %w", err)
			}
			return runDemo(cmd.Context(), g, dir, keep, bps)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "scratch directory (default: a new temporary directory, removed at the end)")
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the hub and agents running until interrupted")
	cmd.Flags().StringVar(&bandwidth, "link-bandwidth", "4MiB", "bandwidth of each simulated edge link, per second")
	return cmd
}

// demo drives the CLI against hub and agent processes and records what it checked.
type demo struct {
	ctx      context.Context
	g        *globals
	dir      string
	config   string
	start    time.Time
	failures []string
	procs    []proc
	edges    []*edge // the clusters, once started; their links close after the processes stop
	// regressions counts times a cluster was seen serving a lower version than before.
	regressions int
}

// proc is a process the demo started; done is closed when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (d *demo) step(format string, args ...any) {
	fmt.Fprintf(d.g.stdout, "\n[%5.1fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...))
}

func (d *demo) check(ok bool, format string, args ...any) bool {
	mark := "ok  "
	if !ok {
		mark = "FAIL"
		d.failures = append(d.failures, fmt.Sprintf(format, args...))
	}
	fmt.Fprintf(d.g.stdout, "  %s %s\n", mark, fmt.Sprintf(format, args...))
	return ok
}

func (d *demo) note(format string, args ...any) {
	fmt.Fprintf(d.g.stdout, "  %s\n", fmt.Sprintf(format, args...))
}

// run runs an outpost command in-process against the demo's client config.
func (d *demo) run(args ...string) (string, error) {
	var out, errb bytes.Buffer
	root := NewRoot(strings.NewReader(""), &out, &errb)
	root.SetArgs(append([]string{"--config", d.config}, args...))
	if err := root.ExecuteContext(d.ctx); err != nil {
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

// spawn starts this binary with args as a separate process logging to logPath.
func (d *demo) spawn(logPath string, args ...string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", args[0], err)
	}
	p := proc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); logFile.Close(); close(p.done) }()
	d.procs = append(d.procs, p)
	return nil
}

// stopAll interrupts every process the demo started and waits for them.
func (d *demo) stopAll() {
	for _, p := range d.procs {
		p.cmd.Process.Signal(os.Interrupt)
	}
	timeout := time.After(10 * time.Second)
	for _, p := range d.procs {
		select {
		case <-p.done:
		case <-timeout:
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	for _, e := range d.edges {
		if e.link != nil {
			e.link.Close()
		}
	}
}

// edge is one demo cluster: an agent process behind a simulated link.
type edge struct {
	name, labels string
	dir          string
	serve        string // the agent's inference endpoint
	link         *linksim.Link
	highest      string // the highest version seen active: it must never go down
}

func (e *edge) status(ctx context.Context) (*agent.Status, error) {
	return agent.ReadStatus(ctx, e.dir)
}

func (e *edge) active(ctx context.Context, deployment string) string {
	s, err := e.status(ctx)
	if err != nil {
		return ""
	}
	for _, m := range s.Models {
		if m.Deployment == deployment {
			return m.ActiveVersion
		}
	}
	return ""
}

// watch records e's active version, checks that it never went down, and returns it.
func (d *demo) watch(e *edge) string {
	v := e.active(d.ctx, "fashion")
	if v == "" {
		return ""
	}
	if e.highest != "" {
		if c, err := versions.Compare(v, e.highest); err == nil && c < 0 {
			d.regressions++
			d.check(false, "%s went back from %s to %s", e.name, e.highest, v)
		}
	}
	e.highest = v
	return v
}

// waitActive waits until every edge serves version v, checking monotonicity as it goes.
func (d *demo) waitActive(v string, limit time.Duration, edges ...*edge) bool {
	deadline := time.Now().Add(limit)
	for {
		done := true
		for _, e := range edges {
			if d.watch(e) != v {
				done = false
			}
		}
		if done {
			return true
		}
		if time.Now().After(deadline) || d.ctx.Err() != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitHub waits until the hub shows version v active on the named clusters
// (agents report every second, so the hub lags them a little).
func (d *demo) waitHub(v string, limit time.Duration, edges ...*edge) bool {
	deadline := time.Now().Add(limit)
	for {
		out, err := d.run("get", "modeldeployment", "fashion", "-o", "json")
		var md v1alpha1.ModelDeployment
		if err == nil && json.Unmarshal([]byte(out), &md) == nil {
			n := 0
			for _, e := range edges {
				for _, row := range md.Status.Clusters {
					if row.Cluster == e.name && row.ActiveVersion == v && row.Phase == v1alpha1.PhaseActive {
						n++
					}
				}
			}
			if n == len(edges) {
				return true
			}
		}
		if time.Now().After(deadline) || d.ctx.Err() != nil {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func runDemo(ctx context.Context, g *globals, dir string, keep bool, linkBps int64) error {
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "outpost-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	d := &demo{ctx: ctx, g: g, dir: dir, config: filepath.Join(dir, "client.yaml"), start: time.Now()}
	defer d.stopAll()
	if err := d.main(keep, linkBps); err != nil {
		return err
	}
	if len(d.failures) > 0 {
		return exitError{code: 1, err: fmt.Errorf("%d check(s) failed: %s", len(d.failures), strings.Join(d.failures, "; "))}
	}
	fmt.Fprintf(g.stdout, "\ndemo finished in %.1fs: every check held\n", time.Since(d.start).Seconds())
	if keep {
		d.explore(g.stdout)
		<-ctx.Done()
	}
	return nil
}

// explore tells where everything runs, for --keep: the hub and agents stay
// up and connected until interrupted.
func (d *demo) explore(w io.Writer) {
	fmt.Fprintf(w, "\nThe hub and agents keep running, connected, until Ctrl-C. In another shell:\n  export OUTPOST_CONFIG=%s\n", d.config)
	fmt.Fprintln(w, "  outpost get clusters")
	fmt.Fprintln(w, "  outpost get modeldeployment fashion -o wide")
	for _, e := range d.edges {
		fmt.Fprintf(w, "  outpost agent status --data %s\n", e.dir)
	}
	if len(d.edges) > 0 {
		fmt.Fprintf(w, "  outpost model example %s --input %s\n", filepath.Join(d.dir, "example"), filepath.Join(d.dir, "image.json"))
		fmt.Fprintf(w, "  outpost infer fashion --input %s --server http://%s\n", filepath.Join(d.dir, "image.json"), d.edges[0].serve)
	}
	fmt.Fprintln(w, "Clusters (data directory, inference endpoint):")
	for _, e := range d.edges {
		fmt.Fprintf(w, "  %-8s %s  http://%s\n", e.name, e.dir, e.serve)
	}
}

func (d *demo) main(keep bool, linkBps int64) error {
	hubDir := filepath.Join(d.dir, "hub")
	addr, err := freeAddr()
	if err != nil {
		return err
	}

	d.step("Initialise a hub (CA, TLS certificate, admin token) and a release signing key it trusts")
	d.show("hub", "init", "--data", hubDir, "--listen", addr, "--context-name", "demo")
	keyPrefix := filepath.Join(d.dir, "release")
	d.show("keygen", "--out", keyPrefix)
	if err := copyFile(keyPrefix+".pub", filepath.Join(hubDir, "trusted-keys", "release.pub")); err != nil {
		return err
	}

	alerts, err := startAlerts()
	if err != nil {
		return err
	}
	defer alerts.stop()
	d.step("Start the hub as its own process (log: %s), drift alerts going to a webhook at %s", filepath.Join(d.dir, "hub.log"), alerts.url)
	readyFile := filepath.Join(d.dir, "hub.addr")
	if err := d.spawn(filepath.Join(d.dir, "hub.log"), "hub", "serve", "--data", hubDir, "--ready-file", readyFile, "--offline-after", "5s",
		"--alert-webhook", alerts.url); err != nil {
		return err
	}
	if err := waitFile(d.ctx, readyFile, 30*time.Second); err != nil {
		return fmt.Errorf("hub did not start (log in %s): %w", filepath.Join(d.dir, "hub.log"), err)
	}
	d.note("hub serving on https://%s", addr)

	d.step("Train a small network on Fashion-MNIST (6,000 images), then fine-tune its last two layers")
	trainSet, testSet, err := dataset.FashionSubset()
	if err != nil {
		return err
	}
	m1, m2, err := train.TrainDemo(d.ctx, trainSet)
	if err != nil {
		return fmt.Errorf("train: %w", err)
	}
	acc1, err := m1.Evaluate(testSet)
	if err != nil {
		return err
	}
	acc2, err := m2.Evaluate(testSet)
	if err != nil {
		return err
	}
	v1, v2 := filepath.Join(d.dir, "model-v1"), filepath.Join(d.dir, "model-v2")
	for _, x := range []struct {
		dir string
		m   *train.MLP
	}{{v1, m1}, {v2, m2}} {
		b, err := x.m.MarshalONNX("fashion")
		if err != nil {
			return err
		}
		if err := os.MkdirAll(x.dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(x.dir, "model.onnx"), b, 0o644); err != nil {
			return err
		}
	}
	fi, err := os.Stat(filepath.Join(v1, "model.onnx"))
	if err != nil {
		return err
	}
	modelSize := fi.Size()
	d.note("v1.0.0: test accuracy %.1f%%; v1.1.0 (fine-tuned): %.1f%%; ONNX file %s", 100*acc1, 100*acc2, bytesize.Format(modelSize))
	reference := filepath.Join(d.dir, "reference-images-idx3-ubyte")
	if err := writeIDX(reference, testSet.Slice(0, demoReference)); err != nil {
		return err
	}

	d.step("Push v1.0.0 and sign it")
	d.show("model", "push", v1, "--name", "fashion", "--version", "1.0.0", "--metric", fmt.Sprintf("accuracy=%.4f", acc1))
	d.show("model", "sign", "fashion@1.0.0", "--key", keyPrefix+".key")

	d.step("Start three edge agents, each behind its own simulated link (%s/s)", bytesize.Format(linkBps))
	tokOut, err := d.run("cluster", "token", "create", "--ttl", "1h", "--description", "demo")
	if err != nil {
		return err
	}
	token := strings.TrimSpace(tokOut)
	edges := []*edge{
		{name: "ship-1", labels: "tier=edge,region=north"},
		{name: "ship-2", labels: "tier=edge,region=south"},
		{name: "ship-3", labels: "tier=edge,region=east"},
	}
	for _, e := range edges {
		e.dir = filepath.Join(d.dir, e.name)
		if e.link, err = linksim.Listen(addr, linksim.Options{Bandwidth: linkBps}); err != nil {
			return err
		}
		d.edges = append(d.edges, e)
		if e.serve, err = freeAddr(); err != nil {
			return err
		}
		ready := filepath.Join(d.dir, e.name+".ready")
		if err := d.spawn(filepath.Join(d.dir, e.name+".log"), "agent", "--hub", "https://"+e.link.Addr(),
			"--ca-file", filepath.Join(hubDir, "pki", "ca.crt"), "--join-token", token, "--data", e.dir,
			"--name", e.name, "--labels", e.labels, "--ready-file", ready, "--trusted-key", keyPrefix+".pub",
			"--serve", e.serve, "--poll-timeout", "5s", "--report-interval", "1s", "--pipeline-data", d.pipelineData(e)); err != nil {
			return err
		}
		if err := waitFile(d.ctx, ready, 60*time.Second); err != nil {
			return fmt.Errorf("agent %s did not start (log in %s): %w", e.name, filepath.Join(d.dir, e.name+".log"), err)
		}
		d.note("%s joined through link %s -> hub (labels %s), serves inference on http://%s", e.name, e.link.Addr(), e.labels, e.serve)
	}
	d.show("get", "clusters")

	d.step("Deploy fashion ^1.0 (signed versions only) to every cluster with tier=edge")
	spec := filepath.Join(d.dir, "deployment.yaml")
	if err := os.WriteFile(spec, []byte(demoDeployment), 0o644); err != nil {
		return err
	}
	d.show("apply", "-f", spec)
	d.check(d.waitActive("1.0.0", 2*time.Minute, edges...), "every cluster fetched, verified and activated 1.0.0")
	d.check(d.waitHub("1.0.0", 30*time.Second, edges...), "the hub shows 1.0.0 active on every cluster")
	d.show("get", "modeldeployment", "fashion", "-o", "wide")

	d.step("Ask %s for predictions over the Open Inference Protocol (its own cached copy, no hub involved)", edges[0].name)
	client := &http.Client{Timeout: 10 * time.Second}
	const shown = 8
	preds, version, err := demoInfer(d.ctx, client, edges[0].serve, testSet, 0, shown)
	if d.check(err == nil && version == "1.0.0", "POST http://%s/v2/models/fashion/infer answered with version %s%s", edges[0].serve, version, errNote(err)) {
		right := 0
		for i, p := range preds {
			mark := " "
			if p == int(testSet.Labels[i]) {
				right++
				mark = "*"
			}
			d.note("%s image %d: predicted %-12s true %s", mark, i, dataset.FashionClasses[p], dataset.FashionClasses[testSet.Labels[i]])
		}
		d.note("%d of %d right", right, shown)
	}

	cut := edges[2]
	d.step("Cut %s's link, then push v1.1.0 (fine-tuned) and sign it", cut.name)
	cut.link.Partition(true)
	for _, e := range edges {
		e.link.ResetStats()
	}
	d.show("model", "push", v2, "--name", "fashion", "--version", "1.1.0", "--parent", "fashion@1.0.0", "--metric", fmt.Sprintf("accuracy=%.4f", acc2),
		"--reference", reference)
	// Clients keep asking ship-1 for predictions while it swaps versions.
	// The deployment takes signed versions only, so nothing moves before
	// the signature: the clients start first.
	var load demoLoad
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() { load.run(d.ctx, client, edges[0].serve, testSet, stop); close(loadDone) }()
	d.show("model", "sign", "fashion@1.1.0", "--key", keyPrefix+".key")
	d.show("model", "diff", "fashion@1.0.0", "fashion@1.1.0")
	d.check(d.waitActive("1.1.0", 2*time.Minute, edges[:2]...), "the connected clusters moved to 1.1.0")
	// Let the swap finish under load, then stop the clients.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		load.mu.Lock()
		n := load.versions["1.1.0"]
		load.mu.Unlock()
		if n >= 20 {
			break
		}
	}
	close(stop)
	<-loadDone
	d.check(load.failures.Load() == 0 && load.versions["1.0.0"] > 0 && load.versions["1.1.0"] > 0,
		"%d requests to %s during the swap: %d answered by 1.0.0, %d by 1.1.0, %d failed%s", load.requests.Load(), edges[0].name,
		load.versions["1.0.0"], load.versions["1.1.0"], load.failures.Load(), errNote(load.firstErr))
	d.check(d.waitHub("1.1.0", 30*time.Second, edges[:2]...), "the hub shows 1.1.0 active on them")

	d.step("Who has what while %s is cut off", cut.name)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(mustString(d.run("get", "clusters")), "Disconnected") && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	out := d.show("get", "clusters")
	d.check(strings.Contains(out, "Disconnected"), "the hub marks %s disconnected", cut.name)
	d.show("get", "modeldeployment", "fashion", "-o", "wide")
	d.note("%s's own view, read from its local state with no hub:", cut.name)
	d.show("agent", "status", "--data", cut.dir)
	d.check(cut.active(d.ctx, "fashion") == "1.0.0", "%s keeps serving 1.0.0 from its cache", cut.name)

	d.step("Restore %s's link: it catches up, fetching only the chunks that changed", cut.name)
	cut.link.Partition(false)
	d.check(d.waitActive("1.1.0", 2*time.Minute, cut), "%s caught up to 1.1.0", cut.name)
	d.check(d.waitHub("1.1.0", 30*time.Second, edges...), "the hub shows 1.1.0 active on every cluster")
	d.show("get", "modeldeployment", "fashion", "-o", "wide")
	d.show("get", "clusters")
	d.note("%-8s %14s %14s %8s", "cluster", "link bytes", "model size", "share")
	for _, e := range edges {
		st := e.link.Stats()
		share := float64(st.Down) / float64(modelSize)
		d.note("%-8s %14d %14d %7.1f%%", e.name, st.Down, modelSize, 100*share)
		d.check(share < 0.35, "%s's update to 1.1.0 cost %.1f%% of the model's size (all traffic, control included)", e.name, 100*share)
	}

	d.step("Check the invariants on every cluster")
	for _, e := range edges {
		d.watch(e)
		bad, n, err := verifyCache(e.dir)
		d.check(err == nil && bad == 0 && n > 0, "%s: every one of %d cached blobs matches its digest", e.name, n)
		s, err := e.status(d.ctx)
		if err == nil {
			d.check(s.AppliedRevision > 0, "%s applied desired-state revision %d; stale ones rejected: %d", e.name, s.AppliedRevision, s.RejectedStale)
		}
	}
	d.check(d.regressions == 0, "no cluster ever went back to a lower version (versions sampled every 100 ms while waiting)")

	if err := d.retrainSetup(cut, trainSet, testSet); err != nil {
		return err
	}
	if err := d.driftScene(cut, testSet, alerts, edges, keyPrefix+".key", modelSize); err != nil {
		return err
	}
	// The air-gapped cluster is brought the version the fleet serves before
	// the Canary scene pushes one that fails its gate.
	if err := d.airgapScene(hubDir, addr, token, keyPrefix+".pub", testSet); err != nil {
		return err
	}
	if err := d.rolloutScene(edges, keyPrefix+".key"); err != nil {
		return err
	}
	if err := d.flScene(edges); err != nil {
		return err
	}
	if err := d.compressScene(addr, filepath.Join(hubDir, "pki", "ca.crt"), token, keyPrefix+".pub", keyPrefix+".key", "1.1.0",
		modelSize, trainSet, testSet); err != nil {
		return err
	}

	d.step("Bad input is refused and changes nothing")
	_, err = d.run("model", "push", v2, "--name", "fashion", "--version", "1.0.0")
	d.check(err != nil && strings.Contains(err.Error(), "different content"), "re-pushing 1.0.0 with other bytes is refused: %v", firstLine(err))
	bad := filepath.Join(d.dir, "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: ml.outpost.dev/v1alpha1\nkind: ModelDeployment\nmetadata: {name: x}\nspec: {model: {name: fashion, verison: 1.0.0}}\n"), 0o644)
	_, err = d.run("apply", "-f", bad)
	d.check(err != nil && strings.Contains(err.Error(), "verison"), "a misspelt field is refused, naming it: %v", firstLine(err))
	_, err = d.run("--token", "wrong", "get", "clusters")
	d.check(err != nil, "a wrong token is refused: %v", firstLine(err))
	return nil
}

const demoDeployment = `apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata:
  name: fashion
spec:
  model: {name: fashion, version: "^1.0"}
  requireSignature: true
  clusterSelectors:
  - matchLabels: {tier: edge}
`

// verifyCache re-hashes every blob of an agent's cache and returns how many
// do not match their names, out of how many.
func verifyCache(agentDir string) (bad, n int, err error) {
	blobs, err := filepath.Glob(filepath.Join(agentDir, "cache", "blobs", "sha256", "*"))
	if err != nil {
		return 0, 0, err
	}
	for _, b := range blobs {
		if strings.Contains(filepath.Base(b), ".") {
			continue // a transfer in progress
		}
		f, err := os.Open(b)
		if err != nil {
			return bad, n, err
		}
		d, err := digest.FromReader(f)
		f.Close()
		if err != nil {
			return bad, n, err
		}
		n++
		if d.Encoded() != filepath.Base(b) {
			bad++
		}
	}
	return bad, n, nil
}

func mustString(s string, _ error) string { return s }

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

// errNote is ": err" for a non-nil error, else "".
func errNote(err error) string {
	if err == nil {
		return ""
	}
	return ": " + firstLine(err)
}

func firstLine(err error) string {
	if err == nil {
		return "no error"
	}
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
