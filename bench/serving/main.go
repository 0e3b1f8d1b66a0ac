// Command serving compares the pure-Go ONNX runtime (internal/onnx/interp,
// through engine.Go) with ONNX Runtime (internal/onnx/ort) on the
// model zoo (internal/zoo), in one run: requests per second and p50/p99
// latency, one image per request and batches of 32, of in-process
// Session.Run calls and of Open Inference Protocol v2 JSON requests to a
// serving.Server on loopback; and the memory each loaded model costs. It
// prints each figure of the Go runtime divided by ONNX Runtime's.
//
//	export OUTPOST_ONNXRUNTIME_LIB="$(scripts/ort.sh)"
//	go run ./bench/serving [-duration 2s] [-clients 1] [-ort-threads 0] [-copies 20] [-http=false]
//	go run ./bench/serving -archs all [-batches 1,32] [-duration 2s] [-ort-threads 0]
//
// Without OUTPOST_ONNXRUNTIME_LIB it measures the Go runtime alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/ort"
	"outpost.dev/outpost/internal/zoo"
)

func main() {
	var (
		duration   = flag.Duration("duration", 2*time.Second, "measuring time of each case")
		clients    = flag.Int("clients", 1, "goroutines sending requests at once")
		ortThreads = flag.Int("ort-threads", 0, "ONNX Runtime intra-op threads (0: its default, one per core)")
		copies     = flag.Int("copies", 20, "copies of each model loaded to measure memory per model")
		models     = flag.String("models", "mlp,cnn,mlp-int8", "zoo models to run")
		batches    = flag.String("batches", "1,32", "batch sizes")
		overHTTP   = flag.Bool("http", true, "also measure requests over HTTP (Open Inference Protocol v2 JSON, loopback)")
		archs      = flag.String("archs", "", "instead of the zoo, PyTorch-exported architectures: all, or a comma-separated list (needs python3-torchvision)")
	)
	flag.Parse()
	cfg := config{duration: *duration, clients: *clients, copies: *copies,
		models: strings.Split(*models, ","), http: *overHTTP, archs: *archs}
	for _, b := range strings.Split(*batches, ",") {
		n, err := strconv.Atoi(b)
		if err != nil || n < 1 {
			fail(fmt.Errorf("bad batch size %q", b))
		}
		cfg.batches = append(cfg.batches, n)
	}
	if err := run(context.Background(), cfg, *ortThreads); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/serving:", err)
	os.Exit(1)
}

type config struct {
	duration time.Duration
	clients  int
	copies   int
	models   []string
	batches  []int
	http     bool
	archs    string
}

type result struct {
	reqs          int
	rps, ips      float64 // requests and images per second
	p50, p99, avg time.Duration
}

type memory struct {
	heap, rss float64 // bytes per loaded model
}

