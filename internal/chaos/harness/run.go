package harness

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/chaos"
	"outpost.dev/outpost/internal/hubclient"
)

// Run runs steps in order, each followed by its gap, and stops after the
// first step during or after which an invariant broke. It returns the
// index of that step (len(steps) when none broke) and an error when the
// campaign itself could not go on (a process that would not start, a
// command that failed for another reason than the fault).
func (e *Env) Run(ctx context.Context, steps []chaos.Step) (int, error) {
	start := time.Now()
	defer func() {
		e.mu.Lock()
		e.report.Duration += time.Since(start)
		e.mu.Unlock()
	}()
	for i, s := range steps {
		e.opts.Logf("%s", s)
		skipped, err := e.step(ctx, s)
		if err != nil {
			return i, fmt.Errorf("step %s: %w", s, err)
		}
		e.mu.Lock()
		e.report.Steps++
		switch {
		case skipped:
			e.report.Skipped[s.Kind]++
		case s.Kind.IsFault():
			e.report.Faults[s.Kind]++
		case s.Kind.IsOperation():
			e.report.Operations[s.Kind]++
		}
		e.mu.Unlock()
		if err := sleep(ctx, s.Gap); err != nil {
			return i, err
		}
		if vs := e.Violations(); len(vs) > 0 {
			for _, v := range vs {
				e.opts.Logf("VIOLATION %s", v)
			}
			return i, nil
		}
		if s.Kind == chaos.Check && !e.opts.StopAfter.IsZero() && time.Now().After(e.opts.StopAfter) {
			e.opts.Logf("stopping: past the end of the run")
			return i + 1, nil
		}
	}
	return len(steps), nil
}

// Report returns what the run did and found so far.
func (e *Env) Report() chaos.Report {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.report
	r.Docs = e.mon.Docs()
	r.Violations = append([]chaos.Violation(nil), e.violations...)
	r.Faults, r.Operations, r.Skipped = cloneCounts(r.Faults), cloneCounts(r.Operations), cloneCounts(r.Skipped)
	r.Converged = append([]time.Duration(nil), r.Converged...)
	r.StaleServed, r.StaleConfirmed, r.OutboxDuplicated, r.OutboxAnswersLost = 0, 0, 0, 0
	r.LinkDown, r.LinkCuts, r.LinkCorrupted, r.StaleRejected = 0, 0, 0, 0
	for _, a := range e.agents {
		served, confirmed, dup, lost := e.proxy.counts(a.name)
		r.StaleServed += served
		r.StaleConfirmed += confirmed
		r.OutboxDuplicated += dup
		r.OutboxAnswersLost += lost
		st := a.link.Stats()
		r.LinkDown += st.Down
		r.LinkCuts += st.Cut
		r.LinkCorrupted += st.Corrupted
		r.StaleRejected += e.last[a.i].RejectedStale
	}
	for i, acc := range e.accepted {
		r.NotesAccepted += len(acc)
		r.NotesApplied += e.applied[i]
	}
	return r
}

