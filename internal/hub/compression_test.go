package hub

import (
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"outpost.dev/outpost/api/v1alpha1"
)

func TestCompressionWork(t *testing.T) {
	policy := func(name string, models []string, rows ...v1alpha1.CompressedVersion) *v1alpha1.CompressionPolicy {
		return &v1alpha1.CompressionPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
			Spec: v1alpha1.CompressionPolicySpec{Models: models}, Status: v1alpha1.CompressionPolicyStatus{Versions: rows}}
	}
	row := func(model, version string, ph v1alpha1.CompressionPhase) v1alpha1.CompressedVersion {
		return v1alpha1.CompressedVersion{Model: model, Version: version, Phase: ph}
	}
	a1, a2, b1 := ModelVersion{"a", "1.0.0", "sha256:a1"}, ModelVersion{"a", "2.0.0", "sha256:a2"}, ModelVersion{"team/b", "1.0.0", "sha256:b1"}
	all := []ModelVersion{a1, a2, b1}
	task := func(p string, v ModelVersion) compressionTask {
		return compressionTask{policy: p, uid: "uid-" + p, version: v}
	}
	deleting := policy("gone", []string{"*"})
	deleting.DeletionTimestamp = &metav1.Time{}
	tests := []struct {
		name     string
		policies []*v1alpha1.CompressionPolicy
		versions []ModelVersion
		want     []compressionTask
	}{
		{"no policy", nil, all, nil},
		{"no version", []*v1alpha1.CompressionPolicy{policy("p", []string{"*"})}, nil, nil},
		{"every model", []*v1alpha1.CompressionPolicy{policy("p", []string{"*"})}, all,
			[]compressionTask{task("p", a1), task("p", a2), task("p", b1)}},
		{"named model", []*v1alpha1.CompressionPolicy{policy("p", []string{"team/b"})}, all, []compressionTask{task("p", b1)}},
		{"no matching model", []*v1alpha1.CompressionPolicy{policy("p", []string{"c", "team"})}, all, nil},
		{"done and failed are not redone", []*v1alpha1.CompressionPolicy{policy("p", []string{"a"},
			row("a", "1.0.0", v1alpha1.CompressionDone), row("a", "2.0.0", v1alpha1.CompressionFailed))}, all, nil},
		{"a new version after a failure", []*v1alpha1.CompressionPolicy{policy("p", []string{"a"},
			row("a", "1.0.0", v1alpha1.CompressionFailed))}, all, []compressionTask{task("p", a2)}},
		{"compressing when cut short is redone", []*v1alpha1.CompressionPolicy{policy("p", []string{"a"},
			row("a", "1.0.0", v1alpha1.CompressionCompressing), row("a", "2.0.0", v1alpha1.CompressionDone))}, all,
			[]compressionTask{task("p", a1)}},
		{"rows of another model do not count", []*v1alpha1.CompressionPolicy{policy("p", []string{"a"},
			row("team/b", "1.0.0", v1alpha1.CompressionDone))}, all, []compressionTask{task("p", a1), task("p", a2)}},
		{"each policy by its own rows, in name order", []*v1alpha1.CompressionPolicy{
			policy("z", []string{"a"}), policy("m", []string{"a"}, row("a", "1.0.0", v1alpha1.CompressionDone))}, all,
			[]compressionTask{task("m", a2), task("z", a1), task("z", a2)}},
		{"a policy being deleted", []*v1alpha1.CompressionPolicy{deleting}, all, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := compressionWork(tt.policies, tt.versions)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("compressionWork = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSetCompressed(t *testing.T) {
	row := func(model, version string, ph v1alpha1.CompressionPhase) v1alpha1.CompressedVersion {
		return v1alpha1.CompressedVersion{Model: model, Version: version, Phase: ph}
	}
	rows := []v1alpha1.CompressedVersion{row("a", "1.0.0", v1alpha1.CompressionDone), row("a", "2.0.0", v1alpha1.CompressionCompressing)}
	tests := []struct {
		name    string
		row     v1alpha1.CompressedVersion
		present func(model, version string) bool
		want    []v1alpha1.CompressedVersion
	}{
		{"replaces its version's row", row("a", "2.0.0", v1alpha1.CompressionFailed), nil,
			[]v1alpha1.CompressedVersion{rows[0], row("a", "2.0.0", v1alpha1.CompressionFailed)}},
		{"appends a new version", row("a", "3.0.0", v1alpha1.CompressionCompressing), nil,
			append(rows[:2:2], row("a", "3.0.0", v1alpha1.CompressionCompressing))},
		{"drops deleted versions", row("a", "3.0.0", v1alpha1.CompressionCompressing),
			func(_, v string) bool { return v != "1.0.0" },
			[]v1alpha1.CompressedVersion{rows[1], row("a", "3.0.0", v1alpha1.CompressionCompressing)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]v1alpha1.CompressedVersion(nil), rows...)
			got := setCompressed(in, tt.row, tt.present)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("setCompressed = %+v, want %+v", got, tt.want)
			}
			if !reflect.DeepEqual(in, rows) {
				t.Errorf("setCompressed changed its input: %+v", in)
			}
		})
	}
}
