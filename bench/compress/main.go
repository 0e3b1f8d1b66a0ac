// Command compress measures the variants outpost model compress makes of the zoo's MLP and
// CNN on Fashion-MNIST: size, accuracy drop on the 10,000 test images, latency in the Go
// runtime and in ONNX Runtime at batch 1 and 32, and the time to bring each variant to a
// cluster over a thin link against the full model. Methods calibrate and fine-tune on the
// training images the zoo's models were trained on (the first 6,000; -train-images uses more).
// It prints one table and the aims it checks.
//
//	eval "$(./scripts/tools.sh)"      # ONNX Runtime, Debian's dataset-fashion-mnist
//	go run ./bench/compress
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/klauspost/compress/zstd"

	"outpost.dev/outpost/internal/bytesize"
	"outpost.dev/outpost/internal/compress"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/ort"
	"outpost.dev/outpost/internal/zoo"
)

func main() {
	var (
		link    = flag.String("link", "256KiB", "link rate (bytes per second) the transfer times assume")
		models  = flag.String("models", "mlp,cnn", "zoo models to compress")
		recipes = flag.String("recipes", "all", "recipes (see outpost model compress --help)")
		fmnist  = flag.String("data", dataset.DebianFashionDir, "Fashion-MNIST folder (train and t10k)")
		images  = flag.Int("train-images", dataset.SubsetTrainLen, "training images the methods calibrate and fine-tune on (the zoo trained on the first 6,000)")
	)
	flag.Parse()
	rate, err := bytesize.ParseRate(*link)
	if err != nil || rate <= 0 {
		fail(fmt.Errorf("-link %q: %v", *link, err))
	}
	if err := run(context.Background(), *models, *recipes, *fmnist, *images, rate); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/compress:", err)
	os.Exit(1)
}

