package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/fl"
	"outpost.dev/outpost/internal/store"
)

// memFederated keeps federated models in memory: one initial MLP, and what was published.
type memFederated struct {
	mu        sync.Mutex
	initial   [][]float32
	published map[string]FederatedPublication
}

func newMemFederated(t *testing.T) *memFederated {
	w, err := fl.InitialWeights(fl.ModelSpec{Arch: "mlp", Sizes: []int{4, 3}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	return &memFederated{initial: w, published: map[string]FederatedPublication{}}
}

func (m *memFederated) Initial(_ context.Context, name, version, arch string) (fl.ModelSpec, [][]float32, ResolvedModel, error) {
	if name != "tiny" || version != "1.0.0" || arch != v1alpha1.ArchMLP {
		return fl.ModelSpec{}, nil, ResolvedModel{}, fmt.Errorf("model %s:%s not found", name, version)
	}
	return fl.ModelSpec{Arch: "mlp", Sizes: []int{4, 3}}, m.initial, ResolvedModel{Version: version, Digest: "sha256:tiny"}, nil
}

func (m *memFederated) Publish(_ context.Context, p FederatedPublication) (ResolvedModel, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.published[p.Name+"@"+p.Version] = p
	return ResolvedModel{Version: p.Version, Digest: "sha256:" + p.Name + "-" + p.Version}, nil
}

const tinyJob = `apiVersion: ml.outpost.dev/v1alpha1
kind: FederatedJob
metadata: {name: tiny-fl}
spec:
  model: {name: tiny, version: 1.0.0}
  clusterSelectors: [{matchLabels: {fl: "on"}}]
  data: {path: tiny}
  rounds: 1
  clients: {min: 2}
`

// flEnv is a hub with a federated job started on clusters a and b (c is not selected).
func flEnv(t *testing.T) (*env, *v1alpha1.FederatedJob) {
	t.Helper()
	mem := newMemFederated(t)
	e := newEnv(t, func(c *Config) { c.Federated, c.FederatedInterval = mem, time.Hour })
	for _, c := range []string{"a", "b"} {
		e.mustPut("clusters", c, clusterYAML(c, `fl: "on"`))
	}
	e.mustPut("clusters", "c", clusterYAML("c", ""))
	e.mustPut("federatedjobs", "tiny-fl", tinyJob)
	if err := e.srv.StepFederated(t.Context()); err != nil {
		t.Fatal(err)
	}
	j := e.flJob()
	if j.Status.LatestDigest != "sha256:tiny" || j.Status.Phase != v1alpha1.FederatedPending {
		t.Fatalf("job not started: %+v", j.Status)
	}
	return e, j
}

func (e *env) flJob() *v1alpha1.FederatedJob {
	e.t.Helper()
	var j *v1alpha1.FederatedJob
	if err := e.db.View(e.t.Context(), func(tx *store.Tx) error {
		o, err := tx.Get(e.t.Context(), v1alpha1.KindFederatedJob, "tiny-fl")
		if err == nil {
			j = o.(*v1alpha1.FederatedJob)
		}
		return err
	}); err != nil {
		e.t.Fatal(err)
	}
	return j
}

func (e *env) flSnapshot() store.FLSnapshot {
	e.t.Helper()
	var s store.FLSnapshot
	if err := e.db.View(e.t.Context(), func(tx *store.Tx) error {
		var err error
		s, err = tx.FLSnapshot(e.t.Context(), "tiny-fl")
		return err
	}); err != nil && !errors.Is(err, store.ErrNotFound) {
		e.t.Fatal(err)
	}
	return s
}

// flRecord makes an fl.message record of rep for job j.
func flRecord(t *testing.T, key string, j *v1alpha1.FederatedJob, uid string, rep fl.Report) v1alpha1.OutboxRecord {
	t.Helper()
	msg, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(v1alpha1.FederatedRecord{Job: j.Name, UID: uid, Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	return v1alpha1.OutboxRecord{Key: key, Kind: v1alpha1.RecordKindFederated, Created: metav1.Now(), Payload: p}
}

func facts(cluster string) fl.Report {
	return fl.Report{Job: "tiny-fl", Cluster: cluster, Kind: fl.KindFacts, Facts: &fl.ClusterFacts{Online: true, Samples: 10, SamplesPerSec: 100}}
}

// A message the hub cannot apply is refused, saying why, and changes nothing: not the
// snapshot, not the job, not any desired state.
func TestFederatedRefusals(t *testing.T) {
	e, j := flEnv(t)
	uid := string(j.UID)
	for _, tc := range []struct {
		name, cluster string
		rec           v1alpha1.OutboxRecord
		want          string
	}{
		{"not a federated record", "a", v1alpha1.OutboxRecord{Key: "k1", Kind: v1alpha1.RecordKindFederated, Payload: json.RawMessage(`{"job":"tiny-fl"}`)},
			"uid: the job's metadata.uid is required"},
		{"unknown job", "a", flRecord(t, "k2", &v1alpha1.FederatedJob{ObjectMeta: metav1.ObjectMeta{Name: "other"}}, uid, facts("a")), `federated job "other" not found`},
		{"job created again", "a", flRecord(t, "k3", j, "old-uid", facts("a")), "was created again"},
		{"cluster not selected", "c", flRecord(t, "k4", j, uid, facts("c")), `does not select cluster "c"`},
		{"another cluster's message", "a", flRecord(t, "k5", j, uid, facts("b")), `a message of job "tiny-fl" and cluster "b", sent by cluster "a"`},
		{"the coordinator refuses", "a", flRecord(t, "k6", j, uid, fl.Report{Job: "tiny-fl", Cluster: "a", Kind: fl.KindUpdate, Version: 99,
			Update: &fl.Update{}}), "fl: report refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, rev := e.flSnapshot(), e.desired("a").Revision
			resp, err := e.srv.ApplyOutbox(t.Context(), tc.cluster, []v1alpha1.OutboxRecord{tc.rec})
			if err != nil {
				t.Fatal(err)
			}
			if r := resp.Results[0]; r.Outcome != v1alpha1.OutboxRefused || !strings.Contains(r.Message, tc.want) {
				t.Fatalf("outcome %s %q, want Refused with %q", r.Outcome, r.Message, tc.want)
			}
			after := e.flSnapshot()
			if after.Seq != before.Seq || string(after.State) != string(before.State) {
				t.Errorf("snapshot %d became %d", before.Seq, after.Seq)
			}
			if got := e.desired("a").Revision; got != rev {
				t.Errorf("desired state of a: revision %d became %d", rev, got)
			}
		})
	}
	// Facts from both selected clusters start round 1, in the records' transaction: the
	// snapshot moves on, and each cluster's desired state carries its assignment.
	seq := e.flSnapshot().Seq
	for i, c := range []string{"a", "b"} {
		resp, err := e.srv.ApplyOutbox(t.Context(), c, []v1alpha1.OutboxRecord{flRecord(t, fmt.Sprintf("f%d", i), j, uid, facts(c))})
		if err != nil || resp.Results[0].Outcome != v1alpha1.OutboxApplied {
			t.Fatalf("facts of %s: %+v, %v", c, resp, err)
		}
	}
	if got := e.flSnapshot().Seq; got != seq+2 {
		t.Errorf("snapshot %d after two facts, want %d", got, seq+2)
	}
	for _, c := range []string{"a", "b"} {
		d := e.desiredFederatedOf(c)
		if len(d) != 1 || len(d[0].Message) == 0 || d[0].Digest != "sha256:tiny" || d[0].Model != "tiny" {
			t.Fatalf("desired state of %s: %+v", c, d)
		}
		var a fl.Assignment
		if err := json.Unmarshal(d[0].Message, &a); err != nil || a.Phase != fl.Train || a.Cluster != c || a.Round != 1 {
			t.Errorf("assignment of %s: %+v, %v", c, a, err)
		}
	}
	if d := e.desiredFederatedOf("c"); len(d) != 0 {
		t.Errorf("cluster c, not selected, has %+v", d)
	}
	// The same record again is a duplicate, applied once.
	resp, err := e.srv.ApplyOutbox(t.Context(), "a", []v1alpha1.OutboxRecord{flRecord(t, "f0", j, uid, facts("a"))})
	if err != nil || resp.Results[0].Outcome != v1alpha1.OutboxDuplicate || e.flSnapshot().Seq != seq+2 {
		t.Errorf("facts sent again: %+v, %v, snapshot %d", resp, err, e.flSnapshot().Seq)
	}
}

func (e *env) desiredFederatedOf(cluster string) []v1alpha1.DesiredFederated {
	return e.desired(cluster).Federated
}

// A started job's spec does not change; a job whose initial model is missing is refused,
// naming the field; deleting a job forgets its state and takes it from desired states.
func TestFederatedJobLifecycle(t *testing.T) {
	e, j := flEnv(t)
	if r := e.put("federatedjobs", "tiny-fl", tinyJob); r.code != http.StatusOK {
		t.Errorf("the same spec again: %d %s", r.code, r.body)
	}
	r := e.put("federatedjobs", "tiny-fl", strings.Replace(tinyJob, "rounds: 1", "rounds: 5", 1))
	if r.code != http.StatusUnprocessableEntity || !strings.Contains(unescape(r.body), "spec: Forbidden: a federated job's spec does not change once it started") {
		t.Errorf("a changed spec: %d %s", r.code, r.body)
	}
	r = e.put("federatedjobs", "other", strings.Replace(strings.Replace(tinyJob, "tiny-fl", "other", 1), "version: 1.0.0", "version: 2.0.0", 1))
	if r.code != http.StatusUnprocessableEntity || !strings.Contains(unescape(r.body), `spec.model.version: Invalid value: "2.0.0": model tiny:2.0.0 not found`) {
		t.Errorf("a missing initial model: %d %s", r.code, r.body)
	}
	r = e.put("federatedjobs", "other", strings.Replace(strings.Replace(tinyJob, "tiny-fl", "other", 1), "clients: {min: 2}",
		"clients: {min: 2}\n  strategy: {type: FedBuff, buffer: {stalenessWeighting: Sometimes}}", 1))
	if r.code != http.StatusUnprocessableEntity || !strings.Contains(unescape(r.body), `spec.strategy.buffer.stalenessWeighting: Unsupported value: "Sometimes"`) {
		t.Errorf("an unknown staleness weighting: %d %s", r.code, r.body)
	}
	if _, err := e.srv.ApplyOutbox(t.Context(), "a", []v1alpha1.OutboxRecord{flRecord(t, "f", j, string(j.UID), facts("a"))}); err != nil {
		t.Fatal(err)
	}
	if r := e.do(http.MethodDelete, "/federatedjobs/tiny-fl", "writer", "", nil); r.code != http.StatusOK {
		t.Fatalf("delete: %d %s", r.code, r.body)
	}
	if s := e.flSnapshot(); s.Seq != 0 {
		t.Errorf("snapshot %d of a deleted job", s.Seq)
	}
	if d := e.desiredFederatedOf("a"); len(d) != 0 {
		t.Errorf("desired state of a after the job was deleted: %+v", d)
	}
}

// flSpec maps each field of the resource to the coordinator's spec.
func TestFLSpec(t *testing.T) {
	base := func() *v1alpha1.FederatedJob {
		return &v1alpha1.FederatedJob{ObjectMeta: metav1.ObjectMeta{Name: "j", UID: "u"}, Spec: v1alpha1.FederatedJobSpec{Rounds: 3}}
	}
	ms := fl.ModelSpec{Arch: "mlp", Sizes: []int{4, 3}}
	for _, tc := range []struct {
		name   string
		mutate func(j *v1alpha1.FederatedJob)
		check  func(s fl.JobSpec) bool
	}{
		{"defaults", func(*v1alpha1.FederatedJob) {}, func(s fl.JobSpec) bool {
			return s.Strategy == fl.FedAvg && s.Rounds == 3 && s.MinClients == 2 && s.Fraction == 0 && s.LocalEpochs == 1 &&
				s.BatchSize == 32 && s.LR == 0.05 && s.Encoding == fl.Float32 && s.RoundDeadline == 10*time.Minute && s.SecAgg == nil && s.DP == nil
		}},
		{"FedProx", func(j *v1alpha1.FederatedJob) {
			j.Spec.Strategy = v1alpha1.AggregationStrategy{Type: v1alpha1.StrategyFedProx, Mu: "0.1"}
		},
			func(s fl.JobSpec) bool { return s.Strategy == fl.FedProx && s.ProxMu == 0.1 }},
		{"FedBuff", func(j *v1alpha1.FederatedJob) {
			j.Spec.Strategy = v1alpha1.AggregationStrategy{Type: v1alpha1.StrategyFedBuff, Buffer: &v1alpha1.AsyncBuffer{Size: 4}}
		}, func(s fl.JobSpec) bool { return s.Strategy == fl.FedBuff && s.BufferSize == 4 && s.MaxStaleness == 5 }},
		{"FedBuff hinge", func(j *v1alpha1.FederatedJob) {
			j.Spec.Strategy = v1alpha1.AggregationStrategy{Type: v1alpha1.StrategyFedBuff,
				Buffer: &v1alpha1.AsyncBuffer{Size: 4, StalenessWeighting: v1alpha1.StalenessHinge}}
		}, func(s fl.JobSpec) bool { return s.Strategy == fl.FedBuff && s.Weighting == fl.Hinge }},
		{"fraction", func(j *v1alpha1.FederatedJob) { j.Spec.Clients.Fraction = "0.5" }, func(s fl.JobSpec) bool { return s.Fraction == 0.5 }},
		{"secure and private", func(j *v1alpha1.FederatedJob) {
			j.Spec.SecureAggregation = true
			j.Spec.Privacy = &v1alpha1.DifferentialPrivacy{ClipNorm: "1", NoiseMultiplier: "1.1", Epsilon: "8"}
		}, func(s fl.JobSpec) bool {
			return s.SecAgg != nil && s.DP != nil && s.DP.Clip == 1 && s.DP.NoiseMultiplier == 1.1 && s.DP.EpsilonBudget == 8 &&
				s.DP.Delta == 1e-5 && s.DP.Distributed
		}},
		{"central noise without secure aggregation", func(j *v1alpha1.FederatedJob) {
			j.Spec.Privacy = &v1alpha1.DifferentialPrivacy{ClipNorm: "1", NoiseMultiplier: "1", Epsilon: "8", Delta: "1e-6"}
		}, func(s fl.JobSpec) bool { return !s.DP.Distributed && s.DP.Delta == 1e-6 }},
		{"quantized", func(j *v1alpha1.FederatedJob) { j.Spec.Encoding = v1alpha1.EncodingQuantized },
			func(s fl.JobSpec) bool { return s.Encoding == fl.Int8 && !s.Adaptive }},
		{"adaptive", func(j *v1alpha1.FederatedJob) { j.Spec.Encoding = v1alpha1.EncodingAdaptive },
			func(s fl.JobSpec) bool { return s.Encoding == fl.Auto && s.Adaptive }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := base()
			tc.mutate(j)
			s := flSpec(j, ms)
			if !tc.check(s) {
				t.Errorf("flSpec = %+v", s)
			}
			if err := s.Validate(); err != nil {
				t.Errorf("the coordinator refuses it: %v", err)
			}
		})
	}
}

// unescape undoes JSON's escaping of quotes in a Status answer, to read its message.
func unescape(b []byte) string { return strings.ReplaceAll(string(b), `\"`, `"`) }

// A cluster whose link the hub marks Disconnected is reported offline to the coordinator at
// the next step, once, with the change stored (what the coordinator makes of it is its own:
// a round under way may settle without the cluster); connected again, it is reported online
// with the facts it sent.
func TestFederatedLinkDown(t *testing.T) {
	e, j := flEnv(t)
	for i, c := range []string{"a", "b"} {
		if _, err := e.srv.ApplyOutbox(t.Context(), c, []v1alpha1.OutboxRecord{flRecord(t, fmt.Sprintf("f%d", i), j, string(j.UID), facts(c))}); err != nil {
			t.Fatal(err)
		}
	}
	assignment := func(c string) fl.Assignment {
		t.Helper()
		var a fl.Assignment
		if d := e.desiredFederatedOf(c); len(d) == 1 && len(d[0].Message) > 0 {
			if err := json.Unmarshal(d[0].Message, &a); err != nil {
				t.Fatal(err)
			}
		}
		return a
	}
	if a := assignment("b"); a.Phase != fl.Train || a.Round != 1 {
		t.Fatalf("b's assignment before its link drops: %+v", a)
	}
	setLink := func(c string, state v1alpha1.LinkState) {
		t.Helper()
		body := fmt.Sprintf("apiVersion: ml.outpost.dev/v1alpha1\nkind: Cluster\nmetadata: {name: %s, labels: {fl: \"on\"}}\nstatus: {link: {state: %s}}\n", c, state)
		if r := e.do(http.MethodPut, "/clusters/"+c+"/status", "writer", "application/yaml", []byte(body)); r.code != http.StatusOK {
			t.Fatalf("status of %s: %d %s", c, r.code, r.body)
		}
		if err := e.srv.StepFederated(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	seq := e.flSnapshot().Seq
	setLink("b", v1alpha1.LinkDisconnected)
	if got := e.flSnapshot().Seq; got == seq {
		t.Fatalf("b's link dropped and the coordinator was not told (snapshot %d)", got)
	}
	seq = e.flSnapshot().Seq
	setLink("b", v1alpha1.LinkDisconnected) // no news: nothing to tell
	if got := e.flSnapshot().Seq; got != seq {
		t.Errorf("the coordinator was told twice (snapshot %d, then %d)", seq, got)
	}
	// The hub restarts while b is away: what the coordinator was told of b's link is
	// in its snapshot, so the new hub tells it b is back.
	e.restart()
	setLink("b", v1alpha1.LinkConnected)
	if got := e.flSnapshot().Seq; got == seq {
		t.Errorf("b came back and the coordinator was not told (snapshot %d)", got)
	}
	if a := assignment("b"); a.Phase != fl.Train {
		t.Errorf("b, back, has no work: %+v", a)
	}
}

func TestLinkReports(t *testing.T) {
	on := fl.ClusterFacts{Online: true, BandwidthBps: 8e6, Samples: 100}
	off := on
	off.Online = false
	known := map[string]fl.ClusterFacts{"up": on, "away": off}
	lookup := func(c string) (fl.ClusterFacts, bool) { f, ok := known[c]; return f, ok }
	tests := []struct {
		name  string
		links map[string]v1alpha1.LinkState
		want  map[string]fl.ClusterFacts
	}{
		{"no news", map[string]v1alpha1.LinkState{"up": v1alpha1.LinkConnected, "away": v1alpha1.LinkDisconnected}, map[string]fl.ClusterFacts{}},
		{"one drops", map[string]v1alpha1.LinkState{"up": v1alpha1.LinkDisconnected}, map[string]fl.ClusterFacts{"up": off}},
		{"one comes back, its facts kept", map[string]v1alpha1.LinkState{"away": v1alpha1.LinkConnected}, map[string]fl.ClusterFacts{"away": on}},
		{"a degraded link is still a link", map[string]v1alpha1.LinkState{"away": v1alpha1.LinkDegraded}, map[string]fl.ClusterFacts{"away": on}},
		{"never reported: nothing to correct", map[string]v1alpha1.LinkState{"new": v1alpha1.LinkDisconnected}, map[string]fl.ClusterFacts{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := linkReports(lookup, tt.links); !maps.Equal(got, tt.want) {
				t.Errorf("linkReports = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The spec a round's model is published with is the one its weights came from, for either arch.
func TestModelSpecOf(t *testing.T) {
	for _, spec := range []fl.ModelSpec{
		{Arch: v1alpha1.ArchMLP, Sizes: []int{784, 32, 10}},
		{Arch: v1alpha1.ArchMLP, Sizes: []int{6, 4, 5, 3}},
		{Arch: v1alpha1.ArchCNN},
	} {
		w, err := fl.InitialWeights(spec, 1)
		if err != nil {
			t.Fatal(err)
		}
		got := modelSpecOf(spec.Arch, w)
		if got.Arch != spec.Arch || fmt.Sprint(got.Sizes) != fmt.Sprint(spec.Sizes) {
			t.Errorf("modelSpecOf(%s, %v) = %+v, want %+v", spec.Arch, fl.Shape(w), got, spec)
		}
		if _, err := fl.MarshalONNX(got, w, "m"); err != nil {
			t.Errorf("%+v: %v", spec, err)
		}
	}
}

// TestFederatedStatusShowsRing: a cluster of a secure round shows the
// ring its masked update is sent in as its encoding, and why.
func TestFederatedStatusShowsRing(t *testing.T) {
	j := &v1alpha1.FederatedJob{}
	st := fl.Status{Plans: []fl.Plan{
		{Cluster: "a", Encoding: fl.Float32, Ring: 16, Reason: "a: 1 local epoch, 16-bit ring: link speed unknown; the cohort's 16-bit ring (8 fractional bits for 10 clusters of values up to 4): the job's encoding is int8"},
		{Cluster: "b", Encoding: fl.Int8, Reason: "b: 1 local epoch, int8"},
	}}
	out := federatedStatus(j, st, []string{"a", "b"}, nil, time.Unix(0, 0))
	if len(out.Clusters) != 2 || out.Clusters[0].Encoding != "16-bit ring" || !strings.Contains(out.Clusters[0].Reason, "the cohort's 16-bit ring") || out.Clusters[1].Encoding != "int8" {
		t.Fatalf("%+v", out.Clusters)
	}
}
