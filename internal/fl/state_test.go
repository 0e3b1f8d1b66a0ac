package fl

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/privacy"
	"outpost.dev/outpost/internal/secagg"
)

// restart replaces the hand's coordinator with one restored from its
// JSON-encoded snapshot, as a hub killed and restarted would have.
func (h *hand) restart() {
	h.t.Helper()
	b, err := json.Marshal(h.c.Snapshot())
	if err != nil {
		h.t.Fatal(err)
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		h.t.Fatal(err)
	}
	c, err := Restore(s)
	if err != nil {
		h.t.Fatal(err)
	}
	c.SetNoiseSource(newDetRand(9))
	h.c = c
}

// step delivers the queued assignments' reports while keep says so.
func (h *hand) step(keep func(a Assignment) bool) {
	h.t.Helper()
	queue := h.queue
	h.queue = nil
	for _, a := range queue {
		if cur := h.c.st.Clusters[a.Cluster].Assignment; cur.Version != a.Version {
			continue
		}
		if !keep(a) {
			h.queue = append(h.queue, a)
			continue
		}
		if r, ok := h.report(a); ok {
			h.must(h.c.Handle(h.now, r))
		}
	}
}

// A hub killed in the middle of a secure round resumes it from its
// snapshot, in its ring: the round completes with the exact sum. A
// snapshot from before rings had widths (no bits) resumes in 32 bits.
func TestRestoreResumesSecureRound(t *testing.T) {
	for _, tc := range []struct {
		name string
		enc  Encoding
		old  bool
		bits int
	}{
		{"32-bit ring", Float32, false, 32},
		{"16-bit ring", Int8, false, 16},
		{"a snapshot without the ring's width", Float32, true, 32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := tinySpec(4)
			spec.SecAgg = &SecAggSpec{}
			spec.Encoding = tc.enc
			h := newHand(t, spec, 4)
			init := h.c.Global().Weights
			h.join()
			restart := h.restart
			if tc.old {
				restart = h.restartWithout("bits", "ringReason")
				if js := snapshotJSON(t, h.c); !strings.Contains(js, `"bits":32,"ringReason":"32-bit ring: the job's encoding is float32"`) {
					t.Fatalf("the snapshot lacks the fields an older one lacks: %s", js)
				}
			}
			all := func(Assignment) bool { return true }
			h.step(all) // advertise
			restart()
			h.step(all) // share
			restart()
			// Two of four masked updates arrive, then the hub restarts.
			sent := 0
			h.step(func(a Assignment) bool { sent++; return sent <= 2 })
			if got := len(h.c.st.Cohorts[0].Secure.Masked); got != 2 {
				t.Fatalf("%d masked updates before the restart", got)
			}
			restart()
			st := h.c.Status()
			if st.Ring != tc.bits || h.bits != tc.bits {
				t.Fatalf("restored in a %d-bit ring (%q), clients masked in %d; want %d", st.Ring, st.RingReason, h.bits, tc.bits)
			}
			for _, p := range st.Plans {
				if p.Ring != tc.bits || !strings.Contains(p.Reason, fmt.Sprintf("; the cohort's %d-bit ring", tc.bits)) {
					t.Fatalf("plan %+v: want a %d-bit ring, and why", p, tc.bits)
				}
			}
			if len(st.Plans) != 4 {
				t.Fatalf("%d plans", len(st.Plans))
			}
			h.run(10)
			if st := h.c.Status(); st.State != Done || st.History[0].Ring != tc.bits {
				t.Fatalf("%+v %v", st, h.events)
			}
			if want := expected(t, init, h, names(4), 4, 4); h.c.Global().Ref.Digest != want {
				t.Fatal("the resumed round's model is not the exact sum")
			}
		})
	}
}

// restartWithout restarts the hub from its snapshot with the given
// fields of its secure rounds' state taken out, as an older hub wrote it.
func (h *hand) restartWithout(fields ...string) func() {
	return func() {
		h.t.Helper()
		b, err := json.Marshal(h.c.Snapshot())
		if err != nil {
			h.t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			h.t.Fatal(err)
		}
		cohorts, _ := m["state"].(map[string]any)["cohorts"].([]any)
		for _, co := range cohorts {
			if sec, ok := co.(map[string]any)["secure"].(map[string]any); ok {
				for _, f := range fields {
					delete(sec, f)
				}
			}
		}
		if b, err = json.Marshal(m); err != nil {
			h.t.Fatal(err)
		}
		var s Snapshot
		if err := json.Unmarshal(b, &s); err != nil {
			h.t.Fatal(err)
		}
		c, err := Restore(s)
		if err != nil {
			h.t.Fatal(err)
		}
		c.SetNoiseSource(newDetRand(9))
		h.c = c
	}
}

