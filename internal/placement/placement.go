// Package placement decides which clusters receive which models. It is pure: the same
// deployments, clusters and resolutions always give the same answer, with no I/O.
package placement

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"outpost.dev/outpost/api/v1alpha1"
)

// Select returns the sorted names of the clusters that match any of selectors. The selectors
// are ORed, as the clusterSelectors of a KubeStellar BindingPolicy: an empty list selects no
// cluster, and an empty selector ({}) selects every cluster. An invalid selector is an error.
func Select(selectors []metav1.LabelSelector, clusters []v1alpha1.Cluster) ([]string, error) {
	sels, err := compile(selectors)
	if err != nil {
		return nil, err
	}
	return match(sels, clusters), nil
}

func compile(selectors []metav1.LabelSelector) ([]labels.Selector, error) {
	sels := make([]labels.Selector, 0, len(selectors))
	for i := range selectors {
		s, err := metav1.LabelSelectorAsSelector(&selectors[i])
		if err != nil {
			return nil, fmt.Errorf("clusterSelectors[%d]: %w", i, err)
		}
		sels = append(sels, s)
	}
	return sels, nil
}

func match(sels []labels.Selector, clusters []v1alpha1.Cluster) []string {
	names := []string{}
	for i := range clusters {
		set := labels.Set(clusters[i].Labels)
		for _, s := range sels {
			if s.Matches(set) {
				names = append(names, clusters[i].Name)
				break
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// Resolution is the registry version a deployment's constraint resolved to.
type Resolution struct {
	// Version is the resolved version; empty means unresolved.
	Version string
	// Digest is the manifest digest of Version.
	Digest string
	// SizeBytes is the total size of the model's files.
	SizeBytes int64
	// Variants are Version's variants, which the deployment's variant policy chooses from
	// per cluster.
	Variants []v1alpha1.ModelVariant
	// Cluster, if set, gives the version of each cluster during a rollout: ok false means the
	// cluster gets Version.
	Cluster func(name string) (v ClusterVersion, ok bool)
}

// ClusterVersion is the version one cluster is given during a rollout.
type ClusterVersion struct {
	// Version, Digest and SizeBytes are as in Resolution.
	Version   string
	Digest    string
	SizeBytes int64
	// Rollback is the hub's reasoned rollback mark, for a cluster rolled back.
	Rollback *v1alpha1.Rollback
	// Variants are Version's variants (for the resolved version, Resolution's win).
	Variants []v1alpha1.ModelVariant
}

// ResolutionFromStatus returns the resolution recorded in a deployment's status.
func ResolutionFromStatus(d *v1alpha1.ModelDeployment) Resolution {
	return Resolution{Version: d.Status.ResolvedVersion, Digest: d.Status.ResolvedDigest, SizeBytes: d.Status.ResolvedSizeBytes,
		Variants: d.Status.ResolvedVariants}
}

// Assignment is the outcome of placing every deployment.
type Assignment struct {
	// Models maps every cluster name to the models it should serve, sorted by deployment name.
	// Every cluster has an entry, empty when nothing is placed on it.
	Models map[string][]v1alpha1.DesiredModel
	// Selected maps every deployment name to the sorted names of the clusters it selects,
	// whether or not its version is resolved.
	Selected map[string][]string
	// Variants maps a deployment name and a cluster name to the variant the deployment's
	// variant policy chose for the cluster; a deployment without a policy whose version has no
	// variants has no entry.
	Variants map[string]map[string]VariantChoice
}

// DesiredStates places every deployment on the clusters its selectors match. resolved maps a
// deployment name to its resolved version; a deployment without a resolved version (absent from
// resolved, or with an empty Version) selects clusters but places no model on them. requireSignature
// is the hub-wide policy, ORed with each deployment's spec.requireSignature. A deployment with an
// invalid selector is left out and reported in the returned error; the others are still placed.
func DesiredStates(deployments []v1alpha1.ModelDeployment, clusters []v1alpha1.Cluster,
	resolved map[string]Resolution, requireSignature bool) (Assignment, error) {
	a := Assignment{
		Models:   make(map[string][]v1alpha1.DesiredModel, len(clusters)),
		Selected: make(map[string][]string, len(deployments)),
		Variants: make(map[string]map[string]VariantChoice),
	}
	byName := make(map[string]*v1alpha1.Cluster, len(clusters))
	for i := range clusters {
		a.Models[clusters[i].Name] = []v1alpha1.DesiredModel{}
		byName[clusters[i].Name] = &clusters[i]
	}
	var errs []error
	order := make([]int, len(deployments))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int { return strings.Compare(deployments[x].Name, deployments[y].Name) })
	for _, i := range order {
		d := &deployments[i]
		sels, err := compile(d.Spec.ClusterSelectors)
		if err != nil {
			errs = append(errs, fmt.Errorf("deployment %q: %w", d.Name, err))
			continue
		}
		names := match(sels, clusters)
		a.Selected[d.Name] = names
		r := resolved[d.Name]
		if r.Version == "" {
			continue
		}
		m := v1alpha1.DesiredModel{
			Deployment:       d.Name,
			Model:            d.Spec.Model.Name,
			Version:          r.Version,
			Digest:           r.Digest,
			SizeBytes:        r.SizeBytes,
			AllowDowngrade:   d.Spec.AllowDowngrade,
			RequireSignature: requireSignature || d.Spec.RequireSignature,
			Urgent:           d.Spec.Urgent,
			Serving:          *d.Spec.Serving.DeepCopy(),
			Monitoring:       d.Spec.Monitoring.DeepCopy(),
		}
		for _, c := range names {
			cm := m
			vs := r.Variants
			if r.Cluster != nil {
				if v, ok := r.Cluster(c); ok && v.Version != "" {
					cm.Version, cm.Digest, cm.SizeBytes, cm.Rollback = v.Version, v.Digest, v.SizeBytes, v.Rollback
					if v.Digest != r.Digest {
						vs = v.Variants
					}
				}
			}
			// The variant is chosen within the version the cluster is given: a cluster
			// never goes to another version for a smaller variant.
			if ch, ok := chooseVariant(d, byName[c], &cm, vs); ok {
				if a.Variants[d.Name] == nil {
					a.Variants[d.Name] = make(map[string]VariantChoice, len(names))
				}
				a.Variants[d.Name][c] = ch
			}
			a.Models[c] = append(a.Models[c], cm)
		}
	}
	return a, errors.Join(errs...)
}
