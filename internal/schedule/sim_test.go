package schedule

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// mixJob is a job of a simulated mix: it arrives at t0 plus arrive and
// needs work of running at its full CPU request to end.
type mixJob struct {
	job    Job
	arrive time.Duration
	work   time.Duration
}

// simCluster is the cluster of the simulations: edge() with short aging,
// reservations and checkpoints, so that mixes of a few minutes use them.
func simCluster() Config {
	c := edge()
	c.Aging = 30 * time.Second
	c.ReserveAfter = time.Minute
	c.ServingTarget = 100 * time.Millisecond
	return c
}

const (
	simTick       = time.Second
	simObserve    = 5 // ticks between serving observations
	simCheckpoint = 20 * time.Second
)

// simP99 models serving's p99 latency: 40ms, plus 50ms for every core that
// training uses beyond half a core.
func simP99(trainingMilliCPU int64) time.Duration {
	return 40*time.Millisecond + time.Duration(max(trainingMilliCPU-500, 0))*50*time.Microsecond
}

// simRun is a running job as the simulation sees it.
type simRun struct {
	job     Job
	granted Resources
	full    Resources
	eff     int64
	done    time.Duration // work done
	credit  int64         // MilliCPU it may take back when throttled
}

// simStats counts what a simulation exercised.
type simStats struct {
	starts, adapted, preempts, throttles, unthrottles, reservedWaits int
}

// sim is the world around a Scheduler: the executor, the jobs' progress and
// serving. It checks the scheduler's decisions against an independent
// account of the cluster after every call.
type sim struct {
	cfg     Config
	s       *Scheduler
	now     time.Time
	queued  map[string]Job
	running map[string]*simRun
	saved   map[string]time.Duration // work checkpointed by preempted jobs
	over    bool                     // serving over target, as the simulation saw it
	tighten bool                     // an observation over target not yet acted on
	loosen  bool                     // an observation under 80% of it not yet acted on
	stats   simStats
}

