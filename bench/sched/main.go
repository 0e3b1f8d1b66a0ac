// Command sched compares the edge scheduler of pipeline steps
// (internal/schedule) with two common policies, on one simulated edge
// cluster and one job mix, in a discrete-event simulation:
//
//   - fifo: first come, first fit; no priorities, no preemption, no
//     adaptation, no throttling;
//   - quota: strict quota admission; each priority has a fixed share of the
//     cluster's CPU and memory, and a job waits unless its priority's share
//     has room for it (first come, first fit within a priority); a job
//     larger than its share runs only when nothing else of its priority does;
//   - ours: internal/schedule, with aging, reservations, preemption of
//     lower-priority training, adaptation and throttling.
//
// The cluster has 4 cores and 8Gi, of which serving keeps 1 core and 1Gi.
// The mix (a seed draws it) has a few long training jobs and many short
// data-preparation, evaluation and exec steps of random priorities arriving
// over hours. A job's work is its running time at its full request; it
// progresses at its granted share of the CPU it asked for. A preempted
// training job resumes from its last checkpoint (every 5 minutes of work). Serving's p99 latency is modelled from the CPU training
// uses: 40ms, plus 30ms for every core beyond half a core; it is observed
// every 10 seconds.
//
// A fourth row, "ours, no target", runs internal/schedule without a serving
// target (no throttling), to tell the cost of protecting serving from the
// rest.
//
// It prints, per policy: the makespan, the mean and p95 time each priority's
// jobs waited in the queue (all the time they were queued, after
// preemptions too), CPU and memory utilisation (of what jobs may use, over
// the makespan), serving's modelled p99 (its mean over time, and the share
// of time it was over target), the preemptions and the work they made
// redo, the throttle decisions and the adapted starts; then the ratios to
// fifo.
//
//	go run ./bench/sched [-seed 1] [-seeds 10] [-jobs 60] [-training 3] [-hours 4] [-aging 10m]
package main

import (
	"cmp"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"outpost.dev/outpost/internal/schedule"
)

const (
	mi = int64(1) << 20
	gi = int64(1) << 30
)

func main() {
	var (
		seed     = flag.Uint64("seed", 1, "seed of the first job mix")
		seeds    = flag.Int("seeds", 10, "job mixes to run (seed, seed+1, ...); figures are their means")
		jobs     = flag.Int("jobs", 60, "short steps (data preparation, evaluation, exec) in a mix")
		training = flag.Int("training", 3, "training jobs in a mix")
		hours    = flag.Float64("hours", 4, "hours over which the jobs arrive")
		quota    = flag.String("quota", "0.2,0.3,0.5", "quota policy: the shares of priorities 0, 1, 2")
		aging    = flag.Duration("aging", 10*time.Minute, "ours: schedule.Config.Aging")
		reserve  = flag.Duration("reserve-after", 0, "ours: schedule.Config.ReserveAfter (0: its default)")
	)
	flag.Parse()
	shares, err := floats(*quota)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/sched:", err)
		os.Exit(2)
	}
	cfg := config{seed: *seed, seeds: *seeds, jobs: *jobs, training: *training,
		window: time.Duration(*hours * float64(time.Hour)), shares: shares, aging: *aging, reserveAfter: *reserve}
	if err := run(os.Stdout, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench/sched:", err)
		os.Exit(1)
	}
}

