package hub

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/store"
)

// The hub's Prometheus metrics, served on GET /metrics from a registry of
// the server's own (see docs/api.md, "Metrics"): what agents sent through
// their outboxes, the alerts delivered, and, read from the store at each
// scrape, each deployment's drift and sync progress per cluster, the
// clusters' links and the alerts waiting for their receivers.

// storeScrapeTimeout bounds how long a scrape waits for the store.
const storeScrapeTimeout = 5 * time.Second

// metrics are the hub's Prometheus metrics.
type metrics struct {
	reg *prometheus.Registry
	// outboxBytes counts outbox batch bytes as they arrived (compressed), by cluster.
	outboxBytes *prometheus.CounterVec
	// outboxRecords counts outbox records by kind and outcome.
	outboxRecords *prometheus.CounterVec
	// alertsSent counts alert messages receivers took, by status;
	// alertFailures the deliveries they refused or that failed.
	alertsSent    *prometheus.CounterVec
	alertFailures prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		outboxBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_hub_outbox_received_bytes_total",
			Help: "Bytes of outbox batches received from agents, as they crossed the link (zstd-compressed), by cluster.",
		}, []string{"cluster"}),
		outboxRecords: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_hub_outbox_records_total",
			Help: "Outbox records received from agents, by kind and outcome (applied, duplicate or refused).",
		}, []string{"kind", "outcome"}),
		alertsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_hub_alerts_sent_total",
			Help: "Alert webhook messages their receivers took, by status (firing or resolved).",
		}, []string{"status"}),
		alertFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_hub_alert_delivery_failures_total",
			Help: "Alert webhook deliveries that failed or that their receivers refused; each is retried.",
		}),
	}
	m.reg.MustRegister(m.outboxBytes, m.outboxRecords, m.alertsSent, m.alertFailures, storeCollector{s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// handleMetrics serves the metrics in Prometheus' text format. A failure to
// read the store leaves its metrics out and is logged; the rest is served.
func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{s}, ErrorHandling: promhttp.ContinueOnError}).ServeHTTP(w, r)
}

// slogPrinter logs promhttp's errors to the hub's logger.
type slogPrinter struct{ s *Server }

func (p slogPrinter) Println(v ...any) { p.s.log.Warn("metrics", "err", fmt.Sprint(v...)) }

// countOutbox counts a batch applied for cluster: its bytes on the wire
// and each record's outcome.
func (m *metrics) countOutbox(cluster string, wireBytes int, records []v1alpha1.OutboxRecord, resp v1alpha1.OutboxResponse) {
	m.outboxBytes.WithLabelValues(cluster).Add(float64(wireBytes))
	for i, res := range resp.Results {
		if i < len(records) {
			m.outboxRecords.WithLabelValues(records[i].Kind, string(res.Outcome)).Inc()
		}
	}
}

// storeCollector collects, at each scrape, the metrics read from the
// hub's store.
type storeCollector struct{ s *Server }

var (
	driftLabels    = []string{"deployment", "cluster", "version"}
	descDriftAlarm = prometheus.NewDesc("outpost_hub_drift_alarm",
		"1 while the drift alarm of the deployment is raised in the cluster, as its newest drift window says, else 0.", driftLabels, nil)
	descDriftWindows = prometheus.NewDesc("outpost_hub_drift_windows_received",
		"Drift windows of the version the hub received from the cluster, merged ones counted one by one.", driftLabels, nil)
	descDriftFeatures = prometheus.NewDesc("outpost_hub_drift_drifted_features",
		"Features that drifted in the newest drift window of the deployment from the cluster.", driftLabels, nil)
	descDriftLastEnd = prometheus.NewDesc("outpost_hub_drift_last_window_end_timestamp_seconds",
		"When the newest drift window of the deployment from the cluster ended, by the agent's clock, in seconds since the epoch.", driftLabels, nil)
	descSyncFetched = prometheus.NewDesc("outpost_hub_sync_fetched_bytes",
		"Bytes of the deployment's desired version the cluster fetched so far, as it last reported.", []string{"deployment", "cluster"}, nil)
	descSyncTotal = prometheus.NewDesc("outpost_hub_sync_total_bytes",
		"Bytes of the deployment's desired version the cluster fetches in all, as it last reported.", []string{"deployment", "cluster"}, nil)
	descClusterConnected = prometheus.NewDesc("outpost_hub_cluster_connected",
		"1 while the hub counts the cluster's link as connected, else 0.", []string{"cluster"}, nil)
	descClusterLastSeen = prometheus.NewDesc("outpost_hub_cluster_last_seen_timestamp_seconds",
		"When the hub last heard from the cluster's agent, in seconds since the epoch.", []string{"cluster"}, nil)
	descAlertsQueued = prometheus.NewDesc("outpost_hub_alerts_queued",
		"Alert webhook messages waiting for their receivers.", nil, nil)
)

// Describe sends nothing: the collector's metrics come and go with the
// deployments and clusters, so it is an unchecked collector.
func (storeCollector) Describe(chan<- *prometheus.Desc) {}

// Collect sends the metrics read from the store, or an invalid metric for
// the scrape to log when the store cannot be read.
func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.s.life, storeScrapeTimeout)
	defer cancel()
	var deps, clusters []v1alpha1.Object
	var queued int64
	err := c.s.db.View(ctx, func(tx *store.Tx) error {
		var err error
		if deps, err = tx.List(ctx, v1alpha1.KindModelDeployment, nil); err != nil {
			return err
		}
		if clusters, err = tx.List(ctx, v1alpha1.KindCluster, nil); err != nil {
			return err
		}
		queued, err = tx.QueuedAlerts(ctx)
		return err
	})
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descAlertsQueued, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descAlertsQueued, float64(queued))
	for _, o := range deps {
		d := o.(*v1alpha1.ModelDeployment)
		for _, r := range d.Status.Clusters {
			if r.BytesTotal > 0 {
				gauge(descSyncFetched, float64(r.BytesFetched), d.Name, r.Cluster)
				gauge(descSyncTotal, float64(r.BytesTotal), d.Name, r.Cluster)
			}
			if r.Drift == nil {
				continue
			}
			l := []string{d.Name, r.Cluster, r.Drift.Version}
			gauge(descDriftAlarm, bit(r.Drift.Alarm), l...)
			gauge(descDriftWindows, float64(r.Drift.Windows), l...)
			gauge(descDriftFeatures, float64(r.Drift.DriftedFeatureCount), l...)
			gauge(descDriftLastEnd, float64(r.Drift.LastWindowEnd.UnixNano())/1e9, l...)
		}
	}
	for _, o := range clusters {
		cl := o.(*v1alpha1.Cluster)
		gauge(descClusterConnected, bit(cl.Status.Link.State == v1alpha1.LinkConnected), cl.Name)
		if ls := cl.Status.Link.LastSeen; ls != nil {
			gauge(descClusterLastSeen, float64(ls.UnixNano())/1e9, cl.Name)
		}
	}
}

func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
