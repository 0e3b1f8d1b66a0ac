package rollout

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/versions"
)

var (
	v1 = v1alpha1.RolloutVersion{Version: "1.0.0", Digest: "sha256:01"}
	v2 = v1alpha1.RolloutVersion{Version: "2.0.0", Digest: "sha256:02"}
	v3 = v1alpha1.RolloutVersion{Version: "3.0.0", Digest: "sha256:03"}
)

// agent is a simulated cluster: it takes what the hub assigns, through the same rule as the
// agent's version guard, and reports it.
type agent struct {
	name    string
	labels  map[string]string
	canary  bool
	online  bool
	seen    time.Time
	active  string
	refused int // unmarked downgrades asked of it
	// slow is how many of its turns it takes to switch.
	slow, waited int
	health       *v1alpha1.ServingHealth
}

// sim runs the controller against simulated agents on a simulated clock.
type sim struct {
	t      *testing.T
	now    time.Time
	p      Policy
	target v1alpha1.RolloutVersion
	st     *v1alpha1.RolloutStatus
	agents []*agent
	// broken versions report an error once active; slow versions answer with latency.
	broken map[string]bool
	p99    map[string]int64
	// drifting versions raise the drift alarm once active.
	drifting map[string]bool
	events   []Event
	failed   map[string]bool // versions whose gate failed
	maxUpd   int             // most clusters updating at once seen
}

func newSim(t *testing.T, n int, p Policy) *sim {
	s := &sim{t: t, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), p: p, broken: map[string]bool{}, p99: map[string]int64{}, drifting: map[string]bool{}, failed: map[string]bool{}}
	for i := range n {
		s.agents = append(s.agents, &agent{name: fmt.Sprintf("c%02d", i), labels: map[string]string{}, online: true})
	}
	return s
}

func (s *sim) agent(name string) *agent {
	for _, a := range s.agents {
		if a.name == name {
			return a
		}
	}
	s.t.Fatalf("no agent %s", name)
	return nil
}

// tick lets agents act on their assignment, then steps the controller once, and checks the
// invariants.
func (s *sim) tick(d time.Duration) {
	s.t.Helper()
	s.now = s.now.Add(d)
	clusters := make([]Cluster, 0, len(s.agents))
	for _, a := range s.agents {
		if a.online {
			a.seen = s.now
			if v, rb, ok := Assign(s.st, a.name); ok && v.Version != a.active {
				s.apply(a, v.Version, rb)
			}
		}
		c := Cluster{Name: a.name, Labels: a.labels, Canary: a.canary, LastSeen: a.seen, Active: a.active, Phase: v1alpha1.PhaseActive}
		if a.active != "" && s.broken[a.active] {
			c.Error = "serving: model " + a.active + " does not load"
		}
		if a.active != "" {
			c.Health = &v1alpha1.ServingHealth{Version: a.active, Requests: 100, P99Micros: s.latency(a.active)}
			c.Drift = &v1alpha1.DriftStatus{Version: a.active, Alarm: s.drifting[a.active], DriftedFeatures: []string{"in.mean"}}
		}
		clusters = append(clusters, c)
	}
	prevFailed := maps(s.failed)
	st, ev := Step(s.st, s.target, s.p, clusters, s.now)
	s.st, s.events = st, append(s.events, ev...)
	s.check(prevFailed)
}

