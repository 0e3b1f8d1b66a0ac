// Package chaos is the pure part of Outpost's fault campaign: the plan of
// operations and faults drawn from a seed, a model of what the hub should
// ask of every agent after the operations applied so far, the invariant
// checks over what the campaign observes, and the shrinking of a failing
// plan to a shorter one that still fails. It does no I/O and reads no
// clock: internal/chaos/harness runs a plan against real processes and
// feeds the observations in.
//
// The invariants are those of docs/design.md as the campaign can observe
// them:
//
//   - monotonic: an agent's applied desired-state revision never goes down,
//     and an active version goes down only when a desired state the agent
//     may have applied in between allowed it (allowDowngrade, or the
//     deployment left the cluster); a version becomes active only if a
//     desired state named it;
//   - integrity: every blob in an agent's cache hashes to its name;
//   - convergence: once faults heal, every agent serves what the model of
//     the hub says it should, within a bound;
//   - outbox: every record accepted into an agent's outbox reaches the hub,
//     and takes effect there once;
//   - no leaks: file descriptors, threads and temporary files do not pile
//     up in the agents.
package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind names what a step does.
type Kind string

// Operations: what an operator or the edge does.
const (
	// Push pushes version Version of model Model.
	Push Kind = "push"
	// Sign signs Model@Version with the key the agents trust.
	Sign Kind = "sign"
	// Apply creates or replaces the deployment Deployment.
	Apply Kind = "apply"
	// DeleteDeployment deletes the deployment Name.
	DeleteDeployment Kind = "delete-deployment"
	// Relabel replaces the labels of agent Agent's cluster with Labels,
	// when the cluster exists.
	Relabel Kind = "relabel"
	// DeleteCluster deletes agent Agent's cluster; its agent joins again
	// with the labels it started with.
	DeleteCluster Kind = "delete-cluster"
	// PutNotes puts N notes into agent Agent's outbox.
	PutNotes Kind = "put-notes"
)

// Faults.
const (
	// Partition cuts agent Agent's link and refuses new connections.
	Partition Kind = "partition"
	// Throttle limits agent Agent's link to N bytes per second each way,
	// with Latency added each way.
	Throttle Kind = "throttle"
	// Corrupt flips a bit in every N-th byte coming down agent Agent's link.
	Corrupt Kind = "corrupt"
	// Cut closes agent Agent's connections after N more bytes down.
	Cut Kind = "cut"
	// KillAgent kills agent Agent with SIGKILL and starts it again after Down.
	KillAgent Kind = "kill-agent"
	// KillHub kills the hub with SIGKILL and starts it again after Down;
	// meanwhile the agents of Offline are killed and started with no hub.
	KillHub Kind = "kill-hub"
	// StaleDesired answers agent Agent's next desired-state request with an
	// older document than it applied.
	StaleDesired Kind = "stale-desired"
	// DuplicateOutbox sends agent Agent's next outbox batch to the hub
	// twice; a note is put into its outbox so that one goes out.
	DuplicateOutbox Kind = "duplicate-outbox"
	// LoseOutboxAnswer lets the hub apply agent Agent's next outbox batch
	// and drops the answer; a note is put so that one goes out.
	LoseOutboxAnswer Kind = "lose-outbox-answer"
	// DiskFull fills the file system of agent Agent's data directory.
	DiskFull Kind = "disk-full"
)

// Repairs and checks.
const (
	// Heal clears agent Agent's link of partition, throttle, corruption and
	// armed cuts.
	Heal Kind = "heal"
	// FreeDisk gives agent Agent's file system its space back.
	FreeDisk Kind = "free-disk"
	// Check heals everything, waits for every agent to converge and checks
	// every invariant.
	Check Kind = "check"
)

// faultKinds are the kinds that inject a fault.
var faultKinds = []Kind{Partition, Throttle, Corrupt, Cut, KillAgent, KillHub, StaleDesired, DuplicateOutbox, LoseOutboxAnswer, DiskFull}

