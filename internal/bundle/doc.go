// Package bundle is the sneakernet path between a hub and clusters with no
// link: outbound bundles carry the hub-signed desired state of one or more
// clusters and the artifacts it names, minus what each cluster holds;
// status bundles carry a cluster's report and outbox records back, signed
// with the cluster's own key.
//
// An outbound bundle is an OCI image layout (oci-layout, index.json,
// blobs/sha256/...), so that `oras copy --from-oci-layout DIR:TAG` pushes
// any model in it on to a registry. Besides the model manifests, index.json
// names one manifest of artifact type ArtifactType, tagged Tag, whose only
// layer is the hub-signed Contents: every cluster's desired state and every
// blob of the layout with its size and sha256. A layout may travel as tar
// parts of a bounded size, with a hub-signed list of the parts (Parts).
//
// The pure parts (what to include, how to split, what to refuse) are plain
// functions over the documents; the I/O (writing and verifying layouts,
// cutting and staging parts) sits in layout.go and parts.go.
package bundle

import (
	"errors"
	"regexp"
	"strings"
)

// Media and payload types of bundles.
const (
	// ArtifactType is the artifact type of a bundle's own manifest.
	ArtifactType = "application/vnd.outpost.bundle.v1"
	// MediaTypeEnvelope is the media type of a DSSE envelope layer.
	MediaTypeEnvelope = "application/vnd.dsse.envelope.v1+json"
	// PayloadContents is the DSSE payload type of a bundle's Contents.
	PayloadContents = "application/vnd.outpost.bundle.contents.v1+json"
	// PayloadParts is the DSSE payload type of a bundle's list of parts.
	PayloadParts = "application/vnd.outpost.bundle.parts.v1+json"
	// PayloadStatus is the DSSE payload type of a status bundle.
	PayloadStatus = "application/vnd.outpost.bundle.status.v1+json"
	// Tag is the tag of the bundle's own manifest in index.json.
	Tag = "outpost-bundle"
	// MaxDocBytes bounds every signed document read from a bundle.
	MaxDocBytes = 64 << 20
	// MaxBlobs bounds the blobs one bundle lists.
	MaxBlobs = 1 << 20
	// MaxParts bounds the parts of one bundle.
	MaxParts = 100000
)

// Errors a caller can test with errors.Is.
var (
	// ErrSignature: a document is not signed by a key the reader trusts.
	ErrSignature = errors.New("signature does not verify with the trusted key")
	// ErrMalformed: a document or layout does not parse or is inconsistent.
	ErrMalformed = errors.New("malformed bundle")
	// ErrDigest: bytes do not match the digest or size that names them.
	ErrDigest = errors.New("digest mismatch")
	// ErrOtherCluster: a bundle holds nothing for this cluster.
	ErrOtherCluster = errors.New("bundle is for another cluster")
	// ErrIncomplete: parts are still missing.
	ErrIncomplete = errors.New("bundle incomplete")
	// ErrReplay: a status bundle was imported already.
	ErrReplay = errors.New("status bundle already imported")
)

var tagUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// ModelTag is the tag under which a model version is named in a bundle's
// index.json: the model name and version, each character an OCI tag may not
// hold replaced by '_' ("vision/cam" 1.2.0+b1 gives vision_cam-1.2.0_b1).
func ModelTag(model, version string) string {
	t := tagUnsafe.ReplaceAllString(strings.ReplaceAll(model, "/", "_")+"-"+version, "_")
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}
