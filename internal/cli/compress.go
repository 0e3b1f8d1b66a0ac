package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/internal/bytesize"
	"outpost.dev/outpost/internal/compress"
	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/onnxpb"
	"outpost.dev/outpost/internal/pipeline"
)

func newModelCompressCmd(g *globals) *cobra.Command {
	var (
		data, format, recipes, out, output string
		budget                             float64
		calibration                        int
		evalShare                          float64
	)
	cmd := &cobra.Command{
		Use:   "compress MODEL --data DIR [--max-accuracy-drop POINTS] [--out DIR]",
		Short: "Make smaller variants of an ONNX model and keep those within an accuracy budget",
		Long: `Make a variant of the ONNX model MODEL (a file, or a model folder holding
model.onnx) by each recipe: float16 weights; int8 quantization (QDQ form,
weights per output channel, activations calibrated on the training samples
by min-max or percentile); for MLPs also unstructured pruning (80% zeros,
compressing in transfer), structured pruning (removing hidden units) with
or without int8, and a distilled student a tenth as wide. Pruned models and
students are fine-tuned on the training samples.

Every variant is measured on labelled samples the methods did not train on:
the data's own test split, or the last --eval-share of its samples. The
table shows size, accuracy and its drop from MODEL's in points, the Go
runtime's latency at batch 1 and 32, the heap it allocated to load and run
once, and marks with * the Pareto front: the variants within the budget no
other beats on both size and accuracy. With --out, each variant within the
budget is written to DIR/NAME/model.onnx with its measurements in
DIR/NAME/variant.json. No variant within the budget is an error, and then
nothing is written.

DIR of --data holds labelled samples as a pipeline's dataset step reads
them: idx, npy, npz or csv (see docs/pipelines.md).`,
		Example: `  outpost model example ./mlp
  outpost fl example-data ./fmnist
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
			src, err := readONNX(args[0])
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
				n := tr.Len()
				cut := n - int(evalShare*float64(n))
				if cut <= 0 || cut >= n {
					return fmt.Errorf("--data %s: %d samples are too few to hold out %v of them", data, n, evalShare)
				}
				tr, te = samples{tr, 0, cut}, samples{tr, cut, n}
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
			if out != "" {
				for _, c := range cs[1:] {
					if !c.Within || c.Skipped != "" {
						continue
					}
					if err := writeVariant(filepath.Join(out, c.Name), c); err != nil {
						return err
					}
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d variants within %.2g points written to %s\n", kept, budget, out)
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
	return cmd
}

func recipeNames() string {
	var names []string
	for _, r := range compress.Recipes() {
		names = append(names, r.Name)
	}
	return strings.Join(names, ", ")
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

// printCandidates prints the search's table.
func printCandidates(w io.Writer, cs []compress.Candidate, budget float64) {
	tw := newTable(w)
	fmt.Fprintln(tw, "VARIANT\tMETHOD\tBYTES\tSIZE\tACCURACY\tDROP\tGO B1\tGO B32\tMEMORY\tPARETO\tNOTE")
	for _, c := range cs {
		if c.Skipped != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t\tskipped: %s\n", c.Name, c.Method, c.Skipped)
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
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.3fx\t%.2f%%\t%+.2f\t%v\t%v\t%s\t%s\t%s\n", c.Name, c.Method, c.Bytes, c.Ratio,
			100*c.Accuracy, gain, c.Latency1.Round(100), c.Latency32.Round(1000), bytesize.Format(c.Memory), mark, note)
	}
	tw.Flush()
}

// writeVariant writes c's model and measurements into dir.
func writeVariant(dir string, c compress.Candidate) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), c.Model, 0o644); err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "variant.json"), append(b, '\n'), 0o644)
}

// samples is samples [from, to) of a data set.
type samples struct {
	compress.Dataset
	from, to int
}

func (s samples) Len() int { return s.to - s.from }

func (s samples) Sample(i int, dst []float32) int { return s.Dataset.Sample(s.from+i, dst) }
