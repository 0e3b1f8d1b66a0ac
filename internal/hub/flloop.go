package hub

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/fl"
	"outpost.dev/outpost/internal/store"
)

// flCache keeps each running job's coordinator between steps, so that a step restores it
// from its snapshot only after a restart or a step whose transaction rolled back. An entry
// is taken out while a step uses it and put back, with the snapshot sequence it matches,
// after; an entry whose sequence is not the stored one is never used.
type flCache struct {
	mu      sync.Mutex
	entries map[string]flEntry
	kick    chan struct{}
}

type flEntry struct {
	uid string
	seq int64
	c   *fl.Coordinator
}

func newFLCache() *flCache {
	return &flCache{entries: map[string]flEntry{}, kick: make(chan struct{}, 1)}
}

// take removes and returns job's coordinator if it matches snapshot seq of uid.
func (x *flCache) take(job, uid string, seq int64) *fl.Coordinator {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.entries[job]
	delete(x.entries, job)
	if !ok || e.uid != uid || e.seq != seq {
		return nil
	}
	return e.c
}

// put keeps c as job's coordinator at snapshot seq of uid.
func (x *flCache) put(job, uid string, seq int64, c *fl.Coordinator) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.entries[job] = flEntry{uid: uid, seq: seq, c: c}
}

func (x *flCache) forget(job string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.entries, job)
}

// linkReports returns the facts to tell a coordinator, which knows the facts of each
// cluster it heard from (known), for the clusters whose link state disagrees with them:
// offline for a Disconnected one it believes online, and online again for one it
// believes offline whose link is not Disconnected (agents report themselves online only,
// so a cluster believed offline was reported so from its link). The coordinator keeps
// these facts in its snapshot, so the hub tells it the same after a restart.
func linkReports(known func(cluster string) (fl.ClusterFacts, bool), links map[string]v1alpha1.LinkState) map[string]fl.ClusterFacts {
	out := map[string]fl.ClusterFacts{}
	for c, state := range links {
		f, ok := known(c)
		if !ok {
			continue // no facts yet: nothing to correct
		}
		if down := state == v1alpha1.LinkDisconnected; down == f.Online {
			f.Online = !down
			out[c] = f
		}
	}
	return out
}

// wake asks the federated loop to look now.
func (x *flCache) wake() {
	select {
	case x.kick <- struct{}{}:
	default:
	}
}

// noteFederated keeps st's coordinator after a step, and wakes the loop when a global model
// waits to be published.
func (s *Server) noteFederated(st *flState, pending bool) {
	s.fl.put(st.job.Name, string(st.job.UID), st.snap.Seq, st.c)
	if pending {
		s.fl.wake()
	}
}

// watchFederated moves federated jobs on until ctx ends: it starts new jobs, publishes the
// global models rounds make, ticks the coordinators by the hub's clock (deadlines), and
// forgets deleted jobs. It looks every interval and when woken.
func (s *Server) watchFederated(ctx context.Context, interval time.Duration) {
	for {
		active, err := s.stepFederated(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "federated jobs", "err", err)
		}
		// Without a job under way only an applied job (a kick) gives the loop work; it still
		// looks now and then, for jobs deleted meanwhile.
		wait := interval
		if !active && err == nil {
			wait = max(interval, federatedIdleInterval)
		}
		t := s.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-s.fl.kick:
			t.Stop()
		}
	}
}

// federatedIdleInterval is how often the federated loop looks while no job is under way.
const federatedIdleInterval = 10 * time.Minute

// StepFederated moves every federated job on once: it starts jobs that have not started,
// publishes global models that wait for it, ticks the running jobs' coordinators at the
// hub's clock's time, and forgets the state of deleted jobs. Every transition is stored
// with its snapshot in one transaction.
func (s *Server) StepFederated(ctx context.Context) error {
	_, err := s.stepFederated(ctx)
	return err
}

// stepFederated is StepFederated, also reporting whether a job is under way (not finished).
func (s *Server) stepFederated(ctx context.Context) (active bool, err error) {
	var jobs []*v1alpha1.FederatedJob
	var snapJobs []string
	err = s.db.View(ctx, func(tx *store.Tx) error {
		objs, err := tx.List(ctx, v1alpha1.KindFederatedJob, nil)
		if err != nil {
			return err
		}
		for _, o := range objs {
			jobs = append(jobs, o.(*v1alpha1.FederatedJob))
		}
		snapJobs, err = tx.FLSnapshotJobs(ctx)
		return err
	})
	if err != nil {
		return false, err
	}
	live := map[string]bool{}
	var errs []error
	for _, j := range jobs {
		live[j.Name] = true
		if j.Status.Phase.Finished() {
			continue
		}
		active = true
		if err := s.stepJob(ctx, j); err != nil {
			errs = append(errs, fmt.Errorf("federated job %q: %w", j.Name, err))
		}
	}
	for _, name := range snapJobs {
		if !live[name] {
			errs = append(errs, s.forgetFederated(ctx, name))
		}
	}
	return active, errors.Join(errs...)
}

