// Command fl measures internal/fl's federated learning in simulation
// (fl.Simulate: an in-process coordinator and clients that train for real
// on Fashion-MNIST shards, on a simulated clock):
//
//   - secagg: what secure aggregation costs over plain float32 and int8
//     updates, per client upload (keys, shares, masked vector, revealed
//     shares against the plain update) and in wall time of one round, at 10
//     and 100 clients, with every client a neighbour of every other and with
//     a sparse SecAgg+ graph, without and with dropouts after masking, in a
//     32-bit ring (a float32 job) and in a 16-bit one (an int8 job, its
//     range as wide as leaves 8 fractional bits);
//
//   - fedbuff: simulated time to a target test accuracy of FedBuff against
//     synchronous FedAvg rounds when one cluster trains ten times slower;
//
//   - adaptive: bytes and simulated time to the target of adaptive local
//     steps and encoding against one epoch of float32 updates per round,
//     when some clusters sit behind a thin link.
//
//     go run ./bench/fl [-only secagg,fedbuff,adaptive] [-target 0.72] [-clients 10]
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/fl"
)

type config struct {
	only    []string
	target  float64
	clients int
	per     int
	sizes   []int
	secagg  []int
	lr      float64
	seed    uint64
}

// seeded returns a deterministic randomness source (the clients' int8
// rounding and secure keys, the coordinator's noise), so that runs repeat.
func seeded(seed uint64) io.Reader {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

func main() {
	only := flag.String("only", "secagg,fedbuff,adaptive", "comparisons to run")
	target := flag.Float64("target", 0.8, "test accuracy to reach")
	clients := flag.Int("clients", 10, "clusters in the fedbuff and adaptive comparisons")
	lr := flag.Float64("lr", 0.02, "local learning rate (SGD, momentum 0.9)")
	seed := flag.Uint64("seed", 1, "seed of the simulated clients' randomness")
	flag.Parse()
	cfg := config{only: strings.Split(*only, ","), target: *target, clients: *clients, per: 500,
		sizes: []int{784, 64, 10}, secagg: []int{10, 100}, lr: *lr, seed: *seed}
	if err := run(os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "fl:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, cfg config) error {
	tr, te, err := dataset.FashionSubset()
	if err != nil {
		return err
	}
	ctx := context.Background()
	var tw *tabwriter.Writer
	section := func(title, header string) {
		if tw != nil {
			tw.Flush()
			fmt.Fprintln(w)
		}
		fmt.Fprintln(w, title)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, header)
	}
	defer func() {
		if tw != nil {
			tw.Flush()
		}
	}()
	var notes []string
	flushNotes := func() {
		tw.Flush()
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
		notes = nil
	}
	shards := func(n, per int, facts fl.ClusterFacts) []fl.SimClient {
		var out []fl.SimClient
		for i := range n {
			f := facts
			f.Online, f.Samples = true, per
			lo := (i * per) % (tr.Len() - per + 1)
			out = append(out, fl.SimClient{Name: fmt.Sprintf("store-%02d", i), Train: tr.Slice(lo, lo+per), Facts: f})
		}
		return out
	}
	spec := func(rounds, min int) fl.JobSpec {
		return fl.JobSpec{Job: "bench", Model: fl.ModelSpec{Arch: "mlp", Sizes: cfg.sizes}, Rounds: rounds, MinClients: min,
			LocalEpochs: 1, BatchSize: 32, LR: cfg.lr, RoundDeadline: time.Minute, Seed: 1}
	}

	if slices.Contains(cfg.only, "secagg") {
		section(fmt.Sprintf("secagg: one round of a %v MLP, against plain float32 and int8 updates", cfg.sizes),
			"clients\t ring\t K\t T\t dropped\t bytes/client\t float32 bytes\t vs float32\t int8 bytes\t vs int8\t round s\t plain s\t time ratio\t")
		for _, n := range cfg.secagg {
			plain := spec(1, n)
			if _, err := fl.Simulate(ctx, fl.SimConfig{Spec: plain, Clients: shards(n, 8, fl.ClusterFacts{})}); err != nil {
				return err // warm-up
			}
			start := time.Now()
			pres, err := fl.Simulate(ctx, fl.SimConfig{Spec: plain, Clients: shards(n, 8, fl.ClusterFacts{})})
			if err != nil {
				return err
			}
			plainTime := time.Since(start)
			plain8 := plain
			plain8.Encoding = fl.Int8
			ires, err := fl.Simulate(ctx, fl.SimConfig{Spec: plain8, Clients: shards(n, 8, fl.ClusterFacts{})})
			if err != nil {
				return err
			}
			sparse := 2 * int(math.Ceil(math.Log2(float64(n))))
			// A 16-bit ring wants 8 fractional bits: n values up to
			// 64/n; the rows of the int8 job take the largest power of
			// two up to that (and up to the default 4) as their range.
			r16 := min(4, math.Exp2(math.Floor(math.Log2(64/float64(n)))))
			for _, ring := range []struct {
				enc fl.Encoding
				rng float64
			}{{fl.Float32, 0}, {fl.Int8, r16}} {
				for _, tc := range []struct {
					k, drop int
				}{{n - 1, 0}, {sparse, 0}, {sparse, max(1, n/20)}} {
					s := spec(1, n-tc.drop)
					s.SecAgg = &fl.SecAggSpec{K: tc.k, Range: ring.rng}
					s.Encoding = ring.enc
					cl := shards(n, 8, fl.ClusterFacts{})
					for i := range tc.drop {
						cl[i*n/max(tc.drop, 1)].Fail = func(a fl.Assignment) bool { return a.Phase == fl.Unmask }
					}
					start := time.Now()
					res, err := fl.Simulate(ctx, fl.SimConfig{Spec: s, Clients: cl})
					if err != nil {
						return err
					}
					el := time.Since(start)
					if res.Status.State != fl.Done {
						return fmt.Errorf("secure round of %d: %s %s", n, res.Status.State, res.Status.Reason)
					}
					bits := res.Status.History[0].Ring
					if tc.k == n-1 {
						for _, e := range res.Events {
							if i := strings.Index(e.Message, "-bit ring"); e.Kind == "started" && i >= 2 {
								notes = append(notes, fmt.Sprintf("%d clients, %s job: %s", n, ring.enc, e.Message[i-2:]))
							}
						}
					}
					k := min(tc.k, n-1)
					per := float64(res.UploadBytes) / float64(n)
					f32 := float64(pres.UploadBytes) / float64(n)
					i8 := float64(ires.UploadBytes) / float64(n)
					fmt.Fprintf(tw, "%d\t %d\t %d\t %d\t %d\t %.0f\t %.0f\t %.3fx\t %.0f\t %.3fx\t %.2f\t %.2f\t %.1fx\t\n", n, bits, k, k/2+1, tc.drop, per, f32, per/f32,
						i8, per/i8, el.Seconds(), plainTime.Seconds(), el.Seconds()/plainTime.Seconds())
				}
			}
		}
		flushNotes()
	}

	toTarget := func(s fl.JobSpec, cl []fl.SimClient) (fl.SimResult, error) {
		return fl.Simulate(ctx, fl.SimConfig{Spec: s, Clients: cl, Test: te, Target: cfg.target, Rand: seeded(cfg.seed)})
	}
	row := func(name string, r fl.SimResult) {
		reached := "never"
		if r.Reached > 0 {
			reached = fmt.Sprintf("%.1f", r.Reached.Seconds())
		}
		last := r.Points[len(r.Points)-1]
		fmt.Fprintf(tw, "%s\t %s\t %d\t %.1f\t %.3f\t\n", name, reached, last.Round, float64(r.UploadBytes)/1e6, last.Accuracy)
	}
	ratio := func(what string, a, b fl.SimResult) {
		if a.Reached > 0 && b.Reached > 0 {
			notes = append(notes, fmt.Sprintf("%s: %.2fx faster, %.2fx the bytes", what, a.Reached.Seconds()/b.Reached.Seconds(), float64(b.UploadBytes)/float64(a.UploadBytes)))
		}
	}

	if slices.Contains(cfg.only, "fedbuff") {
		section(fmt.Sprintf("fedbuff: %d clusters of %d samples, one 10x slower; to %.0f%% test accuracy", cfg.clients, cfg.per, 100*cfg.target),
			"policy\t simulated s\t models\t MB sent\t accuracy\t")
		cl := shards(cfg.clients, cfg.per, fl.ClusterFacts{SamplesPerSec: 400, BandwidthBps: 20e6})
		cl[cfg.clients-1].Facts.SamplesPerSec = 40
		s := spec(100, cfg.clients)
		s.RoundDeadline = time.Hour
		sync, err := toTarget(s, cl)
		if err != nil {
			return err
		}
		row("sync fedavg", sync)
		b := s
		b.Strategy, b.BufferSize, b.MaxStaleness, b.MinClients, b.ServerLR = fl.FedBuff, max(cfg.clients/3, 2), 10, 1, 0.5
		buff, err := toTarget(b, cl)
		if err != nil {
			return err
		}
		row(fmt.Sprintf("fedbuff (buffer %d)", b.BufferSize), buff)
		ratio("fedbuff against sync", sync, buff)
		flushNotes()
	}

	if slices.Contains(cfg.only, "adaptive") {
		thin := max(cfg.clients/5, 1)
		section(fmt.Sprintf("adaptive: %d clusters, %d behind a 0.1 Mbit/s link, 30 s deadline; to %.0f%% test accuracy", cfg.clients, thin, 100*cfg.target),
			"policy\t simulated s\t rounds\t MB sent\t accuracy\t")
		cl := shards(cfg.clients, cfg.per, fl.ClusterFacts{SamplesPerSec: 400, BandwidthBps: 20e6})
		for i := range thin {
			cl[i].Facts.BandwidthBps = 0.1e6
		}
		s := spec(100, cfg.clients)
		s.RoundDeadline = 30 * time.Second
		fixed, err := toTarget(s, cl)
		if err != nil {
			return err
		}
		row("fixed: 1 epoch, float32", fixed)
		three := s
		three.LocalEpochs = 3
		fixed3, err := toTarget(three, cl)
		if err != nil {
			return err
		}
		row("fixed: 3 epochs, float32", fixed3)
		int8 := s
		int8.Encoding = fl.Int8
		fixed8, err := toTarget(int8, cl)
		if err != nil {
			return err
		}
		row("fixed: 1 epoch, int8", fixed8)
		a := s
		a.Adaptive, a.Encoding = true, fl.Auto
		ad, err := toTarget(a, cl)
		if err != nil {
			return err
		}
		row("adaptive steps and encoding", ad)
		ratio("adaptive against fixed", fixed, ad)
		ratio("adaptive against 3 epochs", fixed3, ad)
		ratio("adaptive against int8", fixed8, ad)
		for _, p := range ad.Status.Plans {
			if p.Cluster == cl[0].Name || p.Cluster == cl[len(cl)-1].Name {
				notes = append(notes, "  "+p.Reason)
			}
		}
		flushNotes()
	}
	return nil
}
