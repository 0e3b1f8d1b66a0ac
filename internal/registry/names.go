package registry

import (
	_ "crypto/sha256" // registers sha256 for go-digest
	_ "crypto/sha512" // registers sha512 for go-digest
	"net/http"
	"regexp"

	"github.com/opencontainers/go-digest"
)

var (
	// repoNameRe is the repository name grammar of the distribution specification.
	repoNameRe = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	// tagRe is the tag grammar of the distribution specification.
	tagRe = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

// maxRepoNameLen bounds repository names (with the registry host this keeps references under 255 bytes).
const maxRepoNameLen = 255

func validRepo(name string) bool {
	return len(name) <= maxRepoNameLen && repoNameRe.MatchString(name)
}

func validTag(tag string) bool { return tagRe.MatchString(tag) }

// parseDigest accepts only well-formed sha256 and sha512 digests.
func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", newError(http.StatusBadRequest, CodeDigestInvalid, "invalid digest %q", s)
	}
	switch d.Algorithm() {
	case digest.SHA256, digest.SHA512:
	default:
		return "", newError(http.StatusBadRequest, CodeDigestInvalid, "unsupported digest algorithm %q", d.Algorithm())
	}
	return d, nil
}

// isDigest reports whether a manifest reference looks like a digest rather than a tag.
func isDigest(ref string) bool {
	for i := 0; i < len(ref); i++ {
		if ref[i] == ':' {
			return true
		}
	}
	return false
}
