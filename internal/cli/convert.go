package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/tflite"
)

func newModelConvertCmd(g *globals) *cobra.Command {
	var (
		to, output, from string
		batch            int
	)
	cmd := &cobra.Command{
		Use:   "convert FILE.onnx|NAME@VERSION --to tflite [-o OUT.tflite]",
		Short: "Convert an ONNX model to TensorFlow Lite, for edge runtimes that run only that",
		Long: `Convert an ONNX model of the MLP and CNN family to a TensorFlow Lite
flatbuffer. FILE.onnx is converted on this machine (no hub needed) and
written to -o. NAME@VERSION is a version in the hub's registry: its served
ONNX file is pulled (verified), converted, and pushed as the version's
variant "tflite" (with --variant V, V's files are converted instead, pushed
as "V-tflite"), which 'outpost model pull --variant' fetches. Agents serve
ONNX, so deployments never send a TensorFlow Lite variant. The operators it knows are Gemm,
Conv (depthwise too), MaxPool, AveragePool, Relu, Softmax, Flatten, Reshape and
Add; a model quantized to int8 in QDQ form (QuantizeLinear and DequantizeLinear
around them) becomes an int8 model with per-channel weights. Anything else is
refused with an error naming the node and its operator.

TensorFlow Lite tensors have fixed shapes: a symbolic batch dimension becomes
--batch (default 1). Images are NHWC in TensorFlow Lite: an input [N, C, H, W]
becomes [N, H, W, C].

OUT must not exist; on any error nothing is written. See docs/tflite.md.`,
		Example: `  outpost model example ./cnn --name cnn
  outpost model convert ./cnn/model.onnx --to tflite -o cnn.tflite
  outpost model convert fashion-cnn@1.0.0 --to tflite
  outpost model convert fashion-cnn@1.0.0 --variant int8 --to tflite`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to != "tflite" {
				return fmt.Errorf("--to %q: the one format is tflite", to)
			}
			if _, err := os.Stat(args[0]); err != nil && strings.Contains(args[0], "@") {
				return convertVersion(cmd.Context(), g, args[0], from, batch)
			}
			if from != "" {
				return errors.New("--variant takes NAME@VERSION: a local file has no variants")
			}
			if output == "" {
				return errors.New("-o OUT.tflite is required")
			}
			if _, err := os.Lstat(output); err == nil {
				return fmt.Errorf("-o %s exists: choose a new file", output)
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			m, err := onnx.Unmarshal(data)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			b, err := tflite.Convert(m, tflite.Options{Batch: batch})
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if err := writeNew(output, b); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d bytes of TensorFlow Lite from %s (%d bytes of ONNX)\n", output, len(b), args[0], len(data))
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the format to convert to: tflite")
	cmd.Flags().StringVarP(&output, "output", "o", "", "the file to write (must not exist)")
	cmd.Flags().IntVar(&batch, "batch", 1, "the batch size given to a symbolic first dimension")
	cmd.Flags().StringVar(&from, "variant", "", "with NAME@VERSION: convert this variant of the version (int8, ...) instead of the version")
	return cmd
}

// writeNew writes b to path, which must not exist, through a temporary
// file in the same folder: path appears whole or not at all.
func writeNew(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// A link, unlike a rename, fails when path appeared meanwhile.
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("-o %s: %w", path, err)
	}
	return nil
}

// convertVersion converts the served ONNX file of ref (NAME@VERSION), or of its variant from,
// and pushes the result as the version's variant "tflite" (or from+"-tflite").
func convertVersion(ctx context.Context, g *globals, ref, from string, batch int) error {
	name, version := splitRef(ref)
	m, err := pullServedONNX(ctx, g, ref, from)
	if err != nil {
		return err
	}
	b, err := tflite.Convert(m, tflite.Options{Batch: batch})
	if err != nil {
		return fmt.Errorf("%s: %w", ref, err)
	}
	dir, err := os.MkdirTemp("", "outpost-tflite-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "model.tflite"), b, 0o644); err != nil {
		return err
	}
	meta := artifact.VariantMeta{Name: "tflite", Method: "tflite-convert", Params: map[string]string{"batch": strconv.Itoa(batch)}}
	if from != "" {
		meta.Name, meta.Params["from"] = from+"-tflite", from
	}
	if err := meta.Validate(); err != nil {
		return err
	}
	return pushVariantMeta(ctx, g, dir, name, version, meta)
}
