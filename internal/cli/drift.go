package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/driftref"
	"outpost.dev/outpost/internal/onnx/engine"
)

func newDriftCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drift",
		Short: "Reference profiles of model versions, drift tests of data, and drift at the edge",
		Long: `Drift monitoring compares what a model sees and answers at the edge with its
reference profile: per input feature and per model output, mergeable
summaries of the reference data, attached to the model version as an OCI
referrer and fetched by agents with the model. Agents test each window of
requests against it and send the hub a report per window; status and show
read what the hub learnt. See docs/drift.md.`,
	}
	cmd.AddCommand(newDriftProfileCmd(g), newDriftCompareCmd(g), newDriftStatusCmd(g), newDriftShowCmd(g))
	return cmd
}

// profileFlags tune how a reference profile is computed.
type profileFlags struct {
	outputs string
	scale   float64
	bins    int
}

func (p *profileFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&p.outputs, "outputs", "", "what the model outputs: probabilities, logits or values (default: probabilities when every output row sums to 1, else logits)")
	f.Float64Var(&p.scale, "scale", 0, "factor applied to every input value (default: 1/255 for byte data such as IDX images, else 1)")
	f.IntVar(&p.bins, "bins", driftref.DefaultBins, "equal-mass histogram bins per numeric feature")
}

func (p *profileFlags) options() driftref.ProfileOptions {
	return driftref.ProfileOptions{Outputs: drift.OutputMode(p.outputs), Scale: p.scale, Bins: p.bins}
}

// readReference reads reference data.
func readReference(dataPath string) (*driftref.Data, error) {
	data, err := driftref.ReadPath(dataPath, 0)
	if err != nil {
		return nil, fmt.Errorf("reference data: %w", err)
	}
	return data, nil
}

// computeProfile runs the ONNX model in the file model on the reference
// data with the Go runtime, and returns the profile and its encoding.
func computeProfile(ctx context.Context, model string, data *driftref.Data, opts driftref.ProfileOptions) (*drift.Profile, []byte, error) {
	p, err := driftref.ComputeProfile(ctx, engine.Go{}, model, data, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("reference profile: %w", err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, nil, err
	}
	return p, b, nil
}

// describeProfile says what a profile summarises, in a few words.
func describeProfile(p *drift.Profile) string {
	return fmt.Sprintf("%d samples, %d features", p.Samples(), len(p.Spec().Features))
}

func newDriftProfileCmd(g *globals) *cobra.Command {
	var (
		pf      profileFlags
		replace bool
	)
	cmd := &cobra.Command{
		Use:   "profile NAME@VERSION DATA",
		Short: "Compute a model version's reference profile from data and attach it",
		Long: `Run the version's ONNX model (with the Go runtime, here) on the reference data
DATA and attach the profile of its inputs and outputs to the version, as an
OCI referrer that agents fetch with the model. DATA is a .npy file, an IDX
file (such as Fashion-MNIST's images, gzipped or not) or a folder of them,
with as many values per sample as the model's input takes.

A version has one profile. Attaching the same one again does nothing;
another is refused unless --replace is given, which attaches the new one and
then deletes the old. Agents serving the version pick up a new or replaced
profile at their next check (see docs/agent.md). The model itself never
changes.`,
		Example: `  outpost drift profile fashion-mlp@1.0.0 train-images-idx3-ubyte.gz
  outpost drift profile detector@2.1.0 reference.npy --outputs logits --replace`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, version := splitRef(args[0])
			if version == "" {
				return fmt.Errorf("%q: want NAME@VERSION", args[0])
			}
			ctx := cmd.Context()
			data, err := readReference(args[1])
			if err != nil {
				return err
			}
			repo, desc, err := g.resolveVersion(ctx, name, version)
			if err != nil {
				return err
			}
			info, err := artifact.Inspect(ctx, repo, desc.Digest.String(), nil)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			var onnx []string
			for _, f := range info.Files {
				if strings.EqualFold(path.Ext(f.Path), ".onnx") {
					onnx = append(onnx, f.Path)
				}
			}
			if len(onnx) != 1 {
				return fmt.Errorf("%s has %d ONNX files (%s): a reference profile needs one model", args[0], len(onnx), strings.Join(onnx, ", "))
			}
			dir, err := os.MkdirTemp("", "outpost-profile-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			if _, err := artifact.Pull(ctx, repo, desc.Digest.String(), dir, artifact.PullOptions{Paths: onnx}); err != nil {
				return fmt.Errorf("pull the model of %s: %w", args[0], err)
			}
			p, b, err := computeProfile(ctx, filepath.Join(dir, filepath.FromSlash(onnx[0])), data, pf.options())
			if err != nil {
				return err
			}
			ref, err := artifact.PushProfile(ctx, repo, desc, b, artifact.ProfilePushOptions{Replace: replace})
			var exists *artifact.ProfileExistsError
			if errors.As(err, &exists) {
				return fmt.Errorf("%s already has another reference profile (%s): pass --replace to replace it", args[0], exists.Digest)
			}
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintf(g.stdout, "attached the reference profile of %s (%s) %s\n", args[0], describeProfile(p), ref.Digest)
			return nil
		},
	}
	pf.register(cmd)
	cmd.Flags().BoolVar(&replace, "replace", false, "replace the version's reference profile if it has another one")
	return cmd
}

