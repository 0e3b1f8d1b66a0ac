package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/bytesize"
	"outpost.dev/outpost/internal/clientconfig"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/edgerun"
	"outpost.dev/outpost/internal/feedback"
	"outpost.dev/outpost/internal/kube"
	"outpost.dev/outpost/internal/outbox"
	"outpost.dev/outpost/internal/pki"
	"outpost.dev/outpost/internal/serving"
	"outpost.dev/outpost/internal/serving/endpoint"
)

// agentCAFile is where the agent keeps a copy of the hub's CA certificate,
// so later starts need no --ca-file.
const agentCAFile = "ca.crt"

func newAgentCmd(g *globals) *cobra.Command {
	var (
		cfg           agent.Config
		joinToken     string
		labels        string
		maxBandwidth  string
		trustedKeys   []string
		accelerators  []string
		memory        string
		readyFile     string
		keepVersions  int
		verifyOnStart bool
		sf            servingFlags
		debugAddr     string
		pipelineData  string
		pf            pipelineFlags
		kubeconfig    string
		inCluster     bool
	)
	cmd := &cobra.Command{
		Use:   "agent --hub URL --join-token T --data DIR --name NAME",
		Short: "Run the edge agent that syncs and serves this cluster's models",
		Long: `Run the edge agent of one cluster. On first start it joins the hub with a
join token (from 'outpost cluster token create') and keeps the cluster
credential it receives in DIR; later starts need neither --join-token nor
--hub. It long-polls its desired state, fetches only the chunks of each model
version that it does not already hold, verifies every chunk and file, and
activates a version only once all of it is in its cache (DIR/cache, an OCI
image layout). It keeps serving its last active versions while the hub is
unreachable and catches up when it returns.

It answers inference requests for every active model on --serve, over the
KServe Open Inference Protocol v2 REST API (see 'outpost infer'), and with
--grpc (such as --grpc 127.0.0.1:8081) over the same protocol's gRPC API,
inference.GRPCInferenceService, which Triton's and KServe's gRPC clients
speak. A model name in a request is its deployment's name. A new version
loads in the background and replaces the old one without failing a request.
Each deployment's serving.runtime picks the Go runtime, ONNX Runtime (whose
shared library --onnxruntime-lib names), or auto: the Go runtime unless the
model needs an operator only ONNX Runtime has. A deployment that sets
serving.port is also served, alone, on that port of --serve's host. The
bytes that all inference requests hold at once (bodies, decoded tensors,
outputs) stay within --max-inflight-bytes: a request that does not fit is
refused at once with 429 and Retry-After (gRPC: RESOURCE_EXHAUSTED), and
the memory a burst took is given back once it is over. GET /metrics on
--serve answers Prometheus metrics: requests and latency, drift, the outbox
and sync progress. Deployments with
spec.monitoring are watched for drift: every answered request is summarised
into windows compared with the version's reference profile, and each closed
window goes into the outbox for the hub.

Versions never go backwards by accident: desired state older than what was
applied is refused and counted, and a lower version replaces a higher one
only when the deployment sets allowDowngrade.

In KubeStellar mode (--kubeconfig, or --in-cluster) the agent runs in a
workload execution cluster (WEC): its desired state is the ModelDeployments
KubeStellar delivered into that cluster, through the same version guard,
and it writes its row into each one's status, which KubeStellar returns to
the WDS. It chooses each deployment's variant itself, with the deployment's
variantPolicy and the facts it would report to the hub: its memory (--memory,
else measured), CPU and link estimate. It still joins the hub (--hub,
--join-token) for its registry. --name is then required: the cluster's ManagedCluster name. See
docs/kubestellar.md.`,
		Example: `  outpost agent --hub https://hub.example:8443 --ca-file ca.crt \
      --join-token opj_... --data /var/lib/outpost-agent --name edge-berlin-1 \
      --labels region=eu,tier=store --max-bandwidth 10MiB
  outpost agent --data /var/lib/outpost-agent
  outpost agent --data /var/lib/outpost-agent --serve 127.0.0.1:8080 --grpc 127.0.0.1:8081
  outpost agent status --data /var/lib/outpost-agent
  outpost agent --kubeconfig wec1.kubeconfig --name wec1 --data /var/lib/outpost-agent \
      --hub https://hub.example:8443 --ca-file ca.crt --join-token opj_...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfg.Dir == "" {
				return errors.New("--data is required")
			}
			o := g.flags.Merge(clientconfig.OverridesFromEnv())
			cfg.Hub = o.Hub
			var err error
			if cfg.TLS, err = agentTLS(cfg.Dir, o.CAFile); err != nil {
				return err
			}
			if cfg.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			if cfg.MaxBandwidth, err = agent.ParseBandwidth(maxBandwidth); err != nil {
				return err
			}
			if cfg.TrustedKeys, err = readPublicKeys(trustedKeys); err != nil {
				return err
			}
			if cfg.Accelerators, err = agent.ParseAccelerators(accelerators); err != nil {
				return err
			}
			if cfg.Memory, err = parseMemory(memory); err != nil {
				return err
			}
			pf.memory = cfg.Memory
			cfg.KeepVersions = keepVersions
			if keepVersions == 0 {
				cfg.KeepVersions = -1
			}
			cfg.JoinToken = joinToken
			cfg.VerifyOnStart = verifyOnStart
			cfg.AgentVersion = Version()
			cfg.Logger = g.logger()
			cfg.OutboxMerge = outboxMerge()
			cfg.FederatedData = pipelineData
			serveCfg, err := sf.config(cmd, cfg.Logger)
			if err != nil {
				return err
			}
			activeChanged := make(chan struct{}, 1)
			cfg.OnActive = func() {
				select {
				case activeChanged <- struct{}{}:
				default:
				}
			}
			runner := edgerun.New(cfg.Dir, edgerun.Options{Data: pipelineData, Logger: cfg.Logger.With("component", "pipelines")})
			cfg.OnEvent, cfg.OnApplied = runner.Event, runner.Poke
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			var wec *kube.WEC
			if kubeconfig != "" || inCluster {
				// KubeStellar mode: desired state from the ModelDeployments
				// delivered into this cluster, status into theirs.
				if cfg.Name == "" {
					return errors.New("--name is required with --kubeconfig or --in-cluster: the cluster's ManagedCluster name")
				}
				rc, err := kubeConfig(kubeconfig, inCluster)
				if err != nil {
					return err
				}
				if wec, err = kube.NewWEC(rc, cfg.Name, cfg.Logger.With("component", "wec")); err != nil {
					return err
				}
				wec.Start(ctx)
				cfg.Desired, cfg.Reports = wec, wec
			}
			a, err := agent.New(ctx, cfg)
			if err != nil {
				return err
			}
			defer a.Close()
			if wec != nil {
				// The variant of each deployment is chosen here, with
				// the numbers the agent reports of its cluster.
				wec.SetFacts(a.Facts)
			}
			fb, err := feedback.Open(ctx, filepath.Join(cfg.Dir, feedbackFile))
			if err != nil {
				return err
			}
			defer fb.Close()
			serveCfg.Serving.Feedback = fb
			for _, m := range a.Active() {
				cfg.Logger.Info("active from cache", "deployment", m.Deployment, "model", m.Model, "version", m.Version)
			}
			serveDone, srv, err := startServing(ctx, a, serveCfg, activeChanged)
			if err != nil {
				return err
			}
			defer func() { cancel(); <-serveDone }()
			debugDone, err := serveDebug(ctx, cfg.Logger, debugAddr)
			if err != nil {
				return err
			}
			defer func() { cancel(); <-debugDone }()
			errc := make(chan error, 1)
			go func() { errc <- a.Run(ctx) }()
			select {
			case err := <-errc:
				return err
			case <-a.Ready():
			}
			if srv != nil {
				pf.latency = srv.LatencyP99
			}
			pipesDone, err := startPipelines(ctx, a, runner, fb, pf, cfg.Logger)
			if err != nil {
				cancel()
				<-errc
				return err
			}
			defer func() { cancel(); <-pipesDone }()
			if readyFile != "" {
				if err := os.WriteFile(readyFile, []byte(a.Name()+"\n"), 0o600); err != nil {
					return fmt.Errorf("ready file: %w", err)
				}
			}
			return <-errc
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Dir, "data", "", "agent data directory: state, cache and credential")
	f.StringVar(&cfg.Name, "name", "", "cluster name (recorded in DIR on first start)")
	f.StringVar(&joinToken, "join-token", "", "join token for the first start (env OUTPOST_JOIN_TOKEN)")
	f.StringVar(&labels, "labels", "", "cluster labels sent when joining, k=v,k=v")
	f.StringVar(&maxBandwidth, "max-bandwidth", "", "cap on model transfer bandwidth per second, such as 10MiB or 500KB (default unlimited)")
	f.StringSliceVar(&trustedKeys, "trusted-key", nil, "public key file (PEM) trusted for model signatures; repeatable")
	f.BoolVar(&cfg.RequireSignature, "require-signature", false, "activate only model versions with a valid signature from a trusted key")
	f.IntVar(&keepVersions, "keep-versions", agent.DefaultKeepVersions, "previous versions per deployment kept in the cache for rollback")
	f.DurationVar(&cfg.PollTimeout, "poll-timeout", agent.DefaultPollTimeout, "long-poll timeout for desired state")
	f.DurationVar(&cfg.ReportInterval, "report-interval", agent.DefaultReportInterval, "how often to report status when nothing changes")
	f.StringSliceVar(&accelerators, "accelerator", nil, "declared accelerator TYPE=COUNT, such as nvidia.com/gpu=1; repeatable")
	f.StringVar(&memory, "memory", "", "declared memory of the cluster, such as 512Mi or 8Gi, reported instead of the machine's, held against variant policies and shared out by the pipeline scheduler (default measured)")
	f.BoolVar(&verifyOnStart, "verify-on-start", false, "re-hash every active file at start instead of checking sizes")
	f.StringVar(&readyFile, "ready-file", "", "write the cluster name to this file once joined and running (for scripts)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "KubeStellar mode: kubeconfig of this cluster (a WEC), whose delivered ModelDeployments are the desired state")
	f.BoolVar(&inCluster, "in-cluster", false, "KubeStellar mode, reaching this cluster as the pod the agent runs in")
	f.StringVar(&pipelineData, "pipeline-data", "", "folder of local data that pipelines' dataset steps read when they name no path, and federated jobs' relative data paths (default DATA/data)")
	pf.register(f)
	sf.register(f)
	addDebugListen(cmd, &debugAddr)
	cmd.PreRun = func(cmd *cobra.Command, args []string) {
		if joinToken == "" {
			joinToken = os.Getenv("OUTPOST_JOIN_TOKEN")
		}
	}
	outboxCmd := &cobra.Command{
		Use:   "outbox",
		Short: "Put records into the agent's outbox for the hub",
	}
	outboxCmd.AddCommand(newAgentOutboxPutCmd())
	cmd.AddCommand(newAgentStatusCmd(), outboxCmd)
	return cmd
}

// outboxPriorities names the outbox priorities for --priority.
var outboxPriorities = map[string]outbox.Priority{
	"control": outbox.PriorityControl, "results": outbox.PriorityResults, "fl": outbox.PriorityFL,
	"metrics": outbox.PriorityMetrics, "logs": outbox.PriorityLogs,
}

func newAgentOutboxPutCmd() *cobra.Command {
	var data, key, kind, text, payload, priority string
	cmd := &cobra.Command{
		Use:   "put --data DIR --key KEY (--text TEXT | --kind KIND --payload JSON)",
		Short: "Put a record into the agent's outbox, to reach the hub once",
		Long: `Put one record into the outbox of the agent of data directory DIR, whether
the agent runs or not: it reaches the hub once the link allows, exactly once
per key, however often it is sent (see 'Outbox' in docs/agent.md). A running
agent sends it within its --report-interval.

With --text the record is a note (kind note), which every hub keeps and
lists with 'outpost cluster notes NAME'. Other kinds take their JSON payload
from --payload; the hub refuses kinds it does not apply, and the agent then
drops and counts them ('outpost agent status' shows it).

It exits 0 once the record is durably in the outbox, or when a record with
the same key already waits there (nothing is added); it fails when the outbox
has no room for it within its byte budget.`,
		Example: `  outpost agent outbox put --data /var/lib/outpost-agent --key fan-2031-05-06 --text "fan replaced"
  outpost agent outbox put --data /var/lib/outpost-agent --key k1 --kind note --payload '{"text":"door open"}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case data == "":
				return errors.New("--data is required")
			case key == "":
				return errors.New("--key is required: the record's idempotency key, unique within the cluster")
			case text != "" && payload != "":
				return errors.New("give --text (a note) or --payload, not both")
			case text == "" && payload == "":
				return errors.New("give --text (a note) or --kind and --payload")
			}
			p, ok := outboxPriorities[priority]
			if !ok {
				return fmt.Errorf("--priority %q: want control, results, fl, metrics or logs", priority)
			}
			raw := []byte(payload)
			if text != "" {
				if kind != v1alpha1.RecordKindNote {
					return fmt.Errorf("--text makes a note; --kind %q wants --payload", kind)
				}
				raw, _ = json.Marshal(v1alpha1.NotePayload{Text: text})
			}
			if kind == v1alpha1.RecordKindNote {
				if _, err := v1alpha1.ParseNotePayload(raw); err != nil {
					return err
				}
			}
			res, err := agent.PutRecord(cmd.Context(), data, outbox.Record{Key: key, Kind: kind, Priority: p, Payload: raw})
			if err != nil {
				return err
			}
			switch res {
			case agent.PutWaiting:
				fmt.Fprintf(cmd.OutOrStdout(), "%s %q already waits in the outbox: not added again\n", kind, key)
			case agent.PutDropped:
				return fmt.Errorf("%s %q dropped: the outbox has no room for it within its byte budget", kind, key)
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "put %s %q into the outbox\n", kind, key)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "agent data directory")
	f.StringVar(&key, "key", "", "idempotency key, unique within the cluster (1 to 512 characters)")
	f.StringVar(&kind, "kind", v1alpha1.RecordKindNote, "record kind")
	f.StringVar(&text, "text", "", "the text of a note")
	f.StringVar(&payload, "payload", "", "the record's payload, JSON")
	f.StringVar(&priority, "priority", "results", "priority: control, results, fl, metrics or logs")
	return cmd
}