func maps(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (s *sim) latency(v string) int64 {
	if ms, ok := s.p99[v]; ok {
		return ms
	}
	return 10
}

// apply is the agent's guard: a lower version replaces the active one only with the hub's
// rollback mark from it.
func (s *sim) apply(a *agent, v string, rb *v1alpha1.Rollback) {
	if a.waited < a.slow {
		a.waited++
		return
	}
	a.waited = 0
	if a.active != "" {
		if c, err := versions.Compare(v, a.active); err == nil && c < 0 && (rb == nil || !slices.Contains(rb.From, a.active) || rb.Reason == "") {
			a.refused++
			return
		}
	}
	a.active = v
}

// check asserts the invariants after every step.
func (s *sim) check(failedBefore map[string]bool) {
	s.t.Helper()
	st := s.st
	if st == nil {
		return
	}
	upd := 0
	for _, e := range st.Clusters {
		if e.State == v1alpha1.RolloutClusterUpdating {
			upd++
		}
		if e.State == v1alpha1.RolloutClusterRolledBack && e.Reason == "" {
			s.t.Fatalf("cluster %s rolled back without a reason", e.Cluster)
		}
	}
	s.maxUpd = max(s.maxUpd, upd)
	if size := s.p.WaveSize(len(s.agents)); upd > size {
		s.t.Fatalf("%d clusters updating at once, wave size %d", upd, size)
	}
	if st.Phase == v1alpha1.RolloutFailed && st.Message == "" {
		s.t.Fatalf("failed rollout without a message")
	}
	for _, v := range st.FailedVersions {
		s.failed[v] = true
	}
	for _, a := range s.agents {
		v, rb, ok := Assign(st, a.name)
		if !ok {
			continue
		}
		if failedBefore[v.Version] || s.failed[v.Version] {
			s.t.Fatalf("cluster %s given %s after its gate failed", a.name, v.Version)
		}
		if rb != nil && rb.Reason == "" {
			s.t.Fatalf("rollback mark for %s without a reason", a.name)
		}
		if a.refused > 0 {
			s.t.Fatalf("cluster %s was asked an unmarked downgrade", a.name)
		}
	}
}

// run ticks until the rollout is Succeeded or Failed, or fails the test after limit ticks.
func (s *sim) run(every time.Duration, limit int) {
	s.t.Helper()
	for range limit {
		s.tick(every)
		if s.st != nil && (s.st.Phase == v1alpha1.RolloutSucceeded || s.st.Phase == v1alpha1.RolloutFailed) {
			return
		}
	}
	s.t.Fatalf("rollout still %s after %d ticks: %s", s.st.Phase, limit, s.st.Message)
}

// deploy makes v the resolved version; with everyone on stable first.
func (s *sim) deploy(v v1alpha1.RolloutVersion) {
	s.target = v
}

func (s *sim) active() map[string]int {
	out := map[string]int{}
	for _, a := range s.agents {
		out[a.active]++
	}
	return out
}

func (s *sim) count(kind EventKind) int {
	n := 0
	for _, e := range s.events {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

func canary(waveSize int) Policy {
	return Policy{Canary: true, MaxUnavailable: waveSize, CanaryCount: 1, BakeTime: time.Minute, SilentAfter: 10 * time.Minute,
		ProgressDeadline: 30 * time.Minute, MaxErrorRateIncrease: 0.05, MaxLatencyRatio: 1.5, MinRequests: 20}
}

// started returns a sim whose n clusters all serve v1.
func started(t *testing.T, n int, p Policy) *sim {
	s := newSim(t, n, p)
	s.deploy(v1)
	s.tick(time.Second)
	s.tick(time.Second)
	if got := s.active()["1.0.0"]; got != n {
		t.Fatalf("first version on %d of %d clusters", got, n)
	}
	return s
}

func TestFirstVersionAndStrategyAll(t *testing.T) {
	s := started(t, 5, Policy{})
	s.deploy(v2)
	s.tick(time.Second)
	if s.st.Phase != v1alpha1.RolloutSucceeded {
		t.Fatalf("strategy All: phase %s", s.st.Phase)
	}
	s.tick(time.Second)
	if got := s.active()["2.0.0"]; got != 5 {
		t.Fatalf("strategy All: 2.0.0 on %d of 5 clusters at once", got)
	}
}

func TestCanaryWaves(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		p     func(*Policy)
		setup func(*sim)
		waves []int // clusters per wave, in order
	}{
		{name: "first cluster, then waves of two", n: 7, waves: []int{1, 2, 2, 2}},
		{name: "percent bounds the wave", n: 10, p: func(p *Policy) { p.MaxUnavailable, p.Percent = 0, 30 }, waves: []int{1, 3, 3, 3}},
		{name: "canary selector", n: 6, setup: func(s *sim) { s.agent("c04").canary = true; s.agent("c05").canary = true },
			waves: []int{2, 2, 2}},
		{name: "canary count", n: 6, p: func(p *Policy) { p.CanaryCount = 2 }, waves: []int{2, 2, 2}},
		{name: "region by region", n: 6, p: func(p *Policy) { p.WaveOrder, p.MaxUnavailable = "region", 3 },
			setup: func(s *sim) {
				for i, a := range s.agents {
					a.labels["region"] = []string{"b", "a"}[i%2]
				}
			},
			// canary c01 (first of region a), then the rest of a (2), then b (3).
			waves: []int{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := canary(2)
			if tt.p != nil {
				tt.p(&p)
			}
			s := started(t, tt.n, p)
			if tt.setup != nil {
				tt.setup(s)
			}
			s.deploy(v2)
			s.run(10*time.Second, 500)
			if s.st.Phase != v1alpha1.RolloutSucceeded {
				t.Fatalf("phase %s: %s", s.st.Phase, s.st.Message)
			}
			var got []int
			for _, e := range s.events {
				if e.Kind == EventWave {
					var n int
					fmt.Sscanf(e.Reason, "%d", &n)
					got = append(got, n)
				}
			}
			if !slices.Equal(got, tt.waves) {
				t.Errorf("waves %v, want %v", got, tt.waves)
			}
			s.tick(time.Second)
			if got := s.active()["2.0.0"]; got != tt.n {
				t.Errorf("2.0.0 on %d of %d clusters", got, tt.n)
			}
		})
	}
}

// TestCanaryFirstWave checks which clusters the first wave takes.
func TestCanaryFirstWave(t *testing.T) {
	s := started(t, 6, canary(2))
	s.agent("c03").canary = true
	s.deploy(v2)
	s.tick(time.Second) // starts the rollout and its first wave
	s.tick(time.Second) // the canary switches
	if a := s.active(); a["2.0.0"] != 1 || s.agent("c03").active != "2.0.0" {
		t.Fatalf("after the first wave: %v, c03 on %q", a, s.agent("c03").active)
	}
	// Before the bake time passes no other cluster switches.
	for range 5 {
		s.tick(5 * time.Second)
	}
	if a := s.active(); a["2.0.0"] != 1 {
		t.Fatalf("a second wave started before the bake time: %v", a)
	}
}

func TestGateFailures(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(*sim)
		reason string
	}{
		{name: "does not load", setup: func(s *sim) { s.broken["2.0.0"] = true }, reason: "does not load"},
		{name: "slower p99", setup: func(s *sim) { s.p99["2.0.0"] = 40 }, reason: "p99 latency 40µs against 10µs"},
		{name: "drift alarm", setup: func(s *sim) { s.p.DriftGate, s.drifting["2.0.0"] = true, true }, reason: "drift alarm raised for 2.0.0"},
		{name: "never switches", setup: func(s *sim) {
			for _, a := range s.agents {
				a.slow = 1 << 30
			}
		}, reason: "did not serve 2.0.0 within 30m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := started(t, 8, canary(3))
			tt.setup(s)
			s.deploy(v2)
			s.run(30*time.Second, 500)
			if s.st.Phase != v1alpha1.RolloutFailed {
				t.Fatalf("phase %s, want Failed", s.st.Phase)
			}
			if !strings.Contains(s.st.Message, tt.reason) || !strings.Contains(s.st.Message, "wave 1") {
				t.Errorf("message %q lacks %q", s.st.Message, tt.reason)
			}
			for range 3 {
				s.tick(10 * time.Second)
			}
			if a := s.active(); a["1.0.0"] != 8 {
				t.Fatalf("after the rollback: %v, want every cluster on 1.0.0", a)
			}
			if n := s.count(EventRolledBack); tt.name != "never switches" && n != 1 {
				t.Errorf("%d clusters rolled back, want the canary alone", n)
			}
			// Another version rolls out; the failed one, deployed again, is not given.
			for _, a := range s.agents {
				a.slow = 0
			}
			s.deploy(v3)
			s.run(30*time.Second, 500)
			if s.st.Phase != v1alpha1.RolloutSucceeded {
				t.Fatalf("the next version: %s %q", s.st.Phase, s.st.Message)
			}
			s.deploy(v2)
			s.tick(time.Minute)
			if !strings.Contains(s.st.Message, "failed its gate before") {
				t.Errorf("the failed version again: %s %q", s.st.Phase, s.st.Message)
			}
		})
	}
}

