package hub

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/store"
	"outpost.dev/outpost/internal/testenv"
)

// receiver is an alert webhook receiver that refuses deliveries while fail
// is above zero, counting them down.
type receiver struct {
	mu       sync.Mutex
	fail     int
	attempts int
	bodies   [][]byte         // every attempt's body
	got      []WebhookMessage // the deliveries it took
	bad      []string         // what was wrong with a request
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.attempts++
	rc.bodies = append(rc.bodies, b)
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.URL.Query().Get("token") != "s3cret" {
		rc.bad = append(rc.bad, r.Method+" "+r.URL.String()+" "+r.Header.Get("Content-Type"))
	}
	if rc.fail > 0 {
		rc.fail--
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	var m WebhookMessage
	if err := json.Unmarshal(b, &m); err != nil {
		rc.bad = append(rc.bad, err.Error())
	}
	rc.got = append(rc.got, m)
}

func (rc *receiver) state() (attempts int, got []WebhookMessage, bodies [][]byte, bad []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.attempts, slices.Clone(rc.got), slices.Clone(rc.bodies), slices.Clone(rc.bad)
}

func (rc *receiver) setFail(n int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.fail = n
}

func (rc *receiver) waitAttempts(t *testing.T, n int) {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, "alert delivery attempts", func() bool { a, _, _, _ := rc.state(); return a >= n })
}

func (rc *receiver) waitDelivered(t *testing.T, n int) []WebhookMessage {
	t.Helper()
	testenv.WaitFor(t, 10*time.Second, "alerts delivered", func() bool { _, got, _, _ := rc.state(); return len(got) >= n })
	_, got, _, bad := rc.state()
	if len(bad) > 0 {
		t.Errorf("bad requests: %v", bad)
	}
	return got
}

// newReceiver serves rc and returns its webhook URL.
func newReceiver(t *testing.T, rc *receiver) string {
	t.Helper()
	ts := httptest.NewServer(rc)
	t.Cleanup(ts.Close)
	return ts.URL + "/hook?token=s3cret"
}

