package agent

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/fl"
	"outpost.dev/outpost/internal/outbox"
	"outpost.dev/outpost/internal/pipeline"
	"outpost.dev/outpost/internal/train"
)

// Meta keys of federated learning: the newest assignment version the agent acted on, per job
// and UID, written before it acts so that a restart never trains the same round twice.
const metaFLDonePrefix = "fl_done/"

// federatedInterval is how often the agent looks at its federated jobs besides when a desired
// state is applied.
const federatedInterval = 30 * time.Second

// DesiredFederated returns the federated jobs of the desired state last applied.
func (a *Agent) DesiredFederated(ctx context.Context) ([]v1alpha1.DesiredFederated, error) {
	raw, err := a.state.meta(ctx, metaAppliedDoc)
	if err != nil || raw == "" {
		return nil, err
	}
	var doc v1alpha1.DesiredState
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		return nil, fmt.Errorf("agent: applied desired state: %w", err)
	}
	return doc.Federated, nil
}

// FetchModelFile fetches version of model (manifest digest d) into the cache as a deployment's
// version is fetched (only the chunks the cache lacks, by weight delta where smaller, every
// byte verified) and returns the bytes of its one file whose path ends in suffix, read while
// garbage collection waits. It activates nothing.
func (a *Agent) FetchModelFile(ctx context.Context, model, version, d, suffix string) ([]byte, error) {
	a.gcMu.RLock()
	defer a.gcMu.RUnlock()
	repo, err := a.repository(model)
	if err != nil {
		return nil, err
	}
	want := v1alpha1.DesiredModel{Deployment: "federated", Model: model, Version: version, Digest: d}
	rec, idx, err := a.ensureManifest(ctx, repo, want)
	if err != nil {
		return nil, err
	}
	var file *fileRecord
	for i, f := range rec.Files {
		if strings.HasSuffix(f.Path, suffix) {
			if file != nil {
				return nil, fmt.Errorf("%s@%s has more than one %s file", model, version, suffix)
			}
			file = &rec.Files[i]
		}
	}
	if file == nil {
		return nil, fmt.Errorf("%s@%s has no %s file", model, version, suffix)
	}
	fd := digest.Digest(file.Digest)
	if !a.cache.has(fd, file.Size) {
		missing := []artifact.FileChunks{fileChunks(idx, *file)}
		have, err := a.chunkMap(ctx)
		if err != nil {
			return nil, err
		}
		byDelta := chooseDeltas(missing, a.weightDeltas(ctx, repo, rec), have, a.cache.has)
		fetched := false
		if dl, ok := byDelta[fd]; ok {
			if err := a.fetchByDelta(ctx, repo, dl, nil); err == nil {
				fetched = true
			} else if ctx.Err() != nil {
				return nil, err
			}
		}
		if !fetched {
			if err := a.fetchFile(ctx, repo, missing[0], nil); err != nil {
				return nil, err
			}
		}
	}
	if err := a.cache.verifyFile(fd, file.Size, false); err != nil {
		return nil, fmt.Errorf("verify %s: %w", file.Path, err)
	}
	return os.ReadFile(a.cache.blobPath(fd))
}

// federatedLoop takes part in the federated jobs of the applied desired state until ctx ends.
func (a *Agent) federatedLoop(ctx context.Context) {
	fr := &federatedRunner{a: a, clients: map[string]*fl.Client{}, facts: map[string]fl.ClusterFacts{}, data: map[string]*localData{}}
	for {
		jobs, err := fr.step(ctx)
		if err != nil && ctx.Err() == nil {
			a.log.Warn("federated learning", "err", err)
		}
		if jobs == 0 && err == nil {
			// Nothing to take part in until a desired state names a job.
			select {
			case <-ctx.Done():
				return
			case <-a.flWake:
			}
			continue
		}
		t := a.clock.NewTimer(federatedInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		case <-a.flWake:
			t.Stop()
		}
	}
}

// federatedRunner is the agent's side of its federated jobs: it reports the cluster's facts,
// trains on each assignment with the local data and puts the reports in the outbox.
type federatedRunner struct {
	a *Agent
	// clients keep each job's secure aggregation secrets, in memory only: a restarted
	// agent drops out of a secure round under way.
	clients map[string]*fl.Client
	// facts holds the facts this process last reported to each job (job/uid).
	facts map[string]fl.ClusterFacts
	data  map[string]*localData
}

// localData is a job's local data set, split into training and validation samples, and
// the training speed measured on it (0: not yet, or unknown).
type localData struct {
	train, val train.Dataset
	speed      float64
	measured   bool
}

