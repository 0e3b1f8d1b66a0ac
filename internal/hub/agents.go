package hub

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/auth"
	"outpost.dev/outpost/internal/placement"
	"outpost.dev/outpost/internal/store"
)

// Limits and defaults of the agent protocol.
const (
	// DefaultJoinTokenTTL is a join token's life when its request names none.
	DefaultJoinTokenTTL = 24 * time.Hour
	// MaxJoinTokenTTL caps a join token's life.
	MaxJoinTokenTTL = 30 * 24 * time.Hour
	// DefaultOfflineAfter is Config.OfflineAfter when zero.
	DefaultOfflineAfter = 60 * time.Second
	// maxOfflineCheckInterval bounds how often the link watcher looks at most.
	maxOfflineCheckInterval = 5 * time.Second
	// expiredTokenRetention is how long expired join tokens stay listed.
	expiredTokenRetention = 7 * 24 * time.Hour
	// maxReportError bounds an error message copied from a report into a status row.
	maxReportError = 1024
)

// ConditionSynced is the Cluster condition the hub sets from each report: True when the
// agent applied the cluster's current desired-state revision.
const ConditionSynced = "Synced"

// unauthenticated is a refusal of a join whose message is shown as is.
type unauthenticated struct{ msg string }

func (e *unauthenticated) Error() string        { return e.msg }
func (e *unauthenticated) Is(target error) bool { return target == auth.ErrUnauthenticated }

// guarded wraps h with the authorization check, for routes that are not resources.
func (s *Server) guarded(write bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r, write); err != nil {
			s.writeAuthError(w, r, err)
			return
		}
		h(w, r)
	}
}

// readJSON decodes the JSON request body into v, refusing unknown fields when strict. It
// writes the error response itself and reports whether it succeeded.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any, strict bool) bool {
	body, ok := s.readBody(w, r)
	if !ok {
		return false
	}
	if err := decodeBody(body, v, strict); err != nil {
		s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "decoding request body: "+err.Error(), nil)
		return false
	}
	return true
}

// decodeBody decodes exactly one JSON value from b into v.
func decodeBody(b []byte, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// handleCreateJoinToken issues a join token (POST jointokens, admin).
func (s *Server) handleCreateJoinToken(w http.ResponseWriter, r *http.Request) {
	var req v1alpha1.JoinTokenRequest
	if !s.readJSON(w, r, &req, true) {
		return
	}
	if err := req.Validate(); err != nil {
		s.writeError(w, r, err)
		return
	}
	// Validate bounds TTLSeconds, so the product cannot overflow.
	jt, err := s.CreateJoinToken(r.Context(), time.Duration(req.TTLSeconds)*time.Second, req.Description)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSONOrYAML(w, r, http.StatusCreated, jt)
}

// CreateJoinToken issues a join token valid for ttl (zero means DefaultJoinTokenTTL; longer
// than MaxJoinTokenTTL is capped) and returns it with its secret, which the hub does not keep.
func (s *Server) CreateJoinToken(ctx context.Context, ttl time.Duration, description string) (v1alpha1.JoinToken, error) {
	switch {
	case ttl <= 0:
		ttl = DefaultJoinTokenTTL
	case ttl > MaxJoinTokenTTL:
		ttl = MaxJoinTokenTTL
	}
	secret, err := auth.NewJoinToken()
	if err != nil {
		return v1alpha1.JoinToken{}, err
	}
	var idb [6]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return v1alpha1.JoinToken{}, fmt.Errorf("generate token id: %w", err)
	}
	now := s.clock.Now().UTC()
	st := store.JoinToken{
		ID:          hex.EncodeToString(idb[:]),
		Hash:        auth.Hash(secret),
		Description: description,
		Created:     now,
		Expires:     now.Add(ttl).Truncate(time.Second),
	}
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		if err := tx.DeleteJoinTokensExpiredBefore(ctx, now.Add(-expiredTokenRetention)); err != nil {
			return err
		}
		return tx.AddJoinToken(ctx, st)
	})
	if err != nil {
		return v1alpha1.JoinToken{}, err
	}
	s.log.InfoContext(ctx, "join token created", "id", st.ID, "expires", st.Expires, "description", description)
	jt := apiJoinToken(st)
	jt.Token = secret
	return jt, nil
}

