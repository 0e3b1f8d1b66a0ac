package cli

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/hubclient"
)

// reportAt is the report of window i of deployment fashion, version 1.0.0:
// two features, the first drifting (a small p-value) when shifted.
func reportAt(i int, shifted, alarm bool) drift.WindowReport {
	start := time.Date(2031, 1, 2, 3, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)
	p := func(v float64) *float64 { return &v }
	mean, pv, verdict := 0.3, 0.8, drift.VerdictNoDrift
	if shifted {
		mean, pv, verdict = 0.15, 1e-20, drift.VerdictDrift
	}
	return drift.WindowReport{Deployment: "fashion", Model: "fashion", Version: "1.0.0", First: uint64(i), Last: uint64(i), Windows: 1,
		Start: start, End: start.Add(time.Minute - time.Millisecond), Samples: 200, Verdict: verdict, Alarm: alarm, AlarmChanged: start,
		Features: []drift.FeatureReport{
			{Name: "input.mean", Role: drift.RoleInput, Kind: drift.KindNumeric, N: 200, Mean: p(mean), Drifted: shifted,
				Scores: []drift.ScoreReport{{Test: drift.TestKS, Statistic: 0.05 + 0.5*b2f(shifted), PValue: p(pv), Drifted: shifted}}},
			{Name: "output.class", Role: drift.RoleOutput, Kind: drift.KindCategorical, N: 200,
				Scores: []drift.ScoreReport{{Test: drift.TestChiSquare, Statistic: 3, PValue: p(0.5)}}},
		}}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// `outpost drift status` and `drift show` read what the hub learnt from
// the windows a cluster sent: the alarm, the windows and, per feature, the
// tests and a sparkline over the windows.
func TestDriftStatusAndShow(t *testing.T) {
	hubArgs := registryHub(t)
	url, admin := hubArgs[1], hubArgs[3]
	mustCLI(t, append(hubArgs, "model", "push", zooDir(t, "mlp"), "--name", "fashion", "--version", "1.0.0")...)
	ctx := t.Context()
	c, err := hubclient.New(url, hubclient.Options{Token: admin})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.CreateJoinToken(ctx, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	jr, err := c.Join(ctx, tok.Token, "ship-3", map[string]string{"tier": "edge"})
	if err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(t.TempDir(), "d.yaml")
	os.WriteFile(spec, []byte(`apiVersion: ml.outpost.dev/v1alpha1
kind: ModelDeployment
metadata: {name: fashion}
spec:
  model: {name: fashion, version: "1.0.0"}
  clusterSelectors: [{matchLabels: {tier: edge}}]
  monitoring: {windowSamples: 200}
`), 0o644)
	mustCLI(t, append(hubArgs, "apply", "-f", spec)...)

	// Before any window: the cluster's row says it sent none.
	out := mustCLI(t, append(hubArgs, "drift", "status")...)
	if !regexp.MustCompile(`fashion\s+ship-3\s+-\s+-\s+-\s+-\s+0\s`).MatchString(out) {
		t.Fatalf("status before any window:\n%s", out)
	}
	if out := mustCLI(t, append(hubArgs, "drift", "show", "fashion")...); !strings.Contains(out, "no drift window of deployment fashion from any cluster") {
		t.Fatalf("show before any window:\n%s", out)
	}

	agent, err := hubclient.New(url, hubclient.Options{Token: jr.Credential})
	if err != nil {
		t.Fatal(err)
	}
	var recs []v1alpha1.OutboxRecord
	for i := range 6 {
		shifted := i >= 3
		rep := reportAt(i, shifted, shifted)
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, v1alpha1.OutboxRecord{Key: rep.Key(), Kind: drift.RecordKind, Payload: b})
	}
	if _, err := agent.SendOutbox(ctx, "ship-3", recs); err != nil {
		t.Fatal(err)
	}

	out = mustCLI(t, append(hubArgs, "drift", "status")...)
	if !regexp.MustCompile(`fashion\s+ship-3\s+1\.0\.0\s+Drift\s+RAISED\s+\S+ ago\s+6\s+\S+ ago\s+input\.mean\n`).MatchString(out) {
		t.Errorf("status after drift:\n%s", out)
	}
	var rows []driftRow
	if err := json.Unmarshal([]byte(mustCLI(t, append(hubArgs, "drift", "status", "fashion", "-o", "json")...)), &rows); err != nil ||
		len(rows) != 1 || rows[0].Drift == nil || !rows[0].Drift.Alarm || rows[0].Drift.Windows != 6 {
		t.Errorf("status -o json: %v %+v", err, rows)
	}

	out = mustCLI(t, append(hubArgs, "drift", "show", "fashion", "--cluster", "ship-3")...)
	for _, want := range []string{
		"Deployment fashion on cluster ship-3: model fashion 1.0.0, drift alarm RAISED since 2031-01-02T03:05:00Z",
		"Verdicts of 6 report(s), 6 window(s), oldest first: ___###",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	// The drifted feature's evidence rises to full; the other's stays low.
	if !regexp.MustCompile(`input\.mean\s+input\s+YES\s+0\.15\s+ks 0\.55 p=1e-20\*\s+▁▁▁███\n`).MatchString(out) ||
		!regexp.MustCompile(`output\.class\s+output\s+no\s+-\s+chi-square 3 p=0\.5\s+▁▁▁▁▁▁\n`).MatchString(out) {
		t.Errorf("show's feature table:\n%s", out)
	}
	out = mustCLI(t, append(hubArgs, "drift", "show", "fashion", "--windows", "2", "-o", "json")...)
	var l v1alpha1.DriftWindowList
	if err := json.Unmarshal([]byte(out), &l); err != nil || len(l.Items) != 2 || l.Items[0].First != 5 {
		t.Errorf("show -o json: %v %+v", err, l)
	}

	failCLI(t, "--windows 0", append(hubArgs, "drift", "show", "fashion", "--windows", "0")...)
	failCLI(t, "not found", append(hubArgs, "drift", "show", "nosuch")...)
	failCLI(t, "-o", append(hubArgs, "drift", "status", "-o", "wide")...)
}

func TestSparkline(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want string
	}{
		{[]float64{0, 0.5, 1, 2, -1}, "▁▅██▁"},
		{[]float64{math.NaN(), 1}, " █"},
		{nil, ""},
	} {
		if got := sparkline(c.in); got != c.want {
			t.Errorf("sparkline(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

// Threshold tests alone scale against the largest statistic shown.
func TestEvidenceWithoutPValues(t *testing.T) {
	reps := []drift.WindowReport{
		{Features: []drift.FeatureReport{{Name: "f", Scores: []drift.ScoreReport{{Test: drift.TestPSI, Statistic: 0.1}}}}},
		{Features: []drift.FeatureReport{{Name: "f", Scores: []drift.ScoreReport{{Test: drift.TestPSI, Statistic: 0.4}}}}},
		{Features: []drift.FeatureReport{{Name: "g"}}},
	}
	got := evidence(reps, "f")
	if got[0] != 0.25 || got[1] != 1 || !math.IsNaN(got[2]) {
		t.Errorf("evidence = %v", got)
	}
}
