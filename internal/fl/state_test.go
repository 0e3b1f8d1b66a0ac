package fl

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/privacy"
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
// snapshot: the round completes with the exact sum.
func TestRestoreResumesSecureRound(t *testing.T) {
	spec := tinySpec(4)
	spec.SecAgg = &SecAggSpec{}
	h := newHand(t, spec, 4)
	init := h.c.Global().Weights
	h.join()
	all := func(Assignment) bool { return true }
	h.step(all) // advertise
	h.restart()
	h.step(all) // share
	h.restart()
	// Two of four masked updates arrive, then the hub restarts.
	sent := 0
	h.step(func(a Assignment) bool { sent++; return sent <= 2 })
	if got := len(h.c.st.Cohorts[0].Secure.Masked); got != 2 {
		t.Fatalf("%d masked updates before the restart", got)
	}
	h.restart()
	h.run(10)
	if st := h.c.Status(); st.State != Done {
		t.Fatalf("%+v %v", st, h.events)
	}
	if want := expected(t, init, h.x, names(4), 4, 4); h.c.Global().Ref.Digest != want {
		t.Fatal("the resumed round's model is not the exact sum")
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
	if want := expected(t, h.published[0].Weights, h.x, names(3), 3, 4); h.c.Global().Ref.Digest != want {
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
