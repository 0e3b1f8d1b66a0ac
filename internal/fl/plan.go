package fl

import (
	"fmt"
	"math"
	"time"

	"outpost.dev/outpost/internal/secagg"
)

// planCohort chooses the members' local steps and encodings (see Choose):
// in synchronous rounds, to fill the time the round lasts anyway. A secure
// cohort's members share one ring, chosen first (ChooseRing), so that
// their uploads are costed at its width; its width is 0 for a plain one.
func (c *Coordinator) planCohort(members []string, n int, rng float64) (map[string]Plan, int, string) {
	spec := c.st.Spec
	shape := Shape(c.st.Model.Weights)
	var facts []ClusterFacts
	for _, m := range members {
		facts = append(facts, c.st.Clusters[m].Facts)
	}
	ring, why := ChooseRing(spec, members, facts, shape, n, rng)
	var round time.Duration
	if c.sync() {
		round = RoundTime(spec, facts, shape, ring)
	}
	out := map[string]Plan{}
	for i, m := range members {
		p := Choose(m, spec, facts[i], shape, round, ring)
		if ring > 0 {
			p.Reason += "; the cohort's " + why
		}
		out[m] = p
	}
	return out, ring, why
}

// minRingFracBits is the fewest fractional bits a 16-bit ring must leave
// its values for a secure cohort to use it rather than a 32-bit one. Its
// rounding, stochastic, adds to each value of the aggregate a zero-mean
// error of zero mean and a standard deviation of at most sqrt(n)/2 steps
// of 2^-8 the values' unit. The default range 4 leaves 8 bits to up to 16
// senders; with 4 senders of values up to 16 (8 bits) the secure
// simulations' accuracy stays within a point of a 32-bit ring's
// (TestNarrowRingAccuracy; measured there: 6 bits too). More senders or a
// wider range keep the 32-bit ring.
const minRingFracBits = 8

// ChooseRing chooses the ring a secure cohort of clusters (names, with
// facts) shares, for n senders of values up to rng: 16 bits (2 bytes a
// value) when the job's encoding is int8, or auto and some member's link
// would send int8 (see Choose), provided the sum of n values up to rng
// leaves at least minRingFracBits fractional bits in 16; else 32 (4 bytes
// a value). It returns the width and why; 0 and "" for a plain job.
func ChooseRing(spec JobSpec, names []string, facts []ClusterFacts, shape []int, n int, rng float64) (int, string) {
	if spec.SecAgg == nil {
		return 0, ""
	}
	var why string
	switch spec.Encoding {
	case Int8:
		why = "the job's encoding is int8"
	case Auto:
		for i, f := range facts {
			if c := costOf(spec, f, shape, 0); c.plain == Int8 {
				why = fmt.Sprintf("%s's %s", names[i], c.plainLink)
				break
			}
		}
		if why == "" {
			why = "32-bit ring: every member's link sends float32 within a quarter of the deadline"
			return 32, why
		}
	default:
		return 32, "32-bit ring: the job's encoding is float32"
	}
	enc, err := secagg.NewEncoding(rng, n, 16)
	switch {
	case err != nil:
		return 32, fmt.Sprintf("32-bit ring: %s, but %v", why, err)
	case enc.FracBits < minRingFracBits:
		return 32, fmt.Sprintf("32-bit ring: %s, but %d clusters of values up to %v leave %d fractional bits in 16, fewer than %d",
			why, n, rng, enc.FracBits, minRingFracBits)
	}
	return 16, fmt.Sprintf("16-bit ring (%d fractional bits for %d clusters of values up to %v): %s", enc.FracBits, n, rng, why)
}

// cost is what a cluster's upload and base local work take.
type cost struct {
	enc   Encoding
	ring  int // a secure cohort's ring width (0: plain)
	bytes int
	// plain is the encoding the cluster's link would choose for a plain
	// update, and plainLink why, when the link chose int8.
	plain          Encoding
	plainLink      string
	upload         float64 // seconds
	base           int     // steps of LocalEpochs over the local data
	stepTime       float64 // seconds a step takes (0: unknown)
	link, deadline string
}

