package hub

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/fl"
	"outpost.dev/outpost/internal/placement"
	"outpost.dev/outpost/internal/store"
)

// FederatedModels reads the initial models of federated jobs from the registry and publishes
// the global models their rounds make.
type FederatedModels interface {
	// Initial reads version of model name, of architecture arch (mlp or cnn): the model's
	// shape and tensors (in internal/train's order), and its resolution.
	Initial(ctx context.Context, name, version, arch string) (fl.ModelSpec, [][]float32, ResolvedModel, error)
	// Publish pushes a round's global model as a version, with its lineage, signed by the
	// hub. Publishing the same version with the same weights again is a no-op.
	Publish(ctx context.Context, p FederatedPublication) (ResolvedModel, error)
}

// FederatedPublication is a global model to publish.
type FederatedPublication struct {
	// Name and Version are the model version to push (models/<Name>:<Version>); Parent the
	// version it derives from, NAME@VERSION.
	Name, Version, Parent string
	// Model and Weights are the global model.
	Model   fl.ModelSpec
	Weights [][]float32
	// Job, Round and Participants are its lineage; Accuracy (of the model the round started
	// from) and Epsilon (spent so far, DP jobs) its metrics.
	Job                 string
	Round, Participants int
	Accuracy, Epsilon   float64
}

// DefaultFederatedInterval is how often the hub moves federated jobs on (deadlines, publishing)
// when Config.FederatedInterval is zero; reports move them at once.
const DefaultFederatedInterval = time.Second

// flSpec is the coordinator's view of job j, whose model has shape model. It is pure.
func flSpec(j *v1alpha1.FederatedJob, model fl.ModelSpec) fl.JobSpec {
	s := &j.Spec
	spec := fl.JobSpec{
		Job:           j.Name,
		Model:         model,
		Rounds:        s.RoundsValue(),
		MinClients:    s.Clients.MinValue(),
		Fraction:      s.Clients.FractionValue(),
		LocalEpochs:   s.Training.EpochsValue(),
		BatchSize:     s.Training.BatchSizeValue(),
		LR:            s.Training.LearningRateValue(),
		RoundDeadline: s.Clients.RoundTimeoutValue(),
		Seed:          jobSeed(j),
	}
	if spec.Fraction >= 1 {
		spec.Fraction = 0 // all
	}
	switch s.Strategy.TypeValue() {
	case v1alpha1.StrategyFedProx:
		spec.Strategy, spec.ProxMu = fl.FedProx, s.Strategy.MuValue()
	case v1alpha1.StrategyFedBuff:
		b := s.Strategy.BufferValue()
		spec.Strategy, spec.BufferSize, spec.MaxStaleness = fl.FedBuff, int(b.Size), int(*b.MaxStaleness)
		spec.Weighting = map[v1alpha1.StalenessWeighting]fl.Weighting{
			v1alpha1.StalenessConstant: fl.Constant, v1alpha1.StalenessHinge: fl.Hinge}[b.StalenessWeighting] // "" is Polynomial
	default:
		spec.Strategy = fl.FedAvg
	}
	if s.SecureAggregation {
		spec.SecAgg = &fl.SecAggSpec{}
	}
	if p := s.Privacy; p != nil {
		spec.DP = &fl.DPSpec{Clip: decimal(p.ClipNorm), NoiseMultiplier: decimal(p.NoiseMultiplier), Delta: p.DeltaValue(),
			EpsilonBudget: decimal(p.Epsilon),
			// With secure aggregation the hub never holds the plain sum before noise: each
			// client adds its share of it.
			Distributed: s.SecureAggregation}
	}
	switch s.EncodingValue() {
	case v1alpha1.EncodingQuantized:
		spec.Encoding = fl.Int8
	case v1alpha1.EncodingAdaptive:
		spec.Encoding, spec.Adaptive = fl.Auto, true
	default:
		spec.Encoding = fl.Float32
	}
	return spec
}

func decimal(s string) float64 {
	v, _ := strconv.ParseFloat(s, 64)
	return v
}

// jobSeed draws a job's seed from its UID, so that a job created again is drawn afresh.
func jobSeed(j *v1alpha1.FederatedJob) uint64 {
	h := sha256.Sum256([]byte(string(j.UID) + "/" + j.Name))
	return binary.LittleEndian.Uint64(h[:8])
}

