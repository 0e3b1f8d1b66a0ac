package chaos

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Invariant names what a violation broke.
type Invariant string

// The invariants the campaign checks.
const (
	// Monotonic: applied revisions and active versions do not go back, and
	// only desired versions become active.
	Monotonic Invariant = "monotonic"
	// StaleRefusal: an older desired state than the applied one is refused
	// and counted.
	StaleRefusal Invariant = "stale-refusal"
	// Integrity: every cached blob hashes to its name.
	Integrity Invariant = "integrity"
	// Convergence: once faults heal, agents serve what the hub places.
	Convergence Invariant = "convergence"
	// Resolution: the hub accepts exactly the deployments that resolve.
	Resolution Invariant = "resolution"
	// OutboxLost: a record accepted into an outbox never reached the hub.
	OutboxLost Invariant = "outbox-lost"
	// OutboxTwice: a record took effect at the hub more than once.
	OutboxTwice Invariant = "outbox-twice"
	// Leak: file descriptors, threads or temporary files piled up.
	Leak Invariant = "leak"
	// Offline: an agent started with no hub does not serve its cache.
	Offline Invariant = "offline"
	// Crash: a process exited that nobody killed.
	Crash Invariant = "crash"
)

// Violation is one broken invariant.
type Violation struct {
	// Invariant is what broke.
	Invariant Invariant `json:"invariant"`
	// Agent is the agent it broke on, or -1 for none (the hub).
	Agent int `json:"agent"`
	// Detail says how.
	Detail string `json:"detail"`
}

// String is the violation on one line.
func (v Violation) String() string {
	if v.Agent < 0 {
		return fmt.Sprintf("%s: %s", v.Invariant, v.Detail)
	}
	return fmt.Sprintf("%s: agent %d: %s", v.Invariant, v.Agent, v.Detail)
}

// ModelState is one deployment in an agent's local state.
type ModelState struct {
	// Deployment and Model name the row.
	Deployment string `json:"deployment"`
	Model      string `json:"model"`
	// Active and ActiveDigest are the version served, if any.
	Active       string `json:"active,omitempty"`
	ActiveDigest string `json:"activeDigest,omitempty"`
	// Desired and DesiredDigest are the version the applied desired state names.
	Desired       string `json:"desired"`
	DesiredDigest string `json:"desiredDigest"`
	// Phase and Error are the row's phase and last error.
	Phase string `json:"phase"`
	Error string `json:"error,omitempty"`
}

// Sample is an agent's local state at one moment, as `outpost agent status`
// reads it from the agent's database.
type Sample struct {
	// Agent is the agent's index.
	Agent int `json:"agent"`
	// Applied is the applied desired-state revision.
	Applied int64 `json:"applied"`
	// RejectedStale counts refused stale desired states.
	RejectedStale int64 `json:"rejectedStale"`
	// Models has a row per deployment.
	Models []ModelState `json:"models"`
	// OutboxRecords is how many records wait for the hub.
	OutboxRecords int64 `json:"outboxRecords"`
}

func (s Sample) model(deployment string) (ModelState, bool) {
	for _, m := range s.Models {
		if m.Deployment == deployment {
			return m, true
		}
	}
	return ModelState{}, false
}

// DocModel is one model of a desired-state document.
type DocModel struct {
	// Deployment names the deployment; Model, Version and Digest the model
	// version it resolved to.
	Deployment string `json:"deployment"`
	Model      string `json:"model"`
	Version    string `json:"version"`
	Digest     string `json:"digest"`
	// AllowDowngrade is the deployment's.
	AllowDowngrade bool `json:"allowDowngrade,omitempty"`
}

// Doc is a desired-state document the hub served an agent.
type Doc struct {
	// Agent is the agent served; Revision the document's revision.
	Agent    int   `json:"agent"`
	Revision int64 `json:"revision"`
	// Models are the deployments the document places on the agent.
	Models []DocModel `json:"models"`
}

func (d Doc) model(deployment string) (DocModel, bool) {
	for _, m := range d.Models {
		if m.Deployment == deployment {
			return m, true
		}
	}
	return DocModel{}, false
}

// Monitor checks samples of agents' local state, in the order they were
// taken, against the desired-state documents the hub served the agents. A
// document must be given to Doc before any sample in which the agent may
// have applied it.
type Monitor struct {
	docs    map[int]map[int64]Doc
	applied map[int]int64
	active  map[int]map[string]DocModel // by agent and deployment: what was active at the last sample
}

