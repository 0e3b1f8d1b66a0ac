package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StepType is the kind of work a pipeline step does; the agent runs every
// type itself, with no pod per step.
// +kubebuilder:validation:Enum=dataset;train;finetune;evaluate;register;deploy;exec
type StepType string

// Step types. StepTypes describes each one's parameters, inputs and outputs.
const (
	// StepDataset reads a labelled data set from a local folder (idx, npy or
	// CSV) and splits and samples it.
	StepDataset StepType = "dataset"
	// StepTrain trains a new model on a data set, checkpointing every epoch.
	StepTrain StepType = "train"
	// StepFinetune trains a copy of a base model (the version a deployment
	// serves on the cluster, or an earlier step's model) on a data set.
	StepFinetune StepType = "finetune"
	// StepEvaluate measures a model's accuracy and loss on a labelled set.
	StepEvaluate StepType = "evaluate"
	// StepRegister records a model as a version of the cluster's own
	// repository edge/<cluster>/<model>, with its lineage.
	StepRegister StepType = "register"
	// StepDeploy makes a registered version the one a deployment serves on
	// this cluster, through the version guard.
	StepDeploy StepType = "deploy"
	// StepExec runs a command with enforced limits.
	StepExec StepType = "exec"
)

// StepTypeInfo describes one step type: what a Pipeline may say of it.
//
// +kubebuilder:object:generate=false
type StepTypeInfo struct {
	// Type is the step type.
	Type StepType
	// Params are the parameters the type reads; others are refused.
	Params []string
	// Inputs are the inputs the type reads; Required those it cannot do without.
	Inputs, Required []string
	// Outputs are the outputs the type produces; exec steps declare theirs.
	Outputs []string
}

// stepTypes is the table of step types, one entry per type.
var stepTypes = []StepTypeInfo{
	{Type: StepDataset, Params: []string{"path", "format", "split", "sample", "seed", "classes"},
		Outputs: []string{"train", "test", "samples"}},
	{Type: StepTrain, Params: []string{"arch", "sizes", "epochs", "batchSize", "lr", "seed", "threads"},
		Inputs: []string{"data"}, Required: []string{"data"}, Outputs: []string{"model", "loss", "epochs"}},
	{Type: StepFinetune, Params: []string{"deployment", "lastLayers", "epochs", "batchSize", "lr", "seed", "threads"},
		Inputs: []string{"data", "model"}, Required: []string{"data"}, Outputs: []string{"model", "base", "loss", "epochs"}},
	{Type: StepEvaluate, Params: []string{"deployment", "runtime"},
		Inputs: []string{"data", "model"}, Required: []string{"data"}, Outputs: []string{"accuracy", "loss", "samples"}},
	{Type: StepRegister, Params: []string{"model", "version"},
		Inputs: []string{"model", "metrics", "reference"}, Required: []string{"model"}, Outputs: []string{"version", "digest", "repository"}},
	{Type: StepDeploy, Params: []string{"deployment"},
		Inputs: []string{"version"}, Required: []string{"version"}, Outputs: []string{"version", "previous"}},
	{Type: StepExec, Inputs: nil, Outputs: nil},
}

// StepTypes returns the table of step types, in a fresh slice.
func StepTypes() []StepTypeInfo { return append([]StepTypeInfo(nil), stepTypes...) }

// LookupStepType returns the description of type t.
func LookupStepType(t StepType) (StepTypeInfo, bool) {
	for _, i := range stepTypes {
		if i.Type == t {
			return i, true
		}
	}
	return StepTypeInfo{}, false
}

// TriggerType is what starts a pipeline run besides its schedule and an
// explicit request.
// +kubebuilder:validation:Enum=Drift;NewVersion
type TriggerType string

// Trigger types.
const (
	// TriggerDrift starts a run when a deployment's drift alarm is raised on the cluster.
	TriggerDrift TriggerType = "Drift"
	// TriggerNewVersion starts a run when a deployment activates a new version on the cluster.
	TriggerNewVersion TriggerType = "NewVersion"
)

