package cli

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/spf13/cobra"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/hubclient"
)

func newModelPromoteCmd(g *globals) *cobra.Command {
	var to, keyFile string
	cmd := &cobra.Command{
		Use:   "promote edge/CLUSTER/NAME@VERSION --to NAME[@VERSION]",
		Short: "Make a version produced at the edge a fleet-wide model version",
		Long: `Make a model version a pipeline produced on a cluster (edge/CLUSTER/NAME@VERSION)
a version of the fleet's model NAME (models/NAME), which deployments can then
serve anywhere. The new version has the same files: each is mounted from the
edge repository, not uploaded again. Its lineage names the edge version as its
parent and "promote" as its producer, and keeps the edge version's metrics, data
set digest, cluster, pipeline and run. A chunk index is attached, and with
--sign a signature, before the version is tagged.

--to NAME without @VERSION keeps the edge version's number. Promoting to a
version that exists with other content is refused; promoting the same edge
version to it again changes nothing.`,
		Example: `  outpost model promote edge/ship-1/fmnist@1.3.0 --to fmnist@2.0.0
  outpost model promote edge/ship-1/fmnist@1.3.0 --to fmnist@2.0.0 --sign release.key`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return errors.New("--to NAME[@VERSION] is required: the fleet's model and version to promote to")
			}
			var key []byte
			if keyFile != "" {
				var err error
				if key, err = os.ReadFile(keyFile); err != nil {
					return err
				}
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			return promoteModel(cmd.Context(), g.stdout, h, args[0], to, key)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the fleet's model and version to promote to: NAME[@VERSION]")
	cmd.Flags().StringVar(&keyFile, "sign", "", "ed25519 private key file (PEM, from 'outpost keygen') to sign the promoted version with")
	return cmd
}

// promoteModel promotes the edge version from (edge/CLUSTER/NAME@VERSION) to the fleet's
// version to (NAME[@VERSION]) on the hub h, signing it with keyPEM if not empty.
func promoteModel(ctx context.Context, out io.Writer, h *hubclient.Client, from, to string, keyPEM []byte) error {
	srcName, srcVersion := splitRef(from)
	src, err := v1alpha1.ParseModelName(srcName)
	if err != nil {
		return err
	}
	if !src.Edge() || srcVersion == "" {
		return fmt.Errorf("%q: promote takes a version produced at the edge, edge/CLUSTER/NAME@VERSION", from)
	}
	dstName, dstVersion := splitRef(to)
	dst, err := v1alpha1.ParseModelName(dstName)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	if dst.Edge() {
		return fmt.Errorf("--to %s: promote to a fleet-wide model, NAME[@VERSION]", to)
	}
	if dstVersion == "" {
		dstVersion = srcVersion
	}
	var opts artifact.PromoteOptions
	if len(keyPEM) > 0 {
		if opts.Key, err = artifact.ParsePrivateKeyPEM(keyPEM); err != nil {
			return fmt.Errorf("--sign: %w", err)
		}
	}
	srcRepo, err := repository(h, srcName)
	if err != nil {
		return err
	}
	dstRepo, err := repository(h, dstName)
	if err != nil {
		return err
	}
	target := dstName + "@" + dstVersion
	opts.Name, opts.Version = dst.Name, dstVersion
	opts.Parent = src.String() + "@" + srcVersion
	opts.From = srcRepo.Reference.Repository
	// Only the cluster may write its edge repositories: the cluster is the one named there.
	opts.Annotations = map[string]string{artifact.AnnotationCluster: src.Cluster}
	opts.SubjectName = dstRepo.Reference.Repository + ":" + dstVersion
	p, err := artifact.Promote(ctx, srcRepo, srcVersion, dstRepo, opts)
	var exists *artifact.VersionExistsError
	switch {
	case errors.As(err, &exists):
		return fmt.Errorf("promote %s to %s: %s exists with other content (%s): promote to another version", from, target, target, exists.Digest)
	case err != nil:
		return fmt.Errorf("promote %s to %s: %w", from, target, whyNotFound(ctx, h, srcRepo, srcName, srcVersion, err))
	}
	if p.Existed {
		fmt.Fprintf(out, "%s is %s promoted already (%s)\n", target, opts.Parent, p.Descriptor.Digest)
	} else {
		how := fmt.Sprintf("%s mounted from %s", plural(p.Files, "file"), opts.From)
		if p.Copied > 0 {
			how += fmt.Sprintf(", %d copied", p.Copied)
		}
		fmt.Fprintf(out, "promoted %s to %s %s (%s)\n", opts.Parent, target, p.Descriptor.Digest, how)
	}
	if p.Signed {
		fmt.Fprintf(out, "signed %s with key %s\n", target, artifact.KeyID(opts.Key.Public().(ed25519.PublicKey)))
	}
	return nil
}

func newModelLineageCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "lineage NAME@VERSION",
		Short: "Show where a model version came from, parent by parent",
		Long: `Show the lineage of a model version (NAME@VERSION or edge/CLUSTER/NAME@VERSION):
the version, then its parent, then the parent's parent, as far as the registry
holds them. For each: its digest, what produced it (a pipeline run, a
promotion), the cluster, pipeline, run and data set digest it came from, its
metrics and when it was created.`,
		Example: "  outpost model lineage fmnist@2.0.0\n  outpost model lineage edge/ship-1/fmnist@1.3.0 -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "json", "yaml"); err != nil {
				return err
			}
			name, version := splitRef(args[0])
			if version == "" {
				return fmt.Errorf("%q: want NAME@VERSION", args[0])
			}
			h, err := g.hub()
			if err != nil {
				return err
			}
			l, err := modelLineage(cmd.Context(), h, name, version)
			if err != nil {
				return err
			}
			if output != "" {
				return printStructured(g.stdout, output, l)
			}
			return printLineage(g.stdout, l)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or yaml")
	return cmd
}

