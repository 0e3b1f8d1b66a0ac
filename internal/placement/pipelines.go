package placement

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"outpost.dev/outpost/api/v1alpha1"
)

// PipelineAssignment is the outcome of placing every pipeline.
type PipelineAssignment struct {
	// Pipelines maps every cluster name to the pipelines it runs, sorted by name. Every
	// cluster has an entry, empty when no pipeline selects it.
	Pipelines map[string][]v1alpha1.DesiredPipeline
	// Selected maps every pipeline name to the sorted names of the clusters it selects.
	Selected map[string][]string
}

// Pipelines places every pipeline on the clusters its selectors match (ORed, as a
// deployment's), with its name, generation and spec, and with the runs requested at the hub
// for each of those clusters that are not finished: a run names its pipeline and its
// cluster, and leaves the desired state once its phase is final. Requested means its trigger
// is Manual (or unset, which defaults to it); the runs an agent starts itself (Schedule,
// Local, Drift, NewVersion), which the hub learns of from the agent, are the agent's already.
// A run whose pipeline does not select its cluster goes nowhere. A pipeline with an invalid
// selector is left out and reported in the returned error; the others are still placed.
func Pipelines(pipelines []v1alpha1.Pipeline, runs []v1alpha1.PipelineRun, clusters []v1alpha1.Cluster) (PipelineAssignment, error) {
	a := PipelineAssignment{
		Pipelines: make(map[string][]v1alpha1.DesiredPipeline, len(clusters)),
		Selected:  make(map[string][]string, len(pipelines)),
	}
	for i := range clusters {
		a.Pipelines[clusters[i].Name] = []v1alpha1.DesiredPipeline{}
	}
	// Requested runs by pipeline and cluster.
	type key struct{ pipeline, cluster string }
	pending := map[key][]string{}
	for i := range runs {
		r := &runs[i]
		if r.Status.Phase.Finished() || !Requested(r) {
			continue
		}
		k := key{r.Spec.Pipeline, r.Spec.Cluster}
		pending[k] = append(pending[k], r.Name)
	}
	order := make([]int, len(pipelines))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int { return strings.Compare(pipelines[x].Name, pipelines[y].Name) })
	var errs []error
	for _, i := range order {
		p := &pipelines[i]
		sels, err := compile(p.Spec.ClusterSelectors)
		if err != nil {
			errs = append(errs, fmt.Errorf("pipeline %q: %w", p.Name, err))
			continue
		}
		names := match(sels, clusters)
		a.Selected[p.Name] = names
		for _, c := range names {
			runs := slices.Clone(pending[key{p.Name, c}])
			slices.Sort(runs)
			a.Pipelines[c] = append(a.Pipelines[c], v1alpha1.DesiredPipeline{
				Name: p.Name, Generation: p.Generation, Spec: *p.Spec.DeepCopy(), Runs: slices.Compact(runs),
			})
		}
	}
	return a, errors.Join(errs...)
}

// Requested reports whether a run was requested at the hub (trigger Manual) rather than
// started by an agent.
func Requested(r *v1alpha1.PipelineRun) bool {
	return r.Spec.Trigger == "" || r.Spec.Trigger == v1alpha1.TriggeredManual || r.Labels[v1alpha1.LabelDriftCluster] != ""
}

