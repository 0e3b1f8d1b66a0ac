package hub

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/store"
)

// driftSource makes the drift window reports an agent would send about a
// deployment: windows of a model of four numeric inputs and three classes,
// detected against a reference with drift.Detect, the alarm stepped by the
// default policy's hysteresis.
type driftSource struct {
	t                   *testing.T
	deployment, version string
	f                   *drift.Featurizer
	ref                 *drift.Profile
	rng                 *rand.Rand
	alarm               drift.Alarm
	next                uint64
	t0                  time.Time
}

func newDriftSource(t *testing.T, deployment, version string) *driftSource {
	t.Helper()
	f, err := drift.NewFeaturizer(drift.FeaturizerConfig{InputShape: []int{4}, OutputShape: []int{3}, Outputs: drift.OutputsLogits})
	if err != nil {
		t.Fatal(err)
	}
	s := &driftSource{t: t, deployment: deployment, version: version, f: f, rng: rand.New(rand.NewPCG(1, 2)),
		t0: time.Date(2031, 5, 6, 7, 0, 0, 123456789, time.UTC)}
	data := s.batch(2000, 0)
	draft := f.NewProfile(0)
	if err := f.Observe(draft, data); err != nil {
		t.Fatal(err)
	}
	if s.ref, err = draft.Binned(10, 1); err != nil {
		t.Fatal(err)
	}
	if err := f.Observe(s.ref, data); err != nil {
		t.Fatal(err)
	}
	return s
}

// batch returns n samples whose first input is shifted by shift standard deviations.
func (s *driftSource) batch(n int, shift float64) drift.Batch {
	b := drift.Batch{Input: make([]float32, 4*n), InputShape: []int{n, 4}, Output: make([]float32, 3*n), OutputShape: []int{n, 3}}
	for i := range n {
		for j := range 4 {
			b.Input[4*i+j] = float32(s.rng.NormFloat64())
		}
		b.Input[4*i] += float32(shift)
		for c := range 3 {
			b.Output[3*i+c] = float32(s.rng.NormFloat64())
		}
	}
	return b
}

// window returns the report of the next window, a minute long, of 300
// samples shifted by shift.
func (s *driftSource) window(shift float64) drift.WindowReport {
	s.t.Helper()
	win := s.ref.Empty(s.next)
	if err := s.f.Observe(win, s.batch(300, shift)); err != nil {
		s.t.Fatal(err)
	}
	res, err := drift.Detect(s.ref, win, drift.DefaultPolicy())
	if err != nil {
		s.t.Fatal(err)
	}
	start := s.t0.Add(time.Duration(s.next) * time.Minute)
	w := drift.Window{First: s.next, Last: s.next, Start: start, End: start.Add(time.Minute - time.Millisecond), Profile: win}
	s.next++
	s.alarm = drift.DefaultPolicy().Hysteresis.Step(s.alarm, res.Verdict, w.End)
	return drift.NewWindowReport(s.deployment, "resnet", s.version, "sha256:ab", w, res, s.alarm)
}

func driftRecord(t *testing.T, rep drift.WindowReport) v1alpha1.OutboxRecord {
	t.Helper()
	return v1alpha1.OutboxRecord{Key: rep.Key(), Kind: drift.RecordKind, Payload: mustJSON(t, rep)}
}

// monitoredYAML is a deployment of resnet 1.2.0 to the clusters of region eu, monitored.
func monitoredYAML(name string, alert bool) string {
	return fmt.Sprintf(`apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata: {name: %s}
spec:
  model: {name: resnet, version: "1.2.0"}
  clusterSelectors: [{matchLabels: {region: eu}}]
  monitoring: {alert: %v}
`, name, alert)
}

// newDriftEnv is a hub with clusters edge-1 and edge-2 (region eu) and
// edge-3 (region us) joined, and the monitored deployment "fashion".
func newDriftEnv(t testing.TB, mutate func(*Config)) (e *agentEnv, creds map[string]string) {
	t.Helper()
	e = newAgentEnv(t, mutate)
	tok := e.createToken(3600, "").Token
	creds = map[string]string{}
	for _, c := range []struct{ name, region string }{{"edge-1", "eu"}, {"edge-2", "eu"}, {"edge-3", "us"}} {
		creds[c.name] = e.mustJoin(tok, c.name, map[string]string{"region": c.region})
	}
	e.applyAsAdmin("modeldeployments", "fashion", monitoredYAML("fashion", false))
	return e, creds
}

