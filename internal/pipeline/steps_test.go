package pipeline

import (
	"strings"
	"testing"

	"github.com/Masterminds/semver/v3"

	"outpost.dev/outpost/api/v1alpha1"
)

// Every step type of the API has an implementation, and every
// implementation a step type of the API.
func TestStepTypeTable(t *testing.T) {
	impls := stepTypes()
	for _, info := range v1alpha1.StepTypes() {
		impl, ok := impls[info.Type]
		if !ok || impl.run == nil {
			t.Errorf("step type %s has no implementation", info.Type)
		}
	}
	for typ := range impls {
		if _, ok := v1alpha1.LookupStepType(typ); !ok {
			t.Errorf("implementation of %s, a step type the API does not know", typ)
		}
	}
}

func TestNextVersion(t *testing.T) {
	for _, tc := range []struct {
		base string
		run  int64
		want string
	}{
		{"fashion@1.2.0", 7, "1.2.1-edge.7"},
		{"fashion@1.3.0-rc.1", 7, "1.3.0-rc.1.edge.7"},
		{"fashion@1.2.1-edge.4", 7, "1.2.1-edge.7"},
		{"fashion@1.2.1-edge.9", 7, "1.2.1-edge.9.edge.7"},
		{"fashion@1.2.0+build.5", 3, "1.2.1-edge.3"},
		{"sha256:" + "ab", 2, "0.1.0-edge.2"},
		{"", 1, "0.1.0-edge.1"},
		{"fashion@latest", 1, "0.1.0-edge.1"},
	} {
		got := NextVersion(tc.base, tc.run)
		if got != tc.want {
			t.Errorf("NextVersion(%q, %d) = %s, want %s", tc.base, tc.run, got, tc.want)
		}
		if _, v, ok := cutVersion(tc.base); ok && !versionAbove(got, v) {
			t.Errorf("NextVersion(%q, %d) = %s does not sort above %s", tc.base, tc.run, got, v)
		}
	}
}

func cutVersion(base string) (string, string, bool) {
	n, v, ok := strings.Cut(base, "@")
	if !ok {
		return "", "", false
	}
	if _, err := semver.StrictNewVersion(v); err != nil {
		return "", "", false
	}
	return n, v, true
}

func versionAbove(a, b string) bool {
	va, err := semver.StrictNewVersion(a)
	if err != nil {
		return false
	}
	vb, err := semver.StrictNewVersion(b)
	if err != nil {
		return false
	}
	return va.GreaterThan(vb)
}
