package placement

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
)

func cluster(name string, l map[string]string) v1alpha1.Cluster {
	return v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

var fleet = []v1alpha1.Cluster{
	cluster("edge-c", map[string]string{"region": "us", "tier": "edge"}),
	cluster("edge-a", map[string]string{"region": "eu", "tier": "edge"}),
	cluster("edge-b", map[string]string{"region": "eu", "tier": "core", "gpu": "true"}),
	cluster("lab", nil),
}

func TestSelect(t *testing.T) {
	tests := []struct {
		name    string
		sels    []metav1.LabelSelector
		want    []string
		wantErr bool
	}{
		{name: "nil selects none", sels: nil, want: []string{}},
		{name: "empty list selects none", sels: []metav1.LabelSelector{}, want: []string{}},
		{name: "empty selector selects all", sels: []metav1.LabelSelector{{}}, want: []string{"edge-a", "edge-b", "edge-c", "lab"}},
		{name: "matchLabels", sels: []metav1.LabelSelector{{MatchLabels: map[string]string{"region": "eu"}}}, want: []string{"edge-a", "edge-b"}},
		{name: "ANDed within a selector", sels: []metav1.LabelSelector{{MatchLabels: map[string]string{"region": "eu", "tier": "edge"}}}, want: []string{"edge-a"}},
		{name: "ORed across selectors, no duplicates", sels: []metav1.LabelSelector{
			{MatchLabels: map[string]string{"region": "us"}},
			{MatchLabels: map[string]string{"tier": "edge"}},
		}, want: []string{"edge-a", "edge-c"}},
		{name: "expressions", sels: []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "gpu", Operator: metav1.LabelSelectorOpExists},
		}}}, want: []string{"edge-b"}},
		{name: "DoesNotExist matches unlabelled", sels: []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "region", Operator: metav1.LabelSelectorOpDoesNotExist},
		}}}, want: []string{"lab"}},
		{name: "no match", sels: []metav1.LabelSelector{{MatchLabels: map[string]string{"region": "mars"}}}, want: []string{}},
		{name: "invalid", sels: []metav1.LabelSelector{{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "a", Operator: "Near"},
		}}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Select(tt.sels, fleet)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Select error = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Select = %v, want %v", got, tt.want)
			}
		})
	}
}

func deployment(name, model string, allowDowngrade bool, sels ...metav1.LabelSelector) v1alpha1.ModelDeployment {
	return v1alpha1.ModelDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.ModelDeploymentSpec{
			Model:            v1alpha1.ModelRef{Name: model, Version: "^1"},
			ClusterSelectors: sels,
			AllowDowngrade:   allowDowngrade,
		},
	}
}

func TestDesiredStates(t *testing.T) {
	eu := metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}}
	us := metav1.LabelSelector{MatchLabels: map[string]string{"region": "us"}}
	bad := metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}
	deps := []v1alpha1.ModelDeployment{
		deployment("zeta", "bert", false, us, eu),
		deployment("alpha", "resnet", true, eu),
		deployment("unresolved", "gpt", false, metav1.LabelSelector{}),
		deployment("broken", "x", false, bad),
	}
	deps[0].Spec.RequireSignature = true
	resolved := map[string]Resolution{
		"zeta":  {Version: "1.4.0", Digest: "sha256:b", SizeBytes: 20},
		"alpha": {Version: "1.0.1", Digest: "sha256:a", SizeBytes: 10},
	}
	got, err := DesiredStates(deps, fleet, resolved, false)
	if err == nil {
		t.Fatal("want an error for the broken deployment")
	}
	resnet := v1alpha1.DesiredModel{Deployment: "alpha", Model: "resnet", Version: "1.0.1", Digest: "sha256:a", SizeBytes: 10, AllowDowngrade: true}
	bert := v1alpha1.DesiredModel{Deployment: "zeta", Model: "bert", Version: "1.4.0", Digest: "sha256:b", SizeBytes: 20, RequireSignature: true}
	want := map[string][]v1alpha1.DesiredModel{
		"edge-a": {resnet, bert},
		"edge-b": {resnet, bert},
		"edge-c": {bert},
		"lab":    {},
	}
	if !reflect.DeepEqual(got.Models, want) {
		t.Fatalf("Models =\n%+v\nwant\n%+v", got.Models, want)
	}
	if s := got.Selected["unresolved"]; len(s) != 4 {
		t.Errorf("Selected[unresolved] = %v, want all four clusters", s)
	}
	if _, ok := got.Selected["broken"]; ok {
		t.Error("broken deployment was placed")
	}

	// Server-wide signature policy applies to every model.
	got, _ = DesiredStates(deps[:2], fleet, resolved, true)
	for c, ms := range got.Models {
		for _, m := range ms {
			if !m.RequireSignature {
				t.Errorf("cluster %s model %s: RequireSignature false under hub policy", c, m.Deployment)
			}
		}
	}

	// Deterministic regardless of input order.
	rev := []v1alpha1.ModelDeployment{deps[1], deps[0]}
	revClusters := []v1alpha1.Cluster{fleet[3], fleet[2], fleet[1], fleet[0]}
	a, _ := DesiredStates(deps[:2], fleet, resolved, false)
	b, _ := DesiredStates(rev, revClusters, resolved, false)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("order-dependent result:\n%+v\n%+v", a, b)
	}
}

// TestDesiredStatesPerCluster checks that a rollout's per-cluster versions replace the
// resolved one on the clusters it names, with their rollback marks, and on no other.
func TestDesiredStatesPerCluster(t *testing.T) {
	d := v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "det"}, Spec: v1alpha1.ModelDeploymentSpec{
		Model: v1alpha1.ModelRef{Name: "m", Version: "^1"}, ClusterSelectors: []metav1.LabelSelector{{}}, Urgent: true}}
	rb := &v1alpha1.Rollback{From: []string{"2.0.0"}, Reason: "gate failed"}
	res := map[string]Resolution{"det": {Version: "2.0.0", Digest: "sha256:2", Cluster: func(name string) (ClusterVersion, bool) {
		switch name {
		case "edge-a":
			return ClusterVersion{Version: "1.0.0", Digest: "sha256:1", Rollback: rb}, true
		case "edge-b":
			return ClusterVersion{}, false
		}
		return ClusterVersion{Version: "1.0.0", Digest: "sha256:1"}, true
	}}}
	a, err := DesiredStates([]v1alpha1.ModelDeployment{d}, fleet, res, false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"edge-a": "1.0.0", "edge-b": "2.0.0", "edge-c": "1.0.0", "lab": "1.0.0"}
	for c, v := range want {
		m := a.Models[c][0]
		if m.Version != v || !m.Urgent {
			t.Errorf("%s: version %s urgent %v, want %s and urgent", c, m.Version, m.Urgent, v)
		}
		if (m.Rollback != nil) != (c == "edge-a") {
			t.Errorf("%s: rollback mark %+v", c, m.Rollback)
		}
	}
}
