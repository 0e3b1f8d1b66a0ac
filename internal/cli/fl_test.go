package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
)

// flFixtures are a job under way, with privacy and two rounds, and a job that has not started.
func flFixtures() []v1alpha1.Object {
	ago := func(d time.Duration) *metav1.Time { t := metav1.NewTime(tableNow.Add(-d)); return &t }
	running := &v1alpha1.FederatedJob{
		ObjectMeta: metav1.ObjectMeta{Name: "fmnist-fl", CreationTimestamp: *ago(10 * time.Minute)},
		Spec: v1alpha1.FederatedJobSpec{Model: v1alpha1.FederatedModel{Name: "fmnist", Version: "1.0.0"}, Rounds: 5, TargetAccuracy: "0.8",
			Strategy: v1alpha1.AggregationStrategy{Type: v1alpha1.StrategyFedProx, Mu: "0.01"}, SecureAggregation: true,
			Privacy: &v1alpha1.DifferentialPrivacy{ClipNorm: "1", NoiseMultiplier: "1.1", Epsilon: "8"}, Encoding: v1alpha1.EncodingAdaptive},
		Status: v1alpha1.FederatedJobStatus{Phase: v1alpha1.FederatedRunning, Round: 2, RoundPhase: "mask", LatestModel: "fmnist-fl",
			LatestVersion: "0.2.0", Accuracy: "0.7012", EpsilonSpent: "1.2345",
			Rounds: []v1alpha1.FederatedRoundStatus{
				{Round: 1, Participants: 3, Accuracy: "0.1000", Loss: "1.2000", UpdateBytes: 300_000, Version: "0.1.0", EpsilonSpent: "0.8000", Completed: ago(5 * time.Minute)},
				{Round: 2, Participants: 2, Dropouts: 1, Accuracy: "0.7012", Loss: "0.6000", UpdateBytes: 200_000, Version: "0.2.0", EpsilonSpent: "1.2345", Completed: ago(time.Minute)},
			},
			Clusters: []v1alpha1.FederatedClusterStatus{
				{Cluster: "site-a", Updates: 2, LastRound: 2, Encoding: "int8", LocalSteps: 40, Reason: "slow link: 8-bit updates"},
				{Cluster: "site-b", Updates: 1, LastRound: 1},
			}},
	}
	fresh := &v1alpha1.FederatedJob{
		ObjectMeta: metav1.ObjectMeta{Name: "new", CreationTimestamp: *ago(time.Second)},
		Spec:       v1alpha1.FederatedJobSpec{Model: v1alpha1.FederatedModel{Name: "m", Version: "1.0.0"}, Rounds: 3},
	}
	return []v1alpha1.Object{running, fresh}
}

// TestFLTables compares `outpost get federatedjobs` (plain and wide) and `outpost fl status`
// with golden files (go test -run TestFLTables -update rewrites them).
func TestFLTables(t *testing.T) {
	objs := flFixtures()
	k, err := v1alpha1.LookupName("fj")
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]*bytes.Buffer{}
	for _, wide := range []bool{false, true} {
		name := "get/federatedjobs.txt"
		if wide {
			name = "get/federatedjobs-wide.txt"
		}
		outputs[name] = &bytes.Buffer{}
		if err := printTable(outputs[name], k, objs, wide, tableNow); err != nil {
			t.Fatal(err)
		}
	}
	for i, o := range objs {
		name := []string{"fl/status-running.txt", "fl/status-new.txt"}[i]
		outputs[name] = &bytes.Buffer{}
		if err := printFLStatus(outputs[name], o.(*v1alpha1.FederatedJob)); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range outputs {
		golden := filepath.Join("testdata", filepath.FromSlash(name))
		if *update {
			if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if b.String() != string(want) {
			t.Errorf("%s differs:\n got:\n%s\nwant:\n%s", name, b.String(), want)
		}
	}
}

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		i, n int
		err  string
	}{
		{"1/3", 1, 3, ""},
		{"3/3", 3, 3, ""},
		{"0/3", 0, 0, `--shard "0/3"`},
		{"4/3", 0, 0, `--shard "4/3"`},
		{"1", 0, 0, `--shard "1"`},
		{"a/b", 0, 0, `--shard "a/b"`},
		{"1/1001", 0, 0, `--shard "1/1001"`},
	} {
		i, n, err := parseShard(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseShard(%q) = %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || i != tc.i || n != tc.n {
			t.Errorf("parseShard(%q) = %d, %d, %v", tc.in, i, n, err)
		}
	}
}
