package v1alpha1

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	k8svalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"outpost.dev/outpost/internal/versions"
)

// InvalidError reports the fields of an object that failed validation.
//
// +kubebuilder:object:generate=false
type InvalidError struct {
	// Kind and Name identify the object.
	Kind, Name string
	// Errs has one entry per bad field, each naming its path.
	Errs field.ErrorList
}

// Error returns a message in the style of the Kubernetes API, naming every bad field.
func (e *InvalidError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, fe := range e.Errs {
		msgs[i] = fe.Error()
	}
	return fmt.Sprintf("%s %q is invalid: %s", e.Kind, e.Name, strings.Join(msgs, "; "))
}

func invalid(kind, name string, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return &InvalidError{Kind: kind, Name: name, Errs: errs}
}

// modelNamePattern is an OCI repository path component sequence (distribution-spec).
var modelNamePattern = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

const maxModelNameLen = 200

// MaxClusterSelectors bounds the clusterSelectors of a deployment, a pipeline or a federated job.
const MaxClusterSelectors = 32

func validateMeta(m *metav1.ObjectMeta) field.ErrorList {
	p := field.NewPath("metadata")
	var errs field.ErrorList
	if m.Name == "" {
		return append(errs, field.Required(p.Child("name"), "a name is required"))
	}
	if m.Namespace != "" {
		errs = append(errs, field.Forbidden(p.Child("namespace"), "resource is cluster-scoped"))
	}
	errs = append(errs, apivalidation.ValidateObjectMeta(m, false, apivalidation.NameIsDNSSubdomain, p)...)
	return errs
}

// Validate checks the Cluster: a DNS-1123 subdomain name, valid labels, and well-formed spec and status.
func (c *Cluster) Validate() error {
	errs := validateMeta(&c.ObjectMeta)
	sp := field.NewPath("spec")
	if len(c.Spec.DisplayName) > 256 {
		errs = append(errs, field.TooLong(sp.Child("displayName"), "", 256))
	}
	if c.Spec.Capacity != nil {
		errs = append(errs, validateCapacity(c.Spec.Capacity, sp.Child("capacity"))...)
	}
	if tp := c.Spec.Transfer; tp != nil {
		if _, err := tp.Schedule(); err != nil {
			errs = append(errs, field.Invalid(sp.Child("transfer"), "", err.Error()))
		}
	}
	errs = append(errs, c.Status.validate(field.NewPath("status"))...)
	return invalid(KindCluster, c.Name, errs)
}

func (s *ClusterStatus) validate(p *field.Path) field.ErrorList {
	errs := validateCapacity(&s.Capacity, p.Child("capacity"))
	lp := p.Child("link")
	if s.Link.BandwidthBps < 0 {
		errs = append(errs, field.Invalid(lp.Child("bandwidthBps"), s.Link.BandwidthBps, "must be non-negative"))
	}
	if s.Link.RTTMillis < 0 {
		errs = append(errs, field.Invalid(lp.Child("rttMillis"), s.Link.RTTMillis, "must be non-negative"))
	}
	switch s.Link.State {
	case "", LinkConnected, LinkDegraded, LinkDisconnected, LinkUnknown:
	default:
		errs = append(errs, field.NotSupported(lp.Child("state"), s.Link.State,
			[]LinkState{LinkConnected, LinkDegraded, LinkDisconnected, LinkUnknown}))
	}
	for i, a := range s.CachedArtifacts {
		ap := p.Child("cachedArtifacts").Index(i)
		if a.Digest == "" {
			errs = append(errs, field.Required(ap.Child("digest"), ""))
		}
		if a.SizeBytes < 0 {
			errs = append(errs, field.Invalid(ap.Child("sizeBytes"), a.SizeBytes, "must be non-negative"))
		}
	}
	if s.Endpoints != nil {
		errs = append(errs, s.Endpoints.validate(p.Child("endpoints"))...)
	}
	errs = append(errs, metav1validation.ValidateConditions(s.Conditions, p.Child("conditions"))...)
	return errs
}

// maxEndpointLen bounds an endpoint's URL or address.
const maxEndpointLen = 2048

