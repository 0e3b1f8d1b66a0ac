// Command gen retrains the model zoo (internal/zoo) on the embedded
// Fashion-MNIST subset and rewrites its ONNX files, zoo.json and README.md.
// The output is deterministic on a given CPU architecture.
//
//	go run ./internal/zoo/gen [-dir internal/zoo]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/zoo"
)

func main() {
	dir := flag.String("dir", "internal/zoo", "directory to write the models, zoo.json and README.md into")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *dir); err != nil {
		slog.Error("zoo gen failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, dir string) error {
	trainSet, testSet, err := dataset.FashionSubset()
	if err != nil {
		return err
	}
	built, err := zoo.Build(ctx, trainSet, testSet, func(format string, args ...any) {
		slog.Info(fmt.Sprintf(format, args...))
	})
	if err != nil {
		return err
	}
	models := make([]zoo.Model, len(built))
	for i, b := range built {
		models[i] = b.Model
		if err := os.WriteFile(filepath.Join(dir, b.File), b.Data, 0o644); err != nil {
			return err
		}
	}
	manifest, err := json.MarshalIndent(models, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, zoo.ManifestFile), append(manifest, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "README.md"), zoo.Readme(models), 0o644)
}
