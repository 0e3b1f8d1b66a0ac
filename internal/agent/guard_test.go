package agent

import (
	"encoding/json"
	"strings"
	"testing"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/versions"
)

const (
	dgA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	dgB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	dgC = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
)

func doc(rev int64, models ...v1alpha1.DesiredModel) *v1alpha1.DesiredState {
	return &v1alpha1.DesiredState{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindDesiredState, Cluster: "edge-1", Revision: rev, Models: models}
}

func dm(dep, model, version, dg string, allowDowngrade bool) v1alpha1.DesiredModel {
	return v1alpha1.DesiredModel{Deployment: dep, Model: model, Version: version, Digest: dg, AllowDowngrade: allowDowngrade}
}

func TestDecideRevision(t *testing.T) {
	applied := Applied{Cluster: "edge-1", Revision: 10, Active: map[string]Deployed{
		"d": {Model: "m", Version: "2.0.0", Digest: dgB},
	}}
	tests := []struct {
		name   string
		doc    *v1alpha1.DesiredState
		src    Source
		want   Verdict
		reason string
	}{
		{"stale from network", doc(9, dm("d", "m", "3.0.0", dgC, false)), SourceNetwork, RejectStale, "revision 9 from network is older than applied revision 10"},
		{"stale from bundle", doc(3, dm("d", "m", "3.0.0", dgC, false)), SourceBundle, RejectStale, "from bundle"},
		{"same revision is a no-op", doc(10, dm("d", "m", "3.0.0", dgC, false)), SourceNetwork, Unchanged, ""},
		{"newer applies", doc(11, dm("d", "m", "3.0.0", dgC, false)), SourceBundle, Apply, ""},
		{"other cluster", &v1alpha1.DesiredState{Kind: v1alpha1.KindDesiredState, Cluster: "edge-2", Revision: 11}, SourceNetwork, RejectInvalid, `for cluster "edge-2"`},
		{"wrong kind", &v1alpha1.DesiredState{Kind: "Cluster", Cluster: "edge-1", Revision: 11}, SourceNetwork, RejectInvalid, "kind"},
		{"bad digest", doc(11, dm("d", "m", "3.0.0", "sha256:zz", false)), SourceNetwork, RejectInvalid, "not a sha256 digest"},
		{"bad version", doc(11, dm("d", "m", "latest", dgC, false)), SourceNetwork, RejectInvalid, "invalid version"},
		{"bad model name", doc(11, dm("d", "M/../x", "1.0.0", dgC, false)), SourceNetwork, RejectInvalid, "invalid model name"},
		{"duplicate deployment", doc(11, dm("d", "m", "3.0.0", dgC, false), dm("d", "m", "3.0.0", dgC, false)), SourceNetwork, RejectInvalid, "listed twice"},
		{"stale but invalid is invalid", doc(1, dm("", "m", "3.0.0", dgC, false)), SourceNetwork, RejectInvalid, "empty deployment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Decide(applied, tt.doc, tt.src)
			if d.Verdict != tt.want {
				t.Fatalf("verdict %v (%s), want %v", d.Verdict, d.Reason, tt.want)
			}
			if !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("reason %q lacks %q", d.Reason, tt.reason)
			}
			if tt.want != Apply && d.Plans != nil {
				t.Errorf("rejected document has plans %+v", d.Plans)
			}
		})
	}
}

