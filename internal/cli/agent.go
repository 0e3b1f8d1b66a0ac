package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/bytesize"
	"outpost.dev/outpost/internal/clientconfig"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/ort"
	"outpost.dev/outpost/internal/outbox"
	"outpost.dev/outpost/internal/pki"
	"outpost.dev/outpost/internal/serving"
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
		readyFile     string
		keepVersions  int
		verifyOnStart bool
		serveAddr     string
		grpcAddr      string
		maxRequest    string
		maxInflight   string
		ortLib        string
		debugAddr     string
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
the memory a burst took is given back once it is over.

Versions never go backwards by accident: desired state older than what was
applied is refused and counted, and a lower version replaces a higher one
only when the deployment sets allowDowngrade.`,
		Example: `  outpost agent --hub https://hub.example:8443 --ca-file ca.crt \
      --join-token opj_... --data /var/lib/outpost-agent --name edge-berlin-1 \
      --labels region=eu,tier=store --max-bandwidth 10MiB
  outpost agent --data /var/lib/outpost-agent
  outpost agent --data /var/lib/outpost-agent --serve 127.0.0.1:8080 --grpc 127.0.0.1:8081
  outpost agent status --data /var/lib/outpost-agent`,
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
			cfg.KeepVersions = keepVersions
			if keepVersions == 0 {
				cfg.KeepVersions = -1
			}
			cfg.JoinToken = joinToken
			cfg.VerifyOnStart = verifyOnStart
			cfg.AgentVersion = Version()
			cfg.Logger = g.logger()
			limits, err := servingLimits(maxRequest, maxInflight)
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
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			a, err := agent.New(ctx, cfg)
			if err != nil {
				return err
			}
			defer a.Close()
			for _, m := range a.Active() {
				cfg.Logger.Info("active from cache", "deployment", m.Deployment, "model", m.Model, "version", m.Version)
			}
			serveDone, err := startServing(ctx, a, cfg.Logger, serveAddr, !cmd.Flags().Changed("serve"), grpcAddr, ortLib, limits, activeChanged)
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
	f.BoolVar(&verifyOnStart, "verify-on-start", false, "re-hash every active file at start instead of checking sizes")
	f.StringVar(&readyFile, "ready-file", "", "write the cluster name to this file once joined and running (for scripts)")
	f.StringVar(&serveAddr, "serve", DefaultServeAddr, `address of the inference endpoint (Open Inference Protocol v2 REST); "" serves nothing`)
	f.StringVar(&grpcAddr, "grpc", "", `address of the gRPC inference endpoint (Open Inference Protocol v2 gRPC), such as 127.0.0.1:8081; "" (the default) serves none`)
	f.StringVar(&maxRequest, "max-request-bytes", "64MiB", "largest inference request (REST body or gRPC message) accepted")
	f.StringVar(&maxInflight, "max-inflight-bytes", "", "bytes all inference requests may hold at once (bodies, decoded tensors, outputs); more are refused with 429 / RESOURCE_EXHAUSTED (default 4x --max-request-bytes)")
	f.StringVar(&ortLib, "onnxruntime-lib", "", "ONNX Runtime shared library (libonnxruntime.so) for models served with onnxruntime (env "+ort.EnvLib+")")
	addDebugListen(cmd, &debugAddr)
	cmd.PreRun = func(cmd *cobra.Command, args []string) {
		if joinToken == "" {
			joinToken = os.Getenv("OUTPOST_JOIN_TOKEN")
		}
		if ortLib == "" {
			ortLib = os.Getenv(ort.EnvLib)
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

// DefaultServeAddr is where the agent answers inference requests unless
// --serve says otherwise, and where 'outpost infer' sends them.
const DefaultServeAddr = "127.0.0.1:8080"

// servingLimits parses --max-request-bytes and --max-inflight-bytes into
// the limits of a serving.Config. The budget in flight must hold a request
// of the largest size; "" leaves it to serving's default.
func servingLimits(maxRequest, maxInflight string) (serving.Config, error) {
	var c serving.Config
	var err error
	if c.MaxRequestBytes, err = agent.ParseBandwidth(maxRequest); err != nil || c.MaxRequestBytes <= 0 {
		return c, fmt.Errorf("--max-request-bytes %q: want a size such as 64MiB", maxRequest)
	}
	if maxInflight == "" {
		return c, nil
	}
	if c.MaxInflightBytes, err = agent.ParseBandwidth(maxInflight); err != nil || c.MaxInflightBytes <= 0 {
		return c, fmt.Errorf("--max-inflight-bytes %q: want a size such as 256MiB", maxInflight)
	}
	if c.MaxInflightBytes < c.MaxRequestBytes {
		return c, fmt.Errorf("--max-inflight-bytes %s is less than --max-request-bytes %s: a request of the largest size could never be served",
			maxInflight, maxRequest)
	}
	return c, nil
}

// startServing starts the inference server: the REST API on addr and the
// gRPC API on grpcAddr (none where empty), with the request limits of
// limits (MaxRequestBytes and MaxInflightBytes), loading what the agent
// activates and recording in its status which runtime serves each
// deployment. When addr is the default and another process holds it
// (several agents on one host), a free port of the same host serves
// instead, named in the log. The returned channel is closed once the
// server stopped, after ctx ended.
func startServing(ctx context.Context, a *agent.Agent, log *slog.Logger, addr string, isDefault bool, grpcAddr, ortLib string, limits serving.Config, activeChanged <-chan struct{}) (<-chan struct{}, error) {
	done := make(chan struct{})
	if addr == "" && grpcAddr == "" {
		close(done)
		return done, a.SetServing(ctx, nil)
	}
	var ortRT engine.Runtime
	if ortLib != "" {
		r, err := ort.New(ortLib)
		if err != nil {
			return nil, fmt.Errorf("--onnxruntime-lib: %w", err)
		}
		log.Info("ONNX Runtime available", "version", r.Version(), "library", r.Library())
		ortRT = r
	}
	var ln, grpcLn net.Listener
	if addr != "" {
		var err error
		ln, err = net.Listen("tcp", addr)
		if err != nil && isDefault && errors.Is(err, syscall.EADDRINUSE) {
			log.Warn("default inference address in use, serving on a free port instead", "busy", addr)
			host, _, _ := net.SplitHostPort(addr)
			ln, err = net.Listen("tcp", net.JoinHostPort(host, "0"))
		}
		if err != nil {
			return nil, fmt.Errorf("--serve: %w", err)
		}
	}
	if grpcAddr != "" {
		var err error
		if grpcLn, err = net.Listen("tcp", grpcAddr); err != nil {
			if ln != nil {
				ln.Close()
			}
			return nil, fmt.Errorf("--grpc: %w", err)
		}
	}
	var portHost string // deployments with a port of their own are served beside --serve
	if ln != nil {
		portHost, _, _ = net.SplitHostPort(ln.Addr().String())
	}
	srv := serving.New(serving.Config{
		ONNXRuntime: ortRT, Version: Version(), MaxRequestBytes: limits.MaxRequestBytes, MaxInflightBytes: limits.MaxInflightBytes,
		Logger: log, PortHost: portHost,
		OnStatus: func(st []serving.ModelStatus) {
			states := make(map[string]agent.ServingState, len(st))
			for _, m := range st {
				states[m.Deployment] = agent.ServingState{Version: m.Version, Runtime: m.Runtime, Error: m.Error, Port: m.Port}
			}
			if err := a.SetServing(context.WithoutCancel(ctx), states); err != nil {
				log.Warn("record serving state", "err", err)
			}
		},
	})
	var wg sync.WaitGroup
	wg.Go(func() { srv.Watch(ctx, func() []serving.Model { return servingModels(a.Active()) }, activeChanged) })
	if ln != nil {
		log.Info("serving inference (Open Inference Protocol v2)", "addr", ln.Addr().String())
		wg.Go(func() {
			if err := srv.Serve(ctx, ln); err != nil {
				log.Error("inference endpoint stopped", "err", err)
			}
		})
	}
	if grpcLn != nil {
		log.Info("serving inference over gRPC (Open Inference Protocol v2)", "addr", grpcLn.Addr().String())
		wg.Go(func() {
			if err := srv.ServeGRPC(ctx, grpcLn); err != nil {
				log.Error("gRPC inference endpoint stopped", "err", err)
			}
		})
	}
	go func() {
		wg.Wait()
		srv.Close()
		close(done)
	}()
	return done, nil
}

// servingModels is what the server is to serve of the agent's active models.
func servingModels(active []agent.ActiveModel) []serving.Model {
	out := make([]serving.Model, len(active))
	for i, am := range active {
		out[i] = serving.Model{Deployment: am.Deployment, Model: am.Model, Version: am.Version,
			Digest: am.Digest, Files: am.Files, Serving: am.Serving}
	}
	return out
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
what its byte budget made it merge or drop.`,
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
	fmt.Fprintf(w, "Last contact:     %s\n", contact)
	fmt.Fprintf(w, "Applied revision: %d\n", st.AppliedRevision)
	fmt.Fprintf(w, "Rejected stale:   %d\n", st.RejectedStale)
	fmt.Fprintf(w, "Bytes owed:       %s\n", bytesize.Format(st.BytesOwed))
	fmt.Fprintf(w, "Outbox:           %s\n\n", outboxText(st.Outbox))
	if len(st.Models) == 0 {
		fmt.Fprintln(w, "No models desired.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEPLOYMENT\tMODEL\tACTIVE\tDESIRED\tPHASE\tRUNTIME\tFETCHED\tOWED\tERROR")
	for _, m := range st.Models {
		active := orNone(m.ActiveVersion)
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
	return tw.Flush()
}

// outboxText says what an outbox holds and gave up, such as
// "3 records (12.0 KiB) waiting; merged drift.window 4; dropped log 2".
func outboxText(st outbox.Stats) string {
	text := "empty"
	if st.Records > 0 {
		text = fmt.Sprintf("%d records (%s) waiting", st.Records, bytesize.Format(st.Bytes))
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