func run(ctx context.Context, cfg config, ortThreads int) error {
	runtimes := []engine.Runtime{engine.Go{}}
	rt, err := ort.FromEnv(ort.WithIntraOpThreads(ortThreads))
	switch {
	case errors.Is(err, ort.ErrNoLibrary):
		fmt.Printf("note: %v; measuring the Go runtime only\n\n", err)
	case err != nil:
		return err
	default:
		runtimes = append(runtimes, rt)
	}
	if cfg.archs != "" {
		names, err := archNames(cfg.archs)
		if err != nil {
			return err
		}
		fmt.Printf("%s/%s, %d CPUs, GOMAXPROCS %d, at least %v and 3 runs per case", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), cfg.duration)
		if rt != nil {
			fmt.Printf(", ONNX Runtime %s (intra-op threads %s)", rt.Version(), threadsString(ortThreads))
		}
		fmt.Print("\n\n")
		return runArchs(ctx, names, cfg.batches, runtimes, cfg)
	}
	_, test, err := dataset.FashionSubset()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "outpost-bench-serving-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Printf("%s/%s, %d CPUs, GOMAXPROCS %d, %d client(s), %v per case", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), cfg.clients, cfg.duration)
	if rt != nil {
		fmt.Printf(", ONNX Runtime %s (intra-op threads %s)", rt.Version(), threadsString(ortThreads))
	}
	fmt.Print("\n\n")

	paths := map[string]string{}
	for _, name := range cfg.models {
		m, data, err := zoo.Get(name)
		if err != nil {
			return err
		}
		paths[name] = filepath.Join(dir, m.File)
		if err := os.WriteFile(paths[name], data, 0o644); err != nil {
			return err
		}
	}
	var srv *httpServer
	if cfg.http {
		if srv, err = startServer(ctx, runtimes, paths, cfg.clients); err != nil {
			return err
		}
		defer srv.stop()
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\tbatch\truntime\treq/s\timages/s\tp50\tp99\tgo/ort req/s\tgo/ort p50\tgo/ort p99\t")
	type memRow struct {
		model string
		mem   []memory
	}
	var mems []memRow
	for _, name := range cfg.models {
		m, _, err := zoo.Get(name)
		if err != nil {
			return err
		}
		path := paths[name]
		for _, bs := range cfg.batches {
			// Distinct inputs, cycled, so that no run reuses the last one's.
			inputs := make([]map[string]*interp.Tensor, 8)
			for i := range inputs {
				inputs[i] = map[string]*interp.Tensor{zoo.InputName: m.Batch(test, (i*bs)%(test.Len()-bs), bs)}
			}
			var res []result
			for _, r := range runtimes {
				s, err := r.Load(ctx, path)
				if err != nil {
					return fmt.Errorf("%s: %s: %w", r.Name(), m.File, err)
				}
				got, err := measure(ctx, runSession(s, inputs), bs, cfg)
				s.Close()
				if err != nil {
					return fmt.Errorf("%s: %s: %w", r.Name(), m.File, err)
				}
				res = append(res, got)
			}
			printRows(tw, m.Name, bs, runtimes, "", res)
			if srv == nil {
				continue
			}
			bodies := make([][]byte, len(inputs))
			for i, in := range inputs {
				if bodies[i], err = inferBody(in[zoo.InputName]); err != nil {
					return err
				}
			}
			res = res[:0]
			for _, r := range runtimes {
				got, err := measure(ctx, srv.inferCall(deployment(name, r.Name()), bodies), bs, cfg)
				if err != nil {
					return fmt.Errorf("%s over HTTP: %s: %w", r.Name(), m.File, err)
				}
				res = append(res, got)
			}
			printRows(tw, m.Name, bs, runtimes, " http", res)
		}
		row := memRow{model: m.Name}
		for _, r := range runtimes {
			mem, err := measureMemory(ctx, r, path, cfg.copies)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", r.Name(), m.File, err)
			}
			row.mem = append(row.mem, mem)
		}
		mems = append(mems, row)
	}
	tw.Flush()

	fmt.Printf("\nmemory per loaded model (%d copies loaded; Go heap growth and process RSS growth, divided by copies):\n\n", cfg.copies)
	tw = tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\tfile\truntime\tGo heap\tRSS\t")
	for _, row := range mems {
		m, _, _ := zoo.Get(row.model)
		for i, r := range runtimes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", row.model, size(float64(m.Bytes)), r.Name(), size(row.mem[i].heap), size(row.mem[i].rss))
		}
	}
	tw.Flush()
	fmt.Println("\nreq/s and p50/p99 per request; go/ort is the Go runtime's figure divided by ONNX Runtime's (req/s: above 1 is faster; latency: below 1 is faster).")
	return nil
}

// printRows prints one row per runtime, the first with its ratios to the second.
func printRows(tw io.Writer, model string, bs int, runtimes []engine.Runtime, via string, res []result) {
	for i, r := range runtimes {
		x := res[i]
		fmt.Fprintf(tw, "%s\t%d\t%s%s\t%.0f\t%.0f\t%s\t%s\t", model, bs, r.Name(), via, x.rps, x.ips, dur(x.p50), dur(x.p99))
		if i == 0 && len(res) > 1 {
			o := res[1]
			fmt.Fprintf(tw, "%.2f\t%.2f\t%.2f\t", x.rps/o.rps, ratio(x.p50, o.p50), ratio(x.p99, o.p99))
		} else {
			fmt.Fprint(tw, "\t\t\t")
		}
		fmt.Fprintln(tw)
	}
}

