package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/hubclient"
)

// maxManifestFile bounds a resource file read by apply and delete -f.
const maxManifestFile = 8 << 20

// kindAliases maps what users type to a plural resource name.
var kindAliases = map[string]string{
	"cluster": v1alpha1.PluralClusters, "clusters": v1alpha1.PluralClusters, "cl": v1alpha1.PluralClusters,
	"modeldeployment": v1alpha1.PluralModelDeployments, "modeldeployments": v1alpha1.PluralModelDeployments,
	"md": v1alpha1.PluralModelDeployments, "mds": v1alpha1.PluralModelDeployments,
}

func pluralOf(kind string) (string, error) {
	if p, ok := kindAliases[strings.ToLower(kind)]; ok {
		return p, nil
	}
	return "", fmt.Errorf("unknown kind %q (known: cluster, modeldeployment)", kind)
}

// readObjects reads and strictly decodes the resources of a file ("-" is stdin).
func readObjects(stdin io.Reader, file string) ([]v1alpha1.Object, error) {
	var r io.Reader
	if file == "-" {
		r = stdin
	} else {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxManifestFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxManifestFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", file, maxManifestFile)
	}
	objs, err := v1alpha1.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("%s: no resources", file)
	}
	return objs, nil
}

func newApplyCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update resources from a YAML or JSON file",
		Long: `Create or update the resources in FILE (YAML, several documents separated by
---, or JSON; - reads standard input). The whole file is checked first: if any
document is malformed or invalid, nothing is applied.`,
		Example: "  outpost apply -f deploy/examples/fashion-mlp.yaml\n  cat cluster.yaml | outpost apply -f -",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return errors.New("-f is required")
			}
			objs, err := readObjects(g.stdin, file)
			if err != nil {
				return err
			}
			for _, o := range objs {
				if err := o.Validate(); err != nil {
					return err
				}
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			for _, o := range objs {
				kind := v1alpha1.KindOf(o)
				if err := h.Apply(cmd.Context(), o, nil); err != nil {
					return fmt.Errorf("apply %s/%s: %w", strings.ToLower(kind), o.GetName(), err)
				}
				fmt.Fprintf(g.stdout, "%s/%s applied\n", strings.ToLower(kind), o.GetName())
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file of resources to apply (- for standard input)")
	return cmd
}

func newDeleteCmd(g *globals) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:     "delete (KIND NAME | -f FILE)",
		Short:   "Delete resources by kind and name, or those named in a file",
		Example: "  outpost delete modeldeployment fashion-mlp\n  outpost delete -f deployment.yaml",
		Args:    cobra.MaximumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			type target struct{ plural, kind, name string }
			var targets []target
			switch {
			case file != "" && len(args) == 0:
				objs, err := readObjects(g.stdin, file)
				if err != nil {
					return err
				}
				for _, o := range objs {
					kind := v1alpha1.KindOf(o)
					plural, _ := v1alpha1.PluralForKind(kind)
					targets = append(targets, target{plural, strings.ToLower(kind), o.GetName()})
				}
			case file == "" && len(args) == 2:
				plural, err := pluralOf(args[0])
				if err != nil {
					return err
				}
				targets = append(targets, target{plural, strings.TrimSuffix(plural, "s"), args[1]})
			default:
				return errors.New("give KIND NAME or -f FILE")
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			for _, x := range targets {
				if err := h.Delete(cmd.Context(), x.plural, x.name); err != nil {
					return fmt.Errorf("delete %s/%s: %w", x.kind, x.name, err)
				}
				fmt.Fprintf(g.stdout, "%s/%s deleted\n", x.kind, x.name)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file naming the resources to delete")
	return cmd
}

func newGetCmd(g *globals) *cobra.Command {
	var output, selector string
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "Show resources: clusters, modeldeployments",
		Long: `Show resources as a table, or as yaml or json. With -o wide, clusters show
their capacity and modeldeployments show a row per selected cluster: desired
and active version, phase, bytes fetched, last contact and error.`,
		Example:   "  outpost get clusters\n  outpost get modeldeployment fashion-mlp -o wide\n  outpost get clusters -l region=north -o yaml",
		Args:      cobra.RangeArgs(1, 2),
		ValidArgs: []string{"clusters", "modeldeployments"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "yaml", "json", "wide", "name"); err != nil {
				return err
			}
			plural, err := pluralOf(args[0])
			if err != nil {
				return err
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			var objs []v1alpha1.Object
			var single bool
			if len(args) == 2 {
				o, err := getOne(cmd.Context(), h, plural, args[1])
				if err != nil {
					return err
				}
				objs, single = []v1alpha1.Object{o}, true
			} else if objs, err = list(cmd.Context(), h, plural, selector); err != nil {
				return err
			}
			switch output {
			case "yaml", "json":
				if single {
					return printStructured(g.stdout, output, objs[0])
				}
				kind, _ := v1alpha1.KindForPlural(plural)
				l, err := v1alpha1.NewList(kind, objs)
				if err != nil {
					return err
				}
				return printStructured(g.stdout, output, l)
			case "name":
				for _, o := range objs {
					fmt.Fprintf(g.stdout, "%s/%s\n", strings.ToLower(v1alpha1.KindOf(o)), o.GetName())
				}
				return nil
			}
			if len(objs) == 0 {
				fmt.Fprintf(g.stderr, "no %s\n", plural)
				return nil
			}
			return printTable(g.stdout, objs, output == "wide", time.Now())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml, json, wide or name")
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector, such as region=north,tier!=gpu")
	return cmd
}

func getOne(ctx context.Context, h *hubclient.Client, plural, name string) (v1alpha1.Object, error) {
	kind, _ := v1alpha1.KindForPlural(plural)
	o, err := v1alpha1.New(kind)
	if err != nil {
		return nil, err
	}
	if err := h.Get(ctx, plural, name, o); err != nil {
		return nil, err
	}
	return o, nil
}

func list(ctx context.Context, h *hubclient.Client, plural, selector string) ([]v1alpha1.Object, error) {
	var objs []v1alpha1.Object
	switch plural {
	case v1alpha1.PluralClusters:
		var l v1alpha1.ClusterList
		if err := h.List(ctx, plural, selector, &l); err != nil {
			return nil, err
		}
		for i := range l.Items {
			objs = append(objs, &l.Items[i])
		}
	case v1alpha1.PluralModelDeployments:
		var l v1alpha1.ModelDeploymentList
		if err := h.List(ctx, plural, selector, &l); err != nil {
			return nil, err
		}
		for i := range l.Items {
			objs = append(objs, &l.Items[i])
		}
	}
	return objs, nil
}

func printTable(w io.Writer, objs []v1alpha1.Object, wide bool, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	switch objs[0].(type) {
	case *v1alpha1.Cluster:
		if wide {
			fmt.Fprintln(tw, "NAME\tLINK\tLAST SEEN\tBANDWIDTH\tRTT\tCPU\tMEMORY\tDISK\tCACHED\tAGENT\tLABELS")
		} else {
			fmt.Fprintln(tw, "NAME\tLINK\tLAST SEEN\tAGENT\tLABELS")
		}
		for _, o := range objs {
			c := o.(*v1alpha1.Cluster)
			st := c.Status
			link := string(st.Link.State)
			if link == "" {
				link = "Unknown"
			}
			if wide {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", c.Name, link, ago(timeOrZero(st.Link.LastSeen), now),
					bandwidth(st.Link.BandwidthBps), rtt(st.Link.RTTMillis),
					quantity(st.Capacity.CPU), quantity(st.Capacity.Memory), quantity(st.Capacity.Disk),
					len(st.CachedArtifacts), orNone(st.AgentVersion), labels(c.Labels))
			} else {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Name, link, ago(timeOrZero(st.Link.LastSeen), now), orNone(st.AgentVersion), labels(c.Labels))
			}
		}
	case *v1alpha1.ModelDeployment:
		if wide {
			fmt.Fprintln(tw, "DEPLOYMENT\tMODEL\tCLUSTER\tDESIRED\tACTIVE\tRUNTIME\tPHASE\tFETCHED\tLAST CONTACT\tERROR")
			for _, o := range objs {
				d := o.(*v1alpha1.ModelDeployment)
				if len(d.Status.Clusters) == 0 {
					fmt.Fprintf(tw, "%s\t%s\t-\t%s\t-\t-\t-\t-\t-\t%s\n", d.Name, d.Spec.Model.Name, orNone(d.Status.ResolvedVersion), conditionError(d))
				}
				for _, cs := range d.Status.Clusters {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, d.Spec.Model.Name, cs.Cluster,
						orNone(cs.DesiredVersion), orNone(cs.ActiveVersion), orNone(cs.Runtime), orNone(string(cs.Phase)),
						fetched(cs.BytesFetched, cs.BytesTotal), ago(timeOrZero(cs.LastContact), now), orNone(cs.Error))
				}
			}
		} else {
			fmt.Fprintln(tw, "NAME\tMODEL\tVERSION\tRESOLVED\tCLUSTERS\tACTIVE\tAGE")
			for _, o := range objs {
				d := o.(*v1alpha1.ModelDeployment)
				active := 0
				for _, cs := range d.Status.Clusters {
					if cs.Phase == v1alpha1.PhaseActive {
						active++
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", d.Name, d.Spec.Model.Name, d.Spec.Model.Version,
					orNone(d.Status.ResolvedVersion), len(d.Status.Clusters), active, ago(d.CreationTimestamp, now))
			}
		}
	}
	return tw.Flush()
}

func conditionError(d *v1alpha1.ModelDeployment) string {
	for _, c := range d.Status.Conditions {
		if c.Status == metav1.ConditionFalse {
			return c.Message
		}
	}
	return "-"
}

func timeOrZero(t *metav1.Time) metav1.Time {
	if t == nil {
		return metav1.Time{}
	}
	return *t
}

func ago(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t.Time).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func labels(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func bandwidth(bps int64) string {
	if bps <= 0 {
		return "-"
	}
	return humanBytes(bps) + "/s"
}

func rtt(ms int64) string {
	if ms <= 0 {
		return "-"
	}
	return fmt.Sprintf("%dms", ms)
}

func quantity(q *resource.Quantity) string {
	if q == nil || q.IsZero() {
		return "-"
	}
	return q.String()
}

func fetched(done, total int64) string {
	if total <= 0 {
		return "-"
	}
	return fmt.Sprintf("%s/%s", humanBytes(done), humanBytes(total))
}
