package fl

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"outpost.dev/outpost/internal/dataset"
)

var (
	subsetOnce        sync.Once
	subTrain, subTest *dataset.Set
	subErr            error
)

func subset(t testing.TB) (*dataset.Set, *dataset.Set) {
	subsetOnce.Do(func() { subTrain, subTest, subErr = dataset.FashionSubset() })
	if subErr != nil {
		t.Fatal(subErr)
	}
	return subTrain, subTest
}

// detRand is a deterministic randomness source for tests.
type detRand struct{ r *rand.ChaCha8 }

func newDetRand(seed byte) *detRand {
	var s [32]byte
	s[0] = seed
	return &detRand{rand.NewChaCha8(s)}
}

func (d *detRand) Read(p []byte) (int, error) { return d.r.Read(p) }

// simClients splits the first n*per training images into n equal shards.
func simClients(t testing.TB, n, per int, facts ClusterFacts) []SimClient {
	tr, _ := subset(t)
	var out []SimClient
	for i := range n {
		f := facts
		f.Samples = per
		f.Online = true
		out = append(out, SimClient{Name: clusterName(i), Train: tr.Slice(i*per, (i+1)*per), Facts: f})
	}
	return out
}

func clusterName(i int) string { return "store-" + string(rune('a'+i/26)) + string(rune('a'+i%26)) }

func baseSpec() JobSpec {
	return JobSpec{Job: "fmnist", Model: ModelSpec{Arch: "mlp", Sizes: []int{784, 32, 10}}, Rounds: 3, MinClients: 3,
		LocalEpochs: 1, BatchSize: 32, LR: 0.05, RoundDeadline: time.Minute, Seed: 1}
}

