package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ModelRef names a model in the registry and the versions a deployment accepts.
type ModelRef struct {
	// Name is the model name; versions live in the registry as models/<name>:<version>.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$`
	Name string `json:"name"`
	// Version is an exact semantic version ("1.2.3") or a range (">=1.2 <2", "^1.2", "~1.2.3", "1.x").
	// A range resolves to the highest matching version; prereleases match only when the range names one.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Version string `json:"version"`
}

// VariantPolicy chooses which variant of a model (quantized, float16, pruned, distilled) each
// cluster receives. It is refined by the compression work; today only a preference is recorded.
type VariantPolicy struct {
	// Preferred names the preferred variant, for example "int8" or "fp16"; empty means the original.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Preferred string `json:"preferred,omitempty"`
}

// RolloutStrategy says how a new version reaches the selected clusters.
// +kubebuilder:validation:Enum=All;Canary
type RolloutStrategy string

// Rollout strategies.
const (
	// RolloutAll sends the new version to every selected cluster at once.
	RolloutAll RolloutStrategy = "All"
	// RolloutCanary sends the new version to a few clusters first.
	RolloutCanary RolloutStrategy = "Canary"
)

// Rollout controls how a new version is rolled out.
type Rollout struct {
	// Strategy is All (default) or Canary.
	// +optional
	// +kubebuilder:default=All
	Strategy RolloutStrategy `json:"strategy,omitempty"`
	// MaxUnavailable is how many clusters may be switching versions at the same time.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxUnavailable *int32 `json:"maxUnavailable,omitempty"`
}

// ServingRuntime selects the inference runtime used to serve a model.
// +kubebuilder:validation:Enum=auto;go;onnxruntime
type ServingRuntime string

// Serving runtimes.
const (
	RuntimeAuto        ServingRuntime = "auto"
	RuntimeGo          ServingRuntime = "go"
	RuntimeONNXRuntime ServingRuntime = "onnxruntime"
)

// Serving configures how the agent serves the model.
type Serving struct {
	// Runtime is auto (default), go or onnxruntime.
	// +optional
	// +kubebuilder:default=auto
	Runtime ServingRuntime `json:"runtime,omitempty"`
	// Port, if set, is a TCP port on which the agent also serves this deployment alone,
	// beside its main inference endpoint; unset, the main endpoint serves it.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port *int32 `json:"port,omitempty"`
}

// Monitoring configures drift monitoring of a deployment at the edge: the serving agent keeps
// summaries of what the model receives and answers in tumbling windows, compares each closed
// window with the version's reference profile, and reports the outcome to the hub.
type Monitoring struct {
	// WindowSamples closes a window after this many samples (default 1000).
	// +optional
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=1000000
	WindowSamples int32 `json:"windowSamples,omitempty"`
	// WindowDuration closes a window this long after it opened, if it is not full before
	// (default 10m).
	// +optional
	WindowDuration *metav1.Duration `json:"windowDuration,omitempty"`
	// Alpha is the significance level of the p-value tests after the correction, a decimal
	// between 0 and 1 exclusive (default "0.01").
	// +optional
	// +kubebuilder:validation:Pattern=`^0?\.[0-9]+$`
	Alpha string `json:"alpha,omitempty"`
	// Correction corrects the p-values of all features together: Bonferroni (default) or
	// BenjaminiHochberg.
	// +optional
	// +kubebuilder:validation:Enum=Bonferroni;BenjaminiHochberg
	Correction string `json:"correction,omitempty"`
	// MinSamples is the fewest values a feature needs in a window to be tested (default 100).
	// +optional
	// +kubebuilder:validation:Minimum=1
	MinSamples int32 `json:"minSamples,omitempty"`
	// PSIThreshold is the population stability index above which a feature drifted, a decimal
	// (default "0.25"; "0" turns it off).
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]*\.?[0-9]+$`
	PSIThreshold string `json:"psiThreshold,omitempty"`
	// RaiseAfter is how many drifted windows in a row raise the drift alarm (default 1);
	// ClearAfter how many clean ones clear it (default 3).
	// +optional
	// +kubebuilder:validation:Minimum=1
	RaiseAfter int32 `json:"raiseAfter,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=1
	ClearAfter int32 `json:"clearAfter,omitempty"`
	// Cooldown is the least time between two changes of the alarm (default 0).
	// +optional
	Cooldown *metav1.Duration `json:"cooldown,omitempty"`
	// Alert sends the hub's alert webhooks when the alarm is raised or cleared.
	// +optional
	Alert bool `json:"alert,omitempty"`
	// FeedbackSamples keeps, at the edge, the inputs of the latest requests that carry an
	// id, about this many samples in all, so that true labels sent later for those ids
	// (POST /v2/models/NAME/feedback) measure the serving version's accuracy and can be read
	// by a pipeline's dataset step (path feedback:NAME). Default 0: none kept. The samples
	// never leave the cluster.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	FeedbackSamples int32 `json:"feedbackSamples,omitempty"`
}

