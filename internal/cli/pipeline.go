package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/bytesize"
	"outpost.dev/outpost/internal/feedback"
	"outpost.dev/outpost/internal/pipeline"
	"outpost.dev/outpost/internal/schedule"
)

// pipelinesDir is the engine's folder inside an agent's data directory.
const pipelinesDir = "pipelines"

// feedbackFile is the agent's store of requests kept for feedback, in its
// data directory (internal/feedback).
const feedbackFile = "feedback.db"

// envAgentDir names the agent data directory the pipeline commands use
// when --dir is not given.
const envAgentDir = "OUTPOST_AGENT_DIR"

// defaultAgentDir is the data directory of the agent examples and docs.
const defaultAgentDir = "/var/lib/outpost-agent"

func newPipelineCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "Run ML pipelines at the edge, with no hub, and look at their runs",
		Long: `A Pipeline is a graph of steps (prepare data, train, fine-tune, evaluate,
register, deploy, any command) that runs on an edge machine with no hub: the
same engine the agent runs pipelines with. Runs, their logs, checkpoints and
the models they produce live in the agent's data directory (DIR/pipelines).
See docs/pipelines.md.`,
	}
	cmd.AddCommand(newPipelineRunCmd(g), newPipelineRunsCmd(g), newPipelineDescribeCmd(g), newPipelineLogsCmd(g))
	return cmd
}

// agentDirFlag adds --dir.
func agentDirFlag(cmd *cobra.Command, dir *string) {
	cmd.Flags().StringVar(dir, "dir", "", "the agent's data directory (default $"+envAgentDir+", else "+defaultAgentDir+")")
}

// agentDir resolves --dir.
func agentDir(dir string) string {
	if dir != "" {
		return dir
	}
	if d := os.Getenv(envAgentDir); d != "" {
		return d
	}
	return defaultAgentDir
}

