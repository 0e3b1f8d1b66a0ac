package pipeline

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/schedule"
)

// Default requests of a step that says nothing of its resources.
var (
	DefaultCPU    = resource.MustParse("100m")
	DefaultMemory = resource.MustParse("64Mi")
)

// DetectCapacity returns this machine's cores and memory (MemTotal of
// /proc/meminfo; 0 where it cannot be read).
func DetectCapacity() schedule.Resources {
	r := schedule.Resources{MilliCPU: int64(runtime.NumCPU()) * 1000}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) >= 2 && f[0] == "MemTotal:" {
				if n, err := strconv.ParseInt(f[1], 10, 64); err == nil && n > 0 {
					r.Memory = n << 10
				}
				break
			}
		}
	}
	return r
}

// request is what step st asks for, defaults filled.
func request(st *v1alpha1.PipelineStep) schedule.Resources {
	cpu, mem := DefaultCPU, DefaultMemory
	if st.Resources.CPU != nil {
		cpu = *st.Resources.CPU
	}
	if st.Resources.Memory != nil {
		mem = *st.Resources.Memory
	}
	r := schedule.Resources{MilliCPU: cpu.MilliValue(), Memory: mem.Value()}
	for _, a := range st.Resources.Accelerators {
		if r.Accelerators == nil {
			r.Accelerators = map[string]int64{}
		}
		r.Accelerators[a.Type] += a.Count
	}
	return r
}

// minimum is the least step st can run with: its minCPU and minMemory
// where set, zero otherwise.
func minimum(st *v1alpha1.PipelineStep) schedule.Resources {
	var r schedule.Resources
	if st.Resources.MinCPU != nil {
		r.MilliCPU = st.Resources.MinCPU.MilliValue()
	}
	if st.Resources.MinMemory != nil {
		r.Memory = st.Resources.MinMemory.Value()
	}
	return r
}

// jobFor is the scheduler job of step i of spec, in run.
func jobFor(spec *v1alpha1.PipelineSpec, i int, run string, submitted time.Time) schedule.Job {
	st := &spec.Steps[i]
	j := schedule.Job{
		ID:        run + "/" + st.Name,
		Priority:  spec.Priority,
		Submitted: submitted,
		Request:   request(st),
		Min:       minimum(st),
	}
	if st.Priority != nil {
		j.Priority = *st.Priority
	}
	if st.Type == v1alpha1.StepTrain || st.Type == v1alpha1.StepFinetune {
		j.Class = schedule.ClassTraining
	}
	return j
}

// CheckFits returns an error for each step of spec whose requests the
// machine cfg describes can never hold, naming the field
// (spec.steps[i].resources.memory). A request with a minimum (minCPU,
// minMemory) fits when its minimum does.
func CheckFits(spec *v1alpha1.PipelineSpec, cfg schedule.Config) field.ErrorList {
	var errs field.ErrorList
	for i := range spec.Steps {
		if err := unfit(spec, i, cfg); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// unfit returns the error of step i's first request that never fits, or nil.
func unfit(spec *v1alpha1.PipelineSpec, i int, cfg schedule.Config) *field.Error {
	s := schedule.New(cfg)
	st := &spec.Steps[i]
	rp := field.NewPath("spec").Child("steps").Index(i).Child("resources")
	req, lo := request(st), minimum(st)
	offered := func(v int64, q func(int64) string) string {
		return fmt.Sprintf("more than the cluster offers to pipelines (%s)", q(v))
	}
	cpuQ := func(v int64) string { return resource.NewMilliQuantity(v, resource.DecimalSI).String() }
	memQ := func(v int64) string { return resource.NewQuantity(v, resource.BinarySI).String() }
	free := schedule.Resources{
		MilliCPU: cfg.Allocatable.MilliCPU - cfg.ServingReserve.MilliCPU,
		Memory:   cfg.Allocatable.Memory - cfg.ServingReserve.Memory,
	}
	cpu := req.MilliCPU
	if lo.MilliCPU > 0 {
		cpu = lo.MilliCPU
	}
	if !s.Fits(schedule.Resources{MilliCPU: cpu}) {
		name, v := "cpu", st.Resources.CPU
		if lo.MilliCPU > 0 {
			name, v = "minCPU", st.Resources.MinCPU
		}
		return field.Invalid(rp.Child(name), quantityString(v, DefaultCPU), offered(free.MilliCPU, cpuQ))
	}
	mem := req.Memory
	if lo.Memory > 0 {
		mem = lo.Memory
	}
	if !s.Fits(schedule.Resources{Memory: mem}) {
		name, v := "memory", st.Resources.Memory
		if lo.Memory > 0 {
			name, v = "minMemory", st.Resources.MinMemory
		}
		return field.Invalid(rp.Child(name), quantityString(v, DefaultMemory), offered(free.Memory, memQ))
	}
	for j, a := range st.Resources.Accelerators {
		if !s.Fits(schedule.Resources{Accelerators: map[string]int64{a.Type: a.Count}}) {
			return field.Invalid(rp.Child("accelerators").Index(j).Child("count"), a.Count,
				fmt.Sprintf("more %s than the cluster offers to pipelines (%d)", a.Type, cfg.Allocatable.Accelerators[a.Type]-cfg.ServingReserve.Accelerators[a.Type]))
		}
	}
	return nil
}

func quantityString(q *resource.Quantity, def resource.Quantity) string {
	if q == nil {
		return def.String() + " (the default)"
	}
	return q.String()
}