// simulate runs mix to its end and returns the first broken invariant.
func simulate(mix []mixJob) (simStats, error) {
	cfg := simCluster()
	w := &sim{cfg: cfg, s: New(cfg), queued: map[string]Job{}, running: map[string]*simRun{}, saved: map[string]time.Duration{}}
	capacity := sub(cfg.Allocatable, cfg.ServingReserve)
	work := map[string]time.Duration{}
	finished := map[string]bool{}
	runnable := 0
	var last, total time.Duration
	for _, m := range mix {
		work[m.job.ID] = m.work
		last = max(last, m.arrive)
		total += m.work
		if le(minimum(m.job), capacity) {
			runnable++
		}
	}
	// Throttled to 100m, a job of 3.5 cores runs 35 times slower.
	horizon := t0.Add(last + 40*total + time.Hour)
	for tick := 0; len(finished) < runnable; tick++ {
		w.now = t0.Add(time.Duration(tick) * simTick)
		if w.now.After(horizon) {
			var left []string
			for _, m := range mix {
				if !finished[m.job.ID] && le(minimum(m.job), capacity) {
					left = append(left, m.job.ID)
				}
			}
			return w.stats, fmt.Errorf("starvation: at %v, %s not finished", w.now.Sub(t0), strings.Join(left, ", "))
		}
		for _, m := range mix {
			if m.arrive == w.now.Sub(t0) {
				j := m.job
				j.Submitted = w.now
				w.submit(j)
			}
		}
		for _, id := range sortedKeys(w.running) {
			if r := w.running[id]; r.done >= work[id] {
				w.s.Finish(id)
				delete(w.running, id)
				finished[id] = true
			}
		}
		if tick%simObserve == 0 {
			var cpu int64
			for _, r := range w.running {
				if r.job.Class == ClassTraining {
					cpu += r.granted.MilliCPU
				}
			}
			w.observe(simP99(cpu))
		}
		// Call Schedule as the executor does: again after a preemption,
		// whose job it submits again.
		for call := 0; ; call++ {
			if call == 10 {
				return w.stats, fmt.Errorf("at %v: still preempting after 10 calls", w.now.Sub(t0))
			}
			ds := w.s.Schedule(w.now)
			preempted, err := w.check(ds)
			if err != nil {
				return w.stats, fmt.Errorf("at %v: %w\ndecisions: %q", w.now.Sub(t0), err, brief(ds))
			}
			for _, j := range preempted {
				w.submit(j)
			}
			if len(preempted) == 0 {
				break
			}
		}
		for _, r := range w.running {
			rate := 1.0
			if r.job.Request.MilliCPU > 0 {
				rate = float64(r.granted.MilliCPU) / float64(r.job.Request.MilliCPU)
			}
			r.done += time.Duration(rate * float64(simTick))
		}
	}
	for _, m := range mix {
		if !le(minimum(m.job), capacity) && finished[m.job.ID] {
			return w.stats, fmt.Errorf("%s ran, though it never fits", m.job.ID)
		}
	}
	return w.stats, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (w *sim) submit(j Job) {
	w.queued[j.ID] = j
	w.s.Submit(j)
}

func (w *sim) observe(p99 time.Duration) {
	w.s.ObserveServing(p99)
	t := w.cfg.ServingTarget
	if p99 > t {
		w.over, w.tighten, w.loosen = true, true, false
	} else if float64(p99) < 0.8*float64(t) {
		w.over, w.tighten, w.loosen = false, false, true
	}
}

func (w *sim) eff(j Job) int64 {
	return int64(j.Priority) + int64(max(w.now.Sub(j.Submitted), 0)/w.cfg.Aging)
}

// check replays ds on the simulation's own account of the cluster and
// returns the jobs preempted. It fails when:
//   - a throttle halves anything but a training job's CPU, to below the
//     floor, without an observation over target, or when one that could
//     be throttled is not; an unthrottle comes while over target, or when a
//     throttled job's CPU is free and it is not given back;
//   - a job is preempted that is not a training job of lower Priority and
//     lower effective priority at its start than the job it makes room for,
//     or a preemption was not needed;
//   - a job starts with more than was free for it, less than its minimum,
//     less than the most that fit, or training starts over target;
//   - a job waits that could have started in what was free for it (so no
//     higher job waits behind a lower one started after it, unless it did
//     not fit), or could have preempted its way in;
//   - anything is over-committed.
func (w *sim) check(ds []Decision) ([]Job, error) {
	capacity := sub(w.cfg.Allocatable, w.cfg.ServingReserve)
	free := capacity
	for _, r := range w.running {
		free = sub(free, r.granted)
	}
	for _, r := range w.running {
		switch d := r.full.MilliCPU - r.granted.MilliCPU; {
		case w.tighten:
			r.credit = 0
		case w.loosen && d > DefaultThrottleFloor:
			r.credit = max(r.credit, d/2)
		case w.loosen:
			r.credit = max(r.credit, d)
		}
	}
	i := 0
	throttled := map[string]bool{}
	for ; i < len(ds) && (ds[i].Action == Throttle || ds[i].Action == Unthrottle); i++ {
		d := ds[i]
		r := w.running[d.JobID]
		if r == nil || r.job.Class != ClassTraining {
			return nil, fmt.Errorf("%v of %s, not a running training job", d.Action, d.JobID)
		}
		if d.Granted.Memory != r.granted.Memory || !le(d.Granted, r.full) {
			return nil, fmt.Errorf("%v of %s to %v, from %v", d.Action, d.JobID, d.Granted, r.granted)
		}
		old := r.granted.MilliCPU
		switch d.Action {
		case Throttle:
			if !w.tighten {
				return nil, fmt.Errorf("throttle of %s without an observation over target", d.JobID)
			}
			if want := max(old/2, DefaultThrottleFloor); d.Granted.MilliCPU != want || want >= old {
				return nil, fmt.Errorf("throttle of %s from %dm to %dm", d.JobID, old, d.Granted.MilliCPU)
			}
			throttled[d.JobID] = true
			w.stats.throttles++
		case Unthrottle:
			if w.over {
				return nil, fmt.Errorf("unthrottle of %s over target", d.JobID)
			}
			give := d.Granted.MilliCPU - old
			if give != min(r.credit, r.full.MilliCPU-old, free.MilliCPU) {
				return nil, fmt.Errorf("unthrottle of %s from %dm to %dm, of %dm, with %dm free and %dm to take back",
					d.JobID, old, d.Granted.MilliCPU, r.full.MilliCPU, free.MilliCPU, r.credit)
			}
			r.credit -= give
			w.stats.unthrottles++
		}
		free = add(free, sub(r.granted, d.Granted))
		r.granted = d.Granted
	}
	for _, id := range sortedKeys(w.running) {
		r := w.running[id]
		if w.tighten && r.job.Class == ClassTraining && !throttled[id] && max(r.granted.MilliCPU/2, DefaultThrottleFloor) < r.granted.MilliCPU {
			return nil, fmt.Errorf("%s not throttled over target, at %dm", id, r.granted.MilliCPU)
		}
		if !w.over && r.granted.MilliCPU < r.full.MilliCPU && r.credit > 0 && free.MilliCPU > 0 {
			return nil, fmt.Errorf("%s left throttled with %dm free and %dm to take back", id, free.MilliCPU, r.credit)
		}
	}
	w.tighten, w.loosen = false, false

	preempts := map[string][]string{}
	starts := map[string]Decision{}
	for _, d := range ds[i:] {
		switch d.Action {
		case Preempt:
			if _, ok := starts[d.For]; ok {
				return nil, fmt.Errorf("preemption of %s for %s after its start", d.JobID, d.For)
			}
			preempts[d.For] = append(preempts[d.For], d.JobID)
		case Start:
			starts[d.JobID] = d
		default:
			return nil, fmt.Errorf("%v of %s after the starts began", d.Action, d.JobID)
		}
	}
	for id := range preempts {
		if _, ok := starts[id]; !ok {
			return nil, fmt.Errorf("preemption for %s, which does not start", id)
		}
	}

	ranked := make([]Job, 0, len(w.queued))
	for _, j := range w.queued {
		ranked = append(ranked, j)
	}
	slices.SortFunc(ranked, func(a, b Job) int {
		return cmp.Or(cmp.Compare(w.eff(b), w.eff(a)), a.Submitted.Compare(b.Submitted), strings.Compare(a.ID, b.ID))
	})
	var preempted []Job
	avail := free
	reserved := false // the first job that waits ReserveAfter reserves, no other
	for _, j := range ranked {
		lo := minimum(j)
		d, ok := starts[j.ID]
		if !ok {
			if j.Class == ClassTraining && w.over || !le(lo, capacity) {
				continue
			}
			if le(lo, avail) {
				return nil, fmt.Errorf("%s waits, though its minimum %v fits in %v", j.ID, lo, avail)
			}
			room := avail
			for _, r := range w.running {
				if r.job.Class == ClassTraining && r.job.Priority < j.Priority && r.eff < w.eff(j) {
					room = add(room, r.granted)
				}
			}
			if le(lo, room) {
				return nil, fmt.Errorf("%s waits, though preempting lower training jobs makes room", j.ID)
			}
			if !reserved && w.now.Sub(j.Submitted) >= w.cfg.ReserveAfter {
				avail = reserve(avail, lo)
				reserved = true
				w.stats.reservedWaits++
			}
			continue
		}
		delete(starts, j.ID)
		if j.Class == ClassTraining && w.over {
			return nil, fmt.Errorf("training job %s starts over target", j.ID)
		}
		before := avail
		for _, v := range preempts[j.ID] {
			r := w.running[v]
			switch {
			case r == nil:
				return nil, fmt.Errorf("preemption of %s, not running", v)
			case r.job.Class != ClassTraining:
				return nil, fmt.Errorf("preemption of %s, not a training job", v)
			case r.job.Priority >= j.Priority || r.eff >= w.eff(j):
				return nil, fmt.Errorf("preemption of %s (priority %d, %d at its start) for %s (%d, %d)",
					v, r.job.Priority, r.eff, j.ID, j.Priority, w.eff(j))
			}
			avail = add(avail, r.granted)
			free = add(free, r.granted)
			delete(w.running, v)
			w.saved[v] = r.done / simCheckpoint * simCheckpoint
			preempted = append(preempted, r.job)
			w.stats.preempts++
		}
		if len(preempts[j.ID]) > 0 && le(lo, before) {
			return nil, fmt.Errorf("preemption for %s, whose minimum %v fitted in %v", j.ID, lo, before)
		}
		g := d.Granted
		if !le(lo, g) || !le(g, j.Request) || !le(g, avail) {
			return nil, fmt.Errorf("%s starts with %v: asked %v, minimum %v, free for it %v", j.ID, g, j.Request, lo, avail)
		}
		if most := lower(j.Request, avail); !le(most, g) {
			return nil, fmt.Errorf("%s starts with %v, though %v fitted", j.ID, g, most)
		}
		if (d.Adapted != "") != !le(j.Request, g) {
			return nil, fmt.Errorf("%s starts with %v of %v, adapted %q", j.ID, g, j.Request, d.Adapted)
		}
		if d.Adapted != "" {
			w.stats.adapted++
		}
		w.stats.starts++
		avail = sub(avail, g)
		free = sub(free, g)
		delete(w.queued, j.ID)
		w.running[j.ID] = &simRun{job: j, granted: g, full: g, eff: w.eff(j), done: w.saved[j.ID]}
	}
	for id := range starts {
		return nil, fmt.Errorf("start of %s, which was not queued", id)
	}
	if !le(Resources{}, free) {
		return nil, fmt.Errorf("over-committed: %v free", free)
	}
	return preempted, nil
}

// randomMix is a mix of jobs of seed: training and short steps of random
// priorities arriving over a few minutes, some adaptable, some asking for the
// GPU, a few that never fit.
func randomMix(seed uint64) []mixJob {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	n := 3 + rng.IntN(28)
	mix := make([]mixJob, n)
	for i := range mix {
		j := Job{ID: fmt.Sprintf("j%02d", i), Priority: int32(rng.IntN(4))}
		work := time.Duration(5+rng.IntN(90)) * time.Second
		j.Request = res(100*int64(1+rng.IntN(20)), 64*mi*int64(1+rng.IntN(48)))
		if rng.IntN(4) == 0 {
			j.Class = ClassTraining
			j.Request = res(1000+100*int64(rng.IntN(21)), gi+256*mi*int64(rng.IntN(16)))
			work *= 4
		}
		if rng.IntN(10) == 0 {
			j.Request.Accelerators = map[string]int64{gpu: 1}
		}
		if rng.IntN(3) == 0 {
			j.Min = res(j.Request.MilliCPU/int64(1+rng.IntN(4)), j.Request.Memory/int64(1+rng.IntN(4)))
		}
		if rng.IntN(25) == 0 {
			j.Request.MilliCPU = 3500 // never fits
			j.Min = Resources{}
		}
		mix[i] = mixJob{job: j, arrive: time.Duration(rng.IntN(300)) * time.Second, work: work}
	}
	return mix
}

func TestSimulatedMixes(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 30
	}
	var total simStats
	for seed := range uint64(seeds) {
		st, err := simulate(randomMix(seed))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		total.starts += st.starts
		total.adapted += st.adapted
		total.preempts += st.preempts
		total.throttles += st.throttles
		total.unthrottles += st.unthrottles
		total.reservedWaits += st.reservedWaits
	}
	t.Logf("%d mixes: %+v", seeds, total)
	// The mixes must exercise every rule, or they prove little.
	if total.adapted == 0 || total.preempts == 0 || total.throttles == 0 || total.unthrottles == 0 || total.reservedWaits == 0 {
		t.Errorf("the mixes did not exercise every rule: %+v", total)
	}
}