// stepJob starts, publishes or ticks job j.
func (s *Server) stepJob(ctx context.Context, j *v1alpha1.FederatedJob) error {
	if j.Status.LatestDigest == "" {
		return s.startFederated(ctx, j)
	}
	for range 3 { // a model, and at most two more made while it was published
		published, err := s.publishFederated(ctx, j.Name)
		if err != nil || !published {
			break
		}
	}
	return s.db.Update(ctx, func(tx *store.Tx) error {
		st, err := s.loadCached(ctx, tx, j.Name)
		if err != nil || st.c == nil || st.job.Status.Phase.Finished() {
			return err
		}
		now := s.clock.Now()
		out, told, err := s.reportLinks(ctx, tx, st, now)
		if err != nil {
			return err
		}
		t := st.c.Tick(now)
		out.Assignments, out.Events = append(out.Assignments, t.Assignments...), append(out.Events, t.Events...)
		if t.Published != nil {
			out.Published = t.Published
		}
		if !told && len(out.Assignments) == 0 && out.Published == nil && len(out.Events) == 0 {
			s.fl.put(st.job.Name, string(st.job.UID), st.snap.Seq, st.c)
			return nil
		}
		pending, err := s.persistFederated(ctx, tx, st, out, nil)
		if err != nil {
			return err
		}
		s.noteFederated(st, pending)
		return nil
	})
}

// reportLinks tells st's coordinator of the selected clusters whose link went Disconnected
// (they are offline: a round under way settles without them at once rather than at its
// deadline) or came back. It reports whether it told the coordinator anything (whose state
// then changed, output or not).
func (s *Server) reportLinks(ctx context.Context, tx *store.Tx, st *flState, now time.Time) (fl.Output, bool, error) {
	var out fl.Output
	selected, err := federatedClusters(ctx, tx, st.job)
	if err != nil {
		return out, false, err
	}
	told := false
	links := map[string]v1alpha1.LinkState{}
	for _, c := range selected {
		o, err := tx.Get(ctx, v1alpha1.KindCluster, c)
		if err != nil {
			continue
		}
		links[c] = o.(*v1alpha1.Cluster).Status.Link.State
	}
	reports := linkReports(st.c.Facts, links)
	for _, c := range slices.Sorted(maps.Keys(reports)) {
		f := reports[c]
		o, err := st.c.Handle(now, fl.Report{Job: st.job.Name, Cluster: c, Kind: fl.KindFacts, Facts: &f})
		if err != nil {
			s.log.WarnContext(ctx, "federated job: link change not reported", "job", st.job.Name, "cluster", c, "err", err)
			continue
		}
		told = true
		s.log.InfoContext(ctx, "federated job: cluster link changed", "job", st.job.Name, "cluster", c, "online", f.Online)
		out.Assignments, out.Events = append(out.Assignments, o.Assignments...), append(out.Events, o.Events...)
		if o.Published != nil {
			out.Published = o.Published
		}
	}
	return out, told, nil
}

