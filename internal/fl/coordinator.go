package fl

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"slices"
	"time"

	"outpost.dev/outpost/internal/privacy"
	"outpost.dev/outpost/internal/secagg"
)

// Output is what one step of the coordinator produces: the assignments
// that changed (the adapter writes each as the cluster's desired state,
// after storing Published when there is one), the model it published, and
// events for the job's status and log.
type Output struct {
	Assignments []Assignment `json:"assignments,omitempty"`
	Published   *GlobalModel `json:"published,omitempty"`
	Events      []Event      `json:"events,omitempty"`
}

func (o *Output) merge(p Output) {
	o.Assignments = append(o.Assignments, p.Assignments...)
	o.Events = append(o.Events, p.Events...)
	if p.Published != nil {
		o.Published = p.Published
	}
}

// Event is something that happened to the job, in a human sentence.
type Event struct {
	Time    time.Time `json:"time"`
	Round   int       `json:"round"`
	Kind    string    `json:"kind"` // started, aggregated, abandoned, done, failed
	Message string    `json:"message"`
}

// JobState is where the job stands.
type JobState string

// Job states.
const (
	Waiting JobState = "waiting" // for MinClients online clusters
	Running JobState = "running"
	Done    JobState = "done"
	Failed  JobState = "failed"
)

// Status is the job's status, for the resource's status field.
type Status struct {
	State   JobState `json:"state"`
	Round   int      `json:"round"` // models aggregated so far
	Attempt int      `json:"attempt,omitempty"`
	Phase   Phase    `json:"phase,omitempty"`
	Model   ModelRef `json:"model"`
	Epsilon float64  `json:"epsilon,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	// Ring is the width in bits of the secure round's ring (ChooseRing),
	// and RingReason why it was chosen.
	Ring       int    `json:"ring,omitempty"`
	RingReason string `json:"ringReason,omitempty"`
	// Plans are the latest local work and encoding chosen per cluster.
	Plans   []Plan    `json:"plans,omitempty"`
	History []Summary `json:"history,omitempty"`
}

// Plan is the local work and encoding chosen for a cluster, and why.
type Plan struct {
	Cluster    string   `json:"cluster"`
	LocalSteps int      `json:"localSteps"`
	Encoding   Encoding `json:"encoding"`
	// Ring is the width in bits of the ring of the cluster's secure cohort
	// (0: a plain update, of Encoding).
	Ring   int    `json:"ring,omitempty"`
	Reason string `json:"reason"`
}

// Summary is one aggregated round.
type Summary struct {
	Round        int       `json:"round"`
	Time         time.Time `json:"time"`
	Participants int       `json:"participants"`
	Dropped      int       `json:"dropped,omitempty"`
	// Loss is the updates' mean final local training loss; Accuracy their
	// clusters' accuracy, on their local validation splits, of the model
	// the round started from (both weighted by samples; 0 when not
	// measured).
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"`
	Epsilon  float64 `json:"epsilon,omitempty"`
	// UploadBytes is the sum of the updates' encoded sizes.
	UploadBytes int64 `json:"uploadBytes"`
	// Ring is the width in bits of the ring the updates were masked in
	// (0: plain updates).
	Ring int `json:"ring,omitempty"`
	// Staleness is the oldest update's (FedBuff): how many models behind
	// the current one it was made from.
	Staleness int `json:"staleness,omitempty"`
}

// ErrRefused wraps every refusal of a report; a refused report leaves the
// coordinator's state unchanged.
var ErrRefused = errors.New("fl: report refused")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

// Coordinator is a federated job's round protocol at the hub: a pure state
// machine driven by reports (Handle) and time (Tick). It does no I/O and
// reads no clock: the caller passes the time, persists Snapshot after every
// step that returned output, and delivers the output. It is not safe for
// concurrent use.
type Coordinator struct {
	st      state
	servers map[int]*secagg.Server // live secure rounds, rebuilt from st on Restore
	noise   io.Reader
}

// state is everything the coordinator knows; Snapshot serialises it.
type state struct {
	Spec       JobSpec                  `json:"spec"`
	State      JobState                 `json:"state"`
	Reason     string                   `json:"reason,omitempty"`
	Version    uint64                   `json:"version"` // of the last assignment issued
	Model      GlobalModel              `json:"model"`
	Clusters   map[string]*clusterState `json:"clusters"`
	Cohorts    []*cohort                `json:"cohorts,omitempty"`
	NextCohort int                      `json:"nextCohort"`
	Attempt    int                      `json:"attempt"` // of the current synchronous round
	Retries    int                      `json:"retries"` // rounds abandoned in a row
	Buffer     accum                    `json:"buffer"`  // FedBuff's plain updates
	RDP        []float64                `json:"rdp,omitempty"`
	History    []Summary                `json:"history,omitempty"`
}

type clusterState struct {
	Facts      ClusterFacts `json:"facts"`
	Assignment Assignment   `json:"assignment"`
	Plan       *Plan        `json:"plan,omitempty"`
	// Suspect: missed a key exchange; left out of the next attempt.
	Suspect bool `json:"suspect,omitempty"`
}

// cohort is one round's (FedBuff: one assignment's or one secure
// buffer's) set of clusters.
type cohort struct {
	ID       int                `json:"id"`
	Round    int                `json:"round"`
	Attempt  int                `json:"attempt"`
	Base     ModelRef           `json:"base"`
	Members  []string           `json:"members"` // sorted; a member's secagg id is its index
	Phase    Phase              `json:"phase"`
	Deadline time.Time          `json:"deadline"`
	Weight   map[string]float64 `json:"weight"`
	Steps    map[string]int     `json:"steps"`
	Nova     bool               `json:"nova,omitempty"`
	// Received are the members whose plain updates Acc sums.
	Received map[string]bool `json:"received,omitempty"`
	Acc      accum           `json:"acc"`
	Secure   *secureState    `json:"secure,omitempty"`
}

// maskedMeta is what the coordinator keeps of a masked update besides
// its share of MaskedSum.
type maskedMeta struct {
	Samples    int     `json:"samples"`
	LocalSteps int     `json:"localSteps"`
	Metrics    Metrics `json:"metrics"`
}

