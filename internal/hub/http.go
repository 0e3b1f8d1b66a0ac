package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/auth"
	"outpost.dev/outpost/internal/store"
)

const (
	// retryAfterUnavailable is the Retry-After of a 503 answered because the store
	// could not serve a request now.
	retryAfterUnavailable = 2 * time.Second
	defaultPollTimeout    = 30 * time.Second
	maxPollTimeout        = 10 * time.Minute
	watchPageSize         = 500
)

// Handler returns the hub's HTTP handler: the resource API under /apis/ml.outpost.dev/v1alpha1/
// (with the agent protocol: join tokens, join, desired state, reports and outbox records, and
// the drift windows of deployments), the registry under /v2/, a liveness probe at /healthz and
// Prometheus metrics at /metrics (read access, as the resource API).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	if s.cfg.Registry != nil {
		mux.Handle("/v2/", s.cfg.Registry)
	}
	mux.HandleFunc("GET "+v1alpha1.APIPath+"/{plural}", s.authorized(false, s.handleList))
	mux.HandleFunc("POST "+v1alpha1.APIPath+"/{plural}", s.authorized(true, s.handleApply))
	mux.HandleFunc("GET "+v1alpha1.APIPath+"/{plural}/{name}", s.authorized(false, s.handleGet))
	mux.HandleFunc("PUT "+v1alpha1.APIPath+"/{plural}/{name}", s.authorized(true, s.handleApply))
	mux.HandleFunc("DELETE "+v1alpha1.APIPath+"/{plural}/{name}", s.authorized(true, s.handleDelete))
	mux.HandleFunc("PUT "+v1alpha1.APIPath+"/{plural}/{name}/status", s.authorized(true, s.handleStatus))
	mux.HandleFunc("GET "+v1alpha1.APIPath+"/clusters/{name}/desiredstate", s.authorized(false, s.handleDesiredState))
	mux.HandleFunc("GET "+v1alpha1.APIPath+"/modeldeployments/{name}/drift", s.guarded(false, s.handleDriftWindows))
	mux.HandleFunc("GET /metrics", s.guarded(false, s.handleMetrics))
	mux.HandleFunc("POST "+v1alpha1.APIPath+"/clusters/{name}/report", s.guarded(true, s.handleReport))
	mux.HandleFunc("POST "+v1alpha1.APIPath+"/clusters/{name}/outbox", s.guarded(true, s.handleOutbox))
	mux.HandleFunc("GET "+v1alpha1.APIPath+"/clusters/{name}/notes", s.guarded(false, s.handleNotes))
	mux.HandleFunc("POST "+v1alpha1.APIPath+"/jointokens", s.guarded(true, s.handleCreateJoinToken))
	mux.HandleFunc("GET "+v1alpha1.APIPath+"/jointokens", s.guarded(false, s.handleListJoinTokens))
	mux.HandleFunc("DELETE "+v1alpha1.APIPath+"/jointokens/{id}", s.guarded(true, s.handleDeleteJoinToken))
	// Joining needs no Authorization: the join token in the body is the credential.
	mux.HandleFunc("POST "+v1alpha1.APIPath+"/bundles/contents", s.guarded(true, s.handleSignBundle))
	mux.HandleFunc("POST "+v1alpha1.APIPath+"/bundles/parts", s.guarded(true, s.handleSignParts))
	mux.HandleFunc("POST "+v1alpha1.APIPath+"/bundles/status", s.guarded(true, s.handleImportStatus))
	mux.HandleFunc("POST "+v1alpha1.APIPath+"/join", s.handleJoin)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r, r.Method != http.MethodGet && r.Method != http.MethodHead); err != nil {
			s.writeAuthError(w, r, err)
			return
		}
		s.writeStatus(w, r, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("no API at %s %s", r.Method, r.URL.Path), nil)
	})
	return mux
}

func (s *Server) authorize(r *http.Request, write bool) error {
	if s.cfg.Authorize == nil {
		return nil
	}
	return s.cfg.Authorize(r, write)
}

