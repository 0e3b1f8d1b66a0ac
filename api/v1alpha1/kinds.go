package v1alpha1

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime"

	"outpost.dev/outpost/internal/versions"
)

// KindInfo is one resource kind of this package: everything decoding, the
// hub's REST API, `outpost get` and the CRDs (deploy/crds, through `make
// generate`) know of it. Each kind is registered once, in kinds below;
// adding a kind means its types (with Default and Validate) and one entry
// there.
//
// +kubebuilder:object:generate=false
type KindInfo struct {
	// Kind is the kind, such as ModelDeployment; ListKind its list's kind.
	Kind, ListKind string
	// Plural is the resource name in paths, such as modeldeployments;
	// Singular the name users type for one.
	Plural, Singular string
	// ShortNames are the abbreviations users may type, such as md.
	ShortNames []string
	// Columns are the columns of `outpost get` (those with Priority 1 only
	// with -o wide) and, those with a JSONPath, of kubectl get (the CRD's
	// additionalPrinterColumns). The NAME column comes first, implied.
	Columns []Column
	// Breakdown, if set, is what -o wide shows instead of Columns: a row
	// per part of each object, such as a deployment's row per cluster.
	Breakdown *Breakdown
	// Syntax is the syntax of string fields that Go code defines, by path
	// (such as spec.model.version): `make generate` writes each into the
	// CRD's schema as a validation rule.
	Syntax map[string]FieldSyntax

	newObject func() Object
	isObject  func(o runtime.Object) bool
	newList   func(items []Object) (runtime.Object, error)
	items     func(list runtime.Object) ([]Object, bool)
	status    statusOps
}

// FieldSyntax is the syntax of a string field, as Go code checks it.
//
// +kubebuilder:object:generate=false
type FieldSyntax struct {
	// Pattern is a regular expression (RE2) the whole value must match.
	Pattern string
	// Message is what a value that does not match is told.
	Message string
}

// Column is a column of a kind's table.
//
// +kubebuilder:object:generate=false
type Column struct {
	// Name is the header as kubectl shows it, such as "Last Seen"; `outpost
	// get` prints it in capitals.
	Name string
	// Type is the CRD column type: string, integer, number, boolean or date.
	Type string
	// JSONPath is the field shown, such as .status.link.state; empty for a
	// value computed from the whole object, which only `outpost get` shows.
	JSONPath string
	// Priority 1 shows the column only in wide output.
	Priority int32
	// Cell renders the column for `outpost get`; nil renders the field at
	// JSONPath by Type ("-" when absent, a date as an age).
	Cell func(o Object, now time.Time) string
}

// Breakdown is a table of the parts of each object.
//
// +kubebuilder:object:generate=false
type Breakdown struct {
	// Parts returns how many rows o has; an object with none gets one row
	// of its own columns' values and "-" in the others.
	Parts func(o Object) int
	// Columns are the table's columns; the object's name is not implied.
	Columns []PartColumn
}

// PartColumn is a column of a Breakdown.
//
// +kubebuilder:object:generate=false
type PartColumn struct {
	// Name is the header, printed in capitals.
	Name string
	// Cell renders part i of o; with i = -1 (an object with no parts) it
	// renders the object's own value, or "" for "-".
	Cell func(o Object, i int, now time.Time) string
}

// statusCounter is a status with counts of its own rows, such as
// ModelDeploymentStatus: CopyStatus recounts them.
type statusCounter interface{ Count() }

// statusOps clears and copies the status of one kind's objects.
type statusOps struct {
	reset func(o Object)
	copy  func(dst, src Object)
}