// A hub that comes back after the round's deadline, its clients having
// lost their secrets too, abandons the round cleanly and runs it again.
func TestRestoreAfterDeadlineAbandonsCleanly(t *testing.T) {
	spec := tinySpec(3)
	spec.SecAgg = &SecAggSpec{}
	h := newHand(t, spec, 3)
	h.join()
	all := func(Assignment) bool { return true }
	h.step(all) // advertise
	h.step(all) // share
	sent := 0
	h.step(func(a Assignment) bool { sent++; return sent <= 1 })
	h.restart()
	h.queue = nil                             // the messages in flight are lost
	h.rnd = newDetRand(8)                     // the clients restart too
	h.now = h.c.NextDeadline().Add(time.Hour) // down past the deadline
	h.take(h.c.Tick(h.now))
	if len(h.published) != 1 {
		t.Fatal("a model was published from a partial secure round")
	}
	var abandoned bool
	for _, e := range h.events {
		abandoned = abandoned || (e.Kind == "abandoned" && strings.Contains(e.Message, "1 of 3 masked updates"))
	}
	if !abandoned {
		t.Fatalf("no clean abandon: %v", h.events)
	}
	h.run(10)
	if st := h.c.Status(); st.State != Done || st.Round != 1 {
		t.Fatalf("%+v", st)
	}
	if want := expected(t, h.published[0].Weights, h, names(3), 3, 4); h.c.Global().Ref.Digest != want {
		t.Fatal("the rerun round's model is not the exact sum")
	}
}

// The ε reported after each round is internal/privacy's for the rounds
// run, and the job stops before a round that would pass the budget.
func TestEpsilonPerRoundAndBudget(t *testing.T) {
	const sigma, delta = 1.1, 1e-5
	acc := privacy.NewAccountant(nil)
	var eps []float64
	for range 6 {
		if err := acc.Step(1, sigma, 1); err != nil {
			t.Fatal(err)
		}
		e, _, err := acc.Epsilon(delta)
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, e)
	}
	spec := tinySpec(3)
	spec.Rounds = 10
	spec.DP = &DPSpec{Clip: 1, NoiseMultiplier: sigma, Delta: delta, EpsilonBudget: (eps[3] + eps[4]) / 2}
	h := newHand(t, spec, 3)
	h.join()
	h.run(50)
	st := h.c.Status()
	if st.State != Done || st.Round != 4 || !strings.Contains(st.Reason, "budget") {
		t.Fatalf("status %+v, want done after 4 rounds for the budget", st)
	}
	for i, s := range st.History {
		if math.Abs(s.Epsilon-eps[i]) > 1e-9 {
			t.Errorf("round %d: ε %v, the accountant says %v", i+1, s.Epsilon, eps[i])
		}
	}
	if st.Epsilon != eps[3] || h.c.Global().Epsilon != eps[3] {
		t.Errorf("status ε %v, want %v", st.Epsilon, eps[3])
	}
}

// What the coordinator holds of a round's updates is one running sum: its
// snapshot does not grow with the updates received, plain or masked.
func TestSnapshotDoesNotGrowWithUpdates(t *testing.T) {
	for _, secure := range []bool{false, true} {
		spec := tinySpec(8)
		spec.Model.Sizes = []int{784, 16, 10} // 12,730 values
		if secure {
			spec.SecAgg = &SecAggSpec{K: 4, T: 3}
		}
		h := newHand(t, spec, 8)
		for name := range h.x {
			for k := range h.x[name] {
				h.x[name][k] = 0.001 * float32(k%7)
			}
		}
		h.join()
		all := func(Assignment) bool { return true }
		if secure {
			h.step(all) // advertise
			h.step(all) // share
		}
		sizes := map[int]int{}
		sent := 0
		h.step(func(a Assignment) bool {
			if sent == 1 || sent == 7 {
				sizes[sent] = len(snapshotJSON(t, h.c))
			}
			sent++
			return true
		})
		if sizes[1] == 0 || sizes[7] == 0 {
			t.Fatalf("secure %v: sizes %v", secure, sizes)
		}
		t.Logf("secure %v: snapshot %d bytes after 1 update, %d after 7", secure, sizes[1], sizes[7])
		if float64(sizes[7]) > 1.1*float64(sizes[1]) {
			t.Errorf("secure %v: the snapshot grew from %d to %d bytes", secure, sizes[1], sizes[7])
		}
	}
}