// NewMonitor returns a Monitor that has seen nothing.
func NewMonitor() *Monitor {
	return &Monitor{docs: map[int]map[int64]Doc{}, applied: map[int]int64{}, active: map[int]map[string]DocModel{}}
}

// Doc records a document served to an agent.
func (m *Monitor) Doc(d Doc) {
	if m.docs[d.Agent] == nil {
		m.docs[d.Agent] = map[int64]Doc{}
	}
	m.docs[d.Agent][d.Revision] = d
}

// Docs is how many distinct documents the agents were served.
func (m *Monitor) Docs() int {
	n := 0
	for _, ds := range m.docs {
		n += len(ds)
	}
	return n
}

// Sample checks s against the agent's previous sample and the documents it
// was served:
//
//   - the applied revision did not go down;
//   - every active version was named, with its digest, by a document of a
//     revision up to the applied one;
//   - an active version lower than the previous sample's of the same model
//     came with a document, of a revision between the two samples' applied
//     revisions, that allowed downgrades for the deployment or did not have
//     it at all (the agent then dropped it, and may take any version next).
func (m *Monitor) Sample(s Sample) []Violation {
	var out []Violation
	bad := func(format string, args ...any) {
		out = append(out, Violation{Invariant: Monotonic, Agent: s.Agent, Detail: fmt.Sprintf(format, args...)})
	}
	prevApplied, seen := m.applied[s.Agent]
	if seen && s.Applied < prevApplied {
		bad("applied revision went back from %d to %d", prevApplied, s.Applied)
	}
	docs := m.docs[s.Agent]
	prev := m.active[s.Agent]
	now := map[string]DocModel{}
	for _, cur := range s.Models {
		if cur.Active == "" {
			continue
		}
		dm, ok := named(docs, cur, s.Applied)
		if !ok {
			bad("%s: active %s (%s) was in no desired state up to revision %d", cur.Deployment, cur.Active, cur.ActiveDigest, s.Applied)
			continue
		}
		now[cur.Deployment] = dm
		old, ok := prev[cur.Deployment]
		if !ok || old.Model != dm.Model || CompareVersions(dm.Version, old.Version) >= 0 {
			continue
		}
		if !downgradeAllowed(docs, cur.Deployment, prevApplied, s.Applied) {
			bad("%s: active %s went down from %s to %s between revisions %d and %d with no desired state allowing it",
				cur.Deployment, dm.Model, old.Version, dm.Version, prevApplied, s.Applied)
		}
	}
	m.applied[s.Agent] = max(s.Applied, prevApplied)
	m.active[s.Agent] = now
	return out
}

// named returns the document model, up to revision applied, that named the
// active version of cur with its digest.
func named(docs map[int64]Doc, cur ModelState, applied int64) (DocModel, bool) {
	for rev, d := range docs {
		if rev > applied {
			continue
		}
		if dm, ok := d.model(cur.Deployment); ok && dm.Version == cur.Active && dm.Digest == cur.ActiveDigest {
			return dm, true
		}
	}
	return DocModel{}, false
}

// downgradeAllowed reports whether a document of a revision in [from, to]
// allowed deployment to go down, or did not have it.
func downgradeAllowed(docs map[int64]Doc, deployment string, from, to int64) bool {
	for rev, d := range docs {
		if rev < from || rev > to {
			continue
		}
		if dm, ok := d.model(deployment); !ok || dm.AllowDowngrade {
			return true
		}
	}
	return false
}

// Converged lists how sample s differs from want, what the agent should
// serve by deployment; nothing means it converged. A deployment converged
// when its desired version is want's and that version is active, or when
// the active version is higher, want does not allow downgrades and the
// agent says it refused the downgrade. A deployment want lacks must be gone
// from the agent's state.
func Converged(want map[string]Want, s Sample) []string {
	var out []string
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		w := want[name]
		m, ok := s.model(name)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s: absent, want %s@%s", name, w.Model, w.Version))
		case m.Model != w.Model || m.Desired != w.Version:
			out = append(out, fmt.Sprintf("%s: desired %s@%s, want %s@%s", name, m.Model, m.Desired, w.Model, w.Version))
		case m.Active == w.Version && m.ActiveDigest == m.DesiredDigest:
		case m.Active != "" && CompareVersions(m.Active, w.Version) > 0 && !w.AllowDowngrade &&
			m.Phase == "Failed" && strings.Contains(m.Error, "downgrade"):
		default:
			out = append(out, fmt.Sprintf("%s: active %q, want %s (phase %s, error %q)", name, m.Active, w.Version, m.Phase, m.Error))
		}
	}
	for _, m := range s.Models {
		if _, ok := want[m.Deployment]; !ok {
			out = append(out, fmt.Sprintf("%s: still held (active %q, desired %s), want none", m.Deployment, m.Active, m.Desired))
		}
	}
	return out
}

