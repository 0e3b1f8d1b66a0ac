package hub

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/bundle"
	"outpost.dev/outpost/internal/store"
)

// Errors of bundle requests.
var (
	// ErrNoBundleKey: the hub was started without a bundle key.
	ErrNoBundleKey = errors.New("hub: no bundle key: it makes no bundles")
	// ErrRevisionMoved: a cluster's desired state changed since the bundle's blobs were chosen.
	ErrRevisionMoved = errors.New("desired state changed")
)

// BundlePublicKey is the public key of the hub's bundle key; nil without one.
func (s *Server) BundlePublicKey() ed25519.PublicKey {
	if s.cfg.BundleKey == nil {
		return nil
	}
	return s.cfg.BundleKey.Public().(ed25519.PublicKey)
}

// BundleRequest asks the hub to sign a bundle's contents.
type BundleRequest struct {
	// Revisions holds, by cluster, the desired-state revision the blobs
	// were chosen for; the hub refuses when a cluster's changed since.
	Revisions map[string]int64 `json:"revisions"`
	// Blobs are the blobs of the layout.
	Blobs []bundle.Blob `json:"blobs"`
	// Packs are the files carried as chunks.
	Packs []bundle.Pack `json:"packs,omitempty"`
	// Deltas are the files carried as weight deltas.
	Deltas []bundle.Delta `json:"deltas,omitempty"`
}