// opKinds are the operations.
var opKinds = []Kind{Push, Sign, Apply, DeleteDeployment, Relabel, DeleteCluster, PutNotes}

// IsFault reports whether k injects a fault.
func (k Kind) IsFault() bool { return slices.Contains(faultKinds, k) }

// IsOperation reports whether k is an operation.
func (k Kind) IsOperation() bool { return slices.Contains(opKinds, k) }

// FaultKinds lists every kind of fault, in a fixed order.
func FaultKinds() []Kind { return slices.Clone(faultKinds) }

// OperationKinds lists every kind of operation, in a fixed order.
func OperationKinds() []Kind { return slices.Clone(opKinds) }

// Deployment is a ModelDeployment's spec as the campaign applies it.
type Deployment struct {
	// Name is the deployment's name.
	Name string `json:"name"`
	// Model is the model's name.
	Model string `json:"model"`
	// Version is an exact version or a range.
	Version string `json:"version"`
	// Selector is one matchLabels selector; empty selects every cluster.
	Selector map[string]string `json:"selector,omitempty"`
	// AllowDowngrade and RequireSignature are the spec's fields.
	AllowDowngrade   bool `json:"allowDowngrade,omitempty"`
	RequireSignature bool `json:"requireSignature,omitempty"`
}

// String is a compact form, such as "d1 m@^1 {region=north} allowDowngrade".
func (d Deployment) String() string {
	s := fmt.Sprintf("%s %s@%s %s", d.Name, d.Model, d.Version, labelString(d.Selector))
	if d.AllowDowngrade {
		s += " allowDowngrade"
	}
	if d.RequireSignature {
		s += " requireSignature"
	}
	return s
}

// Step is one operation, fault, repair or check of a plan.
type Step struct {
	// ID is the step's place in the plan it was drawn in; it stays when a
	// plan is shrunk, so that names derived from it (note keys) do too.
	ID int `json:"id"`
	// Kind is what the step does.
	Kind Kind `json:"kind"`
	// Agent is the agent acted on, by index.
	Agent int `json:"agent,omitempty"`
	// Model and Version name a model version (Push, Sign).
	Model   string `json:"model,omitempty"`
	Version string `json:"version,omitempty"`
	// Deployment is the spec to apply (Apply).
	Deployment *Deployment `json:"deployment,omitempty"`
	// Name is the deployment to delete (DeleteDeployment).
	Name string `json:"name,omitempty"`
	// Labels are the cluster's new labels (Relabel).
	Labels map[string]string `json:"labels,omitempty"`
	// N is a count: notes (PutNotes), bytes per second (Throttle), every
	// N-th byte (Corrupt), bytes before the cut (Cut).
	N int64 `json:"n,omitempty"`
	// Latency is added each way (Throttle).
	Latency time.Duration `json:"latency,omitempty"`
	// Down is how long a killed process stays down (KillAgent, KillHub).
	Down time.Duration `json:"down,omitempty"`
	// Offline are the agents killed and started while the hub is down (KillHub).
	Offline []int `json:"offline,omitempty"`
	// Gap is how long to let things run after the step.
	Gap time.Duration `json:"gap,omitempty"`
}

// String is the step on one line, such as "#12 partition agent 2".
func (s Step) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s", s.ID, s.Kind)
	switch s.Kind {
	case Push, Sign:
		fmt.Fprintf(&b, " %s@%s", s.Model, s.Version)
	case Apply:
		if s.Deployment != nil {
			fmt.Fprintf(&b, " %s", s.Deployment)
		}
	case DeleteDeployment:
		fmt.Fprintf(&b, " %s", s.Name)
	case Relabel:
		fmt.Fprintf(&b, " agent %d %s", s.Agent, labelString(s.Labels))
	case PutNotes:
		fmt.Fprintf(&b, " agent %d n=%d", s.Agent, s.N)
	case Throttle:
		fmt.Fprintf(&b, " agent %d %dB/s +%s", s.Agent, s.N, s.Latency)
	case Corrupt:
		fmt.Fprintf(&b, " agent %d every %dB", s.Agent, s.N)
	case Cut:
		fmt.Fprintf(&b, " agent %d after %dB", s.Agent, s.N)
	case KillAgent:
		fmt.Fprintf(&b, " agent %d down %s", s.Agent, s.Down)
	case KillHub:
		fmt.Fprintf(&b, " down %s", s.Down)
		if len(s.Offline) > 0 {
			fmt.Fprintf(&b, " restarting agents %v offline", s.Offline)
		}
	case Check:
	default:
		fmt.Fprintf(&b, " agent %d", s.Agent)
	}
	if s.Gap > 0 {
		fmt.Fprintf(&b, " (+%s)", s.Gap)
	}
	return b.String()
}

