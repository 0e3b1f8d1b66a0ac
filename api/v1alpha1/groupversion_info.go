// Package v1alpha1 holds the Outpost resource types of API group ml.outpost.dev, version v1alpha1.
//
// The same Go types back the standalone hub's REST API and the CustomResourceDefinitions used in
// KubeStellar mode; the CRDs in deploy/crds are generated from the kubebuilder markers here.
//
// +kubebuilder:object:generate=true
// +groupName=ml.outpost.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupName is the API group of every Outpost resource.
const GroupName = "ml.outpost.dev"

// Version is the API version of the types in this package.
const Version = "v1alpha1"

// SchemeGroupVersion is the group and version of the types in this package.
var SchemeGroupVersion = schema.GroupVersion{Group: GroupName, Version: Version}

// APIVersion is the apiVersion field value of the types in this package.
const APIVersion = GroupName + "/" + Version

// APIPath is the path under which a hub serves the resources of this package
// and the agent protocol, such as APIPath+"/clusters".
const APIPath = "/apis/" + APIVersion

var (
	// SchemeBuilder registers the types of this package with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds the types of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	for _, k := range index.all {
		l, err := k.NewList(nil)
		if err != nil {
			return err
		}
		scheme.AddKnownTypes(SchemeGroupVersion, k.New(), l)
	}
	metav1.AddToGroupVersion(scheme, SchemeGroupVersion)
	return nil
}

// Resource returns the group-qualified resource for the plural name, such as "clusters".
func Resource(plural string) schema.GroupResource {
	return SchemeGroupVersion.WithResource(plural).GroupResource()
}