// decodeMix reads a mix from fuzz bytes, 7 a job, 16 jobs at most.
func decodeMix(data []byte) []mixJob {
	var mix []mixJob
	for i := 0; len(data) >= 7 && i < 16; i, data = i+1, data[7:] {
		b := data[:7]
		j := Job{ID: fmt.Sprintf("j%02d", i), Priority: int32(b[4] % 5)}
		j.Request = res(100*int64(1+b[2]%36), 64*mi*int64(1+b[3]%128))
		work := time.Duration(1+b[1]%120) * time.Second
		if b[4]&8 != 0 {
			j.Class = ClassTraining
			work *= 3
		}
		if b[5]&1 != 0 {
			j.Request.Accelerators = map[string]int64{gpu: 1 + int64(b[5]>>6&1)}
		}
		frac := int64(1 + b[6]%8)
		if b[5]&2 != 0 {
			j.Min.MilliCPU = j.Request.MilliCPU * frac / 8
		}
		if b[5]&4 != 0 {
			j.Min.Memory = j.Request.Memory * frac / 8
		}
		mix = append(mix, mixJob{job: j, arrive: time.Duration(b[0]) * 2 * time.Second, work: work})
	}
	return mix
}

func FuzzSimulatedMix(f *testing.F) {
	f.Add([]byte{0, 10, 9, 15, 0, 0, 0})
	f.Add([]byte{0, 100, 25, 40, 9, 2, 3, 1, 20, 9, 15, 3, 0, 0, 2, 5, 5, 7, 4, 6, 7})
	f.Add([]byte{0, 119, 29, 60, 8, 0, 0, 5, 30, 19, 60, 12, 7, 2, 9, 60, 35, 5, 2, 1, 0, 9, 60, 5, 5, 4, 65, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := simulate(decodeMix(data)); err != nil {
			t.Fatal(err)
		}
	})
}

