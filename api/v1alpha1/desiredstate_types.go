package v1alpha1

// KindDesiredState is the kind of the per-cluster desired state document.
const KindDesiredState = "DesiredState"

// DesiredState is the document the hub serves to one cluster's agent: every model the cluster
// should hold and serve. It is stamped with the hub revision at which it last changed; agents
// apply it idempotently and never apply a revision lower than one they already applied.
//
// +kubebuilder:object:generate=false
type DesiredState struct {
	// APIVersion is ml.outpost.dev/v1alpha1.
	APIVersion string `json:"apiVersion"`
	// Kind is DesiredState.
	Kind string `json:"kind"`
	// Cluster is the Cluster name.
	Cluster string `json:"cluster"`
	// Revision is the hub revision at which the document last changed.
	Revision int64 `json:"revision"`
	// Models are the models the cluster should serve, sorted by deployment name.
	Models []DesiredModel `json:"models"`
	// Pipelines are the pipelines the cluster should run, sorted by name.
	Pipelines []DesiredPipeline `json:"pipelines,omitempty"`
	// Federated are the federated jobs the cluster takes part in, sorted by job name.
	Federated []DesiredFederated `json:"federated,omitempty"`
	// Transfer is the cluster's transfer policy (spec.transfer): when bulk model transfers
	// may run, and how fast.
	Transfer *TransferPolicy `json:"transfer,omitempty"`
}

// DesiredPipeline is one pipeline a cluster runs: its spec, and the runs requested at the hub
// that the cluster has not reported finished.
//
// +kubebuilder:object:generate=false
type DesiredPipeline struct {
	// Name is the Pipeline name.
	Name string `json:"name"`
	// Generation is the Pipeline's metadata.generation: runs record which one they ran.
	Generation int64 `json:"generation"`
	// Spec is the pipeline.
	Spec PipelineSpec `json:"spec"`
	// Runs name the PipelineRuns requested for this cluster, sorted.
	Runs []string `json:"runs,omitempty"`
}

// DesiredModel is one model a cluster should serve, on behalf of one ModelDeployment.
//
// +kubebuilder:object:generate=false
type DesiredModel struct {
	// Deployment is the ModelDeployment name.
	Deployment string `json:"deployment"`
	// Model is the model name (registry repository models/<model>).
	Model string `json:"model"`
	// Version is the resolved version (registry tag).
	Version string `json:"version"`
	// Digest is the manifest digest of Version, or of the variant of it the cluster gets.
	Digest string `json:"digest"`
	// Variant names the variant of Version that Digest is (int8, fp16, ...); empty or
	// "original" is the full model. Another variant of the same version is never a downgrade.
	Variant string `json:"variant,omitempty"`
	// SizeBytes is the total size of the model's files.
	SizeBytes int64 `json:"sizeBytes,omitempty"`
	// AllowDowngrade lets the agent replace a higher active version with this one.
	AllowDowngrade bool `json:"allowDowngrade,omitempty"`
	// Rollback, when set, is a downgrade the hub decided: the agent replaces an active
	// version Rollback.From names (and no other) with this one, and reports Rollback.Reason.
	Rollback *Rollback `json:"rollback,omitempty"`
	// Urgent moves the model's bytes at once, outside the cluster's transfer windows.
	Urgent bool `json:"urgent,omitempty"`
	// RequireSignature makes the agent verify a trusted signature before activating.
	RequireSignature bool `json:"requireSignature,omitempty"`
	// Serving configures the inference endpoint.
	Serving Serving `json:"serving,omitempty"`
	// Monitoring, if set, monitors the model for drift at the edge.
	Monitoring *Monitoring `json:"monitoring,omitempty"`
}

// Rollback is a downgrade decided by the hub's rollout controller: a version whose health
// gate failed is replaced by the version the cluster had.
//
// +kubebuilder:object:generate=false
type Rollback struct {
	// From are the versions being rolled back (whose gates failed): the only active versions
	// this one may replace.
	From []string `json:"from"`
	// Reason says why, for the agent's report and log.
	Reason string `json:"reason"`
}
