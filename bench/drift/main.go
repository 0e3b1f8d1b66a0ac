// Command drift measures drift monitoring at the edge (internal/serving's
// monitor, docs/drift.md), in one run:
//
//   - serving with monitoring on against off: requests per second and p99
//     latency of Open Inference Protocol v2 JSON requests to a
//     serving.Server on loopback, the zoo's MLP and CNN, one image per
//     request and batches of 32, off and on in alternating rounds, with the
//     windows going into a real agent outbox (SQLite); and the monitor's
//     CPU per request, its work replayed on one thread and timed by the
//     thread's CPU clock;
//
//   - bytes: one hour of 100 requests/s (360,000 requests of one
//     Fashion-MNIST image each, a fake clock advancing 10 ms a request),
//     the drift records the agent would send (JSON, zstd-compressed in the
//     outbox's batches) against raw payload logging of the same requests
//     (every request and response body, as KServe's payload logger sends
//     them);
//
//   - detection delay: windows and samples from a shift (darker images)
//     that starts in the middle of a window until the alarm, for several
//     window sizes.
//
//     go run ./bench/drift [-duration 1s] [-rounds 9] [-requests 360000]
//
// -cpuprofile writes a CPU profile of the whole run, for go tool pprof.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/klauspost/compress/zstd"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/agent"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/outbox"
	"outpost.dev/outpost/internal/serving"
	"outpost.dev/outpost/internal/zoo"
)

func main() {
	var (
		duration = flag.Duration("duration", time.Second, "measuring time of each throughput case and round")
		rounds   = flag.Int("rounds", 9, "rounds of off and on per throughput case (the medians are printed)")
		models   = flag.String("models", "mlp,cnn", "zoo models of the throughput cases")
		batches  = flag.String("batches", "1,32", "batch sizes of the throughput cases")
		requests = flag.Int("requests", 360_000, "requests of the bytes case (360,000: one hour at 100/s)")
		windows  = flag.String("windows", "100,250,500,1000,2000", "window sizes of the detection delay case")
		parts    = flag.String("parts", "throughput,bytes,delay", "which cases to run")
		profile  = flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	)
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fail(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fail(err)
			}
		}()
	}
	cfg := config{duration: *duration, rounds: *rounds, models: strings.Split(*models, ","), requests: *requests}
	var err error
	if cfg.batches, err = ints(*batches); err != nil {
		fail(err)
	}
	if cfg.windows, err = ints(*windows); err != nil {
		fail(err)
	}
	if err := run(context.Background(), cfg, strings.Split(*parts, ",")); err != nil {
		pprof.StopCPUProfile()
		fail(err)
	}
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/drift:", err)
	os.Exit(1)
}

type config struct {
	duration time.Duration
	rounds   int
	models   []string
	batches  []int
	requests int
	windows  []int
}

// env is what every case shares: the data, the models' files and their
// reference profiles.
type env struct {
	dir string
	// ref holds the images of the references; stream the images the
	// requests carry, none of them in ref; baseline says what they are.
	ref, stream *dataset.Set
	baseline    string
	files, refs map[string]string // by zoo model
	log         *slog.Logger
}

// fullFashion is where Debian's dataset-fashion-mnist puts the full set.
const fullFashion = "/usr/share/datasets/fashion-mnist"