// TestNoStarvationUnderAStream: a job of the whole cluster waits while short
// jobs of higher priority keep arriving, each of which alone would fit in
// what the one before left. It starts once it has aged past them and its
// reservation stops them; with pure backfill it would wait for the stream
// to end.
func TestNoStarvationUnderAStream(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reserve time.Duration
		starts  bool
	}{
		{"reservation", 5 * time.Minute, true},
		{"pure backfill", -1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := edge()
			cfg.ReserveAfter = tc.reserve
			s := New(cfg)
			s.Submit(job("big", 0, 3000, gi, 0))
			ends := map[string]time.Time{}
			started := time.Duration(-1)
			const stream = 2 * time.Hour
			for at := time.Duration(0); at < stream && started < 0; at += 10 * time.Second {
				now := t0.Add(at)
				for id, end := range ends {
					if !end.After(now) {
						s.Finish(id)
						delete(ends, id)
					}
				}
				// A job of 1 core for 25 s every 10 s: two or three run at
				// any time, and one always does.
				s.Submit(job(fmt.Sprintf("s%d", at/(10*time.Second)), 3, 1000, gi, at))
				for _, d := range s.Schedule(now) {
					if d.JobID == "big" {
						started = at
					} else {
						ends[d.JobID] = now.Add(25 * time.Second)
					}
				}
			}
			switch {
			case tc.starts && (started < 0 || started > 15*time.Minute):
				t.Errorf("big started at %v, want within 15m", started)
			case !tc.starts && started >= 0:
				t.Errorf("big started at %v: the stream did not hold it back, the test proves nothing", started)
			}
		})
	}
}
