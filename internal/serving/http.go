package serving

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

	"outpost.dev/outpost/internal/onnx/interp"
)

// HeaderInferenceContentLength is the binary tensor data extension's
// header: the length of the JSON object that starts the body.
const HeaderInferenceContentLength = "Inference-Header-Content-Length"

// Protocol response objects.
type (
	// ServerMetadata answers GET /v2.
	ServerMetadata struct {
		Name       string   `json:"name"`
		Version    string   `json:"version"`
		Extensions []string `json:"extensions"`
	}
	// TensorMetadata describes a model input or output.
	TensorMetadata struct {
		Name     string `json:"name"`
		Datatype string `json:"datatype"`
		Shape    []int  `json:"shape"`
	}
	// ModelMetadata answers GET /v2/models/{name}[/versions/{v}].
	ModelMetadata struct {
		Name     string           `json:"name"`
		Versions []string         `json:"versions,omitempty"`
		Platform string           `json:"platform"`
		Inputs   []TensorMetadata `json:"inputs"`
		Outputs  []TensorMetadata `json:"outputs"`
	}
	// InferResponse answers POST .../infer.
	InferResponse struct {
		ModelName    string         `json:"model_name"`
		ModelVersion string         `json:"model_version,omitempty"`
		ID           string         `json:"id,omitempty"`
		Outputs      []OutputTensor `json:"outputs"`
	}
	// OutputTensor is one output of an InferResponse. Data holds the
	// elements flat in row-major order, unless the output is binary.
	OutputTensor struct {
		Name       string          `json:"name"`
		Datatype   string          `json:"datatype"`
		Shape      []int           `json:"shape"`
		Parameters map[string]any  `json:"parameters,omitempty"`
		Data       json.RawMessage `json:"data,omitempty"`
	}
	// ErrorResponse is the protocol's error object.
	ErrorResponse struct {
		Error string `json:"error"`
	}
)

// Handler returns the Open Inference Protocol v2 REST API of the server.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"live": true})
	})
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, r *http.Request) {
		if !s.Ready() {
			writeError(w, http.StatusServiceUnavailable, "not ready: models are loading")
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"ready": true})
	})
	mux.HandleFunc("GET /v2", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, ServerMetadata{Name: serverName, Version: s.version, Extensions: []string{"binary_tensor_data"}})
	})
	mux.HandleFunc("GET /v2/models/{name}", s.handleMetadata)
	mux.HandleFunc("GET /v2/models/{name}/versions/{version}", s.handleMetadata)
	mux.HandleFunc("GET /v2/models/{name}/ready", s.handleModelReady)
	mux.HandleFunc("GET /v2/models/{name}/versions/{version}/ready", s.handleModelReady)
	mux.HandleFunc("POST /v2/models/{name}/infer", s.handleInfer)
	mux.HandleFunc("POST /v2/models/{name}/versions/{version}/infer", s.handleInfer)
	mux.HandleFunc("POST /v2/models/{name}/feedback", s.handleFeedback)
	mux.Handle("GET /metrics", s.metrics.handler(s))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// Serve answers requests on ln until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return serveHTTP(ctx, ln, s.Handler())
}

// serveHTTP answers requests on ln with h until ctx ends, then shuts down
// gracefully.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler) error {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// shutdownTimeout bounds how long a stopping server waits for the
// requests in flight.
const shutdownTimeout = 10 * time.Second

func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) {
	md, err := s.modelMetadata(r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		writeStatusError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, md)
}

func (s *Server) handleModelReady(w http.ResponseWriter, r *http.Request) {
	if err := s.modelReady(r.PathValue("name"), r.PathValue("version")); err != nil {
		writeStatusError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": r.PathValue("name"), "ready": true})
}

func (s *Server) handleInfer(rw http.ResponseWriter, r *http.Request) {
	start := s.clock.Now()
	w := &statusWriter{ResponseWriter: rw}
	var lbl requestLabels
	defer func() { s.metrics.observe(lbl, protocolREST, httpCode(w.code), s.clock.Now().Sub(start)) }()
	if r.ContentLength > s.cfg.MaxRequestBytes {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body of %d bytes exceeds the limit of %d", r.ContentLength, s.cfg.MaxRequestBytes))
		return
	}
	jsonLen := int64(-1)
	if h := r.Header.Get(HeaderInferenceContentLength); h != "" {
		n, err := strconv.ParseInt(h, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("%s %q is not a byte count", HeaderInferenceContentLength, h))
			return
		}
		jsonLen = n
	}
	ch := s.budget.charge()
	defer ch.close()
	if r.ContentLength >= 0 {
		// Before a byte of the body is read: the body, and what decoding it takes.
		scratch := decodeScratch(r.ContentLength, jsonLen)
		if err := ch.take(r.ContentLength+scratch, scratch); err != nil {
			writeStatusError(w, err)
			return
		}
	}
	body, err := readBody(rw, r, s.cfg.MaxRequestBytes, ch) // rw: too large a body closes the connection
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds the limit of %d bytes", s.cfg.MaxRequestBytes))
		case retryAfterOf(err) > 0 || errorStatus(err) == http.StatusRequestEntityTooLarge:
			writeStatusError(w, err)
		default:
			writeError(w, http.StatusBadRequest, "read request body: "+err.Error())
		}
		return
	}
	if r.ContentLength < 0 {
		scratch := decodeScratch(int64(len(body)), jsonLen)
		if err := ch.take(scratch, scratch); err != nil {
			writeStatusError(w, err)
			return
		}
	}
	res, err := s.infer(r.Context(), ch, &lbl, r.PathValue("name"), r.PathValue("version"), func(inputs, outputs []interp.ValueInfo) (*InferRequest, error) {
		req, err := DecodeRequest(body, jsonLen, inputs, outputs, s.lim)
		body = nil // garbage from here on
		return req, err
	})
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away
		}
		writeStatusError(w, err)
		return
	}
	defer res.release()
	writeInferResponse(w, res, ch)
}