func newPipelineRunCmd(g *globals) *cobra.Command {
	var (
		file, data, dir, name, cluster string
		models                         []string
		noCache, wait                  bool
		timeout                        time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run (-f PIPELINE.yaml [--data DIR] [--dir AGENTDIR] [--name RUN] | NAME --cluster CLUSTER [--wait])",
		Short: "Run a pipeline: a file here and now, offline, or a hub's pipeline on a cluster",
		Long: `With NAME --cluster CLUSTER, ask the hub to run its Pipeline NAME on
cluster CLUSTER: the hub records a PipelineRun (refused, naming the field,
when the pipeline or cluster is unknown, the pipeline does not select the
cluster or a step does not fit it), the cluster's agent runs it when it
next hears from the hub, and reports every step back. --wait follows it.

With -f, run the Pipeline in a file on this machine, with no hub, as the
agent would, and show each step as its state changes. The file holds one 'kind: Pipeline'
resource; it is checked first (an error names the field) and so is whether
each step's resources fit this machine.

Dataset steps read --data DIR unless their path param says otherwise
(builtin:fashion-mnist is a small data set built in). Steps whose
deployment param reads the model a deployment serves need the agent's
answer; here --model DEPLOYMENT=FILE.onnx@VERSION gives it. A deploy step
records the version for the agent, which activates nothing while it does
not run. Models that register steps produce go into the engine's OCI layout
(AGENTDIR/pipelines/oci) as edge/CLUSTER/MODEL, for the agent to upload.

A step whose type, params and inputs are those of a step that succeeded
before is not run again: its outputs are reused (--no-cache runs all).
Starting a run name that exists resumes it where it stopped (a training
step from its last epoch's checkpoint) or shows its result. The command
exits with status 1 if the run failed.`,
		Example: `  outpost pipeline run retrain --cluster ship-1 --wait
  outpost pipeline run -f retrain.yaml --data ./new-images --dir /var/lib/outpost-agent
  outpost pipeline run -f retrain.yaml --model fashion=./fashion-1.2.0.onnx@1.2.0 --name retrain-7
  outpost pipeline runs --dir /var/lib/outpost-agent`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				if file != "" {
					return errors.New("give a pipeline file (-f) or a pipeline NAME with --cluster, not both")
				}
				if cluster == "" {
					return fmt.Errorf("pipeline %s: a pipeline named at the hub runs on a cluster (--cluster); to run a file here, use -f FILE", args[0])
				}
				h, err := g.hub()
				if err != nil {
					return err
				}
				return runPipelineOnHub(cmd.Context(), g.stdout, h, args[0], cluster, wait, timeout)
			}
			if file == "" {
				return errors.New("-f PIPELINE.yaml is required")
			}
			if cluster != "" {
				return errors.New("--cluster runs a pipeline of the hub (outpost pipeline run NAME --cluster C); -f runs a file here")
			}
			return runPipelineFile(cmd.Context(), g, runFileOptions{
				file: file, data: data, dir: agentDir(dir), name: name, models: models, noCache: noCache,
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "filename", "f", "", "file holding the Pipeline (YAML or JSON)")
	f.StringVar(&data, "data", "", "the folder dataset steps read when they give no path")
	agentDirFlag(cmd, &dir)
	f.StringVar(&name, "name", "", "the run's name (default PIPELINE-YYYYMMDD-HHMMSS); an existing run of that name resumes")
	f.StringArrayVar(&models, "model", nil, "the model a deployment serves here, as DEPLOYMENT=FILE.onnx@VERSION (repeatable)")
	f.BoolVar(&noCache, "no-cache", false, "run every step, even those whose outputs an earlier run made")
	f.StringVar(&cluster, "cluster", "", "run pipeline NAME of the hub on this cluster")
	f.BoolVar(&wait, "wait", false, "with --cluster: follow the run, step by step, until it finishes")
	f.DurationVar(&timeout, "timeout", 30*time.Minute, "with --wait: give up waiting after this long")
	return cmd
}

// runFileOptions are the flags of 'pipeline run -f'.
type runFileOptions struct {
	file, data, dir, name string
	models                []string
	noCache               bool
}

// readPipelineFile decodes and validates the one Pipeline of a file.
func readPipelineFile(file string) (*v1alpha1.Pipeline, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	objs, err := v1alpha1.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	var found []*v1alpha1.Pipeline
	for _, o := range objs {
		if p, ok := o.(*v1alpha1.Pipeline); ok {
			found = append(found, p)
		}
	}
	if len(found) != 1 || len(objs) != 1 {
		return nil, fmt.Errorf("%s: want one Pipeline resource, found %d resources, %d of them Pipelines", file, len(objs), len(found))
	}
	p := found[0]
	p.Default()
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return p, nil
}

// runPipelineFile runs the pipeline of a file in the engine of an agent
// data directory, printing each step's progress.
func runPipelineFile(ctx context.Context, g *globals, o runFileOptions) error {
	p, err := readPipelineFile(o.file)
	if err != nil {
		return err
	}
	capacity := pipeline.DetectCapacity()
	if errs := pipeline.CheckFits(&p.Spec, capacityConfig(capacity)); len(errs) > 0 {
		return fmt.Errorf("pipeline %s cannot run on this machine (%s): %w", p.Name, describeMachine(capacity), errs.ToAggregate())
	}
	if o.data != "" {
		if fi, err := os.Stat(o.data); err != nil || !fi.IsDir() {
			return fmt.Errorf("--data %s: not a folder", o.data)
		}
	}
	host, err := newCLIHost(o.models, g.stdout)
	if err != nil {
		return err
	}
	cluster := localCluster(ctx, o.dir)
	prog := &progress{w: g.stdout, seen: map[string]string{}}
	fb, err := feedback.Open(ctx, filepath.Join(o.dir, feedbackFile))
	if err != nil {
		return err
	}
	defer fb.Close()
	e, err := pipeline.Open(ctx, pipeline.Options{
		Dir: filepath.Join(o.dir, pipelinesDir), Cluster: cluster, Host: host, Feedback: fb,
		Logger: quietLogger(g), Capacity: capacityConfig(capacity), OnUpdate: prog.update,
	})
	if err != nil {
		return err
	}
	defer e.Close()
	if e.Busy() {
		// The agent of o.dir runs: it executes the run, with its
		// deployments and its link to the hub, and we follow it.
		fmt.Fprintf(g.stdout, "the agent running in %s executes the run; following it here\n", o.dir)
	} else {
		runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- e.Run(runCtx) }()
		defer func() {
			stop()
			if err := <-done; err != nil && !errors.Is(err, pipeline.ErrBusy) {
				fmt.Fprintf(g.stderr, "pipelines: %v\n", err)
			}
		}()
	}
	name := o.name
	if name == "" {
		if name, err = freeRunName(ctx, e, p.Name+"-"+time.Now().UTC().Format("20060102-150405")); err != nil {
			return err
		}
	}
	fmt.Fprintf(g.stdout, "run %s of pipeline %s on %s (cluster %s), in %s\n", name, p.Name, describeMachine(capacity), cluster, e.Dir())
	prog.start(name)
	if _, err := e.Start(ctx, name, p.Name, p.Generation, &p.Spec, v1alpha1.TriggeredLocal, pipeline.RunOptions{Data: o.data, NoCache: o.noCache}); err != nil {
		return err
	}
	r, err := e.Follow(ctx, name, prog.update)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(g.stdout, "interrupted: the run stops here; 'outpost pipeline run -f %s --name %s --dir %s' resumes it\n", o.file, name, o.dir)
			return exitError{code: 130, err: errors.New("interrupted")}
		}
		return err
	}
	prog.update(r)
	return summarize(g.stdout, r)
}

