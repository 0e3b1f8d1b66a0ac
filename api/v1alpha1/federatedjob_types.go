package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Strategy is how the hub combines the clusters' updates into the next global model.
// +kubebuilder:validation:Enum=FedAvg;FedProx;FedBuff
type Strategy string

// Strategies.
const (
	// StrategyFedAvg averages the updates of a round, weighted by each cluster's examples.
	StrategyFedAvg Strategy = "FedAvg"
	// StrategyFedProx is FedAvg whose clients add a proximal term (mu/2)·|w − w_global|² to
	// their loss, which keeps clients with very different data near the global model.
	StrategyFedProx Strategy = "FedProx"
	// StrategyFedBuff aggregates asynchronously: the hub folds updates into a buffer as they
	// come and makes a new global model each time the buffer is full, weighting a late update
	// by its staleness (how many global models were made since the one it started from).
	StrategyFedBuff Strategy = "FedBuff"
)

// StalenessWeighting is how FedBuff weighs an update made from an older global model.
// +kubebuilder:validation:Enum=Constant;Polynomial;Hinge
type StalenessWeighting string

// Staleness weightings (Xie et al., "Asynchronous Federated Optimization").
const (
	// StalenessConstant weighs every update alike.
	StalenessConstant StalenessWeighting = "Constant"
	// StalenessPolynomial weighs an update of staleness s by (1+s)^-0.5.
	StalenessPolynomial StalenessWeighting = "Polynomial"
	// StalenessHinge weighs updates of staleness up to 4 fully and later ones by 1/(1+(s−4)).
	StalenessHinge StalenessWeighting = "Hinge"
)

// UpdateEncoding is how a cluster encodes its update for the link.
// +kubebuilder:validation:Enum=Float32;Quantized;Adaptive
type UpdateEncoding string

// Update encodings.
const (
	// EncodingFloat32 sends every weight difference as a float32.
	EncodingFloat32 UpdateEncoding = "Float32"
	// EncodingQuantized sends 8-bit quantized differences (a quarter of the bytes).
	EncodingQuantized UpdateEncoding = "Quantized"
	// EncodingAdaptive lets the hub choose, for each cluster and round, the encoding and the
	// number of local steps from the cluster's link and compute; the job's status says which
	// it chose and why.
	EncodingAdaptive UpdateEncoding = "Adaptive"
)

// FederatedJobPhase is the progress of a federated job.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed
type FederatedJobPhase string

// Federated job phases.
const (
	// FederatedPending: the job waits for its initial model or for enough clusters.
	FederatedPending FederatedJobPhase = "Pending"
	// FederatedRunning: rounds are under way.
	FederatedRunning FederatedJobPhase = "Running"
	// FederatedSucceeded: the job ran its rounds, reached its target accuracy, or stopped
	// before a round that would spend more than its privacy budget (the message says which).
	FederatedSucceeded FederatedJobPhase = "Succeeded"
	// FederatedFailed: the job stopped early (its initial model could not be read, or rounds
	// were abandoned too many times in a row); the message says why.
	FederatedFailed FederatedJobPhase = "Failed"
)

// Finished reports whether p is a final phase.
func (p FederatedJobPhase) Finished() bool {
	return p == FederatedSucceeded || p == FederatedFailed
}

// Architectures a federated job trains: those internal/train trains.
const (
	// ArchMLP is a multi-layer perceptron of dense layers.
	ArchMLP = "mlp"
	// ArchCNN is the small convolutional network for 28×28 images.
	ArchCNN = "cnn"
)

// FederatedModel is the job's initial global model and where its rounds' models go.
type FederatedModel struct {
	// Name is the initial model's name in the registry (repository models/<name>).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	Name string `json:"name"`
	// Version is the initial model's exact version.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	Version string `json:"version"`
	// Arch is the initial model's architecture: mlp (default) or cnn.
	// +optional
	// +kubebuilder:validation:Enum=mlp;cnn
	Arch string `json:"arch,omitempty"`
	// Output is the model the rounds' global models are pushed as, version 0.R.0 for round R
	// (default: the job's name). A deployment of it with version ">=0.1.0" follows the job.
	// +optional
	// +kubebuilder:validation:MaxLength=200
	Output string `json:"output,omitempty"`
}

// FederatedData is the data set each cluster trains on. It stays on the cluster.
type FederatedData struct {
	// Path is the data set's folder on each cluster (idx, npy or CSV files, as a pipeline's
	// dataset step reads), relative to the agent's data directory or absolute.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Path string `json:"path"`
	// Format is idx, npy or csv; empty guesses from the files.
	// +optional
	// +kubebuilder:validation:Enum=idx;npy;csv
	Format string `json:"format,omitempty"`
	// ValidationSplit is the fraction of each cluster's examples held out to measure the
	// global model, a decimal in (0, 0.5] (default "0.2"). Only accuracies and counts leave.
	// +optional
	// +kubebuilder:validation:Pattern=`^0?\.[0-9]+$`
	ValidationSplit string `json:"validationSplit,omitempty"`
}