func TestSilentClusters(t *testing.T) {
	s := started(t, 6, canary(2))
	// The canary falls silent as soon as it is chosen; another stays away throughout.
	s.agent("c05").online = false
	s.deploy(v2)
	s.tick(time.Second)
	s.agent("c00").online = false
	s.run(time.Minute, 200)
	if s.st.Phase != v1alpha1.RolloutSucceeded {
		t.Fatalf("phase %s: %s", s.st.Phase, s.st.Message)
	}
	if s.count(EventSkipped) != 1 || s.st.Skipped != 2 {
		t.Errorf("skipped events %d, count %d; want 1 and 2", s.count(EventSkipped), s.st.Skipped)
	}
	// Both come back and get the promoted version.
	s.agent("c00").online, s.agent("c05").online = true, true
	s.tick(time.Second)
	if a := s.active(); a["2.0.0"] != 6 {
		t.Errorf("after they returned: %v", a)
	}
}

func TestReconnectDuringRollout(t *testing.T) {
	s := started(t, 5, canary(1))
	s.agent("c04").online = false
	s.deploy(v2)
	s.tick(time.Second)
	s.tick(time.Second)
	s.tick(2 * time.Minute) // canary baked, wave 2 starts
	s.agent("c04").online = true
	s.tick(time.Second)
	if a := s.agent("c04"); a.active != "1.0.0" {
		t.Fatalf("a cluster returning mid-rollout jumped the waves to %s", a.active)
	}
	s.run(time.Minute, 200)
	s.tick(time.Second)
	if a := s.active(); a["2.0.0"] != 5 || s.st.Skipped != 0 {
		t.Errorf("%v, skipped %d", a, s.st.Skipped)
	}
}

