package kube

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// This file holds our own Go types for the fields of KubeStellar's control
// API (control.kubestellar.io/v1alpha1, release 0.30) and of OCM's
// ManagedCluster (cluster.open-cluster-management.io/v1) that Outpost
// reads and writes. They travel as unstructured objects, so Outpost does
// not depend on either project's Go module.

// Groups, versions and kinds of the KubeStellar and OCM objects.
var (
	// BindingPolicyGVK is KubeStellar's BindingPolicy, cluster-scoped, in the WDS.
	BindingPolicyGVK = schema.GroupVersionKind{Group: "control.kubestellar.io", Version: "v1alpha1", Kind: "BindingPolicy"}
	// StatusCollectorGVK is KubeStellar's StatusCollector, cluster-scoped, in the WDS.
	StatusCollectorGVK = schema.GroupVersionKind{Group: "control.kubestellar.io", Version: "v1alpha1", Kind: "StatusCollector"}
	// CombinedStatusGVK is KubeStellar's CombinedStatus, namespaced, in the WDS.
	CombinedStatusGVK = schema.GroupVersionKind{Group: "control.kubestellar.io", Version: "v1alpha1", Kind: "CombinedStatus"}
	// ManagedClusterGVK is OCM's ManagedCluster, cluster-scoped, in the ITS.
	ManagedClusterGVK = schema.GroupVersionKind{Group: "cluster.open-cluster-management.io", Version: "v1", Kind: "ManagedCluster"}
)

// Labels KubeStellar puts on a CombinedStatus, naming its workload object
// and BindingPolicy.
const (
	LabelStatusGroup         = "status.kubestellar.io/api-group"
	LabelStatusResource      = "status.kubestellar.io/resource"
	LabelStatusNamespace     = "status.kubestellar.io/namespace"
	LabelStatusName          = "status.kubestellar.io/name"
	LabelStatusBindingPolicy = "status.kubestellar.io/binding-policy"
	// CombinedStatusNamespace holds the CombinedStatus objects of
	// cluster-scoped workload objects.
	CombinedStatusNamespace = "kubestellar-report"
	// LabelExecutingCount is the label KubeStellar keeps on a workload
	// object while singleton status return is requested: how many WECs it
	// goes to.
	LabelExecutingCount = "kubestellar.io/executing-count"
)

// BindingPolicySpec is the part of a BindingPolicy's spec Outpost writes.
type BindingPolicySpec struct {
	// ClusterSelectors select the WECs by their inventory labels, ORed.
	ClusterSelectors []metav1.LabelSelector `json:"clusterSelectors,omitempty"`
	// Downsync selects the workload objects.
	Downsync []DownsyncPolicyClause `json:"downsync,omitempty"`
}

// DownsyncPolicyClause selects workload objects and says how they go.
type DownsyncPolicyClause struct {
	// APIGroup is the objects' API group; nil matches any.
	APIGroup *string `json:"apiGroup,omitempty"`
	// Resources are lowercase plural resource names.
	Resources []string `json:"resources,omitempty"`
	// Namespaces are the objects' namespaces; "*" is needed to match a
	// cluster-scoped object when namespaces are listed.
	Namespaces []string `json:"namespaces,omitempty"`
	// ObjectSelectors match the objects' labels, ORed.
	ObjectSelectors []metav1.LabelSelector `json:"objectSelectors,omitempty"`
	// ObjectNames are the objects' names.
	ObjectNames []string `json:"objectNames,omitempty"`
	// CreateOnly leaves the object in a WEC alone once created.
	CreateOnly bool `json:"createOnly,omitempty"`
	// StatusCollectors name the StatusCollectors applied to the objects.
	StatusCollectors []string `json:"statusCollectors,omitempty"`
	// WantSingletonReportedState asks for the status of an object that
	// goes to exactly one WEC to be written back into the WDS object.
	WantSingletonReportedState bool `json:"wantSingletonReportedState,omitempty"`
}

// StatusCollectorSpec is a StatusCollector's spec: a SELECT over the WECs
// an object goes to, its expressions in CEL.
type StatusCollectorSpec struct {
	// Filter keeps the rows for which it is true.
	Filter string `json:"filter,omitempty"`
	// GroupBy and CombinedFields aggregate; Outpost uses neither.
	GroupBy        []NamedExpression `json:"groupBy,omitempty"`
	CombinedFields []NamedAggregator `json:"combinedFields,omitempty"`
	// Select names the columns of each row.
	Select []NamedExpression `json:"select,omitempty"`
	// Limit bounds the rows (KubeStellar's default 20).
	Limit int64 `json:"limit"`
}