// ModelDeploymentSpec is the desired deployment of a model to a set of clusters.
type ModelDeploymentSpec struct {
	// Model is the model and the accepted versions.
	Model ModelRef `json:"model"`
	// ClusterSelectors select the target clusters by label. A cluster is selected when any selector
	// matches it (the selectors are ORed, as in a KubeStellar BindingPolicy). An empty list selects
	// no cluster; an empty selector ({}) selects every cluster.
	// +optional
	ClusterSelectors []metav1.LabelSelector `json:"clusterSelectors,omitempty"`
	// VariantPolicy chooses the model variant per cluster.
	// +optional
	VariantPolicy *VariantPolicy `json:"variantPolicy,omitempty"`
	// Rollout controls how new versions reach the clusters.
	// +optional
	Rollout Rollout `json:"rollout,omitempty"`
	// Serving configures the inference endpoint.
	// +optional
	Serving Serving `json:"serving,omitempty"`
	// Monitoring, if set, monitors the deployment for drift at the edge.
	// +optional
	Monitoring *Monitoring `json:"monitoring,omitempty"`
	// AllowDowngrade lets a cluster replace its active version with a lower one. Without it a
	// cluster keeps a higher active version and reports the refusal.
	// +optional
	AllowDowngrade bool `json:"allowDowngrade,omitempty"`
	// RequireSignature accepts only versions with a valid signature from a trusted key.
	// +optional
	RequireSignature bool `json:"requireSignature,omitempty"`
}

// ClusterPhase is the progress of a deployment in one cluster.
// +kubebuilder:validation:Enum=Pending;Fetching;Active;Failed;Unreachable
type ClusterPhase string

// Cluster phases reported in ModelDeploymentStatus.Clusters.
const (
	PhasePending     ClusterPhase = "Pending"
	PhaseFetching    ClusterPhase = "Fetching"
	PhaseActive      ClusterPhase = "Active"
	PhaseFailed      ClusterPhase = "Failed"
	PhaseUnreachable ClusterPhase = "Unreachable"
)

// ClusterDeploymentStatus is the state of a deployment in one selected cluster.
type ClusterDeploymentStatus struct {
	// Cluster is the Cluster name.
	Cluster string `json:"cluster"`
	// DesiredVersion is the version the hub wants the cluster to serve.
	// +optional
	DesiredVersion string `json:"desiredVersion,omitempty"`
	// ActiveVersion is the version the cluster serves now.
	// +optional
	ActiveVersion string `json:"activeVersion,omitempty"`
	// Phase is Pending until the cluster's agent reports.
	// +optional
	Phase ClusterPhase `json:"phase,omitempty"`
	// BytesFetched is how many bytes of the desired version the cluster holds.
	// +optional
	BytesFetched int64 `json:"bytesFetched,omitempty"`
	// BytesTotal is the size of the desired version.
	// +optional
	BytesTotal int64 `json:"bytesTotal,omitempty"`
	// LastContact is when the cluster's agent last reported on this deployment.
	// +optional
	LastContact *metav1.Time `json:"lastContact,omitempty"`
	// Error is the last error the agent reported, if any.
	// +optional
	Error string `json:"error,omitempty"`
	// Runtime is the inference runtime serving the active version: go or onnxruntime.
	// +optional
	Runtime string `json:"runtime,omitempty"`
	// Drift summarises drift monitoring in the cluster: the newest drift window the hub received
	// from the cluster's agent. Absent until the first one arrives.
	// +optional
	Drift *DriftStatus `json:"drift,omitempty"`
}