func TestSimulateFedAvgLearns(t *testing.T) {
	_, te := subset(t)
	res, err := Simulate(context.Background(), SimConfig{Spec: baseSpec(), Clients: simClients(t, 4, 300, ClusterFacts{SamplesPerSec: 1000, BandwidthBps: 10e6}),
		Test: te, Rand: newDetRand(1)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status.State != Done || res.Model.Ref.Round != 3 {
		t.Fatalf("status %+v", res.Status)
	}
	for _, p := range res.Points {
		t.Logf("round %d at %v: accuracy %.3f, %d bytes", p.Round, p.Time, p.Accuracy, p.UploadBytes)
	}
	if acc := res.Points[len(res.Points)-1].Accuracy; acc < 0.6 {
		t.Fatalf("accuracy %.3f after 3 rounds", acc)
	}
}

// slowOne is four clusters of which one trains ten times slower.
func slowOne(t *testing.T) []SimClient {
	cl := simClients(t, 4, 300, ClusterFacts{SamplesPerSec: 200, BandwidthBps: 20e6})
	cl[3].Facts.SamplesPerSec = 20
	return cl
}

// With one slow cluster, FedBuff reaches a target accuracy sooner than
// synchronous rounds, which wait for the slow cluster every round.
func TestFedBuffOutrunsSyncWithASlowCluster(t *testing.T) {
	if raceEnabled {
		t.Skip("trains to a target twice, most of a minute under the race detector; make test runs it in its pass without -race")
	}
	_, te := subset(t)
	run := func(spec JobSpec) SimResult {
		res, err := Simulate(context.Background(), SimConfig{Spec: spec, Clients: slowOne(t), Test: te, Target: 0.7, Rand: newDetRand(2)})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	spec := baseSpec()
	spec.Rounds, spec.MinClients = 30, 4
	spec.RoundDeadline = time.Hour
	sync := run(spec)
	spec.Strategy, spec.BufferSize, spec.MaxStaleness, spec.MinClients, spec.ServerLR = FedBuff, 2, 8, 1, 0.5
	buff := run(spec)
	t.Logf("sync: %v to 70%% (%d rounds); fedbuff: %v (%d models)", sync.Reached, len(sync.Points)-1, buff.Reached, len(buff.Points)-1)
	if sync.Reached == 0 || buff.Reached == 0 {
		t.Fatalf("target not reached: sync %v, fedbuff %v", sync.Reached, buff.Reached)
	}
	if buff.Reached*2 > sync.Reached {
		t.Fatalf("fedbuff %v, sync %v: want fedbuff at least twice as fast", buff.Reached, sync.Reached)
	}
	// The slow cluster's updates arrive stale and are taken, discounted.
	stale := 0
	for _, s := range buff.Status.History {
		stale = max(stale, s.Staleness)
	}
	if stale == 0 {
		t.Fatal("no stale update was aggregated")
	}
}

func TestChoosePlans(t *testing.T) {
	spec := baseSpec()
	spec.RoundDeadline = 30 * time.Second
	spec.Adaptive, spec.Encoding = true, Auto
	shape := []int{784 * 32, 32, 320, 10} // 25,450 values: 101,800 bytes as float32
	for _, tc := range []struct {
		name      string
		spec      func(JobSpec) JobSpec
		facts     ClusterFacts
		round     time.Duration
		steps     int
		enc       Encoding
		reasonHas string
	}{
		{"fast link: one epoch, float32", nil, ClusterFacts{BandwidthBps: 100e6, SamplesPerSec: 200, Samples: 300}, 0, 10, Float32, "10 local steps, float32: 100.0 Mbit/s link"},
		// In a synchronous round that lasts 4 s, a fast cluster trains on:
		// 4 s less its 0.008 s upload is 24 steps of 0.16 s.
		{"fast link in a long round: fills it", nil, ClusterFacts{BandwidthBps: 100e6, SamplesPerSec: 200, Samples: 300}, 4 * time.Second, 24, Float32, "until its upload must start"},
		// float32 takes 8.1 s > 30/4 s: int8 (25,466 bytes, 2.04 s); one
		// epoch trains in 1.6 s, so 13 steps (2.08 s) while it uploads.
		{"thin link: int8, more steps", nil, ClusterFacts{BandwidthBps: 0.1e6, SamplesPerSec: 200, Samples: 300}, 0, 13, Int8, "while the update uploads"},
		{"thin link in its own round: one epoch", nil, ClusterFacts{BandwidthBps: 0.1e6, SamplesPerSec: 200, Samples: 300}, 3637 * time.Millisecond, 10, Int8, "1 epoch of 300 samples"},
		{"slow trainer: steps cut to the deadline", nil, ClusterFacts{BandwidthBps: 100e6, SamplesPerSec: 20, Samples: 3000}, 0, 14, Float32, "within the deadline"},
		{"short online window", nil, ClusterFacts{BandwidthBps: 100e6, SamplesPerSec: 200, Samples: 3000, OnlineFor: 5 * time.Second}, 0, 24, Float32, "within the deadline"},
		{"secure aggregation: a 32-bit ring", func(s JobSpec) JobSpec { s.SecAgg = &SecAggSpec{}; return s },
			ClusterFacts{BandwidthBps: 0.1e6, SamplesPerSec: 200, Samples: 300}, 0, 51, Float32, "51 local steps, 32-bit ring: 0.1 Mbit/s link sends 0.10 MB in 8.1 s"},
		{"not adaptive: epochs", func(s JobSpec) JobSpec { s.Adaptive = false; return s },
			ClusterFacts{BandwidthBps: 0.1e6, SamplesPerSec: 200, Samples: 300}, 0, 0, Int8, "1 local epoch, int8"},
		{"unknown speed", nil, ClusterFacts{BandwidthBps: 0, SamplesPerSec: 0, Samples: 300}, 0, 10, Float32, "training speed unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec
			if tc.spec != nil {
				s = tc.spec(s)
			}
			p := Choose("store-3", s, tc.facts, shape, tc.round, 0)
			t.Log(p.Reason)
			if p.LocalSteps != tc.steps || p.Encoding != tc.enc || !strings.Contains(p.Reason, tc.reasonHas) || !strings.HasPrefix(p.Reason, "store-3: ") {
				t.Fatalf("plan %+v; want %d steps, %s, reason with %q", p, tc.steps, tc.enc, tc.reasonHas)
			}
		})
	}
	// In a 16-bit ring the thin link sends 50,900 bytes in 4.07 s: 26
	// steps of 0.16 s train while it uploads.
	s := spec
	s.SecAgg = &SecAggSpec{}
	p := Choose("store-3", s, ClusterFacts{BandwidthBps: 0.1e6, SamplesPerSec: 200, Samples: 300}, shape, 0, 16)
	if p.LocalSteps != 26 || p.Ring != 16 || !strings.Contains(p.Reason, "26 local steps, 16-bit ring: 0.1 Mbit/s link sends 0.05 MB in 4.1 s") {
		t.Fatalf("plan in a 16-bit ring %+v", p)
	}
}

func TestChooseRing(t *testing.T) {
	shape := []int{784 * 32, 32, 320, 10} // 101,800 bytes as float32: 8.1 s at 0.1 Mbit/s
	fast := ClusterFacts{BandwidthBps: 100e6}
	thin := ClusterFacts{BandwidthBps: 0.1e6}
	for _, tc := range []struct {
		name      string
		enc       Encoding
		secagg    bool
		facts     []ClusterFacts
		n         int
		rng       float64
		bits      int
		reasonHas string
	}{
		{"plain job: no ring", Auto, false, []ClusterFacts{thin}, 4, 4, 0, ""},
		{"float32 job", Float32, true, []ClusterFacts{thin, thin}, 2, 0.25, 32, "32-bit ring: the job's encoding is float32"},
		{"auto, fast links", Auto, true, []ClusterFacts{fast, fast}, 2, 0.25, 32, "every member's link sends float32"},
		// 10 values up to 0.25 sum below 2^2.32: 15 - 2.32 - 1 leaves 12 bits.
		{"auto, one thin link", Auto, true, []ClusterFacts{fast, thin}, 10, 0.25, 16,
			"16-bit ring (12 fractional bits for 10 clusters of values up to 0.25): c1's 0.1 Mbit/s link would send int8: float32's 0.10 MB take 8.1 s, over a quarter of the 30s deadline"},
		{"int8 job", Int8, true, []ClusterFacts{fast, fast}, 2, 1, 16, "16-bit ring (13 fractional bits for 2 clusters of values up to 1): the job's encoding is int8"},
		// 10 values up to 4: 15 - 5.32 - 1 leaves 8 bits, as many as wanted.
		{"the default range, 10 clusters", Auto, true, []ClusterFacts{thin, fast}, 10, 4, 16, "16-bit ring (8 fractional bits for 10 clusters of values up to 4)"},
		// The most clusters the default range takes (docs/federated.md): 16, not 17.
		{"the default range, 16 clusters", Int8, true, []ClusterFacts{fast}, 16, 4, 16, "16-bit ring (8 fractional bits for 16 clusters"},
		{"the default range, 17 clusters", Int8, true, []ClusterFacts{fast}, 17, 4, 32, "leave 7 fractional bits in 16, fewer than 8"},
		// 100 values up to 4: 15 - 8.64 - 1 leaves 5 bits, too coarse.
		{"range too wide", Auto, true, []ClusterFacts{thin, fast}, 100, 4, 32,
			"32-bit ring: c0's 0.1 Mbit/s link would send int8: float32's 0.10 MB take 8.1 s, over a quarter of the 30s deadline, but 100 clusters of values up to 4 leave 5 fractional bits in 16, fewer than 8"},
		{"no fractional bits at all", Int8, true, []ClusterFacts{fast}, 10000, 4, 32, "32-bit ring: the job's encoding is int8, but secagg: 10000 clients of values up to 4 leave no fractional bits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := baseSpec()
			spec.RoundDeadline, spec.Encoding = 30*time.Second, tc.enc
			if tc.secagg {
				spec.SecAgg = &SecAggSpec{}
			}
			var names []string
			for i := range tc.facts {
				names = append(names, fmt.Sprintf("c%d", i))
			}
			bits, why := ChooseRing(spec, names, tc.facts, shape, tc.n, tc.rng)
			t.Log(why)
			if bits != tc.bits || !strings.Contains(why, tc.reasonHas) {
				t.Fatalf("%d bits, %q; want %d, with %q", bits, why, tc.bits, tc.reasonHas)
			}
		})
	}
}

// Over a thin link, adaptive local steps and encoding reach a target
// accuracy sooner and with fewer bytes than one epoch of float32 updates.
func TestAdaptiveBeatsFixedOverAThinLink(t *testing.T) {
	_, te := subset(t)
	run := func(adaptive bool) SimResult {
		cl := simClients(t, 4, 300, ClusterFacts{SamplesPerSec: 200, BandwidthBps: 20e6})
		cl[3].Facts.BandwidthBps = 0.1e6
		spec := baseSpec()
		spec.Rounds, spec.MinClients, spec.RoundDeadline = 30, 4, 30*time.Second
		if adaptive {
			spec.Adaptive, spec.Encoding = true, Auto
		}
		res, err := Simulate(context.Background(), SimConfig{Spec: spec, Clients: cl, Test: te, Target: 0.7, Rand: newDetRand(3)})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	fixed, adaptive := run(false), run(true)
	t.Logf("fixed: %v, %d bytes to 70%%; adaptive: %v, %d bytes", fixed.Reached, fixed.UploadBytes, adaptive.Reached, adaptive.UploadBytes)
	for _, p := range adaptive.Status.Plans {
		t.Log(p.Reason)
	}
	if fixed.Reached == 0 || adaptive.Reached == 0 || adaptive.Reached >= fixed.Reached || adaptive.UploadBytes >= fixed.UploadBytes {
		t.Fatalf("adaptive %v %d bytes, fixed %v %d bytes", adaptive.Reached, adaptive.UploadBytes, fixed.Reached, fixed.UploadBytes)
	}
	var thin *Plan
	for i, p := range adaptive.Status.Plans {
		if p.Cluster == clusterName(3) {
			thin = &adaptive.Status.Plans[i]
		}
	}
	if thin == nil || thin.Encoding != Int8 || !strings.Contains(thin.Reason, "0.1 Mbit/s") {
		t.Fatalf("thin link's plan %+v", thin)
	}
}

// Jobs of every kind run through Simulate, and a hub restarted from its
// snapshot after every step makes the same models bit for bit.
func TestSimulateKindsAndRestarts(t *testing.T) {
	_, te := subset(t)
	for _, tc := range []struct {
		name string
		spec func(JobSpec) JobSpec
		min  float64 // final test accuracy at least
	}{
		{"fedavg", func(s JobSpec) JobSpec { return s }, 0.6},
		{"fedprox", func(s JobSpec) JobSpec { s.Strategy, s.ProxMu = FedProx, 0.1; return s }, 0.6},
		{"secagg", func(s JobSpec) JobSpec { s.SecAgg = &SecAggSpec{K: 2, T: 2}; return s }, 0.6},
		{"secagg, 16-bit ring", func(s JobSpec) JobSpec { s.SecAgg, s.Encoding = &SecAggSpec{K: 2, T: 2}, Int8; return s }, 0.6},
		{"secagg, central dp", func(s JobSpec) JobSpec {
			s.SecAgg = &SecAggSpec{}
			s.DP = &DPSpec{Clip: 1, NoiseMultiplier: 0.3, Delta: 1e-5}
			return s
		}, 0.3},
		{"secagg, distributed dp", func(s JobSpec) JobSpec {
			s.SecAgg = &SecAggSpec{}
			s.DP = &DPSpec{Clip: 1, NoiseMultiplier: 0.3, Delta: 1e-5, Distributed: true}
			return s
		}, 0.3},
		{"plain, central dp, int8", func(s JobSpec) JobSpec {
			s.DP = &DPSpec{Clip: 1, NoiseMultiplier: 0.3, Delta: 1e-5}
			s.Encoding = Int8
			return s
		}, 0.3},
		{"fedbuff", func(s JobSpec) JobSpec {
			s.Strategy, s.BufferSize, s.MaxStaleness, s.MinClients = FedBuff, 2, 4, 1
			return s
		}, 0.45},
		{"fedbuff, secagg cohorts", func(s JobSpec) JobSpec {
			s.Strategy, s.BufferSize, s.MaxStaleness, s.MinClients = FedBuff, 2, 4, 2
			s.SecAgg = &SecAggSpec{}
			return s
		}, 0.45},
		{"adaptive", func(s JobSpec) JobSpec { s.Adaptive, s.Encoding = true, Auto; return s }, 0.6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec(baseSpec())
			run := func(restart bool) SimResult {
				res, err := Simulate(context.Background(), SimConfig{Spec: spec, Clients: simClients(t, 4, 300, ClusterFacts{SamplesPerSec: 500, BandwidthBps: 5e6}),
					Test: te, Rand: newDetRand(4), Restart: restart})
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			a, b := run(false), run(true)
			if a.Status.State != Done || a.Model.Ref.Round != spec.Rounds {
				t.Fatalf("status %+v", a.Status)
			}
			if want := strings.HasSuffix(tc.name, "16-bit ring"); want != (a.Status.History[0].Ring == 16) {
				t.Fatalf("rounds in a %d-bit ring", a.Status.History[0].Ring)
			}
			if a.Model.Ref != b.Model.Ref {
				t.Fatalf("restarted after every step: model %v, uninterrupted %v", b.Model.Ref, a.Model.Ref)
			}
			acc := a.Points[len(a.Points)-1].Accuracy
			t.Logf("accuracy %.3f, ε %.2f, %d bytes, %d refused, %v", acc, a.Model.Epsilon, a.UploadBytes, a.Refused, a.Elapsed)
			if acc < tc.min {
				t.Fatalf("accuracy %.3f, want at least %.2f", acc, tc.min)
			}
			if spec.DP != nil && !(a.Model.Epsilon > 0) {
				t.Fatal("no ε reported")
			}
		})
	}
}

// A FedBuff cluster so slow that the models move on past the maximum
// staleness has its work restarted from the current model rather than
// refused at the end.
func TestFedBuffRetiresStaleWork(t *testing.T) {
	cl := slowOne(t)
	cl[3].Facts.SamplesPerSec = 2 // 150 s of training, while the others make a model every 2 s
	spec := baseSpec()
	spec.Strategy, spec.BufferSize, spec.MaxStaleness, spec.MinClients, spec.Rounds = FedBuff, 2, 2, 1, 8
	spec.RoundDeadline = time.Hour
	res, err := Simulate(context.Background(), SimConfig{Spec: spec, Clients: cl, Rand: newDetRand(5)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status.State != Done {
		t.Fatalf("%+v", res.Status)
	}
	retired := 0
	for _, e := range res.Events {
		if e.Kind == "abandoned" && strings.Contains(e.Message, clusterName(3)+"'s work from model") {
			retired++
		}
	}
	if retired == 0 || res.Refused != 0 {
		t.Fatalf("%d retirements of the slow cluster's work, %d refusals; want some and none", retired, res.Refused)
	}
	for _, s := range res.Status.History {
		if s.Staleness > spec.MaxStaleness {
			t.Fatalf("model %d took an update %d versions old", s.Round, s.Staleness)
		}
	}
}

// The CNN of internal/train federates too: its tensors travel in its
// parameter order, FedProx's reference included.
func TestSimulateCNN(t *testing.T) {
	if testing.Short() {
		t.Skip("trains a CNN on two clients for two rounds; skipped with -short")
	}
	if raceEnabled {
		t.Skip("slow under the race detector; make test runs it in its pass without -race")
	}
	_, te := subset(t)
	spec := baseSpec()
	spec.Model = ModelSpec{Arch: "cnn"}
	spec.Rounds, spec.MinClients, spec.Strategy, spec.ProxMu = 2, 2, FedProx, 0.01
	res, err := Simulate(context.Background(), SimConfig{Spec: spec, Clients: simClients(t, 2, 300, ClusterFacts{SamplesPerSec: 100}),
		Test: te.Slice(0, 300), Rand: newDetRand(6)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status.State != Done {
		t.Fatalf("%+v", res.Status)
	}
	acc := res.Points[len(res.Points)-1].Accuracy
	t.Logf("CNN after 2 rounds: %.3f", acc)
	if acc < 0.5 {
		t.Fatalf("CNN accuracy %.3f after 2 rounds", acc)
	}
}

// FedBuff stops at the ε budget too: before a flush that would pass it.
func TestFedBuffStopsAtBudget(t *testing.T) {
	spec := baseSpec()
	spec.Strategy, spec.BufferSize, spec.MaxStaleness, spec.MinClients, spec.Rounds = FedBuff, 2, 4, 1, 50
	spec.DP = &DPSpec{Clip: 1, NoiseMultiplier: 1, Delta: 1e-5, EpsilonBudget: 8}
	res, err := Simulate(context.Background(), SimConfig{Spec: spec, Clients: simClients(t, 4, 100, ClusterFacts{SamplesPerSec: 500}), Rand: newDetRand(8)})
	if err != nil {
		t.Fatal(err)
	}
	st := res.Status
	t.Logf("%d models, ε %.3f: %s", st.Round, st.Epsilon, st.Reason)
	if st.State != Done || st.Round >= spec.Rounds || st.Round == 0 || !strings.Contains(st.Reason, "budget") || st.Epsilon > 8 {
		t.Fatalf("status %+v", st)
	}
}

// A FedBuff secure cohort that falls past the maximum staleness is
// dropped before its sum is formed, and the job goes on.
func TestFedBuffDropsStaleSecureCohort(t *testing.T) {
	cl := simClients(t, 6, 100, ClusterFacts{SamplesPerSec: 500, BandwidthBps: 20e6})
	cl[5].Facts.SamplesPerSec = 50
	spec := baseSpec()
	spec.Strategy, spec.BufferSize, spec.MaxStaleness, spec.MinClients, spec.Rounds = FedBuff, 2, 1, 2, 12
	spec.SecAgg = &SecAggSpec{}
	res, err := Simulate(context.Background(), SimConfig{Spec: spec, Clients: cl, Rand: newDetRand(9)})
	if err != nil {
		t.Fatal(err)
	}
	dropped := false
	for _, e := range res.Events {
		dropped = dropped || (e.Kind == "abandoned" && strings.Contains(e.Message, "its sum is not formed"))
	}
	if res.Status.State != Done || !dropped {
		t.Fatalf("status %+v, stale cohort dropped %v", res.Status, dropped)
	}
	for _, s := range res.Status.History {
		if s.Staleness > 1 {
			t.Fatalf("model %d from a cohort %d versions old", s.Round, s.Staleness)
		}
	}
}

// TestNarrowRingAccuracy: the secure jobs of TestSimulateKindsAndRestarts
// (and one whose range leaves the fewest fractional bits a 16-bit ring
// takes), their encoding int8 so that their cohorts choose a 16-bit ring,
// reach a mean test accuracy over three seeds within a point of the same
// jobs' in a 32-bit ring, with half the masked bytes. Each seed's two runs draw
// the same randomness but for the rounding, so that the comparison is of
// the rings, not of the DP noise's draws.
func TestNarrowRingAccuracy(t *testing.T) {
	_, te := subset(t)
	const seeds = 3
	for _, tc := range []struct {
		name string
		spec func(JobSpec) JobSpec
	}{
		{"secagg", func(s JobSpec) JobSpec { s.SecAgg = &SecAggSpec{K: 2, T: 2}; return s }},
		{"secagg, 8 fractional bits", func(s JobSpec) JobSpec { s.SecAgg = &SecAggSpec{K: 2, T: 2, Range: 16}; return s }},
		{"secagg, central dp", func(s JobSpec) JobSpec {
			s.SecAgg = &SecAggSpec{}
			s.DP = &DPSpec{Clip: 1, NoiseMultiplier: 0.3, Delta: 1e-5}
			return s
		}},
		{"secagg, distributed dp", func(s JobSpec) JobSpec {
			s.SecAgg = &SecAggSpec{}
			s.DP = &DPSpec{Clip: 1, NoiseMultiplier: 0.3, Delta: 1e-5, Distributed: true}
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acc := map[int]float64{}
			bytes := map[int]int64{}
			for _, enc := range []Encoding{Float32, Int8} {
				for seed := range byte(seeds) {
					spec := tc.spec(baseSpec())
					spec.Encoding = enc
					res, err := Simulate(context.Background(), SimConfig{Spec: spec, Clients: simClients(t, 4, 300, ClusterFacts{SamplesPerSec: 500, BandwidthBps: 5e6}),
						Test: te, Rand: newDetRand(4 + seed)})
					if err != nil {
						t.Fatal(err)
					}
					if res.Status.State != Done {
						t.Fatalf("%s: %+v", enc, res.Status)
					}
					ring := res.Status.History[0].Ring
					a := res.Points[len(res.Points)-1].Accuracy
					acc[ring] += a / seeds
					for _, h := range res.Status.History {
						bytes[ring] += h.UploadBytes
						if h.Ring != ring {
							t.Fatalf("%s: rounds in %d and %d bits", enc, ring, h.Ring)
						}
					}
					var why string
					for _, e := range res.Events {
						if e.Kind == "started" {
							why = e.Message
						}
					}
					t.Logf("%s, seed %d: accuracy %.4f; %s", enc, seed, a, why)
				}
			}
			t.Logf("mean accuracy %.4f in 32 bits, %.4f in 16; masked bytes %d and %d", acc[32], acc[16], bytes[32], bytes[16])
			if len(acc) != 2 || acc[16] == 0 || acc[32] == 0 {
				t.Fatalf("rings %v: want jobs in 32 bits and in 16", acc)
			}
			if d := acc[32] - acc[16]; math.Abs(d) > 0.01 {
				t.Errorf("a 16-bit ring's mean accuracy %.4f is %.4f from the 32-bit ring's %.4f", acc[16], d, acc[32])
			}
			if 2*bytes[16] != bytes[32] {
				t.Errorf("masked bytes: %d in 16 bits, %d in 32", bytes[16], bytes[32])
			}
		})
	}
}