// PipelineTrigger starts a run on an event in the cluster.
type PipelineTrigger struct {
	// Type is Drift or NewVersion.
	Type TriggerType `json:"type"`
	// Deployment is the ModelDeployment whose event starts a run.
	// +kubebuilder:validation:MinLength=1
	Deployment string `json:"deployment"`
	// FromClusters, on a Drift trigger, makes it fire at the hub rather than in the cluster that
	// drifts: when a cluster it selects raises the deployment's drift alarm, the hub requests a
	// run on each cluster the pipeline selects (such as the data centre's, with its data and
	// compute), once per alarm. Without it, each selected cluster runs the pipeline on its own
	// alarms, hub or no hub.
	// +optional
	FromClusters *metav1.LabelSelector `json:"fromClusters,omitempty"`
}

// LabelDriftCluster is set on a run the hub requested because that cluster raised a drift
// alarm (a Drift trigger with fromClusters).
const LabelDriftCluster = "ml.outpost.dev/drift-cluster"

// RetryPolicy retries a failed step.
type RetryPolicy struct {
	// Limit is how many times a failed step is tried again (0 to 10).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	Limit int32 `json:"limit"`
	// Backoff is the wait before the first retry (default 10s); it doubles for each further
	// retry, up to MaxBackoff (default 5m).
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="must be positive"
	Backoff *metav1.Duration `json:"backoff,omitempty"`
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="must be positive"
	MaxBackoff *metav1.Duration `json:"maxBackoff,omitempty"`
}

// StepResources are what a step needs of the cluster while it runs.
type StepResources struct {
	// CPU is the CPU the step needs ("500m", "2"); default 100m.
	// +optional
	CPU *resource.Quantity `json:"cpu,omitempty"`
	// Memory is the memory the step needs ("256Mi"); default 64Mi.
	// +optional
	Memory *resource.Quantity `json:"memory,omitempty"`
	// Accelerators are the accelerator devices the step needs.
	// +optional
	// +listType=map
	// +listMapKey=type
	Accelerators []Accelerator `json:"accelerators,omitempty"`
	// MinCPU and MinMemory, if set, let the scheduler start the step with less than it asks,
	// down to these, when the cluster is busy; the step adapts (fewer threads, a smaller
	// batch) and its status records that it did.
	// +optional
	MinCPU *resource.Quantity `json:"minCPU,omitempty"`
	// +optional
	MinMemory *resource.Quantity `json:"minMemory,omitempty"`
}

// ExecStep is the command of an exec step. It runs in a fresh working directory with its
// inputs as files (the path of input NAME in $OUTPOST_INPUT_NAME, upper-cased, '-' as '_'),
// and writes each declared output as a file under $OUTPOST_OUTPUTS.
type ExecStep struct {
	// Command is the program and its arguments.
	// +kubebuilder:validation:MinItems=1
	Command []string `json:"command"`
	// Env are extra environment variables.
	// +optional
	Env map[string]string `json:"env,omitempty"`
	// Outputs name the files the command writes under $OUTPOST_OUTPUTS; a file of at most
	// 256 bytes is also a value conditions can read.
	// +optional
	Outputs []string `json:"outputs,omitempty"`
}

