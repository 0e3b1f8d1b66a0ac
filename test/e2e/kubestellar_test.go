package e2e

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/kube"
	"outpost.dev/outpost/internal/kube/kubestellartest"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/zoo"
)

// startAPIServer starts an envtest apiserver (and its etcd) with the CRDs
// of paths (files or folders), and writes its kubeconfig.
func startAPIServer(t *testing.T, name string, paths ...string) (*rest.Config, string) {
	t.Helper()
	env := &envtest.Environment{CRDDirectoryPaths: paths, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start the %s apiserver: %v", name, err)
	}
	t.Cleanup(func() { env.Stop() })
	return cfg, writeKubeconfig(t, cfg, name)
}

// writeKubeconfig writes a kubeconfig file for cfg.
func writeKubeconfig(t *testing.T, cfg *rest.Config, name string) string {
	t.Helper()
	host := cfg.Host
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// docsDeployment is the ModelDeployment of docs/kubestellar.md, as a user applies it.
func docsDeployment(t *testing.T) *v1alpha1.ModelDeployment {
	t.Helper()
	b, err := os.ReadFile("../../docs/kubestellar.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range strings.Split(string(b), "```yaml\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		if !strings.Contains(block, "kind: ModelDeployment") {
			continue
		}
		var md v1alpha1.ModelDeployment
		if err := yaml.UnmarshalStrict([]byte(dedent(block)), &md); err != nil {
			t.Fatalf("the ModelDeployment of docs/kubestellar.md: %v", err)
		}
		return &md
	}
	t.Fatal("docs/kubestellar.md shows no ModelDeployment")
	return nil
}

// dedent removes the indentation of the block's first line from every line.
func dedent(s string) string {
	lines := strings.Split(s, "\n")
	ind := len(lines[0]) - len(strings.TrimLeft(lines[0], " "))
	for i, l := range lines {
		if len(l) >= ind {
			lines[i] = l[ind:]
		}
	}
	return strings.Join(lines, "\n")
}

// TestKubeStellar runs Outpost's KubeStellar mode end to end: a WDS and two
// WEC apiservers, the hub (its registry), the controller and two agents as
// processes, and the KubeStellar stand-in in between.
func TestKubeStellar(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three apiservers, a hub, a controller and two agents")
	}
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		testenv.MissingPeer(t, "kube-apiserver and etcd not installed: set KUBEBUILDER_ASSETS (scripts/tools.sh builds them)")
	}
	ctrllog.SetLogger(logr.Discard()) // envtest's clients log through controller-runtime's logger
	// The CRDs of the kinds KubeStellar mode uses, as deploy/crds has them.
	var crds []string
	for _, kind := range []string{"modeldeployments", "clusters"} {
		f, err := filepath.Abs("../../deploy/crds/ml.outpost.dev_" + kind + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		crds = append(crds, f)
	}
	wdsCfg, wdsKC := startAPIServer(t, "wds", append(crds, kubestellartest.CRDs())...)
	// A WEC needs only the kind KubeStellar delivers there (docs/kubestellar.md).
	wec1Cfg, wec1KC := startAPIServer(t, "wec1", crds[0])
	wec2Cfg, wec2KC := startAPIServer(t, "wec2", crds[0])
	scheme, err := kube.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	wds, err := client.New(wdsCfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	wecs := map[string]client.Client{}
	for name, cfg := range map[string]*rest.Config{"wec1": wec1Cfg, "wec2": wec2Cfg} {
		if wecs[name], err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
			t.Fatal(err)
		}
	}

	// The inventory: one ManagedCluster per WEC, labelled.
	label := func(name string, labels map[string]string) {
		t.Helper()
		mc := &unstructured.Unstructured{}
		mc.SetGroupVersionKind(kube.ManagedClusterGVK)
		err := wds.Get(ctx, client.ObjectKey{Name: name}, mc)
		if apierrors.IsNotFound(err) {
			mc.SetName(name)
			mc.SetLabels(labels)
			mc.Object["spec"] = map[string]any{"hubAcceptsClient": true}
			err = wds.Create(ctx, mc)
		} else if err == nil {
			mc.SetLabels(labels)
			err = wds.Update(ctx, mc)
		}
		if err != nil {
			t.Fatalf("managedcluster %s: %v", name, err)
		}
	}
	label("wec1", map[string]string{"region": "eu", "tier": "edge"})
	label("wec2", map[string]string{"region": "us", "tier": "edge"})

	// The hub, for its registry, with the model the docs deploy.
	h := startHub(t)
	m, onnx, err := zoo.Get("mlp")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "detector")
	os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, m.File), onnx, 0o644); err != nil {
		t.Fatal(err)
	}
	// Two models, so that a deployment's name never reaches another deployment's
	// model (the agent's server also answers to a model's name).
	h.mustRun("model", "push", dir, "--name", "detector", "--version", "1.0.0")
	h.mustRun("model", "push", dir, "--name", "classifier", "--version", "1.0.0")

	// KubeStellar's stand-in.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ks, err := kubestellartest.New(wdsCfg, []kubestellartest.WEC{{Name: "wec1", Config: wec1Cfg}, {Name: "wec2", Config: wec2Cfg}}, 200*time.Millisecond, log)
	if err != nil {
		t.Fatal(err)
	}
	ksCtx, ksStop := context.WithCancel(ctx)
	ksDone := make(chan struct{})
	go func() { defer close(ksDone); ks.Run(ksCtx) }()
	t.Cleanup(func() { ksStop(); <-ksDone })

	// The controller.
	ctrlLog := &testenv.Buffer{}
	ctrl := exec.Command(outpostBin, "--config", h.config, "controller", "--kubeconfig", wdsKC, "--resync", "2s")
	ctrl.Stdout, ctrl.Stderr = ctrlLog, ctrlLog
	if err := ctrl.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop(ctrl)
		if t.Failed() {
			t.Logf("controller log:\n%s", tail(ctrlLog.String(), 6000))
		}
	})

	// An agent in each WEC, declaring memory as a small and a large cluster:
	// variant policies hold variants against it.
	tok := joinToken(t, h, "1h")
	serve := map[string]string{}
	agents := map[string]*agentProc{}
	memory := map[string]string{"wec1": "16Mi", "wec2": "64Gi"}
	for name, kc := range map[string]string{"wec1": wec1KC, "wec2": wec2KC} {
		serve[name] = freeAddr(t)
		a := newAgent(t, h, name, "", tok, "--kubeconfig", kc, "--serve", serve[name], "--memory", memory[name])
		a.start()
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("agent %s status: %+v", name, a.status())
			}
		})
		agents[name] = a
	}
	ready := func(name, dep string) bool {
		resp, err := http.Get("http://" + serve[name] + "/v2/models/" + dep + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	inWEC := func(wec, dep string) bool {
		var md v1alpha1.ModelDeployment
		return wecs[wec].Get(ctx, client.ObjectKey{Name: dep}, &md) == nil
	}
	wdsRows := func(dep string) map[string]v1alpha1.ClusterDeploymentStatus {
		var md v1alpha1.ModelDeployment
		if err := wds.Get(ctx, client.ObjectKey{Name: dep}, &md); err != nil {
			return nil
		}
		rows := map[string]v1alpha1.ClusterDeploymentStatus{}
		for _, r := range md.Status.Clusters {
			rows[r.Cluster] = r
		}
		return rows
	}
	activeRows := func(dep string, want ...string) bool {
		rows := wdsRows(dep)
		if len(rows) != len(want) {
			return false
		}
		for _, c := range want {
			if r, ok := rows[c]; !ok || r.Phase != v1alpha1.PhaseActive || r.ActiveVersion != "1.0.0" {
				return false
			}
		}
		return true
	}
	const limit = 90 * time.Second

	t.Run("the docs' deployment reaches the selected WEC only", func(t *testing.T) {
		md := docsDeployment(t)
		if err := wds.Create(ctx, md); err != nil {
			t.Fatal(err)
		}
		bp := &unstructured.Unstructured{}
		bp.SetGroupVersionKind(kube.BindingPolicyGVK)
		testenv.WaitFor(t, limit, "the BindingPolicy written", func() bool {
			return wds.Get(ctx, client.ObjectKey{Name: kube.BindingPolicyName("detector")}, bp) == nil
		})
		if own := bp.GetOwnerReferences(); len(own) != 1 || own[0].Kind != "ModelDeployment" || own[0].Name != "detector" {
			t.Errorf("the BindingPolicy's owners: %+v", own)
		}
		var c v1alpha1.Cluster
		if err := wds.Get(ctx, client.ObjectKey{Name: "wec1"}, &c); err != nil || c.Labels["region"] != "eu" || c.Labels[kube.LabelManagedCluster] != "true" {
			t.Errorf("wec1's Cluster, mirrored from its ManagedCluster: labels %v (%v)", c.Labels, err)
		}
		testenv.WaitFor(t, limit, "detector delivered to wec1", func() bool { return inWEC("wec1", "detector") })
		testenv.WaitFor(t, limit, "wec1's agent serving detector", func() bool { return ready("wec1", "detector") })
		testenv.WaitFor(t, limit, "wec1's Active row in the WDS (singleton status)", func() bool { return activeRows("detector", "wec1") })
		if inWEC("wec2", "detector") {
			t.Error("detector was delivered to wec2, which its selector does not match")
		}
		var got v1alpha1.ModelDeployment
		if err := wds.Get(ctx, client.ObjectKey{Name: "detector"}, &got); err != nil {
			t.Fatal(err)
		}
		if got.Status.ResolvedVersion != "1.0.0" || got.Annotations[kube.AnnotationResolvedVersion] != "1.0.0" {
			t.Errorf("resolution: status %q, annotation %q; want 1.0.0", got.Status.ResolvedVersion, got.Annotations[kube.AnnotationResolvedVersion])
		}
	})

	t.Run("a deployment bound to two WECs has two Active rows", func(t *testing.T) {
		md := &v1alpha1.ModelDeployment{}
		md.Name = "fleet"
		md.Spec.Model = v1alpha1.ModelRef{Name: "classifier", Version: "1.0.0"}
		md.Spec.ClusterSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}}
		if err := wds.Create(ctx, md); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, limit, "both agents serving fleet", func() bool { return ready("wec1", "fleet") && ready("wec2", "fleet") })
		testenv.WaitFor(t, limit, "two Active rows in the WDS (CombinedStatus)", func() bool { return activeRows("fleet", "wec1", "wec2") })
		css := &unstructured.UnstructuredList{}
		css.SetGroupVersionKind(kube.CombinedStatusGVK.GroupVersion().WithKind("CombinedStatusList"))
		if err := wds.List(ctx, css, client.InNamespace(kube.CombinedStatusNamespace), client.MatchingLabels{kube.LabelStatusName: "fleet"}); err != nil || len(css.Items) != 1 {
			t.Errorf("fleet's CombinedStatus: %d objects, %v; want one", len(css.Items), err)
		}
		var md2 v1alpha1.ModelDeployment
		if err := wds.Get(ctx, client.ObjectKey{Name: "fleet"}, &md2); err != nil || md2.Labels[kube.LabelExecutingCount] != "" {
			t.Errorf("fleet, bound to two WECs, carries the singleton label %q (%v)", md2.Labels[kube.LabelExecutingCount], err)
		}
		if kubectl := os.Getenv("OUTPOST_KUBECTL"); kubectl != "" {
			out, err := exec.Command(kubectl, "--kubeconfig", wdsKC, "get", "md", "-o", "wide").CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl get md -o wide: %v\n%s", err, out)
			}
			t.Logf("kubectl get md -o wide:\n%s", out)
			// NAME MODEL VERSION RESOLVED CLUSTERS READY AGE
			var row []string
			for _, l := range strings.Split(string(out), "\n") {
				if f := strings.Fields(l); len(f) >= 6 && f[0] == "fleet" {
					row = f
				}
			}
			if row == nil || row[1] != "classifier" || row[3] != "1.0.0" || row[4] != "2" || row[5] != "2" {
				t.Errorf("kubectl get md -o wide: fleet's row %q, want 1.0.0 resolved, 2 clusters, 2 ready", row)
			}
		}
	})

	t.Run("a WEC's desired state changes with its deployments, not with their status", func(t *testing.T) {
		w, err := kube.NewWEC(wec1Cfg, "wec1", log)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		w.Start(wctx)
		desired := func(after int64, within time.Duration) (*v1alpha1.DesiredState, error) {
			dctx, cancel := context.WithTimeout(wctx, within)
			defer cancel()
			return w.Desired(dctx, after)
		}
		doc, err := desired(0, limit)
		if err != nil {
			t.Fatal(err)
		}
		if doc.Cluster != "wec1" || len(doc.Models) != 2 || doc.Models[0].Deployment != "detector" || doc.Models[1].Deployment != "fleet" ||
			doc.Models[0].Version != "1.0.0" || doc.Models[0].Digest == "" {
			t.Fatalf("wec1's desired state: %+v", doc)
		}
		// Asked again below its revision (the agent could not record it), it comes again.
		if again, err := desired(doc.Revision-1, limit); err != nil || again.Revision != doc.Revision {
			t.Fatalf("asked again after %d: %+v, %v; want revision %d again", doc.Revision-1, again, err, doc.Revision)
		}
		// A status write moves the WEC's resourceVersion, not the desired state.
		report := &v1alpha1.AgentReport{Cluster: "wec1", ReportedAt: metav1.Now(), Models: []v1alpha1.ModelReport{{
			Deployment: "fleet", Model: "classifier", DesiredVersion: "1.0.0", Phase: v1alpha1.PhaseFetching}}}
		rv := func() string {
			var md v1alpha1.ModelDeployment
			if err := wecs["wec1"].Get(ctx, client.ObjectKey{Name: "fleet"}, &md); err != nil {
				t.Fatal(err)
			}
			return md.ResourceVersion
		}
		before := rv()
		// A write may meet the running agent's (a conflict), and is sent again, as the agent does.
		testenv.WaitFor(t, limit, "the report written", func() bool { return w.Report(wctx, report) == nil })
		if rv() == before {
			t.Fatal("the report wrote no status")
		}
		if d, err := desired(doc.Revision, 2*time.Second); err == nil {
			t.Fatalf("a status write gave a new desired state: %+v", d)
		}
		// A deployment delivered into the WEC does, at a higher revision.
		extra := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "local-extra", Annotations: map[string]string{
			kube.AnnotationResolvedVersion: "1.0.0", kube.AnnotationResolvedDigest: doc.Models[0].Digest}}}
		extra.Spec.Model = v1alpha1.ModelRef{Name: "detector", Version: "1.0.0"}
		extra.Spec.ClusterSelectors = []metav1.LabelSelector{{}}
		if err := wecs["wec1"].Create(ctx, extra); err != nil {
			t.Fatal(err)
		}
		next, err := desired(doc.Revision, limit)
		if err != nil {
			t.Fatal(err)
		}
		if next.Revision <= doc.Revision || len(next.Models) != 3 {
			t.Fatalf("after a new deployment: revision %d (was %d), %d models", next.Revision, doc.Revision, len(next.Models))
		}
		if err := wecs["wec1"].Delete(ctx, extra); err != nil {
			t.Fatal(err)
		}
		last, err := desired(next.Revision, limit)
		if err != nil {
			t.Fatal(err)
		}
		if last.Revision <= next.Revision || len(last.Models) != 2 {
			t.Fatalf("after deleting it: revision %d (was %d), %d models", last.Revision, next.Revision, len(last.Models))
		}
	})

	t.Run("each WEC's agent fetches the variant its policy chooses for it", func(t *testing.T) {
		fullDigest, int8Digest, int8Size := pushWithInt8(t, h, "w", 11) // 8 MiB and 2 MiB

		down := map[string]int64{}
		for name, a := range agents {
			down[name] = a.link.Stats().Down
		}
		md := &v1alpha1.ModelDeployment{}
		md.Name = "w"
		md.Spec.Model = v1alpha1.ModelRef{Name: "w", Version: "1.0.0"}
		md.Spec.ClusterSelectors = []metav1.LabelSelector{{MatchLabels: map[string]string{"tier": "edge"}}}
		md.Spec.VariantPolicy = &v1alpha1.VariantPolicy{MaxMemoryPercent: 25}
		if err := wds.Create(ctx, md); err != nil {
			t.Fatal(err)
		}
		activeDigest := func(a *agentProc) string {
			for _, m := range a.status().Models {
				if m.Deployment == "w" && m.ActiveVersion == "1.0.0" {
					return m.ActiveDigest
				}
			}
			return ""
		}
		want := map[string]string{"wec1": int8Digest, "wec2": fullDigest}
		for name, dg := range want {
			testenv.WaitFor(t, limit, name+"'s agent active at "+dg, func() bool { return activeDigest(agents[name]) == dg })
		}
		got := map[string]int64{}
		for name, a := range agents {
			got[name] = a.link.Stats().Down - down[name]
		}
		t.Logf("wec1 fetched %d bytes (int8: %d), wec2 %d (full: %d)", got["wec1"], int8Size, got["wec2"], weightsSize)
		if got["wec1"] > int64(int8Size)+weightsSize/4 {
			t.Errorf("wec1: %d bytes crossed its link, more than the int8 variant (%d) and some overhead: it fetched the full model", got["wec1"], int8Size)
		}
		if got["wec2"] < weightsSize {
			t.Errorf("wec2: %d bytes crossed its link, less than the full model's %d", got["wec2"], weightsSize)
		}

		// The WDS's deployment records the variants, and each WEC's row,
		// returned by KubeStellar, says which variant its agent chose and why.
		var rows map[string]v1alpha1.ClusterDeploymentStatus
		testenv.WaitFor(t, limit, "both rows Active with their variants in the WDS", func() bool {
			rows = wdsRows("w")
			return len(rows) == 2 && rows["wec1"].Phase == v1alpha1.PhaseActive && rows["wec1"].ActiveVariant == "int8" &&
				rows["wec2"].Phase == v1alpha1.PhaseActive && rows["wec2"].Variant == "original"
		})
		if r := rows["wec1"]; r.Variant != "int8" || r.ActiveVersion != "1.0.0" ||
			!strings.Contains(r.VariantReason, "int8: the most accurate that fits") ||
			!strings.Contains(r.VariantReason, "original needs at least its size, 8.0 MiB memory, limit 4.0 MiB (25% of 16.0 MiB)") {
			t.Errorf("wec1's row %+v", r)
		}
		if r := rows["wec2"]; r.ActiveVariant != "" || r.ActiveVersion != "1.0.0" || !strings.Contains(r.VariantReason, "original: the most accurate that fits") {
			t.Errorf("wec2's row %+v", r)
		}
		var got2 v1alpha1.ModelDeployment
		if err := wds.Get(ctx, client.ObjectKey{Name: "w"}, &got2); err != nil {
			t.Fatal(err)
		}
		vs, err := kube.ParseVariants(got2.Annotations[kube.AnnotationResolvedVariants])
		if err != nil || len(vs) != 1 || vs[0].Name != "int8" || vs[0].Digest != int8Digest || vs[0].PeakMemoryBytes != 3145728 || vs[0].Accuracy != "0.9" {
			t.Errorf("annotation %s: %q (%v)", kube.AnnotationResolvedVariants, got2.Annotations[kube.AnnotationResolvedVariants], err)
		}
		if len(got2.Status.ResolvedVariants) != 1 || got2.Status.ResolvedVariants[0].Digest != int8Digest {
			t.Errorf("status.resolvedVariants %+v", got2.Status.ResolvedVariants)
		}

		if err := wds.Delete(ctx, &got2); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, limit, "w gone from both WECs", func() bool { return !inWEC("wec1", "w") && !inWEC("wec2", "w") })
	})

	t.Run("relabelled, the deployment moves to the other WEC", func(t *testing.T) {
		label("wec1", map[string]string{"region": "ap", "tier": "edge"})
		label("wec2", map[string]string{"region": "eu", "tier": "edge"})
		testenv.WaitFor(t, limit, "detector removed from wec1", func() bool { return !inWEC("wec1", "detector") })
		testenv.WaitFor(t, limit, "wec1's agent no longer serving detector", func() bool { return !ready("wec1", "detector") })
		testenv.WaitFor(t, limit, "wec2's agent serving detector", func() bool { return ready("wec2", "detector") })
		testenv.WaitFor(t, limit, "only wec2's row in the WDS", func() bool { return activeRows("detector", "wec2") })
		if !ready("wec1", "fleet") {
			t.Error("wec1 stopped serving fleet, which still selects it")
		}
	})

	t.Run("a WEC cut off keeps serving", func(t *testing.T) {
		ks.Cut("wec2", true)
		passes := ks.Passes()
		if err := wds.Delete(ctx, &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: "fleet"}}); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, limit, "fleet gone from the WDS and wec1", func() bool {
			var md v1alpha1.ModelDeployment
			return apierrors.IsNotFound(wds.Get(ctx, client.ObjectKey{Name: "fleet"}, &md)) && !inWEC("wec1", "fleet")
		})
		bp := &unstructured.Unstructured{}
		bp.SetGroupVersionKind(kube.BindingPolicyGVK)
		if err := wds.Get(ctx, client.ObjectKey{Name: kube.BindingPolicyName("fleet")}, bp); !apierrors.IsNotFound(err) {
			t.Errorf("fleet's BindingPolicy outlived it: %v", err)
		}
		testenv.WaitFor(t, limit, "more stand-in passes", func() bool { return ks.Passes() > passes+5 })
		if !inWEC("wec2", "fleet") || !ready("wec2", "fleet") || !ready("wec2", "detector") {
			t.Error("wec2, cut off, lost fleet or detector")
		}
		// Cut off from the hub's registry too, and restarted: it serves from its cache.
		a := agents["wec2"]
		a.link.Partition(true)
		a.kill()
		a.start()
		testenv.WaitFor(t, limit, "wec2, restarted with no WDS and no registry, serving from its cache", func() bool {
			return ready("wec2", "fleet") && ready("wec2", "detector")
		})
		a.link.Partition(false)
		ks.Cut("wec2", false)
		testenv.WaitFor(t, limit, "fleet removed from wec2 once the cut heals", func() bool { return !inWEC("wec2", "fleet") && !ready("wec2", "fleet") })
		if !ready("wec2", "detector") {
			t.Error("wec2 stopped serving detector")
		}
	})
	if t.Failed() {
		t.Logf("stand-in passes: %d", ks.Passes())
	}
}
