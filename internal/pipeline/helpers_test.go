package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/schedule"
	"outpost.dev/outpost/internal/train"
)

// testCapacity is the machine of the tests: 4 cores, 8 GiB.
var testCapacity = schedule.Config{Allocatable: schedule.Resources{MilliCPU: 4000, Memory: 8 << 30}}

// specOf decodes a PipelineSpec written in YAML.
func specOf(t testing.TB, s string) *v1alpha1.PipelineSpec {
	t.Helper()
	var spec v1alpha1.PipelineSpec
	if err := yaml.UnmarshalStrict([]byte(s), &spec); err != nil {
		t.Fatalf("spec: %v", err)
	}
	return &spec
}

// fakeHost is a Host with deployments in memory.
type fakeHost struct {
	mu      sync.Mutex
	active  map[string]ModelRef
	deploys []string
}

func (h *fakeHost) ActiveModel(ctx context.Context, deployment string) (ModelRef, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.active[deployment]
	if !ok {
		return ModelRef{}, fmt.Errorf("no deployment %q", deployment)
	}
	return m, nil
}

func (h *fakeHost) Deploy(ctx context.Context, deployment string, m Model) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, err := os.Stat(m.File); err != nil {
		return "", err
	}
	prev := h.active[deployment].Version
	if h.active == nil {
		h.active = map[string]ModelRef{}
	}
	h.active[deployment] = ModelRef{Name: deployment, Version: m.Version, Digest: m.Digest, Path: m.File}
	h.deploys = append(h.deploys, deployment+"="+m.Version)
	return prev, nil
}

// serve makes the host serve a model trained on the embedded subset (784-32-10, 1 epoch).
func (h *fakeHost) serve(t testing.TB, deployment, version string) {
	t.Helper()
	m := train.NewMLP([]int{784, 32, 10}, 7)
	b, err := m.MarshalONNX("base")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "base.onnx")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.active == nil {
		h.active = map[string]ModelRef{}
	}
	h.active[deployment] = ModelRef{Name: deployment, Version: version, Digest: "sha256:" + hex.EncodeToString(sum[:]), Path: path}
}

// testEngine is an engine running in the background of a test.
type testEngine struct {
	*Engine
	host *fakeHost
	stop func()
}

// startEngine opens an engine in dir and runs it until the test ends.
func startEngine(t testing.TB, dir string, mutate ...func(*Options)) *testEngine {
	t.Helper()
	host := &fakeHost{}
	opts := Options{Dir: dir, Cluster: "edge-1", Host: host, Capacity: testCapacity}
	for _, m := range mutate {
		m(&opts)
	}
	if h, ok := opts.Host.(*fakeHost); ok {
		host = h
	}
	e, err := Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	te := &testEngine{Engine: e, host: host}
	te.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
			e.Close()
		})
	}
	t.Cleanup(te.stop)
	return te
}

// run starts a run of spec and waits for it to end.
func (te *testEngine) run(t testing.TB, name, spec string, opts RunOptions) *v1alpha1.PipelineRun {
	t.Helper()
	if _, err := te.Start(t.Context(), name, "p", 1, specOf(t, spec), "", opts); err != nil {
		t.Fatal(err)
	}
	return te.wait(t, name)
}

func (te *testEngine) wait(t testing.TB, name string) *v1alpha1.PipelineRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	r, err := te.Wait(ctx, name)
	if err != nil {
		t.Fatalf("wait for run %s: %v (status %+v)", name, err, r.Status)
	}
	return r
}

// step returns a step's status.
func step(t testing.TB, r *v1alpha1.PipelineRun, name string) v1alpha1.StepStatus {
	t.Helper()
	for _, s := range r.Status.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("run %s has no step %s", r.Name, name)
	return v1alpha1.StepStatus{}
}

// phases writes the steps' phases as "a=Succeeded b=Skipped".
func phases(r *v1alpha1.PipelineRun) string {
	var parts []string
	for _, s := range r.Status.Steps {
		parts = append(parts, s.Name+"="+string(s.Phase))
	}
	return strings.Join(parts, " ")
}

// logOf reads a step's log.
func logOf(t testing.TB, e *Engine, run, stepName string) string {
	t.Helper()
	rc, err := e.Logs(t.Context(), run, stepName)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
