package hub

import (
	"context"
	"fmt"
	"net/http"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/store"
)

// builtinRecords are the kinds of outbox records every hub applies, beside
// those of Config.Records.
func builtinRecords() map[string]RecordHandler {
	return map[string]RecordHandler{v1alpha1.RecordKindNote: applyNote}
}

// applyNote stores a note from the edge; a payload that is not a note is
// refused.
func applyNote(ctx context.Context, tx *store.Tx, cluster string, rec v1alpha1.OutboxRecord) error {
	p, err := v1alpha1.ParseNotePayload(rec.Payload)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return tx.PutNote(ctx, cluster, rec.Key, p.Text, rec.Created.Time)
}

// handleNotes lists the notes a cluster sent (GET clusters/{name}/notes),
// whether or not the cluster still exists.
func (s *Server) handleNotes(w http.ResponseWriter, r *http.Request) {
	list := v1alpha1.NoteList{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindNoteList}
	err := s.db.View(r.Context(), func(tx *store.Tx) error {
		var err error
		list.Items, err = tx.Notes(r.Context(), r.PathValue("name"))
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSONOrYAML(w, r, http.StatusOK, list)
}