// step acts once on every federated job of the applied desired state, and returns how many
// there are.
func (r *federatedRunner) step(ctx context.Context) (int, error) {
	jobs, err := r.a.DesiredFederated(ctx)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, d := range jobs {
		if err := r.job(ctx, d); err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", d.Job, err))
		}
	}
	return len(jobs), errors.Join(errs...)
}

// dataPath is where job d's local data lies.
func (r *federatedRunner) dataPath(d v1alpha1.DesiredFederated) string {
	if filepath.IsAbs(d.Data.Path) {
		return d.Data.Path
	}
	base := r.a.cfg.FederatedData
	if base == "" {
		base = filepath.Join(r.a.cfg.Dir, "data")
	}
	return filepath.Join(base, d.Data.Path)
}

// load reads job d's local data once.
func (r *federatedRunner) load(d v1alpha1.DesiredFederated) (*localData, error) {
	key := d.Job + "/" + d.UID
	if ld, ok := r.data[key]; ok {
		return ld, nil
	}
	tr, te, err := pipeline.ReadDataset(r.dataPath(d), d.Data.Format)
	if err != nil {
		return nil, fmt.Errorf("local data: %w", err)
	}
	ld := &localData{train: tr, val: te}
	if te == nil {
		ld.train, ld.val = splitData(tr, d.Data.ValidationSplitValue(), d.UID)
	}
	r.data[key] = ld
	return ld, nil
}

// job acts on job d: facts first, then the newest assignment, once.
func (r *federatedRunner) job(ctx context.Context, d v1alpha1.DesiredFederated) error {
	key := d.Job + "/" + d.UID
	ld, err := r.load(d)
	if err != nil {
		return err
	}
	if !ld.measured {
		ld.speed, ld.measured = r.samplesPerSec(ctx, d, ld), true
	}
	facts := fl.ClusterFacts{Online: true, Samples: ld.train.Len(), SamplesPerSec: ld.speed}
	if bps, _ := r.a.link.estimate(); bps > 0 {
		facts.BandwidthBps = float64(bps) * 8
	}
	if last, ok := r.facts[key]; !ok || factsChanged(last, facts) {
		rep := fl.Report{Job: d.Job, Cluster: r.a.Name(), Kind: fl.KindFacts, Facts: &facts}
		if err := r.put(ctx, d, "facts-"+strconv.FormatInt(r.a.clock.Now().UnixNano(), 10), 0, rep); err != nil {
			return err
		}
		r.facts[key] = facts
		if ok {
			r.a.log.Info("federated job: facts changed, reported again", "job", d.Job,
				"bandwidthBps", facts.BandwidthBps, "was", last.BandwidthBps)
		}
	}
	if len(d.Message) == 0 {
		return nil
	}
	var as fl.Assignment
	if err := json.Unmarshal(d.Message, &as); err != nil {
		return fmt.Errorf("assignment: %w", err)
	}
	doneKey := metaFLDonePrefix + key
	raw, err := r.a.state.meta(ctx, doneKey)
	if err != nil {
		return err
	}
	if done, _ := strconv.ParseUint(raw, 10, 64); as.Version <= done {
		return nil
	}
	if as.Cluster != r.a.Name() || as.Job != d.Job {
		return fmt.Errorf("assignment of job %q and cluster %q", as.Job, as.Cluster)
	}
	var global fl.GlobalModel
	if as.Phase != fl.Idle && as.Model.Digest != "" {
		if global, err = r.global(ctx, d, as); err != nil {
			return err // the desired state may name the model before its version: try again
		}
	}
	// Recorded before acting: a restart skips this assignment rather than train twice, and
	// the coordinator counts the cluster as dropped from the round.
	if err := r.a.state.setMeta(ctx, doneKey, strconv.FormatUint(as.Version, 10)); err != nil {
		return err
	}
	if as.Phase == fl.Idle {
		return nil
	}
	c := r.clients[key]
	if c == nil {
		c = fl.NewClient(r.a.Name(), rand.Reader)
		r.clients[key] = c
	}
	start := r.a.clock.Now()
	reports, err := c.Handle(ctx, as, global, ld.train, ld.val)
	if err != nil {
		return fmt.Errorf("round %d (%s): %w", as.Round, as.Phase, err)
	}
	r.a.log.Info("federated round", "job", d.Job, "round", as.Round, "phase", as.Phase, "assignment", as.Version, "reports", len(reports),
		"took", r.a.clock.Now().Sub(start).Round(time.Millisecond))
	for i, rep := range reports {
		if err := r.put(ctx, d, fmt.Sprintf("%d-%d", as.Version, i), as.Round, rep); err != nil {
			return err
		}
	}
	return nil
}

