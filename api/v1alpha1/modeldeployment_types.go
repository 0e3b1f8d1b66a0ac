package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ModelRef names a model in the registry and the versions a deployment accepts.
type ModelRef struct {
	// Name is the model name; versions live in the registry as models/<name>:<version>.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`
	// +kubebuilder:validation:XValidation:rule="!self.startsWith('edge/')",message="a model produced at the edge is deployed once promoted: outpost model promote"
	Name string `json:"name"`
	// Version is an exact semantic version ("1.2.3") or a range (">=1.2 <2", "^1.2", "~1.2.3", "1.x").
	// A range resolves to the highest matching version; prereleases match only when the range names one.
	// The CRD carries the syntax as versions.ConstraintPattern (hack/crdkinds writes it).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Version string `json:"version"`
}

// VariantPolicy chooses which variant of a model version (the original, or an int8, fp16,
// pruned, distilled ... variant pushed with it) each cluster receives: of the allowed ones
// that fit the cluster's memory and link, the most accurate (or the smallest); when none fits,
// the smallest, saying why in the cluster's status. A limit is not applied to a cluster that
// does not report the fact it needs (its memory, its link rate). A cluster never goes to a
// lower version to get a smaller variant.
type VariantPolicy struct {
	// Allowed names the variants a cluster may receive, "original" being the full model;
	// empty allows all.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`
	Allowed []string `json:"allowed,omitempty"`
	// MaxMemoryPercent is the largest share of a cluster's memory, in percent, that a variant
	// may need at its peak (its size where its peak is not measured); 0 sets no limit.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	MaxMemoryPercent int32 `json:"maxMemoryPercent,omitempty"`
	// MaxFetchTime is the longest a variant may take to cross a cluster's link at its
	// estimated bandwidth, such as "10m"; absent or 0 sets no limit.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="must not be negative"
	MaxFetchTime *metav1.Duration `json:"maxFetchTime,omitempty"`
	// Prefer orders the variants that fit: Accurate (default) takes the most accurate,
	// Smallest the smallest.
	// +optional
	// +kubebuilder:validation:Enum=Accurate;Smallest
	Prefer VariantPreference `json:"prefer,omitempty"`
}

// VariantPreference orders the variants that fit a cluster.
type VariantPreference string

// Variant preferences.
const (
	PreferAccurate VariantPreference = "Accurate"
	PreferSmallest VariantPreference = "Smallest"
)

// VariantOriginal is the name a VariantPolicy gives the full model.
const VariantOriginal = "original"

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
	// MaxUnavailable is how many clusters may be switching versions at the same time: the size
	// of each wave of a Canary rollout (default 1).
	// +optional
	// +kubebuilder:validation:Minimum=0
	MaxUnavailable *int32 `json:"maxUnavailable,omitempty"`
	// MaxUnavailablePercent bounds each wave to this percentage of the selected clusters (at
	// least one cluster); with MaxUnavailable too, the smaller wave wins.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MaxUnavailablePercent *int32 `json:"maxUnavailablePercent,omitempty"`
	// Canary chooses the first wave of a Canary rollout; absent, it is the first cluster in
	// wave order.
	// +optional
	Canary *Canary `json:"canary,omitempty"`
	// WaveOrder is a cluster label key, such as "region": waves after the canaries go label
	// value by value, in the values' sorted order, never mixing two values in one wave.
	// Clusters without the label go last. Empty orders clusters by name.
	// +optional
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:XValidation:rule="!format.qualifiedName().validate(self).hasValue()",message="must be a label key, such as region or example.com/zone"
	WaveOrder string `json:"waveOrder,omitempty"`
	// BakeTime is how long every cluster of a wave serves the new version, healthy, before
	// the next wave starts (default 1m).
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="must not be negative"
	BakeTime *metav1.Duration `json:"bakeTime,omitempty"`
	// SilentAfter is how long a cluster of a wave may stay silent before it is skipped and
	// counted, so that a disconnected cluster never holds a rollout (default 10m).
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="must not be negative"
	SilentAfter *metav1.Duration `json:"silentAfter,omitempty"`
	// ProgressDeadline is how long a cluster in contact may take to serve the new version
	// before its wave's gate fails (default 30m).
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="must not be negative"
	ProgressDeadline *metav1.Duration `json:"progressDeadline,omitempty"`
	// Gates are the health gates between waves.
	// +optional
	Gates *RolloutGates `json:"gates,omitempty"`
	// Paused stops a Canary rollout from starting its next wave; gates still apply to the
	// clusters already switched.
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// Canary chooses the first wave of a Canary rollout: the clusters Selector matches, or the
// first Count clusters in wave order; at most a wave's size of them.
type Canary struct {
	// Selector selects the canary clusters by label.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// Count is how many clusters the canary wave takes (default 1).
	// +optional
	// +kubebuilder:validation:Minimum=0
	Count int32 `json:"count,omitempty"`
}

