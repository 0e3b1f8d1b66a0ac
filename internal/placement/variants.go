package placement

import (
	"strconv"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/variant"
)

// VariantChoice is the variant of its version a deployment sends one cluster.
type VariantChoice struct {
	// Name is the variant's name, variant.Original for the full model.
	Name string
	// SizeBytes is its size.
	SizeBytes int64
	// Reason says why, for the cluster's status row.
	Reason string
}

// ClusterFacts is what the variant policy knows of c: its memory (the
// operator's declared spec.capacity.memory, else what its agent measured),
// CPU, accelerators and the estimated bandwidth of its link. A fact the
// cluster does not report is zero, which no limit holds against it.
func ClusterFacts(c *v1alpha1.Cluster) variant.Facts {
	var f variant.Facts
	capa := c.Status.Capacity
	if sc := c.Spec.Capacity; sc != nil {
		if sc.Memory != nil {
			capa.Memory = sc.Memory
		}
		if sc.CPU != nil {
			capa.CPU = sc.CPU
		}
		if len(sc.Accelerators) > 0 {
			capa.Accelerators = sc.Accelerators
		}
	}
	if capa.Memory != nil {
		f.MemoryBytes = max(capa.Memory.Value(), 0)
	}
	if capa.CPU != nil {
		f.CPUMillis = max(capa.CPU.MilliValue(), 0)
	}
	for _, a := range capa.Accelerators {
		f.Accelerators += max(a.Count, 0)
	}
	f.LinkBps = max(c.Status.Link.BandwidthBps, 0)
	return f
}

// PolicyLimits turns a deployment's variant policy into the limits of variant.Choose.
func PolicyLimits(p *v1alpha1.VariantPolicy) variant.Limits {
	if p == nil {
		return variant.Limits{}
	}
	l := variant.Limits{Allowed: p.Allowed, MaxMemoryPercent: p.MaxMemoryPercent, Prefer: variant.Prefer(p.Prefer)}
	if p.MaxFetchTime != nil {
		l.MaxFetchTime = p.MaxFetchTime.Duration
	}
	return l
}

// candidates are the original model of a version (its digest and size) and
// the version's variants vs, as variant.Choose takes them. A variant named
// variant.Original is left out (the original is the version itself), and an
// accuracy that is not a decimal in [0, 1] counts as not measured.
func candidates(digest string, size int64, vs []v1alpha1.ModelVariant) []variant.Candidate {
	out := make([]variant.Candidate, 0, len(vs)+1)
	out = append(out, variant.Candidate{Name: variant.Original, Digest: digest, SizeBytes: size})
	for _, v := range vs {
		if v.Name == variant.Original {
			continue
		}
		c := variant.Candidate{Name: v.Name, Digest: v.Digest, SizeBytes: v.SizeBytes, PeakMemoryBytes: v.PeakMemoryBytes}
		if a, err := strconv.ParseFloat(v.Accuracy, 64); err == nil && a >= 0 && a <= 1 {
			c.Accuracy = &a
		}
		out = append(out, c)
	}
	return out
}

// ChooseVariant picks the variant of m's version (its digest and size, and
// vs) that a cluster with facts gets under the variant policy p, and sets
// m's digest, size and variant to it. Without a policy and without variants
// it changes nothing and returns false. The hub calls it with the facts of
// each Cluster (ClusterFacts); an agent in a KubeStellar WEC with its own.
func ChooseVariant(p *v1alpha1.VariantPolicy, facts variant.Facts, m *v1alpha1.DesiredModel, vs []v1alpha1.ModelVariant) (VariantChoice, bool) {
	if p == nil && len(vs) == 0 {
		return VariantChoice{}, false
	}
	ch, ok := variant.Choose(facts, candidates(m.Digest, m.SizeBytes, vs), PolicyLimits(p))
	if !ok {
		return VariantChoice{}, false
	}
	if ch.Candidate.Name != variant.Original {
		m.Digest, m.SizeBytes, m.Variant = ch.Candidate.Digest, ch.Candidate.SizeBytes, ch.Candidate.Name
	}
	return VariantChoice{Name: ch.Candidate.Name, SizeBytes: ch.Candidate.SizeBytes, Reason: ch.Reason}, true
}

// chooseVariant is ChooseVariant for d's policy and the facts of c (none
// when c is nil).
func chooseVariant(d *v1alpha1.ModelDeployment, c *v1alpha1.Cluster, m *v1alpha1.DesiredModel, vs []v1alpha1.ModelVariant) (VariantChoice, bool) {
	var facts variant.Facts
	if c != nil {
		facts = ClusterFacts(c)
	}
	return ChooseVariant(d.Spec.VariantPolicy, facts, m, vs)
}

// FactsMoved reports whether a cluster's facts changed enough, from a to b,
// to choose its variants again: its memory changed, or its link rate became
// known or unknown, or moved by half or more. Smaller moves of the link
// estimate, which wobbles, do not: a choice does not flap with them.
func FactsMoved(a, b variant.Facts) bool {
	if a.MemoryBytes != b.MemoryBytes || (a.LinkBps == 0) != (b.LinkBps == 0) {
		return true
	}
	return a.LinkBps > 0 && (b.LinkBps >= 2*a.LinkBps || 2*b.LinkBps <= a.LinkBps)
}