func floats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 || v > 1 {
			return nil, fmt.Errorf("bad share %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}

type config struct {
	seed     uint64
	seeds    int
	jobs     int
	training int
	window   time.Duration
	shares   []float64
	// aging and reserveAfter configure ours.
	aging, reserveAfter time.Duration
}

// The cluster, serving's model and the simulation's constants.
var (
	allocatable = schedule.Resources{MilliCPU: 4000, Memory: 8 * gi}
	servingKeep = schedule.Resources{MilliCPU: 1000, Memory: 1 * gi}
)

const (
	priorities    = 3
	target        = 80 * time.Millisecond
	observeEvery  = 10.0  // seconds between serving observations
	checkpointSec = 300.0 // a training job checkpoints every 5 minutes of work
)

// p99 is serving's modelled p99 latency with training using cpu millicores.
func p99(cpu int64) time.Duration {
	return 40*time.Millisecond + time.Duration(max(cpu-500, 0))*30*time.Microsecond
}

// benchJob is a job of a mix: it arrives at arrive and needs work of
// running at its full request.
type benchJob struct {
	job    schedule.Job
	kind   string
	arrive time.Duration
	work   time.Duration
}

// mix draws the jobs of seed: training jobs arriving in the first 60% of
// the window, short steps over all of it.
func mix(cfg config, seed uint64) []benchJob {
	rng := rand.New(rand.NewPCG(seed, 0xed9e))
	uniform := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)) }
	res := func(cpu, mem int64) schedule.Resources { return schedule.Resources{MilliCPU: cpu, Memory: mem} }
	var out []benchJob
	for i := range cfg.training {
		j := schedule.Job{ID: fmt.Sprintf("train-%d", i), Priority: int32(rng.IntN(priorities)), Class: schedule.ClassTraining,
			Request: res(2000, 3*gi), Min: res(1000, 2*gi)}
		out = append(out, benchJob{job: j, kind: "train", arrive: uniform(0, cfg.window*6/10), work: uniform(45*time.Minute, 90*time.Minute)})
	}
	for i := range cfg.jobs {
		j := schedule.Job{ID: fmt.Sprintf("step-%d", i), Priority: int32(rng.IntN(priorities))}
		b := benchJob{arrive: uniform(0, cfg.window)}
		switch r := rng.IntN(100); {
		case r < 30:
			cpu, mem := 1000+500*int64(rng.IntN(2)), gi*int64(1+rng.IntN(2))
			j.Request, j.Min = res(cpu, mem), res(500, mem/2)
			b.kind, b.work = "prep", uniform(3*time.Minute, 12*time.Minute)
		case r < 65:
			j.Request = res(1000, gi)
			b.kind, b.work = "eval", uniform(2*time.Minute, 6*time.Minute)
		default:
			j.Request = res(250*int64(1+rng.IntN(2)), 256*mi*int64(1+rng.IntN(2)))
			b.kind, b.work = "exec", uniform(30*time.Second, 3*time.Minute)
		}
		b.job = j
		out = append(out, b)
	}
	slices.SortStableFunc(out, func(a, b benchJob) int { return cmp.Compare(a.arrive, b.arrive) })
	return out
}

// policy is what the simulation asks of a scheduler: internal/schedule's
// Scheduler, or one of the peers below.
type policy interface {
	Submit(j schedule.Job)
	Finish(id string)
	ObserveServing(p99 time.Duration)
	Schedule(now time.Time) []schedule.Decision
}

// fifo starts jobs in the order they came, each that fits, with what it
// asked. With shares, it is the quota policy.
type fifo struct {
	queue   []schedule.Job // waiting, in the order they came
	running map[string]schedule.Job
	// share, if set, is each priority's quota of the capacity.
	share []float64
}

func newFIFO() *fifo { return &fifo{running: map[string]schedule.Job{}} }

func newQuota(shares []float64) *fifo {
	return &fifo{running: map[string]schedule.Job{}, share: shares}
}

func (f *fifo) Submit(j schedule.Job)        { f.queue = append(f.queue, j) }
func (f *fifo) Finish(id string)             { delete(f.running, id) }
func (f *fifo) ObserveServing(time.Duration) {}