// kinds lists every kind of this package, in the order `outpost get`
// names them. It is built once and never modified.
func kinds() []*KindInfo {
	return []*KindInfo{
		register(&KindInfo{
			Kind: KindCluster, ListKind: KindClusterList, Plural: PluralClusters, Singular: "cluster",
			ShortNames: []string{"cl"},
			Columns:    clusterColumns(),
		}, func(l *ClusterList) *[]Cluster { return &l.Items }, func(c *Cluster) *ClusterStatus { return &c.Status }),
		register(&KindInfo{
			Kind: KindModelDeployment, ListKind: KindModelDeploymentList, Plural: PluralModelDeployments, Singular: "modeldeployment",
			ShortNames: []string{"md"},
			Columns:    deploymentColumns(),
			Breakdown:  deploymentBreakdown(),
			Syntax: map[string]FieldSyntax{"spec.model.version": {Pattern: versions.ConstraintPattern,
				Message: "not a semver version or range: an exact version (1.2.3) or a range such as >=1.2 <2, ^1.2, ~1.2.3, 1.x or 1.2 - 1.4"}},
		}, func(l *ModelDeploymentList) *[]ModelDeployment { return &l.Items },
			func(d *ModelDeployment) *ModelDeploymentStatus { return &d.Status }),
		register(&KindInfo{
			Kind: KindPipeline, ListKind: KindPipelineList, Plural: PluralPipelines, Singular: "pipeline",
			ShortNames: []string{"pl"},
			Columns:    pipelineColumns(),
			Breakdown:  pipelineBreakdown(),
		}, func(l *PipelineList) *[]Pipeline { return &l.Items }, func(p *Pipeline) *PipelineStatus { return &p.Status }),
		register(&KindInfo{
			Kind: KindPipelineRun, ListKind: KindPipelineRunList, Plural: PluralPipelineRuns, Singular: "pipelinerun",
			ShortNames: []string{"pr"},
			Columns:    pipelineRunColumns(),
		}, func(l *PipelineRunList) *[]PipelineRun { return &l.Items }, func(r *PipelineRun) *PipelineRunStatus { return &r.Status }),
		register(&KindInfo{
			Kind: KindFederatedJob, ListKind: KindFederatedJobList, Plural: PluralFederatedJobs, Singular: "federatedjob",
			ShortNames: []string{"fj"},
			Columns:    federatedJobColumns(),
			Breakdown:  federatedJobBreakdown(),
			Syntax: map[string]FieldSyntax{"spec.model.version": {Pattern: versions.ExactPattern,
				Message: "must be an exact semantic version such as 1.0.0"}},
		}, func(l *FederatedJobList) *[]FederatedJob { return &l.Items },
			func(j *FederatedJob) *FederatedJobStatus { return &j.Status }),
		register(&KindInfo{
			Kind: KindCompressionPolicy, ListKind: KindCompressionPolicyList, Plural: PluralCompressionPolicies, Singular: "compressionpolicy",
			ShortNames: []string{"cp"},
			Columns:    compressionPolicyColumns(),
			Breakdown:  compressionPolicyBreakdown(),
		}, func(l *CompressionPolicyList) *[]CompressionPolicy { return &l.Items },
			func(p *CompressionPolicy) *CompressionPolicyStatus { return &p.Status }),
	}
}

// register completes info with the functions that make, list and reset
// objects of type T (a pointer PT is an Object) and lists of type L, given
// where L keeps its items and where T keeps its status S.
func register[T, L, S any, PT interface {
	*T
	Object
}, PL interface {
	*L
	runtime.Object
}, PS interface {
	*S
	DeepCopy() *S
}](info *KindInfo, items func(PL) *[]T, status func(PT) PS) *KindInfo {
	info.newObject = func() Object { return PT(new(T)) }
	info.isObject = func(o runtime.Object) bool { _, ok := o.(PT); return ok }
	info.newList = func(objs []Object) (runtime.Object, error) {
		l := PL(new(L))
		out := items(l)
		*out = make([]T, 0, len(objs))
		for _, o := range objs {
			t, ok := o.(PT)
			if !ok {
				return nil, fmt.Errorf("list of %s: got %T", info.Kind, o)
			}
			*out = append(*out, *t)
		}
		return l, nil
	}
	info.items = func(list runtime.Object) ([]Object, bool) {
		l, ok := list.(PL)
		if !ok {
			return nil, false
		}
		in := *items(l)
		objs := make([]Object, len(in))
		for i := range in {
			objs[i] = PT(&in[i])
		}
		return objs, true
	}
	info.status = statusOps{
		reset: func(o Object) {
			if t, ok := o.(PT); ok {
				*status(t) = *new(S)
			}
		},
		copy: func(dst, src Object) {
			d, ok1 := dst.(PT)
			s, ok2 := src.(PT)
			if ok1 && ok2 {
				*status(d) = *status(s).DeepCopy()
				if c, ok := any(status(d)).(statusCounter); ok {
					c.Count()
				}
			}
		},
	}
	return info
}

// Kinds returns every kind of this package. The KindInfos are shared: do
// not modify them.
func Kinds() []*KindInfo { return slices.Clone(index.all) }

// kindIndex finds kinds by what they are called.
type kindIndex struct {
	all      []*KindInfo
	byKind   map[string]*KindInfo // kind and list kind
	byPlural map[string]*KindInfo
	byName   map[string]*KindInfo // lower-case kind, plural, singular, short names
}

func newKindIndex(all []*KindInfo) kindIndex {
	x := kindIndex{all: all, byKind: map[string]*KindInfo{}, byPlural: map[string]*KindInfo{}, byName: map[string]*KindInfo{}}
	for _, k := range all {
		x.byKind[k.Kind], x.byKind[k.ListKind], x.byPlural[k.Plural] = k, k, k
		for _, n := range append([]string{strings.ToLower(k.Kind), k.Plural, k.Singular}, k.ShortNames...) {
			x.byName[n] = k
		}
	}
	return x
}

