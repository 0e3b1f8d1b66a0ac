package chaos

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// World is the campaign's model of the hub: the versions pushed and
// signed, the deployments applied and the labels of each agent's cluster,
// as the operations that succeeded left them. From it, Desired computes
// what each agent should converge to, independently of the hub's own
// resolver and placement.
type World struct {
	versions    map[string][]string // by model
	signed      map[string]bool     // model@version
	deployments map[string]Deployment
	labels      []map[string]string
}

// NewWorld returns the world before any operation, with agents clusters
// labelled with their InitialLabels.
func NewWorld(agents int) *World {
	w := &World{versions: map[string][]string{}, signed: map[string]bool{}, deployments: map[string]Deployment{}}
	for i := range agents {
		w.labels = append(w.labels, InitialLabels(i))
	}
	return w
}

// Push records that model@version was pushed.
func (w *World) Push(model, version string) {
	if !slices.Contains(w.versions[model], version) {
		w.versions[model] = append(w.versions[model], version)
	}
}

// Pushed reports whether model@version was pushed.
func (w *World) Pushed(model, version string) bool {
	return slices.Contains(w.versions[model], version)
}

// Sign records that model@version was signed with the trusted key.
func (w *World) Sign(model, version string) { w.signed[model+"@"+version] = true }

// Resolve is the version d resolves to: the highest pushed version of its
// model that matches its version (and is signed, when it requires a
// signature). ok is false when none does, and the hub refuses the apply.
func (w *World) Resolve(d Deployment) (version string, ok bool) {
	for _, v := range w.versions[d.Model] {
		if !Matches(d.Version, v) || (d.RequireSignature && !w.signed[d.Model+"@"+v]) {
			continue
		}
		if !ok || CompareVersions(v, version) > 0 {
			version, ok = v, true
		}
	}
	return version, ok
}

// Apply records an applied deployment.
func (w *World) Apply(d Deployment) {
	d.Selector = cloneLabels(d.Selector)
	w.deployments[d.Name] = d
}

// DeleteDeployment records a deleted deployment.
func (w *World) DeleteDeployment(name string) { delete(w.deployments, name) }

// Relabel records new labels of agent's cluster.
func (w *World) Relabel(agent int, labels map[string]string) { w.labels[agent] = cloneLabels(labels) }

// DeleteCluster records that agent's cluster was deleted: its agent joins
// again with its InitialLabels.
func (w *World) DeleteCluster(agent int) { w.labels[agent] = InitialLabels(agent) }

// Labels returns the labels of agent's cluster.
func (w *World) Labels(agent int) map[string]string { return cloneLabels(w.labels[agent]) }

// Want is what a deployment should be on an agent.
type Want struct {
	// Model and Version are the model version the hub places.
	Model   string `json:"model"`
	Version string `json:"version"`
	// AllowDowngrade is the deployment's.
	AllowDowngrade bool `json:"allowDowngrade,omitempty"`
}

// Desired returns what agent should serve, by deployment: every deployment
// whose selector matches its cluster's labels, at the version it resolves to.
func (w *World) Desired(agent int) map[string]Want {
	out := map[string]Want{}
	for name, d := range w.deployments {
		if !selects(d.Selector, w.labels[agent]) {
			continue
		}
		if v, ok := w.Resolve(d); ok {
			out[name] = Want{Model: d.Model, Version: v, AllowDowngrade: d.AllowDowngrade}
		}
	}
	return out
}

// selects reports whether a matchLabels selector matches labels; an empty
// selector matches every cluster.
func selects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// parseVersion parses MAJOR.MINOR.PATCH; ok is false for anything else.
func parseVersion(v string) (parts [3]int, ok bool) {
	f := strings.Split(v, ".")
	if len(f) != 3 {
		return parts, false
	}
	for i, s := range f {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return parts, false
		}
		parts[i] = n
	}
	return parts, true
}

// CompareVersions orders two MAJOR.MINOR.PATCH versions: -1, 0 or +1.
// Versions that do not parse order below those that do.
func CompareVersions(a, b string) int {
	pa, oka := parseVersion(a)
	pb, okb := parseVersion(b)
	switch {
	case !oka || !okb:
		return compareBool(oka, okb)
	}
	for i := range pa {
		if pa[i] != pb[i] {
			if pa[i] < pb[i] {
				return -1
			}
			return 1
		}
	}
	return 0
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// Matches reports whether version v satisfies constraint c, for the forms
// the campaign draws: an exact version, "^1", "1.x", "~1.N" and
// ">=1.A.0 <1.B.0".
func Matches(c, v string) bool {
	pv, ok := parseVersion(v)
	if !ok {
		return false
	}
	switch {
	case c == "^1" || c == "1.x":
		return pv[0] == 1
	case strings.HasPrefix(c, "~1."):
		n, err := strconv.Atoi(strings.TrimPrefix(c, "~1."))
		return err == nil && pv[0] == 1 && pv[1] == n
	case strings.HasPrefix(c, ">="):
		var lo, hi string
		if _, err := fmt.Sscanf(c, ">=%s <%s", &lo, &hi); err != nil {
			return false
		}
		return CompareVersions(v, lo) >= 0 && CompareVersions(v, hi) < 0
	}
	return c == v
}
