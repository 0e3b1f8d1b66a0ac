package v1alpha1

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RecordKindNote is the kind of outbox record that carries a note from the
// edge: a line an operator or a script at the cluster wants the hub to keep.
// The hub applies it without configuration.
const RecordKindNote = "note"

// KindNoteList is the kind of the answer to GET clusters/{name}/notes.
const KindNoteList = "NoteList"

// MaxNoteBytes bounds a note's text.
const MaxNoteBytes = 4096

// NotePayload is the payload of an outbox record of kind note.
//
// +kubebuilder:object:generate=false
type NotePayload struct {
	// Text is the note, 1 to MaxNoteBytes bytes of UTF-8.
	Text string `json:"text"`
}

// ParseNotePayload decodes and checks the payload of a note record.
func ParseNotePayload(b []byte) (NotePayload, error) {
	var p NotePayload
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("note payload: %w", err)
	}
	switch {
	case strings.TrimSpace(p.Text) == "":
		return p, errors.New(`note payload: want {"text": "..."} with some text`)
	case len(p.Text) > MaxNoteBytes:
		return p, fmt.Errorf("note payload: text of %d bytes, at most %d", len(p.Text), MaxNoteBytes)
	case !utf8.ValidString(p.Text):
		return p, errors.New("note payload: text is not UTF-8")
	}
	return p, nil
}

// Note is a note the hub took from a cluster's outbox.
//
// +kubebuilder:object:generate=false
type Note struct {
	// Cluster is the cluster that sent it.
	Cluster string `json:"cluster"`
	// Key is its outbox record's idempotency key.
	Key string `json:"key"`
	// Text is the note.
	Text string `json:"text"`
	// Created is when the agent put it in its outbox (the agent's clock).
	Created metav1.Time `json:"created"`
	// Received is when the hub applied it (the hub's clock).
	Received metav1.Time `json:"received"`
}

// NoteList is the answer to GET clusters/{name}/notes: the cluster's notes,
// in the order the hub applied them.
//
// +kubebuilder:object:generate=false
type NoteList struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Items are the notes, oldest first.
	Items []Note `json:"items"`
}