func run(ctx context.Context, cfg config, parts []string) error {
	train, test, err := dataset.FashionSubset()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "outpost-bench-drift-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e := &env{dir: dir, files: map[string]string{}, refs: map[string]string{}, log: slog.New(slog.DiscardHandler)}
	// The zoo's models were trained on the embedded subset's 6,000 training
	// images. The reference and the streams are images they never saw, so
	// that both are answered alike; the full set (Debian's
	// dataset-fashion-mnist) has 54,000 more.
	if full, err := dataset.ReadFashionDir(fullFashion, "train"); err == nil && full.Len() >= 20_000 {
		e.ref, e.stream = full.Slice(6000, 10_000), full.Slice(10_000, 16_000)
		e.baseline = "references of 4,000 training images the models never saw (Fashion-MNIST's full set, images 6,000 to 9,999), requests of 6,000 others"
	} else {
		e.ref, e.stream = train.Slice(0, 4000), test
		e.baseline = "references of 4,000 of the models' own training images (the full set is not in " + fullFashion +
			"), requests of the 1,000 test images: expect more false alarms than alpha"
	}
	for _, name := range slices.Concat(cfg.models, []string{"mlp"}) {
		if e.files[name] != "" {
			continue
		}
		if err := e.prepare(ctx, name); err != nil {
			return err
		}
	}
	fmt.Printf("%s/%s, %d CPUs, GOMAXPROCS %d; %s; windows of %d samples unless said\n\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), e.baseline, v1alpha1.DefaultWindowSamples)
	for _, p := range parts {
		switch p {
		case "throughput":
			err = throughput(ctx, e, cfg)
		case "bytes":
			err = bytesPerHour(ctx, e, cfg)
		case "delay":
			err = delay(ctx, e, cfg)
		default:
			err = fmt.Errorf("unknown part %q", p)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// prepare writes zoo model name and its reference profile: 4,000 training
// images and the model's answers, two passes, histograms of 10 bins.
func (e *env) prepare(ctx context.Context, name string) error {
	m, data, err := zoo.Get(name)
	if err != nil {
		return err
	}
	path := filepath.Join(e.dir, m.File)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	sess, err := engine.Go{}.Load(ctx, path)
	if err != nil {
		return err
	}
	defer sess.Close()
	const n = 4000
	x := m.Batch(e.ref, 0, n)
	out, err := sess.Run(ctx, map[string]*interp.Tensor{zoo.InputName: x})
	if err != nil {
		return err
	}
	f, err := drift.NewFeaturizer(drift.FeaturizerConfig{InputShape: m.Input, OutputShape: []int{10}, ProjectionSeed: 1})
	if err != nil {
		return err
	}
	b := drift.Batch{Input: x.F32, InputShape: x.Shape, Output: out[zoo.OutputName].F32, OutputShape: out[zoo.OutputName].Shape}
	draft := f.NewProfile(1)
	if err := f.Observe(draft, b); err != nil {
		return err
	}
	ref, err := draft.Binned(10, 2)
	if err != nil {
		return err
	}
	if err := f.Observe(ref, b); err != nil {
		return err
	}
	enc, err := json.Marshal(ref)
	if err != nil {
		return err
	}
	e.files[name], e.refs[name] = path, filepath.Join(e.dir, name+".reference.json")
	return os.WriteFile(e.refs[name], enc, 0o600)
}

// model is the serving.Model of zoo model name as deployment dep, with
// monitoring m (nil: off).
func (e *env) model(dep, name string, m *v1alpha1.Monitoring) serving.Model {
	am := serving.Model{Deployment: dep, Model: name, Version: "1.0.0", Digest: "sha256:" + dep,
		Files: map[string]string{"model.onnx": e.files[name]}, Monitoring: m}
	if m != nil {
		am.Reference = e.refs[name]
	}
	return am
}

// windowOutbox puts window reports in an agent's outbox, as the agent's
// command does.
type windowOutbox struct{ o *outbox.Outbox }

func (w windowOutbox) PutWindow(ctx context.Context, rep drift.WindowReport) error {
	payload, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	_, err = w.o.Put(ctx, outbox.Record{Key: rep.Key(), Kind: drift.RecordKind, Priority: outbox.PriorityMetrics, Group: rep.Group(), Payload: payload})
	return err
}

// memorySink keeps the reports.
type memorySink struct {
	mu   sync.Mutex
	reps []drift.WindowReport
}

func (s *memorySink) PutWindow(ctx context.Context, rep drift.WindowReport) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reps = append(s.reps, rep)
	return nil
}

func (s *memorySink) reports() []drift.WindowReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reps)
}

// imageBody is a JSON inference request for images [from, from+n) of set,
// each pixel times scale, shaped for model m.
func imageBody(m zoo.Model, set *dataset.Set, from, n int, scale float32) []byte {
	x := m.Batch(set, from, n)
	for i := range x.F32 {
		x.F32[i] *= scale
	}
	type input struct {
		Name     string    `json:"name"`
		Shape    []int     `json:"shape"`
		Datatype string    `json:"datatype"`
		Data     []float32 `json:"data"`
	}
	b, _ := json.Marshal(map[string][]input{"inputs": {{Name: zoo.InputName, Shape: x.Shape, Datatype: "FP32", Data: x.F32}}})
	return b
}

// throughput compares serving with monitoring on and off over loopback
// HTTP, in alternating rounds.
func throughput(ctx context.Context, e *env, cfg config) error {
	a, err := agent.New(ctx, agent.Config{Dir: filepath.Join(e.dir, "agent"), Name: "bench", Logger: e.log,
		OutboxMerge: map[string]outbox.MergeFunc{drift.RecordKind: drift.MergeReports}})
	if err != nil {
		return err
	}
	defer a.Close()
	srv := serving.New(serving.Config{Version: "bench", Logger: e.log, Windows: windowOutbox{a.Outbox()}})
	var active []serving.Model
	for _, name := range cfg.models {
		active = append(active, e.model(name+"-off", name, nil), e.model(name+"-on", name, &v1alpha1.Monitoring{}))
	}
	h, err := startHTTP(ctx, srv, active)
	if err != nil {
		return err
	}
	defer h.stop()
	fmt.Printf("serving with drift monitoring on and off: REST JSON on loopback, 1 client, %v a round, off and on alternating, median of %d rounds\n\n", cfg.duration, cfg.rounds)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\tbatch\treq/s off\treq/s on\ton/off\tp99 off\tp99 on\ton/off\tp50 off\tp50 on\tCPU/req off\tCPU/req on\ton/off\tmonitor CPU/req\tof CPU/req\twindows\tdropped\t")
	for _, name := range cfg.models {
		m, _, err := zoo.Get(name)
		if err != nil {
			return err
		}
		for _, bs := range cfg.batches {
			bodies := make([][]byte, 8)
			for i := range bodies {
				bodies[i] = imageBody(m, e.stream, (i*bs)%(e.stream.Len()-bs), bs, 1)
			}
			var off, on []result
			for round := range cfg.rounds {
				// Off first in even rounds, on first in odd ones.
				for k := range 2 {
					monitored := (round+k)%2 == 1
					dep := name + "-off"
					if monitored {
						dep = name + "-on"
					}
					r, err := measure(ctx, h.inferCall(dep, bodies), cfg.duration)
					if err != nil {
						return err
					}
					if monitored {
						on = append(on, r)
					} else {
						off = append(off, r)
					}
				}
			}
			o, n := median(off), median(on)
			pr := pairedRatios(off, on)
			ds := monitorStatus(srv, name+"-on")
			monCPU, err := monitorCPU(ctx, e, name, bs, windowOutbox{a.Outbox()})
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.3f\t%s\t%s\t%.3f\t%s\t%s\t%s\t%s\t%.3f\t%s\t%.1f%%\t%d\t%d\t\n", name, bs, o.rps, n.rps, pr.rps,
				dur(o.p99), dur(n.p99), pr.p99, dur(o.p50), dur(n.p50), dur(o.cpu), dur(n.cpu), pr.cpu,
				dur(monCPU), 100*float64(monCPU)/float64(o.cpu), ds.Windows, ds.Dropped)
		}
	}
	tw.Flush()
	fmt.Println("\non/off: the median over rounds of each round's on/off ratio (a round measures off and on back to back, so the machine's")
	fmt.Println("other load, which changes between rounds, mostly cancels out); req/s above 0.95 and p99 below 1.05 meet the aim")
	fmt.Println("(at most 5% worse). CPU/req: the process's CPU time (client, server and")
	fmt.Println("monitor) per request, which the machine's other load disturbs less than wall-clock figures. monitor CPU/req: the")
	fmt.Println("monitor's work for one such request replayed on one thread (summaries, window tests, reports into the outbox), timed")
	fmt.Println("by the thread's CPU clock, which other load does not inflate; and that as a share of a request's CPU with monitoring")
	fmt.Println("off: the share of a saturated server's throughput that monitoring costs.")
	fmt.Println("windows and dropped: the monitored deployment's, cumulative.")
	fmt.Println()
	return nil
}