// authorized wraps h with the authorization check and the lookup of {plural}.
func (s *Server) authorized(write bool, h func(http.ResponseWriter, *http.Request, string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.authorize(r, write); err != nil {
			s.writeAuthError(w, r, err)
			return
		}
		plural := r.PathValue("plural")
		if plural == "" {
			plural = v1alpha1.PluralClusters // the desiredstate route names it literally
		}
		kind, ok := v1alpha1.KindForPlural(plural)
		if !ok {
			s.writeStatus(w, r, http.StatusNotFound, metav1.StatusReasonNotFound,
				fmt.Sprintf("unknown resource %q in %s (known: %s)", plural, v1alpha1.APIVersion,
					strings.Join(v1alpha1.Plurals(), ", ")), nil)
			return
		}
		h(w, r, kind)
	}
}

func (s *Server) writeAuthError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, auth.ErrForbidden):
		s.writeStatus(w, r, http.StatusForbidden, metav1.StatusReasonForbidden, err.Error(), nil)
	case errors.Is(err, auth.ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="outpost"`)
		s.writeStatus(w, r, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, err.Error(), nil)
	case errors.Is(err, store.ErrUnavailable):
		// The credential could not be checked now; it may well be valid.
		s.log.WarnContext(r.Context(), "credential not checked: store unavailable", "err", err)
		s.writeUnavailable(w, r, "cannot check the credential now: "+err.Error())
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
	default:
		s.log.ErrorContext(r.Context(), "authorization failed", "err", err)
		s.writeStatus(w, r, http.StatusInternalServerError, metav1.StatusReasonInternalError, "authorization failed", nil)
	}
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request, kind string) {
	obj, err := s.db.Get(r.Context(), kind, r.PathValue("name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, http.StatusOK, obj)
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request, kind string) {
	q := r.URL.Query()
	sel, err := labels.Parse(q.Get("labelSelector"))
	if err != nil {
		s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "labelSelector: "+err.Error(), nil)
		return
	}
	if q.Get("watch") == "true" || q.Get("watch") == "1" {
		s.handleWatch(w, r, kind, sel)
		return
	}
	objs, rev, err := s.db.List(r.Context(), kind, sel)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	list, err := v1alpha1.NewList(kind, objs)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if la, err := meta.ListAccessor(list); err == nil {
		la.SetResourceVersion(strconv.FormatInt(rev, 10))
	}
	s.writeObject(w, r, http.StatusOK, list)
}

// pollParams parses the revision parameter named revParam and timeoutSeconds.
func pollParams(r *http.Request, revParam string) (rev int64, hasRev bool, timeout time.Duration, err error) {
	q := r.URL.Query()
	if v := q.Get(revParam); v != "" {
		rev, err = strconv.ParseInt(v, 10, 64)
		if err != nil || rev < 0 {
			return 0, false, 0, fmt.Errorf("%s: %q is not a non-negative integer", revParam, v)
		}
		hasRev = true
	}
	timeout = defaultPollTimeout
	if v := q.Get("timeoutSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, false, 0, fmt.Errorf("timeoutSeconds: %q is not a non-negative integer", v)
		}
		timeout = min(time.Duration(n)*time.Second, maxPollTimeout)
	}
	return rev, hasRev, timeout, nil
}

// handleWatch answers with the changes after resourceVersion as soon as there is at least one,
// or with an empty list when timeoutSeconds pass.
func (s *Server) handleWatch(w http.ResponseWriter, r *http.Request, kind string, sel labels.Selector) {
	ctx := r.Context()
	after, hasRev, timeout, err := pollParams(r, "resourceVersion")
	if err != nil {
		s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error(), nil)
		return
	}
	if !hasRev {
		if after, err = s.db.Revision(ctx); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	timer := s.clock.NewTimer(timeout)
	defer timer.Stop()
	for {
		changed := s.db.Changed()
		evs, cur, err := s.db.Changes(ctx, kind, after, watchPageSize)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		next := cur
		if len(evs) == watchPageSize {
			next = evs[len(evs)-1].Revision
		}
		var items []v1alpha1.WatchEvent
		for _, ev := range evs {
			if !sel.Empty() && !sel.Matches(labels.Set(ev.Object.GetLabels())) {
				continue
			}
			b, err := json.Marshal(ev.Object)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			items = append(items, v1alpha1.WatchEvent{Type: string(ev.Type), Object: b})
		}
		if len(items) > 0 {
			s.writeWatch(w, r, next, items)
			return
		}
		after = next
		select {
		case <-changed:
		case <-timer.C():
			s.writeWatch(w, r, after, nil)
			return
		case <-s.life.Done():
			s.writeWatch(w, r, after, nil)
			return
		case <-ctx.Done():
			return
		}
	}
}

func (s *Server) writeWatch(w http.ResponseWriter, r *http.Request, rev int64, items []v1alpha1.WatchEvent) {
	if items == nil {
		items = []v1alpha1.WatchEvent{}
	}
	l := &v1alpha1.WatchEventList{
		TypeMeta: metav1.TypeMeta{APIVersion: v1alpha1.APIVersion, Kind: v1alpha1.KindWatchEventList},
		ListMeta: metav1.ListMeta{ResourceVersion: strconv.FormatInt(rev, 10)},
		Items:    items,
	}
	s.writeJSONOrYAML(w, r, http.StatusOK, l)
}

// handleDesiredState serves a cluster's desired state once its revision is above after, and
// answers 304 Not Modified when timeoutSeconds pass without that.
func (s *Server) handleDesiredState(w http.ResponseWriter, r *http.Request, _ string) {
	ctx := r.Context()
	name := r.PathValue("name")
	after, _, timeout, err := pollParams(r, "after")
	if err != nil {
		s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, err.Error(), nil)
		return
	}
	timer := s.clock.NewTimer(timeout)
	defer timer.Stop()
	// wait blocks until the cluster's desired state may have changed. It
	// reports false when the poll is over: timed out or the hub stopping
	// (answered 304), or the client gone.
	wait := func(changed <-chan struct{}) bool {
		select {
		case <-changed:
			return true
		case <-timer.C():
		case <-s.life.Done():
		case <-ctx.Done():
			return false
		}
		w.WriteHeader(http.StatusNotModified)
		return false
	}
	for {
		// Wake only for this cluster's changes: with a fleet long-polling,
		// waking every poll on every write (each status report is one)
		// costs a read per poll per write.
		changed, known, haveRev := s.db.DesiredChanged(name)
		if haveRev && known <= after {
			if !wait(changed) {
				return
			}
			continue
		}
		rev, doc, err := s.db.DesiredState(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			s.writeStatus(w, r, http.StatusNotFound, metav1.StatusReasonNotFound,
				fmt.Sprintf("cluster %q not found", name), &metav1.StatusDetails{Name: name, Kind: v1alpha1.PluralClusters})
			return
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if rev > after {
			var ds v1alpha1.DesiredState
			if err := json.Unmarshal(doc, &ds); err != nil {
				s.writeError(w, r, fmt.Errorf("decode stored desired state: %w", err))
				return
			}
			ds.Revision = rev
			w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(rev, 10)))
			s.writeJSONOrYAML(w, r, http.StatusOK, ds)
			return
		}
		if !wait(changed) {
			return
		}
	}
}

// readBody reads the request body up to MaxBodyBytes. It writes the error
// response itself (413 for a body over the limit) and reports whether it succeeded.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			s.writeStatus(w, r, http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge,
				fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit), nil)
			return nil, false
		}
		s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "reading request body: "+err.Error(), nil)
		return nil, false
	}
	return body, true
}

// readObject reads and decodes exactly one object of kind from the request body. It writes
// the error response itself and returns nil on failure.
func (s *Server) readObject(w http.ResponseWriter, r *http.Request, kind string) v1alpha1.Object {
	body, ok := s.readBody(w, r)
	if !ok {
		return nil
	}
	objs, err := v1alpha1.Decode(body)
	if err != nil {
		s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest, "decoding request body: "+err.Error(), nil)
		return nil
	}
	if len(objs) != 1 {
		s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest,
			fmt.Sprintf("request body must hold exactly one object, it holds %d", len(objs)), nil)
		return nil
	}
	obj := objs[0]
	if got := v1alpha1.KindOf(obj); got != kind {
		s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest,
			fmt.Sprintf("body is a %s but the path is for %s", got, kind), nil)
		return nil
	}
	if name := r.PathValue("name"); name != "" {
		if obj.GetName() == "" {
			obj.SetName(name)
		}
		if obj.GetName() != name {
			s.writeStatus(w, r, http.StatusBadRequest, metav1.StatusReasonBadRequest,
				fmt.Sprintf("metadata.name %q does not match the name %q in the path", obj.GetName(), name), nil)
			return nil
		}
	}
	return obj
}

// handleApply creates or updates the object in the body (PUT {plural}/{name} or POST {plural}).
func (s *Server) handleApply(w http.ResponseWriter, r *http.Request, kind string) {
	obj := s.readObject(w, r, kind)
	if obj == nil {
		return
	}
	obj.Default()
	if err := obj.Validate(); err != nil {
		s.writeError(w, r, err)
		return
	}
	stored, res, err := s.apply(r.Context(), obj)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	code := http.StatusOK
	if res == store.Created {
		code = http.StatusCreated
	}
	s.writeObject(w, r, code, stored)
}

// apply stores obj and its consequences in one transaction. A ModelDeployment whose version
// does not resolve (or lacks a required signature) is refused with an *v1alpha1.InvalidError,
// and so are a Pipeline with a step no selected cluster can hold and a PipelineRun the hub
// cannot place (checkPipeline, checkRun).
func (s *Server) apply(ctx context.Context, obj v1alpha1.Object) (v1alpha1.Object, store.ApplyResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var res ResolvedModel
	d, isDeployment := obj.(*v1alpha1.ModelDeployment)
	if isDeployment {
		var err error
		if res, err = s.resolve(ctx, d); err != nil {
			return nil, store.Unchanged, resolutionError(d, err)
		}
	}
	if j, ok := obj.(*v1alpha1.FederatedJob); ok {
		if err := s.checkFederatedJob(ctx, j); err != nil {
			return nil, store.Unchanged, err
		}
		defer s.fl.wake()
	}
	if _, ok := obj.(*v1alpha1.CompressionPolicy); ok {
		defer s.wakeCompression()
	}
	var stored v1alpha1.Object
	var result store.ApplyResult
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		var err error
		switch o := obj.(type) {
		case *v1alpha1.Pipeline:
			err = checkPipeline(ctx, tx, o)
		case *v1alpha1.PipelineRun:
			err = checkRun(ctx, tx, o)
		case *v1alpha1.FederatedJob:
			err = checkFederatedChange(ctx, tx, o)
		}
		if err != nil {
			return err
		}
		if stored, result, err = tx.Apply(ctx, obj); err != nil {
			return err
		}
		if isDeployment {
			cp := stored.DeepCopyObject().(*v1alpha1.ModelDeployment)
			setResolved(cp, res, nil)
			if _, _, err := tx.UpdateStatus(ctx, cp); err != nil {
				return err
			}
		}
		if err := s.reconcile(ctx, tx); err != nil {
			return err
		}
		stored, err = tx.Get(ctx, v1alpha1.KindOf(obj), obj.GetName())
		return err
	})
	if err != nil {
		return nil, store.Unchanged, err
	}
	return stored, result, nil
}

// handleStatus replaces the status of a resource (PUT {plural}/{name}/status).
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request, kind string) {
	obj := s.readObject(w, r, kind)
	if obj == nil {
		return
	}
	ctx := r.Context()
	s.mu.Lock()
	defer s.mu.Unlock()
	var stored v1alpha1.Object
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		if _, _, err := tx.UpdateStatus(ctx, obj); err != nil {
			return err
		}
		if err := s.reconcile(ctx, tx); err != nil {
			return err
		}
		var err error
		stored, err = tx.Get(ctx, kind, obj.GetName())
		return err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, http.StatusOK, stored)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request, kind string) {
	ctx := r.Context()
	s.mu.Lock()
	defer s.mu.Unlock()
	var deleted v1alpha1.Object
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		var err error
		if deleted, err = tx.Delete(ctx, kind, r.PathValue("name")); err != nil {
			return err
		}
		switch kind {
		case v1alpha1.KindCluster:
			// A deleted cluster's agent must join again.
			if err := tx.DeleteClusterCredential(ctx, deleted.GetName()); err != nil {
				return err
			}
			if err := tx.DeleteDriftWindows(ctx, "", deleted.GetName()); err != nil {
				return err
			}
		case v1alpha1.KindFederatedJob:
			// A job created again under the name starts afresh; its clusters stop.
			s.fl.forget(deleted.GetName())
			if err := tx.DeleteFLSnapshot(ctx, deleted.GetName()); err != nil {
				return err
			}
			if _, err := tx.SetFLMessages(ctx, deleted.GetName(), nil); err != nil {
				return err
			}
		case v1alpha1.KindModelDeployment:
			// A deployment applied again under the name starts afresh.
			if err := tx.DeleteDriftWindows(ctx, deleted.GetName(), ""); err != nil {
				return err
			}
			d := deleted.(*v1alpha1.ModelDeployment)
			for _, r := range d.Status.Clusters {
				err := s.queueDriftAlerts(ctx, tx, driftChange{d: d, cluster: r.Cluster, old: r.Drift, when: s.clock.Now(),
					why: "the deployment was deleted"})
				if err != nil {
					return err
				}
			}
		}
		return s.reconcile(ctx, tx)
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeObject(w, r, http.StatusOK, deleted)
}

// writeError maps err to a Kubernetes-style Status response.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var inv *v1alpha1.InvalidError
	switch {
	case errors.As(err, &inv):
		details := &metav1.StatusDetails{Name: inv.Name, Kind: inv.Kind}
		for _, fe := range inv.Errs {
			details.Causes = append(details.Causes, metav1.StatusCause{
				Type: metav1.CauseType(fe.Type), Message: fe.ErrorBody(), Field: fe.Field,
			})
		}
		s.writeStatus(w, r, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, inv.Error(), details)
	case errors.Is(err, store.ErrNotFound):
		s.writeStatus(w, r, http.StatusNotFound, metav1.StatusReasonNotFound, err.Error(), nil)
	case errors.Is(err, store.ErrConflict):
		s.writeStatus(w, r, http.StatusConflict, metav1.StatusReasonConflict, err.Error(), nil)
	case errors.Is(err, store.ErrCompacted):
		s.writeStatus(w, r, http.StatusGone, metav1.StatusReasonExpired, err.Error()+"; list again", nil)
	case errors.Is(err, store.ErrUnavailable):
		s.log.WarnContext(r.Context(), "store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		s.writeUnavailable(w, r, err.Error())
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
	default:
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		s.writeStatus(w, r, http.StatusInternalServerError, metav1.StatusReasonInternalError, "internal error: "+err.Error(), nil)
	}
}

// writeUnavailable answers 503 Service Unavailable with Retry-After: the hub could not
// serve the request now, and the same request may succeed later.
func (s *Server) writeUnavailable(w http.ResponseWriter, r *http.Request, msg string) {
	secs := int32(retryAfterUnavailable / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(int(secs)))
	s.writeStatus(w, r, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, msg+"; retry later",
		&metav1.StatusDetails{RetryAfterSeconds: secs})
}

func (s *Server) writeStatus(w http.ResponseWriter, r *http.Request, code int, reason metav1.StatusReason, msg string, details *metav1.StatusDetails) {
	st := &metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  msg,
		Reason:   reason,
		Details:  details,
		Code:     int32(code),
	}
	s.writeJSONOrYAML(w, r, code, st)
}

func (s *Server) writeObject(w http.ResponseWriter, r *http.Request, code int, obj runtime.Object) {
	v1alpha1.SetTypeMeta(obj)
	s.writeJSONOrYAML(w, r, code, obj)
}

// writeJSONOrYAML writes v as YAML when the client accepts application/yaml, else as JSON.
func (s *Server) writeJSONOrYAML(w http.ResponseWriter, r *http.Request, code int, v any) {
	b, err := json.Marshal(v)
	ct := "application/json"
	if err == nil && strings.Contains(r.Header.Get("Accept"), "application/yaml") {
		b, err = yaml.JSONToYAML(b)
		ct = "application/yaml"
	}
	if err != nil {
		s.log.ErrorContext(r.Context(), "encode response", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if ct == "application/json" {
		b = append(b, '\n')
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
