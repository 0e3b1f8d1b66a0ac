package v1alpha1

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/robfig/cron/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"outpost.dev/outpost/internal/pipeline/cond"
)

// Limits of a Pipeline.
const (
	MaxPipelineSteps = 64
	// MaxPipelineTriggers bounds a pipeline's triggers.
	MaxPipelineTriggers = 16
	// MaxStepLogTailBytes bounds a step's log tail in a run's status.
	MaxStepLogTailBytes = 2048
	// MaxRunMessageBytes bounds the messages of a run and of its steps.
	MaxRunMessageBytes = 4096
	maxParamLen        = 4096
	maxRetries         = 10
)

// ParseSchedule parses a five-field cron expression ("0 3 * * *", or a
// descriptor such as "@daily").
func ParseSchedule(s string) (cron.Schedule, error) {
	return cron.ParseStandard(s)
}

// Default fills a pipeline's defaults: none beyond what the zero values mean.
func (p *Pipeline) Default() {}

// Default fills a run's defaults: a run requested at the hub is Manual.
func (r *PipelineRun) Default() {
	if r.Spec.Trigger == "" {
		r.Spec.Trigger = TriggeredManual
	}
}

// Validate checks the pipeline: a graph with no cycle whose steps are of known types, read
// parameters and inputs their type knows from outputs earlier steps produce, and ask for
// sane resources. Each error names its field.
func (p *Pipeline) Validate() error {
	errs := validateMeta(&p.ObjectMeta)
	errs = append(errs, p.Spec.Validate(field.NewPath("spec"))...)
	return invalid(KindPipeline, p.Name, errs)
}

// Validate checks a pipeline spec found at path sp (the standalone `outpost pipeline run -f`
// validates a spec this way too).
func (s *PipelineSpec) Validate(sp *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(s.ClusterSelectors) > MaxClusterSelectors {
		errs = append(errs, field.TooMany(sp.Child("clusterSelectors"), len(s.ClusterSelectors), MaxClusterSelectors))
	}
	if len(s.Triggers) > MaxPipelineTriggers {
		errs = append(errs, field.TooMany(sp.Child("triggers"), len(s.Triggers), MaxPipelineTriggers))
	}
	for i := range s.ClusterSelectors {
		errs = append(errs, validateSelector(&s.ClusterSelectors[i], sp.Child("clusterSelectors").Index(i))...)
	}
	if s.Schedule != "" {
		if _, err := ParseSchedule(s.Schedule); err != nil {
			errs = append(errs, field.Invalid(sp.Child("schedule"), s.Schedule, "not a five-field cron expression: "+err.Error()))
		}
	}
	for i, t := range s.Triggers {
		tp := sp.Child("triggers").Index(i)
		switch t.Type {
		case TriggerDrift, TriggerNewVersion:
		default:
			errs = append(errs, field.NotSupported(tp.Child("type"), t.Type, []TriggerType{TriggerDrift, TriggerNewVersion}))
		}
		if t.Deployment == "" {
			errs = append(errs, field.Required(tp.Child("deployment"), "the deployment whose events start a run"))
		}
		if t.FromClusters != nil {
			if t.Type != TriggerDrift {
				errs = append(errs, field.Forbidden(tp.Child("fromClusters"), "only a Drift trigger fires at the hub"))
			}
			errs = append(errs, validateSelector(t.FromClusters, tp.Child("fromClusters"))...)
		}
	}
	stp := sp.Child("steps")
	switch {
	case len(s.Steps) == 0:
		return append(errs, field.Required(stp, "a pipeline has at least one step"))
	case len(s.Steps) > MaxPipelineSteps:
		return append(errs, field.TooMany(stp, len(s.Steps), MaxPipelineSteps))
	}
	index := make(map[string]int, len(s.Steps))
	for i, st := range s.Steps {
		np := stp.Index(i).Child("name")
		switch {
		case st.Name == "":
			errs = append(errs, field.Required(np, ""))
			continue
		case len(validation.IsDNS1123Label(st.Name)) > 0:
			errs = append(errs, field.Invalid(np, st.Name, strings.Join(validation.IsDNS1123Label(st.Name), "; ")))
		}
		if _, dup := index[st.Name]; dup {
			errs = append(errs, field.Duplicate(np, st.Name))
			continue
		}
		index[st.Name] = i
	}
	for i := range s.Steps {
		errs = append(errs, s.validateStep(i, index, stp.Index(i))...)
	}
	if len(errs) == 0 {
		if cycle := s.cycle(index); cycle != nil {
			errs = append(errs, field.Invalid(stp.Index(index[cycle[0]]).Child("dependsOn"), cycle[0],
				"the steps form a cycle: "+strings.Join(cycle, " -> ")))
		}
	}
	return errs
}