// checkFederatedJob refuses a job whose initial model the registry cannot give, or that this
// hub's coordinator cannot run, naming the field.
func (s *Server) checkFederatedJob(ctx context.Context, j *v1alpha1.FederatedJob) error {
	sp := field.NewPath("spec")
	refuse := func(errs ...*field.Error) error {
		return &v1alpha1.InvalidError{Kind: v1alpha1.KindFederatedJob, Name: j.Name, Errs: errs}
	}
	if s.cfg.Federated == nil {
		return refuse(field.Forbidden(sp, "this hub runs no federated jobs: it has no model registry"))
	}
	spec, _, _, err := s.cfg.Federated.Initial(ctx, j.Spec.Model.Name, j.Spec.Model.Version, j.Spec.Model.ArchValue())
	if err != nil {
		return refuse(field.Invalid(sp.Child("model", "version"), j.Spec.Model.Version, err.Error()))
	}
	fs := flSpec(j, spec)
	if err := fs.Validate(); err != nil {
		return refuse(field.Invalid(sp, "", err.Error()))
	}
	return nil
}

// checkFederatedChange refuses, in the transaction of the apply, a change of a started job's
// spec: its rounds run one spec from start to end.
func checkFederatedChange(ctx context.Context, tx *store.Tx, j *v1alpha1.FederatedJob) error {
	o, err := tx.Get(ctx, v1alpha1.KindFederatedJob, j.Name)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	old := o.(*v1alpha1.FederatedJob)
	if equality.Semantic.DeepEqual(old.Spec, j.Spec) {
		return nil
	}
	return &v1alpha1.InvalidError{Kind: v1alpha1.KindFederatedJob, Name: j.Name, Errs: field.ErrorList{
		field.Forbidden(field.NewPath("spec"), "a federated job's spec does not change once it started: delete it and create it again, or create another job"),
	}}
}

// flState is a job's coordinator as read from the store.
type flState struct {
	job  *v1alpha1.FederatedJob
	snap store.FLSnapshot
	c    *fl.Coordinator
	// latest, if set, names the newest global model (model, version, digest) from this step.
	latest *[3]string
}

// loadFederated reads job name and restores its coordinator; it returns a nil coordinator
// for a job that has not started (no snapshot of its UID).
func loadFederated(ctx context.Context, tx *store.Tx, name string) (*flState, error) {
	o, err := tx.Get(ctx, v1alpha1.KindFederatedJob, name)
	if err != nil {
		return nil, err
	}
	st := &flState{job: o.(*v1alpha1.FederatedJob)}
	snap, err := tx.FLSnapshot(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return st, nil
	case err != nil:
		return nil, err
	case snap.UID != string(st.job.UID):
		return st, nil
	}
	st.snap = snap
	var s fl.Snapshot
	if err := json.Unmarshal(snap.State, &s); err != nil {
		return nil, fmt.Errorf("federated job %q: snapshot %d: %w", name, snap.Seq, err)
	}
	if st.c, err = fl.Restore(s); err != nil {
		return nil, fmt.Errorf("federated job %q: snapshot %d: %w", name, snap.Seq, err)
	}
	return st, nil
}

// flCounts are what the adapter counts of one accepted report, for the cluster's status row.
type flCounts struct {
	cluster string
	round   int
}

// persistFederated stores st's coordinator after a step that produced out, in tx: the
// snapshot, the job's status, and (unless a global model waits to be published) every
// selected cluster's message. It reports whether a model waits to be published.
func (s *Server) persistFederated(ctx context.Context, tx *store.Tx, st *flState, out fl.Output, counted *flCounts) (bool, error) {
	b, err := json.Marshal(st.c.Snapshot())
	if err != nil {
		return false, fmt.Errorf("federated job %q: snapshot: %w", st.job.Name, err)
	}
	seq := st.snap.Seq + 1
	if err := tx.PutFLSnapshot(ctx, store.FLSnapshot{Job: st.job.Name, UID: string(st.job.UID), Seq: seq, State: b}); err != nil {
		return false, err
	}
	st.snap.Seq, st.snap.State = seq, b
	for _, e := range out.Events {
		s.log.InfoContext(ctx, "federated job", "job", st.job.Name, "round", e.Round, "event", e.Kind, "msg", e.Message)
	}
	selected, err := federatedClusters(ctx, tx, st.job)
	if err != nil {
		return false, err
	}
	j := st.job.DeepCopy()
	if l := st.latest; l != nil {
		j.Status.LatestModel, j.Status.LatestVersion, j.Status.LatestDigest = l[0], l[1], l[2]
	}
	j.Status = federatedStatus(j, st.c.Status(), selected, counted, s.clock.Now())
	pending := st.c.Global().Ref.Round > publishedRound(j)
	if err := s.updateFederatedStatus(ctx, tx, st, j); err != nil {
		return false, err
	}
	if pending {
		return true, nil
	}
	return false, s.writeFederatedMessages(ctx, tx, st)
}