// send posts records as cluster's agent, zstd-compressed as agents send
// them, and returns the outcomes.
func (e *agentEnv) send(cred, cluster string, records ...v1alpha1.OutboxRecord) []v1alpha1.OutboxResult {
	e.t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer enc.Close()
	r := e.do(http.MethodPost, "/clusters/"+cluster+"/outbox", cred, "application/json",
		enc.EncodeAll(mustJSON(e.t, batch(records...)), nil), "Content-Encoding", "zstd")
	if r.code != http.StatusOK {
		e.t.Fatalf("outbox = %d %s", r.code, r.body)
	}
	return decodeJSON[v1alpha1.OutboxResponse](e.t, r.body).Results
}

func (e *agentEnv) driftRow(deployment, cluster string) *v1alpha1.DriftStatus {
	e.t.Helper()
	d := e.deployment(deployment)
	i := rowIndex(d, cluster)
	if i < 0 {
		e.t.Fatalf("deployment %s has no row of cluster %s", deployment, cluster)
	}
	return d.Status.Clusters[i].Drift
}

func (e *agentEnv) storedWindows(deployment, cluster string) []store.DriftWindow {
	e.t.Helper()
	ws, err := e.db.DriftWindows(e.t.Context(), deployment, cluster, 10_000)
	if err != nil {
		e.t.Fatal(err)
	}
	return ws
}

func outcomeList(results []v1alpha1.OutboxResult) string {
	var out []string
	for _, r := range results {
		out = append(out, r.Outcome)
	}
	return strings.Join(out, " ")
}

// Windows reach the status: the newest one's state, alarm and drifted
// features in the cluster's row, and DriftDetected naming the clusters
// whose alarm is raised.
func TestDriftWindowsReachStatus(t *testing.T) {
	e, creds := newDriftEnv(t, nil)
	src := newDriftSource(t, "fashion", "1.2.0")
	clean1, clean2 := src.window(0), src.window(0)
	if got := outcomeList(e.send(creds["edge-1"], "edge-1", driftRecord(t, clean1), driftRecord(t, clean2))); got != "Applied Applied" {
		t.Fatalf("outcomes %s", got)
	}
	row := e.driftRow("fashion", "edge-1")
	if row == nil || row.State != v1alpha1.DriftStateNoDrift || row.Alarm || row.Windows != 2 || row.Version != "1.2.0" ||
		!row.LastWindowEnd.Equal(&metav1.MicroTime{Time: clean2.End.Truncate(time.Microsecond)}) || len(row.DriftedFeatures) != 0 {
		t.Fatalf("after two clean windows: %+v", row)
	}
	c := meta.FindStatusCondition(e.deployment("fashion").Status.Conditions, v1alpha1.ConditionDriftDetected)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonNoDriftAlarm {
		t.Fatalf("DriftDetected after clean windows: %+v", c)
	}
	if e.driftRow("fashion", "edge-2") != nil {
		t.Error("edge-2 sent nothing but has a drift summary")
	}

	shifted := src.window(1)
	if shifted.Verdict != drift.VerdictDrift || !shifted.Alarm {
		t.Fatalf("a shift of 1σ: verdict %s, alarm %v", shifted.Verdict, shifted.Alarm)
	}
	e.send(creds["edge-1"], "edge-1", driftRecord(t, shifted))
	row = e.driftRow("fashion", "edge-1")
	if row.State != v1alpha1.DriftStateDrift || !row.Alarm || row.Windows != 3 || row.DriftedFeatureCount < 1 || row.DriftedFeatures[0] != "in[0]" ||
		row.Since == nil || !row.Since.Time.Equal(shifted.AlarmChanged.Truncate(time.Second)) {
		t.Fatalf("after a drifted window: %+v", row)
	}
	c = meta.FindStatusCondition(e.deployment("fashion").Status.Conditions, v1alpha1.ConditionDriftDetected)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonDriftAlarm || c.Message != "drift alarm raised in 1 cluster(s): edge-1" {
		t.Fatalf("DriftDetected after drift: %+v", c)
	}

	// A second cluster raises its alarm too: the condition names both.
	src2 := newDriftSource(t, "fashion", "1.2.0")
	e.send(creds["edge-2"], "edge-2", driftRecord(t, src2.window(1.5)))
	c = meta.FindStatusCondition(e.deployment("fashion").Status.Conditions, v1alpha1.ConditionDriftDetected)
	if c.Message != "drift alarm raised in 2 cluster(s): edge-1, edge-2" {
		t.Errorf("DriftDetected with two clusters: %q", c.Message)
	}

	// Clean windows clear edge-1's alarm after three (the default policy).
	for range 3 {
		e.send(creds["edge-1"], "edge-1", driftRecord(t, src.window(0)))
	}
	if row = e.driftRow("fashion", "edge-1"); row.Alarm || row.State != v1alpha1.DriftStateNoDrift || row.Windows != 6 {
		t.Errorf("after three clean windows: %+v", row)
	}
	c = meta.FindStatusCondition(e.deployment("fashion").Status.Conditions, v1alpha1.ConditionDriftDetected)
	if c.Message != "drift alarm raised in 1 cluster(s): edge-2" {
		t.Errorf("DriftDetected after edge-1 cleared: %q", c.Message)
	}

	// A new resolved version keeps what the clusters serve, their drift included.
	e.models.set("resnet", "1.2.1", true)
	e.applyAsAdmin("modeldeployments", "fashion", strings.Replace(monitoredYAML("fashion", false), `"1.2.0"`, `"1.2.1"`, 1))
	if row := e.driftRow("fashion", "edge-2"); row == nil || !row.Alarm {
		t.Errorf("drift of edge-2 after a new version was resolved: %+v", row)
	}
	// A cluster no longer selected takes its alarm with its row.
	e.join(e.createToken(3600, "").Token, "edge-2", map[string]string{"region": "gone"})
	c = meta.FindStatusCondition(e.deployment("fashion").Status.Conditions, v1alpha1.ConditionDriftDetected)
	if c == nil || c.Status != metav1.ConditionFalse {
		t.Errorf("DriftDetected once edge-2 left: %+v", c)
	}
}