type secureState struct {
	N      int      `json:"n"`
	K      int      `json:"k"`
	T      int      `json:"t"`
	Length int      `json:"length"`
	Seed   [32]byte `json:"seed"`
	Tag    string   `json:"tag"`
	Range  float64  `json:"range"`
	// Bits is the ring's width (0, in snapshots from before rings had
	// other widths: 32); RingReason says why it was chosen.
	Bits       int                             `json:"bits,omitempty"`
	RingReason string                          `json:"ringReason,omitempty"`
	Keys       map[int]secagg.Keys             `json:"keys"`
	Shares     map[int][]secagg.EncryptedShare `json:"shares"`
	Masked     map[int]maskedMeta              `json:"masked"`
	// MaskedSum is the sum of the masked vectors received: all the server
	// does with them is add them up, so a restored server is given the
	// sum as the first sender's vector and zeros as the others'.
	MaskedSum Ring                    `json:"maskedSum,omitzero"`
	Closed    bool                    `json:"closed,omitempty"`
	Reveals   map[int][]secagg.Reveal `json:"reveals"`
}

func (s *secureState) config() secagg.Config {
	return secagg.Config{N: s.N, K: s.K, T: s.T, Length: s.Length, Round: []byte(s.Tag), Seed: s.Seed, Bits: s.width()}
}

// width is the ring's width in bits.
func (s *secureState) width() int {
	if s.Bits == 0 {
		return 32
	}
	return s.Bits
}

// New starts a job from its initial model's weights (InitialWeights). Its
// output publishes the initial model as round 0.
func New(spec JobSpec, initial [][]float32, now time.Time) (*Coordinator, Output, error) {
	if err := spec.Validate(); err != nil {
		return nil, Output{}, err
	}
	want, err := InitialWeights(spec.Model, 1)
	if err != nil {
		return nil, Output{}, err
	}
	if err := sameShape(want, initial); err != nil {
		return nil, Output{}, fmt.Errorf("fl: job %q: initial weights: %w", spec.Job, err)
	}
	w := cloneWeights(initial)
	c := &Coordinator{st: state{Spec: spec, State: Waiting, Clusters: map[string]*clusterState{}, NextCohort: 1,
		Model: GlobalModel{Ref: ModelRef{Round: 0, Digest: Digest(w)}, Weights: w}}, servers: map[int]*secagg.Server{}}
	if spec.DP != nil {
		c.st.RDP = make([]float64, len(privacy.DefaultOrders))
	}
	g := c.Global()
	out := Output{Published: &g}
	out.Events = append(out.Events, Event{Time: now, Kind: "started", Message: fmt.Sprintf("job %s: initial model %s published; waiting for %d clusters", spec.Job, short(g.Ref.Digest), spec.MinClients)})
	return c, out, nil
}

// SetNoiseSource sets where the coordinator draws the Gaussian noise it
// adds to aggregates (central DP): crypto/rand.Reader unless set.
func (c *Coordinator) SetNoiseSource(r io.Reader) { c.noise = r }

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// Global returns a copy of the current global model.
func (c *Coordinator) Global() GlobalModel {
	g := c.st.Model
	g.Weights = cloneWeights(g.Weights)
	return g
}

// Status returns the job's status.
func (c *Coordinator) Status() Status {
	s := Status{State: c.st.State, Round: c.st.Model.Ref.Round, Model: c.st.Model.Ref, Epsilon: c.st.Model.Epsilon,
		Reason: c.st.Reason, History: slices.Clone(c.st.History)}
	if c.sync() && len(c.st.Cohorts) == 1 {
		co := c.st.Cohorts[0]
		s.Attempt, s.Phase = co.Attempt, co.Phase
		if co.Secure != nil {
			s.Ring, s.RingReason = co.Secure.width(), co.Secure.RingReason
		}
	}
	for _, name := range c.names() {
		if p := c.st.Clusters[name].Plan; p != nil {
			s.Plans = append(s.Plans, *p)
		}
	}
	return s
}

// Facts returns the facts cluster last reported, Online as last told,
// and whether it reported any.
func (c *Coordinator) Facts(cluster string) (ClusterFacts, bool) {
	cs, ok := c.st.Clusters[cluster]
	if !ok {
		return ClusterFacts{}, false
	}
	return cs.Facts, true
}

// Assignments returns the current assignment of every cluster that has
// one, sorted by cluster.
func (c *Coordinator) Assignments() []Assignment {
	var out []Assignment
	for _, name := range c.names() {
		if a := c.st.Clusters[name].Assignment; a.Version > 0 {
			out = append(out, a)
		}
	}
	return out
}

// NextDeadline is the earliest time at which Tick has something to do
// (zero when nothing waits on time).
func (c *Coordinator) NextDeadline() time.Time {
	var d time.Time
	for _, co := range c.st.Cohorts {
		if d.IsZero() || co.Deadline.Before(d) {
			d = co.Deadline
		}
	}
	return d
}

