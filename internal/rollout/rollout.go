// Package rollout is the hub's rollout controller as a pure state machine: from a
// deployment's rollout state, the version it resolved, its rollout policy, what each selected
// cluster reports and the time, Step computes the next state, which says what version each
// cluster is given now (Assign). It has no I/O and reads no clock, as the agent's version
// guard, so that it is tested directly on simulated time.
//
// A Canary rollout sends the new version to a first wave (the canaries), then to further
// waves of at most a wave's size, each after the previous one served it healthy for the bake
// time. A cluster that fails its wave's gate stops the rollout and sends every cluster given
// the new version back to the stable one, with a reason (a rollback the agent's guard lets
// through); that version is never given again. A cluster that stays silent is skipped and
// counted, never waited for; one that comes back later gets the version promoted so far.
package rollout

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
)

// Defaults of a Canary rollout's policy.
const (
	DefaultBakeTime             = time.Minute
	DefaultSilentAfter          = 10 * time.Minute
	DefaultProgressDeadline     = 30 * time.Minute
	DefaultMaxErrorRateIncrease = 0.05
	DefaultMaxLatencyRatio      = 1.5
	DefaultMinRequests          = 20
)

// Policy is a deployment's rollout settings, with defaults applied.
type Policy struct {
	// Canary is set for the Canary strategy; otherwise a new version goes everywhere at once.
	Canary bool
	// MaxUnavailable bounds a wave's size; zero means no bound of its own (see Percent).
	MaxUnavailable int
	// Percent bounds a wave to this share of the selected clusters; zero means none.
	Percent int
	// CanaryCount is how many clusters the canary wave takes when no cluster is marked canary.
	CanaryCount int
	// WaveOrder is the label whose values order the waves; empty orders by name.
	WaveOrder string
	// BakeTime, SilentAfter and ProgressDeadline are as in v1alpha1.Rollout.
	BakeTime, SilentAfter, ProgressDeadline time.Duration
	// MaxErrorRateIncrease, MaxLatencyRatio and MinRequests are the health gates;
	// DriftGate fails a cluster whose drift alarm is raised for the new version.
	MaxErrorRateIncrease, MaxLatencyRatio float64
	MinRequests                           int64
	DriftGate                             bool
	// Paused holds the next wave.
	Paused bool
	// Abort and Promote name the version an operator aborted or promoted; empty for none.
	Abort, Promote string
}

// PolicyOf returns d's rollout policy, with the defaults of unset fields.
func PolicyOf(d *v1alpha1.ModelDeployment) Policy {
	r := &d.Spec.Rollout
	p := Policy{
		Canary:               r.Strategy == v1alpha1.RolloutCanary,
		CanaryCount:          1,
		WaveOrder:            r.WaveOrder,
		BakeTime:             durationOr(r.BakeTime, DefaultBakeTime),
		SilentAfter:          durationOr(r.SilentAfter, DefaultSilentAfter),
		ProgressDeadline:     durationOr(r.ProgressDeadline, DefaultProgressDeadline),
		MaxErrorRateIncrease: DefaultMaxErrorRateIncrease,
		MaxLatencyRatio:      DefaultMaxLatencyRatio,
		MinRequests:          DefaultMinRequests,
		Paused:               r.Paused,
		Abort:                d.Annotations[v1alpha1.AnnotationRolloutAbort],
		Promote:              d.Annotations[v1alpha1.AnnotationRolloutPromote],
	}
	if r.MaxUnavailable != nil {
		p.MaxUnavailable = int(*r.MaxUnavailable)
	}
	if r.MaxUnavailablePercent != nil {
		p.Percent = int(*r.MaxUnavailablePercent)
	}
	if r.Canary != nil && r.Canary.Count > 0 {
		p.CanaryCount = int(r.Canary.Count)
	}
	if g := r.Gates; g != nil {
		p.MaxErrorRateIncrease = decimalOr(g.MaxErrorRateIncrease, p.MaxErrorRateIncrease)
		p.MaxLatencyRatio = decimalOr(g.MaxLatencyRatio, p.MaxLatencyRatio)
		if g.MinRequests > 0 {
			p.MinRequests = int64(g.MinRequests)
		}
		p.DriftGate = g.Drift
	}
	return p
}