func (f *fifo) Schedule(time.Time) []schedule.Decision {
	capacity := sub(allocatable, servingKeep)
	free := capacity
	used := map[int32]schedule.Resources{}
	for _, j := range f.running {
		free = sub(free, j.Request)
		used[j.Priority] = add(used[j.Priority], j.Request)
	}
	var out []schedule.Decision
	f.queue = slices.DeleteFunc(f.queue, func(j schedule.Job) bool {
		ok := le(j.Request, free)
		if ok && f.share != nil {
			s := f.share[min(int(j.Priority), len(f.share)-1)]
			quota := schedule.Resources{MilliCPU: int64(s * float64(capacity.MilliCPU)), Memory: int64(s * float64(capacity.Memory))}
			u := used[j.Priority]
			ok = le(add(u, j.Request), quota) || u.MilliCPU == 0 && u.Memory == 0
		}
		if !ok {
			return false
		}
		free = sub(free, j.Request)
		used[j.Priority] = add(used[j.Priority], j.Request)
		f.running[j.ID] = j
		out = append(out, schedule.Decision{Action: schedule.Start, JobID: j.ID, Granted: j.Request})
		return true
	})
	return out
}

func add(a, b schedule.Resources) schedule.Resources {
	return schedule.Resources{MilliCPU: a.MilliCPU + b.MilliCPU, Memory: a.Memory + b.Memory}
}

func sub(a, b schedule.Resources) schedule.Resources {
	return schedule.Resources{MilliCPU: a.MilliCPU - b.MilliCPU, Memory: a.Memory - b.Memory}
}

func le(a, b schedule.Resources) bool { return a.MilliCPU <= b.MilliCPU && a.Memory <= b.Memory }

// result is what one policy did with one mix.
type result struct {
	makespan   time.Duration
	waits      [priorities][]time.Duration // time each job spent queued, by priority
	cpu, mem   float64                     // utilisation of what jobs may use, over the makespan
	p99Mean    time.Duration               // time-weighted over the makespan
	overTarget float64                     // share of the makespan serving's p99 was over target
	preempts   int
	lostWork   time.Duration // work redone after preemptions
	throttles  int
	adapted    int
}

// state is a job's progress in a simulation; times are seconds since the
// start.
type state struct {
	b        *benchJob
	queuedAt float64
	waited   float64
	done     float64 // seconds of work done
	granted  schedule.Resources
	running  bool
	finished bool
}

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return epoch.Add(time.Duration(sec * float64(time.Second))) }

// rate is how fast a job progresses with g: its share of the CPU it asked
// for (a smaller memory grant, a smaller batch, is taken to cost nothing
// more).
func rate(b *benchJob, g schedule.Resources) float64 {
	r := 1.0
	if c := b.job.Request.MilliCPU; c > 0 {
		r = float64(g.MilliCPU) / float64(c)
	}
	return r
}