func apiJoinToken(t store.JoinToken) v1alpha1.JoinToken {
	return v1alpha1.JoinToken{
		APIVersion:  v1alpha1.APIVersion,
		Kind:        v1alpha1.KindJoinToken,
		ID:          t.ID,
		Expires:     metav1.NewTime(t.Expires),
		Description: t.Description,
	}
}

// handleListJoinTokens lists the join tokens without their secrets (GET jointokens, admin).
func (s *Server) handleListJoinTokens(w http.ResponseWriter, r *http.Request) {
	toks, err := s.db.JoinTokens(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	l := v1alpha1.JoinTokenList{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindJoinTokenList, Items: []v1alpha1.JoinToken{}}
	for _, t := range toks {
		l.Items = append(l.Items, apiJoinToken(t))
	}
	s.writeJSONOrYAML(w, r, http.StatusOK, l)
}

// handleDeleteJoinToken revokes a join token (DELETE jointokens/{id}, admin). Clusters that
// joined with it keep their credentials.
func (s *Server) handleDeleteJoinToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	var deleted store.JoinToken
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		toks, err := tx.JoinTokens(ctx)
		if err != nil {
			return err
		}
		for _, t := range toks {
			if t.ID == id {
				deleted = t
				return tx.DeleteJoinToken(ctx, id)
			}
		}
		return fmt.Errorf("join token %q: %w", id, store.ErrNotFound)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.InfoContext(ctx, "join token deleted", "id", id)
	s.writeJSONOrYAML(w, r, http.StatusOK, apiJoinToken(deleted))
}

