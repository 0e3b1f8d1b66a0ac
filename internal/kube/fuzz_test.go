package kube

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/variant"
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
			AnnotationResolvedVersion: version, AnnotationResolvedDigest: dg, AnnotationResolvedSize: size}},
			Spec: v1alpha1.ModelDeploymentSpec{Model: v1alpha1.ModelRef{Name: "m"}}}
		r := ResolvedOf(md)
		if r.Version != "" && (r.Version != version || r.Digest != dg || r.Size < 0 || dg == "") {
			t.Fatalf("annotations %q %q %q read as %+v", version, dg, size, r)
		}
		if r.Version == "" && (r.Digest != "" || r.Size != 0) {
			t.Fatalf("annotations %q %q %q read as %+v", version, dg, size, r)
		}
		if _, _, ok := DesiredModel(md, variant.Facts{}); ok != (r.Version != "") {
			t.Fatalf("desired model %v for resolution %+v", ok, r)
		}
	})
}

// FuzzResolvedVariants feeds the variants annotation as a WEC may receive
// it: whatever it says, reading it never panics; what parses is whole and
// reads back the same once written; what does not is an error in the row,
// and the original model is sent.
func FuzzResolvedVariants(f *testing.F) {
	f.Add(`[{"name":"int8","digest":"`+dg3+`","sizeBytes":2097152,"peakMemoryBytes":3145728,"accuracy":"0.9"}]`, int64(16<<20), int32(25))
	f.Add(`[{"name":"fp16","digest":"`+dg4+`","sizeBytes":5242880,"accuracy":"0.95"},{"name":"int8","digest":"`+dg3+`","sizeBytes":1}]`, int64(1<<30), int32(50))
	f.Add(`[]`, int64(0), int32(0))
	f.Add(``, int64(1), int32(100))
	f.Add(`[{"name":"int8","digest":"sha256:abc"}]`, int64(16<<20), int32(25))
	f.Add(`[{"name":"int8","digest":"`+dg3+`","sizeBytes":-1}]`, int64(16<<20), int32(25))
	f.Add(`[{"name":"int8","digest":"`+dg3+`","accuracy":"1e999"}]`, int64(-5), int32(-1))
	f.Add(`{"name":"int8"}`, int64(16<<20), int32(25))
	f.Add(`[null]`, int64(16<<20), int32(25))
	f.Fuzz(func(t *testing.T, s string, memory int64, pct int32) {
		vs, err := ParseVariants(s)
		if err == nil {
			again, err := ParseVariants(FormatVariants(vs))
			if err != nil || !reflect.DeepEqual(again, vs) {
				t.Fatalf("%q parsed as %+v, which reads back as %+v, %v", s, vs, again, err)
			}
		} else if vs != nil {
			t.Fatalf("%q: %v, and yet %+v", s, err, vs)
		}
		md := resolvedWith(s, &v1alpha1.VariantPolicy{MaxMemoryPercent: pct})
		m, row, ok := DesiredModel(md, variant.Facts{MemoryBytes: memory})
		if !ok {
			t.Fatal("a resolved deployment gave no model")
		}
		if err != nil {
			if m.Digest != dg1 || m.Variant != "" || row.Error == "" || row.Variant != variant.Original {
				t.Fatalf("%q does not parse (%v), yet the model is %+v, row %+v", s, err, m, row)
			}
			return
		}
		if m.SizeBytes < 0 || row.Error != "" || row.Variant == "" {
			t.Fatalf("%q: model %+v, row %+v", s, m, row)
		}
		if m.Variant == "" {
			if m.Digest != dg1 || row.Variant != variant.Original {
				t.Fatalf("%q: the original with digest %s, row %+v", s, m.Digest, row)
			}
			return
		}
		i := slices.IndexFunc(vs, func(v v1alpha1.ModelVariant) bool { return v.Name == m.Variant })
		if i < 0 || vs[i].Digest != m.Digest || vs[i].SizeBytes != m.SizeBytes || row.Variant != m.Variant {
			t.Fatalf("%q: sent %+v, row %+v, not one of %+v", s, m, row, vs)
		}
	})
}
