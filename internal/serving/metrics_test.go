package serving

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/serving/oippb"
	"outpost.dev/outpost/internal/testenv"
)

// fakeAgent is an AgentSource with fixed figures, or an error.
type fakeAgent struct {
	am  AgentMetrics
	err error
}

func (a *fakeAgent) AgentMetrics(context.Context) (AgentMetrics, error) { return a.am, a.err }

// scrape returns GET /metrics, its samples by series ("name{labels}"),
// and the text.
func (h *harness) scrape() (map[string]float64, string) {
	h.t.Helper()
	code, hdr, body := h.do("GET", "/metrics", nil, nil)
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		h.t.Fatalf("GET /metrics: %d %s %.300s", code, hdr.Get("Content-Type"), body)
	}
	samples := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			h.t.Fatalf("sample %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return samples, string(body)
}

// TestMetrics scrapes GET /metrics of a server with a monitored deployment
// and the agent's figures: requests by deployment, version, protocol and
// code, their latency, the bytes in flight, the last window's drift per
// feature and the alarm, the monitor's drops, and the agent's outbox, bytes
// owed and sync progress; and checks the text with promtool.
func TestMetrics(t *testing.T) {
	agent := &fakeAgent{am: AgentMetrics{OutboxRecords: 3, OutboxBytes: 4096, OutboxMerged: map[string]int64{drift.RecordKind: 5},
		OutboxDropped: map[string]int64{"log": 2}, AppliedRevision: 42, LastContact: time.Unix(1_900_000_000, 0),
		Deployments: []DeploymentSync{{Deployment: "fashion", BytesOwed: 100, BytesFetched: 900, BytesTotal: 1000}}}}
	sink := &reportSink{}
	h := newHarness(t, false, 0, func(c *Config) { c.Windows, c.Agent = sink, agent })
	ref := writeFakeReference(t, h.dir, 2000, drift.FeaturizerConfig{})
	h.srv.Sync(context.Background(), []Model{h.monitored("1.0.0", "1", &v1alpha1.Monitoring{WindowSamples: 100, MinSamples: 50}, ref)})
	h.waitVersion("fashion", "1.0.0")
	grpcClient := startGRPC(t, h.srv)

	h.post(fakeRows(rand.New(rand.NewPCG(1, 1)), 100, 3)) // one window, shifted: drift and the alarm
	sink.wait(t, 1)
	if code, _, _ := h.do("POST", "/v2/models/fashion/infer", []byte(`{"inputs":[]}`), nil); code != http.StatusBadRequest {
		t.Fatalf("bad request answered %d", code)
	}
	if code, _, _ := h.do("POST", "/v2/models/nope/infer", []byte(goodRequest), nil); code != http.StatusNotFound {
		t.Fatalf("unknown model answered %d", code)
	}
	in := &oippb.ModelInferRequest{ModelName: "fashion", Inputs: []*oippb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{1, 4},
		Contents: &oippb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}}}
	if _, err := grpcClient.ModelInfer(callCtx(t), in); err != nil {
		t.Fatal(err)
	}
	in.Inputs[0].Shape = []int64{1, 3}
	if _, err := grpcClient.ModelInfer(callCtx(t), in); err == nil {
		t.Fatal("a bad gRPC request succeeded")
	}

	// The monitor counts a request's samples after the request was
	// answered, off the request path: wait for the gRPC request's before
	// scraping.
	testenv.WaitFor(t, 10*time.Second, "101 samples monitored", func() bool {
		for _, st := range h.srv.Status() {
			if st.Deployment == "fashion" && st.Drift != nil && st.Drift.Samples == 101 {
				return true
			}
		}
		return false
	})
	got, text := h.scrape()
	want := map[string]float64{
		`outpost_inference_requests_total{code="200",deployment="fashion",protocol="rest",version="1.0.0"}`:             1,
		`outpost_inference_requests_total{code="400",deployment="fashion",protocol="rest",version="1.0.0"}`:             1,
		`outpost_inference_requests_total{code="404",deployment="",protocol="rest",version=""}`:                         1,
		`outpost_inference_requests_total{code="OK",deployment="fashion",protocol="grpc",version="1.0.0"}`:              1,
		`outpost_inference_requests_total{code="InvalidArgument",deployment="fashion",protocol="grpc",version="1.0.0"}`: 1,
		`outpost_inference_request_duration_seconds_count{deployment="fashion",protocol="rest",version="1.0.0"}`:        2,
		`outpost_inference_request_duration_seconds_count{deployment="fashion",protocol="grpc",version="1.0.0"}`:        2,
		`outpost_inference_inflight_bytes`:                                                     0,
		`outpost_inference_inflight_limit_bytes`:                                               float64(h.srv.cfg.MaxInflightBytes),
		`outpost_drift_alarm{deployment="fashion",version="1.0.0"}`:                            1,
		`outpost_drift_windows_total{deployment="fashion",verdict="drift",version="1.0.0"}`:    1,
		`outpost_drift_windows_total{deployment="fashion",verdict="no-drift",version="1.0.0"}`: 0,
		`outpost_drift_samples_total{deployment="fashion",version="1.0.0"}`:                    101, // and the gRPC request
		`outpost_drift_requests_dropped_total{deployment="fashion",version="1.0.0"}`:           0,
		`outpost_drift_last_window_drifted{deployment="fashion",version="1.0.0"}`:              1,
		`outpost_drift_feature_drifted{deployment="fashion",feature="in[0]",version="1.0.0"}`:  1,
		`outpost_drift_feature_drifted{deployment="fashion",feature="out[1]",version="1.0.0"}`: 0,
		`outpost_agent_outbox_records`:                                                         3,
		`outpost_agent_outbox_bytes`:                                                           4096,
		`outpost_agent_outbox_merged_total{kind="drift.window"}`:                               5,
		`outpost_agent_outbox_dropped_total{kind="log"}`:                                       2,
		`outpost_agent_applied_revision`:                                                       42,
		`outpost_agent_last_contact_timestamp_seconds`:                                         1.9e9,
		`outpost_agent_bytes_owed{deployment="fashion"}`:                                       100,
		`outpost_agent_sync_fetched_bytes{deployment="fashion"}`:                               900,
		`outpost_agent_sync_total_bytes{deployment="fashion"}`:                                 1000,
	}
	for series, v := range want {
		if g, ok := got[series]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", series, g, ok, v)
		}
	}
	for _, prefix := range []string{
		`outpost_drift_feature_statistic{deployment="fashion",feature="in[0]",test="ks",version="1.0.0"}`,
		`outpost_drift_feature_p_value{deployment="fashion",feature="in[0]",test="ks",version="1.0.0"}`,
		`outpost_drift_last_window_end_timestamp_seconds{deployment="fashion",version="1.0.0"}`,
		`go_goroutines`, `process_resident_memory_bytes`,
	} {
		if _, ok := got[prefix]; !ok {
			t.Errorf("no series %s", prefix)
		}
	}
	if p := got[`outpost_drift_feature_p_value{deployment="fashion",feature="in[0]",test="ks",version="1.0.0"}`]; p > 0.01 {
		t.Errorf("in[0]'s KS p-value %v after a shift of 3σ", p)
	}
	promtoolCheck(t, text)

	// When the agent cannot say, its figures are left out and the rest served.
	agent.err = errors.New("database is locked")
	got, _ = h.scrape()
	if _, ok := got[`outpost_agent_outbox_records`]; ok {
		t.Error("agent figures served although the agent failed")
	}
	if got[`outpost_drift_alarm{deployment="fashion",version="1.0.0"}`] != 1 {
		t.Error("the drift alarm is missing once the agent failed")
	}

	// The monitor of a version no longer served leaves the metrics.
	h.srv.Sync(context.Background(), nil)
	testenv.WaitFor(t, 10*time.Second, "the drift series gone", func() bool {
		got, _ := h.scrape()
		_, ok := got[`outpost_drift_alarm{deployment="fashion",version="1.0.0"}`]
		return !ok
	})
}

// promtoolCheck runs `promtool check metrics` on a scrape: the Prometheus
// project's own lint of names, units, types and help.
func promtoolCheck(t *testing.T, text string) {
	t.Helper()
	promtool := testenv.PeerEnv(t, "OUTPOST_PROMTOOL", "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		path := filepath.Join(t.TempDir(), "metrics.txt")
		_ = os.WriteFile(path, []byte(text), 0o600)
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	if bad := regexp.MustCompile(`(?m)^outpost_\S+ .*$`).FindAllString(string(out), -1); len(bad) > 0 {
		t.Errorf("promtool complains about outpost's metrics: %s", fmt.Sprint(bad))
	}
}