func newDriftCompareCmd(g *globals) *cobra.Command {
	var (
		output     string
		correction string
		opts       = driftref.DefaultCompareOptions()
	)
	cmd := &cobra.Command{
		Use:   "compare REF CUR",
		Short: "Test, column by column, whether the data in CUR drifted from that in REF",
		Long: `Compare two data sets offline with the drift tests agents run, on exact samples:
per column, the two-sample Kolmogorov-Smirnov test and the Wasserstein
distance of the values, and on their counts (of each value of an integer
column with few values, else of equal-mass bins at REF's quantiles) the
chi-square test of homogeneity, the population stability index (PSI) and
the Jensen-Shannon distance. The p-values of all columns are corrected
together (Bonferroni or Benjamini-Hochberg); a column drifted when a
corrected p-value is at or below --alpha or a distance is above its
threshold.

REF and CUR are .npy files (one row per sample), CSV files (.csv or .tsv,
one column per feature, with a header line of names or without), IDX files
(each sample flattened, one column per pixel), or folders of such files.
NaN and infinite values (and empty CSV cells) are left out and counted.`,
		Example: `  outpost drift compare reference.csv today.csv
  outpost drift compare train-images-idx3-ubyte.gz t10k-images-idx3-ubyte.gz -o json
  outpost drift compare ref.npy cur.npy --correction benjamini-hochberg --alpha 0.05`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output, "json"); err != nil {
				return err
			}
			opts.Correction = drift.Correction(correction)
			ref, err := driftref.ReadPath(args[0], 0)
			if err != nil {
				return err
			}
			cur, err := driftref.ReadPath(args[1], 0)
			if err != nil {
				return err
			}
			c, err := driftref.Compare(ref, cur, opts)
			if err != nil {
				return err
			}
			if output == "json" {
				return printStructured(g.stdout, output, c)
			}
			return printComparison(g.stdout, c)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "", "output format: json")
	f.Float64Var(&opts.Alpha, "alpha", opts.Alpha, "level of the tests after the correction")
	f.StringVar(&correction, "correction", string(opts.Correction), "correction across all tests: bonferroni or benjamini-hochberg")
	f.IntVar(&opts.Bins, "bins", opts.Bins, "equal-mass bins of a continuous column")
	f.IntVar(&opts.MaxCategories, "max-categories", opts.MaxCategories, "an integer column with at most this many distinct values is compared by value")
	f.Float64Var(&opts.PSIThreshold, "psi-threshold", opts.PSIThreshold, "PSI above which a column drifted (0: report only)")
	f.Float64Var(&opts.JSThreshold, "js-threshold", opts.JSThreshold, "Jensen-Shannon distance above which a column drifted (0: report only)")
	f.Float64Var(&opts.WassersteinThreshold, "wasserstein-threshold", opts.WassersteinThreshold, "Wasserstein distance, in standard deviations of REF, above which a column drifted (0: report only)")
	return cmd
}

// printComparison writes a comparison as a table and a verdict.
func printComparison(w io.Writer, c *driftref.Comparison) error {
	tw := newTable(w)
	fmt.Fprintln(tw, "FEATURE\tTEST\tSTATISTIC\tP-VALUE\tCORRECTED\tDRIFTED")
	drifted := 0
	for _, col := range c.Columns {
		if col.Drifted {
			drifted++
		}
		if col.Skipped != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\tskipped: %s\n", col.Name, col.Skipped)
			continue
		}
		for _, s := range col.Scores {
			p, adj := "-", "-"
			if s.PValue != nil {
				p, adj = fmt.Sprintf("%.4g", *s.PValue), fmt.Sprintf("%.4g", *s.Corrected)
			}
			yes := "no"
			if s.Drifted {
				yes = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%.6g\t%s\t%s\t%s\n", col.Name, s.Test, s.Statistic, p, adj, yes)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	how := fmt.Sprintf("%s over %d p-values, alpha %g", c.Correction, c.Tests, c.Alpha)
	if drifted > 0 {
		_, err := fmt.Fprintf(w, "drift: %d of %d features drifted (%s)\n", drifted, len(c.Columns), how)
		return err
	}
	_, err := fmt.Fprintf(w, "no drift in %d features (%s)\n", len(c.Columns), how)
	return err
}
