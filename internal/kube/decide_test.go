package kube

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/variant"
)

const (
	dg1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	dg2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	dg3 = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	dg4 = "sha256:4444444444444444444444444444444444444444444444444444444444444444"
	mib = 1 << 20
)

// int8 and fp16 are variants of a version of 8 MiB.
var (
	int8 = v1alpha1.ModelVariant{Name: "int8", Digest: dg3, SizeBytes: 2 * mib, PeakMemoryBytes: 3 * mib, Accuracy: "0.9"}
	fp16 = v1alpha1.ModelVariant{Name: "fp16", Digest: dg4, SizeBytes: 5 * mib, Accuracy: "0.95"}
)

func inv(name string, labels map[string]string) v1alpha1.Cluster {
	return v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func deployment(name string, sel ...metav1.LabelSelector) *v1alpha1.ModelDeployment {
	return &v1alpha1.ModelDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 3},
		Spec:       v1alpha1.ModelDeploymentSpec{Model: v1alpha1.ModelRef{Name: "m", Version: "^1"}, ClusterSelectors: sel},
	}
}

func at(min int) *metav1.Time {
	t := metav1.NewTime(time.Date(2026, 5, 1, 12, min, 0, 0, time.UTC))
	return &t
}

func TestDecide(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 30, 0, 0, time.UTC)
	clusters := []v1alpha1.Cluster{
		inv("wec1", map[string]string{"region": "eu"}),
		inv("wec2", map[string]string{"region": "eu"}),
		inv("wec3", map[string]string{"region": "us"}),
	}
	eu := metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}}
	us := metav1.LabelSelector{MatchLabels: map[string]string{"region": "us"}}
	resolved := Resolved{Version: "1.2.0", Digest: dg1, Size: 42}
	withVariants := Resolved{Version: "1.2.0", Digest: dg1, Size: 8 * mib, Variants: []v1alpha1.ModelVariant{fp16, int8}}
	recorded := deployment("d", eu)
	recorded.Annotations = Resolved{Version: "1.1.0", Digest: dg2, Size: 7, Variants: []v1alpha1.ModelVariant{int8}}.annotations()
	damaged := deployment("d", eu)
	damaged.Annotations = Resolved{Version: "1.1.0", Digest: dg2, Size: 7}.annotations()
	damaged.Annotations[AnnotationResolvedVariants] = `[{"name":"int8","digest":"sha256:abc"}]`
	active := v1alpha1.ClusterDeploymentStatus{Cluster: "wec1", DesiredVersion: "1.2.0", ActiveVersion: "1.2.0", Phase: v1alpha1.PhaseActive, LastContact: at(1)}
	tests := []struct {
		name      string
		md        *v1alpha1.ModelDeployment
		res       Resolved
		resErr    error
		returned  map[string]v1alpha1.ClusterDeploymentStatus
		selected  []string
		singleton bool
		resolved  Resolved
		cond      map[string]metav1.ConditionStatus
		rows      []v1alpha1.ClusterDeploymentStatus
	}{
		{
			name: "two clusters selected, none reported", md: deployment("d", eu), res: resolved,
			selected: []string{"wec1", "wec2"}, resolved: resolved,
			cond: map[string]metav1.ConditionStatus{v1alpha1.ConditionResolved: metav1.ConditionTrue, v1alpha1.ConditionPlaced: metav1.ConditionTrue},
			rows: []v1alpha1.ClusterDeploymentStatus{
				{Cluster: "wec1", DesiredVersion: "1.2.0", Phase: v1alpha1.PhasePending},
				{Cluster: "wec2", DesiredVersion: "1.2.0", Phase: v1alpha1.PhasePending},
			},
		},
		{
			name: "one cluster: singleton status asked, its returned row kept", md: deployment("d", us, metav1.LabelSelector{MatchLabels: map[string]string{"region": "mars"}}), res: resolved,
			returned: map[string]v1alpha1.ClusterDeploymentStatus{"wec3": {Cluster: "wec3", DesiredVersion: "1.2.0", ActiveVersion: "1.2.0", Phase: v1alpha1.PhaseActive}},
			selected: []string{"wec3"}, singleton: true, resolved: resolved,
			cond: map[string]metav1.ConditionStatus{v1alpha1.ConditionResolved: metav1.ConditionTrue, v1alpha1.ConditionPlaced: metav1.ConditionTrue},
			rows: []v1alpha1.ClusterDeploymentStatus{{Cluster: "wec3", DesiredVersion: "1.2.0", ActiveVersion: "1.2.0", Phase: v1alpha1.PhaseActive}},
		},
		{
			name: "a cluster no longer selected loses its row", md: deployment("d", us), res: resolved,
			returned: map[string]v1alpha1.ClusterDeploymentStatus{"wec1": active},
			selected: []string{"wec3"}, singleton: true, resolved: resolved,
			cond: map[string]metav1.ConditionStatus{v1alpha1.ConditionResolved: metav1.ConditionTrue, v1alpha1.ConditionPlaced: metav1.ConditionTrue},
			rows: []v1alpha1.ClusterDeploymentStatus{{Cluster: "wec3", DesiredVersion: "1.2.0", Phase: v1alpha1.PhasePending}},
		},
		{
			name: "the version's variants recorded", md: deployment("d", eu), res: withVariants,
			selected: []string{"wec1", "wec2"}, resolved: withVariants,
			cond: map[string]metav1.ConditionStatus{v1alpha1.ConditionResolved: metav1.ConditionTrue, v1alpha1.ConditionPlaced: metav1.ConditionTrue},
			rows: []v1alpha1.ClusterDeploymentStatus{
				{Cluster: "wec1", DesiredVersion: "1.2.0", Phase: v1alpha1.PhasePending},
				{Cluster: "wec2", DesiredVersion: "1.2.0", Phase: v1alpha1.PhasePending},
			},
		},
		{
			name: "returned rows keep the variant their agents chose", md: deployment("d", eu), res: withVariants,
			returned: map[string]v1alpha1.ClusterDeploymentStatus{"wec1": {Cluster: "wec1", DesiredVersion: "1.2.0", Variant: "int8", VariantReason: "int8: the most accurate that fits",
				ActiveVersion: "1.2.0", ActiveVariant: "int8", Phase: v1alpha1.PhaseActive}},
			selected: []string{"wec1", "wec2"}, resolved: withVariants,
			cond: map[string]metav1.ConditionStatus{v1alpha1.ConditionResolved: metav1.ConditionTrue, v1alpha1.ConditionPlaced: metav1.ConditionTrue},
			rows: []v1alpha1.ClusterDeploymentStatus{
				{Cluster: "wec1", DesiredVersion: "1.2.0", Variant: "int8", VariantReason: "int8: the most accurate that fits",
					ActiveVersion: "1.2.0", ActiveVariant: "int8", Phase: v1alpha1.PhaseActive},
				{Cluster: "wec2", DesiredVersion: "1.2.0", Phase: v1alpha1.PhasePending},
			},
		},
		{
			name: "registry down, the recorded variants damaged: the version stays without them", md: damaged, resErr: errors.New("registry unreachable"),
			selected: []string{"wec1", "wec2"}, resolved: Resolved{Version: "1.1.0", Digest: dg2, Size: 7},
			cond: map[string]metav1.ConditionStatus{v1alpha1.ConditionResolved: metav1.ConditionFalse, v1alpha1.ConditionPlaced: metav1.ConditionTrue},
			rows: []v1alpha1.ClusterDeploymentStatus{
				{Cluster: "wec1", DesiredVersion: "1.1.0", Phase: v1alpha1.PhasePending},
				{Cluster: "wec2", DesiredVersion: "1.1.0", Phase: v1alpha1.PhasePending},
			},
		},
		{
			name: "no selector selects nothing", md: deployment("d"), res: resolved,
			selected: []string{}, resolved: resolved,
			cond: map[string]metav1.ConditionStatus{v1alpha1.ConditionResolved: metav1.ConditionTrue, v1alpha1.ConditionPlaced: metav1.ConditionFalse},
			rows: []v1alpha1.ClusterDeploymentStatus{},
		},
		{
			name: "registry down: the recorded resolution stays", md: recorded, resErr: errors.New("registry unreachable"),
			selected: []string{"wec1", "wec2"}, resolved: Resolved{Version: "1.1.0", Digest: dg2, Size: 7, Variants: []v1alpha1.ModelVariant{int8}},
			cond: map[string]metav1.ConditionStatus{v1alpha1.ConditionResolved: metav1.ConditionFalse, v1alpha1.ConditionPlaced: metav1.ConditionTrue},
			rows: []v1alpha1.ClusterDeploymentStatus{
				{Cluster: "wec1", DesiredVersion: "1.1.0", Phase: v1alpha1.PhasePending},
				{Cluster: "wec2", DesiredVersion: "1.1.0", Phase: v1alpha1.PhasePending},
			},
		},
		{
			name: "never resolved: no annotations, still bound", md: deployment("d", eu), resErr: errors.New("no version matches"),
			selected: []string{"wec1", "wec2"},
			cond:     map[string]metav1.ConditionStatus{v1alpha1.ConditionResolved: metav1.ConditionFalse, v1alpha1.ConditionPlaced: metav1.ConditionTrue},
			rows: []v1alpha1.ClusterDeploymentStatus{
				{Cluster: "wec1", Phase: v1alpha1.PhasePending},
				{Cluster: "wec2", Phase: v1alpha1.PhasePending},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Decide(tt.md, clusters, tt.res, tt.resErr, tt.returned, now)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.Selected, tt.selected) {
				t.Errorf("selected %v, want %v", p.Selected, tt.selected)
			}
			if p.BindingPolicyName != "outpost-md-d" {
				t.Errorf("binding policy name %q", p.BindingPolicyName)
			}
			bp := p.BindingPolicy
			if !reflect.DeepEqual(bp.ClusterSelectors, tt.md.Spec.ClusterSelectors) {
				t.Errorf("cluster selectors %v, want the deployment's %v", bp.ClusterSelectors, tt.md.Spec.ClusterSelectors)
			}
			if len(bp.Downsync) != 1 {
				t.Fatalf("downsync %+v, want one clause", bp.Downsync)
			}
			ds := bp.Downsync[0]
			if ds.APIGroup == nil || *ds.APIGroup != v1alpha1.GroupName || !reflect.DeepEqual(ds.Resources, []string{"modeldeployments"}) ||
				!reflect.DeepEqual(ds.ObjectNames, []string{"d"}) || !reflect.DeepEqual(ds.StatusCollectors, []string{StatusCollectorName}) {
				t.Errorf("downsync clause %+v does not select this object with the status collector", ds)
			}
			if ds.WantSingletonReportedState != tt.singleton {
				t.Errorf("wantSingletonReportedState %v, want %v", ds.WantSingletonReportedState, tt.singleton)
			}
			got := Resolved{Version: p.Status.ResolvedVersion, Digest: p.Status.ResolvedDigest, Size: p.Status.ResolvedSizeBytes,
				Variants: p.Status.ResolvedVariants}
			if !reflect.DeepEqual(got, tt.resolved) {
				t.Errorf("status resolution %+v, want %+v", got, tt.resolved)
			}
			if tt.resolved.Version == "" && p.Annotations != nil {
				t.Errorf("annotations %v, want none", p.Annotations)
			}
			if tt.resolved.Version != "" && !reflect.DeepEqual(p.Annotations, tt.resolved.annotations()) {
				t.Errorf("annotations %v, want %v", p.Annotations, tt.resolved.annotations())
			}
			for typ, want := range tt.cond {
				c := meta.FindStatusCondition(p.Status.Conditions, typ)
				if c == nil || c.Status != want || c.ObservedGeneration != 3 {
					t.Errorf("condition %s = %+v, want %s at generation 3", typ, c, want)
				}
			}
			if !reflect.DeepEqual(p.Status.Clusters, tt.rows) {
				t.Errorf("rows\n got %+v\nwant %+v", p.Status.Clusters, tt.rows)
			}
			ready := 0
			for _, r := range tt.rows {
				if r.Phase == v1alpha1.PhaseActive {
					ready++
				}
			}
			if p.Status.ClusterCount != int32(len(tt.rows)) || p.Status.ReadyClusters != int32(ready) {
				t.Errorf("counts %d ready of %d, want %d of %d", p.Status.ReadyClusters, p.Status.ClusterCount, ready, len(tt.rows))
			}
			if p.Status.ObservedGeneration != 3 {
				t.Errorf("observed generation %d", p.Status.ObservedGeneration)
			}
		})
	}
}