// ClientSelection says how many clusters take part in a round.
type ClientSelection struct {
	// Min is the fewest updates that close a round (default 2); a round with fewer by its
	// timeout is abandoned and run again with other clusters.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	Min int32 `json:"min,omitempty"`
	// Fraction is the share of the selected clusters asked in each round, a decimal in
	// (0, 1] (default "1"); at least Min are asked.
	// +optional
	// +kubebuilder:validation:Pattern=`^(1(\.0*)?|0?\.[0-9]+)$`
	Fraction string `json:"fraction,omitempty"`
	// RoundTimeout is how long a round waits for updates before closing with those it has
	// (default 10m); clusters that did not answer count as dropouts.
	// +optional
	RoundTimeout *metav1.Duration `json:"roundTimeout,omitempty"`
}

// LocalTraining is what each cluster does in a round.
type LocalTraining struct {
	// Epochs are the passes over the local data in a round (default 1).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	Epochs int32 `json:"epochs,omitempty"`
	// BatchSize is the minibatch size (default 32).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=4096
	BatchSize int32 `json:"batchSize,omitempty"`
	// LearningRate is the local learning rate, a positive decimal (default "0.05").
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]*\.?[0-9]+$`
	LearningRate string `json:"learningRate,omitempty"`
}

// AsyncBuffer configures FedBuff.
type AsyncBuffer struct {
	// Size is how many updates make a new global model (default 2).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	Size int32 `json:"size,omitempty"`
	// MaxStaleness refuses an update made from a global model this many versions old or
	// older (default 5).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000
	MaxStaleness *int32 `json:"maxStaleness,omitempty"`
	// StalenessWeighting is Constant, Polynomial (default) or Hinge.
	// +optional
	StalenessWeighting StalenessWeighting `json:"stalenessWeighting,omitempty"`
}

// AggregationStrategy is how updates are combined.
//
// +kubebuilder:validation:XValidation:rule="!has(self.mu) || (has(self.type) && self.type == 'FedProx')",message="mu is FedProx's: set type FedProx or remove mu"
// +kubebuilder:validation:XValidation:rule="!has(self.buffer) || (has(self.type) && self.type == 'FedBuff')",message="buffer is FedBuff's: set type FedBuff or remove buffer"
type AggregationStrategy struct {
	// Type is FedAvg (default), FedProx or FedBuff.
	// +optional
	Type Strategy `json:"type,omitempty"`
	// Mu is FedProx's proximal weight, a positive decimal (default "0.01").
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]*\.?[0-9]+$`
	Mu string `json:"mu,omitempty"`
	// Buffer configures FedBuff.
	// +optional
	Buffer *AsyncBuffer `json:"buffer,omitempty"`
}

