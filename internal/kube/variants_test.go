package kube

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/variant"
)

func TestParseVariants(t *testing.T) {
	many := "[" + strings.Repeat(`{"name":"v","digest":"`+dg3+`"},`, MaxResolvedVariants) + `{"name":"w","digest":"` + dg3 + `"}]`
	tests := []struct {
		name, in string
		want     []v1alpha1.ModelVariant
		err      string
	}{
		{name: "none recorded", in: ""},
		{name: "an empty list", in: "[]"},
		{name: "as recorded", in: FormatVariants([]v1alpha1.ModelVariant{fp16, int8}), want: []v1alpha1.ModelVariant{fp16, int8}},
		{name: "unmeasured", in: `[{"name":"pruned","digest":"` + dg3 + `"}]`, want: []v1alpha1.ModelVariant{{Name: "pruned", Digest: dg3}}},
		{name: "fields to come are ignored", in: `[{"name":"int8","digest":"` + dg3 + `","latencyMicros":5}]`, want: []v1alpha1.ModelVariant{{Name: "int8", Digest: dg3}}},
		{name: "not JSON", in: `[{"name":`, err: "not a JSON list"},
		{name: "an object, not a list", in: `{"name":"int8"}`, err: "not a JSON list"},
		{name: "a size is a string", in: `[{"name":"int8","digest":"` + dg3 + `","sizeBytes":"1"}]`, err: "not a JSON list"},
		{name: "negative size", in: `[{"name":"int8","digest":"` + dg3 + `","sizeBytes":-1}]`, err: "negative size"},
		{name: "negative peak memory", in: `[{"name":"int8","digest":"` + dg3 + `","peakMemoryBytes":-5}]`, err: "negative size"},
		{name: "a digest that is not one", in: `[{"name":"int8","digest":"sha256:abc"}]`, err: `digest "sha256:abc" is not a sha256 digest`},
		{name: "no digest", in: `[{"name":"int8"}]`, err: "is not a sha256 digest"},
		{name: "another algorithm", in: `[{"name":"int8","digest":"sha512:` + strings.Repeat("a", 128) + `"}]`, err: "is not a sha256 digest"},
		{name: "a bad name", in: `[{"name":"INT 8","digest":"` + dg3 + `"}]`, err: "INT 8"},
		{name: "no name", in: `[{"digest":"` + dg3 + `"}]`, err: "[0]"},
		{name: "the original's name", in: `[{"name":"original","digest":"` + dg3 + `"}]`, err: "names the full model"},
		{name: "a name twice", in: `[{"name":"int8","digest":"` + dg3 + `"},{"name":"int8","digest":"` + dg4 + `"}]`, err: "listed twice"},
		{name: "accuracy not a decimal", in: `[{"name":"int8","digest":"` + dg3 + `","accuracy":"high"}]`, err: "accuracy"},
		{name: "accuracy above one", in: `[{"name":"int8","digest":"` + dg3 + `","accuracy":"1.5"}]`, err: "accuracy"},
		{name: "accuracy NaN", in: `[{"name":"int8","digest":"` + dg3 + `","accuracy":"NaN"}]`, err: "accuracy"},
		{name: "too many", in: many, err: "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVariants(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || got != nil {
					t.Fatalf("%+v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("%+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// resolvedWith is a deployment whose annotations record version 1.0.0 of
// 8 MiB (dg1) with the variants annotation value vs, under policy p.
func resolvedWith(vs string, p *v1alpha1.VariantPolicy) *v1alpha1.ModelDeployment {
	md := deployment("d")
	md.Annotations = Resolved{Version: "1.0.0", Digest: dg1, Size: 8 * mib}.annotations()
	md.Annotations[AnnotationResolvedVariants] = vs
	md.Spec.VariantPolicy = p
	return md
}

// The agent in a WEC chooses, for its own cluster, the variant the hub
// would: from the variants recorded on the deployment, with its facts.
func TestDesiredModelVariants(t *testing.T) {
	both := FormatVariants([]v1alpha1.ModelVariant{fp16, int8})
	quarter := &v1alpha1.VariantPolicy{MaxMemoryPercent: 25}
	small := variant.Facts{MemoryBytes: 16 * mib, CPUMillis: 2000}
	big := variant.Facts{MemoryBytes: 64 << 30}
	tests := []struct {
		name     string
		md       *v1alpha1.ModelDeployment
		facts    variant.Facts
		digest   string
		size     int64
		variant  string
		row      string // the row's variant
		reason   []string
		rowError string
	}{
		{name: "small memory: int8", md: resolvedWith(both, quarter), facts: small, digest: dg3, size: 2 * mib, variant: "int8", row: "int8",
			reason: []string{"int8: the most accurate that fits", "original needs at least its size, 8.0 MiB memory, limit 4.0 MiB (25% of 16.0 MiB)",
				"fp16 needs at least its size, 5.0 MiB memory, limit 4.0 MiB"}},
		{name: "big memory: the original", md: resolvedWith(both, quarter), facts: big, digest: dg1, size: 8 * mib, row: "original",
			reason: []string{"original: the most accurate that fits"}},
		{name: "memory unknown: nothing excluded", md: resolvedWith(both, quarter), digest: dg1, size: 8 * mib, row: "original",
			reason: []string{"memory limit not applied: the cluster reports no memory"}},
		{name: "a slow link", md: resolvedWith(both, &v1alpha1.VariantPolicy{MaxFetchTime: &metav1.Duration{Duration: 3 * time.Second}}),
			facts: variant.Facts{LinkBps: mib}, digest: dg3, size: 2 * mib, variant: "int8", row: "int8",
			reason: []string{"original takes 8s to fetch at 1.0 MiB/s, limit 3s"}},
		{name: "smallest preferred", md: resolvedWith(both, &v1alpha1.VariantPolicy{Prefer: "Smallest"}), facts: big,
			digest: dg3, size: 2 * mib, variant: "int8", row: "int8", reason: []string{"int8: the smallest that fits"}},
		{name: "only the original allowed", md: resolvedWith(both, &v1alpha1.VariantPolicy{MaxMemoryPercent: 25, Allowed: []string{"original"}}),
			facts: small, digest: dg1, size: 8 * mib, row: "original", reason: []string{"no allowed candidate fits the limits"}},
		{name: "variants but no policy: the most accurate", md: resolvedWith(both, nil), facts: small, digest: dg1, size: 8 * mib, row: "original"},
		{name: "a policy but no variants", md: resolvedWith("[]", quarter), facts: small, digest: dg1, size: 8 * mib, row: "original",
			reason: []string{"original: no allowed candidate fits the limits"}},
		{name: "no variants recorded, no policy: nothing chosen", md: resolvedWith("", nil), facts: small, digest: dg1, size: 8 * mib},
		{name: "bad JSON: the original, and why", md: resolvedWith(`[{"name":"int8",`, quarter), facts: small, digest: dg1, size: 8 * mib,
			row: "original", rowError: "annotation ml.outpost.dev/resolved-variants does not parse: not a JSON list"},
		{name: "a negative size: the original, and why", md: resolvedWith(`[{"name":"int8","digest":"`+dg3+`","sizeBytes":-2}]`, quarter), facts: small,
			digest: dg1, size: 8 * mib, row: "original", rowError: "negative size"},
		{name: "a digest that is not one: the original, and why", md: resolvedWith(`[{"name":"int8","digest":"md5:x"}]`, quarter), facts: small,
			digest: dg1, size: 8 * mib, row: "original", rowError: "not a sha256 digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, row, ok := DesiredModel(tt.md, tt.facts)
			if !ok {
				t.Fatal("no desired model")
			}
			if m.Version != "1.0.0" || m.Digest != tt.digest || m.SizeBytes != tt.size || m.Variant != tt.variant {
				t.Errorf("model %s %s %d variant %q; want 1.0.0 %s %d variant %q", m.Version, m.Digest, m.SizeBytes, m.Variant, tt.digest, tt.size, tt.variant)
			}
			if row.Variant != tt.row {
				t.Errorf("row variant %q, want %q (reason %q)", row.Variant, tt.row, row.Reason)
			}
			for _, r := range tt.reason {
				if !strings.Contains(row.Reason, r) {
					t.Errorf("reason %q lacks %q", row.Reason, r)
				}
			}
			if (tt.rowError == "") != (row.Error == "") || !strings.Contains(row.Error, tt.rowError) {
				t.Errorf("row error %q, want %q", row.Error, tt.rowError)
			}
			if row.Error != "" && (!strings.Contains(row.Error, "the original model is sent") || row.Reason != row.Error) {
				t.Errorf("row error %q, reason %q: want both to say the original is sent", row.Error, row.Reason)
			}
			if tt.row == "" && row != (VariantRow{}) {
				t.Errorf("row %+v, want nothing chosen", row)
			}
		})
	}
}

// The row the agent writes says which variant it was sent and why, which
// one it serves, and a variant error beside its own.
func TestAgentStatusVariant(t *testing.T) {
	md := resolvedWith(FormatVariants([]v1alpha1.ModelVariant{int8}), &v1alpha1.VariantPolicy{MaxMemoryPercent: 25})
	rep := v1alpha1.ModelReport{Deployment: "d", Model: "m", DesiredVersion: "1.0.0", ActiveVersion: "1.0.0", ActiveVariant: "int8", Phase: v1alpha1.PhaseActive}
	st := AgentStatus(md, "wec1", rep, VariantRow{Variant: "int8", Reason: "int8: the most accurate that fits"}, *at(0))
	r := st.Clusters[0]
	if r.Variant != "int8" || r.VariantReason != "int8: the most accurate that fits" || r.ActiveVariant != "int8" || r.Error != "" {
		t.Errorf("row %+v", r)
	}
	if !reflect.DeepEqual(st.ResolvedVariants, []v1alpha1.ModelVariant{int8}) {
		t.Errorf("resolved variants %+v", st.ResolvedVariants)
	}
	rep.Error = "fetch: link down"
	st = AgentStatus(md, "wec1", rep, VariantRow{Variant: "original", Reason: "bad", Error: "annotation bad"}, *at(0))
	if got := st.Clusters[0].Error; got != "fetch: link down; annotation bad" {
		t.Errorf("row error %q", got)
	}
}

// Switching variant within one version is not a downgrade: the agent of a
// WEC whose facts change moves between int8 and the original of 1.0.0
// without allowDowngrade, both ways.
func TestVariantSwitchIsNoDowngrade(t *testing.T) {
	md := resolvedWith(FormatVariants([]v1alpha1.ModelVariant{int8}), &v1alpha1.VariantPolicy{MaxMemoryPercent: 25})
	small, _ := DesiredState("wec1", 10, []v1alpha1.ModelDeployment{*md}, variant.Facts{MemoryBytes: 16 * mib})
	big, _ := DesiredState("wec1", 11, []v1alpha1.ModelDeployment{*md}, variant.Facts{MemoryBytes: 1 << 30})
	if small.Models[0].Variant != "int8" || big.Models[0].Variant != "" {
		t.Fatalf("variants %q and %q, want int8 and the original", small.Models[0].Variant, big.Models[0].Variant)
	}
	for _, tt := range []struct {
		name       string
		active     v1alpha1.DesiredModel
		doc        *v1alpha1.DesiredState
		appliedRev int64
	}{
		{"int8 to the original", small.Models[0], big, 10},
		{"the original to int8", big.Models[0], small, 9},
	} {
		applied := agent.Applied{Cluster: "wec1", Revision: tt.appliedRev, Active: map[string]agent.Deployed{
			"d": {Model: tt.active.Model, Version: tt.active.Version, Digest: tt.active.Digest}}}
		dec := agent.Decide(applied, tt.doc, SourceWEC)
		if dec.Verdict != agent.Apply || len(dec.Plans) != 1 {
			t.Fatalf("%s: %+v", tt.name, dec)
		}
		if p := dec.Plans[0]; p.Step != agent.StepFetch || p.Downgrade || !p.VariantSwitch {
			t.Errorf("%s: step %v downgrade %v switch %v; want a fetch, a variant switch, no downgrade", tt.name, p.Step, p.Downgrade, p.VariantSwitch)
		}
	}
}

// The WEC chooses with the facts it was given, and keeps the ones it chose
// with until they move enough to matter.
func TestWECFacts(t *testing.T) {
	w := &WEC{}
	if f := w.factsNow(); f != (variant.Facts{}) {
		t.Fatalf("facts %+v before SetFacts", f)
	}
	now := variant.Facts{MemoryBytes: 16 * mib, LinkBps: 1000}
	w.SetFacts(func() variant.Facts { return now })
	for _, tt := range []struct {
		name       string
		now, using variant.Facts
	}{
		{"the first facts", now, now},
		{"the link wobbles", variant.Facts{MemoryBytes: 16 * mib, LinkBps: 1400}, now},
		{"the link halves", variant.Facts{MemoryBytes: 16 * mib, LinkBps: 500}, variant.Facts{MemoryBytes: 16 * mib, LinkBps: 500}},
		{"the memory changes", variant.Facts{MemoryBytes: 32 * mib, LinkBps: 600}, variant.Facts{MemoryBytes: 32 * mib, LinkBps: 600}},
	} {
		now = tt.now
		if got := w.factsNow(); got != tt.using {
			t.Errorf("%s: choosing with %+v, want %+v", tt.name, got, tt.using)
		}
	}
}

// listingRegistry resolves every constraint to 1.0.0 with its variants:
// int8 alone when only signed ones count.
type listingRegistry struct {
	signed []bool
}

func (l *listingRegistry) Resolve(_ context.Context, _, _ string, requireSigned bool) (Resolved, error) {
	l.signed = append(l.signed, requireSigned)
	vs := []v1alpha1.ModelVariant{fp16, int8}
	if requireSigned {
		vs = []v1alpha1.ModelVariant{int8}
	}
	return Resolved{Version: "1.0.0", Digest: dg1, Size: 8 * mib, Variants: vs}, nil
}

// The controller resolves with the signature requirement it is given (the
// deployment's or its own), and keeps the answers with and without apart.
func TestResolveListsVariants(t *testing.T) {
	reg := &listingRegistry{}
	r := &deploymentReconciler{cfg: ControllerConfig{Resolver: reg, Resync: time.Minute}, clock: clock.Real()}
	ctx := t.Context()
	for range 2 {
		all, err := r.resolve(ctx, "m", "^1", false)
		if err != nil || !reflect.DeepEqual(all.Variants, []v1alpha1.ModelVariant{fp16, int8}) {
			t.Fatalf("unsigned: %+v, %v", all, err)
		}
		signed, err := r.resolve(ctx, "m", "^1", true)
		if err != nil || !reflect.DeepEqual(signed.Variants, []v1alpha1.ModelVariant{int8}) {
			t.Fatalf("signed: %+v, %v", signed, err)
		}
	}
	if !reflect.DeepEqual(reg.signed, []bool{false, true}) {
		t.Fatalf("registry asked %v, want once without signatures and once with", reg.signed)
	}
}
