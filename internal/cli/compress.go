package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/bytesize"
	"outpost.dev/outpost/internal/compress"
	"outpost.dev/outpost/internal/models"
	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/onnxpb"
	"outpost.dev/outpost/internal/onnx/ort"
	"outpost.dev/outpost/internal/pipeline"
)

func newModelCompressCmd(g *globals) *cobra.Command {
	var (
		data, format, recipes, out, output string
		budget                             float64
		calibration                        int
		evalShare                          float64
		dryRun                             bool
		student                            []int
		ortLib                             string
	)
	cmd := &cobra.Command{
		Use:   "compress NAME@VERSION|MODEL --data DIR [--max-accuracy-drop POINTS] [--out DIR]",
		Short: "Make smaller variants of a model version or an ONNX model, keeping those within an accuracy budget",
		Long: `Make a variant of a model by each recipe. NAME@VERSION is a version in the
hub's registry (its served ONNX file, verified as it is pulled); the
variants within the budget are pushed as variants of it (see 'outpost model
show'), unless --dry-run. MODEL is a local ONNX file, or a model folder
holding model.onnx; its variants are only written, with --out. The recipes: float16 weights; int8 quantization (QDQ form,
weights per output channel, activations calibrated on the training samples
by min-max or percentile); for the MLPs and CNNs internal/train makes,
structured pruning (removing hidden units, or convolution channels) with or
without int8, a distilled student a tenth as wide, and an int8 student of
sizes searched to fit a tenth of the model's bytes; for MLPs also
unstructured pruning (80% zeros, compressing in transfer). --student SIZES
adds a student of those hidden sizes (a CNN's: its two widths). Pruned
models and students are fine-tuned on the training samples.

Every variant is measured on labelled samples the methods did not train on:
the data's own test split, or the last --eval-share of its samples. The
table shows size, accuracy and its drop from MODEL's in points, the Go
runtime's latency at batch 1 and 32, the most memory its heap took to
serve one batch-32 request at a time (recorded as the variant's peak
memory, which a deployment's memory limit counts), and marks with * the
Pareto front: the variants within the budget no other beats on both size
and accuracy. With --out, each variant within the
budget is written to DIR/NAME/model.onnx, a model folder, with its
measurements in DIR/NAME.json, the form 'outpost model push --variant-meta'
reads.
No variant within the budget is an error, and then nothing is written or
pushed.

DIR of --data holds labelled samples as a pipeline's dataset step reads
them: idx, npy, npz or csv (see docs/pipelines.md).`,
		Example: `  outpost model compress fashion-mlp@1.0.0 --data ./fmnist --max-accuracy-drop 1
  outpost model example ./mlp
  outpost fl example-data ./fmnist --shard 1/1
  outpost model compress ./mlp --data ./fmnist --max-accuracy-drop 1 --out ./variants
  outpost model compress ./mlp/model.onnx --data ./fmnist --recipes fp16,int8 -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if data == "" {
				return errors.New("--data is required: labelled samples to calibrate, fine-tune and measure with")
			}
			if output != "" && output != "json" {
				return fmt.Errorf("--output %q: want json", output)
			}
			rs, err := compress.SelectRecipes(recipes)
			if err != nil {
				return err
			}
			if len(student) > 0 {
				r, err := compress.StudentRecipe(student)
				if err != nil {
					return fmt.Errorf("--student: %w", err)
				}
				rs = append(rs, r)
			}
			src, ref, err := compressSource(cmd.Context(), g, args[0])
			if err != nil {
				return err
			}
			tr, te, err := pipeline.ReadDataset(data, format)
			if err != nil {
				return fmt.Errorf("--data %s: %w", data, err)
			}
			if te == nil {
				if !(evalShare > 0 && evalShare < 1) {
					return fmt.Errorf("--eval-share %v: want above 0, below 1", evalShare)
				}
				if tr, te, err = compress.HoldOut(tr, evalShare); err != nil {
					return fmt.Errorf("--data %s, --eval-share: %w", data, err)
				}
			}
			if out != "" {
				if err := emptyDir(out); err != nil {
					return fmt.Errorf("--out: %w", err)
				}
			}
			progress := func(i, n int, r string) {
				fmt.Fprintf(cmd.ErrOrStderr(), "[%d/%d] %s\n", i, n, r)
			}
			cs, err := compress.Search(cmd.Context(), src, rs, compress.Data{Train: tr, Eval: te, Calibration: calibration}, budget, progress)
			if err != nil {
				return err
			}
			if err := ortLatencies(cmd.Context(), ortLib, cs, te); err != nil {
				return err
			}
			kept := 0
			for _, c := range cs[1:] {
				if c.Within && c.Skipped == "" {
					kept++
				}
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(cs); err != nil {
					return err
				}
			} else {
				printCandidates(cmd.OutOrStdout(), cs, budget)
			}
			if kept == 0 {
				return fmt.Errorf("no variant within %.2g points of %s's accuracy; nothing written", budget, args[0])
			}
			dir := out
			if dir == "" && ref != "" && !dryRun {
				if dir, err = os.MkdirTemp("", "outpost-variants-"); err != nil {
					return err
				}
				defer os.RemoveAll(dir)
			}
			if dir == "" {
				return nil
			}
			for _, c := range cs[1:] {
				if !c.Within || c.Skipped != "" {
					continue
				}
				if err := writeVariant(filepath.Join(dir, c.Name), c); err != nil {
					return err
				}
			}
			if out != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d variants within %.2g points written to %s\n", kept, budget, out)
			}
			if ref == "" || dryRun {
				return nil
			}
			name, version := splitRef(ref)
			for _, c := range cs[1:] {
				if !c.Within || c.Skipped != "" {
					continue
				}
				if err := pushVariantMeta(cmd.Context(), g, filepath.Join(dir, c.Name), name, version, models.CandidateMeta(c, nil)); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&data, "data", "", "folder of labelled samples (idx, npy, npz or csv)")
	f.StringVar(&format, "format", "", "format of --data: idx, npy, npz or csv (default: found out)")
	f.Float64Var(&budget, "max-accuracy-drop", 1.0, "keep variants that lose at most this many points of accuracy")
	f.StringVar(&recipes, "recipes", "all", "comma-separated recipes: "+recipeNames())
	f.IntVar(&calibration, "calibration", 512, "training samples that calibrate int8")
	f.Float64Var(&evalShare, "eval-share", 0.2, "share of the samples held out to measure, when --data has no test split")
	f.StringVar(&out, "out", "", "write the variants within the budget to this folder (new or empty)")
	f.StringVarP(&output, "output", "o", "", "output format: json (every candidate with its measurements)")
	f.BoolVar(&dryRun, "dry-run", false, "with NAME@VERSION: measure, but push nothing")
	f.IntSliceVar(&student, "student", nil, "also distil a student of these hidden sizes (for example 32 or 64,16; a CNN's two widths)")
	f.StringVar(&ortLib, "onnxruntime-lib", "", "ONNX Runtime shared library (libonnxruntime.so) to measure each variant's latency in too (env "+ort.EnvLib+")")
	return cmd
}

func recipeNames() string {
	var names []string
	for _, r := range compress.Recipes() {
		names = append(names, r.Name)
	}
	return strings.Join(names, ", ")
}

// compressSource reads the model compress starts from: a local ONNX file or model folder,
// or, when arg is no such path and reads NAME@VERSION, that version's served ONNX file
// from the hub (ref is then arg).
func compressSource(ctx context.Context, g *globals, arg string) (m *onnxpb.ModelProto, ref string, err error) {
	if _, err := os.Stat(arg); err == nil || !strings.Contains(arg, "@") {
		m, err := readONNX(arg)
		return m, "", err
	}
	m, err = pullServedONNX(ctx, g, arg, "")
	return m, arg, err
}

// pullServedONNX pulls the ONNX file an agent serves of ref (NAME@VERSION), or of its
// variant named variant, verified, and reads it.
func pullServedONNX(ctx context.Context, g *globals, ref, variant string) (*onnxpb.ModelProto, error) {
	name, version := splitRef(ref)
	if version == "" {
		return nil, fmt.Errorf("%q: want NAME@VERSION", ref)
	}
	h, err := g.hub()
	if err != nil {
		return nil, err
	}
	repo, err := repository(h, name)
	if err != nil {
		return nil, err
	}
	what, at := ref, version
	if variant != "" {
		v, err := artifact.ResolveVariant(ctx, repo, version, variant)
		if err != nil {
			return nil, fmt.Errorf("%s variant %s: %w", ref, variant, whyNotFound(ctx, h, repo, name, version, err))
		}
		what, at = ref+" variant "+variant, v.Digest.String()
	}
	dir, err := os.MkdirTemp("", "outpost-pull-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	prog, done := g.progress("pull " + what)
	man, err := artifact.Pull(ctx, repo, at, dir, artifact.PullOptions{Progress: prog})
	done()
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", what, whyNotFound(ctx, h, repo, name, version, err))
	}
	f, err := servedONNX(man.Files)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return readONNX(filepath.Join(dir, filepath.FromSlash(f.Path)))
}

// readONNX reads the ONNX model at path: a file, or a folder with model.onnx.
func readONNX(path string) (*onnxpb.ModelProto, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "model.onnx")
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > interp.MaxModelBytes {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d the runtimes load", path, st.Size(), interp.MaxModelBytes)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := onnx.Unmarshal(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := interp.LoadProto(m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// ortLatencies measures, when ONNX Runtime is at hand (lib, or the library env names), each
// candidate's latency in it too.
func ortLatencies(ctx context.Context, lib string, cs []compress.Candidate, eval compress.Dataset) error {
	if lib == "" {
		lib = os.Getenv(ort.EnvLib)
	}
	if lib == "" {
		return nil
	}
	rt, err := ort.New(lib)
	if err != nil {
		return fmt.Errorf("--onnxruntime-lib: %w", err)
	}
	for i := range cs {
		if cs[i].Skipped != "" {
			continue
		}
		s, err := rt.LoadBytes(ctx, cs[i].Model)
		if err != nil {
			return fmt.Errorf("%s in ONNX Runtime: %w", cs[i].Name, err)
		}
		cs[i].ORTLatency1, cs[i].ORTLatency32, err = compress.Latency(ctx, s, eval, compress.LatencyRuns)
		s.Close()
		if err != nil {
			return fmt.Errorf("%s in ONNX Runtime: %w", cs[i].Name, err)
		}
	}
	return nil
}

// printCandidates prints the search's table.
func printCandidates(w io.Writer, cs []compress.Candidate, budget float64) {
	tw := newTable(w)
	fmt.Fprintln(tw, "VARIANT\tMETHOD\tBYTES\tSIZE\tACCURACY\tDROP\tGO B1\tGO B32\tORT B1\tORT B32\tMEMORY\tPARETO\tNOTE")
	for _, c := range cs {
		if c.Skipped != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t\tskipped: %s\n", c.Name, c.Method, c.Skipped)
			continue
		}
		mark, note := "", ""
		if c.Pareto {
			mark = "*"
		}
		if !c.Within {
			note = fmt.Sprintf("over the %.2g-point budget", budget)
		}
		gain := -c.Drop
		if gain == 0 {
			gain = 0 // not -0
		}
		ort1, ort32 := "-", "-"
		if c.ORTLatency1 > 0 {
			ort1, ort32 = c.ORTLatency1.Round(100).String(), c.ORTLatency32.Round(1000).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.3fx\t%.2f%%\t%+.2f\t%v\t%v\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Method, c.Bytes, c.Ratio,
			100*c.Accuracy, gain, c.Latency1.Round(100), c.Latency32.Round(1000), ort1, ort32, bytesize.Format(c.Memory), mark, note)
	}
	tw.Flush()
}

// writeVariant writes c's model to dir/model.onnx (a model folder to push) and its
// measurements beside the folder, to dir.json.
func writeVariant(dir string, c compress.Candidate) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), c.Model, 0o644); err != nil {
		return err
	}
	b, err := json.MarshalIndent(models.CandidateMeta(c, nil), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(dir+".json", append(b, '\n'), 0o644)
}