// capacityConfig is the scheduler's view of this machine: all of it.
func capacityConfig(r schedule.Resources) schedule.Config { return schedule.Config{Allocatable: r} }

// describeMachine says what this machine has.
func describeMachine(r schedule.Resources) string {
	return fmt.Sprintf("%s CPU, %s memory", resource.NewMilliQuantity(r.MilliCPU, resource.DecimalSI), bytesize.Format(r.Memory))
}

// freeRunName returns base, or base-2, base-3, ... when a run has that name.
func freeRunName(ctx context.Context, e *pipeline.Engine, base string) (string, error) {
	for i := 1; i < 1000; i++ {
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		_, err := e.Get(ctx, name)
		if pipeline.IsNotFound(err) {
			return name, nil
		}
		if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("runs %s-2 to %s-999 exist: give --name", base, base)
}

// summarize prints how a run ended, and fails when it failed.
func summarize(w io.Writer, r *v1alpha1.PipelineRun) error {
	took := ""
	if r.Status.StartTime != nil && r.Status.CompletionTime != nil {
		took = " in " + r.Status.CompletionTime.Sub(r.Status.StartTime.Time).Round(time.Millisecond).String()
	}
	fmt.Fprintf(w, "run %s %s%s\n", r.Name, r.Status.Phase, took)
	for _, m := range r.Status.Models {
		fmt.Fprintf(w, "registered %s:%s (%s)\n", m.Repository, m.Version, m.Digest)
	}
	if r.Status.Phase == v1alpha1.RunFailed {
		return fmt.Errorf("run %s failed: %s", r.Name, failure(r))
	}
	return nil
}

// failure says which step failed and why.
func failure(r *v1alpha1.PipelineRun) string {
	for _, s := range r.Status.Steps {
		if s.Phase == v1alpha1.RunFailed {
			return fmt.Sprintf("step %s: %s", s.Name, s.Message)
		}
	}
	return r.Status.Message
}

// progress prints a line for each change of a step's state.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	run   string
	since time.Time
	seen  map[string]string // step -> what was printed of it
}

// start shows run name from now on.
func (p *progress) start(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.run, p.since = name, time.Now()
}