func (c *Coordinator) names() []string {
	out := make([]string, 0, len(c.st.Clusters))
	for n := range c.st.Clusters {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (c *Coordinator) sync() bool { return c.st.Spec.Strategy != FedBuff }

func (c *Coordinator) over() bool { return c.st.State == Done || c.st.State == Failed }

// Snapshot is the coordinator's whole state, JSON-serialisable.
type Snapshot struct {
	State state `json:"state"`
}

// Snapshot returns a deep copy of the state, to persist.
func (c *Coordinator) Snapshot() Snapshot {
	b, err := json.Marshal(c.st)
	if err != nil {
		panic(fmt.Sprintf("fl: snapshot: %v", err)) // every field is plain data
	}
	var s Snapshot
	if err := json.Unmarshal(b, &s.State); err != nil {
		panic(fmt.Sprintf("fl: snapshot: %v", err))
	}
	return s
}

// Restore rebuilds a coordinator from a snapshot. Secure rounds resume:
// their servers are rebuilt by replaying the messages the snapshot holds.
func Restore(s Snapshot) (*Coordinator, error) {
	b, err := json.Marshal(s.State)
	if err != nil {
		return nil, fmt.Errorf("fl: restore: %w", err)
	}
	c := &Coordinator{servers: map[int]*secagg.Server{}}
	if err := json.Unmarshal(b, &c.st); err != nil {
		return nil, fmt.Errorf("fl: restore: %w", err)
	}
	if err := c.st.Spec.Validate(); err != nil {
		return nil, fmt.Errorf("fl: restore: %w", err)
	}
	if c.st.Clusters == nil {
		c.st.Clusters = map[string]*clusterState{}
	}
	for _, co := range c.st.Cohorts {
		if co.Received == nil {
			co.Received = map[string]bool{}
		}
		if co.Weight == nil {
			co.Weight = map[string]float64{}
		}
		if co.Steps == nil {
			co.Steps = map[string]int{}
		}
		if co.Secure == nil {
			continue
		}
		s := co.Secure
		if s.Keys == nil {
			s.Keys = map[int]secagg.Keys{}
		}
		if s.Shares == nil {
			s.Shares = map[int][]secagg.EncryptedShare{}
		}
		if s.Masked == nil {
			s.Masked = map[int]maskedMeta{}
		}
		if s.Reveals == nil {
			s.Reveals = map[int][]secagg.Reveal{}
		}
		srv, err := replay(co.Secure)
		if err != nil {
			return nil, fmt.Errorf("fl: restore: cohort %d: %w", co.ID, err)
		}
		c.servers[co.ID] = srv
	}
	return c, nil
}

func replay(s *secureState) (*secagg.Server, error) {
	srv, err := secagg.NewServer(s.config())
	if err != nil {
		return nil, err
	}
	for _, id := range sortedKeys(s.Keys) {
		if err := srv.AddKeys(s.Keys[id]); err != nil {
			return nil, err
		}
	}
	for _, id := range sortedKeys(s.Shares) {
		if err := srv.AddShares(id, s.Shares[id]); err != nil {
			return nil, err
		}
	}
	for i, id := range sortedKeys(s.Masked) {
		y := make([]uint32, s.Length)
		if i == 0 {
			if len(s.MaskedSum.Words) != s.Length || s.MaskedSum.Width() != s.width() {
				return nil, fmt.Errorf("fl: masked sum of %d %d-bit values, the round sums %d in a %d-bit ring",
					len(s.MaskedSum.Words), s.MaskedSum.Width(), s.Length, s.width())
			}
			y = s.MaskedSum.Words
		}
		if err := srv.AddMasked(id, y); err != nil {
			return nil, err
		}
	}
	if s.Closed {
		srv.Close()
		for _, id := range sortedKeys(s.Reveals) {
			if err := srv.AddReveal(id, s.Reveals[id]); err != nil {
				return nil, err
			}
		}
	}
	return srv, nil
}

func sortedKeys[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Handle takes one report from a cluster. A report that breaks the
// protocol is refused with an error wrapping ErrRefused and changes
// nothing.
func (c *Coordinator) Handle(now time.Time, r Report) (Output, error) {
	if r.Job != c.st.Spec.Job {
		return Output{}, refuse("report for job %q reached job %q", r.Job, c.st.Spec.Job)
	}
	if r.Cluster == "" {
		return Output{}, refuse("report without a cluster")
	}
	if r.Kind == KindFacts {
		return c.handleFacts(now, r)
	}
	if c.over() {
		return Output{}, refuse("job %s is %s", c.st.Spec.Job, c.st.State)
	}
	cs, ok := c.st.Clusters[r.Cluster]
	if !ok {
		return Output{}, refuse("cluster %q takes no part in job %s", r.Cluster, c.st.Spec.Job)
	}
	a := cs.Assignment
	if r.Version != a.Version {
		return Output{}, refuse("%s answers assignment v%d; its current one is v%d", r.Cluster, r.Version, a.Version)
	}
	co := c.cohortOf(r.Cluster)
	if co == nil || a.Phase == Idle {
		return Output{}, refuse("%s is in no round now", r.Cluster)
	}
	if r.Round != co.Round || r.Attempt != co.Attempt {
		return Output{}, refuse("%s reports for round %d attempt %d; the round is %d attempt %d", r.Cluster, r.Round, r.Attempt, co.Round, co.Attempt)
	}
	want := map[Phase]ReportKind{Train: KindUpdate, Advertise: KindKeys, Share: KindShares, Mask: KindMasked, Unmask: KindReveal}[co.Phase]
	if r.Kind != want {
		return Output{}, refuse("%s sent %s in the %s phase, which wants %s", r.Cluster, r.Kind, co.Phase, want)
	}
	switch r.Kind {
	case KindUpdate:
		return c.handleUpdate(now, co, r)
	default:
		return c.handleSecure(now, co, r)
	}
}

func (c *Coordinator) cohortOf(cluster string) *cohort {
	for _, co := range c.st.Cohorts {
		if slices.Contains(co.Members, cluster) {
			return co
		}
	}
	return nil
}

func (c *Coordinator) handleFacts(now time.Time, r Report) (Output, error) {
	f := r.Facts
	if f == nil {
		return Output{}, refuse("%s: facts report without facts", r.Cluster)
	}
	finite := func(v float64) bool { return v >= 0 && !math.IsInf(v, 0) }
	switch {
	case !finite(f.BandwidthBps):
		return Output{}, refuse("%s: facts.bandwidthBps %v: want 0 or more", r.Cluster, f.BandwidthBps)
	case !finite(f.SamplesPerSec):
		return Output{}, refuse("%s: facts.samplesPerSec %v: want 0 or more", r.Cluster, f.SamplesPerSec)
	case f.Samples < 0:
		return Output{}, refuse("%s: facts.samples %d: want 0 or more", r.Cluster, f.Samples)
	case f.OnlineFor < 0:
		return Output{}, refuse("%s: facts.onlineFor %v: want 0 or more", r.Cluster, f.OnlineFor)
	}
	cs, ok := c.st.Clusters[r.Cluster]
	if !ok {
		cs = &clusterState{}
		c.st.Clusters[r.Cluster] = cs
	}
	cs.Facts = *f
	if c.over() {
		return Output{}, nil
	}
	var out Output
	if co := c.cohortOf(r.Cluster); co != nil && !f.Online {
		out.merge(c.settle(now, co))
	}
	out.merge(c.advance(now))
	return out, nil
}

// settle closes a cohort's phase early when every member that has not
// answered it is offline: waiting for the deadline would change nothing.
func (c *Coordinator) settle(now time.Time, co *cohort) Output {
	answered := func(i int, m string) bool {
		switch co.Phase {
		case Train:
			return co.Received[m]
		case Advertise:
			_, ok := co.Secure.Keys[i]
			return ok
		case Share:
			_, ok := co.Secure.Shares[i]
			return ok
		case Mask:
			_, ok := co.Secure.Masked[i]
			return ok
		case Unmask:
			_, sent := co.Secure.Masked[i]
			_, ok := co.Secure.Reveals[i]
			return ok || !sent
		}
		return true
	}
	for i, m := range co.Members {
		if !answered(i, m) && c.st.Clusters[m].Facts.Online {
			return Output{}
		}
	}
	return c.timeout(now, co)
}

// Tick moves the job on at time now: phases that timed out close, rounds
// start when enough clusters are online.
func (c *Coordinator) Tick(now time.Time) Output {
	if c.over() {
		return Output{}
	}
	var out Output
	for _, co := range slices.Clone(c.st.Cohorts) {
		if !now.Before(co.Deadline) && c.live(co) {
			out.merge(c.timeout(now, co))
		}
	}
	out.merge(c.advance(now))
	return out
}

func (c *Coordinator) live(co *cohort) bool {
	return slices.Contains(c.st.Cohorts, co)
}

// advance starts what can start: the next synchronous round, or FedBuff
// assignments for idle clusters.
func (c *Coordinator) advance(now time.Time) Output {
	var out Output
	if c.over() {
		return out
	}
	if c.st.Model.Ref.Round >= c.st.Spec.Rounds {
		return c.finish(now, Done, fmt.Sprintf("%d rounds done", c.st.Model.Ref.Round))
	}
	if c.sync() {
		if len(c.st.Cohorts) > 0 {
			return out
		}
		return c.startRound(now)
	}
	return c.startAsync(now)
}

// idleOnline returns the clusters online and not in a cohort, sorted.
func (c *Coordinator) idleOnline() []string {
	var out []string
	for _, n := range c.names() {
		cs := c.st.Clusters[n]
		if cs.Facts.Online && c.cohortOf(n) == nil {
			out = append(out, n)
		}
	}
	return out
}

// draw returns a deterministic random stream for purpose in round, attempt.
func (c *Coordinator) draw(purpose string, round, attempt int) *mrand.Rand {
	h := sha256.New()
	fmt.Fprintf(h, "outpost fl %s %s %d %d %d", purpose, c.st.Spec.Job, c.st.Spec.Seed, round, attempt)
	var seed [32]byte
	copy(seed[:], h.Sum(nil))
	return mrand.New(mrand.NewChaCha8(seed))
}

func (c *Coordinator) startRound(now time.Time) Output {
	spec := c.st.Spec
	var cands []string
	suspects := 0
	for _, n := range c.idleOnline() {
		if c.st.Clusters[n].Suspect {
			suspects++
			continue
		}
		cands = append(cands, n)
	}
	if len(cands) < spec.MinClients && suspects > 0 {
		// Give the suspects another chance rather than wait forever.
		for _, n := range c.idleOnline() {
			c.st.Clusters[n].Suspect = false
		}
		cands = c.idleOnline()
	}
	if len(cands) < spec.MinClients {
		c.st.State = Waiting
		c.st.Reason = fmt.Sprintf("%d of the %d clusters needed are online", len(cands), spec.MinClients)
		return Output{}
	}
	count := len(cands)
	if spec.Fraction > 0 {
		count = max(spec.MinClients, int(math.Ceil(spec.Fraction*float64(len(cands)))))
	}
	round := c.st.Model.Ref.Round + 1
	if spec.DP != nil && spec.DP.EpsilonBudget > 0 {
		eps, err := c.epsilonAfter(float64(count)/float64(len(c.st.Clusters)), 1)
		if err != nil || eps > spec.DP.EpsilonBudget {
			return c.finish(now, Done, fmt.Sprintf("round %d would spend ε %.3f, over the budget %.3f at δ %g", round, eps, spec.DP.EpsilonBudget, spec.DP.Delta))
		}
	}
	rng := c.draw("select", round, c.st.Attempt)
	rng.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	members := cands[:count]
	slices.Sort(members)
	c.st.State, c.st.Reason = Running, ""
	return c.startCohort(now, round, c.st.Attempt, members)
}

func (c *Coordinator) startAsync(now time.Time) Output {
	spec := c.st.Spec
	if spec.DP != nil && spec.DP.EpsilonBudget > 0 && len(c.st.Clusters) > 0 {
		q := float64(spec.BufferSize) / float64(len(c.st.Clusters))
		if eps, err := c.epsilonAfter(q, 1); err != nil || eps > spec.DP.EpsilonBudget {
			return c.finish(now, Done, fmt.Sprintf("model %d would spend ε %.3f, over the budget %.3f at δ %g", c.st.Model.Ref.Round+1, eps, spec.DP.EpsilonBudget, spec.DP.Delta))
		}
	}
	idle := c.idleOnline()
	if spec.SecAgg == nil {
		var out Output
		for _, n := range idle {
			out.merge(c.startCohort(now, c.st.NextCohort, 0, []string{n}))
		}
		if len(idle) > 0 {
			c.st.State, c.st.Reason = Running, ""
		}
		return out
	}
	var out Output
	for len(idle) >= spec.BufferSize && spec.BufferSize >= 2 {
		out.merge(c.startCohort(now, c.st.NextCohort, 0, idle[:spec.BufferSize]))
		idle = idle[spec.BufferSize:]
		c.st.State, c.st.Reason = Running, ""
	}
	return out
}

// startCohort makes a cohort of members and assigns them its first phase.
func (c *Coordinator) startCohort(now time.Time, round, attempt int, members []string) Output {
	spec := c.st.Spec
	co := &cohort{ID: c.st.NextCohort, Round: round, Attempt: attempt, Base: c.st.Model.Ref, Members: members,
		Weight: map[string]float64{}, Steps: map[string]int{}, Received: map[string]bool{}, Nova: spec.Adaptive}
	c.st.NextCohort++
	total := 0
	for _, m := range members {
		total += max(c.st.Clusters[m].Facts.Samples, 1)
	}
	for _, m := range members {
		w := float64(max(c.st.Clusters[m].Facts.Samples, 1)) / float64(total)
		if spec.DP != nil {
			w = 1
		}
		co.Weight[m] = w
	}
	var out Output
	var plans map[string]Plan
	if spec.SecAgg != nil {
		n := len(members)
		k := spec.SecAgg.K
		if k == 0 || k > n-1 || (k != n-1 && k%2 != 0) {
			k = n - 1
		}
		t := spec.SecAgg.T
		if t == 0 || t > k {
			t = k/2 + 1
		}
		rng := c.draw("secagg", round, attempt)
		s := &secureState{N: n, K: k, T: max(t, k/2+1), Length: len(Flatten(c.st.Model.Weights)),
			Tag: fmt.Sprintf("%s/%d/%d/%d", spec.Job, round, attempt, co.ID), Range: spec.SecAgg.Range,
			Keys: map[int]secagg.Keys{}, Shares: map[int][]secagg.EncryptedShare{}, Masked: map[int]maskedMeta{}, Reveals: map[int][]secagg.Reveal{}}
		for i := range s.Seed {
			s.Seed[i] = byte(rng.Uint32())
		}
		if s.Range == 0 {
			s.Range = 4
		}
		if spec.DP != nil {
			s.Range = spec.DP.Clip
		}
		plans, s.Bits, s.RingReason = c.planCohort(members, n, s.Range)
		srv, err := secagg.NewServer(s.config())
		if err != nil {
			c.st.NextCohort--
			return c.finish(now, Failed, fmt.Sprintf("secure aggregation of %d clusters: %v", n, err))
		}
		co.Secure = s
		co.Phase = Advertise
		co.Deadline = now.Add(spec.PhaseTimeout)
		c.servers[co.ID] = srv
	} else {
		co.Phase = Train
		co.Deadline = now.Add(spec.RoundDeadline)
		plans, _, _ = c.planCohort(members, 0, 0)
	}
	for m, p := range plans {
		co.Steps[m] = p.LocalSteps
		if spec.Adaptive || spec.Encoding == Auto || co.Secure != nil {
			c.st.Clusters[m].Plan = &p
		}
	}
	c.st.Cohorts = append(c.st.Cohorts, co)
	for _, m := range members {
		out.Assignments = append(out.Assignments, c.assign(co, m))
	}
	if c.sync() {
		// Clusters left out of the round are told to idle.
		for _, n := range c.names() {
			if !slices.Contains(members, n) && c.st.Clusters[n].Assignment.Version > 0 && c.st.Clusters[n].Assignment.Phase != Idle {
				out.Assignments = append(out.Assignments, c.idle(n))
			}
		}
		msg := fmt.Sprintf("round %d attempt %d: %d clusters (%v) from model %d", round, attempt, len(members), members, co.Base.Round)
		if co.Secure != nil {
			msg += fmt.Sprintf(", secure aggregation with %d neighbours and threshold %d, %s", co.Secure.K, co.Secure.T, co.Secure.RingReason)
		}
		out.Events = append(out.Events, Event{Time: now, Round: round, Kind: "started", Message: msg})
	}
	return out
}

func (c *Coordinator) idle(name string) Assignment {
	cs := c.st.Clusters[name]
	c.st.Version++
	cs.Assignment = Assignment{Job: c.st.Spec.Job, Cluster: name, Version: c.st.Version, Phase: Idle, Model: c.st.Model.Ref}
	return cs.Assignment
}

// assign issues member m its assignment for the cohort's current phase.
func (c *Coordinator) assign(co *cohort, m string) Assignment {
	spec := c.st.Spec
	cs := c.st.Clusters[m]
	c.st.Version++
	a := Assignment{Job: spec.Job, Cluster: m, Version: c.st.Version, Phase: co.Phase, Round: co.Round, Attempt: co.Attempt,
		Model: co.Base, Net: spec.Model, LocalEpochs: spec.LocalEpochs, BatchSize: spec.BatchSize, LR: spec.LR, Deadline: co.Deadline,
		Encoding: spec.Encoding, Normalise: co.Nova}
	if spec.Strategy == FedProx {
		a.ProxMu = spec.ProxMu
	}
	if spec.DP != nil {
		a.Clip = spec.DP.Clip
		if spec.DP.Distributed {
			a.NoiseStd = spec.DP.NoiseMultiplier * spec.DP.Clip / math.Sqrt(float64(spec.MinClients))
		}
	}
	a.LocalSteps = co.Steps[m]
	if cs.Plan != nil {
		a.Encoding, a.Reason = cs.Plan.Encoding, cs.Plan.Reason
	}
	if a.Encoding == Auto {
		a.Encoding = Float32
	}
	if s := co.Secure; s != nil {
		a.Encoding = Float32
		a.Weight = co.Weight[m]
		id := slices.Index(co.Members, m)
		sa := &SecAggAssignment{ID: id, N: s.N, K: s.K, T: s.T, Length: s.Length, Seed: s.Seed, Tag: s.Tag, Range: s.Range}
		if s.width() != 32 {
			sa.Bits = s.width()
		}
		srv := c.servers[co.ID]
		switch co.Phase {
		case Share:
			sa.Keys = srv.KeysFor(id)
		case Mask:
			sa.Shares = srv.SharesFor(id)
		case Unmask:
			sa.Sent = c.sentList(co, id)
		}
		a.SecAgg = sa
	}
	cs.Assignment = a
	return a
}

// sentList is what member id is told in unmasking: the senders among it
// and its neighbours.
func (c *Coordinator) sentList(co *cohort, id int) []int {
	list := []int{id}
	for _, j := range secagg.Neighbours(co.Secure.N, co.Secure.K, co.Secure.Seed)[id] {
		if _, ok := co.Secure.Masked[j]; ok {
			list = append(list, j)
		}
	}
	slices.Sort(list)
	return list
}

func (c *Coordinator) handleUpdate(now time.Time, co *cohort, r Report) (Output, error) {
	u := r.Update
	if u == nil {
		return Output{}, refuse("%s: update report without an update", r.Cluster)
	}
	if co.Received[r.Cluster] {
		return Output{}, refuse("%s: its update for round %d was already received", r.Cluster, co.Round)
	}
	if u.BaseRound != co.Base.Round {
		return Output{}, refuse("%s: update from model %d, the assignment's model is %d", r.Cluster, u.BaseRound, co.Base.Round)
	}
	if u.Samples < 1 || u.LocalSteps < 1 {
		return Output{}, refuse("%s: update of %d samples and %d local steps: want at least 1 of each", r.Cluster, u.Samples, u.LocalSteps)
	}
	if want := co.Steps[r.Cluster]; want > 0 && u.LocalSteps != want {
		return Output{}, refuse("%s: update of %d local steps, %d assigned", r.Cluster, u.LocalSteps, want)
	}
	if !finiteMetrics(u.Metrics) {
		return Output{}, refuse("%s: update metrics %+v: want finite values", r.Cluster, u.Metrics)
	}
	delta, err := Decode(u.Delta, Shape(c.st.Model.Weights))
	if err != nil {
		return Output{}, refuse("%s: update.delta: %v", r.Cluster, err)
	}
	if dp := c.st.Spec.DP; dp != nil {
		if n := Norm(delta); n > dp.Clip*(1+1e-4) {
			return Output{}, refuse("%s: update norm %.4g over the clip norm %g", r.Cluster, n, dp.Clip)
		}
	}
	staleness := c.st.Model.Ref.Round - co.Base.Round
	if !c.sync() && c.st.Spec.MaxStaleness > 0 && staleness > c.st.Spec.MaxStaleness {
		return Output{}, refuse("%s: update from model %d is %d versions old, over the maximum staleness %d", r.Cluster, u.BaseRound, staleness, c.st.Spec.MaxStaleness)
	}
	dp := c.st.Spec.DP != nil
	if c.sync() {
		co.Received[r.Cluster] = true
		co.Acc.add(delta, u.Samples, u.LocalSteps, u.Metrics, u.Delta.Size(), 0, c.st.Spec.Weighting, dp, co.Nova)
		if len(co.Received) == len(co.Members) {
			return c.aggregatePlain(now, co), nil
		}
		return Output{}, nil
	}
	// FedBuff: into the buffer; the cluster gets new work at once.
	c.st.Buffer.add(delta, u.Samples, u.LocalSteps, u.Metrics, u.Delta.Size(), staleness, c.st.Spec.Weighting, dp, c.st.Spec.Adaptive)
	c.dropCohort(co)
	var out Output
	if c.st.Buffer.Count >= c.st.Spec.BufferSize {
		out.merge(c.flushBuffer(now))
	}
	out.merge(c.advance(now))
	return out, nil
}

func finiteMetrics(m Metrics) bool {
	for _, v := range []float64{m.Loss, m.Accuracy, m.Seconds} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}

func (c *Coordinator) handleSecure(now time.Time, co *cohort, r Report) (Output, error) {
	s := co.Secure
	if s == nil {
		return Output{}, refuse("%s: %s report in a round without secure aggregation", r.Cluster, r.Kind)
	}
	srv := c.servers[co.ID]
	id := slices.Index(co.Members, r.Cluster)
	var out Output
	switch r.Kind {
	case KindKeys:
		if r.Keys == nil {
			return out, refuse("%s: keys report without keys", r.Cluster)
		}
		if r.Keys.ID != id {
			return out, refuse("%s: keys for client %d; it is client %d of the round", r.Cluster, r.Keys.ID, id)
		}
		if err := srv.AddKeys(*r.Keys); err != nil {
			return out, refuse("%s: %v", r.Cluster, err)
		}
		s.Keys[id] = *r.Keys
		if len(s.Keys) == s.N {
			return c.nextPhase(now, co, Share, c.st.Spec.PhaseTimeout), nil
		}
	case KindShares:
		if err := srv.AddShares(id, r.Shares); err != nil {
			return out, refuse("%s: %v", r.Cluster, err)
		}
		s.Shares[id] = r.Shares
		if len(s.Shares) == s.N {
			return c.nextPhase(now, co, Mask, c.st.Spec.RoundDeadline), nil
		}
	case KindMasked:
		m := r.Masked
		if m == nil {
			return out, refuse("%s: masked report without a vector", r.Cluster)
		}
		if m.Samples < 1 || m.LocalSteps < 1 || !finiteMetrics(m.Metrics) {
			return out, refuse("%s: masked update of %d samples, %d local steps, metrics %+v", r.Cluster, m.Samples, m.LocalSteps, m.Metrics)
		}
		if want := co.Steps[r.Cluster]; want > 0 && m.LocalSteps != want {
			return out, refuse("%s: masked update of %d local steps, %d assigned", r.Cluster, m.LocalSteps, want)
		}
		if m.Y.Width() != s.width() || len(m.Y.Words) != s.Length {
			return out, refuse("%s: a masked vector of %d %d-bit values; the round sums %d in a %d-bit ring",
				r.Cluster, len(m.Y.Words), m.Y.Width(), s.Length, s.width())
		}
		if err := srv.AddMasked(id, m.Y.Words); err != nil {
			return out, refuse("%s: %v", r.Cluster, err)
		}
		s.Masked[id] = maskedMeta{Samples: m.Samples, LocalSteps: m.LocalSteps, Metrics: m.Metrics}
		if s.MaskedSum.Words == nil {
			s.MaskedSum = Ring{Bits: s.width(), Words: make([]uint32, s.Length)}
		}
		for i, v := range m.Y.Words {
			s.MaskedSum.Words[i] = (s.MaskedSum.Words[i] + v) & ringMask(s.width())
		}
		if len(s.Masked) == s.N {
			return c.closeMasked(now, co), nil
		}
	case KindReveal:
		if err := srv.AddReveal(id, r.Reveals); err != nil {
			return out, refuse("%s: %v", r.Cluster, err)
		}
		s.Reveals[id] = r.Reveals
		if len(s.Reveals) == len(s.Masked) {
			return c.aggregateSecure(now, co), nil
		}
	default:
		return out, refuse("%s: report kind %q", r.Cluster, r.Kind)
	}
	return out, nil
}

func (c *Coordinator) nextPhase(now time.Time, co *cohort, p Phase, d time.Duration) Output {
	co.Phase, co.Deadline = p, now.Add(d)
	var out Output
	for _, m := range co.Members {
		if p == Unmask {
			if _, sent := co.Secure.Masked[slices.Index(co.Members, m)]; !sent {
				continue
			}
		}
		out.Assignments = append(out.Assignments, c.assign(co, m))
	}
	return out
}

// closeMasked ends the collection of masked vectors: with enough senders
// the round goes on to unmasking, else it is abandoned.
func (c *Coordinator) closeMasked(now time.Time, co *cohort) Output {
	s := co.Secure
	need := max(c.minCohort(), 1)
	if len(s.Masked) < need {
		return c.abandon(now, co, fmt.Sprintf("%d of %d masked updates arrived, %d needed", len(s.Masked), s.N, need))
	}
	c.servers[co.ID].Close()
	s.Closed = true
	return c.nextPhase(now, co, Unmask, c.st.Spec.PhaseTimeout)
}

// minCohort is the fewest updates a cohort aggregates.
func (c *Coordinator) minCohort() int {
	if c.sync() {
		return c.st.Spec.MinClients
	}
	return min(c.st.Spec.MinClients, c.st.Spec.BufferSize)
}

// timeout handles a cohort whose phase deadline passed.
func (c *Coordinator) timeout(now time.Time, co *cohort) Output {
	switch co.Phase {
	case Train:
		if !c.sync() {
			// A FedBuff assignment not answered in time: the cluster gets new
			// work from the current model.
			c.dropCohort(co)
			out := Output{Events: []Event{{Time: now, Round: c.st.Model.Ref.Round, Kind: "abandoned",
				Message: fmt.Sprintf("%s sent no update by the deadline", co.Members[0])}}}
			return out
		}
		if len(co.Received) < c.st.Spec.MinClients {
			return c.abandon(now, co, fmt.Sprintf("%d of %d updates arrived by the deadline, %d needed", len(co.Received), len(co.Members), c.st.Spec.MinClients))
		}
		return c.aggregatePlain(now, co)
	case Advertise, Share:
		got := len(co.Secure.Keys)
		if co.Phase == Share {
			got = len(co.Secure.Shares)
		}
		var missing []string
		for i, m := range co.Members {
			_, k := co.Secure.Keys[i]
			_, sh := co.Secure.Shares[i]
			if (co.Phase == Advertise && !k) || (co.Phase == Share && !sh) {
				missing = append(missing, m)
				c.st.Clusters[m].Suspect = true
			}
		}
		return c.abandon(now, co, fmt.Sprintf("%d of %d clusters answered the %s phase (missing %v); the round restarts without them", got, len(co.Members), co.Phase, missing))
	case Mask:
		return c.closeMasked(now, co)
	case Unmask:
		return c.aggregateSecure(now, co)
	}
	return Output{}
}

func (c *Coordinator) dropCohort(co *cohort) {
	c.st.Cohorts = slices.DeleteFunc(c.st.Cohorts, func(x *cohort) bool { return x.ID == co.ID })
	delete(c.servers, co.ID)
}

// abandon drops a cohort without aggregating anything: in synchronous
// mode the round is retried, up to MaxRetries times in a row.
func (c *Coordinator) abandon(now time.Time, co *cohort, why string) Output {
	c.dropCohort(co)
	out := Output{Events: []Event{{Time: now, Round: co.Round, Kind: "abandoned",
		Message: fmt.Sprintf("round %d attempt %d abandoned, nothing revealed: %s", co.Round, co.Attempt, why)}}}
	c.st.Retries++
	if c.sync() {
		c.st.Attempt++
	}
	if c.st.Retries > c.st.Spec.MaxRetries {
		out.merge(c.finish(now, Failed, fmt.Sprintf("%d rounds abandoned in a row; the last: %s", c.st.Retries, why)))
		return out
	}
	out.merge(c.advance(now))
	c.idleLeftovers(&out, co.Members)
	return out
}

// finish ends the job.
func (c *Coordinator) finish(now time.Time, s JobState, why string) Output {
	c.st.State, c.st.Reason = s, why
	var out Output
	for _, co := range c.st.Cohorts {
		delete(c.servers, co.ID)
	}
	c.st.Cohorts = nil
	for _, n := range c.names() {
		if a := c.st.Clusters[n].Assignment; a.Version > 0 && a.Phase != Idle {
			out.Assignments = append(out.Assignments, c.idle(n))
		}
	}
	kind := "done"
	if s == Failed {
		kind = "failed"
	}
	out.Events = append(out.Events, Event{Time: now, Round: c.st.Model.Ref.Round, Kind: kind, Message: fmt.Sprintf("job %s %s: %s", c.st.Spec.Job, s, why)})
	return out
}

func (c *Coordinator) noiseRand() (*mrand.Rand, error) {
	r := c.noise
	if r == nil {
		r = rand.Reader
	}
	var seed [32]byte
	if _, err := io.ReadFull(r, seed[:]); err != nil {
		return nil, fmt.Errorf("fl: noise source: %w", err)
	}
	return mrand.New(mrand.NewChaCha8(seed)), nil
}

// centralNoise is the standard deviation of the noise the coordinator adds
// to a sum of clipped updates (0 without DP or with distributed noise).
func (c *Coordinator) centralNoise() float64 {
	dp := c.st.Spec.DP
	if dp == nil || dp.Distributed {
		return 0
	}
	return dp.NoiseMultiplier * dp.Clip
}

// aggregatePlain averages a synchronous round's plain updates.
func (c *Coordinator) aggregatePlain(now time.Time, co *cohort) Output {
	agg, err := co.Acc.result(Shape(c.st.Model.Weights), c.st.Spec.DP != nil, co.Nova)
	if err != nil {
		return c.abandon(now, co, err.Error())
	}
	if std := c.centralNoise(); std > 0 {
		rng, err := c.noiseRand()
		if err != nil {
			return c.abandon(now, co, err.Error())
		}
		AddNoise(agg, std/float64(co.Acc.Count), rng)
	}
	return c.publish(now, co, agg, co.Acc.metrics(), co.Acc.Count, co.Acc.Bytes, 0)
}

// aggregateSecure unmasks a secure cohort's sum and applies it; with too
// few shares revealed the cohort is abandoned, its sum never formed.
func (c *Coordinator) aggregateSecure(now time.Time, co *cohort) Output {
	s := co.Secure
	if st := c.st.Model.Ref.Round - co.Base.Round; !c.sync() && c.st.Spec.MaxStaleness > 0 && st > c.st.Spec.MaxStaleness {
		// Not a failure of the protocol: the cohort's clusters start
		// afresh from the current model.
		c.dropCohort(co)
		out := Output{Events: []Event{{Time: now, Round: c.st.Model.Ref.Round, Kind: "abandoned",
			Message: fmt.Sprintf("cohort %v from model %d is %d versions old, over the maximum staleness %d: its sum is not formed", co.Members, co.Base.Round, st, c.st.Spec.MaxStaleness)}}}
		out.merge(c.advance(now))
		c.idleLeftovers(&out, co.Members)
		return out
	}
	sum, err := c.servers[co.ID].Sum()
	if err != nil {
		return c.abandon(now, co, err.Error())
	}
	enc, err := secagg.NewEncoding(s.Range, s.N, s.width())
	if err != nil {
		return c.abandon(now, co, err.Error())
	}
	vals := enc.Decode(sum)
	agg, err := Unflatten(vals, Shape(c.st.Model.Weights))
	if err != nil {
		return c.abandon(now, co, err.Error())
	}
	// Senders sent Weight·Δ (Nova: Weight·Δ/τ); the aggregate divides by
	// their total weight (Nova: times τ_eff).
	var wsum, tau, n, loss, acc float64
	for id, m := range s.Masked {
		w := co.Weight[co.Members[id]]
		wsum += w
		tau += w * float64(m.LocalSteps)
		n += float64(m.Samples)
		loss += m.Metrics.Loss * float64(m.Samples)
		acc += m.Metrics.Accuracy * float64(m.Samples)
	}
	metrics := Metrics{Loss: loss / n, Accuracy: acc / n}
	bytes := int64(s.width() / 8 * s.Length * len(s.Masked))
	f := 1 / wsum
	if co.Nova {
		f *= tau / wsum
	}
	if std := c.centralNoise(); std > 0 {
		rng, err := c.noiseRand()
		if err != nil {
			return c.abandon(now, co, err.Error())
		}
		AddNoise(agg, std, rng)
	}
	st := 0
	if !c.sync() {
		st = c.st.Model.Ref.Round - co.Base.Round
		f *= c.st.Spec.Weighting.Weight(st)
	}
	Scale(agg, f)
	return c.publish(now, co, agg, metrics, len(s.Masked), bytes, st)
}

// flushBuffer makes a FedBuff model from the buffer: each update weighted
// by its share of the buffer's samples and discounted by its staleness,
// Σ p_i·Δ_i/sqrt(1+s_i), so that stale updates move the model less.
func (c *Coordinator) flushBuffer(now time.Time) Output {
	buf := c.st.Buffer
	c.st.Buffer = accum{}
	agg, err := buf.result(Shape(c.st.Model.Weights), c.st.Spec.DP != nil, c.st.Spec.Adaptive)
	if err == nil {
		if std := c.centralNoise(); std > 0 {
			var rng *mrand.Rand
			if rng, err = c.noiseRand(); err == nil {
				AddNoise(agg, std/float64(buf.Count), rng)
			}
		}
	}
	if err != nil {
		return Output{Events: []Event{{Time: now, Kind: "abandoned", Message: "buffer dropped: " + err.Error()}}}
	}
	return c.publish(now, nil, agg, buf.metrics(), buf.Count, buf.Bytes, buf.Staleness)
}

// epsilonAfter is the ε spent after steps more rounds at sampling rate q.
func (c *Coordinator) epsilonAfter(q float64, steps int) (float64, error) {
	dp := c.st.Spec.DP
	rdp := slices.Clone(c.st.RDP)
	for i, o := range privacy.DefaultOrders {
		r, err := privacy.SampledGaussianRDP(min(q, 1), dp.NoiseMultiplier, o)
		if err != nil {
			return 0, err
		}
		rdp[i] += float64(steps) * r
	}
	eps, _, err := privacy.Epsilon(privacy.DefaultOrders, rdp, dp.Delta)
	return eps, err
}

// publish applies an aggregate delta: the next global model.
func (c *Coordinator) publish(now time.Time, co *cohort, agg [][]float32, m Metrics, participants int, bytes int64, staleness int) Output {
	var out Output
	if co != nil {
		c.dropCohort(co)
	}
	if lr := c.st.Spec.ServerLR; lr != 1 {
		Scale(agg, lr)
	}
	AddTo(c.st.Model.Weights, agg)
	c.st.Model.Ref = ModelRef{Round: c.st.Model.Ref.Round + 1, Digest: Digest(c.st.Model.Weights)}
	c.st.Model.Participants = participants
	c.st.Retries, c.st.Attempt = 0, 0
	if dp := c.st.Spec.DP; dp != nil {
		q := 1.0
		if co != nil && len(c.st.Clusters) > 0 {
			q = float64(len(co.Members)) / float64(len(c.st.Clusters))
		} else if len(c.st.Clusters) > 0 {
			q = float64(participants) / float64(len(c.st.Clusters))
		}
		for i, o := range privacy.DefaultOrders {
			if r, err := privacy.SampledGaussianRDP(min(q, 1), dp.NoiseMultiplier, o); err == nil {
				c.st.RDP[i] += r
			}
		}
		if eps, _, err := privacy.Epsilon(privacy.DefaultOrders, c.st.RDP, dp.Delta); err == nil {
			c.st.Model.Epsilon = eps
		}
	}
	for _, cs := range c.st.Clusters {
		cs.Suspect = false
	}
	dropped := 0
	if co != nil {
		dropped = len(co.Members) - participants
	}
	sum := Summary{Round: c.st.Model.Ref.Round, Time: now, Participants: participants, Dropped: dropped, Loss: m.Loss,
		Accuracy: m.Accuracy, Epsilon: c.st.Model.Epsilon, UploadBytes: bytes, Staleness: staleness}
	if co != nil && co.Secure != nil {
		sum.Ring = co.Secure.width()
	}
	c.st.History = append(c.st.History, sum)
	g := c.Global()
	out.Published = &g
	msg := fmt.Sprintf("model %d from %d updates (%d dropped): local loss %.4f, local accuracy %.4f", sum.Round, participants, dropped, m.Loss, m.Accuracy)
	if c.st.Spec.DP != nil {
		msg += fmt.Sprintf(", ε %.3f at δ %g", c.st.Model.Epsilon, c.st.Spec.DP.Delta)
	}
	out.Events = append(out.Events, Event{Time: now, Round: sum.Round, Kind: "aggregated", Message: msg})
	out.merge(c.retireStale(now))
	out.merge(c.advance(now))
	if co != nil {
		c.idleLeftovers(&out, co.Members)
	}
	return out
}

// retireStale ends the FedBuff assignments whose base model is now more
// than MaxStaleness versions old: their updates would be refused, so their
// clusters get work from the current model at once (advance).
func (c *Coordinator) retireStale(now time.Time) Output {
	var out Output
	if c.sync() || c.st.Spec.MaxStaleness == 0 {
		return out
	}
	for _, co := range slices.Clone(c.st.Cohorts) {
		if s := c.st.Model.Ref.Round - co.Base.Round; s > c.st.Spec.MaxStaleness && co.Secure == nil {
			c.dropCohort(co)
			out.Events = append(out.Events, Event{Time: now, Round: c.st.Model.Ref.Round, Kind: "abandoned",
				Message: fmt.Sprintf("%s's work from model %d is %d versions old, over the maximum staleness %d: it restarts from model %d",
					co.Members[0], co.Base.Round, s, c.st.Spec.MaxStaleness, c.st.Model.Ref.Round)})
		}
	}
	return out
}

// idleLeftovers idles the members of a finished cohort that got no new
// work.
func (c *Coordinator) idleLeftovers(out *Output, members []string) {
	for _, m := range members {
		if a := c.st.Clusters[m].Assignment; a.Phase != Idle && c.cohortOf(m) == nil {
			out.Assignments = append(out.Assignments, c.idle(m))
		}
	}
}