// DriftState is the verdict of a deployment's newest drift window in a cluster.
// +kubebuilder:validation:Enum=Drift;NoDrift;InsufficientData
type DriftState string

// Drift states of DriftStatus.
const (
	// DriftStateDrift: the window drifted from the version's reference.
	DriftStateDrift DriftState = "Drift"
	// DriftStateNoDrift: the window was tested and did not drift.
	DriftStateNoDrift DriftState = "NoDrift"
	// DriftStateInsufficientData: too few samples to test.
	DriftStateInsufficientData DriftState = "InsufficientData"
)

// MaxDriftedFeatureNames bounds DriftStatus.DriftedFeatures.
const MaxDriftedFeatureNames = 5

// DriftStatus is the drift of a deployment in one cluster, from the newest window the hub
// received: a window that ends before the one shown does not replace it.
type DriftStatus struct {
	// Version is the model version the window served.
	Version string `json:"version"`
	// State is the window's verdict.
	State DriftState `json:"state"`
	// Alarm is whether the agent's drift alarm was raised after the window.
	Alarm bool `json:"alarm"`
	// Since is when the alarm took its current value: when the agent changed it, or, if the
	// agent never did, the end of the first window the hub received with it.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// LastWindowEnd is when the window ended, by the agent's clock, to the microsecond: it
	// orders the windows.
	LastWindowEnd metav1.MicroTime `json:"lastWindowEnd"`
	// Windows counts the windows of Version the hub received from the cluster, merged ones
	// included.
	Windows int64 `json:"windows"`
	// DriftedFeatures names the first drifted features of the window, at most
	// MaxDriftedFeatureNames of them.
	// +optional
	DriftedFeatures []string `json:"driftedFeatures,omitempty"`
	// DriftedFeatureCount counts the drifted features of the window.
	// +optional
	DriftedFeatureCount int32 `json:"driftedFeatureCount,omitempty"`
}

// Condition types of a ModelDeployment.
const (
	// ConditionResolved is True when the version constraint resolved to a registry version.
	ConditionResolved = "Resolved"
	// ConditionPlaced is True when the deployment selects at least one cluster.
	ConditionPlaced = "Placed"
	// ConditionDriftDetected is True when the drift alarm is raised in any selected cluster;
	// its message names the clusters. It is set once any cluster reported a drift window.
	ConditionDriftDetected = "DriftDetected"
)

// ModelDeploymentStatus is the observed state of a deployment, written by the hub and agents.
type ModelDeploymentStatus struct {
	// ResolvedVersion is the registry version the constraint resolved to.
	// +optional
	ResolvedVersion string `json:"resolvedVersion,omitempty"`
	// ResolvedDigest is the manifest digest of ResolvedVersion.
	// +optional
	ResolvedDigest string `json:"resolvedDigest,omitempty"`
	// ResolvedSizeBytes is the total size of ResolvedVersion's files.
	// +optional
	ResolvedSizeBytes int64 `json:"resolvedSizeBytes,omitempty"`
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions are Resolved, Placed and DriftDetected.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Clusters has a row per selected cluster, sorted by cluster name.
	// +optional
	// +listType=map
	// +listMapKey=cluster
	Clusters []ClusterDeploymentStatus `json:"clusters,omitempty"`
}

// ModelDeployment deploys a model version, pinned or chosen by a semantic version range, to the
// clusters its selectors match.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster
type ModelDeployment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the desired deployment.
	Spec ModelDeploymentSpec `json:"spec"`
	// Status is the observed state.
	// +optional
	Status ModelDeploymentStatus `json:"status,omitempty"`
}

// ModelDeploymentList is a list of ModelDeployments.
//
// +kubebuilder:object:root=true
type ModelDeploymentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the ModelDeployments.
	Items []ModelDeployment `json:"items"`
}
