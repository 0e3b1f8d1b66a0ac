package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/opencontainers/go-digest"
	"k8s.io/apimachinery/pkg/api/resource"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/clock"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/pipeline/cond"
	"outpost.dev/outpost/internal/schedule"
)

// stepType is the implementation of one step type: one entry of the table
// stepTypes returns.
type stepType struct {
	// fingerprint, if set, returns what the step reads besides its params
	// and inputs (the digest of the source data, of the served model), for
	// its cache key.
	fingerprint func(ctx context.Context, env *stepEnv) (string, error)
	// stillValid, if set, reports whether outputs an earlier run cached
	// still hold (a deploy: the host still serves that version).
	stillValid func(ctx context.Context, env *stepEnv, outputs map[string]string) bool
	// run does the work and returns the step's outputs.
	run func(ctx context.Context, env *stepEnv) (map[string]string, error)
}

// stepTypes returns the table of step types: one implementation for each
// entry of v1alpha1.StepTypes (a test checks that they match).
func stepTypes() map[v1alpha1.StepType]stepType {
	return map[v1alpha1.StepType]stepType{
		v1alpha1.StepDataset:  {fingerprint: datasetFingerprint, run: runDataset},
		v1alpha1.StepTrain:    {run: runTrain},
		v1alpha1.StepFinetune: {fingerprint: deploymentFingerprint, run: runFinetune},
		v1alpha1.StepEvaluate: {fingerprint: deploymentFingerprint, run: runEvaluate},
		v1alpha1.StepRegister: {run: runRegister},
		v1alpha1.StepDeploy:   {stillValid: deployStillValid, run: runDeploy},
		v1alpha1.StepExec:     {run: runExec},
	}
}

// stepEnv is what a step's implementation works with.
type stepEnv struct {
	e        *Engine
	run      *runRow
	idx      int
	step     *v1alpha1.PipelineStep
	inputs   map[string]string
	states   []StepState // the run's steps when this one was prepared
	log      *stepLog
	attempt  int32
	request  schedule.Resources
	granted  schedule.Resources
	cpu      *atomic.Int64 // granted milliCPU, lowered by throttling
	clock    clock.Clock
	host     Host
	runtime  engine.Runtime
	ckptDir  string
	workDir  string
	cacheKey string
	// models are the versions a register step recorded, written with its
	// success.
	models []modelRow
	// note, if set, is the message of the step's status once it succeeded
	// (an exec step says which limits applied).
	note string
}

// param returns a param, or def when the step does not set it.
func (env *stepEnv) param(name, def string) string {
	if v, ok := env.step.Params[name]; ok {
		return v
	}
	return def
}

// intParam returns an integer param of at least lo, or def.
func (env *stepEnv) intParam(name string, def, lo int) (int, error) {
	v, ok := env.step.Params[name]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo {
		return 0, fmt.Errorf("param %s: %q is not an integer of at least %d", name, v, lo)
	}
	return n, nil
}

// floatParam returns a positive number param, or def.
func (env *stepEnv) floatParam(name string, def float64) (float64, error) {
	v, ok := env.step.Params[name]
	if !ok {
		return def, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f > 0) {
		return 0, fmt.Errorf("param %s: %q is not a positive number", name, v)
	}
	return f, nil
}

// threads is how many cores the step may use now: its granted CPU (at
// least one), lowered by throttling, at most its threads param.
func (env *stepEnv) threads() int {
	n := 1
	if env.cpu != nil {
		n = max(1, int(env.cpu.Load()/1000))
	}
	if t, err := env.intParam("threads", 0, 1); err == nil && t > 0 {
		n = min(n, t)
	}
	return n
}

// producer returns the step whose output input name reads, with its
// state, or false.
func (env *stepEnv) producer(input string) (*v1alpha1.PipelineStep, StepState, cond.Ref, bool) {
	ref, ok := env.step.Inputs[input]
	if !ok {
		return nil, StepState{}, cond.Ref{}, false
	}
	r, err := cond.ParseRef(ref)
	if err != nil {
		return nil, StepState{}, cond.Ref{}, false
	}
	for i := range env.run.spec.Steps {
		if env.run.spec.Steps[i].Name == r.Step {
			return &env.run.spec.Steps[i], env.states[i], r, true
		}
	}
	return nil, StepState{}, cond.Ref{}, false
}

