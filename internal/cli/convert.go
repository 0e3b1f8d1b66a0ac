package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/tflite"
)

func newModelConvertCmd(_ *globals) *cobra.Command {
	var (
		to, output string
		batch      int
	)
	cmd := &cobra.Command{
		Use:   "convert FILE.onnx --to tflite -o OUT.tflite",
		Short: "Convert a local ONNX model to TensorFlow Lite, for edge runtimes that run only that",
		Long: `Convert an ONNX model file of the MLP and CNN family to a TensorFlow Lite
flatbuffer, on this machine (no hub needed). The operators it knows are Gemm,
Conv (depthwise too), MaxPool, AveragePool, Relu, Softmax, Flatten, Reshape and
Add; a model quantized to int8 in QDQ form (QuantizeLinear and DequantizeLinear
around them) becomes an int8 model with per-channel weights. Anything else is
refused with an error naming the node and its operator.

TensorFlow Lite tensors have fixed shapes: a symbolic batch dimension becomes
--batch (default 1). Images are NHWC in TensorFlow Lite: an input [N, C, H, W]
becomes [N, H, W, C].

OUT must not exist; on any error nothing is written. See docs/tflite.md.`,
		Example: `  outpost model example ./cnn --name cnn
  outpost model convert ./cnn/model.onnx --to tflite -o cnn.tflite`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to != "tflite" {
				return fmt.Errorf("--to %q: the one format is tflite", to)
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