// PipelineStep is one node of a pipeline's graph.
type PipelineStep struct {
	// Name is the step's name, unique in the pipeline: a DNS label.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
	// Type is what the step does.
	Type StepType `json:"type"`
	// DependsOn names steps that must finish before this one starts. An input that reads
	// another step's output depends on that step too.
	// +optional
	DependsOn []string `json:"dependsOn,omitempty"`
	// When, if set, is a condition on earlier steps' outputs, such as
	// "steps.eval.outputs.accuracy > 0.86"; the step is skipped when it is false, and so are
	// the steps that need its outputs.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	When string `json:"when,omitempty"`
	// Inputs map the step's input names to an earlier step's output: steps.STEP.outputs.OUTPUT.
	// +optional
	Inputs map[string]string `json:"inputs,omitempty"`
	// Params are the step type's parameters.
	// +optional
	Params map[string]string `json:"params,omitempty"`
	// Exec is the command of an exec step.
	// +optional
	Exec *ExecStep `json:"exec,omitempty"`
	// Retries retries the step when it fails.
	// +optional
	Retries *RetryPolicy `json:"retries,omitempty"`
	// Timeout fails an attempt that runs longer.
	// +optional
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="must be positive"
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// Resources are what the step needs while it runs.
	// +optional
	Resources StepResources `json:"resources,omitempty"`
	// Priority overrides the pipeline's priority for this step.
	// +optional
	Priority *int32 `json:"priority,omitempty"`
}

// PipelineSpec is a graph of steps and where and when it runs.
type PipelineSpec struct {
	// ClusterSelectors select the clusters the pipeline runs on, as a deployment's do.
	// +optional
	// +kubebuilder:validation:MaxItems=32
	ClusterSelectors []metav1.LabelSelector `json:"clusterSelectors,omitempty"`
	// Schedule, if set, starts a run on each selected cluster at the times of a five-field
	// cron expression ("0 3 * * *"), by the cluster's clock, linked or not.
	// +optional
	Schedule string `json:"schedule,omitempty"`
	// Triggers start runs on events in the cluster.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	Triggers []PipelineTrigger `json:"triggers,omitempty"`
	// Priority orders the pipeline's steps against other work on the cluster: higher first
	// (default 0; serving is always above).
	// +optional
	Priority int32 `json:"priority,omitempty"`
	// Steps are the graph's nodes.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Steps []PipelineStep `json:"steps"`
}

// PipelineClusterStatus is the newest run of a pipeline on one cluster, as the hub heard of it.
type PipelineClusterStatus struct {
	// Cluster is the Cluster name.
	Cluster string `json:"cluster"`
	// LastRun names the newest PipelineRun.
	// +optional
	LastRun string `json:"lastRun,omitempty"`
	// Phase is the newest run's phase.
	// +optional
	Phase RunPhase `json:"phase,omitempty"`
	// LastUpdate is when the hub last heard of the run.
	// +optional
	LastUpdate *metav1.Time `json:"lastUpdate,omitempty"`
}

// PipelineStatus is the observed state of a pipeline.
type PipelineStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Clusters has a row per selected cluster, sorted by cluster name.
	// +optional
	// +listType=map
	// +listMapKey=cluster
	Clusters []PipelineClusterStatus `json:"clusters,omitempty"`
}

// Pipeline is a graph of ML steps (prepare data, train, evaluate, register, deploy, any
// command) that agents run on the clusters its selectors match, with no hub needed while
// they run.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster
type Pipeline struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the graph and its placement.
	Spec PipelineSpec `json:"spec"`
	// Status is the observed state.
	// +optional
	Status PipelineStatus `json:"status,omitempty"`
}

// PipelineList is a list of Pipelines.
//
// +kubebuilder:object:root=true
type PipelineList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the Pipelines.
	Items []Pipeline `json:"items"`
}

// RunPhase is the progress of a run or of one of its steps.
// +kubebuilder:validation:Enum=Pending;Running;Succeeded;Failed;Skipped
type RunPhase string

// Run and step phases.
const (
	RunPending   RunPhase = "Pending"
	RunRunning   RunPhase = "Running"
	RunSucceeded RunPhase = "Succeeded"
	RunFailed    RunPhase = "Failed"
	// RunSkipped: the step's condition was false, or a step it needs was skipped.
	RunSkipped RunPhase = "Skipped"
)

// Finished reports whether p is a final phase.
func (p RunPhase) Finished() bool {
	return p == RunSucceeded || p == RunFailed || p == RunSkipped
}

// Run triggers: what started a run.
const (
	TriggeredManual   = "Manual"
	TriggeredSchedule = "Schedule"
	TriggeredLocal    = "Local"
)

