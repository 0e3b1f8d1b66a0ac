package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api/v1alpha1"
)

// maxManifestFile bounds a resource file read by apply and delete -f.
const maxManifestFile = 8 << 20

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
	var (
		file    string
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Create or update resources from a YAML or JSON file",
		Long: `Create or update the resources in FILE (YAML, several documents separated by
---, or JSON; - reads standard input). The whole file is checked first: if any
document is malformed or invalid, nothing is applied.

With --wait, apply then waits until every ModelDeployment it applied is
Active on each cluster it selects, at the version it resolved, printing the
progress; it fails after --timeout. A deployment that selects no cluster yet
is waited for too, as its clusters may still be joining.`,
		Example: "  outpost apply -f deploy/examples/fashion-mlp.yaml\n  outpost apply -f deployment.yaml --wait --timeout 5m\n  cat cluster.yaml | outpost apply -f -",
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
			if !wait {
				return nil
			}
			for _, o := range objs {
				if _, ok := o.(*v1alpha1.ModelDeployment); !ok {
					continue
				}
				fmt.Fprintf(g.stdout, "waiting for modeldeployment/%s to roll out ...\n", o.GetName())
				if err := g.waitRollout(cmd.Context(), h, o.GetName(), timeout); err != nil {
					return err
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file of resources to apply (- for standard input)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until each applied ModelDeployment is Active on every cluster it selects")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long --wait waits")
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
			type target struct {
				kind *v1alpha1.KindInfo
				name string
			}
			var targets []target
			switch {
			case file != "" && len(args) == 0:
				objs, err := readObjects(g.stdin, file)
				if err != nil {
					return err
				}
				for _, o := range objs {
					k, _ := v1alpha1.LookupKind(v1alpha1.KindOf(o))
					targets = append(targets, target{k, o.GetName()})
				}
			case file == "" && len(args) == 2:
				k, err := v1alpha1.LookupName(args[0])
				if err != nil {
					return err
				}
				targets = append(targets, target{k, args[1]})
			default:
				return errors.New("give KIND NAME or -f FILE")
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			for _, x := range targets {
				if err := h.Delete(cmd.Context(), x.kind.Plural, x.name); err != nil {
					return fmt.Errorf("delete %s/%s: %w", x.kind.Singular, x.name, err)
				}
				fmt.Fprintf(g.stdout, "%s/%s deleted\n", x.kind.Singular, x.name)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "file naming the resources to delete")
	return cmd
}

func newGetCmd(g *globals) *cobra.Command {
	var output, selector string
	var names []string
	for _, k := range v1alpha1.Kinds() {
		names = append(names, k.Plural)
	}
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "Show resources: " + strings.Join(names, ", "),
		Long: `Show resources as a table, or as yaml or json. With -o wide, clusters show
their capacity and modeldeployments show a row per selected cluster: desired
and active version, phase, bytes fetched, drift, last contact and error. KIND is a
kind's name, plural or short name (` + kindNames() + `).`,
		Example:   "  outpost get clusters\n  outpost get modeldeployment fashion-mlp -o wide\n  outpost get clusters -l region=north -o yaml",
		Args:      cobra.RangeArgs(1, 2),
		ValidArgs: names,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "yaml", "json", "wide", "name"); err != nil {
				return err
			}
			k, err := v1alpha1.LookupName(args[0])
			if err != nil {
				return err
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			var objs []v1alpha1.Object
			if len(args) == 2 {
				o := k.New()
				if err := h.Get(cmd.Context(), k.Plural, args[1], o); err != nil {
					return err
				}
				if output == "yaml" || output == "json" {
					return printStructured(g.stdout, output, o)
				}
				objs = []v1alpha1.Object{o}
			} else {
				l, err := k.NewList(nil)
				if err != nil {
					return err
				}
				if err := h.List(cmd.Context(), k.Plural, selector, l); err != nil {
					return err
				}
				if output == "yaml" || output == "json" {
					v1alpha1.SetTypeMeta(l)
					return printStructured(g.stdout, output, l)
				}
				if objs, err = k.Items(l); err != nil {
					return err
				}
			}
			if output == "name" {
				for _, o := range objs {
					fmt.Fprintf(g.stdout, "%s/%s\n", k.Singular, o.GetName())
				}
				return nil
			}
			if len(objs) == 0 {
				fmt.Fprintf(g.stderr, "no %s\n", k.Plural)
				return nil
			}
			return printTable(g.stdout, k, objs, output == "wide", time.Now())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: yaml, json, wide or name")
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "label selector, such as region=north,tier!=gpu")
	return cmd
}

// kindNames lists each kind's names for help texts: "cluster (cl), ...".
func kindNames() string {
	var parts []string
	for _, k := range v1alpha1.Kinds() {
		p := k.Singular
		if len(k.ShortNames) > 0 {
			p += " (" + strings.Join(k.ShortNames, ", ") + ")"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// printTable prints objs of kind k as the kind's table says.
func printTable(w io.Writer, k *v1alpha1.KindInfo, objs []v1alpha1.Object, wide bool, now time.Time) error {
	header, rows, err := k.Table(objs, wide, now)
	if err != nil {
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}
