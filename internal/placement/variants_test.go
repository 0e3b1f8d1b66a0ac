package placement

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/variant"
)

const (
	fullDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	int8Digest = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	fp16Digest = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	oldDigest  = "sha256:4444444444444444444444444444444444444444444444444444444444444444"
	mib        = 1 << 20
)

// sized is a cluster with memory (declared or measured) and a link rate.
func sized(name string, declared, measured string, linkBps int64) v1alpha1.Cluster {
	c := cluster(name, map[string]string{"tier": "edge"})
	if declared != "" {
		q := resource.MustParse(declared)
		c.Spec.Capacity = &v1alpha1.Capacity{Memory: &q}
	}
	if measured != "" {
		q := resource.MustParse(measured)
		c.Status.Capacity.Memory = &q
	}
	c.Status.Link.BandwidthBps = linkBps
	return c
}

// Each cluster gets the variant of the resolved version that fits its memory and link, and
// the reason; the original and the variants are chosen among alike.
func TestDesiredStatesVariants(t *testing.T) {
	clusters := []v1alpha1.Cluster{
		sized("big", "", "16Gi", 100*mib),   // everything fits: the original
		sized("small", "", "1Gi", 100*mib),  // 25% of 1 GiB: int8 only
		sized("declared", "2Gi", "64Gi", 0), // the declared memory wins; link unknown
		sized("slow", "", "16Gi", 1*mib),    // 10m at 1 MiB/s: 600 MiB at most
		sized("unknown", "", "", 0),         // nothing known: nothing excluded
	}
	d := deployment("fashion", "fashion", false, metav1.LabelSelector{})
	d.Spec.VariantPolicy = &v1alpha1.VariantPolicy{MaxMemoryPercent: 25, MaxFetchTime: &metav1.Duration{Duration: 10 * time.Minute}}
	res := Resolution{Version: "1.2.0", Digest: fullDigest, SizeBytes: 900 * mib, Variants: []v1alpha1.ModelVariant{
		{Name: "fp16", Digest: fp16Digest, SizeBytes: 450 * mib, PeakMemoryBytes: 480 * mib, Accuracy: "0.909"},
		{Name: "int8", Digest: int8Digest, SizeBytes: 230 * mib, PeakMemoryBytes: 250 * mib, Accuracy: "0.88"},
	}}
	a, err := DesiredStates([]v1alpha1.ModelDeployment{d}, clusters, map[string]Resolution{"fashion": res}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		cluster, variant, digest string
		size                     int64
		reason                   string
	}{
		{"big", "", fullDigest, 900 * mib, "original: the most accurate that fits"},
		{"small", "int8", int8Digest, 230 * mib, "int8: the most accurate that fits (accuracy 0.88); original needs at least its size, 900.0 MiB memory, limit 256.0 MiB (25% of 1.0 GiB); fp16 needs 480.0 MiB memory"},
		{"declared", "fp16", fp16Digest, 450 * mib, "fetch time limit not applied: the cluster's link rate is unknown"},
		{"slow", "fp16", fp16Digest, 450 * mib, "original takes 15m0s to fetch at 1.0 MiB/s, limit 10m0s"},
		{"unknown", "", fullDigest, 900 * mib, "memory limit not applied: the cluster reports no memory"},
	} {
		ms := a.Models[tt.cluster]
		if len(ms) != 1 || ms[0].Variant != tt.variant || ms[0].Digest != tt.digest || ms[0].SizeBytes != tt.size || ms[0].Version != "1.2.0" {
			t.Errorf("%s: got %+v, want variant %q %s", tt.cluster, ms, tt.variant, tt.digest)
			continue
		}
		ch := a.Variants["fashion"][tt.cluster]
		want := tt.variant
		if want == "" {
			want = "original"
		}
		if ch.Name != want || ch.SizeBytes != tt.size || !strings.Contains(ch.Reason, tt.reason) {
			t.Errorf("%s: choice %+v, want %s with a reason saying %q", tt.cluster, ch, want, tt.reason)
		}
	}
}

