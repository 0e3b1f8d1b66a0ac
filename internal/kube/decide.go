// Package kube runs Outpost on Kubernetes with KubeStellar: the hub
// controller that turns each ModelDeployment in a WDS into a BindingPolicy
// and folds the status KubeStellar returns into the deployment's
// per-cluster rows, and the agent's desired state source and report sink
// in a WEC, which read the ModelDeployments KubeStellar delivered there and
// write the agent's row into their status.
//
// The decisions are pure functions (decide.go), tested directly; the
// reconcilers and the watch are thin adapters around them.
package kube

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/opencontainers/go-digest"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/artifact"
	"outpost.dev/outpost/internal/placement"
	"outpost.dev/outpost/internal/variant"
)

// Names Outpost gives its marks on Kubernetes objects.
const (
	// AnnotationResolvedVersion, AnnotationResolvedDigest and
	// AnnotationResolvedSize record on a ModelDeployment the registry
	// version its constraint resolved to. They are metadata, not status,
	// because KubeStellar delivers an object's metadata and spec to the
	// WECs, not its status: the agent there reads them.
	AnnotationResolvedVersion = "ml.outpost.dev/resolved-version"
	AnnotationResolvedDigest  = "ml.outpost.dev/resolved-digest"
	AnnotationResolvedSize    = "ml.outpost.dev/resolved-size"
	// AnnotationResolvedVariants records the variants of the resolved
	// version, as status.resolvedVariants lists them (name, digest,
	// sizeBytes, peakMemoryBytes, accuracy), in compact JSON: "[]" when it
	// has none. The agent in each WEC chooses among them and the original
	// with the deployment's variant policy and its own cluster's facts.
	AnnotationResolvedVariants = "ml.outpost.dev/resolved-variants"
	// MaxResolvedVariants bounds the variants the annotation may list.
	MaxResolvedVariants = 256
	// LabelManagedCluster marks the Cluster objects the controller mirrors
	// from the ITS's ManagedClusters: it deletes them when theirs goes.
	LabelManagedCluster = "ml.outpost.dev/managed-cluster"
	// Finalizer keeps a ModelDeployment until the controller deleted its
	// BindingPolicy.
	Finalizer = "ml.outpost.dev/binding-policy"
	// StatusCollectorName names the StatusCollector the controller keeps:
	// a row per WEC with the WEC's name and the object's status there.
	StatusCollectorName = "outpost-modeldeployments"
	// Columns of the StatusCollector's rows.
	ColumnWEC    = "wec"
	ColumnStatus = "status"
	// StatusCollectorLimit bounds its rows: the WECs one deployment's
	// status is returned from.
	StatusCollectorLimit = 1000
	// StatusRefresh is how old the agent lets its row's lastContact get
	// before it writes the row again with nothing else changed.
	StatusRefresh = 5 * time.Minute
)

// Resolved is a registry version a deployment's constraint resolved to.
type Resolved struct {
	// Version is the semantic version; empty when unresolved.
	Version string
	// Digest is its manifest digest.
	Digest string
	// Size is its size as the hub counts it: manifest, config and files.
	Size int64
	// Variants are its variants, by name: those with a valid signature
	// from a trusted key where the deployment requires signatures.
	Variants []v1alpha1.ModelVariant
}

// ResolvedOf returns the resolution recorded on md's annotations, zero when
// there is none or it does not parse: a semantic version and a sha256
// digest, so that one damaged object never makes a WEC's whole desired
// state invalid. Variants that do not parse (ParseVariants) are left out:
// the version stands without them.
func ResolvedOf(md *v1alpha1.ModelDeployment) Resolved {
	r, _ := resolvedOf(md)
	return r
}

// resolvedOf is ResolvedOf, with the error of the variants annotation
// when it does not parse.
func resolvedOf(md *v1alpha1.ModelDeployment) (Resolved, error) {
	a := md.GetAnnotations()
	r := Resolved{Version: a[AnnotationResolvedVersion], Digest: a[AnnotationResolvedDigest]}
	if artifact.ValidateVersion(r.Version) != nil {
		return Resolved{}, nil
	}
	if d, err := digest.Parse(r.Digest); err != nil || d.Algorithm() != digest.SHA256 {
		return Resolved{}, nil
	}
	if s := a[AnnotationResolvedSize]; s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return Resolved{}, nil
		}
		r.Size = n
	}
	vs, err := ParseVariants(a[AnnotationResolvedVariants])
	r.Variants = vs
	return r, err
}