// outputsOf returns the outputs step st produces.
func outputsOf(st *PipelineStep) []string {
	if st.Type == StepExec {
		if st.Exec == nil {
			return nil
		}
		return st.Exec.Outputs
	}
	info, _ := LookupStepType(st.Type)
	return info.Outputs
}

func (s *PipelineSpec) validateStep(i int, index map[string]int, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	st := &s.Steps[i]
	info, ok := LookupStepType(st.Type)
	if !ok {
		known := make([]string, len(stepTypes))
		for j, t := range stepTypes {
			known[j] = string(t.Type)
		}
		return append(errs, field.NotSupported(p.Child("type"), st.Type, known))
	}
	refStep := func(fp *field.Path, name, what string) bool {
		if _, ok := index[name]; !ok {
			errs = append(errs, field.NotFound(fp, name))
			return false
		}
		if name == st.Name {
			errs = append(errs, field.Invalid(fp, name, "a step cannot "+what+" itself"))
			return false
		}
		return true
	}
	for j, d := range st.DependsOn {
		refStep(p.Child("dependsOn").Index(j), d, "depend on")
	}
	checkRef := func(fp *field.Path, r cond.Ref) {
		if !refStep(fp, r.Step, "read") {
			return
		}
		src := &s.Steps[index[r.Step]]
		if !slices.Contains(outputsOf(src), r.Output) {
			errs = append(errs, field.Invalid(fp, r.String(),
				fmt.Sprintf("step %q (%s) has no output %q; it has: %s", r.Step, src.Type, r.Output, strings.Join(outputsOf(src), ", "))))
		}
	}
	for _, name := range sortedKeys(st.Inputs) {
		fp := p.Child("inputs").Key(name)
		if st.Type != StepExec && !slices.Contains(info.Inputs, name) {
			errs = append(errs, field.NotSupported(fp, name, info.Inputs))
			continue
		}
		if st.Type == StepExec && !isEnvSuffix(name) {
			errs = append(errs, field.Invalid(fp, name, "an exec input name is letters, digits, '_' and '-'"))
			continue
		}
		r, err := cond.ParseRef(st.Inputs[name])
		if err != nil {
			errs = append(errs, field.Invalid(fp, st.Inputs[name], err.Error()))
			continue
		}
		checkRef(fp, r)
	}
	for _, name := range info.Required {
		if _, ok := st.Inputs[name]; !ok {
			errs = append(errs, field.Required(p.Child("inputs").Key(name), fmt.Sprintf("a %s step needs input %q", st.Type, name)))
		}
	}
	for _, name := range sortedKeys(st.Params) {
		fp := p.Child("params").Key(name)
		if !slices.Contains(info.Params, name) {
			errs = append(errs, field.NotSupported(fp, name, info.Params))
		} else if len(st.Params[name]) > maxParamLen {
			errs = append(errs, field.TooLong(fp, "", maxParamLen))
		}
	}
	if st.When != "" {
		wp := p.Child("when")
		e, err := cond.Parse(st.When)
		if err != nil {
			errs = append(errs, field.Invalid(wp, st.When, err.Error()))
		} else {
			for _, r := range e.Refs() {
				checkRef(wp, r)
			}
		}
	}
	ep := p.Child("exec")
	switch {
	case st.Type == StepExec && st.Exec == nil:
		errs = append(errs, field.Required(ep, "an exec step needs a command"))
	case st.Type != StepExec && st.Exec != nil:
		errs = append(errs, field.Forbidden(ep, "only exec steps have a command"))
	case st.Exec != nil:
		if len(st.Exec.Command) == 0 || st.Exec.Command[0] == "" {
			errs = append(errs, field.Required(ep.Child("command"), "the program to run"))
		}
		for j, o := range st.Exec.Outputs {
			if !isEnvSuffix(o) {
				errs = append(errs, field.Invalid(ep.Child("outputs").Index(j), o, "an output name is letters, digits, '_' and '-'"))
			}
		}
		for _, k := range sortedKeys(st.Exec.Env) {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				errs = append(errs, field.Invalid(ep.Child("env").Key(k), k, "not an environment variable name"))
			}
		}
	}
	if r := st.Retries; r != nil {
		rp := p.Child("retries")
		if r.Limit < 0 || r.Limit > maxRetries {
			errs = append(errs, field.Invalid(rp.Child("limit"), r.Limit, fmt.Sprintf("must be between 0 and %d", maxRetries)))
		}
		errs = append(errs, positiveDuration(r.Backoff, rp.Child("backoff"))...)
		errs = append(errs, positiveDuration(r.MaxBackoff, rp.Child("maxBackoff"))...)
	}
	errs = append(errs, positiveDuration(st.Timeout, p.Child("timeout"))...)
	rp := p.Child("resources")
	for _, q := range []struct {
		name string
		q    *resource.Quantity
	}{{"cpu", st.Resources.CPU}, {"memory", st.Resources.Memory}, {"minCPU", st.Resources.MinCPU}, {"minMemory", st.Resources.MinMemory}} {
		if q.q != nil && q.q.Sign() <= 0 {
			errs = append(errs, field.Invalid(rp.Child(q.name), q.q.String(), "must be positive"))
		}
	}
	if lo, hi := st.Resources.MinCPU, st.Resources.CPU; lo != nil && hi != nil && lo.Cmp(*hi) > 0 {
		errs = append(errs, field.Invalid(rp.Child("minCPU"), lo.String(), "must not exceed cpu"))
	}
	if lo, hi := st.Resources.MinMemory, st.Resources.Memory; lo != nil && hi != nil && lo.Cmp(*hi) > 0 {
		errs = append(errs, field.Invalid(rp.Child("minMemory"), lo.String(), "must not exceed memory"))
	}
	for j, a := range st.Resources.Accelerators {
		if a.Type == "" {
			errs = append(errs, field.Required(rp.Child("accelerators").Index(j).Child("type"), ""))
		}
		if a.Count < 0 {
			errs = append(errs, field.Invalid(rp.Child("accelerators").Index(j).Child("count"), a.Count, "must be non-negative"))
		}
	}
	return errs
}

