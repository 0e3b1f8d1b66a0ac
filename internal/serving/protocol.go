package serving

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"outpost.dev/outpost/internal/onnx/interp"
)

// The protocol's operations, shared by the REST API (http.go) and the gRPC
// service (grpc.go): each transport decodes its request, calls one of
// these, and encodes the answer or the error its own way.

// serverName is the server's name in its metadata.
const serverName = "outpost"

// modelMetadata describes the model serving name at version ("" for the
// current one).
func (s *Server) modelMetadata(name, version string) (ModelMetadata, error) {
	sess, dep, err := s.acquire(name, version)
	if err != nil {
		return ModelMetadata{}, err
	}
	defer sess.release()
	return ModelMetadata{
		Name: dep, Versions: []string{sess.version}, Platform: "onnx",
		Inputs: tensorMetadata(sess.inputs), Outputs: tensorMetadata(sess.outputs),
	}, nil
}

// modelReady returns nil when name serves at version ("" for any), else
// why not: a *statusError with 404 when the model or version is unknown,
// 503 while it loads or when it failed to.
func (s *Server) modelReady(name, version string) error {
	sess, _, err := s.acquire(name, version)
	if err != nil {
		return err
	}
	sess.release()
	return nil
}

// decodeFunc decodes a request for a model with the given inputs and
// outputs; its errors are *RequestError.
type decodeFunc func(inputs, outputs []interp.ValueInfo) (*InferRequest, error)

// inferResult is a model's answer to one request, before encoding. The
// caller must release it once encoded.
type inferResult struct {
	sess       *session
	deployment string
	version    string
	id         string
	outputs    []inferOutput // in the order the request asked for
}

// inferOutput is one output of an inferResult.
type inferOutput struct {
	name   string
	binary bool // the request asked for it as binary data (REST)
	t      *interp.Tensor
}

// release ends the result's use of the session that computed it.
func (r *inferResult) release() { r.sess.release() }

// infer answers one inference request: it acquires the session serving
// name at version ("" for the current one), decodes the request against
// that session's inputs and outputs, runs it, and picks the outputs the
// request asks for (all when none). The session stays acquired until the
// result is released, so a swap never closes it under the request. ch,
// the request's charge, takes its decoded inputs once decoded (in place of
// the scratch bytes decoding used) and its outputs once run. lbl gets the
// deployment and version that serve the request, once known. The
// session's drift monitor, if any, gets the input and output it watches.
//
// Errors are *statusError (unknown model or version, model not ready,
// inference failed, invalid output), *RequestError from decode,
// *budgetError when the decoded inputs do not fit, or ctx's error when ctx
// ended during the run.
func (s *Server) infer(ctx context.Context, ch *charge, lbl *requestLabels, name, version string, decode decodeFunc) (_ *inferResult, err error) {
	sess, dep, err := s.acquire(name, version)
	if err != nil {
		return nil, err
	}
	lbl.deployment, lbl.version = dep, sess.version
	ok := false
	start := s.clock.Now()
	defer func() {
		if !ok {
			sess.release()
		}
		outcome := err
		if outcome != nil && ctx.Err() != nil {
			outcome = errCanceled // the client gave up: not the model's failure
		}
		sess.health.observe(s.clock.Now().Sub(start), outcome)
	}()
	req, err := decode(sess.inputs, sess.outputs)
	if err != nil {
		return nil, err
	}
	var inputs int64
	for _, t := range req.Inputs {
		inputs += tensorBytes(t)
	}
	if err := ch.decoded(inputs); err != nil {
		return nil, err
	}
	out, err := sess.Run(ctx, req.Inputs)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &statusError{http.StatusBadRequest, fmt.Sprintf("inference failed: %v", err)}
	}
	want := req.Outputs
	if len(want) == 0 {
		for _, o := range sess.outputs {
			want = append(want, RequestedOutput{Name: o.Name, Binary: req.BinaryOutputs})
		}
	}
	res := &inferResult{sess: sess, deployment: dep, version: sess.version, id: req.ID, outputs: make([]inferOutput, 0, len(want))}
	for _, o := range want {
		t, found := out[o.Name]
		if !found || t == nil {
			return nil, &statusError{http.StatusInternalServerError, fmt.Sprintf("the model produced no output %q", o.Name)}
		}
		if err := t.Validate(); err != nil {
			return nil, &statusError{http.StatusInternalServerError, fmt.Sprintf("output %q: invalid tensor: %v", o.Name, err)}
		}
		if elemSize(t.DType) == 0 {
			return nil, &statusError{http.StatusInternalServerError, fmt.Sprintf("output %q: datatype %s is not one the protocol carries", o.Name, DatatypeName(t.DType))}
		}
		res.outputs = append(res.outputs, inferOutput{name: o.Name, binary: o.Binary || req.BinaryOutputs, t: t})
		ch.add(tensorBytes(t))
	}
	if mon := sess.mon.Load(); mon != nil {
		// The tensors are the request's own, and only read from here on.
		mon.offer(req.Inputs[mon.input], out[mon.output], req.ID, s.clock.Now())
	}
	ok = true
	return res, nil
}

// tensorBytes is the bytes the elements of t take.
func tensorBytes(t *interp.Tensor) int64 { return rawSize(t.DType, t.Len()) }

// errorStatus is the HTTP status of an error of the protocol's operations.
func errorStatus(err error) int {
	var se *statusError
	var be *budgetError
	var re *RequestError
	switch {
	case errors.As(err, &se):
		return se.status
	case errors.As(err, &be):
		return be.status
	case errors.As(err, &re):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// tensorMetadata describes the inputs or outputs of a model.
func tensorMetadata(vs []interp.ValueInfo) []TensorMetadata {
	out := make([]TensorMetadata, len(vs))
	for i, v := range vs {
		shape := v.Shape
		if shape == nil {
			shape = []int{}
		}
		out[i] = TensorMetadata{Name: v.Name, Datatype: DatatypeName(v.DType), Shape: shape}
	}
	return out
}