func TestReconnectAfterFailure(t *testing.T) {
	s := started(t, 4, canary(1))
	s.broken["2.0.0"] = true
	s.deploy(v2)
	s.tick(time.Second) // wave 1: c00
	s.agent("c00").online = false
	// c00 took 2.0.0 before it fell silent? It did not: it was offline when it was given it.
	s.agent("c01").online = false
	s.tick(time.Second)
	s.agent("c00").online = true
	s.run(time.Minute, 100)
	if s.st.Phase != v1alpha1.RolloutFailed {
		t.Fatalf("phase %s", s.st.Phase)
	}
	s.agent("c01").online = true
	s.tick(time.Second)
	s.tick(time.Second)
	if a := s.active(); a["1.0.0"] != 4 {
		t.Errorf("after the rollback: %v", a)
	}
}

func TestOperatorCommands(t *testing.T) {
	t.Run("pause holds the next wave", func(t *testing.T) {
		s := started(t, 4, canary(1))
		s.p.Paused = true
		s.deploy(v2)
		for range 10 {
			s.tick(time.Minute)
		}
		if s.st.Phase != v1alpha1.RolloutPaused || s.active()["2.0.0"] != 0 {
			t.Fatalf("paused: %s %v", s.st.Phase, s.active())
		}
		s.p.Paused = false
		s.run(time.Minute, 100)
		if s.st.Phase != v1alpha1.RolloutSucceeded {
			t.Fatalf("resumed: %s", s.st.Phase)
		}
	})
	t.Run("abort rolls back", func(t *testing.T) {
		s := started(t, 4, canary(1))
		s.deploy(v2)
		s.tick(time.Second)
		s.tick(time.Second)
		s.p.Abort = "2.0.0"
		s.tick(time.Second)
		if s.st.Phase != v1alpha1.RolloutFailed || !strings.Contains(s.st.Message, "aborted") {
			t.Fatalf("aborted: %s %q", s.st.Phase, s.st.Message)
		}
		s.tick(time.Second)
		if a := s.active(); a["1.0.0"] != 4 {
			t.Errorf("after abort: %v", a)
		}
	})
	t.Run("promote skips the waves", func(t *testing.T) {
		s := started(t, 6, canary(1))
		s.deploy(v2)
		s.tick(time.Second)
		s.p.Promote = "2.0.0"
		s.tick(time.Second)
		s.tick(time.Second)
		if s.st.Phase != v1alpha1.RolloutSucceeded || s.active()["2.0.0"] != 6 {
			t.Fatalf("promoted: %s %v", s.st.Phase, s.active())
		}
	})
	t.Run("strategy All mid-rollout sends it everywhere", func(t *testing.T) {
		s := started(t, 5, canary(1))
		s.deploy(v2)
		s.tick(time.Second)
		s.p.Canary = false
		s.tick(time.Second)
		s.tick(time.Second)
		if s.st.Phase != v1alpha1.RolloutSucceeded || s.active()["2.0.0"] != 5 {
			t.Fatalf("strategy All: %s %v", s.st.Phase, s.active())
		}
	})
	t.Run("a command for another version does nothing", func(t *testing.T) {
		s := started(t, 3, canary(1))
		s.p.Abort = "9.9.9"
		s.deploy(v2)
		s.run(time.Minute, 100)
		if s.st.Phase != v1alpha1.RolloutSucceeded {
			t.Fatalf("phase %s", s.st.Phase)
		}
	})
}