// SignBundle returns the signed Contents of a bundle for the clusters of
// req: the hub's own desired state of each (which must still have the
// revision req names) and the newest status bundle of each it imported.
func (s *Server) SignBundle(ctx context.Context, req BundleRequest) ([]byte, *bundle.Contents, error) {
	if s.cfg.BundleKey == nil {
		return nil, nil, ErrNoBundleKey
	}
	id := make([]byte, 12)
	rand.Read(id)
	c := &bundle.Contents{ID: hex.EncodeToString(id), Created: s.clock.Now().UTC(), Blobs: req.Blobs, Packs: req.Packs, Deltas: req.Deltas}
	err := s.db.View(ctx, func(tx *store.Tx) error {
		for name, want := range req.Revisions {
			rev, b, err := tx.DesiredState(ctx, name)
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%w: cluster %q has no desired state", bundle.ErrMalformed, name)
			}
			if err != nil {
				return fmt.Errorf("desired state of cluster %q: %w", name, err)
			}
			var doc v1alpha1.DesiredState
			if err := json.Unmarshal(b, &doc); err != nil {
				return fmt.Errorf("desired state of cluster %q: %w", name, err)
			}
			doc.Revision = rev
			if rev != want {
				return fmt.Errorf("%w: desired state of cluster %q is at revision %d, not %d: choose the blobs again", ErrRevisionMoved, name, rev, want)
			}
			_, seq, err := tx.ClusterBundleKey(ctx, name)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			c.Clusters = append(c.Clusters, bundle.ClusterState{Cluster: name, Desired: doc, StatusAck: seq})
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, nil, err
	}
	env, err := bundle.Sign(bundle.PayloadContents, payload, s.cfg.BundleKey)
	return env, c, err
}

// SignParts returns the signed list of a bundle's parts.
func (s *Server) SignParts(p *bundle.Parts) ([]byte, error) {
	if s.cfg.BundleKey == nil {
		return nil, ErrNoBundleKey
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return bundle.Sign(bundle.PayloadParts, payload, s.cfg.BundleKey)
}

// StatusResult says what importing a status bundle did.
type StatusResult struct {
	// Cluster is the cluster the status bundle came from.
	Cluster string `json:"cluster"`
	// Seq is the status bundle's sequence number.
	Seq int64 `json:"seq"`
	// Outbox holds the outcome of each of its records.
	Outbox v1alpha1.OutboxResponse `json:"outbox"`
}

// ImportStatus verifies a status bundle with the key its cluster recorded
// at join and applies it as if the agent had reported online: its report,
// then each outbox record once (the same keys as online, so a record also
// delivered online counts once). A bundle whose sequence number the hub
// imported already is refused (bundle.ErrReplay), as is one no recorded key
// signs (bundle.ErrSignature); both change nothing.
func (s *Server) ImportStatus(ctx context.Context, env []byte) (StatusResult, error) {
	var res StatusResult
	claimed, err := peekCluster(env)
	if err != nil {
		return res, err
	}
	var key []byte
	var seq int64
	err = s.db.View(ctx, func(tx *store.Tx) error {
		var err error
		key, seq, err = tx.ClusterBundleKey(ctx, claimed)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return res, fmt.Errorf("status bundle of cluster %q: %w: the hub recorded no key for it (it joined before bundles, or never)", claimed, bundle.ErrSignature)
	}
	if err != nil {
		return res, err
	}
	payload, _, err := bundle.Verify(env, bundle.PayloadStatus, []ed25519.PublicKey{key})
	if err != nil {
		return res, fmt.Errorf("status bundle of cluster %q: %w", claimed, err)
	}
	st, err := bundle.ParseStatus(payload)
	if err != nil {
		return res, err
	}
	res.Cluster, res.Seq = st.Cluster, st.Seq
	if st.Seq <= seq {
		return res, fmt.Errorf("status bundle %d of cluster %q: %w (the newest imported is %d)", st.Seq, st.Cluster, bundle.ErrReplay, seq)
	}
	if st.Report != nil {
		st.Report.APIVersion, st.Report.Kind = v1alpha1.APIVersion, v1alpha1.KindAgentReport
		if err := st.Report.Validate(); err != nil {
			return res, fmt.Errorf("status bundle report: %w", err)
		}
		if _, err := s.Report(ctx, st.Report); err != nil {
			return res, fmt.Errorf("status bundle report: %w", err)
		}
	}
	if len(st.Records) > 0 {
		if res.Outbox, err = s.ApplyOutbox(ctx, st.Cluster, st.Records); err != nil {
			return res, err
		}
	}
	err = s.db.Update(ctx, func(tx *store.Tx) error { return tx.SetStatusSeq(ctx, st.Cluster, st.Seq) })
	if err == nil {
		s.log.InfoContext(ctx, "status bundle imported", "cluster", st.Cluster, "seq", st.Seq, "records", len(st.Records))
	}
	return res, err
}

// peekCluster reads the cluster a status bundle claims to be from, before
// its signature is checked (to find the key to check it with).
func peekCluster(env []byte) (string, error) {
	var e struct {
		Payload []byte `json:"payload"`
	}
	if err := json.Unmarshal(env, &e); err != nil {
		return "", fmt.Errorf("status bundle: %w: %v", bundle.ErrMalformed, err)
	}
	var st struct {
		Cluster string `json:"cluster"`
	}
	if err := json.Unmarshal(e.Payload, &st); err != nil || st.Cluster == "" {
		return "", fmt.Errorf("status bundle: %w: names no cluster", bundle.ErrMalformed)
	}
	return st.Cluster, nil
}

// handleSignBundle signs a bundle's contents (POST bundles/contents, admin).
func (s *Server) handleSignBundle(w http.ResponseWriter, r *http.Request) {
	var req BundleRequest
	if !s.readJSON(w, r, &req, true) {
		return
	}
	env, _, err := s.SignBundle(r.Context(), req)
	s.writeBundleAnswer(w, r, env, err)
}

// handleSignParts signs a bundle's list of parts (POST bundles/parts, admin).
func (s *Server) handleSignParts(w http.ResponseWriter, r *http.Request) {
	var p bundle.Parts
	if !s.readJSON(w, r, &p, true) {
		return
	}
	env, err := s.SignParts(&p)
	s.writeBundleAnswer(w, r, env, err)
}

// handleImportStatus imports a status bundle (POST bundles/status, admin).
func (s *Server) handleImportStatus(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	res, err := s.ImportStatus(r.Context(), body)
	if err != nil {
		s.writeBundleAnswer(w, r, nil, err)
		return
	}
	s.writeJSONOrYAML(w, r, http.StatusOK, res)
}

func (s *Server) writeBundleAnswer(w http.ResponseWriter, r *http.Request, env []byte, err error) {
	switch {
	case err == nil:
		w.Header().Set("Content-Type", "application/json")
		w.Write(env)
	case errors.Is(err, bundle.ErrReplay), errors.Is(err, ErrRevisionMoved):
		s.writeStatus(w, r, http.StatusConflict, metav1.StatusReasonConflict, err.Error(), nil)
	case errors.Is(err, bundle.ErrSignature), errors.Is(err, bundle.ErrMalformed):
		s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error(), nil)
	case errors.Is(err, ErrNoBundleKey):
		s.writeStatus(w, r, http.StatusNotImplemented, metav1.StatusReasonMethodNotAllowed, err.Error(), nil)
	default:
		s.writeError(w, r, err)
	}
}