// updateFederatedStatus stores j's status if it changed, and ends the job when its target
// accuracy is reached. When what the clusters' desired states say of the job changed (its
// global model, round or end), it rewrites the desired state of every cluster it selects.
func (s *Server) updateFederatedStatus(ctx context.Context, tx *store.Tx, st *flState, j *v1alpha1.FederatedJob) error {
	if t := j.Spec.TargetAccuracyValue(); t > 0 && j.Status.Phase == v1alpha1.FederatedRunning && j.Status.Accuracy != "" &&
		decimal(j.Status.Accuracy) >= t && publishedRound(j) == int(j.Status.Round) {
		j.Status.Phase = v1alpha1.FederatedSucceeded
		j.Status.Message = fmt.Sprintf("target accuracy %s reached: %s after round %d", j.Spec.TargetAccuracy, j.Status.Accuracy, j.Status.Round)
	}
	if equality.Semantic.DeepEqual(j.Status, st.job.Status) {
		return nil
	}
	desiredView := func(s *v1alpha1.FederatedJobStatus) [5]string {
		return [5]string{s.LatestModel, s.LatestVersion, s.LatestDigest, fmt.Sprint(s.Round), fmt.Sprint(s.Phase.Finished())}
	}
	viewChanged := desiredView(&j.Status) != desiredView(&st.job.Status)
	o, _, err := tx.UpdateStatus(ctx, j)
	if err != nil {
		return err
	}
	st.job = o.(*v1alpha1.FederatedJob)
	if !viewChanged {
		return nil
	}
	selected, err := federatedClusters(ctx, tx, st.job)
	if err != nil {
		return err
	}
	return s.rewriteDesired(ctx, tx, selected)
}

// publishedRound is the round of the newest global model the job's status names (0: the
// initial model).
func publishedRound(j *v1alpha1.FederatedJob) int {
	if j.Status.LatestVersion == "" || j.Status.LatestModel != j.OutputModel() {
		return 0
	}
	for r := len(j.Status.Rounds) - 1; r >= 0; r-- {
		if j.Status.Rounds[r].Version == j.Status.LatestVersion {
			return int(j.Status.Rounds[r].Round)
		}
	}
	return 0
}

// writeFederatedMessages stores the coordinator's assignment to every cluster it has one for
// (none once the job is over) and rewrites the desired state of each cluster whose message
// changed.
func (s *Server) writeFederatedMessages(ctx context.Context, tx *store.Tx, st *flState) error {
	msgs := map[string][]byte{}
	if !st.job.Status.Phase.Finished() {
		for _, a := range st.c.Assignments() {
			b, err := json.Marshal(a)
			if err != nil {
				return fmt.Errorf("federated job %q: assignment of %s: %w", st.job.Name, a.Cluster, err)
			}
			msgs[a.Cluster] = b
		}
	}
	changed, err := tx.SetFLMessages(ctx, st.job.Name, msgs)
	if err != nil {
		return err
	}
	return s.rewriteDesired(ctx, tx, changed)
}