// During a rollout a cluster keeps the stable version with the stable version's variants: it
// is never given another version for a smaller variant, and the resolved version's variants
// do not apply to it.
func TestDesiredStatesVariantsInRollout(t *testing.T) {
	clusters := []v1alpha1.Cluster{sized("waiting", "", "1Gi", 0), sized("canary", "", "1Gi", 0)}
	d := deployment("fashion", "fashion", false, metav1.LabelSelector{})
	d.Spec.VariantPolicy = &v1alpha1.VariantPolicy{MaxMemoryPercent: 25}
	res := Resolution{Version: "1.2.0", Digest: fullDigest, SizeBytes: 900 * mib,
		Variants: []v1alpha1.ModelVariant{{Name: "int8", Digest: int8Digest, SizeBytes: 230 * mib}},
		Cluster: func(name string) (ClusterVersion, bool) {
			if name == "waiting" { // the stable version, which has no variants
				return ClusterVersion{Version: "1.1.0", Digest: oldDigest, SizeBytes: 900 * mib}, true
			}
			return ClusterVersion{Version: "1.2.0", Digest: fullDigest, SizeBytes: 900 * mib}, true
		}}
	a, err := DesiredStates([]v1alpha1.ModelDeployment{d}, clusters, map[string]Resolution{"fashion": res}, false)
	if err != nil {
		t.Fatal(err)
	}
	if m := a.Models["waiting"][0]; m.Version != "1.1.0" || m.Digest != oldDigest || m.Variant != "" {
		t.Errorf("the waiting cluster got %+v, want 1.1.0's original", m)
	}
	if ch := a.Variants["fashion"]["waiting"]; ch.Name != "original" || ch.Reason == "" || !strings.Contains(ch.Reason, "the smallest is sent") {
		t.Errorf("the waiting cluster's choice: %+v", ch)
	}
	if m := a.Models["canary"][0]; m.Version != "1.2.0" || m.Digest != int8Digest || m.Variant != "int8" {
		t.Errorf("the canary got %+v, want 1.2.0's int8", m)
	}
}

// A deployment without a policy whose version has no variants gets no choice at all: its
// desired state is what it was before variants existed.
func TestDesiredStatesNoVariants(t *testing.T) {
	d := deployment("fashion", "fashion", false, metav1.LabelSelector{})
	a, err := DesiredStates([]v1alpha1.ModelDeployment{d}, []v1alpha1.Cluster{sized("a", "", "1Gi", 0)},
		map[string]Resolution{"fashion": {Version: "1.0.0", Digest: fullDigest, SizeBytes: 10}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Variants) != 0 || a.Models["a"][0].Variant != "" || a.Models["a"][0].Digest != fullDigest {
		t.Errorf("variants %+v, models %+v", a.Variants, a.Models)
	}
}

func TestClusterFacts(t *testing.T) {
	c := sized("a", "2Gi", "8Gi", 5000)
	cpu, gpus := resource.MustParse("1500m"), []v1alpha1.Accelerator{{Type: "nvidia.com/gpu", Count: 2}, {Type: "google.com/tpu", Count: 1}}
	c.Status.Capacity.CPU, c.Status.Capacity.Accelerators = &cpu, gpus
	f := ClusterFacts(&c)
	if f.MemoryBytes != 2<<30 || f.CPUMillis != 1500 || f.Accelerators != 3 || f.LinkBps != 5000 {
		t.Errorf("facts %+v", f)
	}
}

func TestFactsMoved(t *testing.T) {
	for _, tt := range []struct {
		a, b variant.Facts
		want bool
	}{
		{variant.Facts{}, variant.Facts{}, false},
		{variant.Facts{MemoryBytes: 1}, variant.Facts{MemoryBytes: 2}, true},
		{variant.Facts{}, variant.Facts{LinkBps: 5}, true},
		{variant.Facts{LinkBps: 100}, variant.Facts{LinkBps: 0}, true},
		{variant.Facts{LinkBps: 100}, variant.Facts{LinkBps: 199}, false},
		{variant.Facts{LinkBps: 100}, variant.Facts{LinkBps: 200}, true},
		{variant.Facts{LinkBps: 100}, variant.Facts{LinkBps: 51}, false},
		{variant.Facts{LinkBps: 100}, variant.Facts{LinkBps: 50}, true},
		{variant.Facts{CPUMillis: 1}, variant.Facts{CPUMillis: 2}, false},
	} {
		if got := FactsMoved(tt.a, tt.b); got != tt.want {
			t.Errorf("FactsMoved(%+v, %+v) = %v", tt.a, tt.b, got)
		}
	}
}