// annotations returns the annotations that record r.
func (r Resolved) annotations() map[string]string {
	return map[string]string{
		AnnotationResolvedVersion:  r.Version,
		AnnotationResolvedDigest:   r.Digest,
		AnnotationResolvedSize:     strconv.FormatInt(r.Size, 10),
		AnnotationResolvedVariants: FormatVariants(r.Variants),
	}
}

// FormatVariants is the value of AnnotationResolvedVariants for vs:
// compact JSON, "[]" for none.
func FormatVariants(vs []v1alpha1.ModelVariant) string {
	if len(vs) == 0 {
		return "[]"
	}
	b, err := json.Marshal(vs)
	if err != nil { // strings and integers always marshal
		return "[]"
	}
	return string(b)
}

// ParseVariants reads the value of AnnotationResolvedVariants: a JSON list
// of at most MaxResolvedVariants variants, each with a variant name
// (artifact.ValidateVariantName: not "original"; no name twice), a sha256 digest, sizes that are not
// negative, and an accuracy that is empty or a decimal in [0, 1]. An empty
// value (a controller that records no variants) is none. Anything else is
// an error that says what is wrong, and none of the list is used.
func ParseVariants(s string) ([]v1alpha1.ModelVariant, error) {
	if s == "" {
		return nil, nil
	}
	var vs []v1alpha1.ModelVariant
	if err := json.Unmarshal([]byte(s), &vs); err != nil {
		return nil, fmt.Errorf("not a JSON list of variants: %w", err)
	}
	if len(vs) > MaxResolvedVariants {
		return nil, fmt.Errorf("%d variants, more than %d", len(vs), MaxResolvedVariants)
	}
	seen := make(map[string]bool, len(vs))
	for i, v := range vs {
		if err := artifact.ValidateVariantName(v.Name); err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		if seen[v.Name] {
			return nil, fmt.Errorf("[%d]: variant %s listed twice", i, v.Name)
		}
		seen[v.Name] = true
		if d, err := digest.Parse(v.Digest); err != nil || d.Algorithm() != digest.SHA256 {
			return nil, fmt.Errorf("[%d] %s: digest %q is not a sha256 digest", i, v.Name, v.Digest)
		}
		if v.SizeBytes < 0 || v.PeakMemoryBytes < 0 {
			return nil, fmt.Errorf("[%d] %s: negative size (sizeBytes %d, peakMemoryBytes %d)", i, v.Name, v.SizeBytes, v.PeakMemoryBytes)
		}
		if v.Accuracy != "" {
			a, err := strconv.ParseFloat(v.Accuracy, 64)
			if err != nil || !(a >= 0 && a <= 1) {
				return nil, fmt.Errorf("[%d] %s: accuracy %q is not a decimal in [0, 1]", i, v.Name, v.Accuracy)
			}
		}
	}
	if len(vs) == 0 {
		return nil, nil
	}
	return vs, nil
}

// Plan is what the controller wants for one ModelDeployment.
type Plan struct {
	// Annotations are the resolution annotations the object must carry;
	// nil while it never resolved.
	Annotations map[string]string
	// BindingPolicyName and BindingPolicy are the BindingPolicy to write.
	BindingPolicyName string
	BindingPolicy     BindingPolicySpec
	// Selected are the names of the clusters the deployment selects, sorted.
	Selected []string
	// Status is the deployment's status: resolution, conditions and a row
	// per selected cluster.
	Status v1alpha1.ModelDeploymentStatus
}

