package v1alpha1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/internal/bytesize"
)

// Column types, as CRD printer columns name them.
const (
	ColumnString  = "string"
	ColumnInteger = "integer"
	ColumnNumber  = "number"
	ColumnBoolean = "boolean"
	ColumnDate    = "date"
)

func clusterColumns() []Column {
	return []Column{
		{Name: "Link", Type: ColumnString, JSONPath: ".status.link.state", Cell: func(o Object, _ time.Time) string {
			if s := o.(*Cluster).Status.Link.State; s != "" {
				return string(s)
			}
			return "Unknown"
		}},
		{Name: "Last Seen", Type: ColumnDate, JSONPath: ".status.link.lastSeen"},
		{Name: "Bandwidth", Type: ColumnInteger, JSONPath: ".status.link.bandwidthBps", Priority: 1, Cell: func(o Object, _ time.Time) string {
			if bps := o.(*Cluster).Status.Link.BandwidthBps; bps > 0 {
				return bytesize.Format(bps) + "/s"
			}
			return "-"
		}},
		{Name: "RTT", Type: ColumnInteger, JSONPath: ".status.link.rttMillis", Priority: 1, Cell: func(o Object, _ time.Time) string {
			if ms := o.(*Cluster).Status.Link.RTTMillis; ms > 0 {
				return fmt.Sprintf("%dms", ms)
			}
			return "-"
		}},
		{Name: "CPU", Type: ColumnString, JSONPath: ".status.capacity.cpu", Priority: 1,
			Cell: func(o Object, _ time.Time) string { return quantity(o.(*Cluster).Status.Capacity.CPU) }},
		{Name: "Memory", Type: ColumnString, JSONPath: ".status.capacity.memory", Priority: 1,
			Cell: func(o Object, _ time.Time) string { return byteQuantity(o.(*Cluster).Status.Capacity.Memory) }},
		{Name: "Disk", Type: ColumnString, JSONPath: ".status.capacity.disk", Priority: 1,
			Cell: func(o Object, _ time.Time) string { return byteQuantity(o.(*Cluster).Status.Capacity.Disk) }},
		{Name: "Cached", Type: ColumnInteger, Priority: 1,
			Cell: func(o Object, _ time.Time) string { return fmt.Sprint(len(o.(*Cluster).Status.CachedArtifacts)) }},
		{Name: "Agent", Type: ColumnString, JSONPath: ".status.agentVersion"},
		{Name: "REST", Type: ColumnString, JSONPath: ".status.endpoints.rest", Priority: 1, Cell: func(o Object, _ time.Time) string {
			return orDash(endpoints(o.(*Cluster)).REST)
		}},
		{Name: "gRPC", Type: ColumnString, JSONPath: ".status.endpoints.grpc", Priority: 1, Cell: func(o Object, _ time.Time) string {
			return orDash(endpoints(o.(*Cluster)).GRPC)
		}},
		{Name: "Window", Type: ColumnString, Priority: 1, Cell: func(o Object, _ time.Time) string {
			return windowText(o.(*Cluster).Status.Transfer)
		}},
		{Name: "Waiting", Type: ColumnString, JSONPath: ".status.transfer.waitingBytes", Priority: 1, Cell: func(o Object, _ time.Time) string {
			ts := o.(*Cluster).Status.Transfer
			if ts == nil || len(ts.Waiting) == 0 {
				return "-"
			}
			return fmt.Sprintf("%d (%s)", len(ts.Waiting), bytesize.Format(ts.WaitingBytes))
		}},
		{Name: "Labels", Type: ColumnString, Cell: func(o Object, _ time.Time) string { return labelText(o.GetLabels()) }},
	}
}

// windowText says where a cluster's transfer window stands: "-" without windows, "open"
// or "opens 02:00Z" (the time in UTC, with its date when not today's).
func windowText(ts *TransferStatus) string {
	if ts == nil {
		return "-"
	}
	state := "closed"
	if ts.Open {
		state = "open"
	}
	if ts.NextChange == nil {
		return state
	}
	verb := "opens"
	if ts.Open {
		verb = "closes"
	}
	return fmt.Sprintf("%s, %s %s", state, verb, ts.NextChange.UTC().Format("Mon 15:04Z"))
}

// endpoints returns the serving endpoints c's agent reported, empty when none.
func endpoints(c *Cluster) ServingEndpoints {
	if c.Status.Endpoints == nil {
		return ServingEndpoints{}
	}
	return *c.Status.Endpoints
}