func cloneCounts(m map[chaos.Kind]int) map[chaos.Kind]int {
	out := make(map[chaos.Kind]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// step runs one step; skipped is set when it found nothing to act on.
func (e *Env) step(ctx context.Context, s chaos.Step) (skipped bool, err error) {
	if s.Agent < 0 || s.Agent >= len(e.agents) {
		return false, fmt.Errorf("no agent %d", s.Agent)
	}
	a := e.agents[s.Agent]
	switch s.Kind {
	case chaos.Push:
		dir, err := e.writeModel(s.Model, s.Version)
		if err != nil {
			return false, err
		}
		if _, err := e.cli(ctx, "model", "push", dir, "--name", s.Model, "--version", s.Version); err != nil {
			return false, err
		}
		e.world.Push(s.Model, s.Version)
	case chaos.Sign:
		if !e.world.Pushed(s.Model, s.Version) {
			return true, nil
		}
		if _, err := e.cli(ctx, "model", "sign", s.Model+"@"+s.Version, "--key", e.keyFile); err != nil {
			return false, err
		}
		e.world.Sign(s.Model, s.Version)
	case chaos.Apply:
		return e.apply(ctx, *s.Deployment)
	case chaos.DeleteDeployment:
		err := e.admin.Delete(ctx, v1alpha1.PluralModelDeployments, s.Name)
		if hubclient.Code(err) == http.StatusNotFound {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		e.world.DeleteDeployment(s.Name)
	case chaos.Relabel:
		var c v1alpha1.Cluster
		err := e.admin.Get(ctx, v1alpha1.PluralClusters, a.name, &c)
		if hubclient.Code(err) == http.StatusNotFound {
			return true, nil // deleted, and its agent did not join again yet
		}
		if err != nil {
			return false, err
		}
		c.Labels = s.Labels
		c.ResourceVersion = ""
		if err := e.admin.Apply(ctx, &c, nil); err != nil {
			return false, err
		}
		e.world.Relabel(a.i, s.Labels)
	case chaos.DeleteCluster:
		err := e.admin.Delete(ctx, v1alpha1.PluralClusters, a.name)
		if hubclient.Code(err) == http.StatusNotFound {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		e.world.DeleteCluster(a.i)
	case chaos.PutNotes:
		return false, e.putNotes(ctx, a, s)
	case chaos.Partition:
		e.proxy.taint(a.name, true)
		a.link.Partition(true)
	case chaos.Throttle:
		a.link.SetBandwidth(s.N)
		a.link.SetLatency(s.Latency)
	case chaos.Corrupt:
		e.proxy.taint(a.name, true)
		a.link.CorruptDown(s.N)
	case chaos.Cut:
		e.proxy.taint(a.name, true)
		a.link.CutDownAfter(s.N)
	case chaos.Heal:
		e.heal(a)
	case chaos.KillAgent:
		e.killAgent(a)
		if err := sleep(ctx, s.Down); err != nil {
			return false, err
		}
		return false, e.startAgent(ctx, a)
	case chaos.KillHub:
		return false, e.killHub(ctx, s)
	case chaos.StaleDesired:
		e.proxy.armStale(a.name)
	case chaos.DuplicateOutbox, chaos.LoseOutboxAnswer:
		f := outboxDuplicate
		if s.Kind == chaos.LoseOutboxAnswer {
			f = outboxLose
		}
		e.proxy.armOutbox(a.name, f)
		// A note, so that a batch goes out for the fault to act on.
		return false, e.putNotes(ctx, a, chaos.Step{ID: s.ID, N: 1})
	case chaos.DiskFull:
		if e.disks.mode == DiskOff {
			return true, nil
		}
		e.proxy.taint(a.name, true)
		return false, e.disks.fill(a.i, a.pid())
	case chaos.FreeDisk:
		return false, e.disks.free(a.i, a.pid())
	case chaos.Check:
		return false, e.check(ctx)
	default:
		return false, fmt.Errorf("unknown step kind %q", s.Kind)
	}
	return false, nil
}

// pid is the agent's process id, or 0 while it is down.
func (a *agentProc) pid() int {
	if a.p == nil {
		return 0
	}
	return a.p.pid()
}

// apply applies a deployment and checks that the hub accepted it exactly
// when the model says it resolves.
func (e *Env) apply(ctx context.Context, d chaos.Deployment) (skipped bool, err error) {
	md := &v1alpha1.ModelDeployment{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name},
		Spec: v1alpha1.ModelDeploymentSpec{
			Model:            v1alpha1.ModelRef{Name: d.Model, Version: d.Version},
			ClusterSelectors: []metav1.LabelSelector{{MatchLabels: d.Selector}},
			AllowDowngrade:   d.AllowDowngrade,
			RequireSignature: d.RequireSignature,
		},
	}
	v1alpha1.SetTypeMeta(md)
	want, resolves := e.world.Resolve(d)
	var stored v1alpha1.ModelDeployment
	err = e.admin.Apply(ctx, md, &stored)
	switch {
	case hubclient.Code(err) == http.StatusUnprocessableEntity:
		if resolves {
			e.violate(chaos.Violation{Invariant: chaos.Resolution, Agent: -1,
				Detail: fmt.Sprintf("the hub refused %s, which resolves to %s: %v", d, want, err)})
		}
		return true, nil
	case err != nil:
		return false, err
	case !resolves:
		e.violate(chaos.Violation{Invariant: chaos.Resolution, Agent: -1,
			Detail: fmt.Sprintf("the hub accepted %s (resolved to %s), which resolves to nothing", d, stored.Status.ResolvedVersion)})
	case stored.Status.ResolvedVersion != want:
		e.violate(chaos.Violation{Invariant: chaos.Resolution, Agent: -1,
			Detail: fmt.Sprintf("the hub resolved %s to %s, want %s", d, stored.Status.ResolvedVersion, want)})
	}
	e.world.Apply(d)
	return false, nil
}

// putNotes puts s.N notes into the agent's outbox with the CLI, as an
// operator at the edge would, whether the agent runs or not.
func (e *Env) putNotes(ctx context.Context, a *agentProc, s chaos.Step) error {
	for j := range s.N {
		key := fmt.Sprintf("note-%d-%d", s.ID, j)
		out, err := e.cli(ctx, "agent", "outbox", "put", "--data", a.data, "--key", key, "--text", fmt.Sprintf("step %d, note %d", s.ID, j))
		switch {
		case err == nil && strings.Contains(out, "put note"):
			e.mu.Lock()
			e.accepted[a.i] = append(e.accepted[a.i], key)
			e.mu.Unlock()
		case err != nil && e.disks.isFull(a.i):
			// Refused on a full disk: not accepted, nothing owed.
		case err != nil:
			return err
		}
	}
	return nil
}

// heal clears an agent's link of every fault.
func (e *Env) heal(a *agentProc) {
	a.link.Partition(false)
	a.link.SetBandwidth(0)
	a.link.SetLatency(0)
	a.link.CorruptDown(0)
	a.link.CutDownAfter(-1)
	if !e.disks.isFull(a.i) {
		e.proxy.clean(a.name)
	}
}

// killHub kills the hub, restarts the step's offline agents with no hub
// (each must serve its cache at once), and starts the hub again after
// s.Down.
func (e *Env) killHub(ctx context.Context, s chaos.Step) error {
	start := time.Now()
	e.hub.kill()
	for _, i := range s.Offline {
		if i < 0 || i >= len(e.agents) {
			continue
		}
		a := e.agents[i]
		e.killAgent(a)
		if err := e.startAgent(ctx, a); err != nil {
			return err
		}
		if err := e.checkServesCache(ctx, a); err != nil {
			e.violate(chaos.Violation{Invariant: chaos.Offline, Agent: a.i, Detail: err.Error()})
		}
	}
	if err := sleep(ctx, s.Down-time.Since(start)); err != nil {
		return err
	}
	return e.startHub(ctx)
}

// checkServesCache checks that an agent started with no hub serves every
// version active in its state.
func (e *Env) checkServesCache(ctx context.Context, a *agentProc) error {
	s, err := e.sample(ctx, a)
	if err != nil {
		return err
	}
	for _, m := range s.Models {
		if m.Active == "" || m.ActiveDigest != m.DesiredDigest {
			continue // a version being replaced may be unservable for reasons of its own
		}
		if err := e.waitServed(ctx, a, m.Deployment, m.Active, 30*time.Second); err != nil {
			return fmt.Errorf("restarted with no hub: %w", err)
		}
	}
	return nil
}

// waitServed waits until the agent answers inference requests for
// deployment at version.
func (e *Env) waitServed(ctx context.Context, a *agentProc, deployment, version string, within time.Duration) error {
	url := fmt.Sprintf("http://%s/v2/models/%s/versions/%s/ready", a.serve, deployment, version)
	deadline := time.Now().Add(within)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := e.http.Do(req)
		code := 0
		if err == nil {
			code = resp.StatusCode
			resp.Body.Close()
		}
		if code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s@%s not served after %s (status %d, %v)", deployment, version, within, code, err)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// check heals every fault, waits for every agent to converge on what the
// model says, and checks the invariants that hold at rest.
func (e *Env) check(ctx context.Context) error {
	e.proxy.disarm()
	for _, a := range e.agents {
		if err := e.disks.free(a.i, a.pid()); err != nil {
			return err
		}
		e.heal(a)
		if a.p == nil {
			if err := e.startAgent(ctx, a); err != nil {
				return err
			}
		}
	}
	e.mu.Lock()
	e.report.Checks++
	e.mu.Unlock()
	start := time.Now()
	deadline := start.Add(e.opts.ConvergeWithin)
	for {
		why, err := e.notConverged(ctx)
		if err != nil {
			return err
		}
		if len(why) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, v := range why {
				e.violate(v)
			}
			return nil
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	took := time.Since(start)
	e.mu.Lock()
	e.report.Converged = append(e.report.Converged, took)
	e.mu.Unlock()
	e.opts.Logf("check: converged after %s", took.Round(100*time.Millisecond))
	for _, a := range e.agents {
		for _, v := range e.checkAtRest(ctx, a) {
			e.violate(v)
		}
	}
	if err := e.checkProcLeak(ctx, "the hub", e.hub, e.hubDebug, &e.hubBase); err != nil {
		e.violate(chaos.Violation{Invariant: chaos.Leak, Agent: -1, Detail: err.Error()})
	}
	return nil
}

// notConverged lists, as violations, how the agents differ from what the
// model says; nothing means every agent converged, its cluster exists and
// its outbox is empty.
func (e *Env) notConverged(ctx context.Context) ([]chaos.Violation, error) {
	var out []chaos.Violation
	for _, a := range e.agents {
		bad := func(detail string) {
			out = append(out, chaos.Violation{Invariant: chaos.Convergence, Agent: a.i,
				Detail: fmt.Sprintf("not converged within %s: %s", e.opts.ConvergeWithin, detail)})
		}
		var c v1alpha1.Cluster
		if err := e.admin.Get(ctx, v1alpha1.PluralClusters, a.name, &c); hubclient.Code(err) == http.StatusNotFound {
			bad("its cluster was deleted and it did not join again")
			continue
		} else if err != nil {
			return nil, err
		}
		s, err := e.sample(ctx, a)
		if err != nil {
			bad(err.Error())
			continue
		}
		for _, why := range chaos.Converged(e.world.Desired(a.i), s) {
			bad(why)
		}
		if s.OutboxRecords > 0 {
			bad(fmt.Sprintf("%d outbox records wait", s.OutboxRecords))
		}
	}
	return out, nil
}

// checkAtRest checks one converged agent: it serves its active versions,
// its cache holds whole blobs and no temporary files, its process holds no
// more descriptors and threads than at its first check, the hub holds
// every note it accepted once, and it refused every stale desired state.
func (e *Env) checkAtRest(ctx context.Context, a *agentProc) []chaos.Violation {
	var out []chaos.Violation
	bad := func(inv chaos.Invariant, format string, args ...any) {
		out = append(out, chaos.Violation{Invariant: inv, Agent: a.i, Detail: fmt.Sprintf(format, args...)})
	}
	s, err := e.sample(ctx, a)
	if err != nil {
		bad(chaos.Convergence, "%v", err)
		return out
	}
	for _, m := range s.Models {
		if m.Active != "" {
			if err := e.waitServed(ctx, a, m.Deployment, m.Active, 30*time.Second); err != nil {
				bad(chaos.Convergence, "%v", err)
			}
		}
	}
	out = append(out, e.checkCache(a, s)...)
	var temps []string
	deadline := time.Now().Add(15 * time.Second)
	for {
		temps = chaos.TempFiles(listFiles(a.data))
		if len(temps) == 0 || time.Now().After(deadline) {
			break
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			break
		}
	}
	if len(temps) > 0 {
		bad(chaos.Leak, "temporary files left after convergence: %s", strings.Join(temps, ", "))
	}
	if err := e.checkProcLeak(ctx, a.name, a.p, a.debug, &a.base); err != nil {
		bad(chaos.Leak, "%v", err)
	}
	notes, err := e.admin.Notes(ctx, a.name)
	if err != nil {
		bad(chaos.OutboxLost, "list notes: %v", err)
	} else {
		keys := make([]string, len(notes.Items))
		for i, n := range notes.Items {
			keys[i] = n.Key
		}
		e.mu.Lock()
		accepted := append([]string(nil), e.accepted[a.i]...)
		e.applied[a.i] = len(keys)
		e.mu.Unlock()
		out = append(out, chaos.CheckNotes(a.i, accepted, keys)...)
	}
	if _, confirmed, _, _ := e.proxy.counts(a.name); s.RejectedStale < int64(confirmed) {
		bad(chaos.StaleRefusal, "%d stale desired states reached the agent over a clean link, it counted %d refusals", confirmed, s.RejectedStale)
	}
	return out
}

// checkCache re-hashes every blob in the agent's cache, and checks that the
// manifest of every active version is among them.
func (e *Env) checkCache(a *agentProc, s chaos.Sample) []chaos.Violation {
	var out []chaos.Violation
	dir := filepath.Join(a.data, "cache", "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return []chaos.Violation{{Invariant: chaos.Integrity, Agent: a.i, Detail: err.Error()}}
	}
	have := map[string]bool{}
	for _, ent := range ents {
		name := ent.Name()
		if strings.Contains(name, ".") {
			continue // a transfer's part, or a temporary file: checked as leaks
		}
		got, err := fileDigest(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue // collected since the listing
		}
		if err != nil || got != "sha256:"+name {
			out = append(out, chaos.Violation{Invariant: chaos.Integrity, Agent: a.i, Detail: fmt.Sprintf("blob %s holds %s (%v)", name, got, err)})
		}
		have["sha256:"+name] = true
	}
	for _, m := range s.Models {
		if m.ActiveDigest != "" && !have[m.ActiveDigest] {
			out = append(out, chaos.Violation{Invariant: chaos.Integrity, Agent: a.i,
				Detail: fmt.Sprintf("%s: the manifest %s of active %s is not in the cache", m.Deployment, m.ActiveDigest, m.Active)})
		}
	}
	return out
}

// checkProcLeak compares a process's descriptors, threads and goroutines
// with those at its first check, which *base keeps, and records the growth
// in the report.
func (e *Env) checkProcLeak(ctx context.Context, what string, p *proc, debugAddr string, base **chaos.ProcStats) error {
	st, err := p.stats(ctx, e.http, debugAddr)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if *base == nil {
		*base = &st
		return nil
	}
	e.mu.Lock()
	e.report.Growth = e.report.Growth.Max(st.Growth(**base))
	e.mu.Unlock()
	e.opts.Logf("%s: %d file descriptors, %d threads, %d goroutines (first check of this process: %d, %d, %d)",
		what, st.FDs, st.Threads, st.Goroutines, (*base).FDs, (*base).Threads, (*base).Goroutines)
	return chaos.CheckLeak(what, **base, st)
}

func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	d, err := digest.FromReader(f)
	return d.String(), err
}

// listFiles lists the files under dir, relative to it, sorted.
func listFiles(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}
