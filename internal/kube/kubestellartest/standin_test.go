package kubestellartest

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"outpost.dev/outpost/internal/kube"
)

func TestEvalPath(t *testing.T) {
	vars := map[string]any{
		"inventory": map[string]any{"name": "wec1"},
		"returned":  map[string]any{"status": map[string]any{"phase": "Active"}},
	}
	tests := []struct {
		expr    string
		want    any
		wantErr bool
	}{
		{"inventory.name", "wec1", false},
		{"returned.status", map[string]any{"phase": "Active"}, false},
		{" returned.status.phase ", "Active", false},
		{"returned.status.missing", nil, false},
		{"inventory.name.deeper", nil, false},
		{"obj.spec.replicas != returned.status.availableReplicas", nil, true},
		{"size(returned.status)", nil, true},
		{"returned..status", nil, true},
	}
	for _, tt := range tests {
		got, err := evalPath(tt.expr, vars)
		if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%q: %v, %v; want %v (error %v)", tt.expr, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestMatches(t *testing.T) {
	o := &unstructured.Unstructured{}
	o.SetName("d")
	o.SetLabels(map[string]string{"app": "x"})
	sel := func(l map[string]string) []metav1.LabelSelector { return []metav1.LabelSelector{{MatchLabels: l}} }
	tests := []struct {
		name string
		cl   kube.DownsyncPolicyClause
		want bool
	}{
		{"by name", kube.DownsyncPolicyClause{ObjectNames: []string{"d"}}, true},
		{"another name", kube.DownsyncPolicyClause{ObjectNames: []string{"e"}}, false},
		{"any name", kube.DownsyncPolicyClause{ObjectNames: []string{"*"}}, true},
		{"by label", kube.DownsyncPolicyClause{ObjectSelectors: sel(map[string]string{"app": "x"})}, true},
		{"another label", kube.DownsyncPolicyClause{ObjectSelectors: sel(map[string]string{"app": "y"})}, false},
		{"cluster-scoped needs * among namespaces", kube.DownsyncPolicyClause{Namespaces: []string{"default"}}, false},
		{"cluster-scoped with *", kube.DownsyncPolicyClause{Namespaces: []string{"*"}}, true},
	}
	for _, tt := range tests {
		if got := matches(tt.cl, o); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
