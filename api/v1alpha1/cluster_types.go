package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/internal/window"
)

// LinkState is the health of the network link between the hub and a cluster.
// +kubebuilder:validation:Enum=Connected;Degraded;Disconnected;Unknown
type LinkState string

// Link states reported in ClusterStatus.Link.State.
const (
	LinkConnected    LinkState = "Connected"
	LinkDegraded     LinkState = "Degraded"
	LinkDisconnected LinkState = "Disconnected"
	LinkUnknown      LinkState = "Unknown"
)

// Accelerator is a number of accelerator devices of one type.
type Accelerator struct {
	// Type names the device, for example "nvidia.com/gpu" or "google.com/tpu".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Type string `json:"type"`
	// Count is how many devices of Type the cluster has.
	// +kubebuilder:validation:Minimum=0
	Count int64 `json:"count"`
}

// Capacity is the compute and storage a cluster offers.
type Capacity struct {
	// CPU is the number of CPU cores, as a Kubernetes quantity ("4", "500m").
	// +optional
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity('0'))",message="must be non-negative"
	CPU *resource.Quantity `json:"cpu,omitempty"`
	// Memory is the amount of memory, as a Kubernetes quantity ("16Gi").
	// +optional
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity('0'))",message="must be non-negative"
	Memory *resource.Quantity `json:"memory,omitempty"`
	// Disk is the storage available for the model cache, as a Kubernetes quantity ("200Gi").
	// +optional
	// +kubebuilder:validation:XValidation:rule="!quantity(string(self)).isLessThan(quantity('0'))",message="must be non-negative"
	Disk *resource.Quantity `json:"disk,omitempty"`
	// Accelerators lists the accelerator devices by type.
	// +optional
	// +listType=map
	// +listMapKey=type
	Accelerators []Accelerator `json:"accelerators,omitempty"`
}

// ClusterSpec is what an operator declares about an edge cluster or device.
type ClusterSpec struct {
	// DisplayName is a human-friendly name shown by tools.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	DisplayName string `json:"displayName,omitempty"`
	// Capacity is the capacity the operator declares; the agent reports the measured capacity in status.
	// +optional
	Capacity *Capacity `json:"capacity,omitempty"`
	// Transfer says when bulk model transfers to the cluster may run and how fast; absent,
	// they run at any time. Desired state and status always flow.
	// +optional
	Transfer *TransferPolicy `json:"transfer,omitempty"`
}

// TransferPolicy is when and how fast a cluster's link carries bulk model transfers, as on a
// metered satellite link whose minutes are cheap at night. A deployment marked urgent ignores it.
type TransferPolicy struct {
	// TimeZone is the IANA time zone of the windows, such as "Europe/Oslo" (default UTC).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	TimeZone string `json:"timeZone,omitempty"`
	// Windows are the weekly windows when bulk transfers may run. Empty means always.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Windows []TransferWindow `json:"windows,omitempty"`
	// InsideBandwidth caps the bytes per second inside a window, such as "4MiB"; empty is no cap.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	InsideBandwidth string `json:"insideBandwidth,omitempty"`
	// OutsideBandwidth caps the bytes per second outside the windows; empty or "0" means no
	// bulk transfer outside them.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	OutsideBandwidth string `json:"outsideBandwidth,omitempty"`
}

// Schedule parses the policy into the schedule the agent follows.
func (p *TransferPolicy) Schedule() (window.Schedule, error) {
	specs := make([]window.Spec, len(p.Windows))
	for i, w := range p.Windows {
		specs[i] = window.Spec{Days: w.Days, Start: w.Start, End: w.End}
	}
	return window.Parse(p.TimeZone, specs, p.InsideBandwidth, p.OutsideBandwidth)
}