func TestPlanModels(t *testing.T) {
	active := map[string]Deployed{
		"up":    {Model: "m", Version: "1.0.0", Digest: dgA},
		"same":  {Model: "m", Version: "1.0.0", Digest: dgA},
		"down":  {Model: "m", Version: "2.0.0", Digest: dgB},
		"downo": {Model: "m", Version: "2.0.0", Digest: dgB},
		"swap":  {Model: "m", Version: "2.0.0", Digest: dgB},
		"gone":  {Model: "m", Version: "2.0.0", Digest: dgB},
		"redig": {Model: "m", Version: "1.0.0", Digest: dgA},
		// Variants: int8 of 2.0.0 (dgB) active; another variant of it, or a smaller
		// variant of a lower version.
		"tofp16":  {Model: "m", Version: "2.0.0", Digest: dgB},
		"tolower": {Model: "m", Version: "2.0.0", Digest: dgB},
	}
	want := []v1alpha1.DesiredModel{
		dm("up", "m", "1.1.0", dgB, false),
		dm("same", "m", "1.0.0", dgA, false),
		dm("down", "m", "1.0.0", dgA, false),
		dm("downo", "m", "1.0.0", dgA, true),
		dm("swap", "other", "1.0.0", dgC, false),
		dm("new", "m", "1.0.0", dgA, false),
		dm("redig", "m", "1.0.0", dgC, false),
		variantOf(dm("tofp16", "m", "2.0.0", dgC, false), "fp16"),
		variantOf(dm("tolower", "m", "1.0.0", dgA, false), "int8"),
	}
	plans := PlanModels(active, want)
	got := map[string]ModelPlan{}
	for i, p := range plans {
		got[p.Deployment] = p
		if i > 0 && plans[i-1].Deployment >= p.Deployment {
			t.Errorf("plans not sorted: %s before %s", plans[i-1].Deployment, p.Deployment)
		}
	}
	tests := []struct {
		dep       string
		step      Step
		downgrade bool
		err       string
		switched  bool
	}{
		{"up", StepFetch, false, "", false},
		{"same", StepNone, false, "", false},
		{"down", StepRefuse, false, "downgrade from 2.0.0 to 1.0.0 refused: allowDowngrade is false", false},
		{"downo", StepFetch, true, "", false},
		{"swap", StepFetch, false, "", false},
		{"new", StepFetch, false, "", false},
		{"gone", StepRemove, false, "", false},
		{"redig", StepFetch, false, "", true},
		{"tofp16", StepFetch, false, "", true},
		{"tolower", StepRefuse, false, "downgrade from 2.0.0 to 1.0.0 refused: allowDowngrade is false", false},
	}
	if len(plans) != len(tests) {
		t.Fatalf("got %d plans, want %d: %+v", len(plans), len(tests), plans)
	}
	for _, tt := range tests {
		p, ok := got[tt.dep]
		if !ok {
			t.Errorf("%s: no plan", tt.dep)
			continue
		}
		if p.Step != tt.step || p.Downgrade != tt.downgrade || p.Error != tt.err || p.VariantSwitch != tt.switched {
			t.Errorf("%s: got step %v downgrade %v err %q switch %v, want %v %v %q %v", tt.dep, p.Step, p.Downgrade, p.Error, p.VariantSwitch,
				tt.step, tt.downgrade, tt.err, tt.switched)
		}
	}
}

func variantOf(m v1alpha1.DesiredModel, variant string) v1alpha1.DesiredModel {
	m.Variant = variant
	return m
}

func TestValidateDesiredStateVariant(t *testing.T) {
	for variant, want := range map[string]string{"": "", "original": "", "int8": "", "fp16.v2": "", "INT8": `variant name "INT8"`, "a b": `variant name "a b"`} {
		err := ValidateDesiredState(doc(1, variantOf(dm("d", "m", "1.0.0", dgA, false), variant)), "")
		if (err == nil) != (want == "") || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("variant %q: %v, want %q", variant, err, want)
		}
	}
}

func TestPlanModelPrerelease(t *testing.T) {
	// 1.0.0-rc.1 is lower than 1.0.0: a downgrade.
	p := PlanModel(Deployed{Model: "m", Version: "1.0.0", Digest: dgA}, dm("d", "m", "1.0.0-rc.1", dgB, false))
	if p.Step != StepRefuse {
		t.Fatalf("step %v, want refuse", p.Step)
	}
}