// CheckNotes compares what an agent's outbox accepted with the notes the
// hub holds from it (their keys, in the order applied): every accepted key
// must be there, none twice. Keys that were put but not accepted (the put
// failed, say on a full disk) may or may not be there.
func CheckNotes(agent int, accepted []string, notes []string) []Violation {
	var out []Violation
	count := map[string]int{}
	for _, k := range notes {
		count[k]++
	}
	keys := make([]string, 0, len(count))
	for k := range count {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if count[k] > 1 {
			out = append(out, Violation{Invariant: OutboxTwice, Agent: agent, Detail: fmt.Sprintf("note %q applied %d times", k, count[k])})
		}
	}
	for _, k := range accepted {
		if count[k] == 0 {
			out = append(out, Violation{Invariant: OutboxLost, Agent: agent, Detail: fmt.Sprintf("note %q accepted into the outbox never reached the hub", k)})
		}
	}
	return out
}

// Outcome is the hub's answer for one outbox record.
type Outcome struct {
	// Key is the record's idempotency key.
	Key string
	// Outcome is Applied, Duplicate or Refused.
	Outcome string
}

// CheckDuplicateAnswer compares the hub's answers to one outbox batch sent
// twice in a row: the second must say Duplicate for every record the first
// applied or found a duplicate, and Refused where the first refused.
func CheckDuplicateAnswer(first, second []Outcome) error {
	if len(first) != len(second) {
		return fmt.Errorf("%d outcomes, then %d for the same batch", len(first), len(second))
	}
	for i, a := range first {
		b := second[i]
		want := "Duplicate"
		if a.Outcome == "Refused" {
			want = "Refused"
		}
		if a.Key != b.Key || b.Outcome != want {
			return fmt.Errorf("record %d: %s %s, then %s %s, want %s", i, a.Key, a.Outcome, b.Key, b.Outcome, want)
		}
	}
	return nil
}

// ProcStats are a process's open file descriptors, threads and goroutines.
type ProcStats struct {
	// FDs, Threads and Goroutines count what the process holds.
	FDs        int `json:"fds"`
	Threads    int `json:"threads"`
	Goroutines int `json:"goroutines"`
}

// Growth is how much more of each s holds than base (never below zero).
func (s ProcStats) Growth(base ProcStats) ProcStats {
	return ProcStats{FDs: max(s.FDs-base.FDs, 0), Threads: max(s.Threads-base.Threads, 0), Goroutines: max(s.Goroutines-base.Goroutines, 0)}
}

// Max is the larger of s and o, field by field.
func (s ProcStats) Max(o ProcStats) ProcStats {
	return ProcStats{FDs: max(s.FDs, o.FDs), Threads: max(s.Threads, o.Threads), Goroutines: max(s.Goroutines, o.Goroutines)}
}

// Leak slack: how many more file descriptors, threads and goroutines than
// at its first quiet moment a process may hold at a later one. Go keeps the
// threads it made for a burst of blocking calls, so threads get more room;
// a hub holds a goroutine per open connection, and the connections kept
// idle vary.
const (
	FDSlack        = 16
	ThreadSlack    = 48
	GoroutineSlack = 64
)

// CheckLeak compares a process's stats at a quiet moment (faults healed,
// everything converged) with those at its first quiet moment.
func CheckLeak(what string, base, now ProcStats) error {
	if now.FDs > base.FDs+FDSlack {
		return fmt.Errorf("%s holds %d file descriptors, %d at its first quiet moment", what, now.FDs, base.FDs)
	}
	if now.Threads > base.Threads+ThreadSlack {
		return fmt.Errorf("%s runs %d threads, %d at its first quiet moment", what, now.Threads, base.Threads)
	}
	if now.Goroutines > base.Goroutines+GoroutineSlack {
		return fmt.Errorf("%s runs %d goroutines, %d at its first quiet moment", what, now.Goroutines, base.Goroutines)
	}
	return nil
}

// TempFiles returns the paths that are leftovers of interrupted writes:
// transfers' .part and .part.state files, and durable writes' .NAME.tmp-*
// files.
func TempFiles(paths []string) []string {
	var out []string
	for _, p := range paths {
		b := path.Base(p)
		if strings.HasSuffix(b, ".part") || strings.HasSuffix(b, ".part.state") || strings.Contains(b, ".tmp-") {
			out = append(out, p)
		}
	}
	return out
}
