package hub

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/testenv"
)

// scrape reads the hub's /metrics with token and returns the status code
// and the text.
func (e *agentEnv) scrape(token string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.t.Context(), http.MethodGet, e.base+"/metrics", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// sample returns the value of the sample named series (name and labels,
// as the text format writes them) in text, and whether it is there.
func sample(text, series string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			v, err := strconv.ParseFloat(value, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// The hub's /metrics counts what agents sent and the alerts delivered,
// and shows each deployment's drift per cluster as the store holds it;
// it asks for the same credentials as reading the API.
func TestHubMetrics(t *testing.T) {
	rc := &receiver{}
	e, creds := newDriftEnv(t, func(cfg *Config) { cfg.AlertWebhooks = []string{newReceiver(t, rc)} })
	e.applyAsAdmin("modeldeployments", "fashion", monitoredYAML("fashion", true))
	if code, _ := e.scrape(""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token = %d, want 401", code)
	}
	src := newDriftSource(t, "fashion", "1.2.0")
	clean, shifted := driftRecord(t, src.window(0)), driftRecord(t, src.window(1))
	e.send(creds["edge-1"], "edge-1", clean, shifted)
	e.send(creds["edge-1"], "edge-1", shifted) // a retry: a duplicate
	rc.waitDelivered(t, 1)

	code, text := e.scrape(e.admin)
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d\n%s", code, text)
	}
	// Wait for the delivery to be counted: the receiver answers before the hub counts.
	testenv.WaitFor(t, 10*time.Second, "the alert counted", func() bool {
		_, text = e.scrape(e.admin)
		v, _ := sample(text, `outpost_hub_alerts_sent_total{status="firing"}`)
		return v == 1
	})
	labels := `{cluster="edge-1",deployment="fashion",version="1.2.0"}`
	for _, c := range []struct {
		series string
		want   float64
	}{
		{`outpost_hub_outbox_records_total{kind="drift.window",outcome="Applied"}`, 2},
		{`outpost_hub_outbox_records_total{kind="drift.window",outcome="Duplicate"}`, 1},
		{"outpost_hub_drift_alarm" + labels, 1},
		{"outpost_hub_drift_windows_received" + labels, 2},
		{"outpost_hub_drift_drifted_features" + labels, 1},
		{`outpost_hub_cluster_connected{cluster="edge-3"}`, 0}, // joined, never reported
		{"outpost_hub_alerts_queued", 0},
	} {
		if got, ok := sample(text, c.series); !ok || got != c.want {
			t.Errorf("%s = %v (present %v), want %v", c.series, got, ok, c.want)
		}
	}
	if v, ok := sample(text, `outpost_hub_outbox_received_bytes_total{cluster="edge-1"}`); !ok || v <= 0 || v > 64<<10 {
		t.Errorf("outbox bytes from edge-1 = %v, want a few kilobytes", v)
	}
	if _, ok := sample(text, `outpost_hub_drift_alarm{cluster="edge-2",deployment="fashion",version="1.2.0"}`); ok {
		t.Error("a drift alarm of edge-2, which sent no window")
	}
	if v, ok := sample(text, "outpost_hub_drift_last_window_end_timestamp_seconds"+labels); !ok || v < float64(src.t0.Unix()) {
		t.Errorf("last window end = %v", v)
	}
	t.Run("promtool", func(t *testing.T) { promtoolCheck(t, text) })
}

// promtoolCheck runs `promtool check metrics` (Debian's prometheus
// package) on a scrape: it fails on malformed text and on metrics that
// break Prometheus' naming and help conventions.
func promtoolCheck(t *testing.T, text string) {
	t.Helper()
	promtool := testenv.PeerEnv(t, "OUTPOST_PROMTOOL", "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	if s := strings.TrimSpace(string(out)); s != "" {
		t.Errorf("promtool complains about the hub's metrics: %s", fmt.Sprint(s))
	}
}