// Decide is the controller's decision for md, given the inventory (the
// Cluster objects mirrored from the ITS), the registry's answer to md's
// version constraint (res, or resErr when the registry could not answer or
// nothing matched: the resolution recorded before stays), the rows
// KubeStellar returned (by cluster, from CombinedStatus and singleton
// status; see ReturnedRows) and the time now. It is pure.
func Decide(md *v1alpha1.ModelDeployment, clusters []v1alpha1.Cluster, res Resolved, resErr error, returned map[string]v1alpha1.ClusterDeploymentStatus, now time.Time) (Plan, error) {
	selected, err := placement.Select(md.Spec.ClusterSelectors, clusters)
	if err != nil {
		return Plan{}, fmt.Errorf("modeldeployment %s: spec.%w", md.Name, err)
	}
	if resErr != nil || res.Version == "" {
		res = ResolvedOf(md)
	}
	p := Plan{BindingPolicyName: BindingPolicyName(md.Name), Selected: selected}
	if res.Version != "" {
		p.Annotations = res.annotations()
	}
	group := v1alpha1.GroupName
	p.BindingPolicy = BindingPolicySpec{
		ClusterSelectors: slices.Clone(md.Spec.ClusterSelectors),
		Downsync: []DownsyncPolicyClause{{
			APIGroup:                   &group,
			Resources:                  []string{v1alpha1.PluralModelDeployments},
			ObjectNames:                []string{md.Name},
			StatusCollectors:           []string{StatusCollectorName},
			WantSingletonReportedState: len(selected) == 1,
		}},
	}
	st := v1alpha1.ModelDeploymentStatus{
		ResolvedVersion: res.Version, ResolvedDigest: res.Digest, ResolvedSizeBytes: res.Size,
		ResolvedVariants:   slices.Clone(res.Variants),
		ObservedGeneration: md.Generation,
		Conditions:         slices.Clone(md.Status.Conditions),
		Clusters:           []v1alpha1.ClusterDeploymentStatus{},
	}
	switch {
	case resErr != nil:
		msg := resErr.Error()
		if res.Version != "" {
			msg = fmt.Sprintf("%s; keeping %s", msg, res.Version)
		}
		setCondition(&st, v1alpha1.ConditionResolved, false, "ResolveFailed", msg, md.Generation, now)
	case res.Version == "":
		setCondition(&st, v1alpha1.ConditionResolved, false, "Unresolved", "no version resolved yet", md.Generation, now)
	default:
		setCondition(&st, v1alpha1.ConditionResolved, true, "Resolved",
			fmt.Sprintf("%s resolved to %s (%s)", md.Spec.Model.Version, res.Version, res.Digest), md.Generation, now)
	}
	if len(selected) > 0 {
		setCondition(&st, v1alpha1.ConditionPlaced, true, "Selected", fmt.Sprintf("%d clusters selected", len(selected)), md.Generation, now)
	} else {
		setCondition(&st, v1alpha1.ConditionPlaced, false, "NoCluster", "the cluster selectors match no cluster", md.Generation, now)
	}
	for _, c := range selected {
		row, ok := returned[c]
		if !ok {
			row = v1alpha1.ClusterDeploymentStatus{Cluster: c, Phase: v1alpha1.PhasePending}
		}
		row.Cluster = c
		if row.DesiredVersion == "" || !ok {
			row.DesiredVersion = res.Version
		}
		st.Clusters = append(st.Clusters, row)
	}
	st.Count()
	p.Status = st
	return p, nil
}

// setCondition sets a condition of st, keeping its transition time while
// its status stays.
func setCondition(st *v1alpha1.ModelDeploymentStatus, typ string, ok bool, reason, msg string, gen int64, now time.Time) {
	s := metav1.ConditionFalse
	if ok {
		s = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: typ, Status: s, Reason: reason, Message: msg, ObservedGeneration: gen,
		LastTransitionTime: metav1.NewTime(now.UTC().Truncate(time.Second)),
	})
}

// BindingPolicyName is the name of the BindingPolicy of deployment md:
// "outpost-md-" and the name, or a digest of the name when that is too long.
func BindingPolicyName(md string) string {
	const prefix = "outpost-md-"
	if len(prefix)+len(md) <= 253 {
		return prefix + md
	}
	sum := sha256.Sum256([]byte(md))
	return prefix + hex.EncodeToString(sum[:16])
}

// StatusCollector is the spec of the StatusCollector the controller keeps:
// one row per WEC, its name and the whole status the agent wrote there.
func StatusCollector() StatusCollectorSpec {
	return StatusCollectorSpec{
		Select: []NamedExpression{{Name: ColumnWEC, Def: "inventory.name"}, {Name: ColumnStatus, Def: "returned.status"}},
		Limit:  StatusCollectorLimit,
	}
}