// DifferentialPrivacy adds calibrated noise to the aggregate so that no cluster's data can be
// told from the global models (user-level differential privacy, accounted with Rényi DP).
type DifferentialPrivacy struct {
	// ClipNorm bounds the L2 norm of each cluster's update, a positive decimal.
	// +kubebuilder:validation:Pattern=`^[0-9]*\.?[0-9]+$`
	ClipNorm string `json:"clipNorm"`
	// NoiseMultiplier is the Gaussian noise's standard deviation over ClipNorm, a positive
	// decimal.
	// +kubebuilder:validation:Pattern=`^[0-9]*\.?[0-9]+$`
	NoiseMultiplier string `json:"noiseMultiplier"`
	// Delta is the δ of (ε, δ)-DP, a decimal in (0, 1) such as "1e-5" (default "1e-5").
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]*\.?[0-9]+([eE]-?[0-9]+)?$`
	Delta string `json:"delta,omitempty"`
	// Epsilon is the ε budget: the job stops before a round that would spend more.
	// +kubebuilder:validation:Pattern=`^[0-9]*\.?[0-9]+$`
	Epsilon string `json:"epsilon"`
}

// FederatedJobSpec is a federated training job: clusters train a shared model on their own
// data and send only model updates, which the hub combines round after round.
//
// +kubebuilder:validation:XValidation:rule="has(self.rounds) || has(self.targetAccuracy)",message="set rounds, targetAccuracy or both"
type FederatedJobSpec struct {
	// Model is the initial global model and the model the rounds' results are pushed as.
	Model FederatedModel `json:"model"`
	// ClusterSelectors select the clusters that take part, as a deployment's do (ORed).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	ClusterSelectors []metav1.LabelSelector `json:"clusterSelectors"`
	// Data is the local data set at each cluster.
	Data FederatedData `json:"data"`
	// Rounds is how many rounds the job runs; with TargetAccuracy, the most it runs
	// (default 100 then).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=10000
	Rounds int32 `json:"rounds,omitempty"`
	// TargetAccuracy ends the job when the global model's accuracy on the clusters'
	// validation splits (weighted by their examples) reaches it, a decimal in (0, 1].
	// +optional
	// +kubebuilder:validation:Pattern=`^(1(\.0*)?|0?\.[0-9]+)$`
	TargetAccuracy string `json:"targetAccuracy,omitempty"`
	// Clients says how many clusters take part in each round.
	// +optional
	Clients ClientSelection `json:"clients,omitempty"`
	// Training is each cluster's local training.
	// +optional
	Training LocalTraining `json:"training,omitempty"`
	// Strategy is how updates are combined.
	// +optional
	Strategy AggregationStrategy `json:"strategy,omitempty"`
	// SecureAggregation masks each cluster's update so that the hub learns only their sum
	// (SecAgg+): no one cluster's update is ever seen in the clear.
	// +optional
	SecureAggregation bool `json:"secureAggregation,omitempty"`
	// Privacy, if set, makes the aggregate differentially private.
	// +optional
	Privacy *DifferentialPrivacy `json:"privacy,omitempty"`
	// Encoding is how updates are encoded for the link: Float32 (default), Quantized or
	// Adaptive.
	// +optional
	Encoding UpdateEncoding `json:"encoding,omitempty"`
}

// FederatedRoundStatus is one round of a job.
type FederatedRoundStatus struct {
	// Round numbers the round from 1.
	Round int32 `json:"round"`
	// Participants is how many updates went into the round's model; Dropouts how many
	// clusters asked did not answer in time.
	// +optional
	Participants int32 `json:"participants,omitempty"`
	// +optional
	Dropouts int32 `json:"dropouts,omitempty"`
	// Accuracy is the accuracy of the global model the round started from on the
	// participants' validation splits, weighted by their examples, a decimal; Loss their mean
	// local training loss.
	// +optional
	Accuracy string `json:"accuracy,omitempty"`
	// +optional
	Loss string `json:"loss,omitempty"`
	// UpdateBytes is the bytes of the updates the hub received in the round.
	// +optional
	UpdateBytes int64 `json:"updateBytes,omitempty"`
	// Version is the model version the round made (models/<output>:Version).
	// +optional
	Version string `json:"version,omitempty"`
	// EpsilonSpent is the privacy spent after the round, a decimal.
	// +optional
	EpsilonSpent string `json:"epsilonSpent,omitempty"`
	// Completed is when the round closed.
	// +optional
	Completed *metav1.Time `json:"completed,omitempty"`
}

// FederatedClusterStatus is one cluster's part in a job. No figure of one cluster's data or
// model is kept: accuracies are reported as aggregates over a round's participants.
type FederatedClusterStatus struct {
	// Cluster is the Cluster name.
	Cluster string `json:"cluster"`
	// Updates counts the updates the hub accepted from the cluster; LastRound is the round of
	// the newest.
	// +optional
	Updates int32 `json:"updates,omitempty"`
	// +optional
	LastRound int32 `json:"lastRound,omitempty"`
	// Encoding and LocalSteps are the hub's last choice for the cluster (local steps 0: the
	// job's epochs over the local data); Reason says why.
	// +optional
	Encoding string `json:"encoding,omitempty"`
	// +optional
	LocalSteps int32 `json:"localSteps,omitempty"`
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
}

// FederatedJobStatus is the observed state of a job.
type FederatedJobStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase is the job's progress.
	// +optional
	Phase FederatedJobPhase `json:"phase,omitempty"`
	// Round is the round under way, or the last one of a finished job.
	// +optional
	Round int32 `json:"round,omitempty"`
	// LatestModel, LatestVersion and LatestDigest name the newest global model: the initial
	// model until round 1 is published, then version 0.R.0 of model spec.model.output.
	// +optional
	LatestModel string `json:"latestModel,omitempty"`
	// +optional
	LatestVersion string `json:"latestVersion,omitempty"`
	// +optional
	LatestDigest string `json:"latestDigest,omitempty"`
	// Phase of the round under way, for secure rounds: train, advertise, share, mask or unmask.
	// +optional
	RoundPhase string `json:"roundPhase,omitempty"`
	// Accuracy is the newest aggregate accuracy, a decimal.
	// +optional
	Accuracy string `json:"accuracy,omitempty"`
	// EpsilonSpent is the privacy spent so far, a decimal.
	// +optional
	EpsilonSpent string `json:"epsilonSpent,omitempty"`
	// Rounds has a row per round, oldest first (the newest MaxFederatedRoundRows).
	// +optional
	// +listType=map
	// +listMapKey=round
	Rounds []FederatedRoundStatus `json:"rounds,omitempty"`
	// Clusters has a row per selected cluster, sorted by name.
	// +optional
	// +listType=map
	// +listMapKey=cluster
	Clusters []FederatedClusterStatus `json:"clusters,omitempty"`
	// Message explains the phase.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Message string `json:"message,omitempty"`
}

// MaxFederatedRoundRows bounds the rounds a job's status keeps.
const MaxFederatedRoundRows = 200

// FederatedJob trains a model across clusters with federated learning: each selected
// cluster trains the global model on its own data and sends only an update; the hub combines
// them into the next global model, a version in the registry, round after round.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster
type FederatedJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the job.
	Spec FederatedJobSpec `json:"spec"`
	// Status is the observed state.
	// +optional
	Status FederatedJobStatus `json:"status,omitempty"`
}

// FederatedJobList is a list of FederatedJobs.
//
// +kubebuilder:object:root=true
type FederatedJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the FederatedJobs.
	Items []FederatedJob `json:"items"`
}
