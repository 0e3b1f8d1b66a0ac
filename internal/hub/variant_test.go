package hub

import (
	"net/http"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	"outpost.dev/outpost/api/v1alpha1"
)

// Each cluster's desired state names the variant of the resolved version that its memory
// allows under the deployment's variant policy; its status row shows the variant and why,
// and a variant pushed later reaches the clusters it suits.
func TestVariantPerCluster(t *testing.T) {
	e := newEnv(t, nil)
	sized := func(name, memory string) string {
		return clusterYAML(name, "site: "+name) + "spec:\n  capacity: {memory: " + memory + "}\n"
	}
	e.mustPut("clusters", "big", sized("big", "64Gi"))
	e.mustPut("clusters", "small", sized("small", "1Gi"))
	e.mustPut("clusters", "plain", clusterYAML("plain", "site: plain"))
	e.models.set("resnet", "1.2.0", false)
	// The original is 900 MiB, its variants smaller.
	e.models.setVariants("resnet", "1.2.0", 900<<20, v1alpha1.ModelVariant{Name: "fp16", Digest: "sha256:resnet-1.2.0-fp16", SizeBytes: 250, PeakMemoryBytes: 400 << 20, Accuracy: "0.91"})
	e.mustPut("modeldeployments", "resnet", mdYAML("resnet", "resnet", "1.2.0", "[{}]")+"  variantPolicy: {maxMemoryPercent: 25}\n")

	check := func(cluster, variant, digest, reason string) {
		t.Helper()
		ds := e.desired(cluster)
		if len(ds.Models) != 1 || ds.Models[0].Version != "1.2.0" || ds.Models[0].Digest != digest || ds.Models[0].Variant != variant {
			t.Fatalf("%s desired %+v, want variant %q (%s)", cluster, ds.Models, variant, digest)
		}
		md := decodeJSON[v1alpha1.ModelDeployment](t, e.do(http.MethodGet, "/modeldeployments/resnet", "reader", "", nil).body)
		for _, r := range md.Status.Clusters {
			if r.Cluster != cluster {
				continue
			}
			want := variant
			if want == "" {
				want = "original"
			}
			if r.Variant != want || !strings.Contains(r.VariantReason, reason) || r.DesiredVersion != "1.2.0" {
				t.Fatalf("%s row %+v, want variant %s, reason saying %q", cluster, r, want, reason)
			}
			return
		}
		t.Fatalf("no row for %s", cluster)
	}
	check("big", "", "sha256:resnet-1.2.0", "original: the most accurate that fits")
	check("small", "fp16", "sha256:resnet-1.2.0-fp16", "fp16: no allowed candidate fits the limits; the smallest is sent; it needs 400.0 MiB memory, limit 256.0 MiB")
	check("plain", "", "sha256:resnet-1.2.0", "memory limit not applied: the cluster reports no memory")

	// An int8 variant is pushed: the small cluster gets it, and only its document moves.
	bigRev := e.desired("big").Revision
	e.models.setVariants("resnet", "1.2.0", 900<<20,
		v1alpha1.ModelVariant{Name: "fp16", Digest: "sha256:resnet-1.2.0-fp16", SizeBytes: 250, PeakMemoryBytes: 400 << 20, Accuracy: "0.91"},
		v1alpha1.ModelVariant{Name: "int8", Digest: "sha256:resnet-1.2.0-int8", SizeBytes: 125, PeakMemoryBytes: 200 << 20, Accuracy: "0.88"})
	if err := e.srv.ModelsChanged(t.Context()); err != nil {
		t.Fatal(err)
	}
	check("small", "int8", "sha256:resnet-1.2.0-int8", "int8: the most accurate that fits (accuracy 0.88)")
	if got := e.desired("big").Revision; got != bigRev {
		t.Errorf("big's desired state moved (%d -> %d) though its variant did not", bigRev, got)
	}

	// The deployment allows only int8: every cluster gets it.
	e.mustPut("modeldeployments", "resnet", mdYAML("resnet", "resnet", "1.2.0", "[{}]")+"  variantPolicy: {allowed: [int8]}\n")
	check("big", "int8", "sha256:resnet-1.2.0-int8", "original not allowed")
}