// ReturnedRows gathers the per-cluster rows KubeStellar returned for a
// deployment: from the rows of the StatusCollector in its CombinedStatus
// objects, and from the deployment's own status, where KubeStellar writes a
// single WEC's status back (singleton status) and where the controller kept
// the rows it folded before. Where both have a row for one cluster, the one
// with the later lastContact wins. A CombinedStatus row that does not
// parse is skipped and named in the returned errors.
func ReturnedRows(own *v1alpha1.ModelDeploymentStatus, combined []CombinedStatus) (map[string]v1alpha1.ClusterDeploymentStatus, []error) {
	rows := map[string]v1alpha1.ClusterDeploymentStatus{}
	put := func(r v1alpha1.ClusterDeploymentStatus) {
		if old, ok := rows[r.Cluster]; ok && contact(old).After(contact(r)) {
			return
		}
		rows[r.Cluster] = r
	}
	if own != nil {
		for _, r := range own.Clusters {
			if r.Cluster != "" {
				put(r)
			}
		}
	}
	var errs []error
	for _, cs := range combined {
		for _, res := range cs.Results {
			if res.Name != StatusCollectorName {
				continue
			}
			wec, stat := slices.Index(res.ColumnNames, ColumnWEC), slices.Index(res.ColumnNames, ColumnStatus)
			if wec < 0 || stat < 0 {
				errs = append(errs, fmt.Errorf("combinedstatus %s/%s: result %s lacks column %q or %q", cs.Namespace, cs.Name, res.Name, ColumnWEC, ColumnStatus))
				continue
			}
			for i, row := range res.Rows {
				r, ok, err := returnedRow(row, wec, stat)
				if err != nil {
					errs = append(errs, fmt.Errorf("combinedstatus %s/%s: rows[%d]: %w", cs.Namespace, cs.Name, i, err))
				}
				if ok {
					put(r)
				}
			}
		}
	}
	return rows, errs
}

// returnedRow reads the row of one WEC: its name in column wec and the
// object's status there in column stat, whose clusters list holds the
// agent's row. A WEC whose agent wrote no status yet has no row.
func returnedRow(row StatusCombinationRow, wec, stat int) (v1alpha1.ClusterDeploymentStatus, bool, error) {
	var zero v1alpha1.ClusterDeploymentStatus
	if wec >= len(row.Columns) || stat >= len(row.Columns) {
		return zero, false, fmt.Errorf("%d columns", len(row.Columns))
	}
	name := row.Columns[wec]
	if name.Type != TypeString || name.String == nil || *name.String == "" {
		return zero, false, fmt.Errorf("column %s is not a cluster name", ColumnWEC)
	}
	if row.Columns[stat].Type == TypeNull {
		return zero, false, nil
	}
	raw, err := row.Columns[stat].JSON()
	if err != nil {
		return zero, false, err
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return zero, false, err
	}
	var st v1alpha1.ModelDeploymentStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return zero, false, fmt.Errorf("column %s: %w", ColumnStatus, err)
	}
	for _, r := range st.Clusters {
		if r.Cluster == *name.String {
			return r, true, nil
		}
	}
	return zero, false, nil
}

// contact is a row's lastContact, zero when it has none.
func contact(r v1alpha1.ClusterDeploymentStatus) time.Time {
	if r.LastContact == nil {
		return time.Time{}
	}
	return r.LastContact.Time
}

// VariantRow is what the agent of a WEC writes into its row of a
// deployment about the variant it chose, as the hub writes it into the
// rows of standalone mode.
type VariantRow struct {
	// Variant is the variant chosen ("original" for the full model); empty
	// when the deployment has no variant policy and its version no variants.
	Variant string
	// Reason says why (the row's variantReason).
	Reason string
	// Error says why the variants recorded on the deployment were not
	// read; the original model is sent.
	Error string
}

