package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/zoo/torchzoo"
)

// archNames resolves the -archs flag: "all" or a comma-separated list.
func archNames(flagValue string) ([]string, error) {
	var all []string
	for _, a := range torchzoo.Archs() {
		all = append(all, a.Name)
	}
	if flagValue == "all" {
		return all, nil
	}
	names := strings.Split(flagValue, ",")
	for _, n := range names {
		if !slices.Contains(all, n) {
			return nil, fmt.Errorf("-archs: no architecture %q (have %s)", n, strings.Join(all, ", "))
		}
	}
	return names, nil
}

// archTiming is one runtime's time per image on one architecture at one
// batch size, or why it has none.
type archTiming struct {
	perImage time.Duration
	runs     int
	why      string
}

// runArchs exports each architecture with PyTorch (torchzoo, cached) and
// prints, per batch size, each runtime's time per image and the Go
// runtime's divided by ONNX Runtime's; a runtime that cannot load an
// architecture prints the reason instead.
func runArchs(ctx context.Context, names []string, batches []int, runtimes []engine.Runtime, cfg config) error {
	if err := torchzoo.Available(ctx); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	head := "architecture\tbatch"
	for _, r := range runtimes {
		head += "\t" + r.Name() + " per image"
	}
	if len(runtimes) > 1 {
		head += "\tgo/ort"
	}
	fmt.Fprintln(tw, head+"\t")
	var notes []string
	for _, name := range names {
		start := time.Now()
		exp, err := torchzoo.Cached(ctx, name, 1)
		if err != nil {
			return err
		}
		if d := time.Since(start); d > time.Second {
			fmt.Fprintf(os.Stderr, "exported %s with PyTorch in %v\n", name, d.Round(100*time.Millisecond))
		}
		x, err := exp.Input()
		if err != nil {
			return err
		}
		// The Go runtime's reason is named from the graph: every missing operator.
		var goWhy string
		if data, err := os.ReadFile(exp.Model()); err == nil {
			if s, err := engine.CheckSupport(data); err == nil && len(s.GoMissing) > 0 {
				goWhy = "lacks " + strings.Join(s.GoMissing, ", ")
			}
		}
		timings := make([][]archTiming, len(runtimes))
		for i, r := range runtimes {
			s, err := r.Load(ctx, exp.Model())
			if err != nil {
				why := goWhy
				if r.Name() != engine.RuntimeGo || why == "" {
					why = err.Error()
				}
				for range batches {
					timings[i] = append(timings[i], archTiming{why: "cannot load: " + why})
				}
				continue
			}
			for _, bs := range batches {
				t, err := timeRuns(ctx, s, tile(x, bs), bs, cfg.duration)
				if err != nil {
					t = archTiming{why: err.Error()}
				}
				timings[i] = append(timings[i], t)
			}
			s.Close()
		}
		for j, bs := range batches {
			row := fmt.Sprintf("%s\t%d", name, bs)
			for i := range runtimes {
				t := timings[i][j]
				if t.why != "" {
					notes = append(notes, fmt.Sprintf("%s, %s: %s", name, runtimes[i].Name(), t.why))
					row += "\t(see below)"
					continue
				}
				row += fmt.Sprintf("\t%s (%d runs)", dur(t.perImage), t.runs)
			}
			if len(runtimes) > 1 {
				g, o := timings[0][j], timings[1][j]
				if g.why == "" && o.why == "" {
					row += fmt.Sprintf("\t%.2f", ratio(g.perImage, o.perImage))
				} else {
					row += "\t-"
				}
			}
			fmt.Fprintln(tw, row+"\t")
		}
	}
	tw.Flush()
	if len(notes) > 0 {
		fmt.Println()
		for _, n := range slices.Compact(notes) {
			fmt.Println(n)
		}
	}
	fmt.Println("\nper image: the median run's time divided by the batch; go/ort is the Go runtime's time divided by ONNX Runtime's (below 1: the Go runtime is faster).")
	return nil
}

// tile repeats the batch-1 tensor x n times along the first dimension.
func tile(x *interp.Tensor, n int) map[string]*interp.Tensor {
	shape := append([]int{n * x.Shape[0]}, x.Shape[1:]...)
	var t *interp.Tensor
	switch x.DType {
	case interp.Int64:
		d := make([]int64, 0, n*len(x.I64))
		for range n {
			d = append(d, x.I64...)
		}
		t = interp.FromInt64(d, shape...)
	default:
		d := make([]float32, 0, n*len(x.F32))
		for range n {
			d = append(d, x.F32...)
		}
		t = interp.FromFloat32(d, shape...)
	}
	return map[string]*interp.Tensor{torchzoo.InputName: t}
}

// timeRuns runs s once to warm up, then back to back until d has passed
// (at least 3 runs), and returns the median run's time per image.
func timeRuns(ctx context.Context, s engine.Session, in map[string]*interp.Tensor, bs int, d time.Duration) (archTiming, error) {
	if _, err := s.Run(ctx, in); err != nil {
		return archTiming{}, err
	}
	var lat []time.Duration
	start := time.Now()
	for len(lat) < 3 || time.Since(start) < d {
		t0 := time.Now()
		if _, err := s.Run(ctx, in); err != nil {
			return archTiming{}, err
		}
		lat = append(lat, time.Since(t0))
		if err := ctx.Err(); err != nil {
			return archTiming{}, err
		}
	}
	if len(lat) == 0 {
		return archTiming{}, errors.New("no run finished")
	}
	slices.Sort(lat)
	return archTiming{perImage: lat[len(lat)/2] / time.Duration(bs), runs: len(lat)}, nil
}