// validate checks that REST, when set, is an http or https URL with a host
// and nothing after its path, and GRPC, when set, is a host:port.
func (e *ServingEndpoints) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if e.REST != "" {
		rp := p.Child("rest")
		u, err := url.Parse(e.REST)
		switch {
		case len(e.REST) > maxEndpointLen:
			errs = append(errs, field.TooLong(rp, "", maxEndpointLen))
		case err != nil:
			errs = append(errs, field.Invalid(rp, e.REST, err.Error()))
		case u.Scheme != "http" && u.Scheme != "https", u.Host == "", u.User != nil, u.RawQuery != "", u.Fragment != "":
			errs = append(errs, field.Invalid(rp, e.REST, "must be an http or https URL such as http://10.0.0.7:8080, without user, query or fragment"))
		}
	}
	if e.GRPC != "" {
		gp := p.Child("grpc")
		if len(e.GRPC) > maxEndpointLen {
			errs = append(errs, field.TooLong(gp, "", maxEndpointLen))
		} else if host, port, err := net.SplitHostPort(e.GRPC); err != nil || host == "" || port == "" {
			errs = append(errs, field.Invalid(gp, e.GRPC, "must be host:port, such as 10.0.0.7:8081"))
		}
	}
	return errs
}

func validateCapacity(c *Capacity, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, q := range []struct {
		name string
		q    *resource.Quantity
	}{{"cpu", c.CPU}, {"memory", c.Memory}, {"disk", c.Disk}} {
		if q.q != nil && q.q.Sign() < 0 {
			errs = append(errs, field.Invalid(p.Child(q.name), q.q.String(), "must be non-negative"))
		}
	}
	seen := map[string]bool{}
	for i, a := range c.Accelerators {
		ap := p.Child("accelerators").Index(i)
		switch {
		case a.Type == "":
			errs = append(errs, field.Required(ap.Child("type"), ""))
		case seen[a.Type]:
			errs = append(errs, field.Duplicate(ap.Child("type"), a.Type))
		}
		seen[a.Type] = true
		if a.Count < 0 {
			errs = append(errs, field.Invalid(ap.Child("count"), a.Count, "must be non-negative"))
		}
	}
	return errs
}