// labelString formats labels sorted by key, as {k=v,k=v}.
func labelString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// The label values the campaign gives clusters and selects them by, the
// models it pushes and the names of the deployments it applies: read-only
// tables.
var (
	regions         = []string{"north", "south", "east"}
	tiers           = []string{"edge", "store"}
	models          = []string{"m", "n"}
	deploymentNames = []string{"d0", "d1", "d2"}
)

// InitialLabels are the labels agent i joins with, and joins again with
// after its cluster was deleted.
func InitialLabels(i int) map[string]string {
	return map[string]string{"region": regions[i%len(regions)], "tier": tiers[i%len(tiers)]}
}

// PlanConfig shapes a generated plan.
type PlanConfig struct {
	// Agents is the number of agents (at least 1).
	Agents int
	// Faults is how many faults to inject; the plan ends with the check
	// after the last.
	Faults int
	// CheckEvery is the number of steps between checks (default 40).
	CheckEvery int
	// MaxGap bounds the pause after a step (default 300ms); about one step
	// in ten pauses up to ten times longer, to let transfers finish.
	MaxGap time.Duration
	// NoDiskFull leaves out DiskFull faults.
	NoDiskFull bool
}

// weight is a kind and its relative frequency.
type weight struct {
	kind Kind
	w    int
}

// weights are the relative frequencies of the kinds of steps.
var weights = []weight{
	{Push, 8}, {Sign, 3}, {Apply, 12}, {DeleteDeployment, 2}, {Relabel, 4}, {DeleteCluster, 1}, {PutNotes, 7},
	{Partition, 8}, {Throttle, 6}, {Corrupt, 4}, {Cut, 6}, {KillAgent, 7}, {KillHub, 2},
	{StaleDesired, 5}, {DuplicateOutbox, 4}, {LoseOutboxAnswer, 4}, {DiskFull, 3},
	{Heal, 8}, {FreeDisk, 3},
}

// planner is the state the generator keeps to draw sensible steps.
type planner struct {
	rng      *rand.Rand
	cfg      PlanConfig
	versions map[string][]string // pushed, by model, in push order
	signed   map[string]bool     // model@version
	deps     map[string]Deployment
	diskFull map[int]bool
	steps    []Step
}

// Generate draws a plan from seed: the first steps push a version of each
// model, sign it and deploy it to every cluster; then operations, faults and
// repairs follow at random, with a Check every cfg.CheckEvery steps and at
// the end, once cfg.Faults faults are in. The same seed and config give the
// same plan.
func Generate(seed uint64, cfg PlanConfig) []Step {
	if cfg.Agents < 1 {
		cfg.Agents = 1
	}
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = 40
	}
	if cfg.MaxGap <= 0 {
		cfg.MaxGap = 300 * time.Millisecond
	}
	p := &planner{
		rng: rand.New(rand.NewPCG(seed, 0x0c4a05)), cfg: cfg,
		versions: map[string][]string{}, signed: map[string]bool{}, deps: map[string]Deployment{}, diskFull: map[int]bool{},
	}
	for _, m := range models {
		p.add(Step{Kind: Push, Model: m, Version: "1.0.0"})
		p.add(Step{Kind: Sign, Model: m, Version: "1.0.0"})
	}
	p.add(Step{Kind: Apply, Deployment: &Deployment{Name: "d0", Model: "m", Version: "^1", Selector: map[string]string{}}})
	p.add(Step{Kind: Apply, Deployment: &Deployment{Name: "d1", Model: "n", Version: "^1", Selector: map[string]string{"tier": "edge"}}})
	faults, since := 0, len(p.steps)
	for faults < cfg.Faults {
		s := p.draw()
		if s.Kind.IsFault() {
			faults++
		}
		s.Gap = p.gap()
		p.add(s)
		if since++; since >= cfg.CheckEvery {
			p.add(Step{Kind: Check})
			since = 0
		}
	}
	if last := p.steps[len(p.steps)-1]; last.Kind != Check {
		p.add(Step{Kind: Check})
	}
	return p.steps
}

