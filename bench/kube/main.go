// Command kube measures Outpost's KubeStellar mode against a real
// apiserver (envtest: kube-apiserver and etcd from KUBEBUILDER_ASSETS): the
// hub controller with 1,000 ManagedClusters and 100 ModelDeployments (the
// time from applying the deployments to all their BindingPolicies written,
// and the API requests it made per deployment), and the agent's load on an
// idle WEC: its watch and its status writes (requests per minute).
//
//	eval "$(./scripts/tools.sh)" && go run ./bench/kube
//	go run ./bench/kube -clusters 1000 -deployments 100 -idle 1m
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/kube"
	"outpost.dev/outpost/internal/kube/kubestellartest"
)

// counter counts the requests of a client, all and since a mark.
type counter struct{ n atomic.Int64 }

func (c *counter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		c.n.Add(1)
		return rt.RoundTrip(r)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// counted returns a copy of cfg whose requests c counts.
func counted(cfg *rest.Config, c *counter) *rest.Config {
	cp := rest.CopyConfig(cfg)
	cp.WrapTransport = c.wrap
	cp.QPS, cp.Burst = 500, 1000
	return cp
}

// fixedRegistry answers every constraint with one version: the benchmark
// measures the controller's work with the apiserver, not a registry's.
type fixedRegistry struct{}

func (fixedRegistry) Resolve(context.Context, string, string, bool) (kube.Resolved, error) {
	return kube.Resolved{Version: "1.0.0", Digest: "sha256:" + fmt.Sprintf("%064d", 1), Size: 1 << 20}, nil
}

func main() {
	clusters := flag.Int("clusters", 1000, "ManagedClusters in the inventory")
	deployments := flag.Int("deployments", 100, "ModelDeployments applied")
	regions := flag.Int("regions", 10, "regions the clusters are spread over; each deployment selects one")
	idle := flag.Duration("idle", time.Minute, "how long the agent's watch of an idle WEC is counted")
	flag.Parse()
	if err := run(*clusters, *deployments, *regions, *idle); err != nil {
		fmt.Fprintln(os.Stderr, "bench/kube:", err)
		os.Exit(1)
	}
}

// poll calls cond every 50 ms until it holds or limit passes.
func poll(limit time.Duration, what string, cond func() (bool, error)) error {
	end := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s: not within %v", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func run(nClusters, nDeployments, nRegions int, idle time.Duration) error {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return errors.New("KUBEBUILDER_ASSETS is not set: eval \"$(./scripts/tools.sh)\" builds kube-apiserver and etcd")
	}
	ctrllog.SetLogger(logr.Discard()) // envtest's clients log through controller-runtime's logger
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	crds := []string{kubestellartest.CRDs()}
	for _, kind := range []string{"modeldeployments", "clusters"} {
		crds = append(crds, filepath.Join(root, "deploy", "crds", "ml.outpost.dev_"+kind+".yaml"))
	}
	env := &envtest.Environment{CRDDirectoryPaths: crds, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("start the apiserver: %w", err)
	}
	defer env.Stop()
	scheme, err := kube.NewScheme()
	if err != nil {
		return err
	}
	fast := rest.CopyConfig(cfg)
	fast.QPS, fast.Burst = 1000, 2000
	c, err := client.New(fast, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	start := time.Now()
	for i := range nClusters {
		mc := &unstructured.Unstructured{}
		mc.SetGroupVersionKind(kube.ManagedClusterGVK)
		mc.SetName(fmt.Sprintf("wec-%04d", i))
		mc.SetLabels(map[string]string{"region": fmt.Sprintf("r%d", i%nRegions), "tier": "edge"})
		mc.Object["spec"] = map[string]any{"hubAcceptsClient": true}
		if err := c.Create(ctx, mc); err != nil {
			return fmt.Errorf("create managedcluster: %w", err)
		}
	}
	fmt.Printf("inventory: %d ManagedClusters created in %.1f s\n", nClusters, time.Since(start).Seconds())

	var ctrlReqs counter
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctrlDone := make(chan error, 1)
	mirrorStart := time.Now()
	go func() {
		ctrlDone <- kube.RunController(ctx, kube.ControllerConfig{WDS: counted(cfg, &ctrlReqs), Resolver: fixedRegistry{}, Resync: time.Hour, Logger: log})
	}()
	if err := poll(5*time.Minute, "clusters mirrored", func() (bool, error) {
		var l v1alpha1.ClusterList
		if err := c.List(ctx, &l); err != nil {
			return false, err
		}
		return len(l.Items) == nClusters, nil
	}); err != nil {
		return err
	}
	mirrorReqs := ctrlReqs.n.Load()
	fmt.Printf("controller: %d Clusters mirrored in %.1f s, %d API requests (%.2f per cluster, start-up included)\n",
		nClusters, time.Since(mirrorStart).Seconds(), mirrorReqs, float64(mirrorReqs)/float64(nClusters))

	before := ctrlReqs.n.Load()
	applyStart := time.Now()
	for i := range nDeployments {
		md := &v1alpha1.ModelDeployment{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("md-%03d", i)},
			Spec: v1alpha1.ModelDeploymentSpec{Model: v1alpha1.ModelRef{Name: "m", Version: "^1"},
				ClusterSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"region": fmt.Sprintf("r%d", i%nRegions)}}}}}
		if err := c.Create(ctx, md); err != nil {
			return fmt.Errorf("create modeldeployment: %w", err)
		}
	}
	applied := time.Since(applyStart)
	if err := poll(5*time.Minute, "bindingpolicies written", func() (bool, error) {
		l := &unstructured.UnstructuredList{}
		l.SetGroupVersionKind(kube.BindingPolicyGVK.GroupVersion().WithKind("BindingPolicyList"))
		if err := c.List(ctx, l); err != nil {
			return false, err
		}
		return len(l.Items) == nDeployments, nil
	}); err != nil {
		return err
	}
	allBP := time.Since(applyStart)
	if err := poll(5*time.Minute, "statuses written", func() (bool, error) {
		var l v1alpha1.ModelDeploymentList
		if err := c.List(ctx, &l); err != nil {
			return false, err
		}
		n := 0
		for _, md := range l.Items {
			if len(md.Status.Clusters) == nClusters/nRegions {
				n++
			}
		}
		return n == nDeployments, nil
	}); err != nil {
		return err
	}
	settled := time.Since(applyStart)
	time.Sleep(2 * time.Second) // let requeues the writes caused finish
	reqs := ctrlReqs.n.Load() - before
	fmt.Printf("controller: %d ModelDeployments applied in %.2f s; all BindingPolicies written %.2f s after the first apply (%.2f s after the last), all statuses (%d rows each) %.2f s after the first\n",
		nDeployments, applied.Seconds(), allBP.Seconds(), (allBP - applied).Seconds(), nClusters/nRegions, settled.Seconds())
	fmt.Printf("controller: %d API requests for %d deployments: %.1f per deployment\n", reqs, nDeployments, float64(reqs)/float64(nDeployments))
	cancel()
	if err := <-ctrlDone; err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("controller: %w", err)
	}

	// The agent's watch of an idle WEC (this apiserver, with its 100 deployments).
	var agentReqs counter
	wctx, wcancel := context.WithCancel(context.Background())
	defer wcancel()
	w, err := kube.NewWEC(counted(cfg, &agentReqs), "wec-0000", log)
	if err != nil {
		return err
	}
	w.Start(wctx)
	dctx, dcancel := context.WithTimeout(wctx, time.Minute)
	doc, err := w.Desired(dctx, 0)
	dcancel()
	if err != nil {
		return fmt.Errorf("agent's first desired state: %w", err)
	}
	startup := agentReqs.n.Load()
	// The agent reports every 10 s (its default); a report writes a row only
	// when it changed, or is older than kube.StatusRefresh.
	report := func() error {
		r := &v1alpha1.AgentReport{Cluster: "wec-0000", ReportedAt: metav1.NewTime(time.Now().UTC().Truncate(time.Second))}
		for _, m := range doc.Models {
			r.Models = append(r.Models, v1alpha1.ModelReport{Deployment: m.Deployment, Model: m.Model,
				DesiredVersion: m.Version, ActiveVersion: m.Version, Phase: v1alpha1.PhaseActive})
		}
		return w.Report(wctx, r)
	}
	if err := report(); err != nil {
		return fmt.Errorf("agent's first report: %w", err)
	}
	first := agentReqs.n.Load() - startup
	idleStart := agentReqs.n.Load()
	for end := time.Now().Add(idle); time.Now().Before(end); {
		time.Sleep(min(10*time.Second, time.Until(end)))
		if err := report(); err != nil {
			return fmt.Errorf("agent's report: %w", err)
		}
	}
	idleReqs := agentReqs.n.Load() - idleStart
	fmt.Printf("agent: first desired state (%d models) after %d requests; first report %d status writes; idle for %v, reporting every 10 s: %d requests, %.2f per minute (plus each row's refresh every %v: %.1f writes per minute for %d deployments)\n",
		len(doc.Models), startup, first, idle, idleReqs, float64(idleReqs)/idle.Minutes(), kube.StatusRefresh,
		float64(len(doc.Models))/kube.StatusRefresh.Minutes(), len(doc.Models))
	return nil
}
