package schedule

import (
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// String writes r with Kubernetes quantities: "cpu 500m, memory 1Gi,
// nvidia.com/gpu 1". Accelerator types come in name order, and zero amounts
// of them are left out.
func (r Resources) String() string {
	parts := []string{"cpu " + cpuString(r.MilliCPU), "memory " + memString(r.Memory)}
	for _, k := range slices.Sorted(maps.Keys(r.Accelerators)) {
		if v := r.Accelerators[k]; v != 0 {
			parts = append(parts, k+" "+resource.NewQuantity(v, resource.DecimalSI).String())
		}
	}
	return strings.Join(parts, ", ")
}

func cpuString(m int64) string { return resource.NewMilliQuantity(m, resource.DecimalSI).String() }

func memString(b int64) string { return resource.NewQuantity(b, resource.BinarySI).String() }

// clone returns r with its own Accelerators map, negative amounts as zero.
func (r Resources) clone() Resources {
	c := Resources{MilliCPU: max(r.MilliCPU, 0), Memory: max(r.Memory, 0)}
	for k, v := range r.Accelerators {
		if v > 0 {
			if c.Accelerators == nil {
				c.Accelerators = map[string]int64{}
			}
			c.Accelerators[k] = v
		}
	}
	return c
}

// combine applies f to each amount of a and b, accelerators of either.
func combine(a, b Resources, f func(x, y int64) int64) Resources {
	r := Resources{MilliCPU: f(a.MilliCPU, b.MilliCPU), Memory: f(a.Memory, b.Memory)}
	set := func(k string, v int64) {
		if v == 0 {
			return
		}
		if r.Accelerators == nil {
			r.Accelerators = map[string]int64{}
		}
		r.Accelerators[k] = v
	}
	for k, v := range a.Accelerators {
		set(k, f(v, b.Accelerators[k]))
	}
	for k, v := range b.Accelerators {
		if _, ok := a.Accelerators[k]; !ok {
			set(k, f(0, v))
		}
	}
	return r
}

func add(a, b Resources) Resources { return combine(a, b, func(x, y int64) int64 { return x + y }) }

func sub(a, b Resources) Resources { return combine(a, b, func(x, y int64) int64 { return x - y }) }

// lower returns the smaller of a and b in each amount.
func lower(a, b Resources) Resources {
	return combine(a, b, func(x, y int64) int64 { return min(x, y) })
}

// reserve returns a less b, no amount below zero: what is left for others
// once b is set aside.
func reserve(a, b Resources) Resources {
	return combine(a, b, func(x, y int64) int64 { return max(x-y, 0) })
}

// le reports whether a is at most b in every amount.
func le(a, b Resources) bool {
	if a.MilliCPU > b.MilliCPU || a.Memory > b.Memory {
		return false
	}
	for k, v := range a.Accelerators {
		if v > b.Accelerators[k] {
			return false
		}
	}
	for k, v := range b.Accelerators {
		if _, ok := a.Accelerators[k]; !ok && v < 0 {
			return false
		}
	}
	return true
}

// minimum returns the least j can start with: Min where it is set (above
// zero, below Request), Request elsewhere.
func minimum(j Job) Resources {
	lo := func(min, req int64) int64 {
		if min > 0 && min < req {
			return min
		}
		return req
	}
	m := Resources{MilliCPU: lo(j.Min.MilliCPU, j.Request.MilliCPU), Memory: lo(j.Min.Memory, j.Request.Memory)}
	for k, v := range j.Request.Accelerators {
		if m.Accelerators == nil {
			m.Accelerators = map[string]int64{}
		}
		m.Accelerators[k] = lo(j.Min.Accelerators[k], v)
	}
	return m
}

// adapted says how g falls short of what j asked, empty when it does not:
// "cpu 500m of 2 asked, memory 256Mi of 1Gi asked".
func adapted(j Job, g Resources) string {
	var parts []string
	if g.MilliCPU < j.Request.MilliCPU {
		parts = append(parts, "cpu "+cpuString(g.MilliCPU)+" of "+cpuString(j.Request.MilliCPU)+" asked")
	}
	if g.Memory < j.Request.Memory {
		parts = append(parts, "memory "+memString(g.Memory)+" of "+memString(j.Request.Memory)+" asked")
	}
	for _, k := range slices.Sorted(maps.Keys(j.Request.Accelerators)) {
		if v := j.Request.Accelerators[k]; g.Accelerators[k] < v {
			q := func(n int64) string { return resource.NewQuantity(n, resource.DecimalSI).String() }
			parts = append(parts, k+" "+q(g.Accelerators[k])+" of "+q(v)+" asked")
		}
	}
	return strings.Join(parts, ", ")
}