// startServing starts the agent's inference server on the endpoints of
// cfg, loading what the agent activates and recording in its status where
// it serves and which runtime serves each deployment. With no endpoint it
// serves nothing and records so. The returned channel is closed once the
// server stopped, after ctx ended, and the agent no longer names endpoints.
func startServing(ctx context.Context, a *agent.Agent, cfg endpoint.Config, activeChanged <-chan struct{}) (<-chan struct{}, *endpoint.Server, error) {
	done := make(chan struct{})
	if cfg.REST == "" && cfg.GRPC == "" {
		close(done)
		if err := a.SetEndpoints(ctx, nil); err != nil {
			return nil, nil, err
		}
		if err := a.SetDrift(ctx, nil); err != nil {
			return nil, nil, err
		}
		return done, nil, a.SetServing(ctx, nil)
	}
	log := cfg.Serving.Logger
	cfg.Serving.Windows = windowOutbox{a.Outbox()}
	cfg.Serving.Agent = agentMetrics{a}
	var lastServing map[string]agent.ServingState // OnStatus calls come one at a time
	cfg.Serving.OnStatus = func(st []serving.ModelStatus) {
		states, drifts := agentStates(st)
		ctx := context.WithoutCancel(ctx)
		// The serving state goes to the hub with the next report: record
		// it only when it changed, not at every drift window.
		if lastServing == nil || !maps.Equal(states, lastServing) {
			if err := a.SetServing(ctx, states); err != nil {
				log.Warn("record serving state", "err", err)
			} else {
				lastServing = states
			}
		}
		if err := a.SetDrift(ctx, drifts); err != nil {
			log.Warn("record drift state", "err", err)
		}
	}
	srv, err := endpoint.Start(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	ep := srv.Endpoints()
	if err := a.SetEndpoints(ctx, &ep); err != nil {
		return nil, nil, err
	}
	a.SetHealth(func() map[string]v1alpha1.ServingHealth { return servingHealth(srv.Health()) })
	var wg sync.WaitGroup
	wg.Go(func() { srv.Watch(ctx, func() []serving.Model { return servingModels(a.Active()) }, activeChanged) })
	go func() {
		<-srv.Done()
		wg.Wait()
		if err := a.SetEndpoints(context.WithoutCancel(ctx), nil); err != nil {
			log.Warn("clear serving endpoints", "err", err)
		}
		a.SetHealth(nil)
		close(done)
	}()
	return done, srv, nil
}

// servingModels is what the server is to serve of the agent's active models.
func servingModels(active []agent.ActiveModel) []serving.Model {
	out := make([]serving.Model, len(active))
	for i, am := range active {
		out[i] = serving.Model{Deployment: am.Deployment, Model: am.Model, Version: am.Version,
			Digest: am.Digest, Files: am.Files, Serving: am.Serving, Monitoring: am.Monitoring, Reference: am.Reference}
	}
	return out
}

// servingHealth is the server's request counts as reports carry them.
func servingHealth(hs map[string]serving.Health) map[string]v1alpha1.ServingHealth {
	out := make(map[string]v1alpha1.ServingHealth, len(hs))
	for dep, h := range hs {
		out[dep] = v1alpha1.ServingHealth{Version: h.Version, Requests: h.Requests, Errors: h.Errors, P99Micros: h.P99.Microseconds()}
	}
	return out
}

// agentStates is the server's status as the agent records it: how each
// deployment is served, and its drift monitoring where it has some.
func agentStates(st []serving.ModelStatus) (map[string]agent.ServingState, map[string]agent.DriftState) {
	states := make(map[string]agent.ServingState, len(st))
	drifts := map[string]agent.DriftState{}
	for _, m := range st {
		states[m.Deployment] = agent.ServingState{Version: m.Version, Runtime: m.Runtime, Error: m.Error, Port: m.Port}
		if d := m.Drift; d != nil {
			drifts[m.Deployment] = agent.DriftState{Version: d.Version, Windows: d.Windows, Verdict: string(d.Verdict), Reason: d.Reason,
				LastWindow: d.LastWindow, Alarm: d.Alarm, Since: d.Since, Samples: d.Samples, Dropped: d.Dropped, Skipped: d.Skipped, Invalid: d.Invalid,
				FeedbackLost: d.FeedbackLost, Busy: d.Busy}
			if fb := d.Feedback; fb != nil {
				ds := drifts[m.Deployment]
				ds.Feedback = &agent.FeedbackState{Labelled: fb.Labelled, Correct: fb.Correct}
				drifts[m.Deployment] = ds
			}
		}
	}
	return states, drifts
}

// agentMetrics gives the server's /metrics the agent's figures, read from
// its state at each scrape.
type agentMetrics struct{ a *agent.Agent }

// AgentMetrics reads the agent's status.
func (m agentMetrics) AgentMetrics(ctx context.Context) (serving.AgentMetrics, error) {
	st, err := m.a.Status(ctx)
	if err != nil {
		return serving.AgentMetrics{}, err
	}
	am := serving.AgentMetrics{OutboxRecords: st.Outbox.Records, OutboxBytes: st.Outbox.Bytes, OutboxMerged: st.Outbox.Merged,
		OutboxDropped: st.Outbox.Dropped, OutboxRefused: st.Outbox.Refused, AppliedRevision: st.AppliedRevision}
	if st.LastContact != nil {
		am.LastContact = *st.LastContact
	}
	for _, d := range st.Models {
		am.Deployments = append(am.Deployments, serving.DeploymentSync{Deployment: d.Deployment, BytesOwed: d.BytesOwed,
			BytesFetched: d.BytesFetched, BytesTotal: d.BytesTotal})
	}
	return am, nil
}

// outboxMerge is how the agent's outbox merges records of each kind when
// its budget fills: adjacent drift windows into coarser ones.
func outboxMerge() map[string]outbox.MergeFunc {
	return map[string]outbox.MergeFunc{drift.RecordKind: drift.MergeReports}
}

// windowOutbox puts the report of every drift window the server closes into
// the agent's outbox, for the hub: kind drift.RecordKind, keyed by the
// window's deployment, version and start, merged with the windows of the
// same deployment and version when the budget fills.
type windowOutbox struct{ o *outbox.Outbox }

// PutWindow puts rep into the outbox, durably.
func (w windowOutbox) PutWindow(ctx context.Context, rep drift.WindowReport) error {
	payload, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("encode drift window: %w", err)
	}
	_, err = w.o.Put(ctx, outbox.Record{Key: rep.Key(), Kind: drift.RecordKind, Priority: outbox.PriorityMetrics, Group: rep.Group(), Payload: payload})
	return err
}