func (p *progress) update(r *v1alpha1.PipelineRun) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Name != p.run {
		return
	}
	width := 4
	for _, s := range r.Status.Steps {
		width = max(width, len(s.Name))
	}
	for _, s := range r.Status.Steps {
		state := fmt.Sprintf("%s/%d/%v/%s", s.Phase, s.Attempts, s.Cached, s.Message)
		if p.seen[s.Name] == state || (s.Phase == v1alpha1.RunPending && s.Message == "") {
			continue
		}
		p.seen[s.Name] = state
		fmt.Fprintf(p.w, "%6.1fs  %-*s  %-9s  %s\n", time.Since(p.since).Seconds(), width, s.Name, s.Phase, stepNote(s))
	}
}

// stepNote is what a progress line says of a step beyond its phase.
func stepNote(s v1alpha1.StepStatus) string {
	var parts []string
	switch s.Phase {
	case v1alpha1.RunRunning:
		parts = append(parts, fmt.Sprintf("attempt %d", s.Attempts))
		if s.Adapted != "" {
			parts = append(parts, "adapted: "+s.Adapted)
		}
	case v1alpha1.RunSucceeded:
		if s.Cached {
			parts = append(parts, "cached")
		}
		parts = append(parts, outputsText(s.Outputs))
	default:
		parts = append(parts, s.Message)
	}
	return strings.TrimSpace(strings.Join(parts, "  "))
}

// outputsText writes outputs as k=v, digests shortened.
func outputsText(o map[string]string) string {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + shortDigest(o[k])
	}
	return strings.Join(parts, " ")
}

// shortDigest cuts a sha256 digest to 12 hex digits.
func shortDigest(v string) string {
	if strings.HasPrefix(v, "sha256:") && len(v) == 71 {
		return v[:19] + "…"
	}
	return v
}

// quietLogger logs the engine's warnings, and its detail with -v.
func quietLogger(g *globals) *slog.Logger {
	level := slog.LevelWarn
	if g.verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level}))
}

// localCluster names this machine's cluster: the agent's, when its data
// directory says, else the host name.
func localCluster(ctx context.Context, dir string) string {
	if st, err := agent.ReadStatus(ctx, dir); err == nil && st.Cluster != "" {
		return st.Cluster
	}
	h, err := os.Hostname()
	if err == nil {
		h = strings.ToLower(strings.Split(h, ".")[0])
		if len(validation.IsDNS1123Label(h)) == 0 {
			return h
		}
	}
	return "local"
}

// cliHost is the Host of an engine with no agent: the models --model
// gives stand for the deployments, and a deploy is recorded, not applied.
type cliHost struct {
	mu     sync.Mutex
	models map[string]pipeline.ModelRef
	w      io.Writer
}

// newCLIHost parses --model DEPLOYMENT=FILE.onnx@VERSION (or
// DEPLOYMENT@VERSION=FILE, as 'outpost serve' writes it).
func newCLIHost(specs []string, w io.Writer) (*cliHost, error) {
	h := &cliHost{models: map[string]pipeline.ModelRef{}, w: w}
	for _, s := range specs {
		dep, rest, ok := strings.Cut(s, "=")
		var file, version string
		switch {
		case !ok || dep == "" || rest == "":
		case strings.Contains(dep, "@"):
			dep, version, _ = strings.Cut(dep, "@")
			file = rest
		default:
			if i := strings.LastIndex(rest, "@"); i > 0 {
				file, version = rest[:i], rest[i+1:]
			}
		}
		if file == "" || version == "" || dep == "" {
			return nil, fmt.Errorf("--model %q: want DEPLOYMENT=FILE.onnx@VERSION", s)
		}
		if err := artifact.ValidateVersion(version); err != nil {
			return nil, fmt.Errorf("--model %q: %w", s, err)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--model %q: %w", s, err)
		}
		sum := sha256.Sum256(b)
		abs, err := filepath.Abs(file)
		if err != nil {
			return nil, err
		}
		h.models[dep] = pipeline.ModelRef{Name: dep, Version: version, Digest: "sha256:" + hex.EncodeToString(sum[:]), Path: abs}
	}
	return h, nil
}