func deploymentColumns() []Column {
	return []Column{
		{Name: "Model", Type: ColumnString, JSONPath: ".spec.model.name"},
		{Name: "Version", Type: ColumnString, JSONPath: ".spec.model.version"},
		{Name: "Resolved", Type: ColumnString, JSONPath: ".status.resolvedVersion"},
		{Name: "Clusters", Type: ColumnInteger, JSONPath: ".status.clusterCount", Cell: func(o Object, _ time.Time) string {
			return fmt.Sprint(len(o.(*ModelDeployment).Status.Clusters))
		}},
		{Name: "Ready", Type: ColumnInteger, JSONPath: ".status.readyClusters", Cell: func(o Object, _ time.Time) string {
			s := o.(*ModelDeployment).Status.DeepCopy()
			s.Count()
			return fmt.Sprint(s.ReadyClusters)
		}},
		{Name: "Age", Type: ColumnDate, JSONPath: ".metadata.creationTimestamp"},
	}
}

// deploymentBreakdown is a deployment's row per selected cluster.
func deploymentBreakdown() *Breakdown {
	row := func(f func(cs *ClusterDeploymentStatus, now time.Time) string) func(Object, int, time.Time) string {
		return func(o Object, i int, now time.Time) string {
			if i < 0 {
				return ""
			}
			return f(&o.(*ModelDeployment).Status.Clusters[i], now)
		}
	}
	return &Breakdown{
		Parts: func(o Object) int { return len(o.(*ModelDeployment).Status.Clusters) },
		Columns: []PartColumn{
			{Name: "Deployment", Cell: func(o Object, _ int, _ time.Time) string { return o.GetName() }},
			{Name: "Model", Cell: func(o Object, _ int, _ time.Time) string { return o.(*ModelDeployment).Spec.Model.Name }},
			{Name: "Cluster", Cell: row(func(cs *ClusterDeploymentStatus, _ time.Time) string { return cs.Cluster })},
			{Name: "Desired", Cell: func(o Object, i int, _ time.Time) string {
				if i < 0 {
					return o.(*ModelDeployment).Status.ResolvedVersion
				}
				return o.(*ModelDeployment).Status.Clusters[i].DesiredVersion
			}},
			{Name: "Variant", Cell: row(func(cs *ClusterDeploymentStatus, _ time.Time) string { return cs.Variant })},
			{Name: "Active", Cell: row(func(cs *ClusterDeploymentStatus, _ time.Time) string {
				if cs.ActiveVariant != "" && cs.ActiveVersion != "" {
					return cs.ActiveVersion + " (" + cs.ActiveVariant + ")"
				}
				return cs.ActiveVersion
			})},
			{Name: "Runtime", Cell: row(func(cs *ClusterDeploymentStatus, _ time.Time) string { return cs.Runtime })},
			{Name: "Phase", Cell: row(func(cs *ClusterDeploymentStatus, _ time.Time) string { return string(cs.Phase) })},
			{Name: "Fetched", Cell: row(func(cs *ClusterDeploymentStatus, _ time.Time) string {
				if cs.BytesTotal <= 0 {
					return ""
				}
				return bytesize.Format(cs.BytesFetched) + "/" + bytesize.Format(cs.BytesTotal)
			})},
			{Name: "Drift", Cell: row(func(cs *ClusterDeploymentStatus, _ time.Time) string { return driftText(cs.Drift) })},
			{Name: "Last Contact", Cell: row(func(cs *ClusterDeploymentStatus, now time.Time) string { return Age(cs.LastContact, now) })},
			{Name: "Error", Cell: func(o Object, i int, _ time.Time) string {
				d := o.(*ModelDeployment)
				if i >= 0 {
					return d.Status.Clusters[i].Error
				}
				for _, c := range d.Status.Conditions {
					if c.Status == metav1.ConditionFalse {
						return c.Message
					}
				}
				return ""
			}},
		},
	}
}

// driftText is a drift summary as a table cell: the state, "alarm" while the
// alarm is raised, and the first drifted features, such as
// "Drift alarm: in.mean,in.std,in.p0 +2".
func driftText(d *DriftStatus) string {
	const most = 3
	if d == nil {
		return ""
	}
	s := string(d.State)
	if d.Alarm {
		s += " alarm"
	}
	if names := d.DriftedFeatures[:min(most, len(d.DriftedFeatures))]; len(names) > 0 {
		s += ": " + strings.Join(names, ",")
		if more := max(int(d.DriftedFeatureCount), len(d.DriftedFeatures)) - len(names); more > 0 {
			s += fmt.Sprintf(" +%d", more)
		}
	}
	return s
}

