package serving

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
)

// The server's Prometheus metrics, served on GET /metrics from a registry
// of the server's own (see docs/serving.md, "Metrics"): inference requests
// and their latency, the bytes in flight, each monitored deployment's
// drift, and the agent's figures (Config.Agent).

// AgentMetrics is what the agent tells /metrics at each scrape.
type AgentMetrics struct {
	// OutboxRecords and OutboxBytes are what waits in the outbox for the hub.
	OutboxRecords, OutboxBytes int64
	// OutboxMerged, OutboxDropped and OutboxRefused count, by record kind,
	// the records merged or dropped to stay within the outbox's budget,
	// and those the hub refused.
	OutboxMerged, OutboxDropped, OutboxRefused map[string]int64
	// AppliedRevision is the desired state revision applied.
	AppliedRevision int64
	// LastContact is when the hub last answered; zero if never.
	LastContact time.Time
	// Deployments are the sync progress of each deployment.
	Deployments []DeploymentSync
}

// DeploymentSync is one deployment's sync progress.
type DeploymentSync struct {
	Deployment string
	// BytesOwed is what the desired version still lacks.
	BytesOwed int64
	// BytesFetched and BytesTotal are the transfer's progress.
	BytesFetched, BytesTotal int64
}

// AgentSource gives /metrics the agent's figures; the agent's command
// provides it (serving knows nothing of the agent).
type AgentSource interface {
	AgentMetrics(ctx context.Context) (AgentMetrics, error)
}

// agentScrapeTimeout bounds how long a scrape waits for the agent's figures.
const agentScrapeTimeout = 5 * time.Second

// latencyBuckets are the request latency histogram's buckets, in seconds:
// from 100 µs (a small model in process) to 10 s.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Protocols in the metrics' protocol label.
const (
	protocolREST = "rest"
	protocolGRPC = "grpc"
)

// metrics are the server's Prometheus metrics.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec   // deployment, version, protocol, code
	latency  *prometheus.HistogramVec // deployment, version, protocol
	recent   recentLatencies
	clock    func() time.Time
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		clock: s.clock.Now,
		reg:   prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_inference_requests_total",
			Help: "Inference requests answered, by deployment and version served (empty when the request named none the server serves), protocol (rest or grpc) and code (the HTTP status, or the gRPC code).",
		}, []string{"deployment", "version", "protocol", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "outpost_inference_request_duration_seconds",
			Help:    "Time from an inference request's arrival to its answer, by deployment, version and protocol.",
			Buckets: latencyBuckets,
		}, []string{"deployment", "version", "protocol"}),
	}
	m.reg.MustRegister(m.requests, m.latency, serverCollector{s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// handler serves the metrics in Prometheus' text format. A failure to
// read the agent's figures leaves them out and is logged; the rest is
// served.
func (m *metrics) handler(s *Server) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{s}, ErrorHandling: promhttp.ContinueOnError})
}

// slogPrinter logs promhttp's errors to the server's logger.
type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) { p.s.log.Warn("metrics", "err", v) }

// requestLabels is what a request's metrics are labelled with: the
// deployment and version that served it, once known.
type requestLabels struct{ deployment, version string }

// observe records one answered request.
func (m *metrics) observe(l requestLabels, protocol, code string, took time.Duration) {
	m.requests.WithLabelValues(l.deployment, l.version, protocol, code).Inc()
	m.latency.WithLabelValues(l.deployment, l.version, protocol).Observe(took.Seconds())
	m.recent.add(m.clock(), took)
}

// grpcCode is the code label of a gRPC call's outcome.
func grpcCode(c codes.Code) string { return c.String() }

