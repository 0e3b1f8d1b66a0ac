package schedule

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	mi  = int64(1) << 20
	gi  = int64(1) << 30
	gpu = "nvidia.com/gpu"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// edge is a small edge cluster: 4 cores, 8Gi and 1 GPU, serving keeping
// 1 core and 1Gi: jobs get 3 cores, 7Gi and the GPU.
func edge() Config {
	return Config{
		Allocatable:    Resources{MilliCPU: 4000, Memory: 8 * gi, Accelerators: map[string]int64{gpu: 1}},
		ServingReserve: Resources{MilliCPU: 1000, Memory: 1 * gi},
		Aging:          time.Minute,
		ReserveAfter:   5 * time.Minute,
		ServingTarget:  100 * time.Millisecond,
	}
}

func res(cpu, mem int64) Resources { return Resources{MilliCPU: cpu, Memory: mem} }

// job is a ClassOther job submitted at t0 plus at.
func job(id string, prio int32, cpu, mem int64, at time.Duration) Job {
	return Job{ID: id, Priority: prio, Submitted: t0.Add(at), Request: res(cpu, mem)}
}

func training(id string, prio int32, cpu, mem int64, at time.Duration) Job {
	j := job(id, prio, cpu, mem, at)
	j.Class = ClassTraining
	return j
}

// brief writes decisions as "start a", "preempt b for a", "throttle c 1"
// (granted cores), "unthrottle c 2".
func brief(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		switch d.Action {
		case Start:
			out = append(out, "start "+d.JobID)
		case Preempt:
			out = append(out, "preempt "+d.JobID+" for "+d.For)
		case Throttle:
			out = append(out, fmt.Sprintf("throttle %s %dm", d.JobID, d.Granted.MilliCPU))
		case Unthrottle:
			out = append(out, fmt.Sprintf("unthrottle %s %dm", d.JobID, d.Granted.MilliCPU))
		}
	}
	return out
}

// round is one call of Schedule after some changes.
type round struct {
	at      time.Duration // since t0
	submit  []Job
	finish  []string
	observe time.Duration // serving p99 observed first, if not 0
	want    []string      // brief of the decisions
}

func play(t *testing.T, cfg Config, rounds []round) *Scheduler {
	t.Helper()
	s := New(cfg)
	for i, r := range rounds {
		for _, id := range r.finish {
			s.Finish(id)
		}
		for _, j := range r.submit {
			s.Submit(j)
		}
		if r.observe != 0 {
			s.ObserveServing(r.observe)
		}
		got := brief(s.Schedule(t0.Add(r.at)))
		if !slices.Equal(got, r.want) {
			t.Fatalf("round %d at %v: got %q, want %q", i, r.at, got, r.want)
		}
	}
	return s
}