// bytesPerHour runs cfg.requests requests of one image each through the
// server's REST handler, 10 ms apart on a fake clock, and compares the
// drift records' bytes with the requests' and responses'.
func bytesPerHour(ctx context.Context, e *env, cfg config) error {
	fake := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	sink := &memorySink{}
	srv := serving.New(serving.Config{Version: "bench", Logger: e.log, Clock: fake, Windows: sink})
	defer srv.Close()
	srv.Sync(ctx, []serving.Model{e.model("fashion", "mlp", &v1alpha1.Monitoring{})})
	if err := waitReady(srv); err != nil {
		return err
	}
	// Images the reference did not see, drawn at random so that no two
	// windows hold the same images (which would make their reports
	// compress unrealistically well).
	m, _, _ := zoo.Get("mlp")
	var bodies [][]byte
	for i := range e.stream.Len() {
		bodies = append(bodies, imageBody(m, e.stream, i, 1, 1))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	h := srv.Handler()
	var rawBytes int64
	raw := zstdCounter()
	start := time.Now()
	for i := range cfg.requests {
		body := bodies[rng.IntN(len(bodies))]
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v2/models/fashion/infer", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			return fmt.Errorf("request %d: %d %s", i, rec.Code, rec.Body.Bytes())
		}
		rawBytes += int64(len(body) + rec.Body.Len())
		if i%100 == 0 { // a sample of the payloads, to estimate their compressed size
			raw.add(body, rec.Body.Bytes())
		}
		fake.Advance(10 * time.Millisecond)
		if (i+1)%100 == 0 {
			// Keep the monitor's queue from filling, as 100 requests/s would.
			if err := waitSamples(srv, "fashion", uint64(i+1)); err != nil {
				return err
			}
		}
	}
	elapsed := time.Since(start)
	reps := sink.reports()
	var payloads [][]byte
	var jsonBytes int64
	for _, r := range reps {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		payloads = append(payloads, b)
		jsonBytes += int64(len(b))
	}
	online, err := sentBytes(payloads, 1)
	if err != nil {
		return err
	}
	offline, err := sentBytes(payloads, 500)
	if err != nil {
		return err
	}
	st := srv.Status()[0].Drift
	fmt.Printf("bytes for %d requests of one image (%s at 100 requests/s), mlp, windows of %d (ran in %v):\n\n",
		cfg.requests, time.Duration(cfg.requests)*10*time.Millisecond, v1alpha1.DefaultWindowSamples, elapsed.Round(time.Second))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "what\tbytes\tper request\traw logging / this\t")
	row := func(what string, n float64) {
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t%.0fx\t\n", what, n, n/float64(cfg.requests), float64(rawBytes)/n)
	}
	row("raw payload logging (request and response bodies, as KServe's logger sends them)", float64(rawBytes))
	row("  the same, zstd-compressed (estimated from every 100th request)", raw.ratio()*float64(rawBytes))
	row(fmt.Sprintf("drift records, JSON (%d windows)", len(reps)), float64(jsonBytes))
	row("drift records as sent after an hour offline (batches of 500, zstd)", float64(offline))
	row("drift records as sent online (one record a batch, zstd)", float64(online))
	tw.Flush()
	fmt.Printf("\n%d samples monitored, %d requests dropped from monitoring, %d windows drifted of %d.\n\n", st.Samples, st.Dropped, countDrifted(reps), len(reps))
	return nil
}