// rewriteDesired recomputes the desired state of the named clusters.
func (s *Server) rewriteDesired(ctx context.Context, tx *store.Tx, clusters []string) error {
	for _, name := range clusters {
		o, err := tx.Get(ctx, v1alpha1.KindCluster, name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := s.reconcileCluster(ctx, tx, o.(*v1alpha1.Cluster)); err != nil {
			return err
		}
	}
	return nil
}

// federatedClusters returns the names of the clusters job j selects, sorted.
func federatedClusters(ctx context.Context, tx *store.Tx, j *v1alpha1.FederatedJob) ([]string, error) {
	objs, err := tx.List(ctx, v1alpha1.KindCluster, nil)
	if err != nil {
		return nil, err
	}
	all := make([]v1alpha1.Cluster, len(objs))
	for i, o := range objs {
		all[i] = *o.(*v1alpha1.Cluster)
	}
	names, err := placement.Select(j.Spec.ClusterSelectors, all)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// federatedStatus is job j's status after the coordinator's status st, with a row per
// selected cluster; counted, if set, is an update just accepted. It is pure.
func federatedStatus(j *v1alpha1.FederatedJob, st fl.Status, selected []string, counted *flCounts, now time.Time) v1alpha1.FederatedJobStatus {
	old := j.Status
	out := v1alpha1.FederatedJobStatus{ObservedGeneration: j.Generation, Round: int32(st.Round), RoundPhase: string(st.Phase),
		LatestModel: old.LatestModel, LatestVersion: old.LatestVersion, LatestDigest: old.LatestDigest, Message: st.Reason}
	out.Phase = jobPhase(st.State, st.Round, j)
	if old.Phase.Finished() {
		out.Phase, out.Message = old.Phase, old.Message // ended by the adapter (target accuracy)
	}
	if j.Spec.Privacy != nil {
		out.EpsilonSpent = strconv.FormatFloat(st.Epsilon, 'f', 4, 64)
	}
	completed := make(map[int32]*metav1.Time, len(old.Rounds))
	for _, r := range old.Rounds {
		completed[r.Round] = r.Completed
	}
	hist := st.History
	if len(hist) > v1alpha1.MaxFederatedRoundRows {
		hist = hist[len(hist)-v1alpha1.MaxFederatedRoundRows:]
	}
	for _, h := range hist {
		r := v1alpha1.FederatedRoundStatus{Round: int32(h.Round), Participants: int32(h.Participants), Dropouts: int32(h.Dropped),
			Accuracy: strconv.FormatFloat(h.Accuracy, 'f', 4, 64), Loss: strconv.FormatFloat(h.Loss, 'f', 4, 64),
			UpdateBytes: h.UploadBytes, Completed: completed[int32(h.Round)]}
		if r.Completed == nil {
			t := metav1.NewTime(now.UTC().Truncate(time.Second))
			r.Completed = &t
		}
		if j.Spec.Privacy != nil {
			r.EpsilonSpent = strconv.FormatFloat(h.Epsilon, 'f', 4, 64)
		}
		// A round's version is named once it is published (LatestVersion moves then).
		for _, o := range old.Rounds {
			if o.Round == r.Round {
				r.Version = o.Version
			}
		}
		out.Rounds = append(out.Rounds, r)
	}
	if n := len(out.Rounds); n > 0 {
		out.Accuracy = out.Rounds[n-1].Accuracy
	}
	rows := make(map[string]v1alpha1.FederatedClusterStatus, len(old.Clusters))
	for _, r := range old.Clusters {
		rows[r.Cluster] = r
	}
	plans := make(map[string]fl.Plan, len(st.Plans))
	for _, p := range st.Plans {
		plans[p.Cluster] = p
	}
	for _, c := range selected {
		r := rows[c]
		r.Cluster = c
		if p, ok := plans[c]; ok {
			r.Encoding, r.LocalSteps, r.Reason = string(p.Encoding), int32(p.LocalSteps), truncate(p.Reason, 1024)
			if p.Ring > 0 { // a masked update: the ring's width is what it sends a value as
				r.Encoding = fmt.Sprintf("%d-bit ring", p.Ring)
			}
		}
		if counted != nil && counted.cluster == c {
			r.Updates++
			r.LastRound = int32(counted.round)
		}
		out.Clusters = append(out.Clusters, r)
	}
	return out
}

// jobPhase is the phase of job j whose coordinator is in state after round rounds: a job
// whose rounds are done succeeds once its last model is published.
func jobPhase(state fl.JobState, round int, j *v1alpha1.FederatedJob) v1alpha1.FederatedJobPhase {
	switch state {
	case fl.Running:
		return v1alpha1.FederatedRunning
	case fl.Done:
		if publishedRound(j) < round {
			return v1alpha1.FederatedRunning
		}
		return v1alpha1.FederatedSucceeded
	case fl.Failed:
		return v1alpha1.FederatedFailed
	}
	return v1alpha1.FederatedPending
}

// applyFederated is the RecordHandler of v1alpha1.RecordKindFederated: a message from cluster
// to its job's coordinator, applied with the snapshot and messages it leads to in the
// record's transaction. A message for an unknown job, a job of another UID, a job that does
// not select the cluster, or one the coordinator refuses is refused.
func (s *Server) applyFederated(ctx context.Context, tx *store.Tx, cluster string, rec v1alpha1.OutboxRecord) error {
	fr, err := v1alpha1.ParseFederatedRecord(rec.Payload)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	st, err := loadFederated(ctx, tx, fr.Job)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: federated job %q not found", ErrRefused, fr.Job)
	}
	if err != nil {
		return err
	}
	if string(st.job.UID) != fr.UID {
		return fmt.Errorf("%w: federated job %q was created again (uid %s, the message's %s)", ErrRefused, fr.Job, st.job.UID, fr.UID)
	}
	if st.c == nil {
		return fmt.Errorf("%w: federated job %q has not started", ErrRefused, fr.Job)
	}
	if st.job.Status.Phase.Finished() {
		return fmt.Errorf("%w: federated job %q is over (%s)", ErrRefused, fr.Job, st.job.Status.Phase)
	}
	selected, err := federatedClusters(ctx, tx, st.job)
	if err != nil {
		return err
	}
	if !slices.Contains(selected, cluster) {
		return fmt.Errorf("%w: federated job %q does not select cluster %q", ErrRefused, fr.Job, cluster)
	}
	var rep fl.Report
	if err := json.Unmarshal(fr.Message, &rep); err != nil {
		return fmt.Errorf("%w: federated job %q: message: %w", ErrRefused, fr.Job, err)
	}
	if rep.Job != fr.Job || rep.Cluster != cluster {
		return fmt.Errorf("%w: federated job %q: a message of job %q and cluster %q, sent by cluster %q", ErrRefused, fr.Job, rep.Job, rep.Cluster, cluster)
	}
	if rep.Kind == fl.KindFacts && rep.Facts != nil && rep.Facts.BandwidthBps == 0 {
		if o, err := tx.Get(ctx, v1alpha1.KindCluster, cluster); err == nil {
			rep.Facts.BandwidthBps = float64(o.(*v1alpha1.Cluster).Status.Link.BandwidthBps) * 8
		}
	}
	out, err := st.c.Handle(s.clock.Now(), rep)
	if errors.Is(err, fl.ErrRefused) {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if err != nil {
		return err
	}
	var counted *flCounts
	if rep.Kind == fl.KindUpdate || rep.Kind == fl.KindMasked {
		counted = &flCounts{cluster: cluster, round: rep.Round}
	}
	pending, err := s.persistFederated(ctx, tx, st, out, counted)
	if err != nil {
		return err
	}
	s.noteFederated(st, pending)
	return nil
}

// desiredFederated returns the federated jobs of cluster c for its desired state: one entry
// per job that selects it and runs, with the coordinator's message to it, if any.
func (s *Server) desiredFederated(ctx context.Context, tx *store.Tx, c *v1alpha1.Cluster) ([]v1alpha1.DesiredFederated, error) {
	objs, err := tx.List(ctx, v1alpha1.KindFederatedJob, nil)
	if err != nil || len(objs) == 0 {
		return nil, err
	}
	msgs, err := tx.FLMessagesFor(ctx, c.Name)
	if err != nil {
		return nil, err
	}
	var out []v1alpha1.DesiredFederated
	for _, o := range objs {
		j := o.(*v1alpha1.FederatedJob)
		if j.Status.LatestDigest == "" || j.Status.Phase.Finished() {
			continue // not started, or over
		}
		sel, err := placement.Select(j.Spec.ClusterSelectors, []v1alpha1.Cluster{*c})
		if err != nil || len(sel) == 0 {
			continue
		}
		d := v1alpha1.DesiredFederated{Job: j.Name, UID: string(j.UID), Arch: j.Spec.Model.ArchValue(), Data: j.Spec.Data,
			Training: j.Spec.Training, Round: j.Status.Round, Model: j.Status.LatestModel, Version: j.Status.LatestVersion,
			Digest: j.Status.LatestDigest}
		if m, ok := msgs[j.Name]; ok {
			d.Message = json.RawMessage(m)
		}
		out = append(out, d)
	}
	return out, nil
}