// agentTLS returns the TLS configuration for the hub: the CA of caFile
// (copied into dir for later starts), else the copy in dir, else the system roots.
func agentTLS(dir, caFile string) (*tls.Config, error) {
	saved := filepath.Join(dir, agentCAFile)
	var pem []byte
	var err error
	switch {
	case caFile != "":
		if pem, err = os.ReadFile(caFile); err != nil {
			return nil, fmt.Errorf("hub certificate authority: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(saved, pem, 0o600); err != nil {
			return nil, fmt.Errorf("keep hub certificate authority: %w", err)
		}
	default:
		if pem, err = os.ReadFile(saved); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		} else if err != nil {
			return nil, fmt.Errorf("hub certificate authority: %w", err)
		}
	}
	return pki.ClientTLS(pem)
}

// parseLabels parses k=v,k=v.
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--labels %q: want k=v,k=v", s)
		}
		out[k] = v
	}
	return out, nil
}

func newAgentStatusCmd() *cobra.Command {
	var data, output string
	cmd := &cobra.Command{
		Use:   "status --data DIR",
		Short: "Show the agent's local state, with or without a hub",
		Long: `Show what the agent of data directory DIR serves and what it is fetching,
read from its local state only: it needs no hub and works while the agent runs.
Bytes owed are what the desired versions still lack; the outbox holds the
records (drift windows, pipeline results, ...) waiting for the hub, and counts
what its byte budget made it merge or drop. Deployments monitored for drift
get a second table: the alarm and since when, the last window's verdict, and
the windows, samples and dropped requests since monitoring began.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if data == "" {
				return errors.New("--data is required")
			}
			if err := checkOutput(output, "yaml", "json"); err != nil {
				return err
			}
			st, err := agent.ReadStatus(cmd.Context(), data)
			if err != nil {
				return err
			}
			if output != "" {
				return printStructured(cmd.OutOrStdout(), output, st)
			}
			return printAgentStatus(cmd.OutOrStdout(), st, time.Now())
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "agent data directory")
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml or json (default a table)")
	return cmd
}

func printAgentStatus(w io.Writer, st *agent.Status, now time.Time) error {
	contact := "never"
	if st.LastContact != nil {
		contact = fmt.Sprintf("%s (%s ago)", st.LastContact.UTC().Format(time.RFC3339), now.Sub(*st.LastContact).Round(time.Second))
	}
	fmt.Fprintf(w, "Cluster:          %s\n", st.Cluster)
	fmt.Fprintf(w, "Hub:              %s\n", orNone(st.Hub))
	fmt.Fprintf(w, "Serving:          %s\n", endpointsText(st.Endpoints))
	fmt.Fprintf(w, "Last contact:     %s\n", contact)
	fmt.Fprintf(w, "Applied revision: %d\n", st.AppliedRevision)
	fmt.Fprintf(w, "Rejected stale:   %d\n", st.RejectedStale)
	fmt.Fprintf(w, "Bytes owed:       %s\n", bytesize.Format(st.BytesOwed))
	if st.Transfer != nil {
		fmt.Fprintf(w, "Transfer window:  %s\n", transferText(st.Transfer, now))
	}
	fmt.Fprintf(w, "Outbox:           %s\n\n", outboxText(st.Outbox))
	if len(st.Models) == 0 {
		fmt.Fprintln(w, "No models desired.")
		return nil
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "DEPLOYMENT\tMODEL\tACTIVE\tDESIRED\tPHASE\tRUNTIME\tFETCHED\tOWED\tERROR")
	for _, m := range st.Models {
		active := orNone(m.ActiveVersion)
		if m.ActiveVariant != "" && m.ActiveVersion != "" {
			active += " (" + m.ActiveVariant + ")"
		}
		if m.DowngradedFrom != "" {
			active += " (downgraded from " + m.DowngradedFrom + ")"
		}
		errText := m.Error
		if errText == "" && m.ServingError != "" {
			errText = "serving: " + m.ServingError
		}
		if errText == "" && m.ReferenceError != "" {
			errText = m.ReferenceError
		}
		runtime := orNone(m.Runtime)
		if m.ServingPort != 0 {
			runtime += fmt.Sprintf(" (port %d)", m.ServingPort)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Deployment, m.Model, active, m.DesiredVersion, m.Phase, runtime,
			bytesize.Format(m.BytesFetched)+" / "+bytesize.Format(m.BytesTotal), bytesize.Format(m.BytesOwed), orNone(errText))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printDrift(w, st.Models, now)
}

// transferText says where the agent's transfer window stands and what waits for it.
func transferText(ts *v1alpha1.TransferStatus, now time.Time) string {
	s := "closed"
	if ts.Open {
		s = "open"
	}
	if ts.BandwidthBps > 0 {
		s += ", at most " + bytesize.Format(ts.BandwidthBps) + "/s"
	}
	if ts.NextChange != nil {
		verb := "opens"
		if ts.Open {
			verb = "closes"
		}
		s += fmt.Sprintf("; %s %s (in %s)", verb, ts.NextChange.UTC().Format(time.RFC3339), ts.NextChange.Sub(now).Round(time.Second))
	}
	if len(ts.Waiting) > 0 {
		s += fmt.Sprintf("; waiting: %s (%s)", strings.Join(ts.Waiting, ", "), bytesize.Format(ts.WaitingBytes))
	}
	return s
}

// printDrift prints the drift monitoring of the deployments that have
// some: the alarm and since when, the last window's verdict, and the
// windows, samples and dropped requests counted since monitoring began.
func printDrift(w io.Writer, models []agent.DeploymentStatus, now time.Time) error {
	var rows []agent.DeploymentStatus
	for _, m := range models {
		if m.Drift != nil {
			rows = append(rows, m)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	fmt.Fprint(w, "\nDrift monitoring:\n")
	tw := newTable(w)
	fmt.Fprintln(tw, "DEPLOYMENT\tVERSION\tALARM\tSINCE\tLAST WINDOW\tWINDOWS\tSAMPLES\tDROPPED\tLABELLED ACCURACY")
	for _, m := range rows {
		d := m.Drift
		alarm, since, last := "clear", "-", orNone(d.Verdict)
		if d.Alarm {
			alarm = "RAISED"
		}
		if !d.Since.IsZero() {
			since = fmt.Sprintf("%s (%s ago)", d.Since.UTC().Format(time.RFC3339), now.Sub(d.Since).Round(time.Second))
		}
		if !d.LastWindow.IsZero() {
			last += " at " + d.LastWindow.UTC().Format(time.RFC3339)
		}
		acc := "-"
		if fb := d.Feedback; fb != nil && fb.Labelled > 0 {
			acc = fmt.Sprintf("%.1f%% of %d", 100*float64(fb.Correct)/float64(fb.Labelled), fb.Labelled)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", m.Deployment, d.Version, alarm, since, last, d.Windows, d.Samples, d.Dropped, acc)
	}
	return tw.Flush()
}

// endpointsText says where an agent serves, such as
// "http://127.0.0.1:8080 (REST), 127.0.0.1:8081 (gRPC)".
func endpointsText(e *v1alpha1.ServingEndpoints) string {
	var parts []string
	if e != nil && e.REST != "" {
		parts = append(parts, e.REST+" (REST)")
	}
	if e != nil && e.GRPC != "" {
		parts = append(parts, e.GRPC+" (gRPC)")
	}
	if len(parts) == 0 {
		return "nothing (the agent is not running, or serves no endpoint)"
	}
	return strings.Join(parts, ", ")
}

// outboxText says what an outbox holds and gave up, such as
// "3 records (12.0 KiB) waiting; merged drift.window 4; dropped log 2".
func outboxText(st outbox.Stats) string {
	text := "empty"
	if st.Records > 0 {
		text = fmt.Sprintf("%s (%s) waiting", plural(int(st.Records), "record"), bytesize.Format(st.Bytes))
	}
	for _, c := range []struct {
		what string
		n    map[string]int64
	}{{"merged", st.Merged}, {"dropped", st.Dropped}, {"refused by the hub", st.Refused}} {
		kinds := make([]string, 0, len(c.n))
		for k := range c.n {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			text += fmt.Sprintf("; %s %s %d", c.what, k, c.n[k])
		}
	}
	return text
}

// parseMemory parses the agent's declared --memory, a Kubernetes quantity
// such as 512Mi; empty is 0, measured.
func parseMemory(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return 0, fmt.Errorf("--memory %q: %w", s, err)
	}
	if n := q.Value(); n > 0 {
		return n, nil
	}
	return 0, fmt.Errorf("--memory %q: not a positive amount of memory", s)
}
