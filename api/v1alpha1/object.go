package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Kinds and plural resource names of the resources in this package.
const (
	KindCluster               = "Cluster"
	KindClusterList           = "ClusterList"
	KindModelDeployment       = "ModelDeployment"
	KindModelDeploymentList   = "ModelDeploymentList"
	KindPipeline              = "Pipeline"
	KindPipelineList          = "PipelineList"
	KindPipelineRun           = "PipelineRun"
	KindPipelineRunList       = "PipelineRunList"
	KindFederatedJob          = "FederatedJob"
	KindFederatedJobList      = "FederatedJobList"
	KindCompressionPolicy     = "CompressionPolicy"
	KindCompressionPolicyList = "CompressionPolicyList"

	PluralClusters            = "clusters"
	PluralModelDeployments    = "modeldeployments"
	PluralPipelines           = "pipelines"
	PluralPipelineRuns        = "pipelineruns"
	PluralFederatedJobs       = "federatedjobs"
	PluralCompressionPolicies = "compressionpolicies"
)

// Object is a single resource of this package, of a kind in Kinds.
//
// +kubebuilder:object:generate=false
type Object interface {
	runtime.Object
	metav1.Object
	// Default fills the fields the CRD schema defaults.
	Default()
	// Validate checks the object and returns an *InvalidError naming each bad field, or nil.
	Validate() error
}