// Validate checks the ModelDeployment: a DNS-1123 subdomain name, a model name usable as a
// registry repository, a version that is an exact semantic version or a range, valid label
// selectors, and known rollout and serving settings.
func (d *ModelDeployment) Validate() error {
	errs := validateMeta(&d.ObjectMeta)
	sp := field.NewPath("spec")
	mp := sp.Child("model")
	switch name := d.Spec.Model.Name; {
	case name == "":
		errs = append(errs, field.Required(mp.Child("name"), "a model name is required"))
	case len(name) > maxModelNameLen:
		errs = append(errs, field.TooLong(mp.Child("name"), "", maxModelNameLen))
	case !modelNamePattern.MatchString(name):
		errs = append(errs, field.Invalid(mp.Child("name"), name,
			"must be lowercase letters and digits separated by '.', '_', '-' or '/'"))
	case strings.HasPrefix(name, EdgeRepositoryPrefix):
		// Only the cluster that produced it may read it.
		errs = append(errs, field.Invalid(mp.Child("name"), name,
			"a model produced at the edge is deployed once promoted: outpost model promote "+name+"@VERSION --to NAME@VERSION"))
	}
	if d.Spec.Model.Version == "" {
		errs = append(errs, field.Required(mp.Child("version"), "an exact version or a semver range is required"))
	} else if err := versions.Validate(d.Spec.Model.Version); err != nil {
		errs = append(errs, field.Invalid(mp.Child("version"), d.Spec.Model.Version, "not a semver version or range"))
	}
	switch csp := sp.Child("clusterSelectors"); {
	case len(d.Spec.ClusterSelectors) == 0:
		errs = append(errs, field.Required(csp, "at least one selector: [{}] selects every cluster"))
	case len(d.Spec.ClusterSelectors) > MaxClusterSelectors:
		errs = append(errs, field.TooMany(csp, len(d.Spec.ClusterSelectors), MaxClusterSelectors))
	}
	for i := range d.Spec.ClusterSelectors {
		errs = append(errs, validateSelector(&d.Spec.ClusterSelectors[i], sp.Child("clusterSelectors").Index(i))...)
	}
	if vp := d.Spec.VariantPolicy; vp != nil {
		errs = append(errs, vp.validate(sp.Child("variantPolicy"))...)
	}
	rp := sp.Child("rollout")
	switch d.Spec.Rollout.Strategy {
	case "", RolloutAll, RolloutCanary:
	default:
		errs = append(errs, field.NotSupported(rp.Child("strategy"), d.Spec.Rollout.Strategy,
			[]RolloutStrategy{RolloutAll, RolloutCanary}))
	}
	if mu := d.Spec.Rollout.MaxUnavailable; mu != nil && *mu < 0 {
		errs = append(errs, field.Invalid(rp.Child("maxUnavailable"), *mu, "must be non-negative"))
	}
	errs = append(errs, d.Spec.Rollout.validate(rp)...)
	svp := sp.Child("serving")
	switch d.Spec.Serving.Runtime {
	case "", RuntimeAuto, RuntimeGo, RuntimeONNXRuntime:
	default:
		errs = append(errs, field.NotSupported(svp.Child("runtime"), d.Spec.Serving.Runtime,
			[]ServingRuntime{RuntimeAuto, RuntimeGo, RuntimeONNXRuntime}))
	}
	if port := d.Spec.Serving.Port; port != nil && (*port < 1 || *port > 65535) {
		errs = append(errs, field.Invalid(svp.Child("port"), *port, "must be between 1 and 65535"))
	}
	if m := d.Spec.Monitoring; m != nil {
		errs = append(errs, m.validate(sp.Child("monitoring"))...)
	}
	errs = append(errs, d.Status.validate(field.NewPath("status"))...)
	return invalid(KindModelDeployment, d.Name, errs)
}

func (s *ModelDeploymentStatus) validate(p *field.Path) field.ErrorList {
	errs := metav1validation.ValidateConditions(s.Conditions, p.Child("conditions"))
	for i, c := range s.Clusters {
		cp := p.Child("clusters").Index(i)
		if c.Cluster == "" {
			errs = append(errs, field.Required(cp.Child("cluster"), ""))
		}
		switch c.Phase {
		case "", PhasePending, PhaseFetching, PhaseActive, PhaseFailed, PhaseUnreachable:
		default:
			errs = append(errs, field.NotSupported(cp.Child("phase"), c.Phase,
				[]ClusterPhase{PhasePending, PhaseFetching, PhaseActive, PhaseFailed, PhaseUnreachable}))
		}
		if c.BytesFetched < 0 || c.BytesTotal < 0 {
			errs = append(errs, field.Invalid(cp.Child("bytesFetched"), c.BytesFetched, "byte counts must be non-negative"))
		}
		if d := c.Drift; d != nil {
			switch d.State {
			case DriftStateDrift, DriftStateNoDrift, DriftStateInsufficientData:
			default:
				errs = append(errs, field.NotSupported(cp.Child("drift", "state"), d.State,
					[]DriftState{DriftStateDrift, DriftStateNoDrift, DriftStateInsufficientData}))
			}
		}
	}
	return errs
}

// Bounds of a label selector (the CRDs carry them too, which keeps the
// cost of their validation rules within the apiserver's budget).
const (
	// MaxSelectorTerms bounds a selector's matchLabels and its matchExpressions.
	MaxSelectorTerms = 16
	// MaxSelectorValues bounds the values of one of its matchExpressions.
	MaxSelectorValues = 32
)

