package fl

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

func snapshotJSON(t *testing.T, c *Coordinator) string {
	t.Helper()
	b, err := json.Marshal(c.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// refused checks that r is refused with an error naming want and that the
// coordinator's state did not change.
func refused(t *testing.T, h *hand, name string, r Report, want string) {
	t.Helper()
	before := snapshotJSON(t, h.c)
	_, err := h.c.Handle(h.now, r)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), want) {
		t.Errorf("%s: error %v, want a refusal naming %q", name, err, want)
	}
	if after := snapshotJSON(t, h.c); after != before {
		t.Errorf("%s: the refusal changed the state", name)
	}
}

func TestRefusalsChangeNothing(t *testing.T) {
	spec := tinySpec(2)
	spec.Fraction = 0.5
	spec.DP = &DPSpec{Clip: 1, NoiseMultiplier: 1, Delta: 1e-5}
	h := newHand(t, spec, 3)
	h.join()
	// Two of the three are selected; find one of each.
	var in, out string
	for _, n := range names(3) {
		if h.c.cohortOf(n) != nil {
			in = n
		} else {
			out = n
		}
	}
	a := h.c.st.Clusters[in].Assignment
	shape := Shape(h.c.st.Model.Weights)
	good := func() Report {
		r, ok := h.report(a)
		if !ok {
			t.Fatal("no report")
		}
		return r
	}
	nan := good()
	binary.LittleEndian.PutUint32(nan.Update.Delta.Data[8:], math.Float32bits(float32(math.NaN())))
	big := good()
	bigDelta := make([][]float32, len(shape))
	for i, l := range shape {
		bigDelta[i] = make([]float32, l)
		for j := range bigDelta[i] {
			bigDelta[i][j] = 1
		}
	}
	big.Update.Delta, _ = Encode(bigDelta, Float32, nil)
	otherShape := good()
	otherShape.Update.Delta, _ = Encode([][]float32{{1, 2}}, Float32, nil)
	truncated := good()
	truncated.Update.Delta.Data = truncated.Update.Delta.Data[:10]

	with := func(f func(r *Report)) Report { r := good(); f(&r); return r }
	for _, tc := range []struct {
		name string
		r    Report
		want string
	}{
		{"another job", with(func(r *Report) { r.Job = "other" }), `job "other"`},
		{"no cluster", with(func(r *Report) { r.Cluster = "" }), "without a cluster"},
		{"unknown cluster", with(func(r *Report) { r.Cluster = "stranger" }), `"stranger" takes no part`},
		{"non-participant", with(func(r *Report) { r.Cluster = out; r.Version = 0 }), "in no round"},
		{"old assignment", with(func(r *Report) { r.Version-- }), "answers assignment"},
		{"old round", with(func(r *Report) { r.Round-- }), "reports for round 0"},
		{"wrong kind", with(func(r *Report) { r.Kind = KindKeys }), "wants update"},
		{"no update", with(func(r *Report) { r.Update = nil }), "without an update"},
		{"other base model", with(func(r *Report) { r.Update.BaseRound = 7 }), "from model 7"},
		{"no samples", with(func(r *Report) { r.Update.Samples = 0 }), "0 samples"},
		{"NaN metrics", with(func(r *Report) { r.Update.Metrics.Loss = math.Inf(1) }), "finite"},
		{"NaN value", nan, "NaN"},
		{"over the clip norm", big, "over the clip norm"},
		{"wrong shape", otherShape, "1 tensors"},
		{"truncated", truncated, "bytes"},
		{"bad facts", Report{Job: "tiny", Cluster: in, Kind: KindFacts, Facts: &ClusterFacts{BandwidthBps: -1}}, "facts.bandwidthBps"},
		{"facts missing", Report{Job: "tiny", Cluster: in, Kind: KindFacts}, "without facts"},
	} {
		refused(t, h, tc.name, tc.r, tc.want)
	}
	// An update applied once is refused the second time.
	r := good()
	if _, err := h.c.Handle(h.now, r); err != nil {
		t.Fatal(err)
	}
	refused(t, h, "replay", r, "already received")
}