func run(ctx context.Context, models, recipes, dir string, images int, rate int64) error {
	tr, err := dataset.ReadFashionDir(dir, "train")
	if err != nil {
		return fmt.Errorf("%w (Debian dataset-fashion-mnist; scripts/debian-deps.sh installs it)", err)
	}
	if images < 1 || images > tr.Len() {
		return fmt.Errorf("-train-images %d: want 1 to %d", images, tr.Len())
	}
	tr = tr.Slice(0, images)
	te, err := dataset.ReadFashionDir(dir, "t10k")
	if err != nil {
		return err
	}
	rs, err := compress.SelectRecipes(recipes)
	if err != nil {
		return err
	}
	rt, err := ort.FromEnv(ort.WithIntraOpThreads(1))
	if errors.Is(err, ort.ErrNoLibrary) || errors.Is(err, ort.ErrNoCgo) {
		fmt.Fprintln(os.Stderr, "bench/compress: no ONNX Runtime, its columns stay empty:", err)
		rt = nil
	} else if err != nil {
		return err
	}
	fmt.Printf("Fashion-MNIST: %d training images (calibration, fine-tuning, distillation), %d test images (accuracy); link %s/s\n\n",
		tr.Len(), te.Len(), bytesize.Format(rate))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tVARIANT\tBYTES\tSIZE\tZSTD\tACCURACY\tDROP\tGO B1\tGO B32\tORT B1\tORT B32\tLINK TIME\t")
	var rows []row
	for _, name := range splitList(models) {
		_, data, err := zoo.Get(name)
		if err != nil {
			return err
		}
		m, err := onnx.Unmarshal(data)
		if err != nil {
			return err
		}
		start := time.Now()
		cs, err := compress.Search(ctx, m, rs, compress.Data{Train: tr, Eval: te}, 100, func(i, n int, r string) {
			fmt.Fprintf(os.Stderr, "%s [%d/%d] %s\n", name, i, n, r)
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%s: %d recipes in %v\n", name, len(rs), time.Since(start).Round(time.Second))
		fullZ := zstdLen(cs[0].Model)
		for _, c := range cs {
			if c.Skipped != "" {
				continue
			}
			r := row{model: name, c: c, zstd: zstdLen(c.Model)}
			if rt != nil {
				if r.ort1, r.ort32, err = ortLatency(ctx, rt, c.Model, te); err != nil {
					return fmt.Errorf("%s %s in ONNX Runtime: %w", name, c.Name, err)
				}
			}
			secs := float64(len(c.Model)) / float64(rate)
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.3fx\t%.3fx\t%.2f%%\t%.2f\t%v\t%v\t%v\t%v\t%.1f s\t\n", name, c.Name, c.Bytes, c.Ratio,
				float64(r.zstd)/float64(fullZ), 100*c.Accuracy, c.Drop, c.Latency1.Round(100), c.Latency32.Round(time.Microsecond),
				r.ort1.Round(100), r.ort32.Round(time.Microsecond), secs)
			rows = append(rows, r)
		}
	}
	tw.Flush()
	fmt.Println()
	fmt.Println("SIZE: the ONNX file against the full model's; ZSTD: the same, both compressed with zstd (as a")
	fmt.Println("bundle or a weight delta carries them); DROP: accuracy points lost on the test images; latency:")
	fmt.Println("median of runs on one thread (ONNX Runtime) or the Go runtime's default; LINK TIME: the file over")
	fmt.Println("the link at its rate (against the full model's, as SIZE).")
	fmt.Println()
	aims(rows, te)
	return nil
}

type row struct {
	model       string
	c           compress.Candidate
	zstd        int
	ort1, ort32 time.Duration
}

// aims prints each aim of the compression issue against the best variant that meets its
// method.
func aims(rows []row, te compress.Dataset) {
	check := func(what string, ok bool, got string) {
		verdict := "met"
		if !ok {
			verdict = "NOT met"
		}
		fmt.Printf("  %-52s %-8s %s\n", what, verdict, got)
	}
	find := func(model, name string) (row, bool) {
		i := slices.IndexFunc(rows, func(r row) bool { return r.model == model && r.c.Name == name })
		if i < 0 {
			return row{}, false
		}
		return rows[i], true
	}
	var models []string
	for _, r := range rows {
		if !slices.Contains(models, r.model) {
			models = append(models, r.model)
		}
	}
	for _, model := range models {
		fmt.Printf("aims (%s):\n", model)
		if r, ok := find(model, "int8"); ok {
			check("int8 <= 0.27x size, <= 0.5 point drop", r.c.Ratio <= 0.27 && r.c.Drop <= 0.5, fmt.Sprintf("%.3fx, %.2f points", r.c.Ratio, r.c.Drop))
			full, _ := find(model, "full")
			q, f, err := headToHead(context.Background(), r.c.Model, full.c.Model, te, 301)
			if err != nil {
				check("Go runtime: int8 faster than float32 at batch 32", false, err.Error())
			} else {
				check("Go runtime: int8 faster than float32 at batch 32", q < f,
					fmt.Sprintf("int8 %v, float32 %v (%.2fx), runs taken in turn", q.Round(time.Microsecond), f.Round(time.Microsecond), float64(q)/float64(f)))
			}
			if r.ort32 > 0 {
				fmt.Printf("  %-52s %-8s %.2fx\n", "Go int8 / ONNX Runtime int8 at batch 32", "", float64(r.c.Latency32)/float64(r.ort32))
			}
		}
		// best is the smallest of the variants named that meets the aim, else the smallest.
		best := func(meets func(compress.Candidate) bool, names ...string) (row, bool) {
			var b row
			found := false
			for _, n := range names {
				r, ok := find(model, n)
				if ok && (!found || meets(r.c) && !meets(b.c) || meets(r.c) == meets(b.c) && r.c.Ratio < b.c.Ratio) {
					b, found = r, true
				}
			}
			return b, found
		}
		pruned := func(c compress.Candidate) bool { return c.Ratio <= 0.15 && c.Drop <= 1 }
		if r, ok := best(pruned, "pruned50-int8", "pruned35-int8", "pruned25-int8"); ok {
			check("structured pruning + int8 <= 0.15x, <= 1 point", pruned(r.c), fmt.Sprintf("%s %.3fx, %.2f points", r.c.Name, r.c.Ratio, r.c.Drop))
		}
		student := func(c compress.Candidate) bool { return c.Ratio <= 0.1 && c.Drop <= 2 }
		if r, ok := best(student, "student10", "student10-int8"); ok {
			check("distilled student <= 0.1x, <= 2 points", student(r.c), fmt.Sprintf("%s %.3fx, %.2f points", r.c.Name, r.c.Ratio, r.c.Drop))
		}
	}
}

// headToHead loads models a and b in the Go runtime and returns the median time of each at
// batch 32 over runs runs, taken in turn, so that the machine's moods fall on both alike.
func headToHead(ctx context.Context, a, b []byte, te compress.Dataset, runs int) (time.Duration, time.Duration, error) {
	var ss [2]*interp.Model
	for i, m := range [][]byte{a, b} {
		s, err := interp.Load(m)
		if err != nil {
			return 0, 0, err
		}
		ss[i] = s
	}
	var times [2][]time.Duration
	for range runs {
		for i, s := range ss {
			_, t32, err := compress.Latency(ctx, s, te, 1)
			if err != nil {
				return 0, 0, err
			}
			times[i] = append(times[i], t32)
		}
	}
	for i := range times {
		slices.Sort(times[i])
	}
	return times[0][runs/2], times[1][runs/2], nil
}

func ortLatency(ctx context.Context, rt *ort.Runtime, model []byte, te compress.Dataset) (time.Duration, time.Duration, error) {
	s, err := rt.LoadBytes(ctx, model)
	if err != nil {
		return 0, 0, err
	}
	defer s.Close()
	return compress.Latency(ctx, s, te, compress.LatencyRuns)
}

func zstdLen(b []byte) int {
	var buf bytes.Buffer
	w, _ := zstd.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Len()
}

func splitList(s string) []string {
	var out []string
	for _, p := range bytes.Split([]byte(s), []byte(",")) {
		if len(p) > 0 {
			out = append(out, string(p))
		}
	}
	return out
}