// ActiveModel returns the model --model gave the deployment.
func (h *cliHost) ActiveModel(ctx context.Context, deployment string) (pipeline.ModelRef, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.models[deployment]
	if !ok {
		return pipeline.ModelRef{}, fmt.Errorf("no deployment %q on this machine (run the agent, or give its model with --model %s=FILE.onnx@VERSION)", deployment, deployment)
	}
	return m, nil
}

// Deploy records the version: with no agent running, nothing serves it yet.
func (h *cliHost) Deploy(ctx context.Context, deployment string, m pipeline.Model) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	prev := h.models[deployment].Version
	h.models[deployment] = pipeline.ModelRef{Name: deployment, Version: m.Version, Digest: m.Digest, Path: m.File}
	fmt.Fprintf(h.w, "deployment %s: %s:%s recorded; no agent runs here, so nothing serves it until the agent does\n", deployment, m.Repository, m.Version)
	return prev, nil
}

func newPipelineRunsCmd(g *globals) *cobra.Command {
	var dir, output string
	cmd := &cobra.Command{
		Use:   "runs [--dir AGENTDIR]",
		Short: "List the pipeline runs of this machine",
		Long: `List the pipeline runs recorded in the agent's data directory, newest first:
those 'outpost pipeline run' started and those the agent runs.`,
		Example: "  outpost pipeline runs --dir /var/lib/outpost-agent\n  outpost pipeline runs -o wide",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "wide", "yaml", "json"); err != nil {
				return err
			}
			e, err := openEngine(cmd.Context(), agentDir(dir))
			if err != nil {
				return err
			}
			defer e.Close()
			runs, err := e.List(cmd.Context())
			if err != nil {
				return err
			}
			if output == "yaml" || output == "json" {
				l := &v1alpha1.PipelineRunList{}
				for _, r := range runs {
					l.Items = append(l.Items, *r)
				}
				v1alpha1.SetTypeMeta(l)
				return printStructured(g.stdout, output, l)
			}
			if len(runs) == 0 {
				fmt.Fprintf(g.stderr, "no pipeline runs in %s\n", e.Dir())
				return nil
			}
			k, _ := v1alpha1.LookupKind(v1alpha1.KindPipelineRun)
			objs := make([]v1alpha1.Object, len(runs))
			for i, r := range runs {
				objs[i] = r
			}
			return printTable(g.stdout, k, objs, output == "wide", time.Now())
		},
	}
	agentDirFlag(cmd, &dir)
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: wide, yaml or json")
	return cmd
}

// openEngine opens the engine of an agent data directory to read its runs.
func openEngine(ctx context.Context, dir string) (*pipeline.Engine, error) {
	root := filepath.Join(dir, pipelinesDir)
	if _, err := os.Stat(filepath.Join(root, "runs.db")); err != nil {
		return nil, fmt.Errorf("no pipeline runs in %s (give the agent's data directory with --dir)", dir)
	}
	return pipeline.Open(ctx, pipeline.Options{Dir: root, Cluster: localCluster(ctx, dir), Logger: slog.New(slog.DiscardHandler)})
}

func newPipelineDescribeCmd(g *globals) *cobra.Command {
	var dir, output string
	cmd := &cobra.Command{
		Use:   "describe RUN [--dir AGENTDIR]",
		Short: "Show a pipeline run: each step's phase, attempts, cache, adaptation, outputs and message",
		Example: "  outpost pipeline describe retrain-20310506-030000\n" +
			"  outpost pipeline describe retrain-7 -o yaml",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "yaml", "json"); err != nil {
				return err
			}
			e, err := openEngine(cmd.Context(), agentDir(dir))
			if err != nil {
				return err
			}
			defer e.Close()
			r, err := e.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if output != "" {
				return printStructured(g.stdout, output, r)
			}
			return describeRun(g.stdout, r, time.Now())
		},
	}
	agentDirFlag(cmd, &dir)
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml or json")
	return cmd
}