func TestSecureRefusals(t *testing.T) {
	spec := tinySpec(5)
	spec.SecAgg = &SecAggSpec{K: 2, T: 2}
	h := newHand(t, spec, 5)
	h.join()
	// Everyone advertises.
	queue := h.queue
	h.queue = nil
	for _, a := range queue {
		r, _ := h.report(a)
		h.must(h.c.Handle(h.now, r))
	}
	a := h.c.st.Clusters[clusterName(0)].Assignment
	if a.Phase != Share {
		t.Fatalf("phase %s", a.Phase)
	}
	r, _ := h.report(a)
	nb := secaggNeighbours(a)
	var stranger int
	for j := range 5 {
		if j != a.SecAgg.ID && !slices.Contains(nb, j) {
			stranger = j
		}
	}
	bad := r
	bad.Shares = append(bad.Shares[:0:0], r.Shares...)
	bad.Shares[0].To = stranger
	refused(t, h, "share for a non-neighbour", bad, "sent a share")
	refused(t, h, "keys in the share phase", Report{Job: "tiny", Cluster: a.Cluster, Kind: KindKeys, Version: a.Version, Round: a.Round}, "wants shares")
	if _, err := h.c.Handle(h.now, r); err != nil {
		t.Fatal(err)
	}
	refused(t, h, "shares twice", r, "twice")
}