// DriftRuns are the runs the hub requests when cluster drifting, of labels driftLabels,
// raised the drift alarm of deployment at since: for every pipeline with a Drift trigger
// of the deployment whose fromClusters select it, one run on each cluster the pipeline
// selects, named after the pipeline, the drifting cluster and the alarm's start, so that the
// same alarm requests nothing twice. It is pure.
func DriftRuns(pipelines []v1alpha1.Pipeline, clusters []v1alpha1.Cluster, deployment, drifting string, driftLabels map[string]string, since time.Time) ([]v1alpha1.PipelineRun, error) {
	var runs []v1alpha1.PipelineRun
	var errs []error
	for _, p := range pipelines {
		fires := false
		for _, t := range p.Spec.Triggers {
			if t.Type != v1alpha1.TriggerDrift || t.Deployment != deployment || t.FromClusters == nil {
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(t.FromClusters)
			if err != nil {
				errs = append(errs, fmt.Errorf("pipeline %s: fromClusters: %w", p.Name, err))
				continue
			}
			fires = fires || sel.Matches(labels.Set(driftLabels))
		}
		if !fires {
			continue
		}
		targets, err := Select(p.Spec.ClusterSelectors, clusters)
		if err != nil {
			errs = append(errs, fmt.Errorf("pipeline %s: %w", p.Name, err))
			continue
		}
		for _, c := range targets {
			r := v1alpha1.PipelineRun{Spec: v1alpha1.PipelineRunSpec{Pipeline: p.Name, Cluster: c, Trigger: string(v1alpha1.TriggerDrift)}}
			r.Name = driftRunName(p.Name, drifting, c, len(targets) > 1, since)
			r.Labels = map[string]string{v1alpha1.LabelDriftCluster: drifting}
			runs = append(runs, r)
		}
	}
	return runs, errors.Join(errs...)
}

// driftRunName is PIPELINE-drift-DRIFTING[-TARGET]-UNIXTIME, the target
// named only when the pipeline selects several clusters; a name too long
// keeps its end.
func driftRunName(pipeline, drifting, target string, several bool, since time.Time) string {
	name := pipeline + "-drift-" + drifting
	if several {
		name += "-" + target
	}
	name += "-" + strconv.FormatInt(since.Unix(), 10)
	const maxName = 253
	if len(name) > maxName {
		name = strings.TrimLeft(name[len(name)-maxName:], "-.")
	}
	return name
}

// reportsCapacity reports whether a cluster's agent said what it has.
func reportsCapacity(c *v1alpha1.Cluster) bool {
	cp := &c.Status.Capacity
	return cp.CPU != nil || cp.Memory != nil || cp.Disk != nil || len(cp.Accelerators) > 0
}

// maxListed bounds the clusters a message lists.
const maxListed = 5

// PipelineFits checks that each step of spec fits at least one of the selected clusters
// that report their capacity (status.capacity), as PipelineStep.Fits judges. Clusters that
// report none neither refuse nor admit a step; with no cluster reporting, every step fits.
// It returns an error per step that fits none, naming its field: the request that is more
// than any of those clusters has, with the largest there is and where; or, when each
// request alone fits somewhere but no cluster holds them all, the step's resources.
func PipelineFits(spec *v1alpha1.PipelineSpec, selected []v1alpha1.Cluster) field.ErrorList {
	var known []*v1alpha1.Cluster
	for i := range selected {
		if reportsCapacity(&selected[i]) {
			known = append(known, &selected[i])
		}
	}
	if len(known) == 0 {
		return nil
	}
	var errs field.ErrorList
	sp := field.NewPath("spec", "steps")
	for i := range spec.Steps {
		st := &spec.Steps[i]
		p := sp.Index(i)
		misfits := make([]string, 0, len(known))
		for _, c := range known {
			fe := st.Fits(&c.Status.Capacity, p)
			if fe == nil {
				misfits = nil
				break
			}
			misfits = append(misfits, fmt.Sprintf("%s: %s %v is %s", c.Name, strings.TrimPrefix(fe.Field, p.String()+"."), fe.BadValue, fe.Detail))
		}
		if misfits == nil {
			continue
		}
		if fe := largest(st, known, p); fe != nil {
			errs = append(errs, fe)
			continue
		}
		if len(misfits) > maxListed {
			misfits = append(misfits[:maxListed], fmt.Sprintf("and %d more", len(misfits)-maxListed))
		}
		errs = append(errs, field.Invalid(p.Child("resources"), describeRequests(st),
			"no selected cluster has all of it at once ("+strings.Join(misfits, "; ")+")"))
	}
	return errs
}

// largest returns the first request of st that is more than every cluster of known has,
// naming the largest there is, or nil when each request alone fits somewhere. A cluster
// that does not say how much it has of something has enough of it.
func largest(st *v1alpha1.PipelineStep, known []*v1alpha1.Cluster, p *field.Path) *field.Error {
	rp := p.Child("resources")
	quantity := func(name string, want *resource.Quantity, have func(*v1alpha1.Capacity) *resource.Quantity) *field.Error {
		if want == nil {
			return nil
		}
		var best *resource.Quantity
		where := ""
		for _, c := range known {
			q := have(&c.Status.Capacity)
			if q == nil || want.Cmp(*q) <= 0 {
				return nil
			}
			if best == nil || q.Cmp(*best) > 0 {
				best, where = q, c.Name
			}
		}
		return field.Invalid(rp.Child(name), want.String(),
			fmt.Sprintf("more than any selected cluster has (largest: %s on %s)", best.String(), where))
	}
	if fe := quantity("cpu", st.Resources.CPU, func(c *v1alpha1.Capacity) *resource.Quantity { return c.CPU }); fe != nil {
		return fe
	}
	if fe := quantity("memory", st.Resources.Memory, func(c *v1alpha1.Capacity) *resource.Quantity { return c.Memory }); fe != nil {
		return fe
	}
	for j, a := range st.Resources.Accelerators {
		best, where := int64(-1), ""
		for _, c := range known {
			have := accelerators(&c.Status.Capacity, a.Type)
			if a.Count <= have {
				best = -1
				break
			}
			if have > best {
				best, where = have, c.Name
			}
		}
		if best >= 0 {
			return field.Invalid(rp.Child("accelerators").Index(j).Child("count"), a.Count,
				fmt.Sprintf("more %s than any selected cluster has (largest: %d on %s)", a.Type, best, where))
		}
	}
	return nil
}

func accelerators(c *v1alpha1.Capacity, typ string) int64 {
	for _, a := range c.Accelerators {
		if a.Type == typ {
			return a.Count
		}
	}
	return 0
}

// describeRequests is what a step asks for, such as "cpu 2, memory 8Gi, nvidia.com/gpu 1".
func describeRequests(st *v1alpha1.PipelineStep) string {
	var parts []string
	if q := st.Resources.CPU; q != nil {
		parts = append(parts, "cpu "+q.String())
	}
	if q := st.Resources.Memory; q != nil {
		parts = append(parts, "memory "+q.String())
	}
	for _, a := range st.Resources.Accelerators {
		parts = append(parts, fmt.Sprintf("%s %d", a.Type, a.Count))
	}
	return strings.Join(parts, ", ")
}

// RunFits checks that every step of spec fits cluster c, when c reports its capacity. It
// returns an error on spec.cluster per step that does not fit, naming the step's field.
func RunFits(spec *v1alpha1.PipelineSpec, pipeline string, c *v1alpha1.Cluster) field.ErrorList {
	if !reportsCapacity(c) {
		return nil
	}
	var errs field.ErrorList
	sp := field.NewPath("spec", "steps")
	for i := range spec.Steps {
		fe := spec.Steps[i].Fits(&c.Status.Capacity, sp.Index(i))
		if fe == nil {
			continue
		}
		errs = append(errs, field.Invalid(field.NewPath("spec", "cluster"), c.Name,
			fmt.Sprintf("step %q of pipeline %q does not fit the cluster: %s", spec.Steps[i].Name, pipeline, fe.Error())))
	}
	return errs
}
