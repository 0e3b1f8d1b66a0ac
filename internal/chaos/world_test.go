package chaos

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"outpost.dev/outpost/internal/versions"
)

// Matches agrees with the hub's own resolver on every form a plan draws.
func TestMatchesAgreesWithVersions(t *testing.T) {
	var vs []string
	for mi := range 6 {
		for pa := range 3 {
			vs = append(vs, fmt.Sprintf("1.%d.%d", mi, pa))
		}
	}
	cs := []string{"^1", "1.x", "~1.0", "~1.3", "~1.7", ">=1.2.0 <1.4.0", ">=1.0.0 <1.2.0", "1.2.1", "1.9.0"}
	for _, c := range cs {
		for _, v := range vs {
			want, err := versions.Match(c, v)
			if err != nil {
				t.Fatal(err)
			}
			if got := Matches(c, v); got != want {
				t.Errorf("Matches(%q, %q) = %v, versions.Match says %v", c, v, got, want)
			}
		}
	}
}

func TestCompareVersions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		a := fmt.Sprintf("1.%d.%d", rng.IntN(12), rng.IntN(12))
		b := fmt.Sprintf("1.%d.%d", rng.IntN(12), rng.IntN(12))
		want, err := versions.Compare(a, b)
		if err != nil {
			t.Fatal(err)
		}
		if got := CompareVersions(a, b); got != want {
			t.Errorf("CompareVersions(%s, %s) = %d, want %d", a, b, got, want)
		}
	}
	if CompareVersions("x", "1.0.0") >= 0 || CompareVersions("1.0.0", "x") <= 0 || CompareVersions("x", "y") != 0 {
		t.Error("versions that do not parse should order below those that do")
	}
}

func TestWorldDesired(t *testing.T) {
	w := NewWorld(3) // edge-0 north/edge, edge-1 south/store, edge-2 east/edge
	w.Push("m", "1.0.0")
	w.Push("m", "1.1.0")
	w.Push("m", "1.0.1")
	w.Push("n", "1.0.0")
	w.Sign("m", "1.0.0")
	d0 := Deployment{Name: "d0", Model: "m", Version: "^1", Selector: map[string]string{}}
	d1 := Deployment{Name: "d1", Model: "m", Version: "~1.0", Selector: map[string]string{"tier": "edge"}, AllowDowngrade: true}
	d2 := Deployment{Name: "d2", Model: "m", Version: "^1", Selector: map[string]string{"region": "south"}, RequireSignature: true}
	for _, d := range []Deployment{d0, d1, d2} {
		if _, ok := w.Resolve(d); !ok {
			t.Fatalf("%s does not resolve", d)
		}
		w.Apply(d)
	}
	if _, ok := w.Resolve(Deployment{Model: "m", Version: "1.5.0"}); ok {
		t.Error("an unpushed version resolved")
	}
	if _, ok := w.Resolve(Deployment{Model: "n", Version: "^1", RequireSignature: true}); ok {
		t.Error("an unsigned version resolved for a deployment requiring signatures")
	}
	check := func(agent int, want map[string]Want) {
		t.Helper()
		got := w.Desired(agent)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("agent %d: Desired = %v, want %v", agent, got, want)
		}
	}
	check(0, map[string]Want{"d0": {Model: "m", Version: "1.1.0"}, "d1": {Model: "m", Version: "1.0.1", AllowDowngrade: true}})
	check(1, map[string]Want{"d0": {Model: "m", Version: "1.1.0"}, "d2": {Model: "m", Version: "1.0.0"}})
	w.Sign("m", "1.1.0")
	check(1, map[string]Want{"d0": {Model: "m", Version: "1.1.0"}, "d2": {Model: "m", Version: "1.1.0"}})
	w.Relabel(1, map[string]string{"region": "north", "tier": "edge"})
	check(1, map[string]Want{"d0": {Model: "m", Version: "1.1.0"}, "d1": {Model: "m", Version: "1.0.1", AllowDowngrade: true}})
	w.DeleteCluster(1)
	if got := w.Labels(1); got["region"] != "south" || got["tier"] != "store" {
		t.Errorf("a deleted cluster joins again with %v", got)
	}
	w.DeleteDeployment("d0")
	check(2, map[string]Want{"d1": {Model: "m", Version: "1.0.1", AllowDowngrade: true}})
}