// loadCached is loadFederated that takes the coordinator from the cache when it is current.
func (s *Server) loadCached(ctx context.Context, tx *store.Tx, name string) (*flState, error) {
	o, err := tx.Get(ctx, v1alpha1.KindFederatedJob, name)
	if err != nil {
		return nil, err
	}
	j := o.(*v1alpha1.FederatedJob)
	snap, err := tx.FLSnapshot(ctx, name)
	if err == nil && snap.UID == string(j.UID) {
		if c := s.fl.take(name, snap.UID, snap.Seq); c != nil {
			return &flState{job: j, snap: snap, c: c}, nil
		}
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return loadFederated(ctx, tx, name)
}

// startFederated reads job j's initial model and starts its coordinator; a job whose model
// cannot be read or whose spec the coordinator refuses fails, saying why.
func (s *Server) startFederated(ctx context.Context, j *v1alpha1.FederatedJob) error {
	if s.cfg.Federated == nil {
		return nil
	}
	spec, weights, res, ierr := s.cfg.Federated.Initial(ctx, j.Spec.Model.Name, j.Spec.Model.Version, j.Spec.Model.ArchValue())
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return s.db.Update(ctx, func(tx *store.Tx) error {
		st, err := loadFederated(ctx, tx, j.Name)
		if errors.Is(err, store.ErrNotFound) {
			return nil // deleted meanwhile
		}
		if err != nil {
			return err
		}
		if st.job.UID != j.UID || st.c != nil || st.job.Status.LatestDigest != "" {
			return nil // created again, or started, meanwhile
		}
		fail := func(why string) error {
			cp := st.job.DeepCopy()
			cp.Status.Phase, cp.Status.Message, cp.Status.ObservedGeneration = v1alpha1.FederatedFailed, truncate(why, 4096), cp.Generation
			_, _, err := tx.UpdateStatus(ctx, cp)
			return err
		}
		if ierr != nil {
			return fail(fmt.Sprintf("initial model %s:%s: %v", j.Spec.Model.Name, j.Spec.Model.Version, ierr))
		}
		c, out, err := fl.New(flSpec(st.job, spec), weights, s.clock.Now())
		if err != nil {
			return fail(err.Error())
		}
		st.c = c
		st.latest = &[3]string{j.Spec.Model.Name, j.Spec.Model.Version, res.Digest}
		if st.snap.UID != string(j.UID) {
			st.snap = store.FLSnapshot{}
		}
		pending, err := s.persistFederated(ctx, tx, st, out, nil)
		if err != nil {
			return err
		}
		s.noteFederated(st, pending)
		return nil
	})
}

// publishFederated publishes job name's newest global model if it waits for it, then
// delivers the assignments that train from it. It reports whether it published one.
func (s *Server) publishFederated(ctx context.Context, name string) (bool, error) {
	if s.cfg.Federated == nil {
		return false, nil
	}
	var (
		pub  FederatedPublication
		uid  string
		want int
	)
	err := s.db.View(ctx, func(tx *store.Tx) error {
		st, err := s.loadCached(ctx, tx, name)
		if err != nil || st.c == nil {
			return err
		}
		defer s.fl.put(name, string(st.job.UID), st.snap.Seq, st.c)
		g := st.c.Global()
		if g.Ref.Round <= publishedRound(st.job) {
			return nil
		}
		uid, want = string(st.job.UID), g.Ref.Round
		pub = FederatedPublication{Name: st.job.OutputModel(), Version: v1alpha1.RoundVersion(g.Ref.Round),
			Parent: st.job.Status.LatestModel + "@" + st.job.Status.LatestVersion, Weights: g.Weights,
			Model: modelSpecOf(st.job.Spec.Model.ArchValue(), g.Weights),
			Job:   name, Round: g.Ref.Round, Participants: g.Participants, Epsilon: g.Epsilon}
		for _, h := range st.c.Status().History {
			if h.Round == g.Ref.Round {
				pub.Accuracy = h.Accuracy
			}
		}
		return nil
	})
	if err != nil || uid == "" {
		return false, err
	}
	res, err := s.cfg.Federated.Publish(ctx, pub)
	if err != nil {
		return false, fmt.Errorf("publish %s:%s: %w", pub.Name, pub.Version, err)
	}
	s.log.InfoContext(ctx, "federated round published", "job", name, "round", want, "model", pub.Name, "version", pub.Version, "digest", res.Digest)
	return true, s.db.Update(ctx, func(tx *store.Tx) error {
		st, err := s.loadCached(ctx, tx, name)
		if err != nil || st.c == nil || string(st.job.UID) != uid {
			return err
		}
		defer s.fl.put(name, uid, st.snap.Seq, st.c)
		j := st.job.DeepCopy()
		j.Status.LatestModel, j.Status.LatestVersion, j.Status.LatestDigest = pub.Name, pub.Version, res.Digest
		for i := range j.Status.Rounds {
			if int(j.Status.Rounds[i].Round) == want {
				j.Status.Rounds[i].Version = pub.Version
			}
		}
		if cs := st.c.Status(); !j.Status.Phase.Finished() {
			j.Status.Phase = jobPhase(cs.State, cs.Round, j)
		}
		if err := s.updateFederatedStatus(ctx, tx, st, j); err != nil {
			return err
		}
		if st.c.Global().Ref.Round != want {
			return nil // a newer model waits: its assignments go out once it is published
		}
		return s.writeFederatedMessages(ctx, tx, st)
	})
}

// forgetFederated drops the snapshot and messages of a deleted job.
func (s *Server) forgetFederated(ctx context.Context, name string) error {
	s.fl.forget(name)
	return s.db.Update(ctx, func(tx *store.Tx) error {
		if _, err := tx.Get(ctx, v1alpha1.KindFederatedJob, name); err == nil {
			return nil // created again meanwhile
		}
		return s.forgetFederatedTx(ctx, tx, name)
	})
}

// forgetFederatedTx drops job name's snapshot and messages in tx, and rewrites the desired
// state of the clusters it had messages for.
func (s *Server) forgetFederatedTx(ctx context.Context, tx *store.Tx, name string) error {
	if err := tx.DeleteFLSnapshot(ctx, name); err != nil {
		return err
	}
	changed, err := tx.SetFLMessages(ctx, name, nil)
	if err != nil {
		return err
	}
	return s.rewriteDesired(ctx, tx, changed)
}

// modelSpecOf is the shape of a model of arch with tensors w (an MLP's sizes come from its
// weights and biases: W0, B0, W1, B1, ...).
func modelSpecOf(arch string, w [][]float32) fl.ModelSpec {
	m := fl.ModelSpec{Arch: arch}
	if arch != v1alpha1.ArchMLP || len(w) < 2 || len(w)%2 != 0 || len(w[1]) == 0 {
		return m
	}
	m.Sizes = []int{len(w[0]) / len(w[1])}
	for i := 1; i < len(w); i += 2 {
		m.Sizes = append(m.Sizes, len(w[i]))
	}
	return m
}