// describeRun prints a run for people.
func describeRun(w io.Writer, r *v1alpha1.PipelineRun, now time.Time) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "Run:\t%s\n", r.Name)
	fmt.Fprintf(tw, "Pipeline:\t%s (generation %s)\n", r.Spec.Pipeline, r.Annotations[pipeline.AnnotationGeneration])
	fmt.Fprintf(tw, "Cluster:\t%s\n", r.Spec.Cluster)
	fmt.Fprintf(tw, "Trigger:\t%s\n", r.Spec.Trigger)
	fmt.Fprintf(tw, "Phase:\t%s\n", r.Status.Phase)
	fmt.Fprintf(tw, "Created:\t%s ago\n", v1alpha1.Age(&r.CreationTimestamp, now))
	fmt.Fprintf(tw, "Duration:\t%s\n", span(r.Status.StartTime, r.Status.CompletionTime, now))
	if r.Status.Message != "" {
		fmt.Fprintf(tw, "Message:\t%s\n", r.Status.Message)
	}
	for _, m := range r.Status.Models {
		up := "not uploaded yet"
		if m.Uploaded {
			up = "uploaded"
		}
		fmt.Fprintf(tw, "Model:\t%s:%s %s (%s)\n", m.Repository, m.Version, m.Digest, up)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "STEP\tPHASE\tATTEMPTS\tCACHED\tDURATION\tADAPTED\tMESSAGE")
	for _, s := range r.Status.Steps {
		cached := "no"
		if s.Cached {
			cached = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", s.Name, s.Phase, s.Attempts, cached, span(s.StartTime, s.CompletionTime, now), orNone(s.Adapted), orNone(s.Message))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = newTable(w)
	fmt.Fprintln(tw, "OUTPUT\tVALUE")
	for _, s := range r.Status.Steps {
		keys := make([]string, 0, len(s.Outputs))
		for k := range s.Outputs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(tw, "%s.%s\t%s\n", s.Name, k, s.Outputs[k])
		}
	}
	return tw.Flush()
}

// span is how long from start to end (to now while running), or "-".
func span(start, end *metav1.Time, now time.Time) string {
	if start == nil {
		return "-"
	}
	to := now
	if end != nil && !end.Before(start) {
		to = end.Time
	}
	return to.Sub(start.Time).Round(time.Millisecond).String()
}

func newPipelineLogsCmd(g *globals) *cobra.Command {
	var (
		dir     string
		fromHub bool
	)
	cmd := &cobra.Command{
		Use:   "logs RUN [STEP] [--dir AGENTDIR | --hub-tail]",
		Short: "Print a step's log: every attempt, timestamped",
		Long: `Print the log of step STEP of run RUN: the engine's lines about each attempt
(queued, started, what was granted, checkpoints, retries) and what an exec
step's command wrote, each line timestamped. A log keeps its newest MiB, on
the cluster that ran it.

With --hub-tail, print instead the end of each step's log (or STEP's) as the
cluster last sent it to the hub with the run's status: what an operator at
the hub can see of a run on a cluster whose link is down.`,
		Example: `  outpost pipeline logs retrain-7 tune --dir /var/lib/outpost-agent
  outpost pipeline logs retrain-x7k2p --hub-tail`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fromHub {
				h, err := g.hub()
				if err != nil {
					return err
				}
				step := ""
				if len(args) == 2 {
					step = args[1]
				}
				return pipelineLogsFromHub(cmd.Context(), g.stdout, h, args[0], step)
			}
			if len(args) != 2 {
				return errors.New("give RUN and STEP (or --hub-tail for every step's tail at the hub)")
			}
			e, err := openEngine(cmd.Context(), agentDir(dir))
			if err != nil {
				return err
			}
			defer e.Close()
			rc, err := e.Logs(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(g.stdout, rc)
			return err
		},
	}
	agentDirFlag(cmd, &dir)
	cmd.Flags().BoolVar(&fromHub, "hub-tail", false, "print the log tails the cluster sent the hub instead of the local log")
	return cmd
}