// add appends s with the next ID and records what it changes.
func (p *planner) add(s Step) {
	s.ID = len(p.steps)
	switch s.Kind {
	case Push:
		p.versions[s.Model] = append(p.versions[s.Model], s.Version)
	case Sign:
		p.signed[s.Model+"@"+s.Version] = true
	case Apply:
		p.deps[s.Deployment.Name] = *s.Deployment
	case DeleteDeployment:
		delete(p.deps, s.Name)
	case DiskFull:
		p.diskFull[s.Agent] = true
	case FreeDisk:
		delete(p.diskFull, s.Agent)
	case Check:
		p.diskFull = map[int]bool{}
	}
	p.steps = append(p.steps, s)
}

func (p *planner) gap() time.Duration {
	g := time.Duration(p.rng.Int64N(int64(p.cfg.MaxGap)))
	if p.rng.IntN(10) == 0 {
		g *= 10
	}
	return g.Round(time.Millisecond)
}

// draw picks the next step at random among the kinds that make sense now.
func (p *planner) draw() Step {
	for {
		total := 0
		for _, w := range weights {
			total += w.w
		}
		n := p.rng.IntN(total)
		var k Kind
		for _, w := range weights {
			if n < w.w {
				k = w.kind
				break
			}
			n -= w.w
		}
		if s, ok := p.step(k); ok {
			return s
		}
	}
}

// step draws the details of a step of kind k, or reports that k makes no
// sense now.
func (p *planner) step(k Kind) (Step, bool) {
	agent := p.rng.IntN(p.cfg.Agents)
	s := Step{Kind: k, Agent: agent}
	switch k {
	case Push:
		s.Model = models[p.rng.IntN(len(models))]
		s.Version = p.nextVersion(s.Model)
	case Sign:
		var unsigned []string
		for _, m := range models {
			for _, v := range p.versions[m] {
				if !p.signed[m+"@"+v] {
					unsigned = append(unsigned, m+"@"+v)
				}
			}
		}
		if len(unsigned) == 0 {
			return s, false
		}
		s.Model, s.Version, _ = strings.Cut(unsigned[p.rng.IntN(len(unsigned))], "@")
	case Apply:
		d := p.deployment()
		s.Deployment = &d
	case DeleteDeployment:
		if len(p.deps) == 0 {
			return s, false
		}
		s.Name = p.pickDeployment()
	case Relabel:
		s.Labels = map[string]string{"region": regions[p.rng.IntN(len(regions))], "tier": tiers[p.rng.IntN(len(tiers))]}
	case PutNotes:
		s.N = 1 + p.rng.Int64N(3)
	case Throttle:
		s.N = (64 << 10) + p.rng.Int64N(960<<10)
		s.Latency = time.Duration(p.rng.IntN(100)) * time.Millisecond
	case Corrupt:
		s.N = 4_000 + p.rng.Int64N(60_000) // long polls carry a few KB: corrupt some
	case Cut:
		s.N = 1 + p.rng.Int64N(300<<10)
	case KillAgent:
		s.Down = time.Duration(p.rng.IntN(1500)) * time.Millisecond
	case KillHub:
		s.Down = time.Duration(500+p.rng.IntN(3000)) * time.Millisecond
		if p.rng.IntN(2) == 0 {
			s.Offline = []int{agent}
			if other := p.rng.IntN(p.cfg.Agents); other != agent {
				s.Offline = append(s.Offline, other)
			}
		}
	case DiskFull:
		if p.cfg.NoDiskFull || p.diskFull[agent] {
			return s, false
		}
	case FreeDisk:
		if !p.diskFull[agent] {
			return s, false
		}
	}
	return s, true
}