// Every window reaches the hub once, however often and in whatever batches
// it is sent: the hub counts and stores each once.
func TestDriftWindowsExactlyOnce(t *testing.T) {
	e, creds := newDriftEnv(t, nil)
	src := newDriftSource(t, "fashion", "1.2.0")
	var recs []v1alpha1.OutboxRecord
	for i := range 30 {
		recs = append(recs, driftRecord(t, src.window(float64(i%7)/7)))
	}
	// Overlapping batches, each sent twice (an answer lost), in an order
	// that sends later windows before earlier ones.
	for _, span := range [][2]int{{10, 20}, {0, 12}, {5, 30}, {25, 30}} {
		for range 2 {
			e.send(creds["edge-1"], "edge-1", recs[span[0]:span[1]]...)
		}
	}
	if n := len(e.storedWindows("fashion", "edge-1")); n != 30 {
		t.Errorf("the hub stored %d windows, want 30", n)
	}
	row := e.driftRow("fashion", "edge-1")
	last := src.next - 1
	if row.Windows != 30 || !row.LastWindowEnd.Time.Equal(src.t0.Add(time.Duration(last+1)*time.Minute-time.Millisecond).Truncate(time.Microsecond)) {
		t.Errorf("row counts %d windows up to %v, want 30 up to window %d", row.Windows, row.LastWindowEnd, last)
	}
	err := e.db.View(t.Context(), func(tx *store.Tx) error {
		counts, err := tx.OutboxCounts(t.Context(), "edge-1")
		if err == nil && counts[drift.RecordKind] != 30 {
			t.Errorf("outbox applied %v, want 30 drift windows", counts)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A late window, or windows the agent merged to stay within its budget,
// older than the newest one shown, are stored and counted but do not
// replace it; a merged report says how many windows it covers.
func TestDriftLateAndMergedWindows(t *testing.T) {
	e, creds := newDriftEnv(t, nil)
	src := newDriftSource(t, "fashion", "1.2.0")
	w0, w1, w2, w3 := src.window(2), src.window(2), src.window(0), src.window(0)
	merged, err := drift.MergeReports(mustJSON(t, w0), mustJSON(t, w1))
	if err != nil {
		t.Fatal(err)
	}
	mrep, err := drift.DecodeWindowReport(merged)
	if err != nil {
		t.Fatal(err)
	}
	e.send(creds["edge-1"], "edge-1", driftRecord(t, w3))
	before := e.driftRow("fashion", "edge-1")
	// w2 and the merge of w0 and w1 arrive after w3.
	e.send(creds["edge-1"], "edge-1", driftRecord(t, w2), v1alpha1.OutboxRecord{Key: mrep.Key(), Kind: drift.RecordKind, Payload: merged})
	row := e.driftRow("fashion", "edge-1")
	if row.State != before.State || row.Alarm != before.Alarm || !row.LastWindowEnd.Equal(&before.LastWindowEnd) || row.Windows != 4 {
		t.Errorf("late windows changed the newest state: before %+v, after %+v", before, row)
	}
	ws := e.storedWindows("fashion", "edge-1")
	if len(ws) != 3 || ws[0].First != 3 || ws[1].First != 2 || ws[2].First != 0 || ws[2].Last != 1 || ws[2].Windows != 2 || ws[2].Verdict != "drift" {
		t.Errorf("stored windows %+v", ws)
	}
	// A late window of another version is stored, not counted in the row.
	old := newDriftSource(t, "fashion", "1.1.0").window(0)
	e.send(creds["edge-1"], "edge-1", driftRecord(t, old))
	if row := e.driftRow("fashion", "edge-1"); row.Windows != 4 || row.Version != "1.2.0" {
		t.Errorf("a late window of 1.1.0 changed the row: %+v", row)
	}
}

// Bad records are refused, saying why, and change nothing.
func TestDriftWindowRefusals(t *testing.T) {
	e, creds := newDriftEnv(t, nil)
	good := newDriftSource(t, "fashion", "1.2.0").window(0)
	rec := func(key string, payload []byte) v1alpha1.OutboxRecord {
		return v1alpha1.OutboxRecord{Key: key, Kind: drift.RecordKind, Payload: payload}
	}
	other := good
	other.Deployment = "ghost"
	big := good
	big.Reason = strings.Repeat("x", MaxDriftReportBytes)
	rev := e.deployment("fashion").ResourceVersion
	for _, tt := range []struct {
		name, cluster string
		rec           v1alpha1.OutboxRecord
		want          string
	}{
		{"malformed", "edge-1", rec("a", []byte(`{"deployment":"fashion"}`)), "refused: drift report: deployment, model and version are required"},
		{"not json", "edge-1", rec("b", []byte(`[1,2]`)), "refused: drift report: json"},
		{"bad verdict", "edge-1", rec("c", []byte(`{"deployment":"fashion","model":"resnet","version":"1","windows":1,"verdict":"maybe"}`)), `unknown verdict "maybe"`},
		{"unknown deployment", "edge-1", rec("d", mustJSON(t, other)), `deployment "ghost": no such ModelDeployment`},
		{"not selected", "edge-3", rec("e", mustJSON(t, good)), `the deployment does not select cluster "edge-3"`},
		{"oversized", "edge-1", rec("f", mustJSON(t, big)), "bytes, at most 4194304"},
	} {
		res := e.send(creds[tt.cluster], tt.cluster, tt.rec)
		if res[0].Outcome != v1alpha1.OutboxRefused || !strings.Contains(res[0].Message, tt.want) {
			t.Errorf("%s: %+v, want refused with %q", tt.name, res[0], tt.want)
		}
	}
	if ws := e.storedWindows("fashion", ""); len(ws) != 0 {
		t.Errorf("refused records stored %d windows", len(ws))
	}
	if d := e.deployment("fashion"); d.ResourceVersion != rev {
		t.Errorf("refused records changed the deployment: resourceVersion %s, was %s", d.ResourceVersion, rev)
	}
	// The good record still applies.
	if res := e.send(creds["edge-1"], "edge-1", driftRecord(t, good)); res[0].Outcome != v1alpha1.OutboxApplied {
		t.Errorf("good record: %+v", res[0])
	}
}

// GET modeldeployments/{name}/drift answers the stored windows, newest
// first, to the admin only.
func TestDriftWindowsEndpoint(t *testing.T) {
	e, creds := newDriftEnv(t, nil)
	src1, src2 := newDriftSource(t, "fashion", "1.2.0"), newDriftSource(t, "fashion", "1.2.0")
	var reps []drift.WindowReport
	for range 5 {
		rep := src1.window(0)
		reps = append(reps, rep)
		e.send(creds["edge-1"], "edge-1", driftRecord(t, rep))
	}
	src2.t0 = src2.t0.Add(-30 * time.Second) // ends before all of edge-1's
	e.send(creds["edge-2"], "edge-2", driftRecord(t, src2.window(0)))

	get := func(query, token string) response {
		return e.do(http.MethodGet, "/modeldeployments/fashion/drift"+query, token, "", nil)
	}
	r := get("?cluster=edge-1&limit=3", e.admin)
	l := decodeJSON[v1alpha1.DriftWindowList](t, r.body)
	if r.code != http.StatusOK || l.Kind != v1alpha1.KindDriftWindowList || l.Deployment != "fashion" || l.Cluster != "edge-1" || len(l.Items) != 3 {
		t.Fatalf("GET drift = %d %s", r.code, r.body)
	}
	for i, w := range l.Items {
		want := reps[4-i]
		got, err := drift.DecodeWindowReport(w.Report)
		if err != nil || got.Key() != want.Key() || w.First != want.First || w.Cluster != "edge-1" || w.Version != "1.2.0" ||
			w.Samples != 300 || w.Verdict != string(want.Verdict) || w.Windows != 1 || !w.End.Equal(&metav1.Time{Time: want.End.Truncate(time.Second)}) {
			t.Errorf("item %d: %+v (%v), want window %d", i, w, err, want.First)
		}
	}
	if l := decodeJSON[v1alpha1.DriftWindowList](t, get("", e.admin).body); len(l.Items) != 6 || l.Items[0].Cluster != "edge-1" || l.Items[5].Cluster != "edge-2" {
		t.Errorf("every cluster: %d items", len(l.Items))
	}
	if l := decodeJSON[v1alpha1.DriftWindowList](t, get("?cluster=edge-3", e.admin).body); l.Items == nil || len(l.Items) != 0 {
		t.Errorf("a cluster without windows: %+v", l)
	}
	for _, tt := range []struct {
		path, token string
		code        int
		want        string
	}{
		{"/modeldeployments/fashion/drift?limit=0", e.admin, http.StatusBadRequest, "limit"},
		{"/modeldeployments/fashion/drift?limit=1001", e.admin, http.StatusBadRequest, "between 1 and 1000"},
		{"/modeldeployments/fashion/drift?limit=x", e.admin, http.StatusBadRequest, "limit"},
		{"/modeldeployments/ghost/drift", e.admin, http.StatusNotFound, "ghost"},
		{"/modeldeployments/fashion/drift", creds["edge-1"], http.StatusForbidden, "may not"},
		{"/modeldeployments/fashion/drift", "", http.StatusUnauthorized, ""},
	} {
		r := e.do(http.MethodGet, tt.path, tt.token, "", nil)
		if r.code != tt.code || !strings.Contains(string(r.body), tt.want) {
			t.Errorf("GET %s = %d %s, want %d and %q", tt.path, r.code, r.body, tt.code, tt.want)
		}
	}

	// Deleting the deployment forgets its windows; deleting a cluster, that cluster's.
	e.do(http.MethodDelete, "/clusters/edge-2", e.admin, "", nil)
	if ws := e.storedWindows("fashion", ""); len(ws) != 5 {
		t.Errorf("after deleting edge-2: %d windows, want edge-1's 5", len(ws))
	}
	e.do(http.MethodDelete, "/modeldeployments/fashion", e.admin, "", nil)
	if ws := e.storedWindows("fashion", ""); len(ws) != 0 {
		t.Errorf("after deleting the deployment: %d windows", len(ws))
	}
}

func TestFoldDrift(t *testing.T) {
	t0 := time.Date(2031, 5, 6, 7, 0, 0, 500_000_000, time.UTC)
	mt := func(d time.Duration) metav1.MicroTime { return metav1.NewMicroTime(t0.Add(d)) }
	tm := func(d time.Duration) *metav1.Time { return &metav1.Time{Time: t0.Add(d).Truncate(time.Second)} }
	rep := func(version string, end time.Duration, v drift.Verdict, alarm bool, changed time.Duration, drifted ...string) drift.WindowReport {
		r := drift.WindowReport{Deployment: "d", Model: "m", Version: version, Windows: 1, Start: t0.Add(end - time.Minute), End: t0.Add(end), Verdict: v, Alarm: alarm}
		if changed != 0 {
			r.AlarmChanged = t0.Add(changed)
		}
		for _, n := range drifted {
			r.Features = append(r.Features, drift.FeatureReport{Name: n, Drifted: true}, drift.FeatureReport{Name: n + ".ok"})
		}
		return r
	}
	shown := &v1alpha1.DriftStatus{Version: "1", State: v1alpha1.DriftStateDrift, Alarm: true, Since: tm(-time.Hour), LastWindowEnd: mt(0), Windows: 7}
	for _, tt := range []struct {
		name   string
		old    *v1alpha1.DriftStatus
		rep    drift.WindowReport
		want   v1alpha1.DriftStatus
		newest bool
	}{
		{"first", nil, rep("1", 0, drift.VerdictNoDrift, false, 0),
			v1alpha1.DriftStatus{Version: "1", State: v1alpha1.DriftStateNoDrift, Since: tm(0), LastWindowEnd: mt(0), Windows: 1}, true},
		{"newer, same alarm", shown, rep("1", time.Minute, drift.VerdictNoDrift, true, 0),
			v1alpha1.DriftStatus{Version: "1", State: v1alpha1.DriftStateNoDrift, Alarm: true, Since: tm(-time.Hour), LastWindowEnd: mt(time.Minute), Windows: 8}, true},
		{"newer, alarm changed by the agent", shown, rep("1", time.Minute, drift.VerdictNoDrift, false, 50*time.Second),
			v1alpha1.DriftStatus{Version: "1", State: v1alpha1.DriftStateNoDrift, Since: tm(50 * time.Second), LastWindowEnd: mt(time.Minute), Windows: 8}, true},
		{"newer, alarm changed without a time", shown, rep("1", time.Minute, drift.VerdictNoDrift, false, 0),
			v1alpha1.DriftStatus{Version: "1", State: v1alpha1.DriftStateNoDrift, Since: tm(time.Minute), LastWindowEnd: mt(time.Minute), Windows: 8}, true},
		{"newer, another version", shown, rep("2", time.Minute, drift.VerdictInsufficient, false, 0),
			v1alpha1.DriftStatus{Version: "2", State: v1alpha1.DriftStateInsufficientData, Since: tm(time.Minute), LastWindowEnd: mt(time.Minute), Windows: 1}, true},
		{"a microsecond newer", shown, rep("1", time.Microsecond, drift.VerdictDrift, true, 0),
			v1alpha1.DriftStatus{Version: "1", State: v1alpha1.DriftStateDrift, Alarm: true, Since: tm(-time.Hour), LastWindowEnd: mt(time.Microsecond), Windows: 8}, true},
		{"as old", shown, rep("1", 0, drift.VerdictNoDrift, false, 0), *withWindows(shown, 8), false},
		{"older, same version", shown, rep("1", -time.Minute, drift.VerdictNoDrift, false, 0), *withWindows(shown, 8), false},
		{"older, another version", shown, rep("0", -time.Minute, drift.VerdictNoDrift, false, 0), *shown, false},
		{"drifted features", nil, rep("1", 0, drift.VerdictDrift, true, 0, "a", "b", "c", "d", "e", "f", "g"),
			v1alpha1.DriftStatus{Version: "1", State: v1alpha1.DriftStateDrift, Alarm: true, Since: tm(0), LastWindowEnd: mt(0), Windows: 1,
				DriftedFeatures: []string{"a", "b", "c", "d", "e"}, DriftedFeatureCount: 7}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var before []byte
			if tt.old != nil {
				before = mustJSON(t, tt.old)
			}
			got, newest := foldDrift(tt.old, tt.rep)
			if g, w := mustJSON(t, got), mustJSON(t, tt.want); string(g) != string(w) || newest != tt.newest {
				t.Errorf("foldDrift = %s, %v\nwant %s, %v", g, newest, w, tt.newest)
			}
			if tt.old != nil && string(mustJSON(t, tt.old)) != string(before) {
				t.Error("foldDrift changed the old status")
			}
		})
	}
}

func withWindows(d *v1alpha1.DriftStatus, n int64) *v1alpha1.DriftStatus {
	d = d.DeepCopy()
	d.Windows = n
	return d
}

// The hub applies drift windows beside the caller's kinds of records, and a
// caller's handler of a kind replaces the hub's.
func TestRecordHandlersMerge(t *testing.T) {
	var calls []string
	stub := func(kind string) RecordHandler {
		return func(_ context.Context, _ *store.Tx, cluster string, rec v1alpha1.OutboxRecord) error {
			calls = append(calls, kind+":"+rec.Key)
			return nil
		}
	}
	e, creds := newDriftEnv(t, func(cfg *Config) { cfg.Records = map[string]RecordHandler{"other": stub("other")} })
	rep := newDriftSource(t, "fashion", "1.2.0").window(0)
	got := outcomeList(e.send(creds["edge-1"], "edge-1", driftRecord(t, rep), v1alpha1.OutboxRecord{Key: "o", Kind: "other", Payload: []byte("{}")}))
	if got != "Applied Applied" || strings.Join(calls, " ") != "other:o" || len(e.storedWindows("fashion", "edge-1")) != 1 {
		t.Errorf("outcomes %s, calls %v, windows %d", got, calls, len(e.storedWindows("fashion", "edge-1")))
	}
	calls = nil
	e, creds = newDriftEnv(t, func(cfg *Config) { cfg.Records = map[string]RecordHandler{drift.RecordKind: stub("mine")} })
	e.send(creds["edge-1"], "edge-1", driftRecord(t, rep))
	if strings.Join(calls, " ") != "mine:"+rep.Key() || len(e.storedWindows("fashion", "edge-1")) != 0 {
		t.Errorf("a caller's drift handler: calls %v", calls)
	}
}

// Whatever an agent sends as a drift window, the hub applies it or refuses
// it, never fails the batch, and keeps the deployment's status valid.
func FuzzDriftRecord(f *testing.F) {
	f.Add([]byte(`{"deployment":"fashion","model":"resnet","version":"1.2.0","windows":1,"verdict":"drift","alarm":true,` +
		`"start":"2031-05-06T07:00:00Z","end":"2031-05-06T07:01:00Z","features":[{"name":"in[0]","drifted":true,"scores":[{"test":"ks","statistic":0.5,"pValue":0.001,"drifted":true}]}]}`))
	f.Add([]byte(`{"deployment":"fashion","model":"resnet","version":"1.2.0","windows":1,"verdict":"no-drift","end":"9999-12-31T23:59:59Z"}`))
	f.Add([]byte(`{"deployment":"fashion","model":"resnet","version":"1.2.0","windows":1,"verdict":"insufficient-data","start":"0001-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"deployment":"fashion","version":"1","first":3,"last":1}`))
	f.Add([]byte(`null`))
	f.Add([]byte{0xff})
	fe, _ := newDriftEnv(f, nil)
	n := 0
	f.Fuzz(func(t *testing.T, payload []byte) {
		n++
		// The hub is the fuzz test's; its helpers report to this input's t.
		te := *fe.env
		te.t = t
		e := &agentEnv{env: &te, admin: fe.admin, clock: fe.clock, base: fe.base}
		before, windows := e.deployment("fashion"), len(e.storedWindows("fashion", ""))
		resp, err := e.srv.ApplyOutbox(t.Context(), "edge-1", []v1alpha1.OutboxRecord{{Key: fmt.Sprint(n), Kind: drift.RecordKind, Payload: payload}})
		if err != nil {
			t.Fatalf("ApplyOutbox: %v", err)
		}
		after := e.deployment("fashion")
		if err := after.Validate(); err != nil {
			t.Fatalf("status after %s: %v", resp.Results[0].Outcome, err)
		}
		stored := len(e.storedWindows("fashion", "")) - windows
		switch res := resp.Results[0]; res.Outcome {
		case v1alpha1.OutboxApplied:
			if stored != 1 || after.Status.Clusters[rowIndex(after, "edge-1")].Drift == nil {
				t.Fatalf("applied, but %d windows stored and the row shows %+v", stored, after.Status.Clusters)
			}
		case v1alpha1.OutboxRefused:
			if stored != 0 || after.ResourceVersion != before.ResourceVersion || res.Message == "" {
				t.Fatalf("refused (%q), but %d windows stored and the deployment went from %s to %s",
					res.Message, stored, before.ResourceVersion, after.ResourceVersion)
			}
		default:
			t.Fatalf("outcome %+v", res)
		}
	})
}

// A Drift trigger with fromClusters fires at the hub: the alarm raised in
// an edge cluster requests one run on each cluster the pipeline selects,
// once per alarm, in their desired state; a clean window or the alarm
// reported again requests nothing more; a new alarm requests a new run.
func TestDriftRequestsRunsAtTheHub(t *testing.T) {
	e, creds := newDriftEnv(t, nil)
	tok := e.createToken(3600, "").Token
	e.mustJoin(tok, "core-1", map[string]string{"region": "core"})
	for name, from := range map[string]string{"central": "eu", "elsewhere": "us"} {
		e.applyAsAdmin("pipelines", name, fmt.Sprintf(`apiVersion: ml.outpost.dev/v1alpha1
kind: Pipeline
metadata: {name: %s}
spec:
  clusterSelectors: [{matchLabels: {region: core}}]
  triggers: [{type: Drift, deployment: fashion, fromClusters: {matchLabels: {region: %s}}}]
  steps: [{name: train, type: exec, exec: {command: ["true"]}}]
`, name, from))
	}
	hubRuns := func() []string {
		objs, _, err := e.db.List(e.t.Context(), v1alpha1.KindPipelineRun, nil)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, o := range objs {
			r := o.(*v1alpha1.PipelineRun)
			names = append(names, r.Name+"@"+r.Spec.Cluster+" from "+r.Labels[v1alpha1.LabelDriftCluster])
		}
		return names
	}
	src := newDriftSource(t, "fashion", "1.2.0")
	e.send(creds["edge-1"], "edge-1", driftRecord(t, src.window(0)))
	if runs := hubRuns(); len(runs) != 0 {
		t.Fatalf("a clean window requested %v", runs)
	}
	shifted := src.window(1)
	e.send(creds["edge-1"], "edge-1", driftRecord(t, shifted))
	since := e.driftRow("fashion", "edge-1").Since.Time
	want := fmt.Sprintf("central-drift-edge-1-%d@core-1 from edge-1", since.Unix())
	if runs := hubRuns(); len(runs) != 1 || runs[0] != want {
		t.Fatalf("runs after the alarm: %v, want [%s]", runs, want)
	}
	if got := pipelines(e.desired("core-1")); !strings.Contains(got, fmt.Sprintf("central@1[central-drift-edge-1-%d]", since.Unix())) {
		t.Fatalf("core-1's desired state: %s", got)
	}
	if got := pipelines(e.desired("edge-1")); strings.Contains(got, "central") {
		t.Errorf("edge-1's desired state names the hub's pipeline: %s", got)
	}
	// The same window again (a duplicate), and another drifted window: the alarm is the same.
	e.send(creds["edge-1"], "edge-1", driftRecord(t, shifted), driftRecord(t, src.window(1)))
	if runs := hubRuns(); len(runs) != 1 {
		t.Fatalf("runs after the same alarm: %v", runs)
	}
	// The alarm clears, and is raised again later: a second run.
	for range 3 {
		e.send(creds["edge-1"], "edge-1", driftRecord(t, src.window(0)))
	}
	e.send(creds["edge-1"], "edge-1", driftRecord(t, src.window(1)))
	if runs := hubRuns(); len(runs) != 2 {
		t.Fatalf("runs after a second alarm: %v", runs)
	}
}
