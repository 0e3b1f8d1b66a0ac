package cli

import (
	"errors"
	"fmt"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"outpost.dev/outpost/internal/kube"
)

// kubeConfig loads the Kubernetes client config of a kubeconfig file, or
// of the pod the process runs in.
func kubeConfig(path string, inCluster bool) (*rest.Config, error) {
	switch {
	case path != "" && inCluster:
		return nil, errors.New("give --kubeconfig or --in-cluster, not both")
	case inCluster:
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("--in-cluster: %w", err)
		}
		return c, nil
	}
	c, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
	}
	return c, nil
}

func newControllerCmd(g *globals) *cobra.Command {
	var (
		kubeconfig, itsKubeconfig string
		inCluster                 bool
		registry                  string
		plainHTTP                 bool
		trustedKeys               []string
		cfg                       kube.ControllerConfig
	)
	cmd := &cobra.Command{
		Use:   "controller --kubeconfig WDS",
		Short: "Run the hub controller of a KubeStellar WDS",
		Long: `Run Outpost's controller against a KubeStellar workload description space
(WDS), with the Outpost CRDs installed there (deploy/crds). For every
ModelDeployment in the WDS it resolves spec.model.version to a registry
version and records it on the object (annotations ml.outpost.dev/resolved-*,
which KubeStellar delivers with the object: the version, its digest and size,
and its variants, among which the agent in each WEC chooses its own with the
deployment's variantPolicy), writes a BindingPolicy
(outpost-md-NAME) whose clusterSelectors are the deployment's and whose
downsync clause selects the deployment, and folds the status KubeStellar
returns (singleton status, and the CombinedStatus of the StatusCollector
outpost-modeldeployments, which it keeps) into the deployment's
per-cluster rows. It mirrors the ManagedClusters of the inventory space
(ITS; --its-kubeconfig, default the WDS) into Cluster objects. Deleting a
deployment deletes its BindingPolicy.

Versions resolve against the hub's registry (--hub, --token, --ca-file or
the client config), or any OCI registry given with --registry, as the hub
resolves them: where a deployment sets spec.requireSignature, or with
--require-signature for all, only versions and variants with a valid
signature from a key given with --trusted-key count.

See docs/kubestellar.md.`,
		Example: `  outpost controller --kubeconfig wds.kubeconfig --its-kubeconfig its.kubeconfig \
      --hub https://hub.example:8443 --token opt_...
  outpost controller --in-cluster --registry registry.example:5000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if kubeconfig == "" && !inCluster {
				return errors.New("--kubeconfig (the WDS) or --in-cluster is required")
			}
			var err error
			if cfg.WDS, err = kubeConfig(kubeconfig, inCluster); err != nil {
				return err
			}
			if itsKubeconfig != "" {
				if cfg.ITS, err = kubeConfig(itsKubeconfig, false); err != nil {
					return fmt.Errorf("--its-kubeconfig: %w", err)
				}
			}
			trusted, err := readPublicKeys(trustedKeys)
			if err != nil {
				return err
			}
			if registry != "" {
				cfg.Resolver = &kube.Registry{Host: registry, PlainHTTP: plainHTTP, Trusted: trusted}
			} else {
				h, err := g.hub()
				if err != nil {
					return fmt.Errorf("the registry: give --registry, or the hub with --hub: %w", err)
				}
				cfg.Resolver = &kube.Registry{Host: h.Host(), PlainHTTP: h.PlainHTTP(), Client: orasClient(h), Trusted: trusted}
			}
			cfg.Logger = g.logger().With("component", "controller")
			ctrllog.SetLogger(logr.FromSlogHandler(cfg.Logger.Handler()))
			return kube.RunController(cmd.Context(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the KubeStellar WDS")
	f.StringVar(&itsKubeconfig, "its-kubeconfig", "", "kubeconfig of the KubeStellar ITS, whose ManagedClusters are the inventory (default the WDS)")
	f.BoolVar(&inCluster, "in-cluster", false, "reach the WDS as the pod this runs in")
	f.StringVar(&registry, "registry", "", "OCI registry HOST[:PORT] to resolve versions against, instead of the hub's")
	f.BoolVar(&plainHTTP, "plain-http", false, "talk plain HTTP to --registry")
	f.BoolVar(&cfg.RequireSignature, "require-signature", false, "resolve, for every deployment, only to versions and variants with a valid signature from a trusted key")
	f.StringSliceVar(&trustedKeys, "trusted-key", nil, "public key file (PEM) trusted for version and variant signatures; repeatable")
	f.DurationVar(&cfg.Resync, "resync", kube.DefaultResync, "how often each deployment's version is resolved again")
	return cmd
}