func validateSelector(sel *metav1.LabelSelector, p *field.Path) field.ErrorList {
	errs := metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, p)
	if len(sel.MatchLabels) > MaxSelectorTerms {
		errs = append(errs, field.TooMany(p.Child("matchLabels"), len(sel.MatchLabels), MaxSelectorTerms))
	}
	if len(sel.MatchExpressions) > MaxSelectorTerms {
		errs = append(errs, field.TooMany(p.Child("matchExpressions"), len(sel.MatchExpressions), MaxSelectorTerms))
	}
	for i, e := range sel.MatchExpressions {
		if len(e.Values) > MaxSelectorValues {
			errs = append(errs, field.TooMany(p.Child("matchExpressions").Index(i).Child("values"), len(e.Values), MaxSelectorValues))
		}
	}
	if len(errs) == 0 {
		if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			errs = append(errs, field.Invalid(p, sel.String(), err.Error()))
		}
	}
	return errs
}

// validate checks the Canary settings of a rollout.
func (r *Rollout) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if pc := r.MaxUnavailablePercent; pc != nil && (*pc < 1 || *pc > 100) {
		errs = append(errs, field.Invalid(p.Child("maxUnavailablePercent"), *pc, "must be between 1 and 100"))
	}
	if c := r.Canary; c != nil {
		if c.Count < 0 {
			errs = append(errs, field.Invalid(p.Child("canary", "count"), c.Count, "must be positive"))
		}
		if c.Selector != nil {
			errs = append(errs, validateSelector(c.Selector, p.Child("canary", "selector"))...)
		}
	}
	if r.WaveOrder != "" {
		for _, msg := range k8svalidation.IsQualifiedName(r.WaveOrder) {
			errs = append(errs, field.Invalid(p.Child("waveOrder"), r.WaveOrder, msg))
		}
	}
	for name, d := range map[string]*metav1.Duration{"bakeTime": r.BakeTime, "silentAfter": r.SilentAfter, "progressDeadline": r.ProgressDeadline} {
		if d != nil && d.Duration < 0 {
			errs = append(errs, field.Invalid(p.Child(name), d.Duration.String(), "must not be negative"))
		}
	}
	if g := r.Gates; g != nil {
		gp := p.Child("gates")
		for name, v := range map[string]string{"maxErrorRateIncrease": g.MaxErrorRateIncrease, "maxLatencyRatio": g.MaxLatencyRatio} {
			if v == "" {
				continue
			}
			if f, err := strconv.ParseFloat(v, 64); err != nil || f < 0 || math.IsInf(f, 0) {
				errs = append(errs, field.Invalid(gp.Child(name), v, "must be a non-negative decimal"))
			}
		}
		if g.MinRequests < 0 {
			errs = append(errs, field.Invalid(gp.Child("minRequests"), g.MinRequests, "must be positive"))
		}
	}
	return errs
}

// variantNameRE is the syntax of a variant's name (as artifact.ValidateVariantName checks it).
var variantNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

// maxAllowedVariants bounds VariantPolicy.Allowed.
const maxAllowedVariants = 32

func (vp *VariantPolicy) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	ap := p.Child("allowed")
	if len(vp.Allowed) > maxAllowedVariants {
		errs = append(errs, field.TooMany(ap, len(vp.Allowed), maxAllowedVariants))
	}
	seen := map[string]bool{}
	for i, n := range vp.Allowed {
		switch {
		case !variantNameRE.MatchString(n):
			errs = append(errs, field.Invalid(ap.Index(i), n, "a variant name: lowercase letters, digits, '.' and '-', such as int8, fp16 or original"))
		case seen[n]:
			errs = append(errs, field.Duplicate(ap.Index(i), n))
		}
		seen[n] = true
	}
	if vp.MaxMemoryPercent < 0 || vp.MaxMemoryPercent > 100 {
		errs = append(errs, field.Invalid(p.Child("maxMemoryPercent"), vp.MaxMemoryPercent, "must be between 0 and 100"))
	}
	if vp.MaxFetchTime != nil && vp.MaxFetchTime.Duration < 0 {
		errs = append(errs, field.Invalid(p.Child("maxFetchTime"), vp.MaxFetchTime.Duration.String(), "must not be negative"))
	}
	switch vp.Prefer {
	case "", PreferAccurate, PreferSmallest:
	default:
		errs = append(errs, field.NotSupported(p.Child("prefer"), vp.Prefer, []VariantPreference{PreferAccurate, PreferSmallest}))
	}
	return errs
}
