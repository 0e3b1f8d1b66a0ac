package fl

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"outpost.dev/outpost/internal/train"
)

// SimClient is one simulated cluster.
type SimClient struct {
	Name  string
	Train train.Dataset
	Val   train.Dataset // optional
	// Facts are reported at the start; SamplesPerSec and BandwidthBps also
	// set how long the client's training and uploads take in simulated
	// time.
	Facts ClusterFacts
	// Fail, when set, makes the client send nothing for an assignment it
	// returns true for (a dropout).
	Fail func(a Assignment) bool
}

// SimConfig is a simulation: an in-process coordinator and clients whose
// reports travel with simulated delays.
type SimConfig struct {
	Spec    JobSpec
	Initial [][]float32 // nil: InitialWeights(Spec.Model, Spec.Seed)
	Clients []SimClient
	// Test, when set, measures every published model's accuracy; Target
	// stops the simulation once a model reaches it (0: run the job out).
	Test   train.Dataset
	Target float64
	Start  time.Time
	// Latency is added to every report's delivery (default 50 ms);
	// MaxTime bounds simulated time (default 24 h).
	Latency time.Duration
	MaxTime time.Duration
	// Rand supplies the clients' and the coordinator's randomness
	// (default crypto/rand.Reader).
	Rand io.Reader
	// Restart, when set, replaces the coordinator with one restored from
	// its JSON-encoded snapshot after every step that produced output, as
	// a hub that persists its state and is killed would.
	Restart bool
	// OnStep, when set, sees the coordinator after every step.
	OnStep func(now time.Time, c *Coordinator)
}

// SimPoint is a published model's measure.
type SimPoint struct {
	Round       int           `json:"round"`
	Time        time.Duration `json:"time"` // since Start
	Accuracy    float64       `json:"accuracy"`
	UploadBytes int64         `json:"uploadBytes"` // sent by clients so far
}

// SimResult is what a simulation did.
type SimResult struct {
	Model  GlobalModel
	Status Status
	Points []SimPoint
	// UploadBytes counts every report's payload (PayloadSize).
	UploadBytes int64
	// Elapsed is the simulated time; Reached when Target was first
	// reached (0: never).
	Elapsed, Reached time.Duration
	// Refused counts reports the coordinator refused (late ones, mostly).
	Refused int
	Events  []Event
}

// PayloadSize is the size in bytes of what a report carries: update
// values, keys, encrypted shares, masked ring elements, revealed shares.
func (r Report) PayloadSize() int {
	n := 0
	if r.Update != nil {
		n += r.Update.Delta.Size()
	}
	if r.Keys != nil {
		n += len(r.Keys.C) + len(r.Keys.S)
	}
	for _, s := range r.Shares {
		n += len(s.Box) + 4
	}
	if r.Masked != nil {
		n += r.Masked.Y.Size()
	}
	for _, rv := range r.Reveals {
		n += len(rv.Y) + 5
	}
	return n
}

type delivery struct {
	at  time.Time
	seq int
	r   Report
}