// A member that reports itself offline is not waited for: once every
// other member has answered, the phase closes without the deadline.
func TestOfflineMemberIsNotWaitedFor(t *testing.T) {
	for _, secure := range []bool{false, true} {
		// Round 1 starts with the first MinClients to join; round 2 has all four.
		spec := tinySpec(2)
		spec.Rounds = 2
		if secure {
			spec.SecAgg = &SecAggSpec{}
			spec.MinClients = 3
		}
		h := newHand(t, spec, 4)
		h.join()
		gone := clusterName(3)
		for h.c.Status().Round < 1 {
			h.step(func(a Assignment) bool { return a.Round == 1 })
		}
		h.drop[gone] = Mask
		if !secure {
			h.drop[gone] = Train
		}
		for range 4 {
			h.step(func(Assignment) bool { return true })
		}
		if st := h.c.Status(); st.Round != 1 || h.c.cohortOf(gone) == nil {
			t.Fatalf("secure %v: %+v, %s in round 2: %v", secure, st, gone, h.c.cohortOf(gone) != nil)
		}
		h.must(h.c.Handle(h.now, Report{Job: "tiny", Cluster: gone, Kind: KindFacts, Facts: &ClusterFacts{Online: false, Samples: 100}}))
		h.run(5)
		st := h.c.Status()
		if st.State != Done || !h.now.Equal(t0) {
			t.Fatalf("secure %v: %+v at %v; want done at once", secure, st, h.now.Sub(t0))
		}
		if st.History[1].Participants != 3 {
			t.Fatalf("secure %v: %d participants, want 3", secure, st.History[1].Participants)
		}
	}
}

func stdOf(v []float32) float64 {
	var s, s2 float64
	for _, x := range v {
		s += float64(x)
		s2 += float64(x) * float64(x)
	}
	n := float64(len(v))
	return math.Sqrt(s2/n - (s/n)*(s/n))
}

// The aggregate carries noise of standard deviation σ·C over the n
// updates averaged: added by the coordinator (central) or, in shares of
// variance σ²C²/MinClients, by each of the clients (distributed).
func TestDPNoiseOnTheAggregate(t *testing.T) {
	const sigma, clip = 0.8, 0.5
	for _, distributed := range []bool{false, true} {
		spec := tinySpec(4)
		spec.Model.Sizes = []int{784, 16, 10} // 12,730 values
		spec.SecAgg = &SecAggSpec{}
		spec.DP = &DPSpec{Clip: clip, NoiseMultiplier: sigma, Delta: 1e-5, Distributed: distributed}
		h := newHand(t, spec, 4)
		for name := range h.x {
			clear(h.x[name])
		}
		init := Flatten(h.c.Global().Weights)
		h.join()
		if distributed {
			// Each client's vector is what Client.secureInput makes of a zero
			// update under its assignment: its share of the noise.
			cl := NewClient("x", newDetRand(1))
			for name := range h.x {
				a := h.c.st.Clusters[name].Assignment
				if want := sigma * clip / 2; math.Abs(a.NoiseStd-want) > 1e-12 {
					t.Fatalf("assigned noise std %v, want σC/sqrt(4) = %v", a.NoiseStd, want)
				}
				zero := make([][]float32, len(h.c.st.Model.Weights))
				for i, w := range h.c.st.Model.Weights {
					zero[i] = make([]float32, len(w))
				}
				y, err := cl.secureInput(TrainResult{Delta: zero, Steps: 1}, a)
				if err != nil {
					t.Fatal(err)
				}
				enc, _ := secagg.NewEncoding(a.SecAgg.Range, a.SecAgg.N, a.SecAgg.Bits)
				for i, v := range enc.Decode(y) {
					h.x[name][i] = float32(v)
				}
			}
		}
		h.run(10)
		if h.c.Status().State != Done {
			t.Fatalf("%+v", h.c.Status())
		}
		got := Flatten(h.c.Global().Weights)
		for i := range got {
			got[i] -= init[i]
		}
		want := sigma * clip / 4
		if s := stdOf(got); math.Abs(s-want)/want > 0.05 {
			t.Errorf("distributed %v: the aggregate's noise has std %.4f, want σC/n = %.4f", distributed, s, want)
		}
	}
}