// TestSupersede checks that a version deployed during a rollout starts a new one, and that
// clusters on the superseded version are never asked to go back.
func TestSupersede(t *testing.T) {
	s := started(t, 5, canary(2))
	s.deploy(v2)
	s.tick(time.Second)
	s.tick(time.Second)
	if s.active()["2.0.0"] != 1 {
		t.Fatalf("canary: %v", s.active())
	}
	s.deploy(v3)
	s.run(time.Minute, 200)
	s.tick(time.Second)
	if a := s.active(); a["3.0.0"] != 5 {
		t.Fatalf("%v", a)
	}
}

func TestWaveSize(t *testing.T) {
	tests := []struct {
		mu, pct, total, want int
	}{
		{0, 0, 10, 1}, {3, 0, 10, 3}, {0, 25, 10, 2}, {5, 25, 10, 2}, {1, 50, 10, 1}, {0, 1, 10, 1}, {0, 100, 1000, 1000},
	}
	for _, tt := range tests {
		if got := (Policy{MaxUnavailable: tt.mu, Percent: tt.pct}).WaveSize(tt.total); got != tt.want {
			t.Errorf("WaveSize(mu %d, %d%%, %d) = %d, want %d", tt.mu, tt.pct, tt.total, got, tt.want)
		}
	}
}