// readBody reads the request body, at most limit bytes. A body of unknown
// length is charged to ch as it is read; one of known length was charged
// before.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, ch *charge) ([]byte, error) {
	rd := http.MaxBytesReader(w, r.Body, limit)
	if r.ContentLength >= 0 {
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(rd, buf); err != nil {
			return nil, err
		}
		// Content-Length is exact: nothing may follow.
		return buf, nil
	}
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			// Grow by doubling, to no more than one byte over the limit,
			// which the reader refuses.
			grow := min(max(int64(cap(buf)), 4096), limit+1-int64(cap(buf)))
			if err := ch.take(grow, 0); err != nil {
				return nil, err
			}
			buf = append(make([]byte, 0, int64(cap(buf))+grow), buf...)
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case errors.Is(err, io.EOF):
			return buf, nil
		case err != nil:
			return nil, err
		}
	}
}

// writeInferResponse encodes the outputs of res, each as JSON data or as
// binary tensor data, as the request asked, and charges the encoded answer
// to ch.
func writeInferResponse(w http.ResponseWriter, res *inferResult, ch *charge) {
	resp := InferResponse{ModelName: res.deployment, ModelVersion: res.version, ID: res.id, Outputs: make([]OutputTensor, 0, len(res.outputs))}
	var bin []byte
	hasBin := false
	for _, o := range res.outputs {
		ot := OutputTensor{Name: o.name, Datatype: DatatypeName(o.t.DType), Shape: append([]int{}, o.t.Shape...)}
		if o.binary {
			hasBin = true
			n := len(bin)
			bin = appendBinary(bin, o.t)
			ot.Parameters = map[string]any{"binary_data_size": len(bin) - n}
		} else {
			ot.Data = appendJSONData(nil, o.t)
		}
		resp.Outputs = append(resp.Outputs, ot)
	}
	js, err := json.Marshal(resp)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encode response: "+err.Error())
		return
	}
	ch.add(int64(len(js) + len(bin)))
	if !hasBin {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(js)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(js)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set(HeaderInferenceContentLength, strconv.Itoa(len(js)))
	w.Header().Set("Content-Length", strconv.Itoa(len(js)+len(bin)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(js)
	_, _ = w.Write(bin)
}

// appendJSONData appends t's elements as a flat JSON array. Floats that
// JSON cannot hold (NaN, infinities) are written as null.
func appendJSONData(b []byte, t *interp.Tensor) []byte {
	b = append(b, '[')
	n := t.Len()
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		switch t.DType {
		case interp.Float32:
			v := float64(t.F32[i])
			if math.IsNaN(v) || math.IsInf(v, 0) {
				b = append(b, "null"...)
			} else {
				b = strconv.AppendFloat(b, v, 'g', -1, 32)
			}
		case interp.Uint8:
			b = strconv.AppendUint(b, uint64(t.U8[i]), 10)
		case interp.Int8:
			b = strconv.AppendInt(b, int64(t.I8[i]), 10)
		case interp.Int32:
			b = strconv.AppendInt(b, int64(t.I32[i]), 10)
		case interp.Int64:
			b = strconv.AppendInt(b, t.I64[i], 10)
		case interp.Bool:
			b = strconv.AppendBool(b, t.B[i])
		}
	}
	return append(b, ']')
}

// appendBinary appends t's elements little-endian, as the binary tensor
// data extension lays them out.
func appendBinary(b []byte, t *interp.Tensor) []byte {
	le := binary.LittleEndian
	switch t.DType {
	case interp.Float32:
		for _, v := range t.F32 {
			b = le.AppendUint32(b, math.Float32bits(v))
		}
	case interp.Uint8:
		b = append(b, t.U8...)
	case interp.Int8:
		for _, v := range t.I8 {
			b = append(b, byte(v))
		}
	case interp.Int32:
		for _, v := range t.I32 {
			b = le.AppendUint32(b, uint32(v))
		}
	case interp.Int64:
		for _, v := range t.I64 {
			b = le.AppendUint64(b, uint64(v))
		}
	case interp.Bool:
		for _, v := range t.B {
			if v {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		}
	}
	return b
}

// writeStatusError answers with the protocol's error object and the status
// of err (see errorStatus), and Retry-After when trying again later helps.
func writeStatusError(w http.ResponseWriter, err error) {
	if d := retryAfterOf(err); d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(max(d.Round(time.Second), time.Second)/time.Second)))
	}
	writeError(w, errorStatus(err), err.Error())
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, ErrorResponse{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