// PipelineRunSpec names the pipeline a run executes and where.
type PipelineRunSpec struct {
	// Pipeline is the Pipeline's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="!format.dns1123Subdomain().validate(self).hasValue()",message="must be a Pipeline's name: lowercase letters, digits, '-' and '.'"
	Pipeline string `json:"pipeline"`
	// Cluster is the cluster that runs it.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="!format.dns1123Subdomain().validate(self).hasValue()",message="must be a Cluster's name: lowercase letters, digits, '-' and '.'"
	Cluster string `json:"cluster"`
	// Trigger is what started the run: Manual, Schedule, Local, Drift or NewVersion.
	// +optional
	// +kubebuilder:validation:Enum=Manual;Schedule;Local;Drift;NewVersion
	Trigger string `json:"trigger,omitempty"`
}

// StepStatus is the state of one step of a run.
type StepStatus struct {
	// Name is the step's name.
	Name string `json:"name"`
	// Phase is the step's progress.
	Phase RunPhase `json:"phase"`
	// Attempts counts the times the step started.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// Cached is true when the step's outputs came from an earlier run with the same inputs
	// and parameters.
	// +optional
	Cached bool `json:"cached,omitempty"`
	// StartTime and CompletionTime bound the step's last attempt.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Outputs are the step's outputs: values, or artifact digests.
	// +optional
	Outputs map[string]string `json:"outputs,omitempty"`
	// Adapted says how the scheduler adapted the step to the cluster, if it did.
	// +optional
	Adapted string `json:"adapted,omitempty"`
	// Message explains a failure, a skip or a timeout.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Message string `json:"message,omitempty"`
	// LogTail is the end of the step's log, at most MaxStepLogTailBytes: what the agent
	// sends the hub. The whole log stays on the cluster.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	LogTail string `json:"logTail,omitempty"`
}

// ProducedModel is a model version a run registered at the edge.
type ProducedModel struct {
	// Repository is edge/<cluster>/<model>.
	Repository string `json:"repository"`
	// Version is the version's tag.
	Version string `json:"version"`
	// Digest is the version's manifest digest.
	Digest string `json:"digest"`
	// Uploaded is true once the hub holds the version.
	// +optional
	Uploaded bool `json:"uploaded,omitempty"`
}

// PipelineRunStatus is the observed state of a run.
type PipelineRunStatus struct {
	// Phase is the run's progress.
	// +optional
	Phase RunPhase `json:"phase,omitempty"`
	// Sequence numbers the agent's updates of the run, higher later: the hub keeps an update
	// only when its sequence is above the one it holds, so that an update that arrives late
	// never replaces a newer one.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Sequence int64 `json:"sequence,omitempty"`
	// PipelineGeneration is the metadata.generation of the Pipeline the run executes.
	// +optional
	PipelineGeneration int64 `json:"pipelineGeneration,omitempty"`
	// StartTime and CompletionTime bound the run, by the cluster's clock.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// Steps has a row per step, in the pipeline's order.
	// +optional
	// +listType=map
	// +listMapKey=name
	Steps []StepStatus `json:"steps,omitempty"`
	// Models are the versions the run registered.
	// +optional
	Models []ProducedModel `json:"models,omitempty"`
	// Message explains a failed run.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Message string `json:"message,omitempty"`
}

// PipelineRun is one execution of a pipeline on one cluster. Create one to run a pipeline on
// demand; agents report the runs they start themselves (scheduled, triggered, local).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster
type PipelineRun struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec names the pipeline and the cluster.
	Spec PipelineRunSpec `json:"spec"`
	// Status is the run's progress.
	// +optional
	Status PipelineRunStatus `json:"status,omitempty"`
}

// PipelineRunList is a list of PipelineRuns.
//
// +kubebuilder:object:root=true
type PipelineRunList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the PipelineRuns.
	Items []PipelineRun `json:"items"`
}