// RolloutGates are the health checks a wave must pass before the next one starts. Each
// compares what a cluster reports of the new version with what the same cluster reported of
// the version it replaced. A cluster that reports the new version active but not serving,
// or fails to serve it within the progress deadline, fails the gate too.
type RolloutGates struct {
	// MaxErrorRateIncrease is how much the share of failed requests may grow over the
	// previous version's, a decimal (default "0.05"; "1" turns the check off).
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]*\.?[0-9]+$`
	MaxErrorRateIncrease string `json:"maxErrorRateIncrease,omitempty"`
	// MaxLatencyRatio is how many times the previous version's p99 latency the new version's
	// may reach, a decimal (default "1.5"; "0" turns the check off).
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]*\.?[0-9]+$`
	MaxLatencyRatio string `json:"maxLatencyRatio,omitempty"`
	// MinRequests is how many requests of the new version a cluster must serve before its
	// error rate and latency are compared (default 20).
	// +optional
	// +kubebuilder:validation:Minimum=0
	MinRequests int32 `json:"minRequests,omitempty"`
	// Drift fails a wave's cluster whose drift alarm (spec.monitoring) is raised for the new
	// version: its inputs do not look like the data that version was made for.
	// +optional
	Drift bool `json:"drift,omitempty"`
}

// Annotations that command a rollout; each names the version it commands, so that a command
// never carries over to the next version.
const (
	// AnnotationRolloutAbort stops the rollout of the version it names and rolls its clusters
	// back, as a failed gate does.
	AnnotationRolloutAbort = "rollout.ml.outpost.dev/abort"
	// AnnotationRolloutPromote sends the version it names to every remaining cluster at once,
	// skipping the remaining waves and gates.
	AnnotationRolloutPromote = "rollout.ml.outpost.dev/promote"
)

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
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	// +kubebuilder:validation:XValidation:rule="self == 0 || self >= 10",message="must be between 10 and 1000000"
	WindowSamples int32 `json:"windowSamples,omitempty"`
	// WindowDuration closes a window this long after it opened, if it is not full before
	// (default 10m).
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1s')",message="must be at least 1s"
	WindowDuration *metav1.Duration `json:"windowDuration,omitempty"`
	// Alpha is the significance level of the p-value tests after the correction, a decimal
	// between 0 and 1 exclusive (default "0.01").
	// +optional
	// +kubebuilder:validation:Pattern=`^0?\.[0-9]+$`
	// +kubebuilder:validation:XValidation:rule="double(self) > 0.0",message="must be a decimal between 0 and 1, such as 0.01"
	Alpha string `json:"alpha,omitempty"`
	// Correction corrects the p-values of all features together: Bonferroni (default) or
	// BenjaminiHochberg.
	// +optional
	// +kubebuilder:validation:Enum=Bonferroni;BenjaminiHochberg
	Correction string `json:"correction,omitempty"`
	// MinSamples is the fewest values a feature needs in a window to be tested (default 100).
	// +optional
	// +kubebuilder:validation:Minimum=0
	MinSamples int32 `json:"minSamples,omitempty"`
	// PSIThreshold is the population stability index above which a feature drifted, a decimal
	// (default "0.25"; "0" turns it off).
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]*\.?[0-9]+$`
	// +kubebuilder:validation:XValidation:rule="double(self) <= 1000000.0",message="must be a non-negative decimal, such as 0.25"
	PSIThreshold string `json:"psiThreshold,omitempty"`
	// RaiseAfter is how many drifted windows in a row raise the drift alarm (default 1);
	// ClearAfter how many clean ones clear it (default 3).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	RaiseAfter int32 `json:"raiseAfter,omitempty"`
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	ClearAfter int32 `json:"clearAfter,omitempty"`
	// Cooldown is the least time between two changes of the alarm (default 0).
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('0s')",message="must not be negative"
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
	// matches it (the selectors are ORed, as in a KubeStellar BindingPolicy). At least one is
	// required: an empty selector ([{}]) selects every cluster.
	// +kubebuilder:validation:Required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
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
	// Urgent moves the deployment's model bytes at once, ignoring the clusters' transfer
	// windows (a security fix).
	// +optional
	Urgent bool `json:"urgent,omitempty"`
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
	// Variant is the variant of DesiredVersion the hub sends the cluster ("original": the full
	// model); absent when the version has no variants and the deployment no variant policy.
	// +optional
	Variant string `json:"variant,omitempty"`
	// VariantReason says why spec.variantPolicy chose Variant for the cluster.
	// +optional
	VariantReason string `json:"variantReason,omitempty"`
	// ActiveVersion is the version the cluster serves now.
	// +optional
	ActiveVersion string `json:"activeVersion,omitempty"`
	// ActiveVariant is the variant of ActiveVersion the cluster's agent reports it serves;
	// empty for the full model.
	// +optional
	ActiveVariant string `json:"activeVariant,omitempty"`
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
	// Health is what the cluster last reported of the requests its active version served.
	// +optional
	Health *ServingHealth `json:"health,omitempty"`
}

// ServingHealth counts the requests one version served on one cluster since it became active.
type ServingHealth struct {
	// Version is the version that served them.
	Version string `json:"version"`
	// Requests counts the inference requests.
	Requests int64 `json:"requests"`
	// Errors counts the requests that failed.
	// +optional
	Errors int64 `json:"errors,omitempty"`
	// P99Micros is the 99th percentile of the requests' latency, in microseconds.
	// +optional
	P99Micros int64 `json:"p99Micros,omitempty"`
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
	// ConditionRolloutFailed is True when a Canary rollout stopped at a failed gate (or was
	// aborted) and rolled its clusters back; its message gives the reason.
	ConditionRolloutFailed = "RolloutFailed"
)

// RolloutPhase is where a rollout stands.
// +kubebuilder:validation:Enum=Progressing;Paused;Succeeded;Failed
type RolloutPhase string

// Rollout phases.
const (
	RolloutProgressing RolloutPhase = "Progressing"
	RolloutPaused      RolloutPhase = "Paused"
	RolloutSucceeded   RolloutPhase = "Succeeded"
	RolloutFailed      RolloutPhase = "Failed"
)

// RolloutClusterState is where one cluster stands in a rollout.
// +kubebuilder:validation:Enum=Pending;Updating;Done;Skipped;RolledBack
type RolloutClusterState string

// Rollout cluster states.
const (
	// RolloutClusterPending: not yet in a wave; keeps the version it had.
	RolloutClusterPending RolloutClusterState = "Pending"
	// RolloutClusterUpdating: in the current wave, switching to the new version.
	RolloutClusterUpdating RolloutClusterState = "Updating"
	// RolloutClusterDone: serves the new version, healthy.
	RolloutClusterDone RolloutClusterState = "Done"
	// RolloutClusterSkipped: stayed silent past silentAfter; counted, and given the new
	// version once the rollout promotes it.
	RolloutClusterSkipped RolloutClusterState = "Skipped"
	// RolloutClusterRolledBack: sent back to the stable version after a failed gate.
	RolloutClusterRolledBack RolloutClusterState = "RolledBack"
)

// RolloutVersion is a version with its digest and size.
type RolloutVersion struct {
	// Version is the semantic version.
	Version string `json:"version"`
	// Digest is its manifest digest.
	Digest string `json:"digest"`
	// SizeBytes is the total size of its files.
	// +optional
	SizeBytes int64 `json:"sizeBytes,omitempty"`
	// Variants are the version's variants that clusters may be given instead of it.
	// +optional
	// +listType=map
	// +listMapKey=name
	Variants []ModelVariant `json:"variants,omitempty"`
}

// ModelVariant is a variant of a model version (int8, fp16, pruned ...): its own artifact,
// attached to the version in the registry, and what it costs.
type ModelVariant struct {
	// Name is the variant's name.
	Name string `json:"name"`
	// Digest is its manifest digest.
	Digest string `json:"digest"`
	// SizeBytes is the total size of its artifact.
	// +optional
	SizeBytes int64 `json:"sizeBytes,omitempty"`
	// PeakMemoryBytes is its measured peak memory while serving; absent is not measured.
	// +optional
	PeakMemoryBytes int64 `json:"peakMemoryBytes,omitempty"`
	// Accuracy is its accuracy on the evaluation set, a decimal; absent is not measured.
	// +optional
	Accuracy string `json:"accuracy,omitempty"`
}

// RolloutCluster is one cluster of a rollout in progress, or rolled back.
type RolloutCluster struct {
	// Cluster is the Cluster name.
	Cluster string `json:"cluster"`
	// Version is the version the cluster is given now.
	Version RolloutVersion `json:"version"`
	// State is where the cluster stands.
	State RolloutClusterState `json:"state"`
	// Wave is the wave the cluster belongs to, from 1 (the canaries); 0 while pending.
	// +optional
	Wave int32 `json:"wave,omitempty"`
	// Since is when the cluster entered State.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
	// Previous is the version the cluster was given before its wave: a rollback returns it.
	// +optional
	Previous *RolloutVersion `json:"previous,omitempty"`
	// Baseline is what the cluster reported of the version it served before its wave.
	// +optional
	Baseline *ServingHealth `json:"baseline,omitempty"`
	// RolledBackFrom is the failed version the cluster was last rolled back from: while it is
	// set the cluster's desired state carries the rollback mark (every failed version, and
	// RollbackReason), since the cluster may still serve one of them.
	// +optional
	RolledBackFrom string `json:"rolledBackFrom,omitempty"`
	// RollbackReason is why the cluster was rolled back.
	// +optional
	RollbackReason string `json:"rollbackReason,omitempty"`
	// Reason explains Skipped and RolledBack.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// RolloutStatus is the state of a deployment's rollout, kept by the hub's rollout controller.
type RolloutStatus struct {
	// Phase is Progressing, Paused, Succeeded or Failed.
	Phase RolloutPhase `json:"phase"`
	// Target is the version being rolled out (or rolled out, or that failed).
	Target RolloutVersion `json:"target"`
	// Stable is the version clusters keep until their wave, and return to on a rollback.
	Stable RolloutVersion `json:"stable"`
	// Started is when the rollout of Target started: a cluster not heard from since gets
	// silentAfter from then before it counts as silent.
	// +optional
	Started *metav1.Time `json:"started,omitempty"`
	// Wave is the current wave, from 1 (the canaries); 0 before the first.
	// +optional
	Wave int32 `json:"wave,omitempty"`
	// WaveStarted is when the current wave started.
	// +optional
	WaveStarted *metav1.Time `json:"waveStarted,omitempty"`
	// WaveSettled is when every cluster of the current wave was done or skipped: its bake
	// time counts from then.
	// +optional
	WaveSettled *metav1.Time `json:"waveSettled,omitempty"`
	// Verified is set once a cluster served Target healthy through a gate.
	// +optional
	Verified bool `json:"verified,omitempty"`
	// Updated, Pending, Skipped and RolledBack count the clusters in each state.
	// +optional
	Updated int32 `json:"updated,omitempty"`
	// +optional
	Pending int32 `json:"pending,omitempty"`
	// +optional
	Skipped int32 `json:"skipped,omitempty"`
	// +optional
	RolledBack int32 `json:"rolledBack,omitempty"`
	// FailedVersions are the versions whose gate failed: no cluster is given them again.
	// +optional
	FailedVersions []string `json:"failedVersions,omitempty"`
	// Message says why the rollout stands where it does; for Failed, the gate that failed.
	// +optional
	Message string `json:"message,omitempty"`
	// Clusters has a row per cluster while the rollout progresses, and per rolled-back
	// cluster once it failed, sorted by name.
	// +optional
	// +listType=map
	// +listMapKey=cluster
	Clusters []RolloutCluster `json:"clusters,omitempty"`
}

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
	// ResolvedVariants are ResolvedVersion's variants (with a valid signature, where the
	// deployment requires one): what spec.variantPolicy chooses from, beside the original.
	// +optional
	// +listType=map
	// +listMapKey=name
	ResolvedVariants []ModelVariant `json:"resolvedVariants,omitempty"`
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
	// Rollout is the state of the rollout of ResolvedVersion; absent until the first version
	// resolves.
	// +optional
	Rollout *RolloutStatus `json:"rollout,omitempty"`
	// ClusterCount counts the rows of Clusters: the selected clusters. Count sets it.
	// +optional
	ClusterCount int32 `json:"clusterCount,omitempty"`
	// ReadyClusters counts the selected clusters that serve a version (phase Active). Count
	// sets it.
	// +optional
	ReadyClusters int32 `json:"readyClusters,omitempty"`
}

// Count sets ClusterCount and ReadyClusters from Clusters. Whoever writes the
// rows calls it (the hub's store on every status write, through
// KindInfo.CopyStatus; the Kubernetes controller before its status update),
// so that kubectl's columns, which read only fields, show them.
func (s *ModelDeploymentStatus) Count() {
	s.ClusterCount, s.ReadyClusters = int32(len(s.Clusters)), 0
	for _, c := range s.Clusters {
		if c.Phase == PhaseActive {
			s.ReadyClusters++
		}
	}
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
