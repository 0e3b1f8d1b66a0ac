package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Kinds of the agent protocol documents.
const (
	KindAgentReport     = "AgentReport"
	KindJoinRequest     = "JoinRequest"
	KindJoinResponse    = "JoinResponse"
	KindJoinToken       = "JoinToken"
	KindJoinTokenCreate = "JoinTokenRequest"
	KindJoinTokenList   = "JoinTokenList"
)

// AgentReport is what an agent sends the hub about its cluster: its
// capacity, link estimate and cache, the desired-state revision it applied,
// and a row per model it was asked to serve. The hub folds it into the
// Cluster's status and each ModelDeployment's status.clusters.
//
// +kubebuilder:object:generate=false
type AgentReport struct {
	// APIVersion is ml.outpost.dev/v1alpha1.
	APIVersion string `json:"apiVersion"`
	// Kind is AgentReport.
	Kind string `json:"kind"`
	// Cluster is the reporting cluster's name.
	Cluster string `json:"cluster"`
	// AppliedRevision is the highest desired-state revision the agent applied.
	AppliedRevision int64 `json:"appliedRevision"`
	// RejectedStale counts desired states the agent refused because they were
	// older than one it had applied (from the network or from a bundle).
	RejectedStale int64 `json:"rejectedStale,omitempty"`
	// Status is the cluster's status as the agent sees it; the hub sets
	// link.lastSeen and link.state itself.
	Status ClusterStatus `json:"status"`
	// Models has one row per model in the applied desired state.
	Models []ModelReport `json:"models,omitempty"`
	// ReportedAt is the agent's clock when it wrote the report.
	ReportedAt metav1.Time `json:"reportedAt"`
}

// ModelReport is one model's state on one cluster.
//
// +kubebuilder:object:generate=false
type ModelReport struct {
	// Deployment is the ModelDeployment name.
	Deployment string `json:"deployment"`
	// Model is the model name.
	Model string `json:"model"`
	// DesiredVersion is the version the applied desired state asks for.
	DesiredVersion string `json:"desiredVersion,omitempty"`
	// ActiveVersion is the version the cluster serves now.
	ActiveVersion string `json:"activeVersion,omitempty"`
	// ActiveVariant is the variant of ActiveVersion the cluster serves (int8,
	// fp16, ...); empty for the full model.
	ActiveVariant string `json:"activeVariant,omitempty"`
	// Phase is Pending, Fetching, Active or Failed.
	Phase ClusterPhase `json:"phase"`
	// BytesFetched is how many bytes of DesiredVersion crossed the link so far.
	BytesFetched int64 `json:"bytesFetched,omitempty"`
	// BytesTotal is how many bytes DesiredVersion lacked when fetching began
	// (what must cross the link, not the model's size).
	BytesTotal int64 `json:"bytesTotal,omitempty"`
	// Error says why the desired version is not active, if it is not.
	Error string `json:"error,omitempty"`
	// Runtime is the inference runtime serving the active version: go or onnxruntime.
	Runtime string `json:"runtime,omitempty"`
	// Health counts the requests the active version served, when the cluster serves it.
	Health *ServingHealth `json:"health,omitempty"`
}

// JoinTokenRequest asks the hub for a bootstrap token that lets one agent join.
//
// +kubebuilder:object:generate=false
type JoinTokenRequest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// TTLSeconds is how long the token stays valid; the hub caps it.
	TTLSeconds int64 `json:"ttlSeconds"`
	// Description says what the token is for.
	Description string `json:"description,omitempty"`
}

// JoinToken is a bootstrap token issued by the hub. The secret appears only
// in the answer to its creation.
//
// +kubebuilder:object:generate=false
type JoinToken struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// ID identifies the token without revealing it.
	ID string `json:"id"`
	// Token is the secret, set only when the token is created.
	Token string `json:"token,omitempty"`
	// Expires is when the token stops being accepted.
	Expires metav1.Time `json:"expires"`
	// Description says what the token is for.
	Description string `json:"description,omitempty"`
}

// JoinRequest is an agent's request to join the hub as cluster Cluster.
//
// +kubebuilder:object:generate=false
type JoinRequest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Token is the bootstrap token.
	Token string `json:"token"`
	// Cluster is the name the cluster joins as.
	Cluster string `json:"cluster"`
	// Labels are set on the Cluster resource (merged over existing labels).
	Labels map[string]string `json:"labels,omitempty"`
	// BundleKey is the cluster's ed25519 public key, which signs its status
	// bundles; the hub records it at join.
	BundleKey []byte `json:"bundleKey,omitempty"`
}

// JoinResponse carries the cluster's own credential, which the agent keeps.
//
// +kubebuilder:object:generate=false
type JoinResponse struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Cluster is the joined cluster's name.
	Cluster string `json:"cluster"`
	// Credential is the cluster's bearer token: it may read its own desired
	// state and the registry, and report its own status, nothing else.
	Credential string `json:"credential"`
	// BundleKey is the hub's ed25519 public key, which signs its outbound
	// bundles; the agent pins it. Empty when the hub signs none.
	BundleKey []byte `json:"bundleKey,omitempty"`
}

// JoinTokenList is the answer to GET jointokens: every join token, without its secret.
//
// +kubebuilder:object:generate=false
type JoinTokenList struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Items are the tokens, oldest first.
	Items []JoinToken `json:"items"`
}

// ReportResponse is the answer to POST clusters/{name}/report.
//
// +kubebuilder:object:generate=false
type ReportResponse struct {
	// Revision is the hub's global revision after the report was stored.
	Revision int64 `json:"revision"`
	// DesiredStateRevision is the revision of the cluster's current desired state; an agent
	// that applied less has a newer desired state to fetch.
	DesiredStateRevision int64 `json:"desiredStateRevision"`
}