// handleJoin trades a join token for a cluster credential (POST join, no Authorization).
func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req v1alpha1.JoinRequest
	if !s.readJSON(w, r, &req, true) {
		return
	}
	cred, err := s.Join(r.Context(), req)
	if err != nil {
		var ua *unauthenticated
		if errors.As(err, &ua) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="outpost"`)
			s.writeStatus(w, r, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, ua.msg, nil)
			return
		}
		s.writeError(w, r, err)
		return
	}
	s.writeJSONOrYAML(w, r, http.StatusOK, v1alpha1.JoinResponse{
		APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindJoinResponse, Cluster: req.Cluster, Credential: cred,
		BundleKey: s.BundlePublicKey(),
	})
}

// Join checks req's join token, creates the Cluster req names (or merges req's labels into
// the existing one) with the same consequences as an apply, and issues the cluster a new
// credential, replacing any earlier one. All of it happens in one transaction. A missing,
// unknown or expired token gives an error wrapping auth.ErrUnauthenticated; an invalid
// cluster name or label an *v1alpha1.InvalidError naming the field.
func (s *Server) Join(ctx context.Context, req v1alpha1.JoinRequest) (credential string, err error) {
	if req.Token == "" {
		return "", &unauthenticated{"join request has no token"}
	}
	cred, err := auth.NewClusterCredential()
	if err != nil {
		return "", err
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var tokenID string
	var rejoined bool
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		jt, err := tx.JoinTokenByHash(ctx, auth.Hash(req.Token))
		if errors.Is(err, store.ErrNotFound) {
			return &unauthenticated{"join token not recognised"}
		}
		if err != nil {
			return err
		}
		if !now.Before(jt.Expires) {
			return &unauthenticated{fmt.Sprintf("join token expired at %s", jt.Expires.UTC().Format(time.RFC3339))}
		}
		tokenID = jt.ID
		if err := req.Validate(); err != nil {
			return err
		}
		c := &v1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: req.Cluster}}
		switch old, err := tx.Get(ctx, v1alpha1.KindCluster, req.Cluster); {
		case err == nil:
			c = old.DeepCopyObject().(*v1alpha1.Cluster)
			rejoined, err = tx.HasClusterCredential(ctx, req.Cluster)
			if err != nil {
				return err
			}
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		if len(req.Labels) > 0 && c.Labels == nil {
			c.Labels = make(map[string]string, len(req.Labels))
		}
		for k, v := range req.Labels {
			c.Labels[k] = v
		}
		c.Default()
		if _, _, err := tx.Apply(ctx, c); err != nil {
			return err
		}
		if err := s.reconcileCluster(ctx, tx, c); err != nil {
			return err
		}
		if len(req.BundleKey) == ed25519.PublicKeySize {
			if err := tx.SetClusterBundleKey(ctx, req.Cluster, req.BundleKey); err != nil {
				return err
			}
		}
		return tx.SetClusterCredential(ctx, req.Cluster, auth.Hash(cred), now)
	})
	if err != nil {
		if tokenID != "" || errors.Is(err, auth.ErrUnauthenticated) {
			s.log.WarnContext(ctx, "join refused", "cluster", req.Cluster, "token", tokenID, "err", err)
		}
		return "", err
	}
	s.log.InfoContext(ctx, "cluster joined", "cluster", req.Cluster, "token", tokenID, "credentialRotated", rejoined)
	return cred, nil
}

// handleReport stores an agent's report (POST clusters/{name}/report).
func (s *Server) handleReport(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var rep v1alpha1.AgentReport
	// Lenient: a newer agent's extra fields must not cost the hub its reports.
	if !s.readJSON(w, r, &rep, false) {
		return
	}
	if rep.Cluster == "" {
		rep.Cluster = name
	}
	if rep.Cluster != name {
		s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest,
			fmt.Sprintf("report is for cluster %q but the path names cluster %q", rep.Cluster, name), nil)
		return
	}
	if err := rep.Validate(); err != nil {
		s.writeError(w, r, err)
		return
	}
	resp, err := s.Report(r.Context(), &rep)
	if errors.Is(err, store.ErrNotFound) {
		s.writeStatus(w, r, http.StatusNotFound, metav1.StatusReasonNotFound,
			fmt.Sprintf("cluster %q not found", name), &metav1.StatusDetails{Name: name, Kind: v1alpha1.PluralClusters})
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSONOrYAML(w, r, http.StatusOK, resp)
}

// Report folds an agent's report into the hub's state in one transaction, shared with the
// reports that arrive while the previous one commits (a group commit): the Cluster's
// status becomes rep.Status, with link.lastSeen set to the hub's clock, link.state Connected
// and the Synced condition; and in each ModelDeployment rep.Models names, the row of this
// cluster is updated (rows of deployments that no longer exist or no longer select the
// cluster are left alone). When a row's desired version is not the one the agent reported
// on, only its active version and last contact change: the agent has yet to see the new
// version. A report never changes any cluster's desired state. It returns an error
// wrapping store.ErrNotFound when the cluster does not exist.
func (s *Server) Report(ctx context.Context, rep *v1alpha1.AgentReport) (v1alpha1.ReportResponse, error) {
	p := &pendingReport{rep: rep, done: make(chan struct{})}
	select {
	case s.reports <- p:
	case <-ctx.Done():
		return v1alpha1.ReportResponse{}, ctx.Err()
	case <-s.life.Done():
		return v1alpha1.ReportResponse{}, fmt.Errorf("hub: shutting down: %w", s.life.Err())
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		// The report may still be stored: reports are idempotent.
		return v1alpha1.ReportResponse{}, ctx.Err()
	}
	if p.err == nil && rep.RejectedStale > 0 {
		s.log.DebugContext(ctx, "agent rejected stale desired states", "cluster", rep.Cluster, "count", rep.RejectedStale)
	}
	return p.resp, p.err
}

// pendingReport is a report waiting for the next group commit.
type pendingReport struct {
	rep  *v1alpha1.AgentReport
	done chan struct{} // closed once resp and err are set
	resp v1alpha1.ReportResponse
	err  error
}

// maxReportBatch bounds how many reports one transaction stores. Each batch
// rewrites every deployment its reports name, whose status has a row per
// cluster: with a fleet reporting together, larger batches rewrite them less
// often (at 10,000 clusters, 4,096 reports a batch cost 490 us each to store,
// 512 a batch 740 us).
const maxReportBatch = 4096

// storeReports stores reports until ctx ends, as group commits: every report
// that arrived while the previous transaction ran goes into the next one.
// A fleet's reports then cost a transaction, and one rewrite of each
// ModelDeployment they name, per batch rather than per report.
func (s *Server) storeReports(ctx context.Context) {
	for {
		var batch []*pendingReport
		select {
		case p := <-s.reports:
			batch = append(batch, p)
		case <-ctx.Done():
			return
		}
	more:
		for len(batch) < maxReportBatch {
			select {
			case p := <-s.reports:
				batch = append(batch, p)
			default:
				break more
			}
		}
		s.storeBatch(ctx, batch)
		for _, p := range batch {
			close(p.done)
		}
	}
}

// storeBatch stores a batch of reports in one transaction. A report about an
// unknown cluster fails alone; a storage error fails the whole batch.
func (s *Server) storeBatch(ctx context.Context, batch []*pendingReport) {
	now := metav1.NewTime(s.clock.Now().UTC().Truncate(time.Second))
	var written []*v1alpha1.ModelDeployment // deployments the transaction wrote
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		rows := map[string][]rowReport{} // by deployment
		var order []string
		for _, p := range batch {
			p.resp, p.err = s.storeCluster(ctx, tx, p.rep, now)
			if errors.Is(p.err, store.ErrNotFound) {
				continue
			}
			if p.err != nil {
				return p.err
			}
			for _, m := range p.rep.Models {
				if _, ok := rows[m.Deployment]; !ok {
					order = append(order, m.Deployment)
				}
				rows[m.Deployment] = append(rows[m.Deployment], rowReport{cluster: p.rep.Cluster, m: m})
			}
		}
		written = written[:0]
		for _, d := range order {
			dep, err := s.reportRows(ctx, tx, d, rows[d], now, s.heartbeat())
			if err != nil {
				return err
			}
			if dep != nil {
				written = append(written, dep)
			}
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return err
		}
		for _, p := range batch {
			if p.err == nil {
				p.resp.Revision = rev
			}
		}
		return nil
	})
	if err == nil {
		s.deployments.committed(written)
		for _, d := range written {
			if rolling(d) {
				s.kickRollouts()
				break
			}
		}
	}
	if err != nil {
		for _, p := range batch {
			if p.err == nil || !errors.Is(p.err, store.ErrNotFound) {
				p.resp, p.err = v1alpha1.ReportResponse{}, err
			}
		}
	}
}

// storeCluster folds one report into its Cluster's status.
func (s *Server) storeCluster(ctx context.Context, tx *store.Tx, rep *v1alpha1.AgentReport, now metav1.Time) (v1alpha1.ReportResponse, error) {
	var resp v1alpha1.ReportResponse
	o, err := tx.Get(ctx, v1alpha1.KindCluster, rep.Cluster)
	if err != nil {
		return resp, err
	}
	c := o.DeepCopyObject().(*v1alpha1.Cluster)
	switch rev, _, err := tx.DesiredState(ctx, rep.Cluster); {
	case err == nil:
		resp.DesiredStateRevision = rev
	case !errors.Is(err, store.ErrNotFound):
		return resp, err
	}
	st := *rep.Status.DeepCopy()
	st.Link.LastSeen = &now
	st.Link.State = v1alpha1.LinkConnected
	if old := meta.FindStatusCondition(c.Status.Conditions, ConditionSynced); old != nil {
		meta.RemoveStatusCondition(&st.Conditions, ConditionSynced)
		st.Conditions = append(st.Conditions, *old)
	}
	meta.SetStatusCondition(&st.Conditions, syncedCondition(rep, resp.DesiredStateRevision))
	// A report that says nothing new is a heartbeat: it is written only
	// once the stored lastSeen grows old, so that a fleet reporting
	// every few seconds does not rewrite every row each time.
	if !sameClusterStatus(c.Status, st) || stale(c.Status.Link.LastSeen, now, s.heartbeat()) {
		before := placement.ClusterFacts(c)
		c.Status = st
		if _, err := tx.ReplaceStatus(ctx, c); err != nil {
			return resp, err
		}
		// The variant each deployment sends the cluster depends on its memory and link:
		// choose again when they moved enough to matter.
		if placement.FactsMoved(before, placement.ClusterFacts(c)) {
			if err := s.reconcileCluster(ctx, tx, c); err != nil {
				return resp, err
			}
		}
	}
	return resp, nil
}

// rowReport is one cluster's report on one model.
type rowReport struct {
	cluster string
	m       v1alpha1.ModelReport
}

// syncedCondition says whether the agent applied the cluster's current desired state.
func syncedCondition(rep *v1alpha1.AgentReport, desired int64) metav1.Condition {
	c := metav1.Condition{Type: ConditionSynced}
	if rep.AppliedRevision >= desired {
		c.Status, c.Reason = metav1.ConditionTrue, "Applied"
		c.Message = fmt.Sprintf("applied desired-state revision %d", rep.AppliedRevision)
	} else {
		c.Status, c.Reason = metav1.ConditionFalse, "Behind"
		c.Message = fmt.Sprintf("applied desired-state revision %d; the hub is at %d", rep.AppliedRevision, desired)
	}
	if rep.RejectedStale > 0 {
		c.Message += fmt.Sprintf("; rejected %d stale desired state(s)", rep.RejectedStale)
	}
	return c
}

// heartbeat is how old a stored lastSeen or lastContact may grow before an
// otherwise unchanged report rewrites it: a quarter of the offline
// threshold, at most 15 seconds.
func (s *Server) heartbeat() time.Duration {
	const most = 15 * time.Second
	if s.cfg.OfflineAfter <= 0 {
		return most
	}
	return min(most, s.cfg.OfflineAfter/4)
}

// stale reports whether t is missing or older than every at now.
func stale(t *metav1.Time, now metav1.Time, every time.Duration) bool {
	return t == nil || now.Sub(t.Time) >= every
}

// sameClusterStatus compares two cluster statuses, ignoring when the link
// was last seen and when conditions last moved.
func sameClusterStatus(a, b v1alpha1.ClusterStatus) bool {
	a, b = *a.DeepCopy(), *b.DeepCopy()
	a.Link.LastSeen, b.Link.LastSeen = nil, nil
	for _, cs := range [][]metav1.Condition{a.Conditions, b.Conditions} {
		for i := range cs {
			cs[i].LastTransitionTime = metav1.Time{}
		}
	}
	return equality.Semantic.DeepEqual(a, b)
}

// reportRows updates, in the deployment named d, the row of each reporting
// cluster, and writes the deployment once if any row changed in more than
// its lastContact or a lastContact grew older than every. It returns the
// deployment it wrote, if it did.
func (s *Server) reportRows(ctx context.Context, tx *store.Tx, d string, reps []rowReport, now metav1.Time, every time.Duration) (*v1alpha1.ModelDeployment, error) {
	dep, err := s.deployments.get(ctx, tx, d)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	index := make(map[string]int, len(dep.Status.Clusters))
	for i, row := range dep.Status.Clusters {
		index[row.Cluster] = i
	}
	write := false
	for _, r := range reps {
		i, ok := index[r.cluster]
		if !ok {
			continue // the deployment no longer selects the cluster
		}
		row := &dep.Status.Clusters[i]
		old := *row.DeepCopy()
		m := r.m
		row.ActiveVersion, row.ActiveVariant, row.Runtime, row.Health = m.ActiveVersion, m.ActiveVariant, m.Runtime, m.Health.DeepCopy()
		row.LastContact = &now
		if m.DesiredVersion == "" || row.DesiredVersion == "" || m.DesiredVersion == row.DesiredVersion {
			row.Phase = m.Phase
			row.BytesFetched, row.BytesTotal = m.BytesFetched, m.BytesTotal
			row.Error = truncate(m.Error, maxReportError)
		}
		cmp := *row.DeepCopy()
		cmp.LastContact = old.LastContact
		if !equality.Semantic.DeepEqual(old, cmp) || stale(old.LastContact, now, every) {
			write = true
		} else {
			*row = old
		}
	}
	if !write {
		return nil, nil
	}
	if _, err := tx.ReplaceStatus(ctx, dep); err != nil {
		return nil, err
	}
	return dep, nil
}

// deploymentCache keeps the last committed state of each deployment that
// reports named, decoded: at 10,000 clusters a deployment's status is
// megabytes of JSON, which every group commit of reports would otherwise
// read and decode. An entry is used only while the stored resourceVersion
// is still its own, and entries are added only once committed (a
// resourceVersion of a transaction that rolled back may come again).
type deploymentCache struct {
	mu   sync.Mutex
	deps map[string]*v1alpha1.ModelDeployment // not to be changed: get hands out copies
}

// get returns a copy of deployment d as stored now, which the caller may change.
func (c *deploymentCache) get(ctx context.Context, tx *store.Tx, d string) (*v1alpha1.ModelDeployment, error) {
	rv, err := tx.ResourceVersion(ctx, v1alpha1.KindModelDeployment, d)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	cached := c.deps[d]
	c.mu.Unlock()
	if cached != nil && cached.ResourceVersion == strconv.FormatInt(rv, 10) {
		return cached.DeepCopy(), nil
	}
	o, err := tx.Get(ctx, v1alpha1.KindModelDeployment, d)
	if err != nil {
		return nil, err
	}
	return o.(*v1alpha1.ModelDeployment), nil
}

// committed remembers deployments as a committed transaction stored them; the
// caller gives them up.
func (c *deploymentCache) committed(deps []*v1alpha1.ModelDeployment) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deps == nil {
		c.deps = map[string]*v1alpha1.ModelDeployment{}
	}
	for _, d := range deps {
		c.deps[d.Name] = d
	}
}

// watchLinks marks clusters Disconnected when their agents fall silent, until ctx ends.
func (s *Server) watchLinks(ctx context.Context, every time.Duration) {
	t := s.clock.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			if _, err := s.markOffline(ctx); err != nil && ctx.Err() == nil {
				s.log.ErrorContext(ctx, "mark silent clusters disconnected", "err", err)
			}
		}
	}
}

// markOffline sets link.state Disconnected on every cluster whose agent was last seen more
// than Config.OfflineAfter ago and that is not marked so already. It returns their names.
func (s *Server) markOffline(ctx context.Context) ([]string, error) {
	cutoff := s.clock.Now().Add(-s.cfg.OfflineAfter)
	silent := func(c *v1alpha1.Cluster) bool {
		l := c.Status.Link
		return l.LastSeen != nil && l.LastSeen.Time.Before(cutoff) && l.State != v1alpha1.LinkDisconnected
	}
	objs, _, err := s.db.List(ctx, v1alpha1.KindCluster, nil)
	if err != nil {
		return nil, err
	}
	found := false
	for _, o := range objs {
		found = found || silent(o.(*v1alpha1.Cluster))
	}
	if !found {
		return nil, nil
	}
	var marked []string
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		marked = nil
		objs, err := tx.List(ctx, v1alpha1.KindCluster, nil)
		if err != nil {
			return err
		}
		for _, o := range objs {
			c := o.(*v1alpha1.Cluster)
			if !silent(c) {
				continue
			}
			c.Status.Link.State = v1alpha1.LinkDisconnected
			if _, _, err := tx.UpdateStatus(ctx, c); err != nil {
				return err
			}
			marked = append(marked, c.Name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, name := range marked {
		s.log.InfoContext(ctx, "cluster disconnected", "cluster", name, "silentFor", s.cfg.OfflineAfter)
	}
	return marked, nil
}
