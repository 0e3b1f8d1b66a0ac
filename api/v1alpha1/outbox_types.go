package v1alpha1

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kinds of the outbox protocol documents.
const (
	KindOutboxBatch    = "OutboxBatch"
	KindOutboxResponse = "OutboxResponse"
)

// Outcomes of an outbox record at the hub.
const (
	// OutboxApplied: the hub applied the record now.
	OutboxApplied = "Applied"
	// OutboxDuplicate: the hub had applied a record with this key before.
	OutboxDuplicate = "Duplicate"
	// OutboxRefused: the hub will never apply the record (the message says why).
	OutboxRefused = "Refused"
)

// OutboxBatch is a batch of an agent's outbox records, sent as POST
// clusters/{name}/outbox, zstd-compressed (Content-Encoding: zstd) or not.
// Each record takes effect at the hub once per key, however often it is sent.
//
// +kubebuilder:object:generate=false
type OutboxBatch struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Cluster is the sending cluster.
	Cluster string `json:"cluster"`
	// Records are the records, in the order the agent sends them.
	Records []OutboxRecord `json:"records"`
}

// OutboxRecord is one outbox record.
//
// +kubebuilder:object:generate=false
type OutboxRecord struct {
	// Key is the record's idempotency key, unique within the cluster.
	Key string `json:"key"`
	// Kind names the record's content, such as drift.window.
	Kind string `json:"kind"`
	// Priority is the agent's priority of the record.
	Priority int `json:"priority,omitempty"`
	// Created is when the agent made the record.
	Created metav1.Time `json:"created"`
	// Payload is the record's content, JSON.
	Payload json.RawMessage `json:"payload"`
}

// OutboxResponse answers an OutboxBatch with the outcome of every record.
//
// +kubebuilder:object:generate=false
type OutboxResponse struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Results has one entry per record of the batch, in its order.
	Results []OutboxResult `json:"results"`
}

// OutboxResult is the outcome of one record.
//
// +kubebuilder:object:generate=false
type OutboxResult struct {
	// Key is the record's key.
	Key string `json:"key"`
	// Outcome is Applied, Duplicate or Refused.
	Outcome string `json:"outcome"`
	// Message says why a record was refused.
	Message string `json:"message,omitempty"`
}

// MaxOutboxRecords bounds the records of one batch.
const MaxOutboxRecords = 1000

// Validate checks a batch's shape (each record's kind is the hub's to judge).
func (b *OutboxBatch) Validate() error {
	if b.Kind != "" && b.Kind != KindOutboxBatch {
		return fmt.Errorf("kind %q, want %s", b.Kind, KindOutboxBatch)
	}
	if len(b.Records) > MaxOutboxRecords {
		return fmt.Errorf("%d records in one batch, at most %d", len(b.Records), MaxOutboxRecords)
	}
	seen := make(map[string]bool, len(b.Records))
	for i, r := range b.Records {
		switch {
		case r.Key == "" || len(r.Key) > 512:
			return fmt.Errorf("records[%d].key: want 1 to 512 characters", i)
		case r.Kind == "" || len(r.Kind) > 64:
			return fmt.Errorf("records[%d].kind: want 1 to 64 characters", i)
		case !json.Valid(r.Payload):
			return fmt.Errorf("records[%d] (%s): payload is not JSON", i, r.Key)
		case seen[r.Key]:
			return fmt.Errorf("records[%d]: key %q twice in one batch", i, r.Key)
		}
		seen[r.Key] = true
	}
	return nil
}
