// Package artifact packs machine-learning models into OCI artifacts and reads
// them back, on any OCI registry reachable through oras-go.
//
// A model version is an OCI image manifest following the CNCF ModelPack
// model-spec: one raw layer per file (the file bytes as they are, so layer
// offsets are file offsets), a model config blob, and Outpost annotations for
// lineage and metrics. Five kinds of referrers hang off a model manifest:
// variants (int8, fp16, pruned ... models of their own, with what they cost
// in annotations), a content-defined chunk index, which lets a client fetch
// only the chunks it lacks, DSSE signatures over an in-toto statement naming the manifest
// digest, a reference profile, the baseline of drift monitoring (whose
// bytes this package moves and verifies but leaves to internal/drift to
// decode), and weight deltas against the parent version, which rebuild a
// changed file from the parent's (internal/weightdelta). The wire format is described in docs/artifact-format.md.
package artifact

// Media and artifact types of the CNCF ModelPack model-spec
// (github.com/modelpack/model-spec, specs-go/v1), copied to avoid a
// dependency on the spec module.
const (
	// ArtifactTypeModel is the artifactType of a model manifest.
	ArtifactTypeModel = "application/vnd.cncf.model.manifest.v1+json"
	// MediaTypeModelConfig is the media type of the model config blob.
	MediaTypeModelConfig = "application/vnd.cncf.model.config.v1+json"
	// MediaTypeModelWeightRaw is an unarchived, uncompressed weights file.
	MediaTypeModelWeightRaw = "application/vnd.cncf.model.weight.v1.raw"
	// MediaTypeModelWeightConfigRaw is an unarchived weights configuration
	// file such as config.json or tokenizer.json.
	MediaTypeModelWeightConfigRaw = "application/vnd.cncf.model.weight.config.v1.raw"
	// MediaTypeModelDocRaw is an unarchived documentation file such as
	// README.md or LICENSE.
	MediaTypeModelDocRaw = "application/vnd.cncf.model.doc.v1.raw"
	// MediaTypeModelCodeRaw is an unarchived code file such as a script.
	MediaTypeModelCodeRaw = "application/vnd.cncf.model.code.v1.raw"
	// MediaTypeModelDatasetRaw is an unarchived dataset file.
	MediaTypeModelDatasetRaw = "application/vnd.cncf.model.dataset.v1.raw"

	// AnnotationFilepath is the model-spec layer annotation holding the
	// file's path relative to the model root.
	AnnotationFilepath = "org.cncf.model.filepath"
)

// Outpost artifact types.
const (
	// ArtifactTypeChunkIndex is the artifactType of a chunk index referrer
	// and the media type of its single layer.
	ArtifactTypeChunkIndex = "application/vnd.outpost.chunk-index.v1+json"
	// ArtifactTypeSignature is the artifactType of a signature referrer.
	ArtifactTypeSignature = "application/vnd.outpost.signature.v1+json"
	// ArtifactTypeDriftProfile is the artifactType of a reference profile
	// referrer (the drift monitoring baseline of a model version) and the
	// media type of its single layer.
	ArtifactTypeDriftProfile = "application/vnd.outpost.drift-profile.v1+json"
	// MediaTypeDSSEEnvelope is the media type of the signature layer.
	MediaTypeDSSEEnvelope = "application/vnd.dsse.envelope.v1+json"
	// PayloadTypeInToto is the DSSE payloadType of an in-toto statement.
	PayloadTypeInToto = "application/vnd.in-toto+json"
	// StatementTypeV1 is the _type of an in-toto Statement v1.
	StatementTypeV1 = "https://in-toto.io/Statement/v1"
	// PredicateTypeSignature is the predicateType of an Outpost model
	// signature statement.
	PredicateTypeSignature = "https://outpost.dev/model-signature/v1"
)

// Manifest and layer annotations written by Push.
const (
	// AnnotationTitle is the OCI title annotation; oras pull writes each
	// layer to a file of this name.
	AnnotationTitle = "org.opencontainers.image.title"
	// AnnotationVersion is the OCI version annotation (the model version).
	AnnotationVersion = "org.opencontainers.image.version"
	// AnnotationCreated is the OCI creation time annotation (RFC 3339).
	AnnotationCreated = "org.opencontainers.image.created"
	// AnnotationName is the model name.
	AnnotationName = "ml.outpost.dev/name"
	// AnnotationParent names the model version this one was derived from,
	// as NAME@VERSION (edge/CLUSTER/NAME@VERSION for a version produced at
	// the edge), or a digest.
	AnnotationParent = "ml.outpost.dev/parent"
	// AnnotationProducedBy names what produced the model (a pipeline run,
	// a federated job, a compression policy): for a pipeline's output,
	// "pipeline/<pipeline>/run/<run>" (ProducedByPipelineRun); for a
	// promoted version, "promote".
	AnnotationProducedBy = "ml.outpost.dev/produced-by"
	// AnnotationMetricPrefix prefixes one annotation per model metric:
	// ml.outpost.dev/metric.<key> = <value>.
	AnnotationMetricPrefix = "ml.outpost.dev/metric."
	// AnnotationKeyID is set on signature referrers to the signing key ID.
	AnnotationKeyID = "ml.outpost.dev/key-id"
	// AnnotationDataset is the digest (sha256:...) of the data set a model
	// was trained or fine-tuned on; the data set itself never leaves the
	// cluster.
	AnnotationDataset = "ml.outpost.dev/dataset"
	// AnnotationCluster names the cluster that produced the model.
	AnnotationCluster = "ml.outpost.dev/cluster"
	// AnnotationPipeline names the pipeline whose run produced the model.
	AnnotationPipeline = "ml.outpost.dev/pipeline"
	// AnnotationRun names the pipeline run that produced the model.
	AnnotationRun = "ml.outpost.dev/run"
	// AnnotationFederatedJob names the FederatedJob whose round made the model, and
	// AnnotationFederatedRound that round.
	AnnotationFederatedJob   = "ml.outpost.dev/federated-job"
	AnnotationFederatedRound = "ml.outpost.dev/federated-round"

	// annotationORASUnpack marks an oras-pushed directory tarball.
	annotationORASUnpack = "io.deis.oras.content.unpack"
)

// Size limits applied to everything read from a registry.
const (
	// MaxManifestBytes bounds manifests and model config blobs.
	MaxManifestBytes = 4 << 20
	// MaxChunkIndexBytes bounds a chunk index blob (about 600 GiB of model
	// files at the default 1 MiB average chunk).
	MaxChunkIndexBytes = 64 << 20
	// MaxEnvelopeBytes bounds a DSSE signature envelope.
	MaxEnvelopeBytes = 1 << 20
	// MaxProfileBytes bounds a reference profile blob.
	MaxProfileBytes = 16 << 20
	// MaxFiles bounds the number of files (layers) of a model.
	MaxFiles = 100000
	// MaxPathLen bounds the length of a file path inside a model.
	MaxPathLen = 4096
)

// ProducedByPromote is the produced-by of a version promoted from the edge.
const ProducedByPromote = "promote"

// ProducedByPipelineRun is the produced-by of a model a pipeline run made:
// "pipeline/<pipeline>/run/<run>".
func ProducedByPipelineRun(pipeline, run string) string {
	return "pipeline/" + pipeline + "/run/" + run
}