// httpCode is the code label of a REST answer; 499 when the client went
// away before one was written.
func httpCode(c int) string {
	if c == 0 {
		return "499"
	}
	return strconv.Itoa(c)
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// serverCollector collects, at each scrape, the metrics read from the
// server's state: the bytes in flight, the drift monitors, the agent.
type serverCollector struct{ s *Server }

var (
	descInflight = prometheus.NewDesc("outpost_inference_inflight_bytes",
		"Bytes that inference requests hold now, against --max-inflight-bytes.", nil, nil)
	descInflightLimit = prometheus.NewDesc("outpost_inference_inflight_limit_bytes",
		"The budget of bytes that inference requests may hold at once (--max-inflight-bytes).", nil, nil)

	monitorLabels = []string{"deployment", "version"}
	descAlarm     = prometheus.NewDesc("outpost_drift_alarm",
		"1 while the deployment's drift alarm is raised, else 0.", monitorLabels, nil)
	descWindows = prometheus.NewDesc("outpost_drift_windows_total",
		"Drift monitoring windows closed since monitoring of the version began, by verdict.", append(monitorLabels, "verdict"), nil)
	descSamples = prometheus.NewDesc("outpost_drift_samples_total",
		"Samples summarised by drift monitoring since monitoring of the version began.", monitorLabels, nil)
	descDropped = prometheus.NewDesc("outpost_drift_requests_dropped_total",
		"Requests left unmonitored because the monitor's queue was full.", monitorLabels, nil)
	descSkipped = prometheus.NewDesc("outpost_drift_requests_skipped_total",
		"Requests left unmonitored because their tensors were not FP32 or not of the reference's shapes.", monitorLabels, nil)
	descInvalid = prometheus.NewDesc("outpost_drift_invalid_values_total",
		"NaN and infinite feature values seen, which no drift test sees.", monitorLabels, nil)
	descLost = prometheus.NewDesc("outpost_drift_windows_lost_total",
		"Windows whose report could not be put in the outbox.", monitorLabels, nil)
	descLastDrifted = prometheus.NewDesc("outpost_drift_last_window_drifted",
		"1 when the last closed window drifted, else 0.", monitorLabels, nil)
	descLastEnd = prometheus.NewDesc("outpost_drift_last_window_end_timestamp_seconds",
		"When the last window closed, in seconds since the epoch.", monitorLabels, nil)
	descFeatureDrifted = prometheus.NewDesc("outpost_drift_feature_drifted",
		"1 when a test of the feature drifted in the last window, else 0.", append(monitorLabels, "feature"), nil)
	descBusy = prometheus.NewDesc("outpost_drift_monitor_busy_seconds_total",
		"Time the deployment's drift monitor spent working (summarising requests, keeping them for feedback, closing windows), off the request path.", monitorLabels, nil)
	descFeedbackLabelled = prometheus.NewDesc("outpost_feedback_labelled_samples",
		"Samples the version answered whose true label was sent back (POST /v2/models/NAME/feedback), among those kept.", monitorLabels, nil)
	descFeedbackCorrect = prometheus.NewDesc("outpost_feedback_correct_samples",
		"Labelled samples the version predicted right, among those kept: its accuracy on recent inputs is this over outpost_feedback_labelled_samples.", monitorLabels, nil)
	descFeatureStatistic = prometheus.NewDesc("outpost_drift_feature_statistic",
		"A drift test's statistic for the feature in the last window (KS D, chi-square, PSI, Jensen-Shannon or Wasserstein distance).",
		append(monitorLabels, "feature", "test"), nil)
	descFeaturePValue = prometheus.NewDesc("outpost_drift_feature_p_value",
		"A drift test's p-value for the feature in the last window, after the correction across all tests.", append(monitorLabels, "feature", "test"), nil)

	descOutboxRecords = prometheus.NewDesc("outpost_agent_outbox_records",
		"Records waiting in the agent's outbox for the hub.", nil, nil)
	descOutboxBytes = prometheus.NewDesc("outpost_agent_outbox_bytes",
		"Payload bytes waiting in the agent's outbox for the hub.", nil, nil)
	descOutboxMerged = prometheus.NewDesc("outpost_agent_outbox_merged_total",
		"Outbox records merged into others to stay within the budget, by kind.", []string{"kind"}, nil)
	descOutboxDropped = prometheus.NewDesc("outpost_agent_outbox_dropped_total",
		"Outbox records dropped to stay within the budget, by kind.", []string{"kind"}, nil)
	descOutboxRefused = prometheus.NewDesc("outpost_agent_outbox_refused_total",
		"Outbox records the hub refused for good, by kind.", []string{"kind"}, nil)
	descAppliedRevision = prometheus.NewDesc("outpost_agent_applied_revision",
		"The hub revision of the desired state the agent applied.", nil, nil)
	descLastContact = prometheus.NewDesc("outpost_agent_last_contact_timestamp_seconds",
		"When the hub last answered the agent, in seconds since the epoch.", nil, nil)
	descBytesOwed = prometheus.NewDesc("outpost_agent_bytes_owed",
		"Bytes of the deployment's desired version that have not crossed the link yet.", []string{"deployment"}, nil)
	descSyncFetched = prometheus.NewDesc("outpost_agent_sync_fetched_bytes",
		"Bytes of the deployment's desired version fetched so far.", []string{"deployment"}, nil)
	descSyncTotal = prometheus.NewDesc("outpost_agent_sync_total_bytes",
		"Bytes of the deployment's desired version to fetch in all.", []string{"deployment"}, nil)
)

// Describe sends nothing: the collector's metrics come and go with the
// deployments, so it is an unchecked collector.
func (serverCollector) Describe(chan<- *prometheus.Desc) {}

// Collect sends the metrics read from the server's state.
func (c serverCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	ch <- prometheus.MustNewConstMetric(descInflight, prometheus.GaugeValue, float64(s.inflight()))
	ch <- prometheus.MustNewConstMetric(descInflightLimit, prometheus.GaugeValue, float64(s.cfg.MaxInflightBytes))
	s.monMu.Lock()
	mons := make([]*monitor, 0, len(s.mons))
	for m := range s.mons {
		mons = append(mons, m)
	}
	s.monMu.Unlock()
	for _, m := range mons {
		m.collect(ch)
	}
	if s.cfg.Agent != nil {
		collectAgent(ch, s)
	}
}

// collect sends the monitor's metrics.
func (m *monitor) collect(ch chan<- prometheus.Metric) {
	st := m.status()
	m.mu.Lock()
	rep := m.report
	byVerdict := make(map[string]float64, len(m.byVerdict))
	for v, n := range m.byVerdict {
		byVerdict[string(v)] = float64(n)
	}
	m.mu.Unlock()
	dv := []string{m.deployment, m.version}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append(dv, labels...)...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, append(dv, labels...)...)
	}
	gauge(descAlarm, bit(st.Alarm))
	for _, v := range []string{"drift", "no-drift", "insufficient-data"} {
		counter(descWindows, byVerdict[v], v)
	}
	counter(descSamples, float64(st.Samples))
	counter(descDropped, float64(st.Dropped))
	counter(descSkipped, float64(st.Skipped))
	counter(descInvalid, float64(st.Invalid))
	counter(descLost, float64(st.Lost))
	counter(descBusy, st.Busy.Seconds())
	if fb := st.Feedback; fb != nil {
		gauge(descFeedbackLabelled, float64(fb.Labelled))
		gauge(descFeedbackCorrect, float64(fb.Correct))
	}
	if rep == nil {
		return
	}
	gauge(descLastDrifted, bit(rep.Verdict == "drift"))
	gauge(descLastEnd, float64(rep.End.UnixNano())/1e9)
	for _, f := range rep.Features {
		gauge(descFeatureDrifted, bit(f.Drifted), f.Name)
		for _, sc := range f.Scores {
			gauge(descFeatureStatistic, sc.Statistic, f.Name, string(sc.Test))
			if sc.PValue != nil {
				gauge(descFeaturePValue, *sc.PValue, f.Name, string(sc.Test))
			}
		}
	}
}