// simulate runs the mix under p to its end.
func simulate(p policy, jobs []benchJob) (result, error) {
	var r result
	st := make(map[string]*state, len(jobs))
	ids := make([]string, len(jobs))
	for i := range jobs {
		st[jobs[i].job.ID] = &state{b: &jobs[i]}
		ids[i] = jobs[i].job.ID
	}
	slices.Sort(ids)
	capacity := sub(allocatable, servingKeep)
	trainingCPU := func() int64 {
		var c int64
		for _, s := range st {
			if s.running && s.b.job.Class == schedule.ClassTraining {
				c += s.granted.MilliCPU
			}
		}
		return c
	}
	var now, nextObserve, cpuSec, memSec, p99Sec, overSec float64
	next, finished := 0, 0
	for finished < len(jobs) {
		if now > 1e7 {
			return r, fmt.Errorf("%d of %d jobs unfinished after %v", len(jobs)-finished, len(jobs), time.Duration(now)*time.Second)
		}
		for ; next < len(jobs) && jobs[next].arrive.Seconds() <= now; next++ {
			j := jobs[next].job
			j.Submitted = epoch.Add(jobs[next].arrive)
			st[j.ID].queuedAt = now
			p.Submit(j)
		}
		for _, id := range ids {
			if s := st[id]; s.running && s.done >= s.b.work.Seconds()-1e-6 {
				s.running, s.finished = false, true
				finished++
				p.Finish(id)
				r.makespan = max(r.makespan, time.Duration(now*float64(time.Second)))
			}
		}
		if now >= nextObserve {
			p.ObserveServing(p99(trainingCPU()))
			nextObserve += observeEvery
		}
		for {
			var again []schedule.Job
			for _, d := range p.Schedule(at(now)) {
				s := st[d.JobID]
				switch d.Action {
				case schedule.Start:
					if s.running || s.finished {
						return r, fmt.Errorf("start of %s, running or finished", d.JobID)
					}
					s.running, s.granted = true, d.Granted
					s.waited += now - s.queuedAt
					if d.Adapted != "" {
						r.adapted++
					}
				case schedule.Preempt:
					kept := math.Floor(s.done/checkpointSec) * checkpointSec
					r.lostWork += time.Duration((s.done - kept) * float64(time.Second))
					s.done, s.running, s.queuedAt = kept, false, now
					r.preempts++
					j := s.b.job
					j.Submitted = epoch.Add(s.b.arrive)
					again = append(again, j)
				case schedule.Throttle, schedule.Unthrottle:
					s.granted = d.Granted
					if d.Action == schedule.Throttle {
						r.throttles++
					}
				}
			}
			if len(again) == 0 {
				break
			}
			for _, j := range again {
				p.Submit(j)
			}
		}
		// The next event: an arrival, an observation or a job's end.
		t := nextObserve
		if next < len(jobs) {
			t = min(t, jobs[next].arrive.Seconds())
		}
		var held schedule.Resources
		for _, s := range st {
			if s.running {
				held = add(held, s.granted)
				if v := rate(s.b, s.granted); v > 0 {
					t = min(t, now+(s.b.work.Seconds()-s.done)/v)
				}
			}
		}
		if !le(held, capacity) {
			return r, fmt.Errorf("over-committed at %.0fs: %v held of %v", now, held, capacity)
		}
		dt := max(t-now, 0)
		cpuSec += float64(held.MilliCPU) * dt
		memSec += float64(held.Memory) * dt
		l := p99(trainingCPU())
		p99Sec += l.Seconds() * dt
		if l > target {
			overSec += dt
		}
		for _, s := range st {
			if s.running {
				s.done += rate(s.b, s.granted) * dt
			}
		}
		now = t
	}
	span := r.makespan.Seconds()
	r.cpu = cpuSec / (float64(capacity.MilliCPU) * span)
	r.mem = memSec / (float64(capacity.Memory) * span)
	r.p99Mean = time.Duration(p99Sec / span * float64(time.Second))
	r.overTarget = overSec / span
	for _, id := range ids {
		s := st[id]
		r.waits[s.b.job.Priority] = append(r.waits[s.b.job.Priority], time.Duration(s.waited*float64(time.Second)))
	}
	return r, nil
}

// figures are a policy's results over the mixes, each the mean over them.
type figures struct {
	makespan, lost               time.Duration
	meanWait, p95Wait            [priorities]time.Duration
	cpu, mem, over               float64
	p99                          time.Duration
	preempts, throttles, adapted float64
}

func (f *figures) add(r result, n int) {
	div := func(d time.Duration) time.Duration { return d / time.Duration(n) }
	f.makespan += div(r.makespan)
	f.lost += div(r.lostWork)
	for p, w := range r.waits {
		f.meanWait[p] += div(mean(w))
		f.p95Wait[p] += div(quantile(w, 0.95))
	}
	f.cpu += r.cpu / float64(n)
	f.mem += r.mem / float64(n)
	f.over += r.overTarget / float64(n)
	f.p99 += div(r.p99Mean)
	f.preempts += float64(r.preempts) / float64(n)
	f.throttles += float64(r.throttles) / float64(n)
	f.adapted += float64(r.adapted) / float64(n)
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s / time.Duration(len(ds))
}

// quantile is the nearest-rank q quantile of ds.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	return s[max(int(math.Ceil(q*float64(len(s))))-1, 0)]
}