func TestDecideRejectsBadSelector(t *testing.T) {
	md := deployment("d", metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "region", Operator: "Near"}}})
	if _, err := Decide(md, nil, Resolved{}, nil, nil, time.Now()); err == nil {
		t.Fatal("a selector with an unknown operator was accepted")
	}
}

func str(s string) *string { return &s }

// statusValue encodes st as a CombinedStatus column, as KubeStellar does.
func statusValue(t *testing.T, st v1alpha1.ModelDeploymentStatus) Value {
	t.Helper()
	m, err := toUnstructured(st)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewValue(any(m))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestReturnedRows(t *testing.T) {
	row := func(c string, phase v1alpha1.ClusterPhase, when *metav1.Time) v1alpha1.ClusterDeploymentStatus {
		return v1alpha1.ClusterDeploymentStatus{Cluster: c, DesiredVersion: "1.2.0", ActiveVersion: "1.2.0", Phase: phase, LastContact: when, BytesTotal: 10}
	}
	wec := func(c string) Value { return Value{Type: TypeString, String: str(c)} }
	cs := CombinedStatus{Results: []NamedStatusCombination{
		{Name: "someone-elses", ColumnNames: []string{"count"}, Rows: []StatusCombinationRow{{Columns: []Value{{Type: TypeNumber, Number: str("2")}}}}},
		{Name: StatusCollectorName, ColumnNames: []string{ColumnWEC, ColumnStatus}, Rows: []StatusCombinationRow{
			{Columns: []Value{wec("wec1"), statusValue(t, v1alpha1.ModelDeploymentStatus{Clusters: []v1alpha1.ClusterDeploymentStatus{row("wec1", v1alpha1.PhaseActive, at(5))}})}},
			{Columns: []Value{wec("wec2"), statusValue(t, v1alpha1.ModelDeploymentStatus{Clusters: []v1alpha1.ClusterDeploymentStatus{row("wec2", v1alpha1.PhaseFetching, at(2))}})}},
			{Columns: []Value{wec("wec3"), {Type: TypeNull}}},
			{Columns: []Value{{Type: TypeNumber, Number: str("7")}, {Type: TypeNull}}},
		}},
	}}
	own := &v1alpha1.ModelDeploymentStatus{Clusters: []v1alpha1.ClusterDeploymentStatus{
		row("wec1", v1alpha1.PhaseFetching, at(1)), // older than the combined row
		row("wec2", v1alpha1.PhaseActive, at(4)),   // newer: singleton status came back since
	}}
	got, errs := ReturnedRows(own, []CombinedStatus{cs})
	if len(errs) != 1 {
		t.Errorf("errors %v, want one for the row without a cluster name", errs)
	}
	want := map[string]v1alpha1.ClusterDeploymentStatus{
		"wec1": row("wec1", v1alpha1.PhaseActive, at(5)),
		"wec2": row("wec2", v1alpha1.PhaseActive, at(4)),
	}
	if len(got) != len(want) {
		t.Fatalf("rows %+v, want %+v", got, want)
	}
	for c, w := range want {
		g := got[c]
		if g.Phase != w.Phase || !g.LastContact.Equal(w.LastContact) || g.BytesTotal != w.BytesTotal {
			t.Errorf("%s: %+v, want %+v", c, g, w)
		}
	}
}

func TestValueRoundTrip(t *testing.T) {
	in := map[string]any{"a": "x", "b": true, "c": nil, "d": []any{"y", map[string]any{"e": false}}}
	v, err := NewValue(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := v.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, any(in)) {
		t.Fatalf("round trip gave %#v, want %#v", out, in)
	}
	if _, err := NewValue(struct{}{}); err == nil {
		t.Fatal("a struct was taken as a JSON value")
	}
}

func TestDesiredState(t *testing.T) {
	b := deployment("b")
	b.Annotations = Resolved{Version: "1.2.0", Digest: dg1, Size: 42}.annotations()
	b.Spec.AllowDowngrade = true
	a := deployment("a")
	a.Annotations = Resolved{Version: "2.0.0", Digest: dg2}.annotations()
	unresolved := deployment("c")
	going := deployment("e")
	going.Annotations = a.Annotations
	going.DeletionTimestamp = at(0)
	bad := deployment("f")
	bad.Annotations = map[string]string{AnnotationResolvedVersion: "1.0.0", AnnotationResolvedDigest: dg1, AnnotationResolvedSize: "-1"}
	badDigest := deployment("g")
	badDigest.Annotations = map[string]string{AnnotationResolvedVersion: "1.0.0", AnnotationResolvedDigest: "sha256:abc"}
	badVersion := deployment("h")
	badVersion.Annotations = map[string]string{AnnotationResolvedVersion: "latest", AnnotationResolvedDigest: dg1}
	badModel := deployment("i")
	badModel.Annotations = a.Annotations
	badModel.Spec.Model.Name = "Not A Model"
	doc, rows := DesiredState("wec1", 77, []v1alpha1.ModelDeployment{*b, *unresolved, *a, *going, *bad, *badDigest, *badVersion, *badModel}, variant.Facts{})
	if doc.Cluster != "wec1" || doc.Revision != 77 || doc.Kind != v1alpha1.KindDesiredState {
		t.Fatalf("document header %+v", doc)
	}
	want := []v1alpha1.DesiredModel{
		{Deployment: "a", Model: "m", Version: "2.0.0", Digest: dg2},
		{Deployment: "b", Model: "m", Version: "1.2.0", Digest: dg1, SizeBytes: 42, AllowDowngrade: true},
	}
	if !reflect.DeepEqual(doc.Models, want) {
		t.Fatalf("models\n got %+v\nwant %+v", doc.Models, want)
	}
	// Without a variant policy and without variants, nothing is chosen.
	if !reflect.DeepEqual(rows, map[string]VariantRow{"a": {}, "b": {}}) {
		t.Fatalf("variant rows %+v", rows)
	}
}

func TestAgentStatusStale(t *testing.T) {
	md := deployment("d")
	md.Annotations = Resolved{Version: "1.2.0", Digest: dg1, Size: 42}.annotations()
	rep := v1alpha1.ModelReport{Deployment: "d", Model: "m", DesiredVersion: "1.2.0", ActiveVersion: "1.2.0", Phase: v1alpha1.PhaseActive}
	first := AgentStatus(md, "wec1", rep, VariantRow{}, *at(0))
	if first.ResolvedDigest != dg1 || first.ReadyClusters != 1 || first.ClusterCount != 1 || len(first.Clusters) != 1 || first.Clusters[0].Cluster != "wec1" || first.Clusters[0].Phase != v1alpha1.PhaseActive {
		t.Fatalf("status %+v", first)
	}
	later := AgentStatus(md, "wec1", rep, VariantRow{}, *at(1))
	fetching := rep
	fetching.Phase = v1alpha1.PhaseFetching
	tests := []struct {
		name      string
		old, next v1alpha1.ModelDeploymentStatus
		want      bool
	}{
		{"nothing written yet", v1alpha1.ModelDeploymentStatus{}, first, true},
		{"only lastContact moved", first, later, false},
		{"lastContact older than the refresh", first, AgentStatus(md, "wec1", rep, VariantRow{}, *at(6)), true},
		{"the phase changed", first, AgentStatus(md, "wec1", fetching, VariantRow{}, *at(1)), true},
		{"the variant chosen changed", first, AgentStatus(md, "wec1", rep, VariantRow{Variant: "int8", Reason: "int8: the smallest that fits"}, *at(1)), true},
		{"the controller's status came back", v1alpha1.ModelDeploymentStatus{Clusters: []v1alpha1.ClusterDeploymentStatus{{Cluster: "wec1"}, {Cluster: "wec2"}}}, first, true},
	}
	for _, tt := range tests {
		if got := StatusStale(tt.old, tt.next); got != tt.want {
			t.Errorf("%s: stale %v, want %v", tt.name, got, tt.want)
		}
	}
}