// maxLineage bounds the versions a lineage walks through.
const maxLineage = 64

// lineage is the answer of 'model lineage': a version and its ancestors, newest first.
type lineage struct {
	Versions []lineageVersion `json:"versions"`
}

// lineageVersion is one version of a lineage.
type lineageVersion struct {
	// Ref is NAME@VERSION (or NAME@DIGEST for a parent named by digest).
	Ref        string            `json:"ref"`
	Digest     digest.Digest     `json:"digest,omitempty"`
	ProducedBy string            `json:"producedBy,omitempty"`
	Cluster    string            `json:"cluster,omitempty"`
	Pipeline   string            `json:"pipeline,omitempty"`
	Run        string            `json:"run,omitempty"`
	Dataset    string            `json:"dataset,omitempty"`
	Metrics    map[string]string `json:"metrics,omitempty"`
	Created    *time.Time        `json:"created,omitempty"`
	Parent     string            `json:"parent,omitempty"`
	// Error says why the walk stopped at this version's parent.
	Error string `json:"error,omitempty"`
}

// modelLineage walks the parents of model name's version from version on, as far as they
// can be read; the first version must exist.
func modelLineage(ctx context.Context, h *hubclient.Client, name, version string) (lineage, error) {
	var l lineage
	seen := map[string]bool{}
	for {
		ref := name + "@" + version
		if seen[ref] {
			l.Versions[len(l.Versions)-1].Error = "the lineage loops back to " + ref
			return l, nil
		}
		seen[ref] = true
		repo, err := repository(h, name)
		var info *artifact.ModelInfo
		if err == nil {
			info, err = artifact.Inspect(ctx, repo, version, nil)
			if err != nil {
				err = whyNotFound(ctx, h, repo, name, version, err)
			}
		}
		if err != nil {
			if len(l.Versions) == 0 {
				return l, fmt.Errorf("lineage of %s: %w", ref, err)
			}
			l.Versions[len(l.Versions)-1].Error = fmt.Sprintf("parent %s: %v", ref, err)
			return l, nil
		}
		v := lineageVersion{Ref: ref, Digest: info.Digest, ProducedBy: info.Lineage.ProducedBy, Cluster: info.Lineage.Cluster,
			Pipeline: info.Lineage.Pipeline, Run: info.Lineage.Run, Dataset: info.Lineage.Dataset, Metrics: info.Metrics,
			Parent: info.Lineage.Parent}
		if !info.Created.IsZero() {
			v.Created = &info.Created
		}
		l.Versions = append(l.Versions, v)
		if v.Parent == "" {
			return l, nil
		}
		if len(l.Versions) == maxLineage {
			l.Versions[len(l.Versions)-1].Error = fmt.Sprintf("more than %d versions: the walk stops here", maxLineage)
			return l, nil
		}
		pname, pversion, err := parseParent(v.Parent, name)
		if err != nil {
			l.Versions[len(l.Versions)-1].Error = err.Error()
			return l, nil
		}
		name, version = pname, pversion
	}
}

// parseParent reads a parent annotation: NAME@VERSION, NAME:VERSION, or a manifest digest,
// which names a version of child's own model.
func parseParent(p, child string) (name, version string, err error) {
	if _, derr := digest.Parse(p); derr == nil {
		return child, p, nil
	}
	if i := strings.LastIndex(p, "@"); i > 0 && i < len(p)-1 {
		return p[:i], p[i+1:], nil
	}
	if i := strings.LastIndex(p, ":"); i > 0 && i < len(p)-1 && !strings.Contains(p[i:], "/") {
		return p[:i], p[i+1:], nil
	}
	return "", "", fmt.Errorf("parent %q names no version (want NAME@VERSION)", p)
}

func printLineage(w io.Writer, l lineage) error {
	tw := newTable(w)
	for i, v := range l.Versions {
		if i > 0 {
			fmt.Fprintln(tw, "  ↑ derived from")
		}
		fmt.Fprintf(tw, "%s %s\n", v.Ref, v.Digest)
		fmt.Fprintf(tw, "  produced by:\t%s\n", orNone(v.ProducedBy))
		for _, f := range []struct{ k, v string }{{"cluster", v.Cluster}, {"pipeline", v.Pipeline}, {"run", v.Run}, {"dataset", v.Dataset}} {
			if f.v != "" {
				fmt.Fprintf(tw, "  %s:\t%s\n", f.k, f.v)
			}
		}
		if len(v.Metrics) > 0 {
			keys := make([]string, 0, len(v.Metrics))
			for k := range v.Metrics {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			ms := make([]string, len(keys))
			for j, k := range keys {
				ms[j] = k + "=" + v.Metrics[k]
			}
			fmt.Fprintf(tw, "  metrics:\t%s\n", strings.Join(ms, ", "))
		}
		if v.Created != nil {
			fmt.Fprintf(tw, "  created:\t%s\n", v.Created.Format("2006-01-02 15:04:05 MST"))
		}
		if v.Error != "" {
			fmt.Fprintf(tw, "  parent:\t%s (not followed: %s)\n", orNone(v.Parent), v.Error)
		}
	}
	return tw.Flush()
}
