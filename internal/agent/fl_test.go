package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/fl"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/onnx/ort"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/train"
)

const flJobYAML = `apiVersion: ml.outpost.dev/v1alpha1
kind: FederatedJob
metadata: {name: fmnist-fl}
spec:
  model: {name: fmnist, version: 1.0.0}
  clusterSelectors: [{matchLabels: {fl: "on"}}]
  data: {path: fmnist}
  rounds: 2
  clients: {min: 3}
  training: {epochs: 1, batchSize: 32, learningRate: "0.05"}
`

// flReportInterval is the periodic report interval of the agents in the federated jobs: their
// federated records go through the outbox at once and a state change sends a report at once,
// so reports five times a second from each agent only load the hub, not move the job on.
const flReportInterval = 2 * time.Second

// initialModel is a freshly initialised model of arch as internal/train exports it: an MLP
// 784-32-10 or the CNN.
func initialModel(t *testing.T, arch string) []byte {
	t.Helper()
	spec := fl.ModelSpec{Arch: arch}
	if arch == v1alpha1.ArchMLP {
		spec.Sizes = []int{784, 32, 10}
	}
	w, err := fl.InitialWeights(spec, 1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fl.MarshalONNX(spec, w, "fmnist")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pushInitial pushes a freshly initialised model of arch as models/fmnist:1.0.0.
func pushInitial(t *testing.T, h *testHub, arch string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), initialModel(t, arch), 0o644); err != nil {
		t.Fatal(err)
	}
	h.push(dir, "fmnist", "1.0.0")
}