func queued(t *testing.T, db *store.DB) int64 {
	t.Helper()
	var n int64
	err := db.View(t.Context(), func(tx *store.Tx) error {
		var err error
		n, err = tx.QueuedAlerts(t.Context())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// retryAfterFailure waits for the n-th attempt and for the hub to wait for
// the next one, and moves the hub's clock past the longest backoff.
func retryAfterFailure(t *testing.T, rc *receiver, clk *clock.Fake, n int) {
	t.Helper()
	rc.waitAttempts(t, n)
	if err := clk.WaitPending(t.Context(), 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(alertRetryMax)
}

// A raised alarm fires an alert, retried until the receiver takes it; the
// alarm cleared resolves it, with the same labels and fingerprint.
func TestDriftAlertsDelivered(t *testing.T) {
	rc := &receiver{fail: 2}
	hook := newReceiver(t, rc)
	e, creds := newDriftEnv(t, func(cfg *Config) {
		cfg.AlertWebhooks = []string{hook}
		cfg.ExternalURL = "https://hub.example:8443/"
	})
	e.applyAsAdmin("modeldeployments", "fashion", monitoredYAML("fashion", true))
	src := newDriftSource(t, "fashion", "1.2.0")
	e.send(creds["edge-1"], "edge-1", driftRecord(t, src.window(0)))
	if n := queued(t, e.db); n != 0 {
		t.Fatalf("%d alerts queued for a clean window", n)
	}
	raised := src.window(1)
	e.send(creds["edge-1"], "edge-1", driftRecord(t, raised))
	// Two refusals, each retried once the backoff passes on the hub's clock.
	retryAfterFailure(t, rc, e.clock, 1)
	retryAfterFailure(t, rc, e.clock, 2)
	got := rc.waitDelivered(t, 1)
	testenv.WaitFor(t, 10*time.Second, "the queue to empty", func() bool { return queued(t, e.db) == 0 })
	attempts, _, bodies, _ := rc.state()
	if attempts != 3 || string(bodies[0]) != string(bodies[2]) || string(bodies[1]) != string(bodies[2]) {
		t.Errorf("%d attempts; every attempt must send the same message", attempts)
	}
	firing := got[0]
	a := firing.Alerts[0]
	wantLabels := map[string]string{"alertname": "ModelDrift", "deployment": "fashion", "cluster": "edge-1", "model": "resnet", "version": "1.2.0", "severity": "warning"}
	if firing.Version != "4" || firing.Status != AlertFiring || firing.Receiver != "outpost" || len(firing.Alerts) != 1 ||
		!maps.Equal(firing.CommonLabels, wantLabels) || !maps.Equal(a.Labels, wantLabels) || a.Status != AlertFiring ||
		!maps.Equal(firing.GroupLabels, map[string]string{"alertname": "ModelDrift", "deployment": "fashion", "cluster": "edge-1"}) ||
		firing.GroupKey != `{}:{alertname="ModelDrift", cluster="edge-1", deployment="fashion"}` || firing.ExternalURL != "https://hub.example:8443/" {
		t.Errorf("firing message %+v", firing)
	}
	if !a.StartsAt.Equal(raised.AlarmChanged.Truncate(time.Second)) || !a.EndsAt.IsZero() || len(a.Fingerprint) != 16 ||
		a.GeneratorURL != "https://hub.example:8443/apis/ml.outpost.dev/v1alpha1/modeldeployments/fashion/drift?cluster=edge-1" ||
		!strings.Contains(a.Annotations["summary"], "deployment fashion on cluster edge-1") || !strings.Contains(a.Annotations["description"], "in[0]") {
		t.Errorf("firing alert %+v", a)
	}

	// Three clean windows clear the alarm (the default policy): resolved.
	for range 3 {
		e.send(creds["edge-1"], "edge-1", driftRecord(t, src.window(0)))
	}
	got = rc.waitDelivered(t, 2)
	r := got[1].Alerts[0]
	if got[1].Status != AlertResolved || r.Status != AlertResolved || !maps.Equal(r.Labels, a.Labels) || r.Fingerprint != a.Fingerprint ||
		!r.StartsAt.Equal(a.StartsAt) || !r.EndsAt.After(r.StartsAt) || !strings.Contains(r.Annotations["description"], "resolved") {
		t.Errorf("resolved alert %+v, fired %+v", r, a)
	}
	if attempts, _, _, _ := rc.state(); attempts != 4 {
		t.Errorf("%d attempts in all, want 4", attempts)
	}
}

// Alerts are sent only for deployments that ask for them, only by hubs
// with webhooks.
func TestDriftAlertsOnlyWhenAsked(t *testing.T) {
	for _, tt := range []struct {
		name     string
		alert    bool
		webhooks bool
	}{
		{"deployment without alert", false, true},
		{"hub without webhooks", true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rc := &receiver{}
			hook := newReceiver(t, rc)
			e, creds := newDriftEnv(t, func(cfg *Config) {
				if tt.webhooks {
					cfg.AlertWebhooks = []string{hook}
				}
			})
			e.applyAsAdmin("modeldeployments", "fashion", monitoredYAML("fashion", tt.alert))
			rep := newDriftSource(t, "fashion", "1.2.0").window(1)
			e.send(creds["edge-1"], "edge-1", driftRecord(t, rep))
			// Alerts are queued in the transaction that stores the window: none now is none ever.
			if !e.driftRow("fashion", "edge-1").Alarm || queued(t, e.db) != 0 {
				t.Errorf("alarm %v, %d alerts queued", e.driftRow("fashion", "edge-1").Alarm, queued(t, e.db))
			}
		})
	}
}

// An alarm resolves when the cluster serves another version (whose own
// alarm may fire), when the deployment no longer selects the cluster, and
// when the deployment is deleted.
func TestDriftAlertsResolvedByChanges(t *testing.T) {
	rc := &receiver{}
	e, creds := newDriftEnv(t, func(cfg *Config) { cfg.AlertWebhooks = []string{newReceiver(t, rc)} })
	e.applyAsAdmin("modeldeployments", "fashion", monitoredYAML("fashion", true))
	e.send(creds["edge-1"], "edge-1", driftRecord(t, newDriftSource(t, "fashion", "1.2.0").window(1)))
	e.send(creds["edge-2"], "edge-2", driftRecord(t, newDriftSource(t, "fashion", "1.2.0").window(1)))
	rc.waitDelivered(t, 2)
	next := newDriftSource(t, "fashion", "1.3.0")
	next.t0 = next.t0.Add(time.Hour)
	e.send(creds["edge-1"], "edge-1", driftRecord(t, next.window(1)))
	rc.waitDelivered(t, 4)
	e.join(e.createToken(3600, "").Token, "edge-1", map[string]string{"region": "gone"})
	rc.waitDelivered(t, 5)
	e.do(http.MethodDelete, "/modeldeployments/fashion", e.admin, "", nil)
	got := rc.waitDelivered(t, 6)
	var seen []string
	for _, m := range got {
		a := m.Alerts[0]
		seen = append(seen, a.Status+" "+a.Labels["cluster"]+" "+a.Labels["version"])
	}
	want := []string{
		"firing edge-1 1.2.0", "firing edge-2 1.2.0",
		"resolved edge-1 1.2.0", "firing edge-1 1.3.0", // another version
		"resolved edge-1 1.3.0", // edge-1 left
		"resolved edge-2 1.2.0", // the deployment was deleted
	}
	if !slices.Equal(seen, want) {
		t.Errorf("alerts:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
	for i, why := range map[int]string{2: "serves version 1.3.0", 4: "no longer selects", 5: "deleted"} {
		if d := got[i].Alerts[0].Annotations["description"]; !strings.Contains(d, why) {
			t.Errorf("alert %d: description %q lacks %q", i, d, why)
		}
	}
}

// Alerts wait in the store: an alert its receiver refused before the hub
// stopped is delivered by the next hub on the same store.
func TestDriftAlertsSurviveRestart(t *testing.T) {
	db, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rc := &receiver{fail: 1 << 30}
	clk := clock.NewFake(time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC))
	cfg := Config{DB: db, Models: newFakeModels(), Clock: clk, Logger: slog.New(slog.DiscardHandler), OfflineAfter: -1,
		AlertWebhooks: []string{newReceiver(t, rc)}}
	ctx1, stop := context.WithCancel(t.Context())
	srv, err := New(ctx1, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "edge-1", Labels: map[string]string{"region": "eu"}}}
	d := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "fashion"}, Spec: v1alpha1.ModelDeploymentSpec{
		Model:            v1alpha1.ModelRef{Name: "resnet", Version: "1.2.0"},
		ClusterSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"region": "eu"}}},
		Monitoring:       &v1alpha1.Monitoring{Alert: true},
	}}
	for _, o := range []v1alpha1.Object{c, d} {
		o.Default()
		if _, _, err := srv.apply(t.Context(), o); err != nil {
			t.Fatal(err)
		}
	}
	rec := driftRecord(t, newDriftSource(t, "fashion", "1.2.0").window(1))
	if resp, err := srv.ApplyOutbox(t.Context(), "edge-1", []v1alpha1.OutboxRecord{rec}); err != nil || resp.Results[0].Outcome != v1alpha1.OutboxApplied {
		t.Fatalf("ApplyOutbox = %+v, %v", resp, err)
	}
	rc.waitAttempts(t, 1)
	stop()
	<-srv.alertsDone
	if n := queued(t, db); n != 1 {
		t.Fatalf("%d alerts queued when the hub stopped, want 1", n)
	}

	rc.setFail(0)
	if _, err := New(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	// The first hub may have stopped before it recorded the refusal: then
	// the alert is due at once, else after a backoff on the clock.
	testenv.WaitFor(t, 10*time.Second, "the alert delivered or its retry waiting", func() bool {
		_, got, _, _ := rc.state()
		return len(got) > 0 || clk.Pending() > 0
	})
	clk.Advance(alertRetryMax)
	got := rc.waitDelivered(t, 1)
	_, _, bodies, _ := rc.state()
	if got[0].Status != AlertFiring || string(bodies[0]) != string(bodies[len(bodies)-1]) {
		t.Errorf("after the restart: %+v", got[0])
	}
	testenv.WaitFor(t, 10*time.Second, "the queue to empty", func() bool { return queued(t, db) == 0 })
}