// costOf is a cluster's cost; ring is its secure cohort's ring width, 0
// while none is chosen (costed as 32).
func costOf(spec JobSpec, f ClusterFacts, shape []int, ring int) cost {
	params := 0
	for _, l := range shape {
		params += l
	}
	if spec.SecAgg != nil && ring == 0 {
		ring = 32
	}
	bytesOf := func(e Encoding) int {
		switch {
		case ring > 0:
			return ring / 8 * params
		case e == Int8:
			return params + 4*len(shape)
		}
		return 4 * params
	}
	plainBytes := func(e Encoding) int {
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
	linkOf := func(bytes int) string {
		if f.BandwidthBps <= 0 {
			return "link speed unknown"
		}
		return fmt.Sprintf("%.1f Mbit/s link sends %.2f MB in %.1f s of the %v deadline",
			f.BandwidthBps/1e6, float64(bytes)/1e6, 8*float64(bytes)/f.BandwidthBps, spec.RoundDeadline)
	}
	plain := spec.Encoding
	if plain == Auto {
		plain = Float32
		if f.BandwidthBps > 0 && 8*float64(plainBytes(Float32))/f.BandwidthBps > dl/4 {
			plain = Int8
		}
	}
	enc := plain
	if spec.SecAgg != nil {
		enc = Float32
	}
	c := cost{enc: enc, ring: ring, bytes: bytesOf(enc), upload: upload(enc), plain: plain}
	if spec.Encoding == Auto && plain == Int8 {
		b := plainBytes(Float32)
		c.plainLink = fmt.Sprintf("%.1f Mbit/s link would send int8: float32's %.2f MB take %.1f s, over a quarter of the %v deadline",
			f.BandwidthBps/1e6, float64(b)/1e6, 8*float64(b)/f.BandwidthBps, spec.RoundDeadline)
	}
	c.link = linkOf(c.bytes)
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
// (in a secure cohort, of ring bits) lasts at the least: its slowest
// member's base local work and upload, at most 80% of the deadline.
func RoundTime(spec JobSpec, facts []ClusterFacts, shape []int, ring int) time.Duration {
	var r float64
	for _, f := range facts {
		c := costOf(spec, f, shape, ring)
		r = max(r, float64(c.base)*c.stepTime+c.upload)
	}
	r = min(r, 0.8*spec.RoundDeadline.Seconds())
	return time.Duration(r * float64(time.Second))
}

// Choose is the adaptive choice of local work and encoding for a cluster
// with facts f, for a model of the given tensor lengths, in a secure
// cohort whose ring is ring bits wide (0: a plain job, or a secure
// cohort's ring not chosen yet, costed as 32):
//
//   - Encoding (spec.Encoding Auto): float32 when its upload takes at most a
//     quarter of the round deadline at the cluster's bandwidth, else int8
//     (about a quarter of the bytes). Secure aggregation sends its cohort's
//     ring elements instead (ring, from ChooseRing: 2 or 4 bytes a value).
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
func Choose(name string, spec JobSpec, f ClusterFacts, shape []int, round time.Duration, ring int) Plan {
	c := costOf(spec, f, shape, ring)
	what := string(c.enc)
	if c.ring > 0 {
		what = fmt.Sprintf("%d-bit ring", c.ring)
	}
	if !spec.Adaptive {
		return Plan{Cluster: name, LocalSteps: 0, Encoding: c.enc, Ring: c.ring, Reason: fmt.Sprintf("%s: %s, %s: %s", name, count(spec.LocalEpochs, "local epoch"), what, c.link)}
	}
	if c.stepTime == 0 {
		return Plan{Cluster: name, LocalSteps: c.base, Encoding: c.enc, Ring: c.ring, Reason: fmt.Sprintf("%s: %d local steps, %s: training speed unknown; %s", name, c.base, what, c.link)}
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
	return Plan{Cluster: name, LocalSteps: steps, Encoding: c.enc, Ring: c.ring, Reason: fmt.Sprintf("%s: %d local steps, %s: %s; %s", name, steps, what, c.link, why)}
}