// federatedJob reads job name from the hub.
func federatedJob(t *testing.T, h *testHub, name string) v1alpha1.FederatedJob {
	t.Helper()
	code, b := h.api(http.MethodGet, "/federatedjobs/"+name, "", nil)
	if code != http.StatusOK {
		t.Fatalf("get federated job: %d %s", code, b)
	}
	var j v1alpha1.FederatedJob
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// Three agents train a federated job from a model in the registry on their own shards of
// Fashion-MNIST: each round's global model becomes a signed version with its lineage, and
// the job succeeds after its rounds.
// runFederatedJob starts a hub with an initial model of arch and three agents with images
// images each, applies job (named fmnist-fl, of that arch) and returns it once it ended.
func runFederatedJob(t *testing.T, arch string, images int, job string) (*testHub, v1alpha1.FederatedJob) {
	t.Helper()
	h := newTestHub(t)
	pushInitial(t, h, arch)
	all, _, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	tok := h.joinToken()
	for i, name := range []string{"edge-1", "edge-2", "edge-3"} {
		dir := t.TempDir()
		if err := dataset.WriteDir(filepath.Join(dir, "data", "fmnist"), "train", all.Slice(i*images, (i+1)*images)); err != nil {
			t.Fatal(err)
		}
		cfg := agentConfig(h, dir, tok)
		cfg.Name, cfg.Labels = name, map[string]string{"region": "eu", "fl": "on"}
		cfg.ReportInterval = flReportInterval
		_, stop, _ := startAgent(t, cfg)
		t.Cleanup(stop)
	}
	if code, b := h.api(http.MethodPut, "/federatedjobs/fmnist-fl", "application/yaml", []byte(job)); code >= 300 {
		t.Fatalf("apply job: %d %s", code, b)
	}
	deadline := time.Now().Add(time.Minute)
	var j v1alpha1.FederatedJob
	for {
		j = federatedJob(t, h, "fmnist-fl")
		if j.Status.Phase.Finished() {
			return h, j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %s at round %d: %+v", j.Status.Phase, j.Status.Round, j.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Both archs: an MLP and the CNN job run their rounds from an initial model of their arch, and
// each round's model is a signed version of that arch that the Go runtime and ONNX Runtime
// run, predicting as internal/train does; a job that names the model with the other arch is
// refused.
func TestFederatedJob(t *testing.T) {
	for _, tc := range []struct {
		arch   string
		images int // per site: the CNN trains 5 to 15 times slower than an MLP, 10 times slower again under -race
	}{{v1alpha1.ArchMLP, 300}, {v1alpha1.ArchCNN, 60}} {
		arch := tc.arch
		t.Run(arch, func(t *testing.T) {
			job := strings.Replace(flJobYAML, "version: 1.0.0}", "version: 1.0.0, arch: "+arch+"}", 1)
			h, j := runFederatedJob(t, arch, tc.images, job)
			checkFederatedJob(t, h, j)
			dir := t.TempDir()
			if _, err := artifact.Pull(t.Context(), h.repo("fmnist-fl"), "0.2.0", dir, artifact.PullOptions{}); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			_, w, err := fl.ReadONNX(arch, b)
			if err != nil {
				t.Fatal(err)
			}
			_, w0, err := fl.ReadONNX(arch, initialModel(t, arch))
			if err != nil {
				t.Fatal(err)
			}
			if fl.Digest(w) == fl.Digest(w0) {
				t.Error("round 2's model has the initial weights")
			}
			runsInRuntimes(t, arch, b)
			// A job that names the model with the other arch is refused, saying what differs.
			other := map[string]string{v1alpha1.ArchMLP: v1alpha1.ArchCNN, v1alpha1.ArchCNN: v1alpha1.ArchMLP}[arch]
			wrong := strings.NewReplacer("arch: "+arch, "arch: "+other, "name: fmnist-fl", "name: wrong-arch").Replace(job)
			code, body := h.api(http.MethodPut, "/federatedjobs/wrong-arch", "application/yaml", []byte(wrong))
			if want := "model fmnist:1.0.0 (arch " + other + "): train: ONNX "; code != http.StatusUnprocessableEntity ||
				!strings.Contains(string(body), "spec.model.version") || !strings.Contains(string(body), want) {
				t.Errorf("a job of arch %s from a %s model: %d %s, want 422 saying %q", other, arch, code, body, want)
			}
		})
	}
}

// checkFederatedJob checks that job j, run by runFederatedJob with two rounds, succeeded with
// every cluster in both, and that its last model is a version with lineage, signed by the hub.
func checkFederatedJob(t *testing.T, h *testHub, j v1alpha1.FederatedJob) {
	t.Helper()
	if j.Status.Phase != v1alpha1.FederatedSucceeded || j.Status.Round != 2 || len(j.Status.Rounds) != 2 {
		t.Fatalf("job ended %s at round %d with %d rounds: %s", j.Status.Phase, j.Status.Round, len(j.Status.Rounds), j.Status.Message)
	}
	for i, r := range j.Status.Rounds {
		if r.Participants != 3 || r.Version != v1alpha1.RoundVersion(i+1) || r.UpdateBytes == 0 {
			t.Errorf("round %d: %+v", i+1, r)
		}
	}
	if j.Status.LatestModel != "fmnist-fl" || j.Status.LatestVersion != "0.2.0" || len(j.Status.Clusters) != 3 {
		t.Errorf("latest %s@%s, %d cluster rows", j.Status.LatestModel, j.Status.LatestVersion, len(j.Status.Clusters))
	}
	for _, c := range j.Status.Clusters {
		if c.Updates != 2 || c.LastRound != 2 {
			t.Errorf("cluster row %+v, want 2 updates, the last of round 2", c)
		}
	}
	repo := h.repo("fmnist-fl")
	info, err := artifact.Inspect(t.Context(), repo, "0.2.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	l := info.Lineage
	if l.Parent != "fmnist-fl@0.1.0" || l.FederatedJob != "fmnist-fl" || l.FederatedRound != "2" || l.ProducedBy != "federatedjob/fmnist-fl" ||
		info.Metrics["participants"] != "3" {
		t.Errorf("lineage %+v, metrics %v", l, info.Metrics)
	}
	desc, err := repo.Resolve(t.Context(), "0.2.0")
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := artifact.Signatures(t.Context(), repo, desc, nil)
	if err != nil || len(sigs) != 1 {
		t.Errorf("signatures of 0.2.0: %v, %v", sigs, err)
	}
	if !strings.HasPrefix(fmt.Sprint(info.Digest), "sha256:") {
		t.Errorf("digest %s", info.Digest)
	}
}

// runsInRuntimes checks that the Go runtime and ONNX Runtime (a peer: skipped without it) run
// model, of arch, on a few test images and give internal/train's probabilities within 1e-4.
func runsInRuntimes(t *testing.T, arch string, model []byte) {
	t.Helper()
	_, test, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	x := make([]float32, n*784)
	for i := range n {
		test.Sample(i, x[i*784:(i+1)*784])
	}
	var want []float32
	shape := []int{n, 784}
	switch arch {
	case v1alpha1.ArchMLP:
		m, err := train.ImportONNX(model)
		if err != nil {
			t.Fatal(err)
		}
		want = m.Predict(x)
	case v1alpha1.ArchCNN:
		c, err := train.ImportCNN(model)
		if err != nil {
			t.Fatal(err)
		}
		want, shape = c.Predict(x), []int{n, 1, 28, 28}
	}
	check := func(t *testing.T, s interface {
		Run(context.Context, map[string]*interp.Tensor) (map[string]*interp.Tensor, error)
	}) {
		out, err := s.Run(t.Context(), map[string]*interp.Tensor{train.ONNXInput: interp.FromFloat32(x, shape...)})
		if err != nil {
			t.Fatal(err)
		}
		got := out[train.ONNXOutput]
		if got == nil || len(got.F32) != len(want) {
			t.Fatalf("output %q missing or misshapen: %+v", train.ONNXOutput, got)
		}
		for i := range want {
			if d := math.Abs(float64(got.F32[i] - want[i])); d > 1e-4 {
				t.Fatalf("probability %d: %v, internal/train's %v", i, got.F32[i], want[i])
			}
		}
	}
	t.Run("go", func(t *testing.T) {
		m, err := interp.Load(model)
		if err != nil {
			t.Fatal(err)
		}
		check(t, m)
	})
	t.Run("onnxruntime", func(t *testing.T) {
		rt, err := ort.FromEnv()
		if errors.Is(err, ort.ErrNoLibrary) || noCgo(err) {
			testenv.MissingPeer(t, err.Error())
		}
		if err != nil {
			t.Fatal(err)
		}
		s, err := rt.LoadBytes(t.Context(), model)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		check(t, s)
	})
}

// A job with differential privacy spends ε round after round, reports it, and ends before a
// round that would spend more than its budget.
func TestFederatedPrivacyBudget(t *testing.T) {
	job := strings.Replace(flJobYAML, "rounds: 2", "rounds: 20", 1) +
		"  privacy: {clipNorm: \"1\", noiseMultiplier: \"1.0\", epsilon: \"12\"}\n"
	_, j := runFederatedJob(t, v1alpha1.ArchMLP, 300, job)
	if j.Status.Phase != v1alpha1.FederatedSucceeded || !strings.Contains(j.Status.Message, "over the budget") {
		t.Fatalf("job %s: %s", j.Status.Phase, j.Status.Message)
	}
	n := len(j.Status.Rounds)
	if n == 0 || n >= 20 {
		t.Fatalf("%d rounds within the budget", n)
	}
	last := 0.0
	for _, r := range j.Status.Rounds {
		eps, err := strconv.ParseFloat(r.EpsilonSpent, 64)
		if err != nil || eps <= last || eps > 12 {
			t.Errorf("round %d spent ε %q after %v", r.Round, r.EpsilonSpent, last)
		}
		last = eps
	}
	if j.Status.EpsilonSpent != j.Status.Rounds[n-1].EpsilonSpent {
		t.Errorf("job ε %s, last round's %s", j.Status.EpsilonSpent, j.Status.Rounds[n-1].EpsilonSpent)
	}
}

// A job with a target accuracy ends once a round's starting model reaches it, with that
// model published.
func TestFederatedTargetAccuracy(t *testing.T) {
	job := strings.Replace(flJobYAML, "rounds: 2", "rounds: 30\n  targetAccuracy: \"0.5\"", 1)
	_, j := runFederatedJob(t, v1alpha1.ArchMLP, 300, job)
	n := len(j.Status.Rounds)
	if j.Status.Phase != v1alpha1.FederatedSucceeded || !strings.Contains(j.Status.Message, "target accuracy 0.5 reached") || n == 0 || n >= 30 {
		t.Fatalf("job %s after %d rounds: %s", j.Status.Phase, n, j.Status.Message)
	}
	if acc, _ := strconv.ParseFloat(j.Status.Accuracy, 64); acc < 0.5 || j.Status.LatestVersion != v1alpha1.RoundVersion(n) {
		t.Errorf("accuracy %s, latest version %s after %d rounds", j.Status.Accuracy, j.Status.LatestVersion, n)
	}
}

// An agent restarted mid-job never acts on an assignment twice: it records each before it
// trains, and its reports wait in its durable outbox.
func TestFederatedAgentRestart(t *testing.T) {
	h := newTestHub(t)
	pushInitial(t, h, v1alpha1.ArchMLP)
	all, _, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	tok := h.joinToken()
	log := &testenv.Buffer{}
	start := func(name, dir string) context.CancelFunc {
		cfg := agentConfig(h, dir, tok)
		cfg.Name, cfg.Labels = name, map[string]string{"region": "eu", "fl": "on"}
		cfg.ReportInterval = flReportInterval
		if name == "edge-1" {
			cfg.Logger = slog.New(slog.NewTextHandler(log, nil))
		}
		_, stop, _ := startAgent(t, cfg)
		return stop
	}
	dirs := map[string]string{}
	stops := map[string]context.CancelFunc{}
	for i, name := range []string{"edge-1", "edge-2"} {
		dirs[name] = t.TempDir()
		if err := dataset.WriteDir(filepath.Join(dirs[name], "data", "fmnist"), "train", all.Slice(i*300, (i+1)*300)); err != nil {
			t.Fatal(err)
		}
		stops[name] = start(name, dirs[name])
	}
	t.Cleanup(func() { stops["edge-2"]() })
	job := strings.NewReplacer("rounds: 2", "rounds: 4", "clients: {min: 3}", "clients: {min: 2, roundTimeout: 10s}").Replace(flJobYAML)
	if code, b := h.api(http.MethodPut, "/federatedjobs/fmnist-fl", "application/yaml", []byte(job)); code >= 300 {
		t.Fatalf("apply job: %d %s", code, b)
	}
	testenv.WaitFor(t, time.Minute, "edge-1 acting in round 2", func() bool {
		return strings.Contains(log.String(), "round=2")
	})
	stops["edge-1"]()
	stops["edge-1"] = start("edge-1", dirs["edge-1"])
	t.Cleanup(func() { stops["edge-1"]() })
	testenv.WaitFor(t, 2*time.Minute, "the job ends", func() bool { return federatedJob(t, h, "fmnist-fl").Status.Phase.Finished() })
	if j := federatedJob(t, h, "fmnist-fl"); j.Status.Phase != v1alpha1.FederatedSucceeded || len(j.Status.Rounds) != 4 {
		t.Fatalf("job %s after %d rounds: %s", j.Status.Phase, len(j.Status.Rounds), j.Status.Message)
	}
	acted := map[string]int{}
	for _, line := range strings.Split(log.String(), "\n") {
		if !strings.Contains(line, `msg="federated round"`) {
			continue
		}
		i := strings.Index(line, "round=")
		j := strings.Index(line, " reports=")
		if i < 0 || j < i {
			t.Fatalf("log line %q", line)
		}
		acted[line[i:j]]++
	}
	if len(acted) < 3 {
		t.Fatalf("edge-1 acted on %d assignments: %v\n%s", len(acted), acted, log.String())
	}
	// A round that lost edge-1 at the restart may be run again (a new assignment of the same
	// round): each assignment, as its version names it, is acted on once.
	for a, n := range acted {
		if n != 1 {
			t.Errorf("edge-1 acted on %s %d times", a, n)
		}
	}
}

func TestFactsChanged(t *testing.T) {
	base := fl.ClusterFacts{Online: true, BandwidthBps: 10e6, Samples: 600, SamplesPerSec: 2000}
	with := func(f func(*fl.ClusterFacts)) fl.ClusterFacts { c := base; f(&c); return c }
	tests := []struct {
		name string
		now  fl.ClusterFacts
		want bool
	}{
		{"same", base, false},
		{"bandwidth noise up", with(func(f *fl.ClusterFacts) { f.BandwidthBps = 14e6 }), false},
		{"bandwidth noise down", with(func(f *fl.ClusterFacts) { f.BandwidthBps = 7e6 }), false},
		{"link got better", with(func(f *fl.ClusterFacts) { f.BandwidthBps = 15e6 }), true},
		{"link got worse", with(func(f *fl.ClusterFacts) { f.BandwidthBps = 1e6 }), true},
		{"bandwidth no longer known", with(func(f *fl.ClusterFacts) { f.BandwidthBps = 0 }), true},
		{"more local data", with(func(f *fl.ClusterFacts) { f.Samples = 700 }), true},
		{"training speed", with(func(f *fl.ClusterFacts) { f.SamplesPerSec = 1000 }), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := factsChanged(base, tt.now); got != tt.want {
				t.Errorf("factsChanged(%+v, %+v) = %v, want %v", base, tt.now, got, tt.want)
			}
		})
	}
	unknown := with(func(f *fl.ClusterFacts) { f.BandwidthBps = 0 })
	if !factsChanged(unknown, base) || factsChanged(unknown, unknown) {
		t.Error("a bandwidth first known is news; still unknown is not")
	}
}

// The training speed an agent reports is measured on a model of the job's arch, and is 0 where
// the local data do not fit it.
func TestSamplesPerSec(t *testing.T) {
	all, _, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	small := &dataset.Set{Rows: 10, Cols: 10, Classes: 10, Images: make([]byte, 100), Labels: []uint8{1}}
	for _, tc := range []struct {
		name, arch string
		data       train.Dataset
		measured   bool
	}{
		{"mlp", v1alpha1.ArchMLP, all.Slice(0, 64), true},
		{"cnn", v1alpha1.ArchCNN, all.Slice(0, 64), true},
		{"mlp of 10x10 images", v1alpha1.ArchMLP, small, true},
		{"cnn of 10x10 images", v1alpha1.ArchCNN, small, false},
		{"no data", v1alpha1.ArchCNN, all.Slice(0, 0), false},
		{"unknown arch", "rnn", all.Slice(0, 64), false},
	} {
		r := &federatedRunner{}
		got := r.samplesPerSec(t.Context(), v1alpha1.DesiredFederated{Arch: tc.arch}, &localData{train: tc.data})
		if (got > 0) != tc.measured || got < 0 {
			t.Errorf("%s: %v samples/s, want a speed: %v", tc.name, got, tc.measured)
		}
	}
}
