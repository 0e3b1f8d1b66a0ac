package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker media types accepted alongside the OCI ones.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// manifestInfo is what the registry needs to know about a manifest.
type manifestInfo struct {
	MediaType    string
	ArtifactType string // artifactType, else config.mediaType for image manifests
	Subject      *ocispec.Descriptor
	// Blobs are descriptors whose content must already be in the repository (config and layers),
	// with the size they say.
	Blobs []fieldDescriptor
	// Manifests are descriptors of child manifests (for an index) that must already be in the
	// repository, with the size they say.
	Manifests   []fieldDescriptor
	Annotations map[string]string
}

// fieldDescriptor is a descriptor with the manifest field it came from ("layers[2]"), for errors.
type fieldDescriptor struct {
	Field string
	ocispec.Descriptor
}

// rawManifest has the fields of every manifest kind the registry understands.
type rawManifest struct {
	SchemaVersion *int                 `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	Annotations   map[string]string    `json:"annotations"`
}

func invalidManifest(format string, args ...any) error {
	return newError(http.StatusBadRequest, CodeManifestInvalid, format, args...)
}

// genericType reports whether a Content-Type says nothing about the manifest kind.
func genericType(ct string) bool {
	return ct == "" || ct == "application/json" || ct == "application/octet-stream" || ct == "text/plain"
}

// parseManifest validates a manifest body sent with Content-Type contentType and returns what the registry
// indexes. Image manifests and indexes (OCI and Docker) are checked structurally; any other JSON object
// with a media type (from its mediaType field or the Content-Type) is accepted as opaque.
func parseManifest(contentType string, body []byte) (*manifestInfo, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, invalidManifest("manifest is not a JSON object")
	}
	if !json.Valid(body) {
		return nil, invalidManifest("manifest is not valid JSON")
	}
	if err := checkDuplicateKeys(body); err != nil {
		return nil, err
	}
	var raw rawManifest
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, invalidManifest("manifest JSON: %v", err)
	}
	ct := ""
	if contentType != "" {
		if mt, _, err := mime.ParseMediaType(contentType); err == nil {
			ct = mt
		} else {
			ct = strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0])
		}
	}
	mt := raw.MediaType
	switch {
	case mt != "" && !genericType(ct) && ct != mt:
		return nil, invalidManifest("content type %q does not match manifest mediaType %q", ct, mt)
	case mt == "" && !genericType(ct):
		mt = ct
	case mt == "":
		switch {
		case raw.Config != nil:
			mt = ocispec.MediaTypeImageManifest
		case raw.Manifests != nil:
			mt = ocispec.MediaTypeImageIndex
		default:
			return nil, invalidManifest("manifest has no media type")
		}
	}
	info := &manifestInfo{MediaType: mt, ArtifactType: raw.ArtifactType, Annotations: raw.Annotations}
	if raw.Subject != nil {
		if err := checkDescriptor("subject", *raw.Subject); err != nil {
			return nil, err
		}
		info.Subject = raw.Subject
	}
	switch mt {
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
		if raw.SchemaVersion == nil || *raw.SchemaVersion != 2 {
			return nil, invalidManifest("schemaVersion must be 2")
		}
		if raw.Config == nil {
			return nil, invalidManifest("image manifest has no config")
		}
		if raw.Manifests != nil {
			return nil, invalidManifest("image manifest must not have manifests")
		}
		if err := checkDescriptor("config", *raw.Config); err != nil {
			return nil, err
		}
		info.Blobs = append(info.Blobs, fieldDescriptor{"config", *raw.Config})
		if info.ArtifactType == "" {
			info.ArtifactType = raw.Config.MediaType
		}
		for i, l := range raw.Layers {
			field := fmt.Sprintf("layers[%d]", i)
			if err := checkDescriptor(field, l); err != nil {
				return nil, err
			}
			if !foreignLayer(l) {
				info.Blobs = append(info.Blobs, fieldDescriptor{field, l})
			}
		}
	case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
		if raw.SchemaVersion == nil || *raw.SchemaVersion != 2 {
			return nil, invalidManifest("schemaVersion must be 2")
		}
		if raw.Config != nil || raw.Layers != nil {
			return nil, invalidManifest("index must not have config or layers")
		}
		for i, m := range raw.Manifests {
			field := fmt.Sprintf("manifests[%d]", i)
			if err := checkDescriptor(field, m); err != nil {
				return nil, err
			}
			info.Manifests = append(info.Manifests, fieldDescriptor{field, m})
		}
	default:
		for i, l := range raw.Layers {
			if err := checkDescriptor(fmt.Sprintf("layers[%d]", i), l); err != nil {
				return nil, err
			}
		}
	}
	return info, nil
}

func checkDescriptor(field string, d ocispec.Descriptor) error {
	if _, err := parseDigest(string(d.Digest)); err != nil {
		return invalidManifest("%s: invalid digest %q", field, d.Digest)
	}
	if d.Size < 0 {
		return invalidManifest("%s: negative size", field)
	}
	if d.MediaType == "" {
		return invalidManifest("%s: missing mediaType", field)
	}
	if d.Data != nil && (d.Digest.Algorithm().FromBytes(d.Data) != d.Digest || int64(len(d.Data)) != d.Size) {
		return invalidManifest("%s: data does not match digest and size", field)
	}
	return nil
}

// foreignLayer reports whether a layer is not expected in the registry (non-distributable or with URLs).
func foreignLayer(d ocispec.Descriptor) bool {
	return len(d.URLs) > 0 || strings.Contains(d.MediaType, "nondistributable") || strings.Contains(d.MediaType, ".foreign.")
}
