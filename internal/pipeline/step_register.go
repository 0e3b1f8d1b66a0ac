package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/driftref"
)

// NextVersion is the version a register step gives a model derived from
// base ("model@version", or "" or a digest when the base has no version)
// in run number run: a prerelease of the next patch,
//
//	1.2.0          -> 1.2.1-edge.RUN
//	1.3.0-rc.1     -> 1.3.0-rc.1.edge.RUN
//	1.2.1-edge.4   -> 1.2.1-edge.RUN (RUN > 4; else 1.2.1-edge.4.edge.RUN)
//	no version     -> 0.1.0-edge.RUN
//
// which is valid semver, sorts above the base, and below the hub's next
// release of that line (1.2.1): an edge version never passes for a release.
func NextVersion(base string, run int64) string {
	_, v, ok := strings.Cut(base, "@")
	sv, err := semver.StrictNewVersion(v)
	if !ok || err != nil {
		return fmt.Sprintf("0.1.0-edge.%d", run)
	}
	pre := sv.Prerelease()
	switch {
	case pre == "":
		return fmt.Sprintf("%d.%d.%d-edge.%d", sv.Major(), sv.Minor(), sv.Patch()+1, run)
	case strings.HasPrefix(pre, "edge."):
		if n, err := strconv.ParseInt(strings.TrimPrefix(pre, "edge."), 10, 64); err == nil && n < run {
			return fmt.Sprintf("%d.%d.%d-edge.%d", sv.Major(), sv.Minor(), sv.Patch(), run)
		}
	}
	return fmt.Sprintf("%d.%d.%d-%s.edge.%d", sv.Major(), sv.Minor(), sv.Patch(), pre, run)
}

// runRegister records input model as a version of the cluster's own
// repository edge/<cluster>/<model>: a ModelPack artifact pushed with
// internal/artifact into the engine's layout, with its lineage (the base
// it was fine-tuned from, the run, the data set, the cluster) and metrics
// (those of input metrics' evaluate step, or of an evaluate step of the
// run that read the same model).
//
// Params: model (the model's name; default the base's name, else the
// pipeline's), version (default NextVersion of the base).
func runRegister(ctx context.Context, env *stepEnv) (map[string]string, error) {
	file, err := env.artifact("model")
	if err != nil {
		return nil, err
	}
	base, dataDigest := "", ""
	if st, state, _, ok := env.producer("model"); ok {
		base = state.Outputs["base"]
		if j := stepIndex(&env.run.spec, st.Name); j >= 0 {
			if in, err := Inputs(&env.run.spec, j, env.states); err == nil {
				dataDigest = in["data"]
			}
		}
	}
	name := env.param("model", "")
	if name == "" {
		name = env.run.pipeline
		if n, _, ok := strings.Cut(base, "@"); ok {
			name = n
		}
	}
	if err := artifact.ValidateName(name); err != nil {
		return nil, fmt.Errorf("param model: %w", err)
	}
	version := env.param("version", "")
	if version == "" {
		version = NextVersion(base, env.run.number)
	}
	if err := artifact.ValidateVersion(version); err != nil {
		return nil, fmt.Errorf("param version: %w", err)
	}
	repo := v1alpha1.ModelName{Cluster: env.run.cluster, Name: name}.Repository()

	// Push reads a folder or a file named as the model's file is.
	dir := filepath.Join(env.workDir, "model")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	src := filepath.Join(dir, "model.onnx")
	os.Remove(src)
	if err := os.Link(file, src); err != nil {
		if err := copyFile(file, src); err != nil {
			return nil, err
		}
	}
	ann := map[string]string{
		artifact.AnnotationCluster:  env.run.cluster,
		artifact.AnnotationPipeline: env.run.pipeline,
		artifact.AnnotationRun:      env.run.name,
	}
	if dataDigest != "" {
		ann[artifact.AnnotationDataset] = dataDigest
	}
	parent := base
	if n, v, ok := strings.Cut(base, "@"); ok {
		parent = n + ":" + v
	}
	metrics := registerMetrics(env)
	var profile []byte
	if _, ok := env.inputs["reference"]; ok {
		if profile, err = referenceProfile(ctx, env, file); err != nil {
			return nil, err
		}
	}
	desc, err := artifact.Push(ctx, env.e.layout.Repository(repo), src, artifact.PushOptions{
		Name: name, Version: version, Parent: parent, ProducedBy: "pipelinerun/" + env.run.name,
		Metrics: metrics, Annotations: ann, Format: "onnx", Created: env.clock.Now(), Profile: profile,
	})
	if err != nil {
		return nil, fmt.Errorf("register %s:%s: %w", repo, version, err)
	}
	env.models = append(env.models, modelRow{repository: repo, version: version, digest: desc.Digest.String(), file: env.inputs["model"]})
	env.log.Printf("registered %s:%s (%s), parent %q, metrics %v", repo, version, desc.Digest, parent, metrics)
	return map[string]string{"version": version, "digest": desc.Digest.String(), "repository": repo}, nil
}

