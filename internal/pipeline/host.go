package pipeline

import "context"

// Host is what the engine needs of the process it runs in: the agent, or
// the offline command line. It is all the engine knows of deployments.
type Host interface {
	// ActiveModel returns the model version a deployment serves on this
	// cluster, with the path of its ONNX file. Finetune and evaluate steps
	// whose param deployment is set read it.
	ActiveModel(ctx context.Context, deployment string) (ModelRef, error)
	// Deploy makes version m (already in the engine's OCI layout, in
	// repository m.Repository) the one the deployment serves on this
	// cluster, through the agent's version guard, and returns the version
	// served before ("" if none). Deploying the version already served
	// changes nothing and succeeds.
	Deploy(ctx context.Context, deployment string, m Model) (previous string, err error)
}

// ModelRef is a model version a deployment serves.
type ModelRef struct {
	// Name is the model's name, Version its version.
	Name, Version string
	// Digest identifies the content: the version's manifest digest, or the
	// file's sha256 digest.
	Digest string
	// Path is the ONNX file.
	Path string
}

// Model is a model version the engine registered: a ModelPack artifact in
// the engine's OCI layout.
type Model struct {
	// Repository is edge/<cluster>/<model>.
	Repository string
	// Version is the version's tag, Digest its manifest's digest.
	Version, Digest string
	// File is the path of the ONNX file, a blob of the layout.
	File string
	// Run is the run that registered it.
	Run string
	// Uploaded is true once MarkUploaded said the hub holds it.
	Uploaded bool
}