// NamedExpression is a column: a name and a CEL expression over inventory,
// obj, returned and propagation.
type NamedExpression struct {
	Name string `json:"name"`
	Def  string `json:"def"`
}

// NamedAggregator is an aggregated column.
type NamedAggregator struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Subject string `json:"subject,omitempty"`
}

// CombinedStatus holds the rows of each StatusCollector for one (workload
// object, BindingPolicy) pair.
type CombinedStatus struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Results has an entry per StatusCollector.
	Results []NamedStatusCombination `json:"results,omitempty"`
}

// NamedStatusCombination is one StatusCollector's rows.
type NamedStatusCombination struct {
	Name        string                 `json:"name"`
	ColumnNames []string               `json:"columnNames"`
	Rows        []StatusCombinationRow `json:"rows,omitempty"`
}

// StatusCombinationRow is one row.
type StatusCombinationRow struct {
	Columns []Value `json:"columns"`
}

// Value is a JSON value, a union on Type.
type Value struct {
	Type   string           `json:"type"`
	String *string          `json:"string,omitempty"`
	Number *string          `json:"float,omitempty"`
	Bool   *bool            `json:"bool,omitempty"`
	Object map[string]Value `json:"object,omitempty"`
	Array  []Value          `json:"array,omitempty"`
}

// Value types.
const (
	TypeString = "String"
	TypeNumber = "Number"
	TypeBool   = "Bool"
	TypeNull   = "Null"
	TypeObject = "Object"
	TypeArray  = "Array"
)

// NewValue encodes a JSON value (as encoding/json decodes into any) as a Value.
func NewValue(v any) (Value, error) {
	switch x := v.(type) {
	case nil:
		return Value{Type: TypeNull}, nil
	case string:
		return Value{Type: TypeString, String: &x}, nil
	case bool:
		return Value{Type: TypeBool, Bool: &x}, nil
	case float64, int64, int, json.Number:
		s := fmt.Sprint(x)
		return Value{Type: TypeNumber, Number: &s}, nil
	case map[string]any:
		o := make(map[string]Value, len(x))
		for k, e := range x {
			ev, err := NewValue(e)
			if err != nil {
				return Value{}, err
			}
			o[k] = ev
		}
		return Value{Type: TypeObject, Object: o}, nil
	case []any:
		a := make([]Value, len(x))
		for i, e := range x {
			ev, err := NewValue(e)
			if err != nil {
				return Value{}, err
			}
			a[i] = ev
		}
		return Value{Type: TypeArray, Array: a}, nil
	}
	return Value{}, fmt.Errorf("value of type %T is not JSON", v)
}

// JSON decodes the value back into what encoding/json would decode.
func (v Value) JSON() (any, error) {
	switch v.Type {
	case TypeNull:
		return nil, nil
	case TypeString:
		if v.String == nil {
			return "", nil
		}
		return *v.String, nil
	case TypeBool:
		return v.Bool != nil && *v.Bool, nil
	case TypeNumber:
		if v.Number == nil {
			return json.Number("0"), nil
		}
		return json.Number(*v.Number), nil
	case TypeObject:
		o := make(map[string]any, len(v.Object))
		for k, e := range v.Object {
			x, err := e.JSON()
			if err != nil {
				return nil, err
			}
			o[k] = x
		}
		return o, nil
	case TypeArray:
		a := make([]any, len(v.Array))
		for i, e := range v.Array {
			x, err := e.JSON()
			if err != nil {
				return nil, err
			}
			a[i] = x
		}
		return a, nil
	}
	return nil, fmt.Errorf("value type %q unknown", v.Type)
}

// toUnstructured encodes v (a struct with JSON tags) as an unstructured map.
func toUnstructured(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// fromUnstructured decodes an unstructured object into v.
func fromUnstructured(u *unstructured.Unstructured, v any) error {
	b, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// newObject returns an empty unstructured object of kind gvk.
func newObject(gvk schema.GroupVersionKind) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u
}

// newList returns an empty unstructured list of kind gvk.
func newList(gvk schema.GroupVersionKind) *unstructured.UnstructuredList {
	l := &unstructured.UnstructuredList{}
	l.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	return l
}