// Table renders objs, all of the kind, as `outpost get` prints them: the
// header and a row of cells per object (with wide, Priority 1 columns too,
// or the Breakdown's row per part). now is the time ages count to.
func (k *KindInfo) Table(objs []Object, wide bool, now time.Time) (header []string, rows [][]string, err error) {
	if wide && k.Breakdown != nil {
		return k.Breakdown.table(objs, now)
	}
	header = []string{"NAME"}
	var cols []Column
	for _, c := range k.Columns {
		if c.Priority == 0 || wide {
			cols = append(cols, c)
			header = append(header, strings.ToUpper(c.Name))
		}
	}
	for _, o := range objs {
		var fields map[string]any
		row := []string{o.GetName()}
		for _, c := range cols {
			if c.Cell != nil {
				row = append(row, orDash(c.Cell(o, now)))
				continue
			}
			if fields == nil {
				if fields, err = jsonFields(o); err != nil {
					return nil, nil, err
				}
			}
			row = append(row, orDash(render(lookup(fields, c.JSONPath), c.Type, now)))
		}
		rows = append(rows, row)
	}
	return header, rows, nil
}

func (b *Breakdown) table(objs []Object, now time.Time) (header []string, rows [][]string, err error) {
	for _, c := range b.Columns {
		header = append(header, strings.ToUpper(c.Name))
	}
	for _, o := range objs {
		n := b.Parts(o)
		for i := range max(n, 1) {
			if n == 0 {
				i = -1
			}
			row := make([]string, len(b.Columns))
			for j, c := range b.Columns {
				row[j] = orDash(c.Cell(o, i, now))
			}
			rows = append(rows, row)
		}
	}
	return header, rows, nil
}

// jsonFields returns o as JSON objects, numbers kept as json.Number.
func jsonFields(o Object) (map[string]any, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("encode %s %q: %w", KindOf(o), o.GetName(), err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("encode %s %q: %w", KindOf(o), o.GetName(), err)
	}
	return m, nil
}

// lookup returns the value at a simple JSONPath of dotted field names,
// such as .status.link.state, or nil.
func lookup(m map[string]any, path string) any {
	var v any = m
	for _, f := range strings.Split(strings.TrimPrefix(path, "."), ".") {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[f]
	}
	return v
}