func durationOr(d *metav1.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

func decimalOr(s string, def float64) float64 {
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 {
		return f
	}
	return def
}

// WaveSize is how many clusters of total may switch at once: MaxUnavailable and Percent of
// total, the smaller of those set, at least one.
func (p Policy) WaveSize(total int) int {
	n := 0
	if p.MaxUnavailable > 0 {
		n = p.MaxUnavailable
	}
	if p.Percent > 0 {
		pc := max(1, p.Percent*total/100)
		if n == 0 || pc < n {
			n = pc
		}
	}
	return max(1, n)
}

// Cluster is what the controller knows of one selected cluster.
type Cluster struct {
	// Name is the Cluster name.
	Name string
	// Labels are the Cluster's labels (for the wave order).
	Labels map[string]string
	// Canary is set when the deployment's canary selector matches the cluster.
	Canary bool
	// LastSeen is when the hub last heard from the cluster's agent; zero for never.
	LastSeen time.Time
	// Active is the version the cluster reports serving for the deployment.
	Active string
	// Phase and Error are what it reports of the version it was given.
	Phase v1alpha1.ClusterPhase
	Error string
	// Health is what it reports of the requests its active version served.
	Health *v1alpha1.ServingHealth
	// Drift is the drift monitoring the hub holds of the cluster (nil: none).
	Drift *v1alpha1.DriftStatus
}

// EventKind names what happened in a step.
type EventKind string

// Kinds of Event.
const (
	EventStarted    EventKind = "Started"
	EventWave       EventKind = "WaveStarted"
	EventWavePassed EventKind = "WavePassed"
	EventSkipped    EventKind = "Skipped"
	EventGateFailed EventKind = "GateFailed"
	EventRolledBack EventKind = "RolledBack"
	EventSucceeded  EventKind = "Succeeded"
	EventPromoted   EventKind = "Promoted"
)

// Event is something a step did, for the hub's log, alerts and tests.
type Event struct {
	Kind    EventKind
	Version string
	Wave    int32
	Cluster string
	Reason  string
}

// Assign returns the version st gives cluster, and the rollback mark that lets the cluster's
// guard take it when it replaces the failed version. ok is false when st says nothing (no
// rollout yet): the cluster gets the resolved version.
func Assign(st *v1alpha1.RolloutStatus, cluster string) (v v1alpha1.RolloutVersion, rb *v1alpha1.Rollback, ok bool) {
	if st == nil || st.Target.Version == "" {
		return v, nil, false
	}
	if e := find(st, cluster); e != nil {
		if e.RolledBackFrom != "" {
			rb = &v1alpha1.Rollback{From: slices.Clone(st.FailedVersions), Reason: e.RollbackReason}
		}
		return e.Version, rb, true
	}
	if st.Phase == v1alpha1.RolloutSucceeded {
		return st.Target, nil, true
	}
	return st.Stable, nil, true
}

// find returns st's entry for cluster, or nil.
func find(st *v1alpha1.RolloutStatus, cluster string) *v1alpha1.RolloutCluster {
	i, found := slices.BinarySearchFunc(st.Clusters, cluster, func(e v1alpha1.RolloutCluster, name string) int {
		return cmp.Compare(e.Cluster, name)
	})
	if !found {
		return nil
	}
	return &st.Clusters[i]
}

// Step is the rollout controller: it returns the rollout state after prev, for the resolved
// version target, under policy p, given the selected clusters and the time, and what it did.
// prev is not changed; nil means no rollout yet. A state with no entry for a cluster gives it
// the stable version while a rollout runs, the target once it succeeded.
func Step(prev *v1alpha1.RolloutStatus, target v1alpha1.RolloutVersion, p Policy, clusters []Cluster, now time.Time) (*v1alpha1.RolloutStatus, []Event) {
	now = now.UTC().Truncate(time.Second) // as the state stores times
	if target.Version == "" {
		return prev, nil
	}
	m := &machine{p: p, now: now, byName: make(map[string]*Cluster, len(clusters))}
	for i := range clusters {
		m.byName[clusters[i].Name] = &clusters[i]
	}
	m.total = len(clusters)
	switch {
	case prev == nil:
		// The first version resolved: nothing to protect, it goes everywhere.
		m.st = &v1alpha1.RolloutStatus{Phase: v1alpha1.RolloutSucceeded, Target: target, Stable: target,
			Message: fmt.Sprintf("%s is the first version", target.Version)}
		m.count()
		return m.st, []Event{{Kind: EventSucceeded, Version: target.Version, Reason: "first version"}}
	case prev.Target.Version != target.Version || prev.Target.Digest != target.Digest:
		if slices.Contains(prev.FailedVersions, target.Version) {
			st := prev.DeepCopy()
			st.Message = fmt.Sprintf("%s failed its gate before and is not given again; deploy another version", target.Version)
			return st, nil
		}
		m.start(prev, target, clusters)
	default:
		m.st = prev.DeepCopy()
	}
	if m.st.Phase == v1alpha1.RolloutSucceeded || m.st.Phase == v1alpha1.RolloutFailed {
		return m.st, m.events
	}
	if !p.Canary {
		// The strategy became All during the rollout: the rest get it now.
		m.succeed(EventPromoted, "strategy All: every cluster gets it now")
		return m.st, m.events
	}
	m.progress(clusters)
	return m.st, m.events
}

// machine is one step's working state.
type machine struct {
	p      Policy
	now    time.Time
	st     *v1alpha1.RolloutStatus
	byName map[string]*Cluster
	total  int
	events []Event
}

func (m *machine) emit(e Event) {
	e.Version = m.st.Target.Version
	m.events = append(m.events, e)
}

func (m *machine) nowTime() *metav1.Time {
	t := metav1.NewTime(m.now)
	return &t
}

// start begins the rollout of target after prev: every cluster keeps what prev gave it
// until its wave.
func (m *machine) start(prev *v1alpha1.RolloutStatus, target v1alpha1.RolloutVersion, clusters []Cluster) {
	stable := prev.Stable
	if prev.Phase == v1alpha1.RolloutSucceeded {
		stable = prev.Target
	}
	m.st = &v1alpha1.RolloutStatus{Phase: v1alpha1.RolloutProgressing, Target: target, Stable: stable,
		FailedVersions: slices.Clone(prev.FailedVersions), Started: m.nowTime()}
	if !m.p.Canary {
		m.st.Phase, m.st.Stable = v1alpha1.RolloutSucceeded, target
		m.st.Message = fmt.Sprintf("%s sent to every cluster at once (strategy All)", target.Version)
		m.count()
		m.emit(Event{Kind: EventSucceeded, Reason: "strategy All"})
		return
	}
	for _, c := range clusters {
		v, _, _ := Assign(prev, c.Name)
		e := v1alpha1.RolloutCluster{Cluster: c.Name, Version: v, State: v1alpha1.RolloutClusterPending, Since: m.nowTime()}
		if old := find(prev, c.Name); old != nil {
			// Rolled back, maybe still serving a failed version: the mark stays.
			e.RolledBackFrom, e.RollbackReason = old.RolledBackFrom, old.RollbackReason
		}
		m.st.Clusters = append(m.st.Clusters, e)
	}
	m.sortClusters()
	m.emit(Event{Kind: EventStarted, Reason: fmt.Sprintf("from %s", stable.Version)})
}

func (m *machine) sortClusters() {
	slices.SortFunc(m.st.Clusters, func(a, b v1alpha1.RolloutCluster) int { return cmp.Compare(a.Cluster, b.Cluster) })
}

// progress moves a running rollout on: it follows the selection, applies the operator's
// commands, checks the gates, and starts the next wave when the current one passed.
func (m *machine) progress(clusters []Cluster) {
	m.reselect(clusters)
	target := m.st.Target.Version
	switch {
	case m.p.Abort == target:
		m.fail("aborted by the operator")
		return
	case m.p.Promote == target:
		m.succeed(EventPromoted, "promoted by the operator: every cluster gets it now")
		return
	}
	if why := m.gates(); why != "" {
		m.fail(why)
		return
	}
	if m.p.Paused {
		m.st.Phase = v1alpha1.RolloutPaused
	} else {
		m.st.Phase = v1alpha1.RolloutProgressing
	}
	if m.waveOpen() || m.p.Paused {
		m.count()
		return
	}
	if m.nextWave() {
		m.count()
	}
}

// reselect follows the selection: clusters no longer selected leave the rollout, new ones
// join it pending, with the stable version.
func (m *machine) reselect(clusters []Cluster) {
	kept := m.st.Clusters[:0]
	have := make(map[string]bool, len(m.st.Clusters))
	for _, e := range m.st.Clusters {
		if _, ok := m.byName[e.Cluster]; ok {
			kept = append(kept, e)
			have[e.Cluster] = true
		}
	}
	m.st.Clusters = kept
	added := false
	for _, c := range clusters {
		if !have[c.Name] {
			m.st.Clusters = append(m.st.Clusters, v1alpha1.RolloutCluster{Cluster: c.Name, Version: m.st.Stable,
				State: v1alpha1.RolloutClusterPending, Since: m.nowTime()})
			added = true
		}
	}
	if added {
		m.sortClusters()
	}
}

// live reports whether c was heard from within SilentAfter; a cluster not heard from since
// the rollout started counts from then.
func (m *machine) live(c *Cluster) bool {
	if c == nil {
		return false
	}
	from := c.LastSeen
	if s := m.st.Started; s != nil && s.Time.After(from) {
		from = s.Time
	}
	return m.now.Sub(from) <= m.p.SilentAfter
}

// serves reports whether c serves the target, healthy as far as it says.
func (m *machine) serves(c *Cluster) bool {
	return c != nil && c.Active == m.st.Target.Version && c.Phase == v1alpha1.PhaseActive && c.Error == ""
}

// gates checks every cluster given the target and moves the current wave's clusters on. It
// returns why the gate failed, or "".
func (m *machine) gates() string {
	target := m.st.Target.Version
	for i := range m.st.Clusters {
		e := &m.st.Clusters[i]
		if e.Version.Version != target || e.State == v1alpha1.RolloutClusterPending {
			continue
		}
		c := m.byName[e.Cluster]
		if why := m.unhealthy(e, c); why != "" {
			return fmt.Sprintf("gate failed in wave %d: cluster %s: %s", e.Wave, e.Cluster, why)
		}
		if e.State != v1alpha1.RolloutClusterUpdating {
			continue
		}
		since := e.Since.Time
		switch {
		case m.serves(c):
			e.State, e.Since = v1alpha1.RolloutClusterDone, m.nowTime()
		case !m.live(c) && m.now.Sub(latest(c.LastSeen, since)) > m.p.SilentAfter:
			e.State, e.Since = v1alpha1.RolloutClusterSkipped, m.nowTime()
			e.Reason = fmt.Sprintf("silent for more than %s", m.p.SilentAfter)
			m.emit(Event{Kind: EventSkipped, Cluster: e.Cluster, Wave: e.Wave, Reason: e.Reason})
		case m.live(c) && m.now.Sub(since) > m.p.ProgressDeadline:
			why := fmt.Sprintf("did not serve %s within %s (phase %s", target, m.p.ProgressDeadline, orPending(c.Phase))
			if c.Error != "" {
				why += ": " + c.Error
			}
			return fmt.Sprintf("gate failed in wave %d: cluster %s: %s)", e.Wave, e.Cluster, why)
		}
	}
	return ""
}

func orPending(p v1alpha1.ClusterPhase) v1alpha1.ClusterPhase {
	if p == "" {
		return v1alpha1.PhasePending
	}
	return p
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// unhealthy says why cluster c, given the target in entry e, fails the gate: it reports the
// target active but not serving, or serving it with more errors or a slower p99 than its
// baseline allows. It returns "" for a healthy cluster, or one with too little to judge.
func (m *machine) unhealthy(e *v1alpha1.RolloutCluster, c *Cluster) string {
	if c == nil || c.Active != m.st.Target.Version {
		return ""
	}
	if c.Error != "" {
		return c.Error
	}
	if d := c.Drift; m.p.DriftGate && d != nil && d.Version == m.st.Target.Version && d.Alarm {
		return fmt.Sprintf("drift alarm raised for %s: its inputs do not look like its reference (%s)", d.Version, strings.Join(d.DriftedFeatures, ", "))
	}
	h := c.Health
	if h == nil || h.Version != m.st.Target.Version || h.Requests < m.p.MinRequests || h.Requests <= 0 {
		return ""
	}
	rate := float64(h.Errors) / float64(h.Requests)
	base := 0.0
	if b := e.Baseline; b != nil && b.Requests > 0 {
		base = float64(b.Errors) / float64(b.Requests)
	}
	if m.p.MaxErrorRateIncrease < 1 && rate > base+m.p.MaxErrorRateIncrease {
		return fmt.Sprintf("error rate %.3f against %.3f of the previous version (at most +%.3f)", rate, base, m.p.MaxErrorRateIncrease)
	}
	if b := e.Baseline; m.p.MaxLatencyRatio > 0 && b != nil && b.P99Micros > 0 &&
		float64(h.P99Micros) > float64(b.P99Micros)*m.p.MaxLatencyRatio {
		return fmt.Sprintf("p99 latency %s against %s of %s (at most %.2fx)", micros(h.P99Micros), micros(b.P99Micros), b.Version, m.p.MaxLatencyRatio)
	}
	return ""
}

// micros renders a latency in microseconds.
func micros(us int64) string { return (time.Duration(us) * time.Microsecond).String() }

// waveOpen reports whether the current wave still runs: a cluster is updating, or the wave
// has not baked yet. It records when the wave settled.
func (m *machine) waveOpen() bool {
	if m.st.Wave == 0 {
		return false
	}
	for _, e := range m.st.Clusters {
		if e.Wave == m.st.Wave && e.State == v1alpha1.RolloutClusterUpdating {
			return true
		}
	}
	if m.st.WaveSettled == nil {
		m.st.WaveSettled = m.nowTime()
	}
	if m.now.Sub(m.st.WaveSettled.Time) < m.p.BakeTime {
		return true
	}
	if !m.st.Verified {
		for _, e := range m.st.Clusters {
			if e.Wave == m.st.Wave && e.State == v1alpha1.RolloutClusterDone {
				m.st.Verified = true
				break
			}
		}
	}
	if m.st.WaveStarted != nil {
		// The wave passed: say so once (a passed wave has WaveStarted cleared).
		m.emit(Event{Kind: EventWavePassed, Wave: m.st.Wave})
		m.st.WaveStarted = nil
	}
	return false
}

// nextWave starts the next wave and returns true, or ends the rollout when no cluster in
// contact waits.
func (m *machine) nextWave() bool {
	target := m.st.Target.Version
	var waiting []*v1alpha1.RolloutCluster
	for i := range m.st.Clusters {
		e := &m.st.Clusters[i]
		if e.State != v1alpha1.RolloutClusterPending {
			continue
		}
		c := m.byName[e.Cluster]
		if m.serves(c) && c.Active == target {
			// Serves it already (a cluster that came back with it): nothing changes.
			e.Version, e.State, e.Since, e.Wave = m.st.Target, v1alpha1.RolloutClusterDone, m.nowTime(), m.st.Wave
			continue
		}
		if m.live(c) {
			waiting = append(waiting, e)
		}
	}
	if len(waiting) == 0 && !m.st.Verified && m.silentPending() > 0 {
		// No cluster served it healthy yet: it is not promoted to the silent ones blind.
		m.st.Message = fmt.Sprintf("waiting for a cluster in contact to verify %s: %d silent", target, m.silentPending())
		return true
	}
	if len(waiting) == 0 {
		skipped := 0
		for _, e := range m.st.Clusters {
			if e.State == v1alpha1.RolloutClusterPending || e.State == v1alpha1.RolloutClusterSkipped {
				skipped++
			}
		}
		why := fmt.Sprintf("%s reached every cluster in contact in %d wave(s)", target, m.st.Wave)
		if skipped > 0 {
			why += fmt.Sprintf("; %d silent cluster(s) skipped get it when they return", skipped)
		}
		m.succeed(EventSucceeded, why)
		return false
	}
	m.order(waiting)
	size := m.p.WaveSize(m.total)
	var wave []*v1alpha1.RolloutCluster
	if m.st.Wave == 0 {
		for _, e := range waiting {
			if m.byName[e.Cluster].Canary && len(wave) < size {
				wave = append(wave, e)
			}
		}
		if len(wave) == 0 {
			wave = waiting[:min(len(waiting), m.p.CanaryCount, size)]
		}
	} else {
		first := m.label(waiting[0])
		for _, e := range waiting {
			if len(wave) == size {
				break
			}
			if m.label(e) == first {
				wave = append(wave, e)
			}
		}
	}
	m.st.Wave++
	m.st.WaveStarted, m.st.WaveSettled = m.nowTime(), nil
	for _, e := range wave {
		c := m.byName[e.Cluster]
		if c.Health != nil && c.Health.Version == c.Active && c.Active != target {
			e.Baseline = c.Health.DeepCopy()
		}
		prev := e.Version
		e.Previous = &prev
		e.Version, e.State, e.Wave, e.Since = m.st.Target, v1alpha1.RolloutClusterUpdating, m.st.Wave, m.nowTime()
		e.Reason = ""
	}
	m.st.Message = fmt.Sprintf("wave %d: %d cluster(s) switching to %s", m.st.Wave, len(wave), target)
	m.emit(Event{Kind: EventWave, Wave: m.st.Wave, Reason: fmt.Sprintf("%d cluster(s)", len(wave))})
	return true
}

// silentPending counts the pending clusters out of contact.
func (m *machine) silentPending() int {
	n := 0
	for _, e := range m.st.Clusters {
		if e.State == v1alpha1.RolloutClusterPending && !m.live(m.byName[e.Cluster]) {
			n++
		}
	}
	return n
}

// label returns e's cluster's value of the wave-order label; "" sorts last as "\xff".
func (m *machine) label(e *v1alpha1.RolloutCluster) string {
	if m.p.WaveOrder == "" {
		return ""
	}
	if v, ok := m.byName[e.Cluster].Labels[m.p.WaveOrder]; ok {
		return v
	}
	return "\xff"
}

// order sorts clusters waiting for a wave: canaries first, then by wave-order label value,
// then by name.
func (m *machine) order(es []*v1alpha1.RolloutCluster) {
	slices.SortStableFunc(es, func(a, b *v1alpha1.RolloutCluster) int {
		ca, cb := m.byName[a.Cluster].Canary, m.byName[b.Cluster].Canary
		if ca != cb {
			if ca {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(m.label(a), m.label(b)); c != 0 {
			return c
		}
		return cmp.Compare(a.Cluster, b.Cluster)
	})
}

// fail stops the rollout for reason and rolls back every cluster given the target.
func (m *machine) fail(reason string) {
	target := m.st.Target.Version
	m.st.Phase = v1alpha1.RolloutFailed
	if !slices.Contains(m.st.FailedVersions, target) {
		m.st.FailedVersions = append(m.st.FailedVersions, target)
	}
	m.emit(Event{Kind: EventGateFailed, Wave: m.st.Wave, Reason: reason})
	kept := m.st.Clusters[:0]
	rolled := 0
	for _, e := range m.st.Clusters {
		switch {
		case e.Version.Version == target:
			back := m.st.Stable
			if e.Previous != nil && e.Previous.Version != "" {
				back = *e.Previous // the version it had: a superseded one is not undone too
			}
			e.Version, e.State, e.Since, e.Reason = back, v1alpha1.RolloutClusterRolledBack, m.nowTime(), reason
			e.RolledBackFrom, e.RollbackReason, e.Previous = target, reason, nil
			rolled++
			m.emit(Event{Kind: EventRolledBack, Cluster: e.Cluster, Wave: e.Wave, Reason: reason})
		case e.Version.Version == m.st.Stable.Version && e.Version.Digest == m.st.Stable.Digest && e.RolledBackFrom == "":
			continue // the default of a failed rollout
		}
		kept = append(kept, e)
	}
	m.st.Clusters = kept
	m.st.WaveStarted, m.st.WaveSettled = nil, nil
	m.st.Message = fmt.Sprintf("%s; rolled %d cluster(s) back from %s to %s", reason, rolled, target, m.st.Stable.Version)
	m.count()
}

// succeed ends the rollout: the target is the stable version, given to every cluster.
func (m *machine) succeed(kind EventKind, why string) {
	m.count()
	m.st.Phase, m.st.Stable, m.st.Clusters = v1alpha1.RolloutSucceeded, m.st.Target, nil
	m.st.WaveStarted, m.st.WaveSettled = nil, nil
	m.st.Pending, m.st.Updated = 0, int32(m.total)-m.st.Skipped
	m.st.Message = why
	m.emit(Event{Kind: kind, Wave: m.st.Wave, Reason: why})
}

// count sets the counts of the state's clusters. A silent pending cluster counts as skipped.
func (m *machine) count() {
	st := m.st
	st.Updated, st.Pending, st.Skipped, st.RolledBack = 0, 0, 0, 0
	if st.Phase == v1alpha1.RolloutSucceeded && st.Clusters == nil && st.Wave == 0 {
		st.Updated = int32(m.total)
		return
	}
	for _, e := range st.Clusters {
		switch e.State {
		case v1alpha1.RolloutClusterDone:
			st.Updated++
		case v1alpha1.RolloutClusterPending:
			if m.live(m.byName[e.Cluster]) {
				st.Pending++
			} else {
				st.Skipped++
			}
		case v1alpha1.RolloutClusterSkipped:
			st.Skipped++
		case v1alpha1.RolloutClusterRolledBack:
			st.RolledBack++
		}
	}
}
