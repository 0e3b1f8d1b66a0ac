package v1alpha1

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// KindWatchEventList is the kind of a long-poll watch response.
const KindWatchEventList = "WatchEventList"

// WatchEvent is one change to a resource, as returned by a long-poll watch.
//
// +kubebuilder:object:generate=false
type WatchEvent struct {
	// Type is ADDED, MODIFIED or DELETED.
	Type string `json:"type"`
	// Object is the resource after the change; for DELETED, its last state.
	Object json.RawMessage `json:"object"`
}

// WatchEventList is the response of a long-poll watch: the changes after the requested
// resourceVersion, oldest first. Its metadata.resourceVersion is where the next watch continues.
//
// +kubebuilder:object:generate=false
type WatchEventList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the events, oldest first; empty when the watch timed out.
	Items []WatchEvent `json:"items"`
}