// global fetches the global model assignment as names: the version d names, whose weights'
// digest must be the assignment's.
func (r *federatedRunner) global(ctx context.Context, d v1alpha1.DesiredFederated, as fl.Assignment) (fl.GlobalModel, error) {
	if d.Model == "" || d.Digest == "" {
		return fl.GlobalModel{}, errors.New("the desired state names no global model")
	}
	b, err := r.a.FetchModelFile(ctx, d.Model, d.Version, d.Digest, ".onnx")
	if err != nil {
		return fl.GlobalModel{}, fmt.Errorf("global model %s@%s: %w", d.Model, d.Version, err)
	}
	_, w, err := fl.ReadONNX(as.Net.Arch, b)
	if err != nil {
		return fl.GlobalModel{}, fmt.Errorf("global model %s@%s: %w", d.Model, d.Version, err)
	}
	if got := fl.Digest(w); got != as.Model.Digest {
		return fl.GlobalModel{}, fmt.Errorf("global model %s@%s has weights %s; the assignment trains from %s", d.Model, d.Version, got, as.Model.Digest)
	}
	return fl.GlobalModel{Ref: as.Model, Weights: w}, nil
}

// put puts rep in the outbox under a key of job d.
func (r *federatedRunner) put(ctx context.Context, d v1alpha1.DesiredFederated, id string, round int, rep fl.Report) error {
	msg, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	payload, err := json.Marshal(v1alpha1.FederatedRecord{Job: d.Job, UID: d.UID, Round: int32(round), Message: msg})
	if err != nil {
		return err
	}
	_, err = r.a.outbox.Put(ctx, outbox.Record{Key: "fl/" + d.Job + "/" + d.UID + "/" + id, Kind: v1alpha1.RecordKindFederated,
		Priority: outbox.PriorityFL, Payload: payload})
	if err != nil {
		return err
	}
	r.a.signal(r.a.sendNow)
	return nil
}

// factsChanged reports whether facts differ from the last reported enough to tell the
// coordinator again, which plans each cluster's work and encoding from them: the link's
// bandwidth known or lost, or moved by half or more either way (smaller moves are the
// estimate's noise), or the local data or training speed changed.
func factsChanged(last, now fl.ClusterFacts) bool {
	if last.Samples != now.Samples || last.SamplesPerSec != now.SamplesPerSec || last.Online != now.Online {
		return true
	}
	a, b := last.BandwidthBps, now.BandwidthBps
	if a <= 0 || b <= 0 {
		return (a > 0) != (b > 0)
	}
	return max(a, b) >= 1.5*min(a, b)
}

// samplesPerSec measures local training's speed on a few batches of a model of the job's
// arch (an MLP of one hidden layer of 64 units stands for the job's, whose sizes come with
// the first assignment), or 0 where the local data do not fit it.
func (r *federatedRunner) samplesPerSec(ctx context.Context, d v1alpha1.DesiredFederated, ld *localData) float64 {
	spec := fl.ModelSpec{Arch: d.Arch}
	if d.Arch == v1alpha1.ArchMLP {
		spec.Sizes = []int{ld.train.Dim(), 64, 10}
	}
	n := min(ld.train.Len(), 256)
	m, _, err := fl.NewLearner(spec, nil, 1)
	if err != nil || n == 0 {
		return 0
	}
	start := time.Now()
	if _, err := m.Train(ctx, firstN{ld.train, n}, train.TrainOptions{Epochs: 1, BatchSize: 32, LR: 0.01}); err != nil {
		return 0
	}
	if s := time.Since(start).Seconds(); s > 0 {
		return float64(n) / s
	}
	return 0
}

// firstN is the first n samples of a data set.
type firstN struct {
	train.Dataset
	n int
}

func (f firstN) Len() int { return f.n }

// indexed is the samples of a data set at idx.
type indexed struct {
	ds  train.Dataset
	idx []int
}

func (x indexed) Len() int                        { return len(x.idx) }
func (x indexed) Dim() int                        { return x.ds.Dim() }
func (x indexed) Sample(i int, dst []float32) int { return x.ds.Sample(x.idx[i], dst) }

// splitData holds out share of ds's samples, drawn by seed, for validation.
func splitData(ds train.Dataset, share float64, seed string) (trainSet, val train.Dataset) {
	n := ds.Len()
	h := uint64(14695981039346656037)
	for _, c := range []byte(seed) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	perm := mrand.New(mrand.NewPCG(h, 0)).Perm(n)
	k := int(float64(n)*share + 0.5)
	if n > 1 {
		k = min(max(k, 1), n-1)
	} else {
		k = 0
	}
	return indexed{ds, perm[k:]}, indexed{ds, perm[:k]}
}