func threadsString(n int) string {
	if n == 0 {
		return "default"
	}
	return strconv.Itoa(n)
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func dur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	default:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	}
}

func size(b float64) string {
	switch {
	case b < 0:
		return "~0"
	case b < 1<<10:
		return fmt.Sprintf("%.0f B", b)
	case b < 1<<20:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	default:
		return fmt.Sprintf("%.2f MiB", b/(1<<20))
	}
}

// call makes request number i.
type call func(ctx context.Context, i int) error

// runSession calls s.Run on the inputs in turn.
func runSession(s engine.Session, inputs []map[string]*interp.Tensor) call {
	return func(ctx context.Context, i int) error {
		_, err := s.Run(ctx, inputs[i%len(inputs)])
		return err
	}
}

// measure warms up, then has cfg.clients goroutines make requests back to
// back for cfg.duration, recording every request's latency.
func measure(ctx context.Context, do call, bs int, cfg config) (result, error) {
	for i := range 20 {
		if err := do(ctx, i); err != nil {
			return result{}, err
		}
	}
	runtime.GC()
	lat := make([][]time.Duration, cfg.clients)
	errs := make([]error, cfg.clients)
	start := time.Now()
	deadline := start.Add(cfg.duration)
	var wg sync.WaitGroup
	for c := range cfg.clients {
		wg.Go(func() {
			l := make([]time.Duration, 0, 1<<16)
			for i := c; ; i++ {
				t0 := time.Now()
				if t0.After(deadline) {
					break
				}
				if err := do(ctx, i); err != nil {
					errs[c] = err
					return
				}
				l = append(l, time.Since(t0))
			}
			lat[c] = l
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return result{}, err
	}
	all := slices.Concat(lat...)
	if len(all) == 0 {
		return result{}, errors.New("no request finished")
	}
	slices.Sort(all)
	var sum time.Duration
	for _, d := range all {
		sum += d
	}
	r := result{reqs: len(all), rps: float64(len(all)) / elapsed.Seconds()}
	r.ips = r.rps * float64(bs)
	r.p50 = all[len(all)/2]
	r.p99 = all[min(len(all)-1, len(all)*99/100)]
	r.avg = sum / time.Duration(len(all))
	return r, nil
}

// measureMemory loads n copies of the model and returns the growth of the
// Go heap and of the process's resident set, per copy, after one request
// through each copy (so that lazily made buffers count).
func measureMemory(ctx context.Context, r engine.Runtime, path string, n int) (memory, error) {
	m, _, err := zoo.Get(strings.TrimSuffix(filepath.Base(path), ".onnx"))
	if err != nil {
		return memory{}, err
	}
	_, test, err := dataset.FashionSubset()
	if err != nil {
		return memory{}, err
	}
	in := map[string]*interp.Tensor{zoo.InputName: m.Batch(test, 0, 1)}
	heap0, rss0 := usage()
	sessions := make([]engine.Session, 0, n)
	defer func() {
		for _, s := range sessions {
			s.Close()
		}
	}()
	for range n {
		s, err := r.Load(ctx, path)
		if err != nil {
			return memory{}, err
		}
		sessions = append(sessions, s)
		if _, err := s.Run(ctx, in); err != nil {
			return memory{}, err
		}
	}
	heap1, rss1 := usage()
	runtime.KeepAlive(sessions)
	return memory{heap: float64(heap1-heap0) / float64(n), rss: float64(rss1-rss0) / float64(n)}, nil
}

// usage returns the live Go heap after a full collection and the resident
// set size of the process, in bytes.
func usage() (heap, rss int64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = int64(ms.HeapAlloc)
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			rss = pages * int64(os.Getpagesize())
		}
	}
	return heap, rss
}
