package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/store"
)

// MaxOutboxBytes bounds an outbox batch once decompressed.
const MaxOutboxBytes = 64 << 20

// RecordHandler applies one kind of outbox record for cluster, in the store
// transaction that records the record's outcome: both happen or neither.
// An error wrapping ErrRefused refuses the record for good (the agent drops
// it and counts it); the handler must refuse before it writes anything.
// Any other error fails the whole batch, which the agent sends again.
type RecordHandler func(ctx context.Context, tx *store.Tx, cluster string, rec v1alpha1.OutboxRecord) error

// ErrRefused marks a record the hub will never apply.
var ErrRefused = errors.New("refused")

// handleOutbox applies a batch of outbox records (POST clusters/{name}/outbox):
// each key once, whatever the number of times it arrives.
func (s *Server) handleOutbox(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	wireBytes := len(body)
	switch enc := strings.ToLower(r.Header.Get("Content-Encoding")); enc {
	case "", "identity":
	case "zstd":
		var err error
		if body, err = unzstd(body, MaxOutboxBytes); err != nil {
			code, reason := http.StatusBadRequest, metav1.StatusReasonBadRequest
			if errors.Is(err, errTooLarge) {
				code, reason = http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge
			}
			s.writeStatus(w, r, code, reason, "outbox batch: "+err.Error(), nil)
			return
		}
	default:
		s.writeStatus(w, r, http.StatusUnsupportedMediaType, metav1.StatusReasonUnsupportedMediaType,
			fmt.Sprintf("Content-Encoding %q: the hub reads zstd or none", enc), nil)
		return
	}
	var batch v1alpha1.OutboxBatch
	// Lenient, as reports: a newer agent's extra fields must not cost the hub its records.
	if err := decodeBody(body, &batch, false); err != nil {
		s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "decoding outbox batch: "+err.Error(), nil)
		return
	}
	if batch.Cluster == "" {
		batch.Cluster = name
	}
	if batch.Cluster != name {
		s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest,
			fmt.Sprintf("outbox batch is for cluster %q but the path names cluster %q", batch.Cluster, name), nil)
		return
	}
	if err := batch.Validate(); err != nil {
		s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "outbox batch: "+err.Error(), nil)
		return
	}
	resp, err := s.ApplyOutbox(r.Context(), name, batch.Records)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.writeStatus(w, r, http.StatusNotFound, metav1.StatusReasonNotFound,
			fmt.Sprintf("cluster %q not found", name), &metav1.StatusDetails{Name: name, Kind: v1alpha1.PluralClusters})
	case err != nil && r.Context().Err() == nil:
		s.log.ErrorContext(r.Context(), "outbox batch not applied", "cluster", name, "records", len(batch.Records), "err", err)
		w.Header().Set("Retry-After", "5")
		s.writeStatus(w, r, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable,
			"outbox batch not applied, send it again: "+err.Error(), nil)
	case err == nil:
		s.metrics.countOutbox(name, wireBytes, batch.Records, resp)
		s.writeJSONOrYAML(w, r, http.StatusOK, resp)
	}
}

// ApplyOutbox applies records from cluster in one transaction: a key the
// hub has seen before gets its earlier outcome (Duplicate for one applied);
// a new one goes to its kind's RecordHandler. It returns an error wrapping
// store.ErrNotFound for an unknown cluster, and any handler error that is
// not a refusal, in which case nothing of the batch took effect.
func (s *Server) ApplyOutbox(ctx context.Context, cluster string, records []v1alpha1.OutboxRecord) (v1alpha1.OutboxResponse, error) {
	resp := v1alpha1.OutboxResponse{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindOutboxResponse,
		Results: make([]v1alpha1.OutboxResult, 0, len(records))}
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		resp.Results = resp.Results[:0]
		if _, err := tx.Get(ctx, v1alpha1.KindCluster, cluster); err != nil {
			return err
		}
		for _, rec := range records {
			res, err := s.applyRecord(ctx, tx, cluster, rec)
			if err != nil {
				return fmt.Errorf("record %q (%s): %w", rec.Key, rec.Kind, err)
			}
			resp.Results = append(resp.Results, res)
		}
		return nil
	})
	return resp, err
}

func (s *Server) applyRecord(ctx context.Context, tx *store.Tx, cluster string, rec v1alpha1.OutboxRecord) (v1alpha1.OutboxResult, error) {
	res := v1alpha1.OutboxResult{Key: rec.Key}
	outcome, msg, found, err := tx.OutboxOutcome(ctx, cluster, rec.Key)
	if err != nil {
		return res, err
	}
	if found {
		res.Outcome, res.Message = outcome, msg
		if outcome == v1alpha1.OutboxApplied {
			res.Outcome = v1alpha1.OutboxDuplicate
		}
		return res, nil
	}
	res.Outcome = v1alpha1.OutboxApplied
	if h := s.cfg.Records[rec.Kind]; h == nil {
		res.Outcome = v1alpha1.OutboxRefused
		res.Message = fmt.Sprintf("unknown record kind %q (this hub applies: %s)", rec.Kind, strings.Join(s.recordKinds(), ", "))
	} else if err := h(ctx, tx, cluster, rec); errors.Is(err, ErrRefused) {
		res.Outcome, res.Message = v1alpha1.OutboxRefused, err.Error()
	} else if err != nil {
		return res, err
	}
	return res, tx.PutOutboxOutcome(ctx, cluster, rec.Key, rec.Kind, res.Outcome, res.Message)
}

// recordKinds lists the kinds of outbox records the hub applies.
func (s *Server) recordKinds() []string {
	kinds := make([]string, 0, len(s.cfg.Records))
	for k := range s.cfg.Records {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	if len(kinds) == 0 {
		return []string{"none"}
	}
	return kinds
}

var errTooLarge = errors.New("too large")

// unzstd decompresses b, refusing output beyond limit bytes.
func unzstd(b []byte, limit int64) ([]byte, error) {
	d, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(limit)))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	out, err := io.ReadAll(io.LimitReader(d, limit+1))
	if err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("more than %d bytes decompressed: %w", limit, errTooLarge)
	}
	return out, nil
}
