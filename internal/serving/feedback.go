package serving

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"outpost.dev/outpost/internal/feedback"
)

// Feedback: true labels for earlier requests (docs/drift.md, "Feedback").
// A deployment whose spec.monitoring.feedbackSamples is set keeps, through
// its drift monitor and so off the request path, the input and predicted
// class of every request that carries an id (the protocol's optional
// request id) in Config.Feedback. A client that learns the true labels
// later posts them to POST /v2/models/NAME/feedback; they measure the
// serving version's accuracy on recent inputs (status and /metrics) and a
// pipeline's dataset step reads the labelled samples (feedback:NAME).

// FeedbackStore keeps requests' inputs and their labels: a
// *feedback.Store.
type FeedbackStore interface {
	Keep(ctx context.Context, r feedback.Request, limit int) error
	Label(ctx context.Context, deployment, id string, labels []int) (feedback.Labelled, error)
	Accuracy(ctx context.Context, deployment, version string) (feedback.Accuracy, error)
}

// MaxFeedbackBytes bounds the body of a feedback request.
const MaxFeedbackBytes = 1 << 20

// FeedbackRequest is the body of POST /v2/models/NAME/feedback: the true
// labels of the samples of the earlier request ID, in the request's order.
type FeedbackRequest struct {
	ID     string `json:"id"`
	Labels []int  `json:"labels"`
}

// FeedbackResponse answers a feedback request.
type FeedbackResponse struct {
	// ModelName is the deployment; ModelVersion the version that answered
	// the request.
	ModelName    string `json:"model_name"`
	ModelVersion string `json:"model_version"`
	ID           string `json:"id"`
	// Labelled is how many samples were labelled, Correct how many of them
	// the model had predicted right.
	Labelled int `json:"labelled"`
	Correct  int `json:"correct"`
}

// FeedbackStatus is how the monitored version did on the labelled
// samples kept.
type FeedbackStatus struct {
	Labelled int `json:"labelled"`
	Correct  int `json:"correct"`
}

func (s *Server) handleFeedback(w http.ResponseWriter, r *http.Request) {
	var req FeedbackRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxFeedbackBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("feedback body exceeds %d bytes", MaxFeedbackBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "feedback body: "+err.Error()+` (want {"id": "REQUEST-ID", "labels": [CLASS, ...]})`)
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "feedback body: data after the JSON object")
		return
	}
	res, err := s.Feedback(r.Context(), r.PathValue("name"), req)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// Feedback records the true labels of an earlier request to deployment
// (or model) name. The request must have carried an id, and its
// deployment must keep feedback samples.
func (s *Server) Feedback(ctx context.Context, name string, req FeedbackRequest) (FeedbackResponse, error) {
	if req.ID == "" || len(req.ID) > feedback.MaxRequestID {
		return FeedbackResponse{}, &statusError{http.StatusBadRequest, fmt.Sprintf("feedback needs the id of the request (1 to %d bytes)", feedback.MaxRequestID)}
	}
	if len(req.Labels) == 0 {
		return FeedbackResponse{}, &statusError{http.StatusBadRequest, "feedback needs labels: one class per sample of the request"}
	}
	for i, l := range req.Labels {
		if l < 0 || l > 255 {
			return FeedbackResponse{}, &statusError{http.StatusBadRequest, fmt.Sprintf("label %d: %d is not a class from 0 to 255", i, l)}
		}
	}
	s.mu.RLock()
	m, err := s.lookup(name)
	var mon *monitor
	if err == nil && m.cur != nil {
		mon = m.cur.mon.Load()
	}
	s.mu.RUnlock()
	if err != nil {
		return FeedbackResponse{}, err
	}
	if s.cfg.Feedback == nil || mon == nil || mon.keepLimit == 0 {
		return FeedbackResponse{}, &statusError{http.StatusConflict, fmt.Sprintf(
			"deployment %q keeps no requests for feedback: set its spec.monitoring.feedbackSamples", m.deployment)}
	}
	// Requests answered before this call may still wait in the monitor's queue.
	if err := mon.flush(ctx); err != nil {
		return FeedbackResponse{}, err
	}
	l, err := s.cfg.Feedback.Label(ctx, m.deployment, req.ID, req.Labels)
	switch {
	case errors.Is(err, feedback.ErrUnknownRequest):
		return FeedbackResponse{}, &statusError{http.StatusNotFound, fmt.Sprintf(
			"deployment %q keeps no request %q (it carried no id, was not monitored, or newer requests replaced it)", m.deployment, req.ID)}
	case errors.Is(err, feedback.ErrLabelCount):
		return FeedbackResponse{}, &statusError{http.StatusBadRequest, err.Error()}
	case err != nil:
		return FeedbackResponse{}, fmt.Errorf("feedback: %w", err)
	}
	s.notify() // the version's accuracy changed
	return FeedbackResponse{ModelName: m.deployment, ModelVersion: l.Version, ID: req.ID, Labelled: l.Samples, Correct: l.Correct}, nil
}

// keep stores the samples of request id for feedback: their inputs and
// the class the model gave each (the largest output).
func (m *monitor) keep(ctx context.Context, j monitorJob) {
	n := 0
	if len(j.in.Shape) > 0 {
		n = j.in.Shape[0]
	}
	if n <= 0 || len(j.out.Shape) == 0 || j.out.Shape[0] != n || len(j.out.F32)%n != 0 || len(j.out.F32) == 0 {
		return
	}
	classes := len(j.out.F32) / n
	pred := make([]int, n)
	for i := range pred {
		row := j.out.F32[i*classes : (i+1)*classes]
		for k, v := range row {
			if v > row[pred[i]] {
				pred[i] = k
			}
		}
	}
	r := feedback.Request{Deployment: m.deployment, Version: m.version, ID: j.id, Shape: j.in.Shape[1:], X: j.in.F32, Predicted: pred, At: j.at}
	if err := m.feedback.Keep(ctx, r, m.keepLimit); err != nil {
		m.feedbackLost.Add(1)
		m.log.Warn("request not kept for feedback", "id", j.id, "err", err)
	}
}

// flush returns once the monitor has handled every request queued before
// the call, or when it stopped.
func (m *monitor) flush(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case m.queue <- monitorJob{flushed: done}:
	case <-m.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
	case <-m.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// feedbackStatus is the monitored version's accuracy on its labelled
// samples, nil when the deployment keeps none.
func (m *monitor) feedbackStatus() *FeedbackStatus {
	if m.keepLimit == 0 || m.feedback == nil {
		return nil
	}
	a, err := m.feedback.Accuracy(context.Background(), m.deployment, m.version)
	if err != nil {
		m.log.Debug("feedback accuracy", "err", err)
		return nil
	}
	return &FeedbackStatus{Labelled: a.Labelled, Correct: a.Correct}
}