// A cluster's agent reports its memory and link: the variant it is sent follows them, and a
// small wobble of the link estimate changes nothing.
func TestVariantFollowsReportedFacts(t *testing.T) {
	e := newAgentEnv(t, nil)
	e.models.set("resnet", "1.2.0", false)
	e.models.setVariants("resnet", "1.2.0", 900<<20,
		v1alpha1.ModelVariant{Name: "int8", Digest: "sha256:resnet-1.2.0-int8", SizeBytes: 230 << 20, PeakMemoryBytes: 250 << 20, Accuracy: "0.88"})
	e.applyAsAdmin("modeldeployments", "resnet", mdYAML("resnet", "resnet", "1.2.0", "[{}]")+"  variantPolicy: {maxMemoryPercent: 25, maxFetchTime: 10m}\n")
	cred := e.mustJoin(e.createToken(3600, "").Token, "edge-1", nil)
	digest := func() string {
		t.Helper()
		_, b, err := e.db.DesiredState(t.Context(), "edge-1")
		if err != nil {
			t.Fatal(err)
		}
		return decodeJSON[v1alpha1.DesiredState](t, b).Models[0].Digest
	}
	if got := digest(); got != "sha256:resnet-1.2.0" {
		t.Fatalf("nothing known of the cluster: sent %s, want the original", got)
	}
	report := func(memory string, bps int64) {
		t.Helper()
		q := resource.MustParse(memory)
		r := e.postJSON("/clusters/edge-1/report", cred, v1alpha1.AgentReport{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindAgentReport,
			Cluster: "edge-1", Status: v1alpha1.ClusterStatus{Capacity: v1alpha1.Capacity{Memory: &q}, Link: v1alpha1.LinkStatus{BandwidthBps: bps}}})
		if r.code != http.StatusOK {
			t.Fatalf("report = %d %s", r.code, r.body)
		}
	}
	report("2Gi", 10<<20)
	if got := digest(); got != "sha256:resnet-1.2.0-int8" {
		t.Fatalf("2 GiB of memory: sent %s, want int8", got)
	}
	report("64Gi", 10<<20)
	if got := digest(); got != "sha256:resnet-1.2.0" {
		t.Fatalf("64 GiB: sent %s, want the original", got)
	}
	rev := e.desiredRevision("edge-1")
	report("64Gi", 8<<20) // 900 MiB at 8 MiB/s: 1m53s, within 10m; a wobble
	if e.desiredRevision("edge-1") != rev {
		t.Fatal("a small move of the link estimate rewrote the desired state")
	}
	report("64Gi", 1<<20) // 900 MiB at 1 MiB/s: 15m
	if got := digest(); got != "sha256:resnet-1.2.0-int8" {
		t.Fatalf("a slow link: sent %s, want int8", got)
	}
	row := e.deployment("resnet").Status.Clusters[0]
	if row.Variant != "int8" || !strings.Contains(row.VariantReason, "original takes 15m0s to fetch at 1.0 MiB/s, limit 10m0s") {
		t.Fatalf("row %+v", row)
	}
}

// During a Canary rollout, a cluster waiting for its wave keeps the variant of the stable
// version it was sent, not the stable version's original; the canary gets the new
// version's variant.
func TestVariantInCanaryRollout(t *testing.T) {
	f := newRolloutFleet(t, "c1", "c2")
	f.models.setVariants("resnet", "1.0.0", 900<<20, v1alpha1.ModelVariant{Name: "int8", Digest: "sha256:resnet-1.0.0-int8", SizeBytes: 230 << 20})
	f.models.setVariants("resnet", "1.2.0", 900<<20, v1alpha1.ModelVariant{Name: "int8", Digest: "sha256:resnet-1.2.0-int8", SizeBytes: 230 << 20})
	policy := "  variantPolicy: {allowed: [int8]}\n"
	f.applyAsAdmin("modeldeployments", "det", canaryYAML("1.0.0", "")+policy)
	for _, c := range []string{"c1", "c2"} {
		if m := f.want(c); m.Version != "1.0.0" || m.Digest != "sha256:resnet-1.0.0-int8" || m.Variant != "int8" {
			t.Fatalf("%s: %+v, want 1.0.0's int8", c, m)
		}
		f.report(c, "1.0.0", "1.0.0", "")
	}
	f.applyAsAdmin("modeldeployments", "det", canaryYAML("1.2.0", "")+policy)
	if m := f.want("c1"); m.Version != "1.2.0" || m.Digest != "sha256:resnet-1.2.0-int8" {
		t.Errorf("the canary: %+v, want 1.2.0's int8", m)
	}
	if m := f.want("c2"); m.Version != "1.0.0" || m.Digest != "sha256:resnet-1.0.0-int8" || m.Variant != "int8" {
		t.Errorf("the waiting cluster: %+v, want 1.0.0's int8 still", m)
	}
}
