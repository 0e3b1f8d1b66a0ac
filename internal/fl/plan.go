package fl

import (
	"fmt"
	"math"
)

// plan chooses cluster name's local steps and encoding from its facts.
func (c *Coordinator) plan(name string) Plan {
	spec := c.st.Spec
	f := c.st.Clusters[name].Facts
	return Choose(name, spec, f, Shape(c.st.Model.Weights))
}

// Choose is the adaptive choice of local work and encoding for a cluster
// with facts f, for a model of the given tensor lengths:
//
//   - Encoding (spec.Encoding Auto): float32 when its upload takes at most a
//     quarter of the round deadline at the cluster's bandwidth, else int8
//     (about a quarter of the bytes). Secure aggregation always sends
//     32-bit ring elements.
//   - Local steps (spec.Adaptive): the steps of LocalEpochs over the local
//     data, or, behind a link whose upload takes longer than that
//     training, as many steps as train for the upload's duration (so a
//     thin link carries fewer uploads for the same training); in either
//     case no more than fit, with the upload, in 80% of the deadline and of
//     the cluster's online window. Updates of different step counts are
//     normalised as FedNova does (NovaCoefficients).
//
// Without adaptation the steps are 0 (LocalEpochs over the data).
func Choose(name string, spec JobSpec, f ClusterFacts, shape []int) Plan {
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
	deadline := spec.RoundDeadline.Seconds()
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
	case enc == Auto && upload(Float32) <= deadline/4:
		enc = Float32
	case enc == Auto:
		enc = Int8
	}
	up := upload(enc)
	link := "link speed unknown"
	if f.BandwidthBps > 0 {
		link = fmt.Sprintf("%.1f Mbit/s link sends %.2f MB in %.1f s of the %v deadline", f.BandwidthBps/1e6, float64(bytesOf(enc))/1e6, up, spec.RoundDeadline)
	}
	if !spec.Adaptive {
		return Plan{Cluster: name, LocalSteps: 0, Encoding: enc, Reason: fmt.Sprintf("%s: %d local epochs, %s: %s", name, spec.LocalEpochs, enc, link)}
	}
	batch := float64(max(spec.BatchSize, 1))
	base := spec.LocalEpochs * max(1, int(math.Ceil(float64(max(f.Samples, 1))/batch)))
	if f.SamplesPerSec <= 0 {
		return Plan{Cluster: name, LocalSteps: base, Encoding: enc, Reason: fmt.Sprintf("%s: %d local steps, %s: training speed unknown; %s", name, base, enc, link)}
	}
	stepTime := batch / f.SamplesPerSec
	steps, why := base, fmt.Sprintf("%d epochs of %d samples", spec.LocalEpochs, f.Samples)
	if up > float64(base)*stepTime {
		steps = int(math.Ceil(up / stepTime))
		why = fmt.Sprintf("as many steps as train (%.0f samples/s) while the update uploads", f.SamplesPerSec)
	}
	budget := 0.8*deadline - up
	if w := f.OnlineFor.Seconds(); w > 0 {
		budget = min(budget, 0.8*w-up)
	}
	if fit := int(math.Floor(budget / stepTime)); steps > fit {
		steps = max(fit, 1)
		why = fmt.Sprintf("the most steps that train (%.0f samples/s) and upload within the deadline", f.SamplesPerSec)
		if fit < 1 {
			why = "the upload alone overruns the deadline: one step"
		}
	}
	return Plan{Cluster: name, LocalSteps: steps, Encoding: enc, Reason: fmt.Sprintf("%s: %d local steps, %s: %s; %s", name, steps, enc, link, why)}
}
