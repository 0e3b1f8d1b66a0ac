package v1alpha1

import (
	"fmt"
	"math"
	"slices"
	"time"

	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Limits of the agent protocol documents.
const (
	// MaxReportModels is the most ModelReport rows an AgentReport may hold.
	MaxReportModels = 4096
	// MaxJoinTokenDescription is the longest join token description.
	MaxJoinTokenDescription = 256
	// MaxJoinTokenTTLSeconds is the largest ttlSeconds a JoinTokenRequest may ask for: the
	// longest time.Duration in seconds. The hub caps a token's life well below it.
	MaxJoinTokenTTLSeconds = math.MaxInt64 / int64(time.Second)
)

// validateTypeMeta checks apiVersion and kind of a protocol document; empty values are
// accepted, as the path already says what the document is.
func validateTypeMeta(apiVersion, kind, wantKind string) field.ErrorList {
	var errs field.ErrorList
	if apiVersion != "" && apiVersion != APIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), apiVersion, []string{APIVersion}))
	}
	if kind != "" && kind != wantKind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), kind, []string{wantKind}))
	}
	return errs
}

// validateClusterName checks a cluster name given in field p.
func validateClusterName(name string, p *field.Path) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(p, "a cluster name is required")}
	}
	var errs field.ErrorList
	for _, msg := range apivalidation.NameIsDNSSubdomain(name, false) {
		errs = append(errs, field.Invalid(p, name, msg))
	}
	return errs
}

// Validate checks a JoinRequest: kind, a cluster name usable as a Cluster's metadata.name,
// and valid labels. It does not check the token. Errors name the request's fields
// ("cluster", "labels").
func (r *JoinRequest) Validate() error {
	errs := validateTypeMeta(r.APIVersion, r.Kind, KindJoinRequest)
	errs = append(errs, validateClusterName(r.Cluster, field.NewPath("cluster"))...)
	keys := make([]string, 0, len(r.Labels))
	for k := range r.Labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		// One label at a time, so that each error names its key.
		errs = append(errs, metav1validation.ValidateLabels(map[string]string{k: r.Labels[k]}, field.NewPath("labels").Key(k))...)
	}
	return invalid(KindJoinRequest, r.Cluster, errs)
}

// Validate checks a JoinTokenRequest: kind, a TTL from 0 to MaxJoinTokenTTLSeconds and a bounded
// description.
func (r *JoinTokenRequest) Validate() error {
	errs := validateTypeMeta(r.APIVersion, r.Kind, KindJoinTokenCreate)
	switch {
	case r.TTLSeconds < 0:
		errs = append(errs, field.Invalid(field.NewPath("ttlSeconds"), r.TTLSeconds, "must be non-negative (0 means the default)"))
	case r.TTLSeconds > MaxJoinTokenTTLSeconds:
		errs = append(errs, field.Invalid(field.NewPath("ttlSeconds"), r.TTLSeconds,
			fmt.Sprintf("must be at most %d, the longest duration there is (and the hub caps a token's life at 30 days anyway)", MaxJoinTokenTTLSeconds)))
	}
	if len(r.Description) > MaxJoinTokenDescription {
		errs = append(errs, field.TooLong(field.NewPath("description"), "", MaxJoinTokenDescription))
	}
	return invalid(KindJoinTokenCreate, "", errs)
}

// Validate checks an AgentReport: kind, cluster name, non-negative counters and byte counts,
// a well-formed status, and at most MaxReportModels model rows naming distinct deployments
// with known phases.
func (r *AgentReport) Validate() error {
	errs := validateTypeMeta(r.APIVersion, r.Kind, KindAgentReport)
	errs = append(errs, validateClusterName(r.Cluster, field.NewPath("cluster"))...)
	if r.AppliedRevision < 0 {
		errs = append(errs, field.Invalid(field.NewPath("appliedRevision"), r.AppliedRevision, "must be non-negative"))
	}
	if r.RejectedStale < 0 {
		errs = append(errs, field.Invalid(field.NewPath("rejectedStale"), r.RejectedStale, "must be non-negative"))
	}
	errs = append(errs, r.Status.validate(field.NewPath("status"))...)
	mp := field.NewPath("models")
	if len(r.Models) > MaxReportModels {
		errs = append(errs, field.TooMany(mp, len(r.Models), MaxReportModels))
		return invalid(KindAgentReport, r.Cluster, errs)
	}
	seen := make(map[string]bool, len(r.Models))
	for i, m := range r.Models {
		p := mp.Index(i)
		switch {
		case m.Deployment == "":
			errs = append(errs, field.Required(p.Child("deployment"), "a ModelDeployment name is required"))
		case seen[m.Deployment]:
			errs = append(errs, field.Duplicate(p.Child("deployment"), m.Deployment))
		}
		seen[m.Deployment] = true
		switch m.Phase {
		case PhasePending, PhaseFetching, PhaseActive, PhaseFailed:
		default:
			errs = append(errs, field.NotSupported(p.Child("phase"), m.Phase,
				[]ClusterPhase{PhasePending, PhaseFetching, PhaseActive, PhaseFailed}))
		}
		if m.BytesFetched < 0 {
			errs = append(errs, field.Invalid(p.Child("bytesFetched"), m.BytesFetched, "must be non-negative"))
		}
		if m.BytesTotal < 0 {
			errs = append(errs, field.Invalid(p.Child("bytesTotal"), m.BytesTotal, "must be non-negative"))
		}
	}
	return invalid(KindAgentReport, r.Cluster, errs)
}
