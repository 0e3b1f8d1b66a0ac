package v1alpha1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	k8svalidation "k8s.io/apimachinery/pkg/util/validation"
)

// RecordKindFederated is the kind of outbox record that carries a federated learning
// message from a cluster to the hub's coordinator of its job (an update, an accuracy report,
// a secure aggregation share). Its priority is the agent's federated learning priority.
const RecordKindFederated = "fl.message"

// MaxFederatedMessageBytes bounds one federated learning message.
const MaxFederatedMessageBytes = 32 << 20

// FederatedRecord is the payload of an outbox record of kind fl.message.
//
// +kubebuilder:object:generate=false
type FederatedRecord struct {
	// Job is the FederatedJob's name; UID its metadata.uid, so that a message for a job that
	// was deleted and created again under its name is refused.
	Job string `json:"job"`
	UID string `json:"uid"`
	// Round is the round the message belongs to.
	Round int32 `json:"round"`
	// Message is the coordinator's message, JSON, opaque to the hub's adapter.
	Message json.RawMessage `json:"message"`
}

// ParseFederatedRecord decodes and checks the payload of an fl.message record.
func ParseFederatedRecord(b []byte) (FederatedRecord, error) {
	var r FederatedRecord
	if len(b) > MaxFederatedMessageBytes+4096 {
		return r, fmt.Errorf("fl.message payload: %d bytes, at most %d", len(b), MaxFederatedMessageBytes)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return r, fmt.Errorf("fl.message payload: %w", err)
	}
	switch {
	case r.Job == "":
		return r, errors.New("fl.message payload: job: a FederatedJob name is required")
	case len(k8svalidation.IsDNS1123Subdomain(r.Job)) > 0:
		return r, fmt.Errorf("fl.message payload: job %q: %s", r.Job, strings.Join(k8svalidation.IsDNS1123Subdomain(r.Job), "; "))
	case r.UID == "" || len(r.UID) > 128:
		return r, errors.New("fl.message payload: uid: the job's metadata.uid is required (at most 128 characters)")
	case r.Round < 0:
		return r, fmt.Errorf("fl.message payload: round %d: must not be negative", r.Round)
	case len(r.Message) == 0 || bytes.Equal(bytes.TrimSpace(r.Message), []byte("null")):
		return r, errors.New("fl.message payload: message is required")
	case len(r.Message) > MaxFederatedMessageBytes:
		return r, fmt.Errorf("fl.message payload: message of %d bytes, at most %d", len(r.Message), MaxFederatedMessageBytes)
	}
	return r, nil
}

// DesiredFederated is one federated job a cluster takes part in: what it needs to train
// locally, and the coordinator's newest message to it.
//
// +kubebuilder:object:generate=false
type DesiredFederated struct {
	// Job is the FederatedJob's name and UID its metadata.uid.
	Job string `json:"job"`
	UID string `json:"uid"`
	// Arch is the model's architecture (mlp or cnn).
	Arch string `json:"arch"`
	// Data is the local data set.
	Data FederatedData `json:"data"`
	// Training is the local training.
	Training LocalTraining `json:"training"`
	// Round is the round of Message.
	Round int32 `json:"round"`
	// Model and Version name the global model Message starts from (models/<Model>:Version),
	// and Digest its manifest digest: the agent fetches it the normal way.
	Model   string `json:"model,omitempty"`
	Version string `json:"version,omitempty"`
	Digest  string `json:"digest,omitempty"`
	// Message is the coordinator's message to the cluster (an assignment), JSON.
	Message json.RawMessage `json:"message,omitempty"`
}