func positiveDuration(d *metav1.Duration, p *field.Path) field.ErrorList {
	if d != nil && d.Duration <= 0 {
		return field.ErrorList{field.Invalid(p, d.Duration.String(), "must be positive")}
	}
	return nil
}

func isEnvSuffix(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Needs returns the steps step i waits for: its dependsOn, the steps its
// inputs read and the steps its condition reads, sorted and without repeats.
// The spec must be valid.
func (s *PipelineSpec) Needs(i int) []string {
	st := &s.Steps[i]
	need := slices.Clone(st.DependsOn)
	for _, v := range st.Inputs {
		if r, err := cond.ParseRef(v); err == nil {
			need = append(need, r.Step)
		}
	}
	if st.When != "" {
		if e, err := cond.Parse(st.When); err == nil {
			for _, r := range e.Refs() {
				need = append(need, r.Step)
			}
		}
	}
	slices.Sort(need)
	return slices.Compact(need)
}

// cycle returns the steps of a cycle of the graph, the first repeated at the
// end, or nil when there is none.
func (s *PipelineSpec) cycle(index map[string]int) []string {
	const (
		white = iota
		grey
		black
	)
	color := make([]int, len(s.Steps))
	var stack []string
	var found []string
	var visit func(i int) bool
	visit = func(i int) bool {
		color[i] = grey
		stack = append(stack, s.Steps[i].Name)
		for _, n := range s.Needs(i) {
			j := index[n]
			switch color[j] {
			case grey:
				start := slices.Index(stack, n)
				found = append(slices.Clone(stack[start:]), n)
				return true
			case white:
				if visit(j) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[i] = black
		return false
	}
	for i := range s.Steps {
		if color[i] == white && visit(i) {
			return found
		}
	}
	return nil
}

// Validate checks the run: it names a pipeline and a cluster, and its status is well formed.
func (r *PipelineRun) Validate() error {
	errs := validateMeta(&r.ObjectMeta)
	sp := field.NewPath("spec")
	if r.Spec.Pipeline == "" {
		errs = append(errs, field.Required(sp.Child("pipeline"), "the Pipeline to run"))
	} else if msgs := validation.IsDNS1123Subdomain(r.Spec.Pipeline); len(msgs) > 0 {
		errs = append(errs, field.Invalid(sp.Child("pipeline"), r.Spec.Pipeline, strings.Join(msgs, "; ")))
	}
	if r.Spec.Cluster == "" {
		errs = append(errs, field.Required(sp.Child("cluster"), "the cluster that runs it"))
	} else if msgs := validation.IsDNS1123Subdomain(r.Spec.Cluster); len(msgs) > 0 {
		errs = append(errs, field.Invalid(sp.Child("cluster"), r.Spec.Cluster, strings.Join(msgs, "; ")))
	}
	switch r.Spec.Trigger {
	case "", TriggeredManual, TriggeredSchedule, TriggeredLocal, string(TriggerDrift), string(TriggerNewVersion):
	default:
		errs = append(errs, field.NotSupported(sp.Child("trigger"), r.Spec.Trigger,
			[]string{TriggeredManual, TriggeredSchedule, TriggeredLocal, string(TriggerDrift), string(TriggerNewVersion)}))
	}
	stp := field.NewPath("status")
	switch r.Status.Phase {
	case "", RunPending, RunRunning, RunSucceeded, RunFailed, RunSkipped:
	default:
		errs = append(errs, field.NotSupported(stp.Child("phase"), r.Status.Phase,
			[]RunPhase{RunPending, RunRunning, RunSucceeded, RunFailed, RunSkipped}))
	}
	if r.Status.Sequence < 0 {
		errs = append(errs, field.Invalid(stp.Child("sequence"), r.Status.Sequence, "must be non-negative"))
	}
	if len(r.Status.Message) > MaxRunMessageBytes {
		errs = append(errs, field.TooLong(stp.Child("message"), "", MaxRunMessageBytes))
	}
	if len(r.Status.Steps) > MaxPipelineSteps {
		errs = append(errs, field.TooMany(stp.Child("steps"), len(r.Status.Steps), MaxPipelineSteps))
	}
	for i, st := range r.Status.Steps {
		sp := stp.Child("steps").Index(i)
		if len(st.Message) > MaxRunMessageBytes {
			errs = append(errs, field.TooLong(sp.Child("message"), "", MaxRunMessageBytes))
		}
		if len(st.LogTail) > MaxStepLogTailBytes {
			errs = append(errs, field.TooLong(sp.Child("logTail"), "", MaxStepLogTailBytes))
		}
	}
	return invalid(KindPipelineRun, r.Name, errs)
}

// Fits reports the first of the step's requests that capacity cannot hold, as
// the path of the field under p and a message, or nil when all fit. A
// capacity that does not say how much it has of something fits any request.
func (st *PipelineStep) Fits(c *Capacity, p *field.Path) *field.Error {
	rp := p.Child("resources")
	if st.Resources.CPU != nil && c.CPU != nil && st.Resources.CPU.Cmp(*c.CPU) > 0 {
		return field.Invalid(rp.Child("cpu"), st.Resources.CPU.String(), "more than the cluster has ("+c.CPU.String()+")")
	}
	if st.Resources.Memory != nil && c.Memory != nil && st.Resources.Memory.Cmp(*c.Memory) > 0 {
		return field.Invalid(rp.Child("memory"), st.Resources.Memory.String(), "more than the cluster has ("+c.Memory.String()+")")
	}
	for j, a := range st.Resources.Accelerators {
		have := int64(0)
		for _, ca := range c.Accelerators {
			if ca.Type == a.Type {
				have = ca.Count
			}
		}
		if a.Count > have {
			return field.Invalid(rp.Child("accelerators").Index(j).Child("count"), a.Count,
				fmt.Sprintf("more %s than the cluster has (%d)", a.Type, have))
		}
	}
	return nil
}