func TestScheduler(t *testing.T) {
	noTarget := edge()
	noTarget.ServingTarget = 0
	pureBackfill := edge()
	pureBackfill.ReserveAfter = -1
	tests := []struct {
		name   string
		cfg    Config
		rounds []round
	}{
		{"admission by cpu, serving's reserve kept", edge(), []round{
			{submit: []Job{job("a", 0, 2000, gi, 0), job("b", 0, 1500, gi, 0), job("c", 0, 1000, gi, 0)},
				want: []string{"start a", "start c"}},
			{at: time.Second, want: nil},
			{at: 2 * time.Second, finish: []string{"a"}, want: []string{"start b"}},
		}},
		{"admission by memory", edge(), []round{
			{submit: []Job{job("a", 0, 100, 4*gi, 0), job("b", 0, 100, 4*gi, 0)}, want: []string{"start a"}},
			{at: time.Second, finish: []string{"a"}, want: []string{"start b"}},
		}},
		{"admission by accelerator", edge(), []round{
			{submit: func() []Job {
				a, b := job("a", 0, 100, mi, 0), job("b", 0, 100, mi, time.Second)
				a.Request.Accelerators = map[string]int64{gpu: 1}
				b.Request.Accelerators = map[string]int64{gpu: 1}
				return []Job{a, b}
			}(), at: time.Second, want: []string{"start a"}},
			{at: 2 * time.Second, finish: []string{"a"}, want: []string{"start b"}},
		}},
		{"higher priority first", edge(), []round{
			{submit: []Job{job("low", 0, 2000, gi, 0), job("high", 5, 2000, gi, time.Second)}, at: time.Second,
				want: []string{"start high"}},
		}},
		{"ties by submission, then ID", edge(), []round{
			{submit: []Job{job("b", 1, 2000, gi, 0), job("a", 1, 2000, gi, 0), job("c", 1, 2000, gi, -time.Second)},
				want: []string{"start c"}},
			{at: time.Second, finish: []string{"c"}, want: []string{"start a"}},
			{at: 2 * time.Second, finish: []string{"a"}, want: []string{"start b"}},
		}},
		{"aging lifts an old low job over a new high one", edge(), []round{
			{submit: []Job{job("run", 9, 3000, gi, 0), job("old", 0, 2000, gi, 0)}, want: []string{"start run"}},
			// old has waited 10 minutes: 0 + 10 > 9.
			{at: 10 * time.Minute, submit: []Job{job("new", 9, 2000, gi, 10*time.Minute)}, finish: []string{"run"},
				want: []string{"start old"}},
		}},
		{"backfill while the head has waited less than ReserveAfter", edge(), []round{
			{submit: []Job{job("run", 0, 2000, gi, 0)}, want: []string{"start run"}},
			{at: time.Second, submit: []Job{job("big", 5, 3000, gi, time.Second), job("small", 0, 500, gi, time.Second)},
				want: []string{"start small"}},
		}},
		{"no backfill into what a reserved head needs", edge(), []round{
			{submit: []Job{job("run", 0, 2000, gi, 0)}, want: []string{"start run"}},
			{at: 10 * time.Minute, submit: []Job{job("big", 5, 3000, gi, 0), job("small", 0, 500, gi, 10*time.Minute)},
				want: nil},
			{at: 11 * time.Minute, finish: []string{"run"}, want: []string{"start big"}},
		}},
		{"backfill beside a reserved head in what it does not need", edge(), []round{
			{submit: []Job{job("run", 0, 1000, 5*gi, 0)}, want: []string{"start run"}},
			// big needs 4Gi, 2Gi are free: memory is reserved, 1 core of 2 is left.
			{at: 10 * time.Minute, submit: []Job{job("big", 5, 1000, 4*gi, 0), job("cpu", 0, 1000, 0, 10*time.Minute),
				job("mem", 0, 100, gi, 10*time.Minute)}, want: []string{"start cpu"}},
		}},
		{"one reservation at a time", edge(), []round{
			{submit: []Job{job("run", 0, 2000, gi, 0)}, want: []string{"start run"}},
			// h1 reserves the CPU; h2, waiting as long, reserves nothing, so
			// small may take the memory h2 would need.
			{at: 10 * time.Minute, submit: []Job{job("h1", 5, 1500, gi, 0), job("h2", 4, 100, 6*gi, 0),
				job("small", 0, 0, 4*gi, 10*time.Minute)}, want: []string{"start small"}},
		}},
		{"a negative ReserveAfter always backfills", pureBackfill, []round{
			{submit: []Job{job("run", 0, 2000, gi, 0)}, want: []string{"start run"}},
			{at: time.Hour, submit: []Job{job("big", 5, 3000, gi, 0), job("small", 0, 500, gi, time.Hour)},
				want: []string{"start small"}},
		}},
		{"preempt the lowest training job", edge(), []round{
			{submit: []Job{training("t1", 1, 1000, gi, 0), training("t0", 0, 1000, gi, 0), job("o", 0, 1000, gi, 0)},
				want: []string{"start t1", "start o", "start t0"}},
			{at: time.Second, submit: []Job{job("hi", 5, 1000, gi, time.Second)},
				want: []string{"preempt t0 for hi", "start hi"}},
		}},
		{"preempt as few as make room", edge(), []round{
			{submit: []Job{training("s1", 0, 500, gi, 0), training("s2", 0, 500, gi, 0), training("big", 1, 2000, gi, 0)},
				want: []string{"start big", "start s1", "start s2"}},
			// 2 cores: s1 and s2 (the lowest) are not enough, big alone is.
			{at: time.Second, submit: []Job{job("hi", 5, 2000, gi, time.Second)},
				want: []string{"preempt big for hi", "start hi"}},
		}},
		{"never preempt other jobs, nor equal priority", edge(), []round{
			{submit: []Job{job("o", 0, 2000, gi, 0), training("t", 5, 1000, gi, 0)},
				want: []string{"start t", "start o"}},
			{at: time.Second, submit: []Job{job("hi", 5, 2000, gi, time.Second)}, want: nil},
		}},
		{"no preemption that does not make room", edge(), []round{
			{submit: []Job{job("o", 0, 2500, gi, 0), training("t", 0, 500, gi, 0)},
				want: []string{"start o", "start t"}},
			{at: time.Second, submit: []Job{job("hi", 5, 2000, gi, time.Second)}, want: nil},
		}},
		{"aging does not preempt a higher priority", edge(), []round{
			{submit: []Job{training("t", 3, 3000, gi, 0)}, want: []string{"start t"}},
			{at: time.Hour, submit: []Job{job("old", 1, 1000, gi, 0)}, want: nil},
		}},
		{"a job that started aged is not preempted by a newcomer below that", edge(), []round{
			{submit: []Job{job("o", 9, 3000, gi, 0), training("t", 1, 3000, gi, 0)}, want: []string{"start o"}},
			// t starts at 1 + 30.
			{at: 30 * time.Minute, finish: []string{"o"}, want: []string{"start t"}},
			{at: 31 * time.Minute, submit: []Job{job("hi", 9, 3000, gi, 31*time.Minute)}, want: nil},
			{at: 50 * time.Minute, submit: []Job{job("top", 32, 3000, gi, 50*time.Minute)},
				want: []string{"preempt t for top", "start top"}},
		}},
		{"a long-running job started young is preempted", edge(), []round{
			{submit: []Job{training("t", 1, 3000, gi, 0)}, want: []string{"start t"}},
			{at: 30 * time.Minute, submit: []Job{job("hi", 5, 3000, gi, 30*time.Minute)},
				want: []string{"preempt t for hi", "start hi"}},
		}},
		{"adapt down to Min, the most that fits", edge(), []round{
			{submit: []Job{job("run", 0, 2000, 4*gi, 0)}, want: []string{"start run"}},
			{at: time.Second, submit: []Job{func() Job {
				j := job("a", 0, 2000, 4*gi, time.Second)
				j.Min = res(500, 2*gi)
				return j
			}()}, want: []string{"start a"}},
		}},
		{"not below Min", edge(), []round{
			{submit: []Job{job("run", 0, 2600, gi, 0)}, want: []string{"start run"}},
			{at: time.Second, submit: []Job{func() Job {
				j := job("a", 0, 2000, gi, time.Second)
				j.Min = res(500, 0)
				return j
			}()}, want: nil},
		}},
		{"throttle training over target, halving to the floor", edge(), []round{
			{submit: []Job{training("t", 0, 800, gi, 0), training("small", 0, 150, gi, 0), job("o", 0, 1000, gi, 0)},
				want: []string{"start o", "start small", "start t"}},
			{at: time.Second, observe: 150 * time.Millisecond, want: []string{"throttle small 100m", "throttle t 400m"}},
			{at: 2 * time.Second, want: nil}, // nothing new observed
			{at: 3 * time.Second, observe: 150 * time.Millisecond, want: []string{"throttle t 200m"}},
			{at: 4 * time.Second, observe: 150 * time.Millisecond, want: []string{"throttle t 100m"}},
			{at: 5 * time.Second, observe: 150 * time.Millisecond, want: nil},
			{at: 6 * time.Second, observe: 90 * time.Millisecond, want: nil}, // over 80% of target
			// Back in steps: half of what each lacks, all of it within the floor.
			{at: 7 * time.Second, observe: 70 * time.Millisecond,
				want: []string{"unthrottle small 150m", "unthrottle t 450m"}},
			{at: 8 * time.Second, want: nil},
			{at: 9 * time.Second, observe: 70 * time.Millisecond, want: []string{"unthrottle t 625m"}},
			{at: 10 * time.Second, observe: 90 * time.Millisecond, want: nil},
			{at: 11 * time.Second, observe: 70 * time.Millisecond, want: []string{"unthrottle t 712m"}},
			{at: 12 * time.Second, observe: 70 * time.Millisecond, want: []string{"unthrottle t 800m"}},
			{at: 13 * time.Second, observe: 70 * time.Millisecond, want: nil},
		}},
		{"no training starts while over target; other jobs do, in the CPU throttling freed", edge(), []round{
			{submit: []Job{training("t", 0, 3000, gi, 0)}, want: []string{"start t"}},
			{at: time.Second, observe: 200 * time.Millisecond,
				submit: []Job{training("t2", 0, 500, gi, time.Second), job("o", 0, 1500, gi, time.Second)},
				want:   []string{"throttle t 1500m", "start o"}},
			{at: 2 * time.Second, observe: 150 * time.Millisecond, want: []string{"throttle t 750m"}},
			{at: 3 * time.Second, finish: []string{"o"}, observe: 50 * time.Millisecond,
				want: []string{"unthrottle t 1875m", "start t2"}},
		}},
		{"unthrottle waits for free CPU", edge(), []round{
			{submit: []Job{training("t", 0, 2000, gi, 0)}, want: []string{"start t"}},
			{at: time.Second, observe: 200 * time.Millisecond, submit: []Job{job("o", 0, 2000, gi, time.Second)},
				want: []string{"throttle t 1000m", "start o"}},
			{at: 2 * time.Second, observe: 10 * time.Millisecond, want: nil},
			{at: 3 * time.Second, finish: []string{"o"}, want: []string{"unthrottle t 1500m"}},
			{at: 4 * time.Second, observe: 10 * time.Millisecond, want: []string{"unthrottle t 1750m"}},
			{at: 5 * time.Second, observe: 10 * time.Millisecond, want: []string{"unthrottle t 1875m"}},
			{at: 6 * time.Second, observe: 10 * time.Millisecond, want: []string{"unthrottle t 1937m"}},
			{at: 7 * time.Second, observe: 10 * time.Millisecond, want: []string{"unthrottle t 2000m"}},
			{at: 8 * time.Second, observe: 200 * time.Millisecond, want: []string{"throttle t 1000m"}},
		}},
		{"no throttling without a target", noTarget, []round{
			{submit: []Job{training("t", 0, 2000, gi, 0)}, observe: time.Hour, want: []string{"start t"}},
			{at: time.Second, submit: []Job{training("t2", 0, 1000, gi, 0)}, observe: time.Hour,
				want: []string{"start t2"}},
		}},
		{"a job that can never fit is passed over", edge(), []round{
			{submit: []Job{job("huge", 9, 3500, gi, 0), job("o", 0, 1000, gi, 0)}, want: []string{"start o"}},
			{at: time.Hour, want: nil},
		}},
		{"submitting an ID again replaces it", edge(), []round{
			{submit: []Job{job("run", 0, 2000, gi, 0), job("a", 0, 2000, gi, 0), job("a", 0, 500, gi, 0)},
				want: []string{"start a", "start run"}},
		}},
		{"finishing a queued job drops it", edge(), []round{
			{submit: []Job{job("run", 0, 3000, gi, 0), job("x", 0, 500, gi, 0)}, want: []string{"start run"}},
			{at: time.Second, finish: []string{"x"}, want: nil},
			{at: 2 * time.Second, finish: []string{"run"}, want: nil},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { play(t, tc.cfg, tc.rounds) })
	}
}

func TestStartDecisions(t *testing.T) {
	s := New(edge())
	s.Submit(job("run", 0, 2000, 4*gi, 0))
	s.Schedule(t0)
	a := job("a", 2, 2000, 4*gi, 0)
	a.Min = Resources{MilliCPU: 500, Memory: 2 * gi}
	s.Submit(a)
	ds := s.Schedule(t0.Add(3 * time.Minute))
	if len(ds) != 1 {
		t.Fatalf("decisions %+v, want one", ds)
	}
	d := ds[0]
	if want := res(1000, 3*gi); d.Granted.MilliCPU != want.MilliCPU || d.Granted.Memory != want.Memory {
		t.Errorf("granted %v, want %v", d.Granted, want)
	}
	if want := "cpu 1 of 2 asked, memory 3Gi of 4Gi asked"; d.Adapted != want {
		t.Errorf("adapted %q, want %q", d.Adapted, want)
	}
	if want := "priority 5 (2, aged 3)"; d.Reason != want {
		t.Errorf("reason %q, want %q", d.Reason, want)
	}
	if f := s.Free(); f.MilliCPU != 0 || f.Memory != 0 {
		t.Errorf("free %v, want nothing", f)
	}
	run := s.Running()
	if len(run) != 2 || run[0].Job.ID != "a" || run[1].Job.ID != "run" || !run[0].Started.Equal(t0.Add(3*time.Minute)) {
		t.Errorf("running %+v", run)
	}
	// A full grant says nothing of adaptation.
	s.Finish("a")
	s.Finish("run")
	s.Submit(a)
	if ds := s.Schedule(t0.Add(4 * time.Minute)); len(ds) != 1 || ds[0].Adapted != "" || ds[0].Granted.Memory != 4*gi {
		t.Errorf("full start: %+v", ds)
	}
}

func TestPreemptDecision(t *testing.T) {
	s := New(edge())
	s.Submit(training("t", 1, 3000, 2*gi, 0))
	s.Schedule(t0)
	s.Submit(job("hi", 4, 3000, gi, 0))
	ds := s.Schedule(t0.Add(time.Second))
	if len(ds) != 2 {
		t.Fatalf("decisions %+v", ds)
	}
	if d := ds[0]; d.Action != Preempt || d.JobID != "t" || d.For != "hi" || d.Granted.MilliCPU != 3000 ||
		!strings.Contains(d.Reason, "hi") {
		t.Errorf("preempt decision %+v", d)
	}
	if run := s.Running(); len(run) != 1 || run[0].Job.ID != "hi" {
		t.Errorf("running %+v, want hi alone", run)
	}
}

func TestThrottledAccessors(t *testing.T) {
	s := New(edge())
	s.Submit(training("t", 0, 2000, gi, 0))
	s.Schedule(t0)
	s.ObserveServing(time.Second)
	if !s.Throttling() {
		t.Fatal("not throttling over target")
	}
	ds := s.Schedule(t0.Add(time.Second))
	if len(ds) != 1 || ds[0].Adapted != "cpu 1 of 2 granted" {
		t.Fatalf("decisions %+v", ds)
	}
	run := s.Running()
	if len(run) != 1 || !run[0].Throttled || run[0].Granted.MilliCPU != 1000 {
		t.Errorf("running %+v", run)
	}
	if f := s.Free(); f.MilliCPU != 2000 {
		t.Errorf("free cpu %d, want 2000: throttled CPU goes back to the pool", f.MilliCPU)
	}
}

func TestFits(t *testing.T) {
	s := New(edge())
	tests := []struct {
		r    Resources
		want bool
	}{
		{res(3000, 7*gi), true},
		{res(3001, gi), false},
		{res(100, 7*gi+1), false},
		{Resources{MilliCPU: 100, Accelerators: map[string]int64{gpu: 1}}, true},
		{Resources{MilliCPU: 100, Accelerators: map[string]int64{gpu: 2}}, false},
		{Resources{MilliCPU: 100, Accelerators: map[string]int64{"amd.com/gpu": 1}}, false},
	}
	for _, tc := range tests {
		if got := s.Fits(tc.r); got != tc.want {
			t.Errorf("Fits(%v) = %v, want %v", tc.r, got, tc.want)
		}
	}
	j := job("j", 0, 4000, gi, 0)
	if s.CanRun(j) {
		t.Error("CanRun of 4 cores on 3")
	}
	j.Min = res(2000, 0)
	if !s.CanRun(j) {
		t.Error("not CanRun of 4 cores, min 2, on 3")
	}
}

func TestQueuedOrder(t *testing.T) {
	s := New(edge())
	s.Submit(job("c", 0, 100, 0, time.Minute))
	s.Submit(job("b", 1, 100, 0, time.Minute))
	s.Submit(job("a", 0, 100, 0, 0))
	var got []string
	for _, j := range s.Queued(t0.Add(time.Minute)) {
		got = append(got, j.ID)
	}
	// a has aged one: a (1, earliest), b (1), c (0).
	if want := []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("queued %q, want %q", got, want)
	}
	if p := s.EffectivePriority(job("x", 3, 0, 0, 0), t0.Add(150*time.Second)); p != 5 {
		t.Errorf("effective priority %d, want 5", p)
	}
}