func countDrifted(reps []drift.WindowReport) int {
	n := 0
	for _, r := range reps {
		if r.Verdict == drift.VerdictDrift {
			n++
		}
	}
	return n
}

// sentBytes is what the agent sends for the payloads: batches of at most
// perBatch records and 1 MiB of payload, each an OutboxBatch in JSON,
// zstd-compressed, as hubclient.SendOutbox sends them.
func sentBytes(payloads [][]byte, perBatch int) (int64, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		return 0, err
	}
	defer enc.Close()
	var total int64
	for i := 0; i < len(payloads); {
		var recs []v1alpha1.OutboxRecord
		size := 0
		for ; i < len(payloads) && len(recs) < perBatch && (len(recs) == 0 || size+len(payloads[i]) <= 1<<20); i++ {
			recs = append(recs, v1alpha1.OutboxRecord{Key: fmt.Sprintf("drift.window/fashion/1.0.0/%d", i), Kind: drift.RecordKind,
				Priority: int(outbox.PriorityMetrics), Created: metav1.Now(), Payload: payloads[i]})
			size += len(payloads[i])
		}
		b, err := json.Marshal(v1alpha1.OutboxBatch{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindOutboxBatch, Cluster: "edge-1", Records: recs})
		if err != nil {
			return 0, err
		}
		total += int64(len(enc.EncodeAll(b, nil)))
	}
	return total, nil
}