// TestProperties runs random fleets, policies, partitions and good and bad versions, and
// checks the invariants after every step (sim.check): never more clusters updating than a
// wave holds, no cluster given a version after its gate failed, every rollback with a reason,
// no unmarked downgrade asked of any cluster; and that a rollout always ends once every
// cluster is back in contact, silent ones never holding it.
func TestProperties(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(seed), 7))
			p := canary(1 + r.IntN(4))
			if r.IntN(3) == 0 {
				p.Percent = 1 + r.IntN(60)
			}
			p.CanaryCount = 1 + r.IntN(3)
			p.BakeTime = time.Duration(r.IntN(5)) * time.Minute
			p.SilentAfter = time.Duration(1+r.IntN(10)) * time.Minute
			if r.IntN(2) == 0 {
				p.WaveOrder = "region"
			}
			n := 1 + r.IntN(25)
			s := started(t, n, p)
			for _, a := range s.agents {
				a.canary = r.IntN(5) == 0
				a.slow = r.IntN(3)
				if r.IntN(4) > 0 {
					a.labels["region"] = fmt.Sprint(r.IntN(3))
				}
			}
			for i, v := range []v1alpha1.RolloutVersion{v2, v3, {Version: "4.0.0", Digest: "sha256:04"}} {
				if r.IntN(3) == 0 {
					s.broken[v.Version] = true
				} else if r.IntN(4) == 0 {
					s.p99[v.Version] = 100
				}
				s.deploy(v)
				// Partitions come and go while the rollout runs; sometimes a new version
				// supersedes this one before it ends.
				steps := 20 + r.IntN(80)
				if i < 2 && r.IntN(4) == 0 {
					steps = r.IntN(10)
				}
				for range steps {
					for _, a := range s.agents {
						if r.IntN(10) == 0 {
							a.online = !a.online
						}
					}
					s.tick(time.Duration(1+r.IntN(90)) * time.Second)
				}
			}
			// Everyone returns: the rollout ends; once succeeded every cluster serves its
			// version, and none serves a version whose gate failed.
			for _, a := range s.agents {
				a.online = true
				a.slow = 0
			}
			s.run(time.Minute, 2000)
			s.tick(time.Second)
			s.tick(time.Second)
			act := s.active()
			if s.st.Phase == v1alpha1.RolloutSucceeded && act[s.target.Version] != n {
				t.Fatalf("rollout of %s succeeded, clusters on %v", s.target.Version, act)
			}
			for v := range act {
				if s.failed[v] {
					t.Fatalf("clusters on %s, whose gate failed: %v", v, act)
				}
			}
		})
	}
}

// TestUnverifiedNotPromoted checks that a version no cluster served healthy is not promoted
// to silent clusters: the rollout waits for one to return, and then goes on.
func TestUnverifiedNotPromoted(t *testing.T) {
	s := started(t, 3, canary(1))
	for _, a := range s.agents {
		a.online = false
	}
	s.deploy(v2)
	for range 30 {
		s.tick(time.Minute)
	}
	if s.st.Phase != v1alpha1.RolloutProgressing || !strings.Contains(s.st.Message, "waiting for a cluster in contact to verify 2.0.0") {
		t.Fatalf("all silent: %s %q", s.st.Phase, s.st.Message)
	}
	for _, a := range s.agents {
		// Only the canary, chosen while the rollout's first silentAfter ran, holds it.
		if v, _, _ := Assign(s.st, a.name); v.Version == "2.0.0" && a.name != "c00" {
			t.Fatalf("%s given 2.0.0 unverified", a.name)
		}
	}
	s.agent("c02").online = true
	s.tick(time.Second)
	s.tick(time.Second)
	if a := s.agent("c02"); a.active != "2.0.0" {
		t.Fatalf("the returning cluster was not made the next wave: %s", a.active)
	}
	for _, a := range s.agents {
		a.online = true
	}
	s.run(time.Minute, 100)
	if s.st.Phase != v1alpha1.RolloutSucceeded {
		t.Fatalf("phase %s", s.st.Phase)
	}
}

// TestDriftGateOff checks that a drift alarm fails no gate unless the
// deployment asks for the drift gate.
func TestDriftGateOff(t *testing.T) {
	s := started(t, 8, canary(3))
	s.drifting["2.0.0"] = true
	s.deploy(v2)
	s.run(30*time.Second, 500)
	if s.st.Phase != v1alpha1.RolloutSucceeded {
		t.Fatalf("phase %s %q, want Succeeded: the drift gate is off", s.st.Phase, s.st.Message)
	}
}