// TestMaskedRefusals: a masked vector of another ring width or length
// than its round's is refused, with a reason, and changes nothing; in a
// 16-bit round, so is the 32-bit vector of a client that knows no other.
func TestMaskedRefusals(t *testing.T) {
	for _, tc := range []struct {
		enc         Encoding
		bits, other int
	}{{Float32, 32, 16}, {Int8, 16, 32}, {Int8, 16, 8}} {
		t.Run(fmt.Sprintf("%d-bit round", tc.bits), func(t *testing.T) {
			spec := tinySpec(3)
			spec.SecAgg = &SecAggSpec{}
			spec.Encoding = tc.enc
			h := newHand(t, spec, 3)
			h.join()
			for range 2 { // advertise, share
				queue := h.queue
				h.queue = nil
				for _, a := range queue {
					r, _ := h.report(a)
					h.must(h.c.Handle(h.now, r))
				}
			}
			a := h.c.st.Clusters[clusterName(0)].Assignment
			if a.Phase != Mask || bitsOr32(a.SecAgg.Bits) != tc.bits {
				t.Fatalf("phase %s, ring %d", a.Phase, a.SecAgg.Bits)
			}
			good, _ := h.report(a)
			with := func(f func(m *Masked)) Report {
				r := good
				m := *good.Masked
				m.Y.Words = slices.Clone(m.Y.Words)
				f(&m)
				r.Masked = &m
				return r
			}
			other := with(func(m *Masked) {
				m.Y.Bits = tc.other
				for i := range m.Y.Words {
					m.Y.Words[i] &= ringMask(tc.other)
				}
			})
			refused(t, h, "another width", other, fmt.Sprintf("23 %d-bit values; the round sums 23 in a %d-bit ring", tc.other, tc.bits))
			refused(t, h, "a short vector", with(func(m *Masked) { m.Y.Words = m.Y.Words[:22] }), fmt.Sprintf("22 %d-bit values; the round sums 23", tc.bits))
			refused(t, h, "a long vector", with(func(m *Masked) { m.Y.Words = append(m.Y.Words, 1) }), "24 ")
			refused(t, h, "no vector", with(func(m *Masked) { m.Y = Ring{} }), "0 32-bit values")
			if tc.bits < 32 {
				refused(t, h, "a value outside the ring", with(func(m *Masked) { m.Y.Words[3] = 1 << tc.bits }), "outside the round's 16-bit ring")
			}
			if _, err := h.c.Handle(h.now, good); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func secaggNeighbours(a Assignment) []int {
	var out []int
	for _, k := range a.SecAgg.Keys {
		out = append(out, k.ID)
	}
	return out
}

// A bad spec is refused with an error naming the field.
func TestSpecValidation(t *testing.T) {
	for _, tc := range []struct {
		field string
		f     func(*JobSpec)
	}{
		{"job", func(s *JobSpec) { s.Job = "" }},
		{"model.arch", func(s *JobSpec) { s.Model.Arch = "rnn" }},
		{"model.sizes", func(s *JobSpec) { s.Model.Sizes = []int{784} }},
		{"model.sizes", func(s *JobSpec) { s.Model.Sizes = []int{784, 0, 10} }},
		{"model.sizes", func(s *JobSpec) { s.Model.Sizes = []int{1 << 20, 1 << 20} }},
		{"strategy", func(s *JobSpec) { s.Strategy = "fedsgd" }},
		{"rounds", func(s *JobSpec) { s.Rounds = 0 }},
		{"minClients", func(s *JobSpec) { s.MinClients = 0 }},
		{"fraction", func(s *JobSpec) { s.Fraction = 1.5 }},
		{"lr", func(s *JobSpec) { s.LR = math.NaN() }},
		{"proxMu", func(s *JobSpec) { s.Strategy = FedProx }},
		{"bufferSize", func(s *JobSpec) { s.Strategy = FedBuff }},
		{"bufferSize", func(s *JobSpec) { s.Strategy, s.BufferSize, s.SecAgg = FedBuff, 1, &SecAggSpec{} }},
		{"encoding", func(s *JobSpec) { s.Encoding = "int4" }},
		{"serverLR", func(s *JobSpec) { s.ServerLR = -1 }},
		{"roundDeadline", func(s *JobSpec) { s.RoundDeadline = 0 }},
		{"secagg.k", func(s *JobSpec) { s.SecAgg = &SecAggSpec{K: -2} }},
		{"minClients", func(s *JobSpec) { s.SecAgg, s.MinClients = &SecAggSpec{}, 1 }},
		{"dp.clip", func(s *JobSpec) { s.DP = &DPSpec{Delta: 1e-5} }},
		{"dp.delta", func(s *JobSpec) { s.DP = &DPSpec{Clip: 1, Delta: 1} }},
		{"dp.distributed", func(s *JobSpec) { s.DP = &DPSpec{Clip: 1, Delta: 1e-5, Distributed: true} }},
	} {
		s := tinySpec(3)
		tc.f(&s)
		init, _ := InitialWeights(tinySpec(3).Model, 1)
		if _, _, err := New(s, init, t0); err == nil || !strings.Contains(err.Error(), tc.field+" ") {
			t.Errorf("%s: error %v", tc.field, err)
		}
	}
	s := tinySpec(3)
	if _, _, err := New(s, [][]float32{{1}}, t0); err == nil || !strings.Contains(err.Error(), "initial weights") {
		t.Errorf("wrong initial weights: %v", err)
	}
}

// FuzzClientAssignment: whatever assignment reaches a cluster, its client
// acts or says why; never a panic.
func FuzzClientAssignment(f *testing.F) {
	f.Add([]byte(`{"job":"j","cluster":"c","version":1,"phase":"train","round":1,"model":{"round":0},"net":{"arch":"mlp","sizes":[784,4,10]},"batchSize":8,"lr":0.1,"encoding":"int8"}`))
	f.Add([]byte(`{"job":"j","cluster":"c","version":2,"phase":"mask","net":{"arch":"mlp","sizes":[784,0,10]},"secagg":{"n":2,"k":1,"t":1,"length":3}}`))
	f.Add([]byte(`{"job":"j","cluster":"c","version":3,"phase":"advertise","secagg":{"id":5,"n":2,"k":1,"t":1,"length":3}}`))
	f.Add([]byte(`{"job":"j","cluster":"c","version":4,"phase":"advertise","secagg":{"id":1,"n":2,"k":1,"t":1,"length":3,"bits":16}}`))
	f.Add([]byte(`{"job":"j","cluster":"c","version":5,"phase":"advertise","secagg":{"id":1,"n":2,"k":1,"t":1,"length":3,"bits":12}}`))
	tr, _ := subset(f)
	local := tr.Slice(0, 16)
	f.Fuzz(func(t *testing.T, b []byte) {
		var a Assignment
		if json.Unmarshal(b, &a) != nil {
			return
		}
		if sh, err := a.Net.Shape(); err == nil {
			n := 0
			for _, l := range sh {
				n += l
			}
			if n > 1<<20 {
				return // a large model is fine, but slow to fuzz
			}
		}
		c := NewClient("c", newDetRand(1))
		w, _ := InitialWeights(a.Net, 1)
		g := GlobalModel{Ref: a.Model, Weights: w}
		_, _ = c.Handle(context.Background(), a, g, local, nil)
	})
}

// TestServerLRDefault: FedBuff steps half way unless told otherwise (its
// buffers' updates add up), synchronous strategies take the whole step.
func TestServerLRDefault(t *testing.T) {
	for _, tc := range []struct {
		strategy  Strategy
		set, want float64
	}{
		{FedAvg, 0, 1},
		{FedProx, 0, 1},
		{FedBuff, 0, 0.5},
		{FedBuff, 0.8, 0.8},
	} {
		s := tinySpec(3)
		s.Strategy, s.ServerLR, s.ProxMu, s.BufferSize = tc.strategy, tc.set, 0.01, 2
		if err := s.Validate(); err != nil {
			t.Fatalf("%s: %v", tc.strategy, err)
		}
		if s.ServerLR != tc.want {
			t.Errorf("%s with serverLR %v: %v, want %v", tc.strategy, tc.set, s.ServerLR, tc.want)
		}
	}
}