// FuzzDecide feeds arbitrary desired state documents to the guard: it must
// never apply an older revision, and never plan a fetch of a lower version
// of the active model without allowDowngrade.
func FuzzDecide(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"ml.outpost.dev/v1alpha1","kind":"DesiredState","cluster":"edge-1","revision":11,"models":[{"deployment":"d","model":"m","version":"1.0.0","digest":"` + dgA + `"}]}`))
	f.Add([]byte(`{"cluster":"edge-1","revision":3,"models":[]}`))
	f.Add([]byte(`{"cluster":"edge-1","revision":13,"models":[{"deployment":"d","model":"m","version":"2.0.0","variant":"int8","digest":"` + dgC + `"}]}`))
	f.Add([]byte(`{"cluster":"edge-1","revision":14,"models":[{"deployment":"d","model":"m","version":"1.0.0","variant":"int8","digest":"` + dgC + `"}]}`))
	f.Add([]byte(`{"cluster":"edge-1","revision":12,"models":[{"deployment":"d","model":"m","version":"2.0.0-rc.1","digest":"` + dgC + `","allowDowngrade":true}]}`))
	applied := Applied{Cluster: "edge-1", Revision: 10, Active: map[string]Deployed{"d": {Model: "m", Version: "2.0.0", Digest: dgB}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ds v1alpha1.DesiredState
		if json.Unmarshal(b, &ds) != nil {
			return
		}
		d := Decide(applied, &ds, SourceNetwork)
		if d.Verdict == Apply && ds.Revision <= applied.Revision {
			t.Fatalf("applied revision %d over %d", ds.Revision, applied.Revision)
		}
		for _, p := range d.Plans {
			if p.Step != StepFetch || p.Active.Digest == "" || p.Want.Model != p.Active.Model || p.Want.AllowDowngrade {
				continue
			}
			c, err := versions.Compare(p.Want.Version, p.Active.Version)
			if err != nil || c < 0 {
				t.Fatalf("planned a downgrade from %s to %s without allowDowngrade", p.Active.Version, p.Want.Version)
			}
			if p.VariantSwitch != (c == 0) || p.VariantSwitch && p.Downgrade {
				t.Fatalf("another artifact of version %s: switch %v, downgrade %v", p.Want.Version, p.VariantSwitch, p.Downgrade)
			}
		}
	})
}

// TestPlanModelLocal: a version produced on this cluster stays active until
// the hub desires a higher version of the same model, whatever the
// deployment allows.
func TestPlanModelLocal(t *testing.T) {
	local := Deployed{Model: "m", Version: "1.0.1-edge.3", Digest: dgB, Local: true}
	for _, tc := range []struct {
		name string
		want v1alpha1.DesiredModel
		step Step
	}{
		{"the base version", dm("d", "m", "1.0.0", dgA, false), StepKeepLocal},
		{"the base version, downgrades allowed", dm("d", "m", "1.0.0", dgA, true), StepKeepLocal},
		{"a patch release of the base above the edge prerelease", dm("d", "m", "1.0.1", dgC, false), StepFetch},
		{"the promoted version", dm("d", "m", "1.1.0", dgC, false), StepFetch},
		{"the same digest", dm("d", "m", "1.0.1-edge.3", dgB, false), StepNone},
		{"another model", dm("d", "other", "0.1.0", dgC, false), StepFetch},
	} {
		if p := PlanModel(local, tc.want); p.Step != tc.step {
			t.Errorf("%s: step %v, want %v", tc.name, p.Step, tc.step)
		}
	}
	// The same active version not marked local is refused, as any downgrade.
	notLocal := local
	notLocal.Local = false
	if p := PlanModel(notLocal, dm("d", "m", "1.0.0", dgA, false)); p.Step != StepRefuse {
		t.Errorf("hub-sent version: step %v, want refuse", p.Step)
	}
}

func TestPlanLocal(t *testing.T) {
	active := Deployed{Model: "m", Version: "1.0.0", Digest: dgA}
	for _, tc := range []struct {
		name           string
		active         Deployed
		model, version string
		want           string // part of the refusal; "" means allowed
	}{
		{"higher", active, "m", "1.0.1-edge.1", ""},
		{"nothing active", Deployed{}, "m", "0.0.1-edge.1", ""},
		{"same version", active, "m", "1.0.0", "not higher"},
		{"lower", active, "m", "0.9.0", "never goes backwards"},
		{"prerelease of the active", active, "m", "1.0.0-edge.1", "not higher"},
		{"another model", active, "n", "2.0.0", "serves model m, not n"},
		{"unordered", active, "m", "latest", "cannot order"},
	} {
		got := PlanLocal(tc.active, "m", tc.model, tc.version)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: PlanLocal = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestPlanRollback checks that a downgrade passes the guard only with
// allowDowngrade or the hub's rollback mark naming the active version and a
// reason; any other mark leaves the downgrade refused.
func TestPlanRollback(t *testing.T) {
	active := Deployed{Model: "m", Version: "2.0.0", Digest: dgB}
	mark := func(from, reason string) v1alpha1.DesiredModel {
		m := dm("d", "m", "1.0.0", dgA, false)
		m.Rollback = &v1alpha1.Rollback{From: []string{"1.5.0", from}, Reason: reason}
		return m
	}
	tests := []struct {
		name     string
		want     v1alpha1.DesiredModel
		step     Step
		rollback string
	}{
		{"unmarked downgrade is refused", dm("d", "m", "1.0.0", dgA, false), StepRefuse, ""},
		{"marked rollback from the active version", mark("2.0.0", "gate failed on edge-1: serving: bad model"), StepFetch, "gate failed on edge-1: serving: bad model"},
		{"mark names another version", mark("3.0.0", "gate failed"), StepRefuse, ""},
		{"mark without a reason", mark("2.0.0", "  "), StepRefuse, ""},
		{"mark without a version", mark("", "gate failed"), StepRefuse, ""},
		{"allowDowngrade needs no mark", dm("d", "m", "1.0.0", dgA, true), StepFetch, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PlanModel(active, tt.want)
			if p.Step != tt.step || p.Rollback != tt.rollback {
				t.Fatalf("step %v rollback %q, want %v %q (error %q)", p.Step, p.Rollback, tt.step, tt.rollback, p.Error)
			}
			if tt.step == StepFetch && !p.Downgrade {
				t.Errorf("a downgrade that passes is not reported as one")
			}
			if tt.step == StepRefuse && !strings.Contains(p.Error, "refused") {
				t.Errorf("refusal %q does not say so", p.Error)
			}
		})
	}
	// An upgrade ignores a stale mark.
	up := mark("2.0.0", "old reason")
	up.Version, up.Digest = "2.1.0", dgC
	if p := PlanModel(active, up); p.Step != StepFetch || p.Downgrade || p.Rollback != "" {
		t.Errorf("upgrade with a mark: %+v", p)
	}
}
