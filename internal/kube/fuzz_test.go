package kube

import (
	"encoding/json"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
)

// FuzzReturnedRows feeds CombinedStatus objects as a WDS may hold them:
// whatever they say, folding them never panics, and every row is filed
// under the cluster it names.
func FuzzReturnedRows(f *testing.F) {
	f.Add([]byte(`{"results":[{"name":"outpost-modeldeployments","columnNames":["wec","status"],"rows":[{"columns":[{"type":"String","string":"wec1"},{"type":"Object","object":{"clusters":{"type":"Array","array":[{"type":"Object","object":{"cluster":{"type":"String","string":"wec1"},"phase":{"type":"String","string":"Active"}}}]}}}]}]}]}`))
	f.Add([]byte(`{"results":[{"name":"outpost-modeldeployments","columnNames":["status","wec"],"rows":[{"columns":[{"type":"Null"}]}]}]}`))
	f.Add([]byte(`{"results":[{"name":"outpost-modeldeployments","columnNames":["wec","status"],"rows":[{"columns":[{"type":"String"},{"type":"Number","float":"x"}]}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var cs CombinedStatus
		if json.Unmarshal(b, &cs) != nil {
			return
		}
		rows, _ := ReturnedRows(&v1alpha1.ModelDeploymentStatus{}, []CombinedStatus{cs})
		for c, r := range rows {
			if r.Cluster != c || c == "" {
				t.Fatalf("row %+v filed under %q", r, c)
			}
		}
	})
}

// FuzzResolvedOf feeds annotations: a resolution is read only when whole.
func FuzzResolvedOf(f *testing.F) {
	f.Add("1.0.0", dg1, "42")
	f.Add("", dg1, "1")
	f.Add("1.0.0", dg1, "-1")
	f.Add("1.0.0", "", "x")
	f.Add("1.0.0", "sha256:abc", "1")
	f.Add("one", dg1, "1")
	f.Fuzz(func(t *testing.T, version, dg, size string) {
		md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
			AnnotationResolvedVersion: version, AnnotationResolvedDigest: dg, AnnotationResolvedSize: size}}}
		r := ResolvedOf(md)
		if r != (Resolved{}) && (r.Version != version || r.Digest != dg || r.Size < 0 || version == "" || dg == "") {
			t.Fatalf("annotations %q %q %q read as %+v", version, dg, size, r)
		}
		if _, ok := DesiredModel(md); ok != (r.Version != "") {
			t.Fatalf("desired model %v for resolution %+v", ok, r)
		}
	})
}