// DesiredModel is the model an agent in a WEC should serve for md, from
// the resolution the controller recorded on it, and the variant of it that
// md's variant policy chooses for a cluster with facts (the agent's own:
// the memory and CPU it measures or is declared, its link's estimated
// rate), with the same placement.ChooseVariant as the hub. It is false
// while md has no resolution, or names a model no registry could hold: the
// document the agent applies is then valid whatever one object says.
// Variants that do not parse are an error in the returned row, and the
// original model is sent.
func DesiredModel(md *v1alpha1.ModelDeployment, facts variant.Facts) (v1alpha1.DesiredModel, VariantRow, bool) {
	r, verr := resolvedOf(md)
	if r.Version == "" || artifact.ValidateName(md.Spec.Model.Name) != nil {
		return v1alpha1.DesiredModel{}, VariantRow{}, false
	}
	m := v1alpha1.DesiredModel{
		Deployment: md.Name, Model: md.Spec.Model.Name, Version: r.Version, Digest: r.Digest, SizeBytes: r.Size,
		AllowDowngrade: md.Spec.AllowDowngrade, Urgent: md.Spec.Urgent, RequireSignature: md.Spec.RequireSignature,
		Serving: md.Spec.Serving, Monitoring: md.Spec.Monitoring.DeepCopy(),
	}
	var row VariantRow
	if verr != nil {
		row.Variant = variant.Original
		row.Error = fmt.Sprintf("annotation %s does not parse: %v; the original model is sent", AnnotationResolvedVariants, verr)
		row.Reason = row.Error
		return m, row, true
	}
	if ch, ok := placement.ChooseVariant(md.Spec.VariantPolicy, facts, &m, r.Variants); ok {
		row.Variant, row.Reason = ch.Name, ch.Reason
	}
	return m, row, true
}

// DesiredState is the desired state document of cluster at revision rev
// made of the deployments delivered into its WEC, and the variant row of
// each deployment in it by name: one model per resolved deployment, sorted
// by name, each the variant its policy chooses for a cluster with facts;
// deployments being deleted are left out.
func DesiredState(cluster string, rev int64, mds []v1alpha1.ModelDeployment, facts variant.Facts) (*v1alpha1.DesiredState, map[string]VariantRow) {
	doc := &v1alpha1.DesiredState{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindDesiredState, Cluster: cluster, Revision: rev,
		Models: []v1alpha1.DesiredModel{}}
	rows := map[string]VariantRow{}
	for i := range mds {
		if mds[i].DeletionTimestamp != nil {
			continue
		}
		if m, row, ok := DesiredModel(&mds[i], facts); ok {
			doc.Models = append(doc.Models, m)
			rows[m.Deployment] = row
		}
	}
	slices.SortFunc(doc.Models, func(a, b v1alpha1.DesiredModel) int { return cmp.Compare(a.Deployment, b.Deployment) })
	return doc, rows
}

// AgentStatus is the status the agent of cluster writes into md in its WEC
// for its report row m made at time at, with the variant row v of the
// document it applied: the resolution it was given and its one row, which
// KubeStellar carries back to the WDS.
func AgentStatus(md *v1alpha1.ModelDeployment, cluster string, m v1alpha1.ModelReport, v VariantRow, at metav1.Time) v1alpha1.ModelDeploymentStatus {
	r := ResolvedOf(md)
	msg := m.Error
	if v.Error != "" {
		msg = strings.Join(slices.DeleteFunc([]string{m.Error, v.Error}, func(s string) bool { return s == "" }), "; ")
	}
	st := v1alpha1.ModelDeploymentStatus{
		ResolvedVersion: r.Version, ResolvedDigest: r.Digest, ResolvedSizeBytes: r.Size, ResolvedVariants: r.Variants,
		ObservedGeneration: md.Generation,
		Clusters: []v1alpha1.ClusterDeploymentStatus{{
			Cluster: cluster, DesiredVersion: m.DesiredVersion, Variant: v.Variant, VariantReason: v.Reason,
			ActiveVersion: m.ActiveVersion, ActiveVariant: m.ActiveVariant, Phase: m.Phase,
			BytesFetched: m.BytesFetched, BytesTotal: m.BytesTotal, LastContact: &at, Error: msg,
			Runtime: m.Runtime, Health: m.Health,
		}},
	}
	st.Count()
	return st
}

// StatusStale reports whether the agent must write next over old: when
// anything but the row's lastContact changed, or lastContact is older than
// StatusRefresh, so that the WDS sees a silent agent as silent.
func StatusStale(old, next v1alpha1.ModelDeploymentStatus) bool {
	if len(old.Clusters) != 1 || len(next.Clusters) != 1 {
		return true
	}
	o, n := old.Clusters[0], next.Clusters[0]
	if contact(n).Sub(contact(o)) >= StatusRefresh {
		return true
	}
	o.LastContact, n.LastContact = nil, nil
	old.Clusters, next.Clusters = []v1alpha1.ClusterDeploymentStatus{o}, []v1alpha1.ClusterDeploymentStatus{n}
	return !equality.Semantic.DeepEqual(old, next)
}