// collectAgent sends the agent's metrics, or an error for the scrape to
// log when the agent cannot say.
func collectAgent(ch chan<- prometheus.Metric, s *Server) {
	ctx, cancel := context.WithTimeout(context.Background(), agentScrapeTimeout)
	defer cancel()
	am, err := s.cfg.Agent.AgentMetrics(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descOutboxRecords, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descOutboxRecords, float64(am.OutboxRecords))
	gauge(descOutboxBytes, float64(am.OutboxBytes))
	for _, c := range []struct {
		d *prometheus.Desc
		n map[string]int64
	}{{descOutboxMerged, am.OutboxMerged}, {descOutboxDropped, am.OutboxDropped}, {descOutboxRefused, am.OutboxRefused}} {
		for kind, n := range c.n {
			ch <- prometheus.MustNewConstMetric(c.d, prometheus.CounterValue, float64(n), kind)
		}
	}
	gauge(descAppliedRevision, float64(am.AppliedRevision))
	if !am.LastContact.IsZero() {
		gauge(descLastContact, float64(am.LastContact.UnixNano())/1e9)
	}
	for _, d := range am.Deployments {
		gauge(descBytesOwed, float64(d.BytesOwed), d.Deployment)
		gauge(descSyncFetched, float64(d.BytesFetched), d.Deployment)
		gauge(descSyncTotal, float64(d.BytesTotal), d.Deployment)
	}
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
