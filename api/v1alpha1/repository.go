package v1alpha1

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Registry repository prefixes. A fleet-wide model NAME lives in the repository
// models/NAME; a version a pipeline produced on cluster C, until it is promoted, in
// edge/C/NAME, which C's credential may write and no other cluster's may touch.
const (
	ModelRepositoryPrefix = "models/"
	EdgeRepositoryPrefix  = "edge/"
)

// ModelName is a model as users and resources name it: NAME, a fleet-wide model, or
// edge/CLUSTER/NAME, a model produced at the edge by cluster CLUSTER.
type ModelName struct {
	// Cluster is the producing cluster of an edge model; empty for a fleet-wide one.
	Cluster string
	// Name is the model's name within its cluster's repositories or the fleet's.
	Name string
}

// ParseModelName reads a model name: NAME (lowercase letters and digits separated by '.',
// '_', '-' or '/', not starting with "edge/") or edge/CLUSTER/NAME (CLUSTER a cluster's
// name). It says what is wrong with a name that is neither.
func ParseModelName(s string) (ModelName, error) {
	if len(s) > maxModelNameLen {
		return ModelName{}, fmt.Errorf("model name %q: longer than %d characters", s, maxModelNameLen)
	}
	if rest, ok := strings.CutPrefix(s, EdgeRepositoryPrefix); ok {
		cluster, name, ok := strings.Cut(rest, "/")
		if !ok || cluster == "" || name == "" {
			return ModelName{}, fmt.Errorf("model name %q: a model produced at the edge is named edge/CLUSTER/NAME", s)
		}
		if msgs := validation.IsDNS1123Subdomain(cluster); len(msgs) > 0 || !modelNamePattern.MatchString(cluster) {
			return ModelName{}, fmt.Errorf("model name %q: %q is not a cluster name", s, cluster)
		}
		if !modelNamePattern.MatchString(name) {
			return ModelName{}, fmt.Errorf("model name %q: %q must be lowercase letters and digits separated by '.', '_', '-' or '/'", s, name)
		}
		return ModelName{Cluster: cluster, Name: name}, nil
	}
	if !modelNamePattern.MatchString(s) {
		return ModelName{}, fmt.Errorf("model name %q: must be lowercase letters and digits separated by '.', '_', '-' or '/' (or edge/CLUSTER/NAME)", s)
	}
	return ModelName{Name: s}, nil
}

// Edge reports whether the model was produced at the edge and not promoted.
func (m ModelName) Edge() bool { return m.Cluster != "" }

// String is the name as ParseModelName reads it.
func (m ModelName) String() string {
	if m.Edge() {
		return EdgeRepositoryPrefix + m.Cluster + "/" + m.Name
	}
	return m.Name
}

// Repository is the registry repository of the model: models/NAME or edge/CLUSTER/NAME.
func (m ModelName) Repository() string {
	if m.Edge() {
		return m.String()
	}
	return ModelRepositoryPrefix + m.Name
}

// ModelRepository returns the registry repository of the model named name (see
// ParseModelName): models/NAME, or edge/CLUSTER/NAME for a model produced at the edge. It is
// the one mapping from model names to repositories that the hub, the agent and the command
// line share.
func ModelRepository(name string) (string, error) {
	m, err := ParseModelName(name)
	if err != nil {
		return "", err
	}
	return m.Repository(), nil
}

// ModelNameOfRepository returns the model a registry repository holds, and false for a
// repository that holds no model (neither under models/ nor edge/CLUSTER/).
func ModelNameOfRepository(repo string) (ModelName, bool) {
	if name, ok := strings.CutPrefix(repo, ModelRepositoryPrefix); ok {
		m, err := ParseModelName(name)
		return m, err == nil && !m.Edge()
	}
	if strings.HasPrefix(repo, EdgeRepositoryPrefix) {
		m, err := ParseModelName(repo)
		return m, err == nil
	}
	return ModelName{}, false
}

// EdgeRepositories is the prefix of the repositories of the models cluster produces,
// edge/CLUSTER/, with its slash.
func EdgeRepositories(cluster string) string {
	return EdgeRepositoryPrefix + cluster + "/"
}
