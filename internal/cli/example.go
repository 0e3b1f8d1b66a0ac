package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/durable"
	"outpost.dev/outpost/internal/fl"
	"outpost.dev/outpost/internal/zoo"
)

// newModelExampleCmd writes one of the models built into the binary to a
// folder, so that a first push needs no model of one's own.
func newModelExampleCmd(g *globals) *cobra.Command {
	var (
		name  string
		input string
		image int
	)
	cmd := &cobra.Command{
		Use:   "example DIR",
		Short: "Write an example model (a Fashion-MNIST classifier) to DIR, to push and serve",
		Long: `Write one of the small models built into outpost to DIR/model.onnx: ONNX
classifiers of 28x28 Fashion-MNIST images into ten classes, trained by outpost
itself (see 'outpost model example --list'). DIR is then a model folder for
'outpost model push'. With --input FILE, one test image that the model did not
train on is written to FILE as the JSON array that 'outpost infer --input'
takes, and its true class is printed.

The mlp and cnn examples are also initial models for federated learning: a
FederatedJob of spec.model.arch mlp (the default) starts from the mlp, one of
arch cnn from the cnn (see docs/federated.md).

DIR must not exist or be empty; FILE must not exist.`,
		Example: `  outpost model example ./my-model --input image.json
  outpost model example ./small --name mlp-int8
  outpost model example ./initial-cnn --name cnn    # a FederatedJob of arch cnn starts from it
  outpost model example --list`,
		Args: func(cmd *cobra.Command, args []string) error {
			if list, _ := cmd.Flags().GetBool("list"); list {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			ms, err := zoo.Models()
			if err != nil {
				return err
			}
			if list, _ := cmd.Flags().GetBool("list"); list {
				w := newTable(out)
				fmt.Fprintln(w, "NAME\tINPUT\tPARAMS\tBYTES\tTEST ACCURACY\tDESCRIPTION")
				for _, m := range ms {
					fmt.Fprintf(w, "%s\t%v\t%d\t%d\t%.1f%%\t%s\n", m.Name, m.Input, m.Params, m.Bytes, 100*m.TestAccuracy, m.Description)
				}
				return w.Flush()
			}
			m, data, err := zoo.Get(name)
			if err != nil {
				var names []string
				for _, m := range ms {
					names = append(names, m.Name)
				}
				return fmt.Errorf("no example model %q (there are: %s)", name, strings.Join(names, ", "))
			}
			dir := args[0]
			if err := emptyDir(dir); err != nil {
				return err
			}
			var sample []byte
			var label uint8
			if input != "" {
				if _, err := os.Stat(input); err == nil {
					return fmt.Errorf("--input %s exists: choose a new file", input)
				}
				_, test, err := dataset.FashionSubset()
				if err != nil {
					return err
				}
				if image < 0 || image >= test.Len() {
					return fmt.Errorf("--image %d: the test set has images 0 to %d", image, test.Len()-1)
				}
				x := make([]float32, test.Dim())
				test.Sample(image, x)
				if sample, err = json.Marshal(x); err != nil {
					return err
				}
				label = test.Labels[image]
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			if err := durable.WriteFile(filepath.Join(dir, "model.onnx"), data, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(out, "wrote %s: %s, %d parameters, %.1f%% accurate on the Fashion-MNIST test subset\n",
				filepath.Join(dir, "model.onnx"), m.Description, m.Params, 100*m.TestAccuracy)
			if arch := federatedArch(data); arch != "" {
				fmt.Fprintf(out, "a FederatedJob of spec.model.arch %s can start from it\n", arch)
			}
			if input != "" {
				if err := durable.WriteFile(input, append(sample, '\n'), 0o644); err != nil {
					return err
				}
				fmt.Fprintf(out, "wrote %s: test image %d, of class %d (%s)\n", input, image, label, dataset.FashionClasses[label])
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "mlp", "which example model (see --list)")
	f.StringVar(&input, "input", "", "also write one test image to this file, as inference input")
	f.IntVar(&image, "image", 0, "which test image --input writes (0 to 999)")
	f.Bool("list", false, "list the example models")
	return cmd
}

// federatedArch is the arch of FederatedJob that can start from the ONNX model data (one that
// internal/train exported), or "" if none can.
func federatedArch(data []byte) string {
	for _, arch := range []string{v1alpha1.ArchMLP, v1alpha1.ArchCNN} {
		if _, _, err := fl.ReadONNX(arch, data); err == nil {
			return arch
		}
	}
	return ""
}

// emptyDir returns nil when dir does not exist or is an empty folder.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case len(entries) > 0:
		return fmt.Errorf("%s is not empty: choose a new folder", dir)
	}
	return nil
}