// TransferWindow is a weekly window: from Start to End on each of Days, in the policy's time
// zone. An End at or before Start runs past midnight into the next day.
type TransferWindow struct {
	// Days are the days the window opens: Mon, Tue, Wed, Thu, Fri, Sat, Sun; empty is every day.
	// +optional
	// +kubebuilder:validation:MaxItems=7
	// +kubebuilder:validation:items:Pattern=`^(?i)(mon|tue|wed|thu|fri|sat|sun)$`
	Days []string `json:"days,omitempty"`
	// Start is when the window opens, "HH:MM".
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]$`
	Start string `json:"start"`
	// End is when it closes, "HH:MM".
	// +kubebuilder:validation:Pattern=`^([01][0-9]|2[0-3]):[0-5][0-9]$`
	End string `json:"end"`
}

// TransferStatus is what waits for a cluster's transfer window, as its agent reports it.
type TransferStatus struct {
	// Open is whether bulk transfers may run now.
	Open bool `json:"open"`
	// NextChange is when the window next opens (or closes, while open).
	// +optional
	NextChange *metav1.Time `json:"nextChange,omitempty"`
	// BandwidthBps is the cap in force now; 0 is none (or, outside a window, no transfer).
	// +optional
	BandwidthBps int64 `json:"bandwidthBps,omitempty"`
	// Waiting names the deployments whose versions wait for the window.
	// +optional
	Waiting []string `json:"waiting,omitempty"`
	// WaitingBytes is how many bytes they lack, as far as the agent knows.
	// +optional
	WaitingBytes int64 `json:"waitingBytes,omitempty"`
}

// LinkStatus describes the network link between the hub and a cluster as last estimated.
type LinkStatus struct {
	// BandwidthBps is the estimated bandwidth in bytes per second.
	// +optional
	// +kubebuilder:validation:Minimum=0
	BandwidthBps int64 `json:"bandwidthBps,omitempty"`
	// RTTMillis is the estimated round-trip time in milliseconds.
	// +optional
	// +kubebuilder:validation:Minimum=0
	RTTMillis int64 `json:"rttMillis,omitempty"`
	// State is the link state.
	// +optional
	State LinkState `json:"state,omitempty"`
	// LastSeen is when the hub last heard from the cluster's agent.
	// +optional
	LastSeen *metav1.Time `json:"lastSeen,omitempty"`
}

// CachedArtifact is a model artifact held in a cluster's local cache.
type CachedArtifact struct {
	// Digest is the artifact's manifest digest ("sha256:...").
	Digest string `json:"digest"`
	// Model is the model name.
	// +optional
	Model string `json:"model,omitempty"`
	// Version is the model version.
	// +optional
	Version string `json:"version,omitempty"`
	// SizeBytes is the total size of the artifact's files.
	// +optional
	// +kubebuilder:validation:Minimum=0
	SizeBytes int64 `json:"sizeBytes,omitempty"`
}

// ServingEndpoints are where an agent answers inference requests over the
// Open Inference Protocol v2, as it reports them: the addresses it listens
// on, after any fallback to a free port, so that clients find it.
type ServingEndpoints struct {
	// REST is the base URL of the protocol's REST API, such as
	// http://10.0.0.7:8080 (requests go to REST + "/v2/models/M/infer"). An
	// agent listening on every address reports its host name.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	REST string `json:"rest,omitempty"`
	// GRPC is the address of the protocol's gRPC API
	// (inference.GRPCInferenceService) as gRPC clients dial it, host:port,
	// such as 10.0.0.7:8081.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	GRPC string `json:"grpc,omitempty"`
}

// ClusterStatus is what the cluster's agent reports.
type ClusterStatus struct {
	// Capacity is the capacity measured by the agent.
	// +optional
	Capacity Capacity `json:"capacity,omitempty"`
	// Link is the estimated state of the link to the hub.
	// +optional
	Link LinkStatus `json:"link,omitempty"`
	// CachedArtifacts lists the artifacts in the cluster's cache.
	// +optional
	CachedArtifacts []CachedArtifact `json:"cachedArtifacts,omitempty"`
	// AgentVersion is the version of the agent running in the cluster.
	// +optional
	AgentVersion string `json:"agentVersion,omitempty"`
	// Endpoints are where the agent answers inference requests; nil when
	// it serves none. 'outpost infer --cluster' sends its requests there.
	// +optional
	Endpoints *ServingEndpoints `json:"endpoints,omitempty"`
	// Outbox is what the agent's outbox holds for the hub and what it had to
	// merge or drop to stay within its byte budget.
	// +optional
	Outbox *OutboxStatus `json:"outbox,omitempty"`
	// Transfer is where the cluster's transfer windows stand, when it has any.
	// +optional
	Transfer *TransferStatus `json:"transfer,omitempty"`
	// Conditions are the latest observations of the cluster's state.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Cluster is an edge cluster or device served by the hub. ModelDeployments select clusters by
// the labels in metadata.labels.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster
type Cluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the declared state of the cluster.
	// +optional
	Spec ClusterSpec `json:"spec,omitempty"`
	// Status is the state the cluster's agent reports.
	// +optional
	Status ClusterStatus `json:"status,omitempty"`
}

// ClusterList is a list of Clusters.
//
// +kubebuilder:object:root=true
type ClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the Clusters.
	Items []Cluster `json:"items"`
}

// OutboxStatus is what an agent's outbox holds and what it gave up.
type OutboxStatus struct {
	// Records and Bytes are what waits to be sent.
	// +optional
	Records int64 `json:"records,omitempty"`
	// +optional
	Bytes int64 `json:"bytes,omitempty"`
	// Merged counts, by record kind, records merged into coarser ones to stay
	// within the budget.
	// +optional
	Merged map[string]int64 `json:"merged,omitempty"`
	// Dropped counts, by record kind, records dropped to stay within the budget.
	// +optional
	Dropped map[string]int64 `json:"dropped,omitempty"`
	// Refused counts, by record kind, records the hub refused for good.
	// +optional
	Refused map[string]int64 `json:"refused,omitempty"`
}