// zstdSample estimates how well payloads compress.
type zstdSample struct {
	enc       *zstd.Encoder
	raw, comp int64
}

func zstdCounter() *zstdSample {
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	return &zstdSample{enc: enc}
}

func (z *zstdSample) add(bodies ...[]byte) {
	for _, b := range bodies {
		z.raw += int64(len(b))
		z.comp += int64(len(z.enc.EncodeAll(b, nil)))
	}
}

func (z *zstdSample) ratio() float64 { return float64(z.comp) / float64(z.raw) }

// delay measures, for each window size, how many windows and samples after
// a shift to darker images (pixels times a factor), starting in the middle
// of a window, the alarm takes (raiseAfter 1).
func delay(ctx context.Context, e *env, cfg config) error {
	m, _, _ := zoo.Get("mlp")
	bodies := map[float32][][]byte{}
	factors := []float32{1, 0.5, 0.9, 0.95, 0.98}
	for _, f := range factors {
		for i := range min(e.stream.Len(), 2000) {
			bodies[f] = append(bodies[f], imageBody(m, e.stream, i, 1, f))
		}
	}
	fmt.Println("detection delay: mlp, one image a request, a shift to darker images (pixels times a factor) from the middle of")
	fmt.Println("the 4th window, alarm on the first drifted window (raiseAfter 1), at most 10 windows after the shift:")
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "window\tfactor\twindows to alarm\tsamples to alarm\tat 100 req/s\tfalse alarms before\t")
	for _, size := range cfg.windows {
		for _, f := range factors[1:] {
			fake := clock.NewFake(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
			sink := &memorySink{}
			srv := serving.New(serving.Config{Version: "bench", Logger: e.log, Clock: fake, Windows: sink})
			srv.Sync(ctx, []serving.Model{e.model("fashion", "mlp", &v1alpha1.Monitoring{WindowSamples: int32(size),
				WindowDuration: &metav1.Duration{Duration: 24 * time.Hour}})})
			if err := waitReady(srv); err != nil {
				return err
			}
			h := srv.Handler()
			shiftAt := 3*size + size/2
			total := shiftAt + 10*size
			for i := range total {
				set := bodies[1]
				if i >= shiftAt {
					set = bodies[f]
				}
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodPost, "/v2/models/fashion/infer", strings.NewReader(string(set[i%len(set)])))
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					return fmt.Errorf("request %d: %d", i, rec.Code)
				}
				fake.Advance(10 * time.Millisecond)
				if (i+1)%100 == 0 {
					if err := waitSamples(srv, "fashion", uint64(i+1)); err != nil {
						return err
					}
				}
			}
			if err := waitSamples(srv, "fashion", uint64(total)); err != nil {
				return err
			}
			srv.Close()
			before, windows, samples := 0, "-", "-"
			secs := "-"
			for _, r := range sink.reports() {
				end := int(r.Last+1) * size // samples up to the window's end
				if end <= shiftAt {
					if r.Alarm {
						before++
					}
					continue
				}
				if r.Alarm {
					n := end - shiftAt
					windows = strconv.Itoa(int(r.Last+1) - shiftAt/size)
					samples = strconv.Itoa(n)
					secs = (time.Duration(n) * 10 * time.Millisecond).String()
					break
				}
			}
			fmt.Fprintf(tw, "%d\t%.2f\t%s\t%s\t%s\t%d\t\n", size, f, windows, samples, secs, before)
		}
	}
	tw.Flush()
	fmt.Println("\nwindows to alarm counts the window the shift started in (half of it shifted) as the first.")
	return nil
}

// monitorStatus is the drift monitoring status of deployment dep.
func monitorStatus(srv *serving.Server, dep string) serving.DriftStatus {
	for _, st := range srv.Status() {
		if st.Deployment == dep && st.Drift != nil {
			return *st.Drift
		}
	}
	return serving.DriftStatus{}
}