func run(w io.Writer, cfg config) error {
	names := []string{"fifo", "quota", "ours", "ours, no target"}
	policies := func() []policy {
		c := schedule.Config{Allocatable: allocatable, ServingReserve: servingKeep, Aging: cfg.aging,
			ReserveAfter: cfg.reserveAfter, ServingTarget: target}
		ours := schedule.New(c)
		c.ServingTarget = 0
		return []policy{newFIFO(), newQuota(cfg.shares), ours, schedule.New(c)}
	}
	figs := make([]figures, len(names))
	var work [2]float64 // core-hours of training and of short steps, per mix
	for k := range cfg.seeds {
		jobs := mix(cfg, cfg.seed+uint64(k))
		for _, b := range jobs {
			i := 1
			if b.kind == "train" {
				i = 0
			}
			work[i] += float64(b.job.Request.MilliCPU) / 1000 * b.work.Hours() / float64(cfg.seeds)
		}
		for i, p := range policies() {
			r, err := simulate(p, slices.Clone(jobs))
			if err != nil {
				return fmt.Errorf("%s, seed %d: %w", names[i], cfg.seed+uint64(k), err)
			}
			figs[i].add(r, cfg.seeds)
		}
	}
	capacity := sub(allocatable, servingKeep)
	fmt.Fprintf(w, "cluster: %v allocatable, serving keeps %v: jobs get %v; serving p99 target %v (modelled: 40ms + 30ms per training core beyond 0.5)\n",
		allocatable, servingKeep, capacity, target)
	fmt.Fprintf(w, "mix: %d training jobs (2 cores, 3Gi, min 1 core, 2Gi; 45-90 min), %d short steps (prep, eval, exec; 30s-12min), priorities 0-%d, arriving over %v\n",
		cfg.training, cfg.jobs, priorities-1, cfg.window)
	fmt.Fprintf(w, "work per mix: %.1f core-hours of training, %.1f of short steps, against %.1f core-hours of the window; seeds %d-%d, means over %d mix(es)\n\n",
		work[0], work[1], float64(capacity.MilliCPU)/1000*cfg.window.Hours(), cfg.seed, cfg.seed+uint64(cfg.seeds)-1, cfg.seeds)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "policy\tmakespan\t"
	for p := range priorities {
		head += fmt.Sprintf("wait p%d mean\tp95\t", p)
	}
	fmt.Fprintln(tw, head+"cpu util\tmem util\tserving p99\tover target\tpreempts\twork redone\tthrottles\tadapted\t")
	for i, f := range figs {
		row := fmt.Sprintf("%s\t%s\t", names[i], minutes(f.makespan))
		for p := range priorities {
			row += fmt.Sprintf("%s\t%s\t", minutes(f.meanWait[p]), minutes(f.p95Wait[p]))
		}
		fmt.Fprintf(tw, "%s%.0f%%\t%.0f%%\t%.1fms\t%.0f%%\t%.1f\t%s\t%.1f\t%.1f\t\n", row, 100*f.cpu, 100*f.mem,
			float64(f.p99)/float64(time.Millisecond), 100*f.over, f.preempts, minutes(f.lost), f.throttles, f.adapted)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nratios to fifo (lower is better, but for utilisation)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head = "policy\tmakespan\t"
	for p := range priorities {
		head += fmt.Sprintf("wait p%d mean\tp95\t", p)
	}
	fmt.Fprintln(tw, head+"cpu util\tserving p99\tover target\t")
	ratio := func(a, b float64) string {
		if b == 0 {
			if a == 0 {
				return "1.00"
			}
			return "inf"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	base := figs[0]
	for i, f := range figs[1:] {
		row := fmt.Sprintf("%s\t%s\t", names[i+1], ratio(float64(f.makespan), float64(base.makespan)))
		for p := range priorities {
			row += fmt.Sprintf("%s\t%s\t", ratio(float64(f.meanWait[p]), float64(base.meanWait[p])),
				ratio(float64(f.p95Wait[p]), float64(base.p95Wait[p])))
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t\n", row, ratio(f.cpu, base.cpu), ratio(float64(f.p99), float64(base.p99)), ratio(f.over, base.over))
	}
	return tw.Flush()
}

// minutes writes d in minutes: "12.3m".
func minutes(d time.Duration) string { return fmt.Sprintf("%.1fm", d.Minutes()) }
