package agent

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/versions"
)

// This file holds the version guard of the agent (docs/design.md, invariant 1):
// pure functions, free of I/O and clocks, that decide whether a desired
// state document may be applied and what each model needs.

// Source says where a desired state document came from. The guard treats
// every source alike; the source only appears in logs and errors.
type Source string

// Sources of desired state.
const (
	// SourceNetwork is the hub's long-poll.
	SourceNetwork Source = "network"
	// SourceBundle is a sneakernet bundle.
	SourceBundle Source = "bundle"
)

// Verdict is the guard's decision on a whole desired state document.
type Verdict int

// Verdicts of Decide.
const (
	// Apply means the document is newer than the applied one: apply it.
	Apply Verdict = iota
	// Unchanged means the document has the applied revision: applying it
	// again changes nothing.
	Unchanged
	// RejectStale means the document is older than the applied one; it is
	// refused and counted.
	RejectStale
	// RejectInvalid means the document is malformed or meant for another
	// cluster; it is refused and changes nothing.
	RejectInvalid
)

// String returns the verdict's name.
func (v Verdict) String() string {
	switch v {
	case Apply:
		return "apply"
	case Unchanged:
		return "unchanged"
	case RejectStale:
		return "reject-stale"
	case RejectInvalid:
		return "reject-invalid"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// Deployed is what a deployment serves now.
type Deployed struct {
	// Model is the model name.
	Model string
	// Version is the active version; empty when nothing is active.
	Version string
	// Digest is the active version's manifest digest.
	Digest string
	// Local is set when the version was produced on this cluster (by a
	// pipeline) and activated here, not sent by the hub: it stays active
	// until the hub desires a higher version of the same model.
	Local bool
}

// Applied is the part of the agent's state the guard needs: the revision of
// the desired state it applied, and what each deployment serves.
type Applied struct {
	// Cluster is the agent's cluster name; a document for another cluster is invalid.
	Cluster string
	// Revision is the highest desired state revision applied.
	Revision int64
	// Active maps deployment names to what they serve.
	Active map[string]Deployed
}

// Step is what one deployment needs.
type Step int

// Steps of a ModelPlan.
const (
	// StepNone: the desired version is active already.
	StepNone Step = iota
	// StepFetch: fetch the desired version, verify it and activate it.
	StepFetch
	// StepRefuse: the desired version is lower than the active one and the
	// deployment does not allow downgrades; the active version stays.
	StepRefuse
	// StepRemove: the deployment is no longer desired; deactivate it and
	// leave its blobs to garbage collection.
	StepRemove
	// StepKeepLocal: the active version was produced on this cluster and
	// the desired one is not higher; the local version stays active.
	StepKeepLocal
)

// keepsActive reports whether the step leaves the active version in place
// with nothing to fetch although the desired digest differs.
func (s Step) keepsActive() bool { return s == StepRefuse || s == StepKeepLocal }

// String returns the step's name.
func (s Step) String() string {
	switch s {
	case StepNone:
		return "none"
	case StepFetch:
		return "fetch"
	case StepRefuse:
		return "refuse"
	case StepRemove:
		return "remove"
	case StepKeepLocal:
		return "keep-local"
	}
	return fmt.Sprintf("step(%d)", int(s))
}

// ModelPlan is the guard's decision for one deployment.
type ModelPlan struct {
	// Deployment is the ModelDeployment name.
	Deployment string
	// Step is what to do.
	Step Step
	// Want is the desired model (zero for StepRemove).
	Want v1alpha1.DesiredModel
	// Active is what the deployment serves now (zero when nothing).
	Active Deployed
	// Downgrade is set when Want has a lower version than Active and the
	// deployment allows it: the replacement is done, and reported.
	Downgrade bool
	// Rollback is the hub's reason for a downgrade it decided (Want.Rollback),
	// set when that mark is what allows Downgrade.
	Rollback string
	// VariantSwitch is set when Want is another artifact of the active version
	// (another variant of it, or the original): never a downgrade, whatever
	// the sizes.
	VariantSwitch bool
	// Error explains StepRefuse.
	Error string
}

// Decision is the guard's answer for a desired state document.
type Decision struct {
	// Verdict says whether to apply the document.
	Verdict Verdict
	// Reason explains a rejection.
	Reason string
	// Plans has one entry per desired model and per deployment to remove,
	// sorted by deployment name; set only for Apply.
	Plans []ModelPlan
}

// Decide is the version guard: it decides whether doc, from src, may be
// applied over the applied state, and what each deployment needs. A
// document older than the applied revision is rejected whatever its source;
// one with the applied revision is an idempotent no-op.
func Decide(applied Applied, doc *v1alpha1.DesiredState, src Source) Decision {
	if err := ValidateDesiredState(doc, applied.Cluster); err != nil {
		return Decision{Verdict: RejectInvalid, Reason: fmt.Sprintf("desired state from %s: %v", src, err)}
	}
	switch {
	case doc.Revision < applied.Revision:
		return Decision{Verdict: RejectStale, Reason: fmt.Sprintf(
			"desired state revision %d from %s is older than applied revision %d", doc.Revision, src, applied.Revision)}
	case doc.Revision == applied.Revision:
		return Decision{Verdict: Unchanged}
	}
	return Decision{Verdict: Apply, Plans: PlanModels(applied.Active, doc.Models)}
}

// PlanModels decides what each deployment needs to go from active to want,
// including the removal of deployments that want no longer names.
func PlanModels(active map[string]Deployed, want []v1alpha1.DesiredModel) []ModelPlan {
	plans := make([]ModelPlan, 0, len(want)+len(active))
	named := make(map[string]bool, len(want))
	for _, m := range want {
		named[m.Deployment] = true
		plans = append(plans, PlanModel(active[m.Deployment], m))
	}
	for name, a := range active {
		if !named[name] && a.Digest != "" {
			plans = append(plans, ModelPlan{Deployment: name, Step: StepRemove, Active: a})
		}
	}
	sort.Slice(plans, func(i, j int) bool { return plans[i].Deployment < plans[j].Deployment })
	return plans
}

// PlanModel decides what one deployment needs to go from active (zero when
// nothing is active) to want.
func PlanModel(active Deployed, want v1alpha1.DesiredModel) ModelPlan {
	p := ModelPlan{Deployment: want.Deployment, Want: want, Active: active}
	switch {
	case active.Digest == "":
		p.Step = StepFetch
	case active.Digest == want.Digest && active.Model == want.Model:
		p.Step = StepNone
	case active.Model != want.Model:
		// Another model: versions of different models do not compare.
		p.Step = StepFetch
	case active.Local:
		// A version this cluster produced and deployed itself: the hub's
		// version replaces it only once the fleet has moved past it.
		if c, err := versions.Compare(want.Version, active.Version); err == nil && c > 0 {
			p.Step = StepFetch
		} else {
			p.Step = StepKeepLocal
		}
	default:
		c, err := versions.Compare(want.Version, active.Version)
		rollback := rollbackFrom(want, active.Version)
		switch {
		case rollback && (err != nil || c < 0):
			// A downgrade the hub decided, from exactly this version, for a reason.
			p.Step, p.Downgrade, p.Rollback = StepFetch, true, want.Rollback.Reason
		case err != nil && !want.AllowDowngrade:
			p.Step = StepRefuse
			p.Error = fmt.Sprintf("cannot order version %s against active %s (%v): refused, allowDowngrade is false", want.Version, active.Version, err)
		case err == nil && c < 0 && !want.AllowDowngrade:
			p.Step = StepRefuse
			p.Error = DowngradeRefused(active.Version, want.Version)
		default:
			p.Step = StepFetch
			p.Downgrade = err != nil || c < 0
			p.VariantSwitch = err == nil && c == 0
		}
	}
	return p
}

// rollbackFrom reports whether want carries the hub's reasoned decision to
// roll back from the active version: a mark that names another version, or
// gives no reason, allows nothing.
func rollbackFrom(want v1alpha1.DesiredModel, active string) bool {
	rb := want.Rollback
	return rb != nil && active != "" && slices.Contains(rb.From, active) && strings.TrimSpace(rb.Reason) != ""
}

// PlanLocal decides whether a version produced on this cluster (model,
// version) may replace what a deployment serves: only a version of the
// deployment's model, higher than the active one. It returns an empty string
// when it may, and the reason when not.
func PlanLocal(active Deployed, desiredModel, model, version string) string {
	switch {
	case model != desiredModel:
		return fmt.Sprintf("deployment serves model %s, not %s", desiredModel, model)
	case active.Digest == "":
		return ""
	case active.Model != model:
		return ""
	}
	c, err := versions.Compare(version, active.Version)
	switch {
	case err != nil:
		return fmt.Sprintf("cannot order version %s against active %s: %v", version, active.Version, err)
	case c <= 0:
		return fmt.Sprintf("version %s is not higher than the active %s: a cluster never goes backwards", version, active.Version)
	}
	return ""
}

// DowngradeRefused is the error a deployment reports when its desired
// version is lower than the active one and it does not allow downgrades.
func DowngradeRefused(from, to string) string {
	return fmt.Sprintf("downgrade from %s to %s refused: allowDowngrade is false", from, to)
}

// ValidateDesiredState checks a desired state document before anything is
// taken from it: its kind, that it is meant for cluster (when cluster is not
// empty), and that every model names a unique deployment, a valid model
// name, a semantic version and a sha256 digest.
func ValidateDesiredState(doc *v1alpha1.DesiredState, cluster string) error {
	if doc == nil {
		return fmt.Errorf("no document")
	}
	if doc.Kind != "" && doc.Kind != v1alpha1.KindDesiredState {
		return fmt.Errorf("kind %q, want %s", doc.Kind, v1alpha1.KindDesiredState)
	}
	if doc.APIVersion != "" && doc.APIVersion != v1alpha1.APIVersion {
		return fmt.Errorf("apiVersion %q, want %s", doc.APIVersion, v1alpha1.APIVersion)
	}
	if cluster != "" && doc.Cluster != cluster {
		return fmt.Errorf("document is for cluster %q, this is %q", doc.Cluster, cluster)
	}
	if doc.Revision < 0 {
		return fmt.Errorf("negative revision %d", doc.Revision)
	}
	seen := make(map[string]bool, len(doc.Models))
	for i, m := range doc.Models {
		if m.Deployment == "" {
			return fmt.Errorf("models[%d]: empty deployment name", i)
		}
		if seen[m.Deployment] {
			return fmt.Errorf("models[%d]: deployment %q listed twice", i, m.Deployment)
		}
		seen[m.Deployment] = true
		if err := artifact.ValidateName(m.Model); err != nil {
			return fmt.Errorf("models[%d] (%s): %w", i, m.Deployment, err)
		}
		if err := artifact.ValidateVersion(m.Version); err != nil {
			return fmt.Errorf("models[%d] (%s): %w", i, m.Deployment, err)
		}
		d, err := digest.Parse(m.Digest)
		if err != nil || d.Algorithm() != digest.SHA256 {
			return fmt.Errorf("models[%d] (%s): digest %q is not a sha256 digest", i, m.Deployment, m.Digest)
		}
		if m.SizeBytes < 0 {
			return fmt.Errorf("models[%d] (%s): negative size", i, m.Deployment)
		}
		if m.Variant != "" && m.Variant != artifact.OriginalVariant {
			if err := artifact.ValidateVariantName(m.Variant); err != nil {
				return fmt.Errorf("models[%d] (%s): %w", i, m.Deployment, err)
			}
		}
	}
	return nil
}