func TestWake(t *testing.T) {
	s := New(edge())
	if _, ok := s.Wake(t0); ok {
		t.Error("Wake with an empty queue")
	}
	s.Submit(job("a", 0, 100, 0, 30*time.Second))
	tests := []struct {
		now, want time.Duration
	}{
		{30 * time.Second, 90 * time.Second},
		{90 * time.Second, 150 * time.Second},
		{270 * time.Second, 330 * time.Second}, // the reservation, at 5m30s, and an aging step
		{331 * time.Second, 390 * time.Second},
	}
	for _, tc := range tests {
		got, ok := s.Wake(t0.Add(tc.now))
		if !ok || !got.Equal(t0.Add(tc.want)) {
			t.Errorf("Wake(%v) = %v, %v; want %v", tc.now, got.Sub(t0), ok, tc.want)
		}
	}
	c := edge()
	c.Aging = 0
	s = New(c)
	s.Submit(job("a", 0, 100, 0, 0))
	if got, ok := s.Wake(t0.Add(time.Minute)); !ok || !got.Equal(t0.Add(5*time.Minute)) {
		t.Errorf("Wake without aging = %v, %v; want the reservation at 5m", got.Sub(t0), ok)
	}
}

func TestResourcesString(t *testing.T) {
	tests := []struct {
		r    Resources
		want string
	}{
		{res(500, 256*mi), "cpu 500m, memory 256Mi"},
		{res(2000, 3*gi/2), "cpu 2, memory 1536Mi"},
		{Resources{Accelerators: map[string]int64{gpu: 2, "a.com/tpu": 1, "z": 0}}, "cpu 0, memory 0, a.com/tpu 1, nvidia.com/gpu 2"},
	}
	for _, tc := range tests {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestSubmitCopies(t *testing.T) {
	s := New(edge())
	j := job("a", 0, 100, mi, 0)
	j.Request.Accelerators = map[string]int64{gpu: 1}
	s.Submit(j)
	j.Request.Accelerators[gpu] = 5
	if ds := s.Schedule(t0); len(ds) != 1 || ds[0].Granted.Accelerators[gpu] != 1 {
		t.Errorf("decisions %+v: the job was not copied on Submit", ds)
	}
}