// waitReady waits until srv loaded its models.
func waitReady(srv *serving.Server) error {
	deadline := time.Now().Add(30 * time.Second)
	for !srv.Ready() {
		if time.Now().After(deadline) {
			return errors.New("models not loaded after 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// waitSamples waits until deployment dep's monitor has summarised n samples.
func waitSamples(srv *serving.Server, dep string, n uint64) error {
	deadline := time.Now().Add(time.Minute)
	for {
		for _, st := range srv.Status() {
			if st.Deployment == dep && st.Drift != nil {
				if st.Drift.Dropped > 0 {
					return fmt.Errorf("%d requests dropped from monitoring", st.Drift.Dropped)
				}
				if st.Drift.Samples >= n {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the monitor did not reach %d samples in a minute", n)
		}
		time.Sleep(time.Millisecond)
	}
}

// httpServer is a serving.Server on loopback.
type httpServer struct {
	base   string
	client *http.Client
	stop   func()
}

func startHTTP(ctx context.Context, srv *serving.Server, active []serving.Model) (*httpServer, error) {
	ts := httptest.NewServer(srv.Handler())
	srv.Sync(ctx, active)
	if err := waitReady(srv); err != nil {
		ts.Close()
		return nil, err
	}
	for _, st := range srv.Status() {
		if st.Error != "" {
			ts.Close()
			return nil, fmt.Errorf("%s: %s", st.Deployment, st.Error)
		}
	}
	return &httpServer{base: ts.URL, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2}},
		stop: func() { ts.Close(); srv.Close() }}, nil
}

// inferCall posts the bodies in turn to deployment dep.
func (h *httpServer) inferCall(dep string, bodies [][]byte) func(ctx context.Context, i int) error {
	url := h.base + "/v2/models/" + dep + "/infer"
	return func(ctx context.Context, i int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(string(bodies[i%len(bodies)])))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := h.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST %s: %s: %s", url, resp.Status, body)
		}
		return nil
	}
}

type result struct {
	rps      float64
	p50, p99 time.Duration
	cpu      time.Duration // the process's CPU time (user and system) per request
}

// cpuTime is the CPU time the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure warms up, then makes requests back to back for d, recording
// every request's latency.
func measure(ctx context.Context, do func(ctx context.Context, i int) error, d time.Duration) (result, error) {
	for i := range 20 {
		if err := do(ctx, i); err != nil {
			return result{}, err
		}
	}
	runtime.GC()
	lat := make([]time.Duration, 0, 1<<16)
	cpu0 := cpuTime()
	start := time.Now()
	for i := 0; ; i++ {
		t0 := time.Now()
		if t0.Sub(start) > d {
			break
		}
		if err := do(ctx, i); err != nil {
			return result{}, err
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	cpu := (cpuTime() - cpu0) / time.Duration(len(lat))
	slices.Sort(lat)
	return result{rps: float64(len(lat)) / elapsed.Seconds(), p50: lat[len(lat)/2], p99: lat[min(len(lat)-1, len(lat)*99/100)], cpu: cpu}, nil
}

// median returns the median requests per second, p50, p99 and CPU time
// per request of the rounds.
func median(rs []result) result {
	rps := make([]float64, len(rs))
	p50 := make([]time.Duration, len(rs))
	p99 := make([]time.Duration, len(rs))
	cpu := make([]time.Duration, len(rs))
	for i, r := range rs {
		rps[i], p50[i], p99[i], cpu[i] = r.rps, r.p50, r.p99, r.cpu
	}
	slices.Sort(rps)
	slices.Sort(p50)
	slices.Sort(p99)
	slices.Sort(cpu)
	return result{rps: rps[len(rs)/2], p50: p50[len(rs)/2], p99: p99[len(rs)/2], cpu: cpu[len(rs)/2]}
}

// ratios are on/off ratios of requests per second, p99 and CPU time per
// request.
type ratios struct{ rps, p99, cpu float64 }

// pairedRatios returns the median of each round's on/off ratios: round i
// measured off[i] and on[i] back to back.
func pairedRatios(off, on []result) ratios {
	var rps, p99, cpu []float64
	for i := range min(len(off), len(on)) {
		rps = append(rps, on[i].rps/off[i].rps)
		p99 = append(p99, float64(on[i].p99)/float64(off[i].p99))
		cpu = append(cpu, float64(on[i].cpu)/float64(off[i].cpu))
	}
	mid := func(v []float64) float64 {
		slices.Sort(v)
		return v[len(v)/2]
	}
	return ratios{rps: mid(rps), p99: mid(p99), cpu: mid(cpu)}
}

func dur(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%.1fµs", float64(d)/1e3)
	}
	return fmt.Sprintf("%.2fms", float64(d)/1e6)
}
