package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CompressionRecipe names a way internal/compress makes a variant of a model.
// +kubebuilder:validation:Enum=fp16;int8;int8-dynamic;int8-p9999;sparse80;pruned50;pruned50-int8;pruned35-int8;pruned25-int8;student10;student10-int8
type CompressionRecipe string

// compressionRecipes are the recipes a policy may name, smallest gain first, as
// internal/compress names them.
var compressionRecipes = []string{"fp16", "int8", "int8-dynamic", "int8-p9999", "sparse80", "pruned50", "pruned50-int8", "pruned35-int8", "pruned25-int8", "student10", "student10-int8"}

// CompressionRecipeNames returns the recipes a policy may name.
func CompressionRecipeNames() []string { return append([]string(nil), compressionRecipes...) }

// AllModels in a policy's models matches every model.
const AllModels = "*"

// CompressionData is the labelled data set, on the hub's machine, the hub calibrates,
// fine-tunes and measures variants with.
type CompressionData struct {
	// Path is the data set's folder on the hub's machine (idx, npy, npz or CSV files, as
	// `outpost model compress --data` reads), absolute or relative to the hub's working
	// directory.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Path string `json:"path"`
	// Format is idx, npy, npz or csv; empty finds it out from the files.
	// +optional
	// +kubebuilder:validation:Enum=idx;npy;npz;csv
	Format string `json:"format,omitempty"`
}

// CompressionPolicySpec says which models the hub compresses and how.
type CompressionPolicySpec struct {
	// Models are the names of the models whose every version the hub compresses; "*"
	// matches every model.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=200
	// +kubebuilder:validation:items:Pattern=`^(\*|[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*)$`
	Models []string `json:"models"`
	// Data is the labelled data set the variants are made and measured with.
	Data CompressionData `json:"data"`
	// MaxAccuracyDrop is the accuracy, in points, a variant may lose and still be pushed, a
	// decimal from 0 to 100 (default "1.0").
	// +optional
	// +kubebuilder:validation:Pattern=`^[0-9]*\.?[0-9]+$`
	MaxAccuracyDrop string `json:"maxAccuracyDrop,omitempty"`
	// Recipes are the recipes tried (default: all of them).
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	Recipes []CompressionRecipe `json:"recipes,omitempty"`
	// Calibration is how many training samples calibrate int8 (default 512).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	Calibration int32 `json:"calibration,omitempty"`
}

// CompressionPhase is the progress of compressing one model version.
// +kubebuilder:validation:Enum=Compressing;Done;Failed
type CompressionPhase string

// Compression phases.
const (
	// CompressionCompressing: the hub is making and measuring the version's variants.
	CompressionCompressing CompressionPhase = "Compressing"
	// CompressionDone: the variants within the budget were pushed.
	CompressionDone CompressionPhase = "Done"
	// CompressionFailed: no variant was pushed; the reason says why. The version is not
	// tried again.
	CompressionFailed CompressionPhase = "Failed"
)

// CompressedVariant is a variant a policy pushed.
type CompressedVariant struct {
	// Name is the variant's name, such as int8.
	Name string `json:"name"`
	// SizeRatio is its ONNX file's size over the version's, a decimal.
	// +optional
	SizeRatio string `json:"sizeRatio,omitempty"`
	// AccuracyDrop is the accuracy it lost, in points, a decimal (negative: it gained).
	// +optional
	AccuracyDrop string `json:"accuracyDrop,omitempty"`
}

// CompressedVersion is what a policy did with one model version.
type CompressedVersion struct {
	// Model and Version name the model version.
	Model string `json:"model"`
	// +kubebuilder:validation:MaxLength=128
	Version string `json:"version"`
	// Digest is the version's manifest digest when it was handled.
	// +optional
	Digest string `json:"digest,omitempty"`
	// Phase is the progress.
	Phase CompressionPhase `json:"phase"`
	// Variants are the variants pushed, smallest first.
	// +optional
	Variants []CompressedVariant `json:"variants,omitempty"`
	// Reason says why no variant was pushed.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Reason string `json:"reason,omitempty"`
	// Updated is when the phase last changed.
	// +optional
	Updated *metav1.Time `json:"updated,omitempty"`
}

// CompressionPolicyStatus is what a policy did.
type CompressionPolicyStatus struct {
	// Versions has a row per model version handled, in the order the hub took them up;
	// the rows of versions deleted from the registry go.
	// +optional
	// +listType=atomic
	Versions []CompressedVersion `json:"versions,omitempty"`
}

// CompressionPolicy makes the hub compress every version of the models it names as the
// version is pushed: the hub makes a variant by each recipe, measures it on the policy's
// data, and pushes those within the accuracy budget as variants of the version.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster
type CompressionPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the policy.
	Spec CompressionPolicySpec `json:"spec"`
	// Status is what the hub did.
	// +optional
	Status CompressionPolicyStatus `json:"status,omitempty"`
}

// CompressionPolicyList is a list of CompressionPolicies.
//
// +kubebuilder:object:root=true
type CompressionPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	// Items are the CompressionPolicies.
	Items []CompressionPolicy `json:"items"`
}
