package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
)

// TestCompressionPolicyTables compares `outpost get compressionpolicies` (plain and wide)
// with golden files (go test -run TestCompressionPolicyTables -update rewrites them).
func TestCompressionPolicyTables(t *testing.T) {
	ago := func(d time.Duration) *metav1.Time { t := metav1.NewTime(tableNow.Add(-d)); return &t }
	objs := []v1alpha1.Object{
		&v1alpha1.CompressionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "shrink", CreationTimestamp: *ago(time.Hour)},
			Spec: v1alpha1.CompressionPolicySpec{Models: []string{"fashion", "team/det"}, Data: v1alpha1.CompressionData{Path: "/data/fmnist"},
				MaxAccuracyDrop: "0.5"},
			Status: v1alpha1.CompressionPolicyStatus{Versions: []v1alpha1.CompressedVersion{
				{Model: "fashion", Version: "1.0.0", Phase: v1alpha1.CompressionDone, Updated: ago(50 * time.Minute), Variants: []v1alpha1.CompressedVariant{
					{Name: "int8", SizeRatio: "0.254", AccuracyDrop: "0.20"}, {Name: "fp16", SizeRatio: "0.501", AccuracyDrop: "0.00"}}},
				{Model: "fashion", Version: "1.1.0", Phase: v1alpha1.CompressionFailed, Updated: ago(20 * time.Minute),
					Reason: "not an ONNX model: the version has no .onnx file the agents serve"},
				{Model: "team/det", Version: "2.0.0", Phase: v1alpha1.CompressionCompressing, Updated: ago(time.Minute)},
			}},
		},
		&v1alpha1.CompressionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "all", CreationTimestamp: *ago(time.Second)},
			Spec:       v1alpha1.CompressionPolicySpec{Models: []string{"*"}, Data: v1alpha1.CompressionData{Path: "/data/fmnist"}},
		},
	}
	k, err := v1alpha1.LookupName("cp")
	if err != nil {
		t.Fatal(err)
	}
	for _, wide := range []bool{false, true} {
		name := "compressionpolicies.txt"
		if wide {
			name = "compressionpolicies-wide.txt"
		}
		var b bytes.Buffer
		if err := printTable(&b, k, objs, wide, tableNow); err != nil {
			t.Fatal(err)
		}
		golden := filepath.Join("testdata", "get", name)
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
			t.Errorf("%s differs:\n got:\n%s\nwant:\n%s", name, b.String(), want)
		}
	}
}
