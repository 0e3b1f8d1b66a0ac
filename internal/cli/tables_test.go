package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
)

// tableNow is the time the golden tables' ages count to.
var tableNow = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

// tableFixtures are the objects the golden tables show: one of each shape
// a column handles (empty, zero, set; a deployment with and without clusters).
func tableFixtures() (clusters, deployments []v1alpha1.Object) {
	ago := func(d time.Duration) *metav1.Time { t := metav1.NewTime(tableNow.Add(-d)); return &t }
	q := func(s string) *resource.Quantity { v := resource.MustParse(s); return &v }
	full := &v1alpha1.Cluster{
		ObjectMeta: metav1.ObjectMeta{Name: "edge-a", Labels: map[string]string{"tier": "store", "region": "eu"}, CreationTimestamp: *ago(72 * time.Hour)},
		Status: v1alpha1.ClusterStatus{
			Capacity:        v1alpha1.Capacity{CPU: q("4"), Memory: q("24683664Ki"), Disk: q("100Gi")},
			Link:            v1alpha1.LinkStatus{BandwidthBps: 2 << 20, RTTMillis: 40, State: v1alpha1.LinkConnected, LastSeen: ago(5 * time.Second)},
			CachedArtifacts: []v1alpha1.CachedArtifact{{Digest: "sha256:1"}, {Digest: "sha256:2"}},
			AgentVersion:    "v0.1.0",
			Endpoints:       &v1alpha1.ServingEndpoints{REST: "http://10.0.0.7:41234", GRPC: "10.0.0.7:8081"},
			Transfer: &v1alpha1.TransferStatus{NextChange: &metav1.Time{Time: time.Date(2026, 3, 3, 22, 0, 0, 0, time.UTC)},
				Waiting: []string{"fashion"}, WaitingBytes: 3_700_000},
		},
	}
	bare := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "edge-b"}}
	dep := &v1alpha1.ModelDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "fashion", CreationTimestamp: *ago(3 * time.Hour)},
		Spec:       v1alpha1.ModelDeploymentSpec{Model: v1alpha1.ModelRef{Name: "fashion-mlp", Version: "^1.0"}},
		Status: v1alpha1.ModelDeploymentStatus{
			ResolvedVersion: "1.1.0",
			Clusters: []v1alpha1.ClusterDeploymentStatus{
				{Cluster: "edge-a", DesiredVersion: "1.1.0", Variant: "int8", VariantReason: "int8: the most accurate that fits (accuracy 0.88)", ActiveVersion: "1.1.0", Phase: v1alpha1.PhaseActive, BytesFetched: 550_000, BytesTotal: 3_700_000, LastContact: ago(90 * time.Second), Runtime: "go",
					Drift: &v1alpha1.DriftStatus{Version: "1.1.0", State: v1alpha1.DriftStateDrift, Alarm: true, LastWindowEnd: metav1.NewMicroTime(tableNow.Add(-time.Minute)), Windows: 12,
						DriftedFeatures: []string{"in.mean", "in.std", "in.p0", "in.p1", "out.class"}, DriftedFeatureCount: 7}},
				{Cluster: "edge-b", DesiredVersion: "1.1.0", ActiveVersion: "1.0.0", Phase: v1alpha1.PhaseFetching, Error: "link down",
					Drift: &v1alpha1.DriftStatus{Version: "1.0.0", State: v1alpha1.DriftStateNoDrift, LastWindowEnd: metav1.NewMicroTime(tableNow.Add(-time.Hour)), Windows: 3}},
			},
		},
	}
	unplaced := &v1alpha1.ModelDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: "nowhere"},
		Spec:       v1alpha1.ModelDeploymentSpec{Model: v1alpha1.ModelRef{Name: "det", Version: "9.9.9"}},
		Status: v1alpha1.ModelDeploymentStatus{Conditions: []metav1.Condition{
			{Type: v1alpha1.ConditionResolved, Status: metav1.ConditionFalse, Message: "no version matching 9.9.9"},
		}},
	}
	return []v1alpha1.Object{full, bare}, []v1alpha1.Object{dep, unplaced}
}

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// TestGetTables compares the tables of `outpost get` with golden files
// (go test -run TestGetTables -update rewrites them).
func TestGetTables(t *testing.T) {
	clusters, deployments := tableFixtures()
	for _, tt := range []struct {
		file, kind string
		objs       []v1alpha1.Object
		wide       bool
	}{
		{"clusters.txt", "cluster", clusters, false},
		{"clusters-wide.txt", "cl", clusters, true},
		{"modeldeployments.txt", "modeldeployments", deployments, false},
		{"modeldeployments-wide.txt", "md", deployments, true},
	} {
		k, err := v1alpha1.LookupName(tt.kind)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := printTable(&b, k, tt.objs, tt.wide, tableNow); err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", "get", tt.file)
		if *update {
			if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if b.String() != string(want) {
			t.Errorf("%s differs:\n got:\n%s\nwant:\n%s", tt.file, b.String(), want)
		}
	}
}