// referenceProfile computes the drift reference profile of the model in
// file on input reference, a data set of what the model will see: a cluster
// that deploys the version monitors its inputs against it, so that drift the
// retraining answered no longer raises the alarm.
func referenceProfile(ctx context.Context, env *stepEnv, file string) ([]byte, error) {
	data, err := env.table("reference")
	if err != nil {
		return nil, err
	}
	p, err := driftref.ComputeProfile(ctx, env.runtime, file, data.values(), driftref.ProfileOptions{})
	if err != nil {
		return nil, fmt.Errorf("reference profile: %w", err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	env.log.Printf("reference profile of %d samples, %d features, attached", p.Samples(), len(p.Spec().Features))
	return b, nil
}

// registerMetrics returns the metrics a register step records: all the
// outputs of the evaluate step input metrics reads (or that output alone
// when another type's), else those of an evaluate step of the run that
// succeeded on the same model.
func registerMetrics(env *stepEnv) map[string]string {
	if st, state, ref, ok := env.producer("metrics"); ok {
		if st.Type == v1alpha1.StepEvaluate {
			return copyOutputs(state.Outputs)
		}
		return map[string]string{ref.Output: state.Outputs[ref.Output]}
	}
	model := env.step.Inputs["model"]
	for i, st := range env.run.spec.Steps {
		if st.Type == v1alpha1.StepEvaluate && st.Inputs["model"] == model && env.states[i].Phase == v1alpha1.RunSucceeded {
			return copyOutputs(env.states[i].Outputs)
		}
	}
	return nil
}

func stepIndex(spec *v1alpha1.PipelineSpec, name string) int {
	for i := range spec.Steps {
		if spec.Steps[i].Name == name {
			return i
		}
	}
	return -1
}

// registered returns the model version a deploy step's input version
// names: the output of a register step, found in the engine's records.
func registered(ctx context.Context, env *stepEnv) (Model, error) {
	version := env.inputs["version"]
	_, state, _, ok := env.producer("version")
	repo := state.Outputs["repository"]
	if !ok || repo == "" {
		return Model{}, errors.New("input version is not the output of a register step")
	}
	m, err := getModel(ctx, env.e.db.sql, repo, version)
	if err != nil {
		return Model{}, err
	}
	if m == nil {
		return Model{}, fmt.Errorf("%s:%s was not registered by this engine", repo, version)
	}
	return env.e.model(*m), nil
}

// runDeploy asks the host to make the registered version input version
// the one param deployment serves on this cluster.
func runDeploy(ctx context.Context, env *stepEnv) (map[string]string, error) {
	dep := env.param("deployment", "")
	if dep == "" {
		return nil, errors.New("param deployment: required: the deployment that serves the version")
	}
	m, err := registered(ctx, env)
	if err != nil {
		return nil, err
	}
	if env.host == nil {
		return nil, fmt.Errorf("deployment %q: this engine has no host to deploy to", dep)
	}
	prev, err := env.host.Deploy(ctx, dep, m)
	if err != nil {
		return nil, fmt.Errorf("deploy %s:%s to %q: %w", m.Repository, m.Version, dep, err)
	}
	env.log.Printf("deployment %s serves %s:%s (before: %q)", dep, m.Repository, m.Version, prev)
	return map[string]string{"version": m.Version, "previous": prev}, nil
}

// deployStillValid: a deploy cached by an earlier run counts only while
// the deployment still serves that version.
func deployStillValid(ctx context.Context, env *stepEnv, outputs map[string]string) bool {
	if env.host == nil {
		return false
	}
	ref, err := env.host.ActiveModel(ctx, env.param("deployment", ""))
	return err == nil && ref.Version == outputs["version"]
}

// copyFile copies src to dst.
func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