func TestAlertWebhooksChecked(t *testing.T) {
	db, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, u := range []string{"ftp://host/x", "/relative", "http://", "http://[::1", "hooks.example"} {
		_, err := New(t.Context(), Config{DB: db, AlertWebhooks: []string{"https://ok.example/hook", u}, Logger: slog.New(slog.DiscardHandler)})
		if err == nil || !strings.Contains(err.Error(), "alert webhook") {
			t.Errorf("webhook %q: %v, want refused", u, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://user:pw@hooks.example/a?token=s3cret": "https://hooks.example/a",
		"http://h/x":  "http://h/x",
		"http://[::1": "(unparsable URL)",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// The message is Alertmanager's webhook message, field for field.
func TestWebhookMessageFields(t *testing.T) {
	s := &Server{cfg: Config{ExternalURL: "https://hub"}}
	d := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "d"}, Spec: v1alpha1.ModelDeploymentSpec{Model: v1alpha1.ModelRef{Name: "m"}}}
	m := s.alertMessage(driftChange{d: d, cluster: "c"}, AlertFiring, "1.0.0", time.Unix(100, 0), time.Time{}, "why")
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(mustJSON(t, m), &fields); err != nil {
		t.Fatal(err)
	}
	want := []string{"alerts", "commonAnnotations", "commonLabels", "externalURL", "groupKey", "groupLabels", "receiver", "status", "truncatedAlerts", "version"}
	if got := slices.Sorted(maps.Keys(fields)); !slices.Equal(got, want) {
		t.Errorf("message fields %v, want %v", got, want)
	}
	var alerts []map[string]json.RawMessage
	if err := json.Unmarshal(fields["alerts"], &alerts); err != nil {
		t.Fatal(err)
	}
	want = []string{"annotations", "endsAt", "fingerprint", "generatorURL", "labels", "startsAt", "status"}
	if got := slices.Sorted(maps.Keys(alerts[0])); !slices.Equal(got, want) {
		t.Errorf("alert fields %v, want %v", got, want)
	}
	if string(alerts[0]["endsAt"]) != `"0001-01-01T00:00:00Z"` || string(alerts[0]["startsAt"]) != `"1970-01-01T00:01:40Z"` {
		t.Errorf("times %s %s", alerts[0]["startsAt"], alerts[0]["endsAt"])
	}
	// The fingerprint is the labels', whatever else changes.
	other := s.alertMessage(driftChange{d: d, cluster: "c"}, AlertResolved, "1.0.0", time.Unix(5, 0), time.Unix(9, 0), "other")
	third := s.alertMessage(driftChange{d: d, cluster: "c2"}, AlertFiring, "1.0.0", time.Unix(100, 0), time.Time{}, "why")
	if fp := m.Alerts[0].Fingerprint; other.Alerts[0].Fingerprint != fp || third.Alerts[0].Fingerprint == fp {
		t.Errorf("fingerprints %s %s %s", fp, other.Alerts[0].Fingerprint, third.Alerts[0].Fingerprint)
	}
}