// render formats a JSON value as a column of type typ shows it; "" for none.
func render(v any, typ string, now time.Time) string {
	if v == nil {
		if typ == ColumnDate {
			return "never"
		}
		return ""
	}
	if typ == ColumnDate {
		if s, ok := v.(string); ok {
			if t, err := time.Parse(time.RFC3339, s); err == nil {
				return Age(&metav1.Time{Time: t}, now)
			}
		}
	}
	switch x := v.(type) {
	case string:
		return x
	case json.Number, bool:
		return fmt.Sprint(x)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// Age renders how long before now t was, in the largest whole unit
// (45s, 12m, 5h, 3d), or "never" when t is nil or zero.
func Age(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	d := now.Sub(t.Time).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func quantity(q *resource.Quantity) string {
	if q == nil || q.IsZero() {
		return ""
	}
	return q.String()
}

// byteQuantity prints a quantity of bytes in binary units, such as 23.5 GiB,
// where the agent reports, say, 24683664Ki.
func byteQuantity(q *resource.Quantity) string {
	if q == nil || q.IsZero() {
		return ""
	}
	return bytesize.Format(q.Value())
}

func labelText(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

// pipelineColumns are a pipeline's steps, schedule and runs.
func pipelineColumns() []Column {
	return []Column{
		{Name: "Steps", Type: ColumnInteger, Cell: func(o Object, _ time.Time) string { return fmt.Sprint(len(o.(*Pipeline).Spec.Steps)) }},
		{Name: "Schedule", Type: ColumnString, JSONPath: ".spec.schedule"},
		{Name: "Clusters", Type: ColumnInteger, Cell: func(o Object, _ time.Time) string { return fmt.Sprint(len(o.(*Pipeline).Status.Clusters)) }},
		{Name: "Last Run", Type: ColumnString, Cell: func(o Object, _ time.Time) string {
			var last *PipelineClusterStatus
			for i, r := range o.(*Pipeline).Status.Clusters {
				if r.LastUpdate != nil && (last == nil || last.LastUpdate.Before(r.LastUpdate)) {
					last = &o.(*Pipeline).Status.Clusters[i]
				}
			}
			if last == nil {
				return ""
			}
			return fmt.Sprintf("%s (%s, %s)", last.LastRun, last.Phase, last.Cluster)
		}},
		{Name: "Age", Type: ColumnDate, JSONPath: ".metadata.creationTimestamp"},
	}
}

// pipelineBreakdown is a row per selected cluster: its newest run and when the hub heard
// of it.
func pipelineBreakdown() *Breakdown {
	row := func(f func(r *PipelineClusterStatus, now time.Time) string) func(Object, int, time.Time) string {
		return func(o Object, i int, now time.Time) string {
			if i < 0 {
				return ""
			}
			return f(&o.(*Pipeline).Status.Clusters[i], now)
		}
	}
	return &Breakdown{
		Parts: func(o Object) int { return len(o.(*Pipeline).Status.Clusters) },
		Columns: []PartColumn{
			{Name: "Pipeline", Cell: func(o Object, _ int, _ time.Time) string { return o.GetName() }},
			{Name: "Cluster", Cell: row(func(r *PipelineClusterStatus, _ time.Time) string { return r.Cluster })},
			{Name: "Last Run", Cell: row(func(r *PipelineClusterStatus, _ time.Time) string { return r.LastRun })},
			{Name: "Phase", Cell: row(func(r *PipelineClusterStatus, _ time.Time) string { return string(r.Phase) })},
			{Name: "Updated", Cell: row(func(r *PipelineClusterStatus, now time.Time) string { return Age(r.LastUpdate, now) })},
		},
	}
}

// pipelineRunColumns are a run's pipeline, cluster, phase and progress.
func pipelineRunColumns() []Column {
	return []Column{
		{Name: "Pipeline", Type: ColumnString, JSONPath: ".spec.pipeline"},
		{Name: "Cluster", Type: ColumnString, JSONPath: ".spec.cluster"},
		{Name: "Trigger", Type: ColumnString, JSONPath: ".spec.trigger", Priority: 1},
		{Name: "Phase", Type: ColumnString, JSONPath: ".status.phase", Cell: func(o Object, _ time.Time) string {
			if p := o.(*PipelineRun).Status.Phase; p != "" {
				return string(p)
			}
			return string(RunPending)
		}},
		{Name: "Steps", Type: ColumnString, Cell: func(o Object, _ time.Time) string {
			r := o.(*PipelineRun)
			done := 0
			for _, s := range r.Status.Steps {
				if s.Phase.Finished() {
					done++
				}
			}
			return fmt.Sprintf("%d/%d", done, len(r.Status.Steps))
		}},
		{Name: "Model", Type: ColumnString, Priority: 1, Cell: func(o Object, _ time.Time) string {
			r := o.(*PipelineRun)
			if len(r.Status.Models) == 0 {
				return "-"
			}
			m := r.Status.Models[len(r.Status.Models)-1]
			return m.Repository + "@" + m.Version
		}},
		{Name: "Age", Type: ColumnDate, JSONPath: ".metadata.creationTimestamp"},
	}
}

// federatedJobColumns are a job's strategy, progress and newest model.
func federatedJobColumns() []Column {
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	return []Column{
		{Name: "Strategy", Type: ColumnString, JSONPath: ".spec.strategy.type", Cell: func(o Object, _ time.Time) string {
			return string(o.(*FederatedJob).Spec.Strategy.TypeValue())
		}},
		{Name: "Phase", Type: ColumnString, JSONPath: ".status.phase", Cell: func(o Object, _ time.Time) string {
			if p := o.(*FederatedJob).Status.Phase; p != "" {
				return string(p)
			}
			return string(FederatedPending)
		}},
		{Name: "Round", Type: ColumnString, Cell: func(o Object, _ time.Time) string {
			j := o.(*FederatedJob)
			return fmt.Sprintf("%d/%d", j.Status.Round, j.Spec.RoundsValue())
		}},
		{Name: "Accuracy", Type: ColumnString, JSONPath: ".status.accuracy", Cell: func(o Object, _ time.Time) string {
			return dash(o.(*FederatedJob).Status.Accuracy)
		}},
		{Name: "Model", Type: ColumnString, Cell: func(o Object, _ time.Time) string {
			j := o.(*FederatedJob)
			if j.Status.LatestVersion == "" {
				return "-"
			}
			return j.Status.LatestModel + "@" + j.Status.LatestVersion
		}},
		{Name: "Epsilon", Type: ColumnString, JSONPath: ".status.epsilonSpent", Priority: 1, Cell: func(o Object, _ time.Time) string {
			return dash(o.(*FederatedJob).Status.EpsilonSpent)
		}},
		{Name: "Age", Type: ColumnDate, JSONPath: ".metadata.creationTimestamp"},
	}
}

// federatedJobBreakdown is a row per selected cluster: its part in the job and the hub's
// choice for it.
func federatedJobBreakdown() *Breakdown {
	row := func(f func(r *FederatedClusterStatus) string) func(Object, int, time.Time) string {
		return func(o Object, i int, _ time.Time) string {
			if i < 0 {
				return ""
			}
			return f(&o.(*FederatedJob).Status.Clusters[i])
		}
	}
	return &Breakdown{
		Parts: func(o Object) int { return len(o.(*FederatedJob).Status.Clusters) },
		Columns: []PartColumn{
			{Name: "Job", Cell: func(o Object, _ int, _ time.Time) string { return o.GetName() }},
			{Name: "Cluster", Cell: row(func(r *FederatedClusterStatus) string { return r.Cluster })},
			{Name: "Updates", Cell: row(func(r *FederatedClusterStatus) string { return fmt.Sprint(r.Updates) })},
			{Name: "Last Round", Cell: row(func(r *FederatedClusterStatus) string { return fmt.Sprint(r.LastRound) })},
			{Name: "Steps", Cell: row(func(r *FederatedClusterStatus) string {
				if r.LocalSteps == 0 {
					return "" // the job's epochs, or no choice made yet
				}
				return fmt.Sprint(r.LocalSteps)
			})},
			{Name: "Encoding", Cell: row(func(r *FederatedClusterStatus) string { return r.Encoding })},
		},
	}
}

// compressionPolicyColumns are a policy's models and how many versions it compressed,
// failed on, and is compressing.
func compressionPolicyColumns() []Column {
	count := func(ph CompressionPhase) func(o Object, _ time.Time) string {
		return func(o Object, _ time.Time) string {
			n := 0
			for _, v := range o.(*CompressionPolicy).Status.Versions {
				if v.Phase == ph {
					n++
				}
			}
			return fmt.Sprint(n)
		}
	}
	return []Column{
		{Name: "Models", Type: ColumnString, Cell: func(o Object, _ time.Time) string {
			return strings.Join(o.(*CompressionPolicy).Spec.Models, ",")
		}},
		{Name: "Max Drop", Type: ColumnString, Cell: func(o Object, _ time.Time) string {
			p := o.(*CompressionPolicy)
			return strconv.FormatFloat(p.Spec.MaxAccuracyDropValue(), 'f', -1, 64)
		}},
		{Name: "Done", Type: ColumnString, Cell: count(CompressionDone)},
		{Name: "Failed", Type: ColumnString, Cell: count(CompressionFailed)},
		{Name: "Compressing", Type: ColumnString, Cell: count(CompressionCompressing)},
		{Name: "Age", Type: ColumnDate, JSONPath: ".metadata.creationTimestamp"},
	}
}

// compressionPolicyBreakdown is a row per model version a policy handled: its phase, the
// variants pushed, or why none was.
func compressionPolicyBreakdown() *Breakdown {
	row := func(f func(r *CompressedVersion) string) func(Object, int, time.Time) string {
		return func(o Object, i int, _ time.Time) string {
			if i < 0 {
				return ""
			}
			return f(&o.(*CompressionPolicy).Status.Versions[i])
		}
	}
	return &Breakdown{
		Parts: func(o Object) int { return len(o.(*CompressionPolicy).Status.Versions) },
		Columns: []PartColumn{
			{Name: "Policy", Cell: func(o Object, _ int, _ time.Time) string { return o.GetName() }},
			{Name: "Model", Cell: row(func(r *CompressedVersion) string { return r.Model + "@" + r.Version })},
			{Name: "Phase", Cell: row(func(r *CompressedVersion) string { return string(r.Phase) })},
			{Name: "Variants", Cell: row(func(r *CompressedVersion) string {
				vs := make([]string, len(r.Variants))
				for i, v := range r.Variants {
					vs[i] = fmt.Sprintf("%s (%sx, %s pt)", v.Name, v.SizeRatio, v.AccuracyDrop)
				}
				return strings.Join(vs, ", ")
			})},
			{Name: "Reason", Cell: row(func(r *CompressedVersion) string { return r.Reason })},
		},
	}
}