type queue []delivery

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(delivery)) }
func (q *queue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// Simulate runs a job to its end (or to Target, or MaxTime) with
// in-process clients that train for real and a simulated clock: a
// client's training takes steps × batch / SamplesPerSec, its uploads
// bytes × 8 / BandwidthBps, one after the other on its link.
func Simulate(ctx context.Context, cfg SimConfig) (SimResult, error) {
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if cfg.Latency == 0 {
		cfg.Latency = 50 * time.Millisecond
	}
	if cfg.MaxTime == 0 {
		cfg.MaxTime = 24 * time.Hour
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	spec := cfg.Spec
	if err := spec.Validate(); err != nil {
		return SimResult{}, err
	}
	init := cfg.Initial
	if init == nil {
		var err error
		if init, err = InitialWeights(spec.Model, spec.Seed); err != nil {
			return SimResult{}, err
		}
	}
	now := cfg.Start
	c, out, err := New(spec, init, now)
	if err != nil {
		return SimResult{}, err
	}
	c.SetNoiseSource(cfg.Rand)
	var (
		res     SimResult
		q       queue
		seq     int
		models  = map[int]GlobalModel{}
		clients = map[string]*Client{}
		byName  = map[string]*SimClient{}
		busy    = map[string]time.Time{}
	)
	for i := range cfg.Clients {
		sc := &cfg.Clients[i]
		if _, dup := byName[sc.Name]; dup {
			return SimResult{}, fmt.Errorf("fl: two simulated clients named %q", sc.Name)
		}
		byName[sc.Name] = sc
		clients[sc.Name] = NewClient(sc.Name, cfg.Rand)
	}
	send := func(r Report, compute time.Duration) {
		sc := byName[r.Cluster]
		start := now
		if b := busy[r.Cluster]; b.After(start) {
			start = b
		}
		bytes := r.PayloadSize()
		res.UploadBytes += int64(bytes)
		up := time.Duration(0)
		if sc.Facts.BandwidthBps > 0 {
			up = time.Duration(float64(bytes) * 8 / sc.Facts.BandwidthBps * float64(time.Second))
		}
		done := start.Add(compute + up)
		busy[r.Cluster] = done
		seq++
		heap.Push(&q, delivery{at: done.Add(cfg.Latency), seq: seq, r: r})
	}
	var apply func(o Output) error
	apply = func(o Output) error {
		res.Events = append(res.Events, o.Events...)
		if g := o.Published; g != nil {
			models[g.Ref.Round] = *g
			if cfg.Test != nil {
				l, _, err := NewLearner(spec.Model, g.Weights, 1)
				if err != nil {
					return err
				}
				acc, err := l.Evaluate(cfg.Test)
				if err != nil {
					return err
				}
				res.Points = append(res.Points, SimPoint{Round: g.Ref.Round, Time: now.Sub(cfg.Start), Accuracy: acc, UploadBytes: res.UploadBytes})
				if cfg.Target > 0 && acc >= cfg.Target && res.Reached == 0 {
					res.Reached = now.Sub(cfg.Start)
				}
			}
		}
		for _, a := range o.Assignments {
			sc := byName[a.Cluster]
			if sc == nil {
				continue
			}
			if sc.Fail != nil && a.Phase != Idle && sc.Fail(a) {
				continue
			}
			g, ok := models[a.Model.Round]
			if !ok && (a.Phase == Train || a.Phase == Mask) {
				return fmt.Errorf("fl: simulation: assignment names model %d, never published", a.Model.Round)
			}
			reports, err := clients[a.Cluster].Handle(ctx, a, g, sc.Train, sc.Val)
			if err != nil {
				// A client that cannot act drops out, as a real one would.
				continue
			}
			for _, r := range reports {
				var compute time.Duration
				steps := 0
				switch {
				case r.Update != nil:
					steps = r.Update.LocalSteps
				case r.Masked != nil:
					steps = r.Masked.LocalSteps
				}
				if steps > 0 && sc.Facts.SamplesPerSec > 0 {
					compute = time.Duration(float64(steps*max(a.BatchSize, 1)) / sc.Facts.SamplesPerSec * float64(time.Second))
				}
				send(r, compute)
			}
		}
		return nil
	}
	step := func(o Output) error {
		if err := apply(o); err != nil {
			return err
		}
		if cfg.Restart && (len(o.Assignments) > 0 || o.Published != nil || len(o.Events) > 0) {
			b, err := json.Marshal(c.Snapshot())
			if err != nil {
				return err
			}
			var s Snapshot
			if err := json.Unmarshal(b, &s); err != nil {
				return err
			}
			if c, err = Restore(s); err != nil {
				return err
			}
			c.SetNoiseSource(cfg.Rand)
		}
		if cfg.OnStep != nil {
			cfg.OnStep(now, c)
		}
		return nil
	}
	if err := step(out); err != nil {
		return res, err
	}
	for _, sc := range cfg.Clients {
		f := sc.Facts
		o, err := c.Handle(now, Report{Job: spec.Job, Cluster: sc.Name, Kind: KindFacts, Facts: &f})
		if err != nil {
			return res, err
		}
		if err := step(o); err != nil {
			return res, err
		}
	}
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		st := c.Status()
		if st.State == Done || st.State == Failed || (cfg.Target > 0 && res.Reached > 0) {
			break
		}
		next := c.NextDeadline()
		fromQueue := len(q) > 0 && (next.IsZero() || !q[0].at.After(next))
		if fromQueue {
			next = q[0].at
		}
		if next.IsZero() {
			break // nothing in flight, nothing waiting on time
		}
		if next.Sub(cfg.Start) > cfg.MaxTime {
			break
		}
		if next.After(now) {
			now = next
		}
		var o Output
		if fromQueue {
			d := heap.Pop(&q).(delivery)
			var err error
			if o, err = c.Handle(now, d.r); err != nil {
				if !errors.Is(err, ErrRefused) {
					return res, err
				}
				res.Refused++
				continue
			}
		} else {
			o = c.Tick(now)
		}
		if err := step(o); err != nil {
			return res, err
		}
	}
	res.Model, res.Status, res.Elapsed = c.Global(), c.Status(), now.Sub(cfg.Start)
	return res, nil
}
