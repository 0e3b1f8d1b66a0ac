package fl

import (
	"fmt"
	"math"
	"time"
)

// planCohort chooses the members' local steps and encodings (see Choose):
// in synchronous rounds, to fill the time the round lasts anyway.
func (c *Coordinator) planCohort(members []string) map[string]Plan {
	spec := c.st.Spec
	shape := Shape(c.st.Model.Weights)
	var round time.Duration
	if c.sync() {
		var facts []ClusterFacts
		for _, m := range members {
			facts = append(facts, c.st.Clusters[m].Facts)
		}
		round = RoundTime(spec, facts, shape)
	}
	out := map[string]Plan{}
	for _, m := range members {
		out[m] = Choose(m, spec, c.st.Clusters[m].Facts, shape, round)
	}
	return out
}

// cost is what a cluster's upload and base local work take.
type cost struct {
	enc            Encoding
	bytes          int
	upload         float64 // seconds
	base           int     // steps of LocalEpochs over the local data
	stepTime       float64 // seconds a step takes (0: unknown)
	link, deadline string
}

func costOf(spec JobSpec, f ClusterFacts, shape []int) cost {
	params := 0
	for _, l := range shape {
		params += l
	}
	bytesOf := func(e Encoding) int {
		if e == Int8 {
			return params + 4*len(shape)
		}
		return 4 * params
	}
	dl := spec.RoundDeadline.Seconds()
	upload := func(e Encoding) float64 {
		if f.BandwidthBps <= 0 {
			return 0
		}
		return 8 * float64(bytesOf(e)) / f.BandwidthBps
	}
	enc := spec.Encoding
	switch {
	case spec.SecAgg != nil:
		enc = Float32
	case enc == Auto && upload(Float32) <= dl/4:
		enc = Float32
	case enc == Auto:
		enc = Int8
	}
	c := cost{enc: enc, bytes: bytesOf(enc), upload: upload(enc)}
	c.link = "link speed unknown"
	if f.BandwidthBps > 0 {
		c.link = fmt.Sprintf("%.1f Mbit/s link sends %.2f MB in %.1f s of the %v deadline", f.BandwidthBps/1e6, float64(c.bytes)/1e6, c.upload, spec.RoundDeadline)
	}
	batch := float64(max(spec.BatchSize, 1))
	c.base = spec.LocalEpochs * max(1, int(math.Ceil(float64(max(f.Samples, 1))/batch)))
	if f.SamplesPerSec > 0 {
		c.stepTime = batch / f.SamplesPerSec
	}
	return c
}

// count is "1 epoch", "2 epochs".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// maxFill bounds the local steps a cluster adds to fill a round's wait,
// in multiples of its epochs' steps: FedNova scales an update of τ_i steps
// by τ_eff/τ_i, and when the step counts of a round differ too much the
// few-step updates are extrapolated so far that training diverges
// (measured: 57 steps against 7 on a 784-16-10 MLP did).
const maxFill = 3

// RoundTime is how long a synchronous round of clusters with these facts
// lasts at the least: its slowest member's base local work and upload,
// at most 80% of the deadline.
func RoundTime(spec JobSpec, facts []ClusterFacts, shape []int) time.Duration {
	var r float64
	for _, f := range facts {
		c := costOf(spec, f, shape)
		r = max(r, float64(c.base)*c.stepTime+c.upload)
	}
	r = min(r, 0.8*spec.RoundDeadline.Seconds())
	return time.Duration(r * float64(time.Second))
}

// Choose is the adaptive choice of local work and encoding for a cluster
// with facts f, for a model of the given tensor lengths:
//
//   - Encoding (spec.Encoding Auto): float32 when its upload takes at most a
//     quarter of the round deadline at the cluster's bandwidth, else int8
//     (about a quarter of the bytes). Secure aggregation always sends
//     32-bit ring elements.
//   - Local steps (spec.Adaptive): at least the steps of LocalEpochs over
//     the local data. In a synchronous round, which lasts round (RoundTime:
//     until its slowest member's upload is in), a cluster that would
//     otherwise wait trains on until its own upload must start (at most
//     maxFill times its epochs' steps); in FedBuff
//     (round 0), a cluster whose upload takes longer than that training
//     trains as long as the upload takes, so a thin link carries fewer
//     uploads for the same training. Either way no more steps than fit,
//     with the upload, in 80% of the deadline and of the online window.
//     Updates of different step counts are normalised as FedNova does
//     (NovaCoefficients), so the aggregate stays unbiased.
//
// Without adaptation the steps are 0 (LocalEpochs over the data).
func Choose(name string, spec JobSpec, f ClusterFacts, shape []int, round time.Duration) Plan {
	c := costOf(spec, f, shape)
	if !spec.Adaptive {
		return Plan{Cluster: name, LocalSteps: 0, Encoding: c.enc, Reason: fmt.Sprintf("%s: %s, %s: %s", name, count(spec.LocalEpochs, "local epoch"), c.enc, c.link)}
	}
	if c.stepTime == 0 {
		return Plan{Cluster: name, LocalSteps: c.base, Encoding: c.enc, Reason: fmt.Sprintf("%s: %d local steps, %s: training speed unknown; %s", name, c.base, c.enc, c.link)}
	}
	steps, why := c.base, fmt.Sprintf("%s of %d samples", count(spec.LocalEpochs, "epoch"), f.Samples)
	switch fill := int(math.Floor((round.Seconds() - c.upload) / c.stepTime)); {
	case round > 0 && fill > c.base:
		steps = min(fill, maxFill*c.base)
		why = fmt.Sprintf("trains (%.0f samples/s) until its upload must start to end with the round's slowest, %.1f s", f.SamplesPerSec, round.Seconds())
		if fill > maxFill*c.base {
			why = fmt.Sprintf("trains (%.0f samples/s) %d times its epochs' steps while the round's slowest, %.1f s, goes on", f.SamplesPerSec, maxFill, round.Seconds())
		}
	case round == 0 && c.upload > float64(c.base)*c.stepTime:
		steps = int(math.Ceil(c.upload / c.stepTime))
		why = fmt.Sprintf("as many steps as train (%.0f samples/s) while the update uploads", f.SamplesPerSec)
	}
	budget := 0.8*spec.RoundDeadline.Seconds() - c.upload
	if w := f.OnlineFor.Seconds(); w > 0 {
		budget = min(budget, 0.8*w-c.upload)
	}
	if fit := int(math.Floor(budget / c.stepTime)); steps > fit {
		steps = max(fit, 1)
		why = fmt.Sprintf("the most steps that train (%.0f samples/s) and upload within the deadline", f.SamplesPerSec)
		if fit < 1 {
			why = "the upload alone overruns the deadline: one step"
		}
	}
	return Plan{Cluster: name, LocalSteps: steps, Encoding: c.enc, Reason: fmt.Sprintf("%s: %d local steps, %s: %s; %s", name, steps, c.enc, c.link, why)}
}