// index is the table of kinds, built once at start and never modified.
var index = newKindIndex(kinds())

// LookupKind returns the kind named kind (or the list kind named so).
func LookupKind(kind string) (*KindInfo, bool) {
	k, ok := index.byKind[kind]
	return k, ok
}

// LookupPlural returns the kind served under the plural resource name.
func LookupPlural(plural string) (*KindInfo, bool) {
	k, ok := index.byPlural[plural]
	return k, ok
}

// LookupName returns the kind a user means by name, in any case: its kind,
// plural, singular or a short name.
func LookupName(name string) (*KindInfo, error) {
	if k, ok := index.byName[strings.ToLower(name)]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("unknown kind %q (known: %s)", name, strings.Join(Singulars(), ", "))
}

// Plurals lists the plural resource names, for messages and completion.
func Plurals() []string {
	out := make([]string, len(index.all))
	for i, k := range index.all {
		out[i] = k.Plural
	}
	return out
}

// Singulars lists the singular names.
func Singulars() []string {
	out := make([]string, len(index.all))
	for i, k := range index.all {
		out[i] = k.Singular
	}
	return out
}

// KindNames lists the kinds.
func KindNames() []string {
	out := make([]string, len(index.all))
	for i, k := range index.all {
		out[i] = k.Kind
	}
	return out
}

// New returns an empty object of the kind with its apiVersion and kind set.
func (k *KindInfo) New() Object {
	o := k.newObject()
	SetTypeMeta(o)
	return o
}

// NewList returns a list of the kind holding objs (each must be of the
// kind), with its apiVersion and kind set.
func (k *KindInfo) NewList(objs []Object) (runtime.Object, error) {
	l, err := k.newList(objs)
	if err != nil {
		return nil, err
	}
	l.GetObjectKind().SetGroupVersionKind(SchemeGroupVersion.WithKind(k.ListKind))
	return l, nil
}

// Items returns the objects of list, a list of the kind (as made by
// NewList(nil) and filled by decoding).
func (k *KindInfo) Items(list runtime.Object) ([]Object, error) {
	objs, ok := k.items(list)
	if !ok {
		return nil, fmt.Errorf("%T is not a %s", list, k.ListKind)
	}
	return objs, nil
}

// ResetStatus clears the status of o, an object of the kind.
func (k *KindInfo) ResetStatus(o Object) { k.status.reset(o) }

// CopyStatus sets dst's status to a deep copy of src's, its counts (such as a
// deployment's readyClusters) recounted from its rows; both are of the kind.
func (k *KindInfo) CopyStatus(dst, src Object) { k.status.copy(dst, src) }

// New returns an empty object of kind with its apiVersion and kind set.
func New(kind string) (Object, error) {
	k, ok := index.byKind[kind]
	if !ok || k.Kind != kind {
		return nil, fmt.Errorf("unknown kind %q in %s (known: %s)", kind, APIVersion, strings.Join(KindNames(), ", "))
	}
	return k.New(), nil
}

// KindOf returns the kind of obj from its Go type, whatever its TypeMeta
// says, or "" for a type of no kind of this package. For a list it returns
// the list kind.
func KindOf(obj runtime.Object) string {
	for _, k := range index.all {
		if k.isObject(obj) {
			return k.Kind
		}
		if _, ok := k.items(obj); ok {
			return k.ListKind
		}
	}
	return ""
}

// SetTypeMeta sets the apiVersion and kind of obj from its Go type.
func SetTypeMeta(obj runtime.Object) {
	if k := KindOf(obj); k != "" {
		obj.GetObjectKind().SetGroupVersionKind(SchemeGroupVersion.WithKind(k))
	}
}

// KindForPlural returns the kind served under the plural resource name, such as "clusters".
func KindForPlural(plural string) (string, bool) {
	k, ok := LookupPlural(plural)
	if !ok {
		return "", false
	}
	return k.Kind, true
}

// PluralForKind returns the plural resource name of kind.
func PluralForKind(kind string) (string, bool) {
	k, ok := index.byKind[kind]
	if !ok || k.Kind != kind {
		return "", false
	}
	return k.Plural, true
}

// NewList returns a list of kind holding objs, with its apiVersion and kind set.
func NewList(kind string, objs []Object) (runtime.Object, error) {
	k, ok := index.byKind[kind]
	if !ok || k.Kind != kind {
		return nil, fmt.Errorf("unknown kind %q", kind)
	}
	return k.NewList(objs)
}
