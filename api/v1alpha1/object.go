package v1alpha1

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Kinds and plural resource names of the resources in this package.
const (
	KindCluster             = "Cluster"
	KindClusterList         = "ClusterList"
	KindModelDeployment     = "ModelDeployment"
	KindModelDeploymentList = "ModelDeploymentList"

	PluralClusters         = "clusters"
	PluralModelDeployments = "modeldeployments"
)

// Object is a single resource of this package: a *Cluster or a *ModelDeployment.
//
// +kubebuilder:object:generate=false
type Object interface {
	runtime.Object
	metav1.Object
	// Default fills the fields the CRD schema defaults.
	Default()
	// Validate checks the object and returns an *InvalidError naming each bad field, or nil.
	Validate() error
}

// Kinds lists the kinds of the resources in this package.
func Kinds() []string { return []string{KindCluster, KindModelDeployment} }

// New returns an empty object of kind with its apiVersion and kind set.
func New(kind string) (Object, error) {
	var obj Object
	switch kind {
	case KindCluster:
		obj = &Cluster{}
	case KindModelDeployment:
		obj = &ModelDeployment{}
	default:
		return nil, fmt.Errorf("unknown kind %q in %s (known: %s)", kind, APIVersion, strings.Join(Kinds(), ", "))
	}
	SetTypeMeta(obj)
	return obj, nil
}

// KindOf returns the kind of obj from its Go type, whatever its TypeMeta says.
func KindOf(obj runtime.Object) string {
	switch obj.(type) {
	case *Cluster:
		return KindCluster
	case *ClusterList:
		return KindClusterList
	case *ModelDeployment:
		return KindModelDeployment
	case *ModelDeploymentList:
		return KindModelDeploymentList
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
	switch plural {
	case PluralClusters:
		return KindCluster, true
	case PluralModelDeployments:
		return KindModelDeployment, true
	}
	return "", false
}

// PluralForKind returns the plural resource name of kind.
func PluralForKind(kind string) (string, bool) {
	switch kind {
	case KindCluster:
		return PluralClusters, true
	case KindModelDeployment:
		return PluralModelDeployments, true
	}
	return "", false
}

// NewList returns an empty list for kind with its apiVersion and kind set.
func NewList(kind string, objs []Object) (runtime.Object, error) {
	switch kind {
	case KindCluster:
		l := &ClusterList{Items: []Cluster{}}
		for _, o := range objs {
			c, ok := o.(*Cluster)
			if !ok {
				return nil, fmt.Errorf("list of %s: got %T", kind, o)
			}
			l.Items = append(l.Items, *c)
		}
		SetTypeMeta(l)
		return l, nil
	case KindModelDeployment:
		l := &ModelDeploymentList{Items: []ModelDeployment{}}
		for _, o := range objs {
			m, ok := o.(*ModelDeployment)
			if !ok {
				return nil, fmt.Errorf("list of %s: got %T", kind, o)
			}
			l.Items = append(l.Items, *m)
		}
		SetTypeMeta(l)
		return l, nil
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}
