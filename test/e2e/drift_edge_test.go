package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/zoo"
)

// alertMsg is the part of an Alertmanager webhook message the test reads.
type alertMsg struct {
	Status string `json:"status"`
	Alerts []struct {
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

// alertReceiver is an alert webhook receiver: it keeps every message.
type alertReceiver struct {
	mu   sync.Mutex
	msgs []alertMsg
}

func (rc *alertReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m alertMsg
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.msgs = append(rc.msgs, m)
}

// firing counts the firing messages about deployment in cluster, and all messages.
func (rc *alertReceiver) firing(deployment, cluster string) (firing, all int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, m := range rc.msgs {
		if m.Status == "firing" && len(m.Alerts) == 1 && m.Alerts[0].Labels["deployment"] == deployment && m.Alerts[0].Labels["cluster"] == cluster {
			firing++
		}
	}
	return firing, len(rc.msgs)
}

// driftAgentStatus is the drift part of 'outpost agent status -o json'.
type driftAgentStatus struct {
	Outbox struct {
		Records int64 `json:"records"`
	} `json:"outbox"`
	Models []struct {
		Deployment string `json:"deployment"`
		Drift      *struct {
			Windows uint64 `json:"windows"`
			Alarm   bool   `json:"alarm"`
			Samples uint64 `json:"samples"`
			Dropped uint64 `json:"dropped"`
		} `json:"drift"`
	} `json:"models"`
}

func (a *agentProc) driftStatus() driftAgentStatus {
	a.t.Helper()
	out, err := exec.Command(outpostBin, "agent", "status", "--data", a.dir, "-o", "json").Output()
	if err != nil {
		a.t.Fatalf("agent status %s: %v", a.name, err)
	}
	var s driftAgentStatus
	if err := json.Unmarshal(out, &s); err != nil {
		a.t.Fatalf("agent status %s: %v\n%s", a.name, err, out)
	}
	return s
}

// windows returns the windows and alarm of deployment's monitor, and whether it is monitored.
func (s driftAgentStatus) windows(deployment string) (uint64, bool, bool) {
	for _, m := range s.Models {
		if m.Deployment == deployment && m.Drift != nil {
			return m.Drift.Windows, m.Drift.Alarm, true
		}
	}
	return 0, false, false
}

// imageRequests are Open Inference Protocol requests of the zoo MLP for
// images [from, from+n) of the test subset, each pixel times scale, 50
// images a request.
func imageRequests(t *testing.T, from, n int, scale float32) [][]byte {
	t.Helper()
	_, test, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := zoo.Get("mlp")
	if err != nil {
		t.Fatal(err)
	}
	const per = 50
	var out [][]byte
	for i := from; i < from+n; i += per {
		x := m.Batch(test, i%test.Len(), per)
		for j := range x.F32 {
			x.F32[j] *= scale
		}
		b, err := json.Marshal(map[string]any{"inputs": []map[string]any{{"name": zoo.InputName, "shape": x.Shape, "datatype": "FP32", "data": x.F32}}})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func infer(t *testing.T, addr string, bodies [][]byte) {
	t.Helper()
	for _, b := range bodies {
		resp, err := http.Post("http://"+addr+"/v2/models/fashion/infer", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("infer: %s %s", resp.Status, body)
		}
	}
}

// scrape GETs url's metrics, with the hub's CA and token when h is set.
func scrape(t *testing.T, h *hub, url string) string {
	t.Helper()
	client := http.DefaultClient
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(mustRead(t, h.caFile()))
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		req.Header.Set("Authorization", "Bearer "+h.token())
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v %s\n%s", url, err, resp.Status, b)
	}
	return string(b)
}

// metricValue is the value of the sample series (name and labels as the
// text format writes them) in a scrape, 0 when absent.
func metricValue(text, series string) float64 {
	for _, l := range strings.Split(text, "\n") {
		if name, v, ok := strings.Cut(l, " "); ok && name == series {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDriftEdgeToHub: an agent cut off from the hub is sent shifted
// images; it detects drift on its own, keeps the windows in its outbox
// across kill -9, and when the link returns the hub gets each window once
// in a few kilobytes, shows DriftDetected, the DRIFT column, drift status
// and show, and sends one alert. Both /metrics pass promtool.
func TestDriftEdgeToHub(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a hub and an agent serving a model")
	}
	rc := &alertReceiver{}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	h := startHub(t, "--alert-webhook", hook.URL+"/alerts")
	m, b, err := zoo.Get("mlp")
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, m.File), b, 0o644); err != nil {
		t.Fatal(err)
	}
	h.mustRun("model", "push", src, "--name", "fashion", "--version", "1.0.0", "--reference", fashionTest)
	serve := freeAddr(t)
	a := newAgent(t, h, "ship-1", "tier=edge", joinToken(t, h, "1h"), "--serve", serve)
	a.start()
	applyYAML(t, h, deployment("fashion", "fashion", "1.0.0", "tier: edge",
		"  monitoring: {windowSamples: 200, windowDuration: 1h, alert: true, feedbackSamples: 1000}\n"))
	testenv.WaitFor(t, 60*time.Second, "ship-1 monitoring fashion 1.0.0", func() bool {
		_, _, ok := a.driftStatus().windows("fashion")
		return ok && a.status().active("fashion") == "1.0.0"
	})
	hubWindows := func() (int64, bool) {
		d := hubDeployment(t, h, "fashion")
		for _, r := range d.Status.Clusters {
			if r.Cluster == "ship-1" && r.Drift != nil {
				return r.Drift.Windows, r.Drift.Alarm
			}
		}
		return 0, false
	}

	// Connected, two windows of the images the reference was made of: no drift.
	// The first request carries an id, and its true labels follow it.
	first := imageRequests(t, 0, 50, 1)[0]
	var withID map[string]any
	if err := json.Unmarshal(first, &withID); err != nil {
		t.Fatal(err)
	}
	withID["id"] = "cam-1"
	first, _ = json.Marshal(withID)
	infer(t, serve, [][]byte{first})
	_, test, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	labels := make([]int, 50)
	for i := range labels {
		labels[i] = int(test.Labels[i])
	}
	fb, _ := json.Marshal(map[string]any{"id": "cam-1", "labels": labels})
	resp, err := http.Post("http://"+serve+"/v2/models/fashion/feedback", "application/json", bytes.NewReader(fb))
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(answer), `"labelled":50`) {
		t.Fatalf("feedback: %s %s", resp.Status, answer)
	}
	infer(t, serve, imageRequests(t, 50, 350, 1))
	testenv.WaitFor(t, 30*time.Second, "the hub has the 2 clean windows", func() bool { n, _ := hubWindows(); return n == 2 })
	if n, alarm := hubWindows(); alarm {
		t.Fatalf("clean windows raised the alarm (%d windows)", n)
	}
	before := metricValue(scrape(t, h, h.url()+"/metrics"), `outpost_hub_outbox_received_bytes_total{cluster="ship-1"}`)

	// Cut off: three windows of darker images (pixels times 0.5) drift, locally.
	a.link.Partition(true)
	infer(t, serve, imageRequests(t, 400, 600, 0.5))
	testenv.WaitFor(t, 30*time.Second, "ship-1 closes 5 windows and raises its alarm", func() bool {
		n, alarm, _ := a.driftStatus().windows("fashion")
		return n == 5 && alarm
	})
	if st := a.driftStatus(); st.Outbox.Records < 3 {
		t.Errorf("outbox holds %d records while cut off, want the 3 drifted windows", st.Outbox.Records)
	}
	agentMetrics := scrape(t, nil, "http://"+serve+"/metrics")
	if v := metricValue(agentMetrics, `outpost_drift_alarm{deployment="fashion",version="1.0.0"}`); v != 1 {
		t.Errorf("agent metrics: outpost_drift_alarm = %v, want 1", v)
	}

	// kill -9 while cut off; the restarted agent keeps monitoring, offline.
	a.kill()
	a.start()
	testenv.WaitFor(t, 30*time.Second, "ship-1 monitoring again", func() bool {
		_, _, ok := a.driftStatus().windows("fashion")
		return ok
	})
	infer(t, serve, imageRequests(t, 0, 200, 0.5))
	testenv.WaitFor(t, 30*time.Second, "ship-1 closes a drifted window after the restart", func() bool {
		n, alarm, _ := a.driftStatus().windows("fashion")
		return n == 1 && alarm
	})
	if n, alarm := hubWindows(); n != 2 || alarm {
		t.Fatalf("the hub knew of %d windows, alarm %v, while ship-1 was cut off", n, alarm)
	}
	if f, _ := rc.firing("fashion", "ship-1"); f != 0 {
		t.Fatalf("%d alerts while the hub knew of no drift", f)
	}

	// The link returns: each of the 4 windows reaches the hub once.
	a.link.Partition(false)
	testenv.WaitFor(t, 60*time.Second, "the hub has all 6 windows", func() bool { n, _ := hubWindows(); return n == 6 })
	testenv.WaitFor(t, 30*time.Second, "one alert", func() bool { f, _ := rc.firing("fashion", "ship-1"); return f == 1 })
	d := hubDeployment(t, h, "fashion")
	if c := meta.FindStatusCondition(d.Status.Conditions, v1alpha1.ConditionDriftDetected); c == nil || c.Status != "True" || !strings.Contains(c.Message, "ship-1") {
		t.Errorf("DriftDetected = %+v", c)
	}
	var list v1alpha1.DriftWindowList
	if err := json.Unmarshal([]byte(h.mustRun("drift", "show", "fashion", "--cluster", "ship-1", "--windows", "100", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	stored := 0
	for _, w := range list.Items {
		stored += w.Windows
	}
	if stored != 6 {
		t.Errorf("the hub stores %d windows of ship-1 in %d reports, want 6", stored, len(list.Items))
	}
	hubMetrics := scrape(t, h, h.url()+"/metrics")
	sent := metricValue(hubMetrics, `outpost_hub_outbox_received_bytes_total{cluster="ship-1"}`) - before
	t.Logf("the 4 windows kept while cut off crossed the link in %.0f bytes (%.0f a window)", sent, sent/4)
	if sent <= 0 || sent > 4*4096 {
		t.Errorf("the windows kept while cut off took %.0f bytes, want a few kilobytes", sent)
	}
	if v := metricValue(hubMetrics, `outpost_hub_drift_alarm{cluster="ship-1",deployment="fashion",version="1.0.0"}`); v != 1 {
		t.Errorf("hub metrics: outpost_hub_drift_alarm = %v, want 1", v)
	}
	if out := h.mustRun("get", "modeldeployments", "-o", "wide"); !regexp.MustCompile(`ship-1 .*Drift alarm`).MatchString(out) {
		t.Errorf("get -o wide lacks the drift alarm:\n%s", out)
	}
	if out := h.mustRun("drift", "status"); !regexp.MustCompile(`fashion\s+ship-1\s+1\.0\.0\s+Drift\s+RAISED\s+.*\s6\s`).MatchString(out) {
		t.Errorf("drift status:\n%s", out)
	}
	if out := h.mustRun("drift", "show", "fashion", "--cluster", "ship-1"); !strings.Contains(out, "oldest first: __####") {
		t.Errorf("drift show:\n%s", out)
	}
	// More drifted windows keep the alarm raised: still one alert.
	infer(t, serve, imageRequests(t, 200, 200, 0.5))
	testenv.WaitFor(t, 30*time.Second, "the hub has 7 windows", func() bool { n, _ := hubWindows(); return n == 7 })
	testenv.WaitFor(t, 10*time.Second, "the alert queue empty", func() bool {
		return strings.Contains(scrape(t, h, h.url()+"/metrics"), "\noutpost_hub_alerts_queued 0\n")
	})
	if f, all := rc.firing("fashion", "ship-1"); f != 1 || all != 1 {
		t.Errorf("%d firing alerts of %d messages, want exactly 1", f, all)
	}

	// The labels stayed at the edge, across kill -9: the version's accuracy on them.
	agentMetrics = scrape(t, nil, "http://"+serve+"/metrics")
	if v := metricValue(agentMetrics, `outpost_feedback_labelled_samples{deployment="fashion",version="1.0.0"}`); v != 50 {
		t.Errorf("agent metrics after the restart: outpost_feedback_labelled_samples = %v, want 50", v)
	}
	if v := metricValue(agentMetrics, `outpost_feedback_correct_samples{deployment="fashion",version="1.0.0"}`); v < 35 || v > 50 {
		t.Errorf("agent metrics: outpost_feedback_correct_samples = %v of 50, want the MLP's 80-odd percent", v)
	}

	t.Run("promtool", func(t *testing.T) {
		promtool := testenv.PeerEnv(t, "OUTPOST_PROMTOOL", "promtool")
		for name, text := range map[string]string{"agent": scrape(t, nil, "http://"+serve+"/metrics"), "hub": hubMetrics} {
			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = strings.NewReader(text)
			if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Errorf("promtool check metrics on the %s's /metrics: %v\n%s", name, err, out)
			}
		}
	})
}