// artifact returns the path of the blob an input names, checking that the
// value is a digest the layout holds.
func (env *stepEnv) artifact(input string) (string, error) {
	v, ok := env.inputs[input]
	if !ok {
		return "", fmt.Errorf("no input %s", input)
	}
	d, ok := artifactDigest(v)
	if !ok || !env.e.layout.Has(d) {
		return "", fmt.Errorf("input %s (%s) is not an artifact of this engine", input, env.step.Inputs[input])
	}
	return env.e.layout.BlobPath(d), nil
}

// table reads the data set artifact of input.
func (env *stepEnv) table(input string) (*table, error) {
	path, err := env.artifact(input)
	if err != nil {
		return nil, err
	}
	return readTable(path)
}

// digestRE matches the sha256 digests the engine gives artifacts.
var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// artifactDigest returns the digest an output value names, if it is one.
func artifactDigest(v string) (digest.Digest, bool) {
	if !digestRE.MatchString(v) {
		return "", false
	}
	return digest.Digest(v), true
}

func digestOf(s string) digest.Digest { return digest.Digest(s) }

// cacheVersion changes when what a cache key covers changes.
const cacheVersion = "outpost-pipeline-cache-v1"

// cacheKey is the digest of what decides a step's outputs: its type,
// params, exec command, input values (artifact digests or values), the
// cluster, and its fingerprint.
func cacheKey(st *v1alpha1.PipelineStep, inputs map[string]string, cluster, fingerprint string) string {
	type keyDoc struct {
		Version     string             `json:"v"`
		Type        v1alpha1.StepType  `json:"type"`
		Params      map[string]string  `json:"params,omitempty"`
		Inputs      map[string]string  `json:"inputs,omitempty"`
		Exec        *v1alpha1.ExecStep `json:"exec,omitempty"`
		Cluster     string             `json:"cluster"`
		Fingerprint string             `json:"fingerprint,omitempty"`
	}
	// encoding/json writes map keys sorted: the key is canonical.
	b, _ := json.Marshal(keyDoc{cacheVersion, st.Type, st.Params, inputs, st.Exec, cluster, fingerprint})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// outputsHeld reports whether every artifact the outputs name is in the
// layout (a cached entry whose blobs are gone is not used).
func (e *Engine) outputsHeld(outputs map[string]string) bool {
	for _, v := range outputs {
		if d, ok := artifactDigest(v); ok && !e.layout.Has(d) {
			return false
		}
	}
	return true
}

// newEnv makes the environment of step idx of run r.
func (e *Engine) newEnv(r *runRow, idx int, states []StepState, log *stepLog) *stepEnv {
	st := &r.spec.Steps[idx]
	return &stepEnv{
		e: e, run: r, idx: idx, step: st, states: slices.Clone(states), log: log,
		clock: e.clock, host: e.opts.Host, runtime: e.runtime, request: request(st),
		ckptDir: filepath.Join(e.opts.Dir, ckptDir, r.name, st.Name),
		workDir: filepath.Join(e.opts.Dir, workDir, r.name, st.Name),
	}
}

// sortedKeys returns the keys of m, sorted.
func sortedKeys(m map[string]string) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.Sort(keys)
	return keys
}

// bytesString writes a byte count as a Kubernetes quantity ("64Mi").
func bytesString(n int64) string { return resource.NewQuantity(n, resource.BinarySI).String() }

// copyOutputs returns a copy of outputs.
func copyOutputs(o map[string]string) map[string]string { return maps.Clone(o) }

// removeAll removes a folder, logging a failure.
func (e *Engine) removeAll(dir string) {
	if err := os.RemoveAll(dir); err != nil {
		e.log.Warn("remove folder", "dir", dir, "err", err)
	}
}
