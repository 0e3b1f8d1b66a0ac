package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// ErrNotFound is returned by the query methods when a repository, tag, manifest or blob does not exist.
var ErrNotFound = errors.New("not found")

// Error codes defined by the OCI distribution specification.
const (
	CodeBlobUnknown         = "BLOB_UNKNOWN"
	CodeBlobUploadInvalid   = "BLOB_UPLOAD_INVALID"
	CodeBlobUploadUnknown   = "BLOB_UPLOAD_UNKNOWN"
	CodeDigestInvalid       = "DIGEST_INVALID"
	CodeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	CodeManifestInvalid     = "MANIFEST_INVALID"
	CodeManifestUnknown     = "MANIFEST_UNKNOWN"
	CodeNameInvalid         = "NAME_INVALID"
	CodeNameUnknown         = "NAME_UNKNOWN"
	CodeSizeInvalid         = "SIZE_INVALID"
	CodeUnauthorized        = "UNAUTHORIZED"
	CodeDenied              = "DENIED"
	CodeUnsupported         = "UNSUPPORTED"
	CodeTooManyRequests     = "TOO_MANY_REQUESTS"
)

// CodeUnavailable answers a 503: the registry cannot serve the request now. The OCI
// specification defines no code for it; Docker's distribution registry uses this one.
const CodeUnavailable = "UNAVAILABLE"

// retryAfterUnavailable is the Retry-After of a 503 answer.
const retryAfterUnavailable = 2 * time.Second

// apiError is an error answered to a client as the OCI error JSON.
type apiError struct {
	status  int
	code    string
	message string
	detail  any
}

func (e *apiError) Error() string { return fmt.Sprintf("%s: %s", e.code, e.message) }

func newError(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// writeError answers err as OCI error JSON; errors that are not *apiError become 500.
func (reg *Registry) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		reg.log.ErrorContext(r.Context(), "registry request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = &apiError{status: http.StatusInternalServerError, code: CodeUnsupported, message: "internal error"}
	}
	if ae.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="outpost"`)
	}
	b, _ := json.Marshal(errorBody{Errors: []errorEntry{{Code: ae.code, Message: ae.message, Detail: ae.detail}}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(b)))
	h.Del("Docker-Content-Digest")
	w.WriteHeader(ae.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}