// nextVersion is a version of model not pushed yet: mostly the next minor,
// sometimes a patch of an older minor (which ranges such as ~1.2 pick up).
func (p *planner) nextVersion(model string) string {
	vs := p.versions[model]
	minor := 0
	for _, v := range vs {
		var ma, mi, pa int
		fmt.Sscanf(v, "%d.%d.%d", &ma, &mi, &pa)
		minor = max(minor, mi)
	}
	if len(vs) > 0 && p.rng.IntN(4) == 0 {
		mi := p.rng.IntN(minor + 1)
		for pa := 1; ; pa++ {
			v := fmt.Sprintf("1.%d.%d", mi, pa)
			if !slices.Contains(vs, v) {
				return v
			}
		}
	}
	return fmt.Sprintf("1.%d.0", minor+1)
}

func (p *planner) pickDeployment() string {
	names := make([]string, 0, len(p.deps))
	for n := range p.deps {
		names = append(names, n)
	}
	slices.Sort(names)
	return names[p.rng.IntN(len(names))]
}

// deployment draws a spec: a change to an existing deployment (a new
// version or range, another selector, allowDowngrade or requireSignature
// toggled) or a new one.
func (p *planner) deployment() Deployment {
	var d Deployment
	if len(p.deps) > 0 && p.rng.IntN(4) > 0 {
		d = p.deps[p.pickDeployment()]
		d.Selector = cloneLabels(d.Selector)
		switch p.rng.IntN(5) {
		case 0:
			d.AllowDowngrade = !d.AllowDowngrade
			return d
		case 1:
			d.RequireSignature = !d.RequireSignature
			return d
		case 2:
			d.Selector = p.selector()
			return d
		}
		d.Version = p.constraint(d.Model)
		return d
	}
	d = Deployment{Name: deploymentNames[p.rng.IntN(len(deploymentNames))], Model: models[p.rng.IntN(len(models))]}
	if old, ok := p.deps[d.Name]; ok && p.rng.IntN(5) > 0 {
		d.Model = old.Model // mostly, a deployment keeps its model
	}
	d.Version = p.constraint(d.Model)
	d.Selector = p.selector()
	d.AllowDowngrade = p.rng.IntN(3) == 0
	d.RequireSignature = p.rng.IntN(5) == 0
	return d
}

func (p *planner) selector() map[string]string {
	switch p.rng.IntN(4) {
	case 0:
		return map[string]string{}
	case 1:
		return map[string]string{"tier": tiers[p.rng.IntN(len(tiers))]}
	}
	return map[string]string{"region": regions[p.rng.IntN(len(regions))]}
}

// constraint draws an exact version of model or a range over its versions.
func (p *planner) constraint(model string) string {
	vs := p.versions[model]
	if len(vs) == 0 {
		return "^1"
	}
	v := vs[p.rng.IntN(len(vs))]
	var ma, mi, pa int
	fmt.Sscanf(v, "%d.%d.%d", &ma, &mi, &pa)
	switch p.rng.IntN(6) {
	case 0, 1:
		return v
	case 2:
		return fmt.Sprintf("~1.%d", mi)
	case 3:
		return fmt.Sprintf(">=1.%d.0 <1.%d.0", mi, mi+2)
	case 4:
		return "1.x"
	}
	return "^1"
}

func cloneLabels(l map[string]string) map[string]string {
	out := make(map[string]string, len(l))
	for k, v := range l {
		out[k] = v
	}
	return out
}

// Count counts the steps of each kind.
func Count(steps []Step) map[Kind]int {
	out := map[Kind]int{}
	for _, s := range steps {
		out[s.Kind]++
	}
	return out
}
