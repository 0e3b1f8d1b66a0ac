package fl

import (
	"io"
	"maps"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/secagg"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// tinySpec is a job on a 4-3-2 MLP (23 parameters) whose clients the
// tests play by hand.
func tinySpec(n int) JobSpec {
	return JobSpec{Job: "tiny", Model: ModelSpec{Arch: "mlp", Sizes: []int{4, 3, 2}}, Rounds: 1, MinClients: n,
		LocalEpochs: 1, BatchSize: 8, LR: 0.1, RoundDeadline: time.Minute, PhaseTimeout: 10 * time.Second, Seed: 3}
}

// hand plays a job's clients by hand: each sends a fixed update, and a
// client stops answering from the phase given in drop.
type hand struct {
	t    *testing.T
	c    *Coordinator
	now  time.Time
	rnd  io.Reader
	sec  map[string]*secagg.Client
	x    map[string][]float32
	drop map[string]Phase
	// masked records what each client sent in the Mask phase, encoded
	// what it masked, in a ring of bits.
	masked    map[string][]uint32
	encoded   map[string][]uint32
	bits      int
	rand      *mrand.Rand
	published []GlobalModel
	events    []Event
	queue     []Assignment
}

func newHand(t *testing.T, spec JobSpec, n int) *hand {
	t.Helper()
	init, err := InitialWeights(spec.Model, spec.Seed)
	if err != nil {
		t.Fatal(err)
	}
	c, out, err := New(spec, init, t0)
	if err != nil {
		t.Fatal(err)
	}
	c.SetNoiseSource(newDetRand(9))
	h := &hand{t: t, c: c, now: t0, rnd: newDetRand(7), sec: map[string]*secagg.Client{}, x: map[string][]float32{},
		drop: map[string]Phase{}, masked: map[string][]uint32{}, encoded: map[string][]uint32{}, rand: mrand.New(mrand.NewPCG(7, 7))}
	h.take(out)
	for i := range n {
		name := clusterName(i)
		x := make([]float32, len(Flatten(init)))
		for k := range x {
			x[k] = float32((i+1)*(k%5-2)) * 0.01
		}
		h.x[name] = x
	}
	return h
}

func (h *hand) take(o Output) {
	h.events = append(h.events, o.Events...)
	if o.Published != nil {
		h.published = append(h.published, *o.Published)
	}
	h.queue = append(h.queue, o.Assignments...)
}

// join reports every client online with 100 samples.
func (h *hand) join() {
	for _, name := range slices.Sorted(maps.Keys(h.x)) {
		h.must(h.c.Handle(h.now, Report{Job: h.c.st.Spec.Job, Cluster: name, Kind: KindFacts,
			Facts: &ClusterFacts{Online: true, Samples: 100, SamplesPerSec: 100, BandwidthBps: 1e6}}))
	}
}

func (h *hand) must(o Output, err error) {
	h.t.Helper()
	if err != nil {
		h.t.Fatal(err)
	}
	h.take(o)
}

// report is what client name sends for assignment a, or false when it
// sends nothing.
func (h *hand) report(a Assignment) (Report, bool) {
	h.t.Helper()
	if p, ok := h.drop[a.Cluster]; ok && phaseIndex(a.Phase) >= phaseIndex(p) {
		return Report{}, false
	}
	r := Report{Job: a.Job, Cluster: a.Cluster, Version: a.Version, Round: a.Round, Attempt: a.Attempt}
	sa := a.SecAgg
	var err error
	switch a.Phase {
	case Idle:
		return r, false
	case Train:
		v, _ := Encode(unflat(h.x[a.Cluster], Shape(h.c.st.Model.Weights)), Float32, nil)
		r.Kind, r.Update = KindUpdate, &Update{BaseRound: a.Model.Round, Delta: v, Samples: 100, LocalSteps: 4}
	case Advertise:
		cl, err := secagg.NewClient(sa.Config(), sa.ID, h.rnd)
		if err != nil {
			h.t.Fatal(err)
		}
		h.sec[a.Cluster] = cl
		k := cl.Advertise()
		r.Kind, r.Keys = KindKeys, &k
	case Share:
		r.Kind = KindShares
		if r.Shares, err = h.sec[a.Cluster].ShareKeys(sa.Keys); err != nil {
			h.t.Fatal(err)
		}
	case Mask:
		enc, err := secagg.NewEncoding(sa.Range, sa.N, sa.Bits)
		if err != nil {
			h.t.Fatal(err)
		}
		x, err := enc.Encode(h.x[a.Cluster], h.rand)
		if err != nil {
			h.t.Fatal(err)
		}
		h.encoded[a.Cluster], h.bits = x, enc.Bits
		y, err := h.sec[a.Cluster].MaskedInput(x, sa.Shares)
		if err != nil {
			h.t.Fatal(err)
		}
		h.masked[a.Cluster] = y
		r.Kind, r.Masked = KindMasked, &Masked{Y: Ring{Bits: bitsOr32(sa.Bits), Words: y}, Samples: 100, LocalSteps: 4}
	case Unmask:
		r.Kind = KindReveal
		if r.Reveals, err = h.sec[a.Cluster].Unmask(sa.Sent); err != nil {
			return r, false
		}
	}
	return r, true
}

func phaseIndex(p Phase) int {
	return slices.Index([]Phase{Idle, Advertise, Share, Train, Mask, Unmask}, p)
}

func unflat(x []float32, shape []int) [][]float32 {
	v := make([]float64, len(x))
	for i, f := range x {
		v[i] = float64(f)
	}
	out, _ := Unflatten(v, shape)
	return out
}

// run delivers assignments and reports until nothing moves, letting
// phases time out when clients stay silent, until the job ends or max
// ticks pass.
func (h *hand) run(maxTicks int) {
	h.t.Helper()
	for range maxTicks {
		for len(h.queue) > 0 {
			a := h.queue[0]
			h.queue = h.queue[1:]
			if cur := h.c.st.Clusters[a.Cluster].Assignment; cur.Version != a.Version {
				continue // superseded
			}
			r, ok := h.report(a)
			if !ok {
				continue
			}
			o, err := h.c.Handle(h.now, r)
			if err != nil {
				h.t.Fatalf("%s %s: %v", a.Cluster, r.Kind, err)
			}
			h.take(o)
		}
		if st := h.c.Status().State; st == Done || st == Failed {
			return
		}
		d := h.c.NextDeadline()
		if d.IsZero() {
			return
		}
		h.now = d
		h.take(h.c.Tick(h.now))
	}
}

// expected is the model a secure round of senders makes: the plain sum
// of their encoded vectors in Z_2^b, decoded and divided by their total
// weight, as the coordinator computes it.
func expected(t *testing.T, init [][]float32, h *hand, senders []string, n int, rng float64) string {
	t.Helper()
	enc, err := secagg.NewEncoding(rng, n, h.bits)
	if err != nil {
		t.Fatal(err)
	}
	sum := make([]uint32, len(h.x[senders[0]]))
	for _, s := range senders {
		for i, v := range h.encoded[s] {
			sum[i] = (sum[i] + v) & ringMask(enc.Bits)
		}
	}
	agg, err := Unflatten(enc.Decode(sum), Shape(init))
	if err != nil {
		t.Fatal(err)
	}
	var wsum float64
	for range senders {
		wsum += 100.0 / float64(100*n)
	}
	Scale(agg, 1/wsum)
	w := cloneWeights(init)
	AddTo(w, agg)
	return Digest(w)
}

func names(n int, skip ...int) []string {
	var out []string
	for i := range n {
		if !slices.Contains(skip, i) {
			out = append(out, clusterName(i))
		}
	}
	return out
}

// With n clients, k neighbours and threshold t, any k − t of them failing
// after masking leaves the exact sum of the vectors sent; one more and the
// round is abandoned without a sum.
func TestSecureRoundSurvivesDropoutsAfterMasking(t *testing.T) {
	for _, tc := range []struct {
		n, k, th int
	}{
		{5, 4, 3},
		{7, 6, 4},
		{8, 4, 3},
	} {
		// Every set of k − t clients failing after masking.
		var sets [][]int
		var pick func(from int, cur []int)
		pick = func(from int, cur []int) {
			if len(cur) == tc.k-tc.th {
				sets = append(sets, slices.Clone(cur))
				return
			}
			for i := from; i < tc.n; i++ {
				pick(i+1, append(cur, i))
			}
		}
		pick(0, nil)
		for _, dropped := range sets {
			spec := tinySpec(tc.n)
			spec.SecAgg = &SecAggSpec{K: tc.k, T: tc.th}
			h := newHand(t, spec, tc.n)
			init := h.c.Global().Weights
			for _, i := range dropped {
				h.drop[clusterName(i)] = Unmask
			}
			h.join()
			h.run(10)
			if st := h.c.Status(); st.State != Done || st.Round != 1 {
				t.Fatalf("n %d k %d t %d, %v dropped after masking: %+v %v", tc.n, tc.k, tc.th, dropped, st, h.events)
			}
			want := expected(t, init, h, names(tc.n), tc.n, 4)
			if got := h.c.Global().Ref.Digest; got != want {
				t.Fatalf("n %d k %d t %d, %v dropped: the model is not the exact sum of the vectors sent", tc.n, tc.k, tc.th, dropped)
			}
		}
	}
}

func TestSecureRoundAbandonsBelowThreshold(t *testing.T) {
	spec := tinySpec(5)
	spec.SecAgg = &SecAggSpec{K: 4, T: 3}
	spec.MaxRetries = 1
	h := newHand(t, spec, 5)
	for _, i := range []int{0, 1} {
		h.drop[clusterName(i)] = Unmask
	}
	h.join()
	init := h.c.Global()
	// Run the first attempt to its unmasking timeout.
	h.run(3)
	var abandoned []Event
	for _, e := range h.events {
		if e.Kind == "abandoned" {
			abandoned = append(abandoned, e)
		}
	}
	if len(abandoned) == 0 {
		t.Fatalf("no round abandoned: %v", h.events)
	}
	if g := h.c.Global(); g.Ref != init.Ref || len(h.published) != 1 {
		t.Fatalf("a model was published from %d of 5 clients with threshold 3", 3)
	}
	if !containsAll(abandoned[0].Message, "abandoned", "nothing revealed", "shares") {
		t.Fatalf("abandon event %q", abandoned[0].Message)
	}
	// The round is retried at once, with a new attempt.
	if st := h.c.Status(); st.State != Running && st.State != Failed {
		t.Fatalf("after abandon: %+v", st)
	}
	if st := h.c.Status(); st.State == Running && st.Attempt != 1 {
		t.Fatalf("retry attempt %d, want 1", st.Attempt)
	}
	// Retried rounds fail the same way; past MaxRetries the job fails.
	h.run(20)
	if st := h.c.Status(); st.State != Failed {
		t.Fatalf("after repeated abandons: %+v", st)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// A client missing from the key exchange makes the round restart without
// it, before any vector is masked.
func TestKeyExchangeDropoutRestartsWithoutIt(t *testing.T) {
	spec := tinySpec(3)
	spec.SecAgg = &SecAggSpec{}
	h := newHand(t, spec, 4)
	h.drop[clusterName(2)] = Share
	h.join()
	h.run(10)
	st := h.c.Status()
	if st.State != Done || st.Round != 1 {
		t.Fatalf("%+v %v", st, h.events)
	}
	// 4 selected, store-ac silent in Share; attempt 1 goes with the other 3.
	want := expected(t, h.published[0].Weights, h, names(4, 2), 3, 4)
	if h.c.Global().Ref.Digest != want {
		t.Fatal("the retried round's model is not the sum of the three others")
	}
}

// What the coordinator receives of a client is its vector plus masks:
// with a vector of zeros, its bytes look uniform.
func TestMaskedUpdatesLookUniform(t *testing.T) {
	spec := tinySpec(4)
	spec.Model.Sizes = []int{784, 16, 10} // 12,730 values
	spec.SecAgg = &SecAggSpec{}
	h := newHand(t, spec, 4)
	for name := range h.x {
		clear(h.x[name])
	}
	h.join()
	h.run(10)
	if h.c.Status().State != Done {
		t.Fatalf("%+v", h.c.Status())
	}
	y := h.masked[clusterName(0)]
	var counts [256]float64
	for _, v := range y {
		for k := range 4 {
			counts[byte(v>>(8*k))]++
		}
	}
	exp := float64(4*len(y)) / 256
	chi := 0.0
	for _, c := range counts {
		chi += (c - exp) * (c - exp) / exp
	}
	// The 99.99th percentile of chi-square with 255 degrees of freedom is about 351.
	if chi > 351 {
		t.Fatalf("chi-square %.1f: a masked update of zeros is not uniform", chi)
	}
	if slices.Equal(h.masked[clusterName(0)], h.masked[clusterName(1)]) {
		t.Fatal("two clients' masked updates are equal")
	}
}

// TestNarrowRingKeepsTheClipNorm: under central DP, a clipped update's
// encoding in a 16-bit ring stays within the clip norm the noise is sized
// for, where its stochastic rounding alone would take it over.
func TestNarrowRingKeepsTheClipNorm(t *testing.T) {
	const n = 1000
	delta := make([]float32, n)
	for i := range delta {
		delta[i] = float32(i%7-3) * 0.1 // norm 6.3: clipped to 1
	}
	a := Assignment{Phase: Mask, Clip: 1, Weight: 1, SecAgg: &SecAggAssignment{N: 4, K: 3, T: 2, Length: n, Range: 1, Bits: 16}}
	enc, err := secagg.NewEncoding(1, 4, 16)
	if err != nil {
		t.Fatal(err)
	}
	norm := func(y []uint32) float64 {
		var sq float64
		for _, v := range enc.Decode(y) {
			sq += v * v
		}
		return math.Sqrt(sq)
	}
	cl := NewClient("c", newDetRand(3))
	r := mrand.New(mrand.NewPCG(1, 1))
	over := 0
	for range 20 {
		y, err := cl.secureInput(TrainResult{Delta: [][]float32{slices.Clone(delta)}, Steps: 1}, a)
		if err != nil {
			t.Fatal(err)
		}
		if g := norm(y); g > 1 {
			t.Fatalf("an encoding of norm %v, over the clip 1", g)
		}
		clipped := [][]float32{slices.Clone(delta)}
		Clip(clipped, 1)
		plain, _ := enc.Encode(clipped[0], r)
		if norm(plain) > 1 {
			over++
		}
	}
	if over == 0 {
		t.Fatal("stochastic rounding never took the clipped update over the norm: the test shows nothing")
	}
}
