package serving

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/testenv"
)

// The tests here run the server with fakeRuntime, whose sessions compute a
// simple known function, so that the protocol, errors and swaps are tested
// apart from any real runtime. real_test.go serves a real ONNX model.

// fakeRuntime loads "model files" whose content is a float scale, or
// "unsupported" / "broken" to fail the way a real runtime does, or "panic"
// for sessions whose Run panics.
type fakeRuntime struct {
	name string
	gate chan struct{} // when set, Load waits for it

	mu       sync.Mutex
	sessions []*fakeSession
}

func (r *fakeRuntime) Name() string { return r.name }

func (r *fakeRuntime) Load(ctx context.Context, path string) (engine.Session, error) {
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := strings.TrimSpace(string(b))
	if s == "unsupported" && r.name == engine.RuntimeONNXRuntime {
		s = "7" // ONNX Runtime has the operator
	}
	switch s {
	case "unsupported":
		return nil, fmt.Errorf("unsupported operators: Foo (node n1): %w", interp.ErrUnsupported)
	case "broken":
		return nil, errors.New("malformed model")
	case "panic":
		return &fakeSession{scale: 1, runtime: r.name, panics: true}, nil
	default:
		scale, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return nil, err
		}
		fs := &fakeSession{scale: float32(scale), runtime: r.name}
		r.mu.Lock()
		r.sessions = append(r.sessions, fs)
		r.mu.Unlock()
		return fs, nil
	}
}

func (r *fakeRuntime) all() []*fakeSession {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*fakeSession(nil), r.sessions...)
}

// fakeSession has input x FP32 [-1,4] and outputs y FP32 [-1,2] (the row
// sum times scale, and scale) and class INT64 [-1] (the argmax of the row).
type fakeSession struct {
	scale   float32
	runtime string
	block   chan struct{} // when set, Run waits for it
	panics  bool          // Run panics

	running atomic.Int64
	closes  atomic.Int64
	misuse  atomic.Int64 // runs on a closed session, or closes while running
}

func (s *fakeSession) Inputs() []interp.ValueInfo {
	return []interp.ValueInfo{{Name: "x", DType: interp.Float32, Shape: []int{-1, 4}}}
}

func (s *fakeSession) Outputs() []interp.ValueInfo {
	return []interp.ValueInfo{
		{Name: "y", DType: interp.Float32, Shape: []int{-1, 2}},
		{Name: "class", DType: interp.Int64, Shape: []int{-1}},
	}
}

func (s *fakeSession) Run(ctx context.Context, in map[string]*interp.Tensor) (map[string]*interp.Tensor, error) {
	s.running.Add(1)
	defer s.running.Add(-1)
	if s.closes.Load() > 0 {
		s.misuse.Add(1)
		return nil, errors.New("run on a closed session")
	}
	if s.block != nil {
		<-s.block
	}
	if s.panics {
		panic("fake runtime failure")
	}
	x := in["x"]
	n := x.Shape[0]
	y := interp.New(interp.Float32, n, 2)
	cls := interp.New(interp.Int64, n)
	for i := range n {
		row := x.F32[4*i : 4*i+4]
		var sum float32
		best := 0
		for j, v := range row {
			sum += v
			if v > row[best] {
				best = j
			}
		}
		y.F32[2*i], y.F32[2*i+1] = sum*s.scale, s.scale
		cls.I64[i] = int64(best)
	}
	return map[string]*interp.Tensor{"y": y, "class": cls}, nil
}

func (s *fakeSession) Close() error {
	if s.running.Load() > 0 {
		s.misuse.Add(1)
	}
	s.closes.Add(1)
	return nil
}

// harness is a Server with fake runtimes behind an httptest server.
type harness struct {
	t      testing.TB
	dir    string
	goRT   *fakeRuntime
	ortRT  *fakeRuntime
	srv    *Server
	http   *httptest.Server
	status chan struct{}
}

func newHarness(t testing.TB, withORT bool, maxBytes int64, opts ...func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), goRT: &fakeRuntime{name: engine.RuntimeGo}, status: make(chan struct{}, 1)}
	cfg := Config{Go: h.goRT, Version: "test", MaxRequestBytes: maxBytes, Logger: slog.New(slog.DiscardHandler), PortHost: "127.0.0.1",
		OnStatus: func([]ModelStatus) {
			select {
			case h.status <- struct{}{}:
			default:
			}
		}}
	if withORT {
		h.ortRT = &fakeRuntime{name: engine.RuntimeONNXRuntime}
		cfg.ONNXRuntime = h.ortRT
	}
	for _, o := range opts {
		o(&cfg)
	}
	h.srv = New(cfg)
	h.http = httptest.NewUnstartedServer(h.srv.Handler())
	h.http.Config.ErrorLog = log.New(io.Discard, "", 0) // panics of runs that panic on purpose
	h.http.Start()
	t.Cleanup(func() {
		h.http.Close()
		h.srv.Close()
	})
	return h
}

// active writes a model file with content and returns a Model for it.
func (h *harness) active(dep, model, version, content string, rt v1alpha1.ServingRuntime) Model {
	h.t.Helper()
	p := filepath.Join(h.dir, dep+"-"+version+".blob")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		h.t.Fatal(err)
	}
	return Model{Deployment: dep, Model: model, Version: version, Digest: "sha256:" + dep + version + content,
		Files: map[string]string{"model.onnx": p, "README.md": p + ".md"}, Serving: v1alpha1.Serving{Runtime: rt}}
}

// waitStatus waits until the deployment's status satisfies ok.
func (h *harness) waitStatus(dep string, ok func(ModelStatus) bool) ModelStatus {
	h.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for _, st := range h.srv.Status() {
			if st.Deployment == dep && ok(st) {
				return st
			}
		}
		select {
		case <-h.status:
		case <-deadline:
			h.t.Fatalf("status of %s never satisfied the condition: %+v", dep, h.srv.Status())
		}
	}
}

func (h *harness) waitVersion(dep, version string) ModelStatus {
	h.t.Helper()
	return h.waitStatus(dep, func(st ModelStatus) bool { return st.Version == version && st.State == StateReady })
}

// do sends a request and returns the status and body.
func (h *harness) do(method, path string, body []byte, header http.Header) (int, http.Header, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.http.URL+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := h.http.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

const goodRequest = `{"id":"r1","inputs":[{"name":"x","shape":[2,4],"datatype":"FP32","data":[[1,2,3,4],[4,3,2,1]]}]}`

// infer posts goodRequest to path and checks the answer.
func (h *harness) inferOK(path string, wantScale float32) InferResponse {
	h.t.Helper()
	code, _, b := h.do("POST", path, []byte(goodRequest), nil)
	if code != http.StatusOK {
		h.t.Fatalf("POST %s: %d %s", path, code, b)
	}
	var r InferResponse
	if err := json.Unmarshal(b, &r); err != nil {
		h.t.Fatalf("response %s: %v", b, err)
	}
	var y []float32
	var cls []int64
	if len(r.Outputs) != 2 || json.Unmarshal(r.Outputs[0].Data, &y) != nil || json.Unmarshal(r.Outputs[1].Data, &cls) != nil {
		h.t.Fatalf("outputs %s", b)
	}
	if want := []float32{10 * wantScale, wantScale, 10 * wantScale, wantScale}; fmt.Sprint(y) != fmt.Sprint(want) {
		h.t.Errorf("y = %v, want %v", y, want)
	}
	if fmt.Sprint(cls) != "[3 0]" || r.Outputs[1].Datatype != "INT64" || fmt.Sprint(r.Outputs[1].Shape) != "[2]" {
		h.t.Errorf("class output %+v", r.Outputs[1])
	}
	return r
}

func TestHealthAndMetadata(t *testing.T) {
	h := newHarness(t, false, 0)
	if code, _, _ := h.do("GET", "/v2/health/live", nil, nil); code != http.StatusOK {
		t.Errorf("live = %d before any model", code)
	}
	if code, _, _ := h.do("GET", "/v2/health/ready", nil, nil); code != http.StatusServiceUnavailable {
		t.Errorf("ready = %d before the first sync, want 503", code)
	}
	h.srv.Sync(context.Background(), []Model{h.active("fashion", "fashion-mlp", "1.0.0", "1", "")})
	h.waitVersion("fashion", "1.0.0")
	if code, _, b := h.do("GET", "/v2/health/ready", nil, nil); code != http.StatusOK {
		t.Errorf("ready = %d %s after loading", code, b)
	}
	code, _, b := h.do("GET", "/v2", nil, nil)
	var sm ServerMetadata
	if code != http.StatusOK || json.Unmarshal(b, &sm) != nil || sm.Name != "outpost" || sm.Version != "test" ||
		fmt.Sprint(sm.Extensions) != "[binary_tensor_data]" {
		t.Errorf("GET /v2 = %d %s", code, b)
	}
	for _, path := range []string{"/v2/models/fashion", "/v2/models/fashion-mlp", "/v2/models/fashion/versions/1.0.0"} {
		code, _, b := h.do("GET", path, nil, nil)
		var mm ModelMetadata
		if code != http.StatusOK || json.Unmarshal(b, &mm) != nil {
			t.Fatalf("GET %s = %d %s", path, code, b)
		}
		want := `{"name":"fashion","versions":["1.0.0"],"platform":"onnx","inputs":[{"name":"x","datatype":"FP32","shape":[-1,4]}],` +
			`"outputs":[{"name":"y","datatype":"FP32","shape":[-1,2]},{"name":"class","datatype":"INT64","shape":[-1]}]}`
		if got, _ := json.Marshal(mm); string(got) != want {
			t.Errorf("GET %s =\n%s\nwant\n%s", path, got, want)
		}
	}
	for path, want := range map[string]int{
		"/v2/models/fashion/ready":                    http.StatusOK,
		"/v2/models/fashion/versions/1.0.0/ready":     http.StatusOK,
		"/v2/models/fashion/versions/0.9.0/ready":     http.StatusNotFound,
		"/v2/models/nope/ready":                       http.StatusNotFound,
		"/v2/models/fashion/versions/0.9.0":           http.StatusNotFound,
		"/v2/nothing/here":                            http.StatusNotFound,
		"/v2/models/fashion-mlp/versions/1.0.0/ready": http.StatusOK,
	} {
		if code, _, b := h.do("GET", path, nil, nil); code != want {
			t.Errorf("GET %s = %d %s, want %d", path, code, b, want)
		}
	}
}

func TestInferJSON(t *testing.T) {
	h := newHarness(t, false, 0)
	h.srv.Sync(context.Background(), []Model{h.active("fashion", "fashion-mlp", "1.0.0", "2", "")})
	h.waitVersion("fashion", "1.0.0")
	for _, path := range []string{"/v2/models/fashion/infer", "/v2/models/fashion-mlp/infer", "/v2/models/fashion/versions/1.0.0/infer"} {
		r := h.inferOK(path, 2)
		if r.ModelName != "fashion" || r.ModelVersion != "1.0.0" || r.ID != "r1" {
			t.Errorf("POST %s: response %+v", path, r)
		}
	}
	// Flat data and an output selection.
	req := `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[0.5,0,0,0]}],"outputs":[{"name":"class"}]}`
	code, _, b := h.do("POST", "/v2/models/fashion/infer", []byte(req), nil)
	if want := `{"model_name":"fashion","model_version":"1.0.0","outputs":[{"name":"class","datatype":"INT64","shape":[1],"data":[0]}]}`; code != http.StatusOK || string(b) != want {
		t.Errorf("selected output: %d %s, want %s", code, b, want)
	}
}

func TestInferBinary(t *testing.T) {
	h := newHarness(t, false, 0)
	h.srv.Sync(context.Background(), []Model{h.active("fashion", "fashion-mlp", "1.0.0", "1", "")})
	h.waitVersion("fashion", "1.0.0")
	x := []float32{1, 2, 3, 4.5}
	var bin []byte
	for _, v := range x {
		bin = binary.LittleEndian.AppendUint32(bin, math.Float32bits(v))
	}
	tests := []struct {
		name, js  string
		binaryOut []string // outputs expected as binary
	}{
		{name: "binary input, JSON outputs",
			js: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}`},
		{name: "binary output asked per output",
			js:        `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}],"outputs":[{"name":"y","parameters":{"binary_data":true}},{"name":"class"}]}`,
			binaryOut: []string{"y"}},
		{name: "all outputs binary",
			js:        `{"parameters":{"binary_data_output":true},"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}`,
			binaryOut: []string{"y", "class"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := append([]byte(tt.js), bin...)
			hdr := http.Header{HeaderInferenceContentLength: {strconv.Itoa(len(tt.js))}, "Content-Type": {"application/octet-stream"}}
			code, rh, b := h.do("POST", "/v2/models/fashion/infer", body, hdr)
			if code != http.StatusOK {
				t.Fatalf("%d %s", code, b)
			}
			jsLen := len(b)
			if len(tt.binaryOut) > 0 {
				if jsLen, _ = strconv.Atoi(rh.Get(HeaderInferenceContentLength)); jsLen <= 0 || jsLen > len(b) {
					t.Fatalf("header %s = %q", HeaderInferenceContentLength, rh.Get(HeaderInferenceContentLength))
				}
			} else if rh.Get(HeaderInferenceContentLength) != "" {
				t.Fatalf("JSON-only response has %s", HeaderInferenceContentLength)
			}
			var r InferResponse
			if err := json.Unmarshal(b[:jsLen], &r); err != nil {
				t.Fatal(err)
			}
			rest := b[jsLen:]
			var y []float32
			var cls []int64
			for _, o := range r.Outputs {
				if o.Parameters["binary_data_size"] == nil {
					if o.Name == "y" {
						_ = json.Unmarshal(o.Data, &y)
					} else {
						_ = json.Unmarshal(o.Data, &cls)
					}
					continue
				}
				n := int(o.Parameters["binary_data_size"].(float64))
				chunk := rest[:n]
				rest = rest[n:]
				if o.Name == "y" {
					for i := 0; i < n; i += 4 {
						y = append(y, math.Float32frombits(binary.LittleEndian.Uint32(chunk[i:])))
					}
				} else {
					for i := 0; i < n; i += 8 {
						cls = append(cls, int64(binary.LittleEndian.Uint64(chunk[i:])))
					}
				}
			}
			if len(rest) != 0 || fmt.Sprint(y) != "[10.5 1]" || fmt.Sprint(cls) != "[3]" {
				t.Errorf("y = %v, class = %v, %d bytes left; response %q", y, cls, len(rest), b)
			}
		})
	}
}

// TestInferErrors sends each kind of bad request, checks the protocol's
// error JSON and status, and checks that a good request still succeeds.
func TestInferErrors(t *testing.T) {
	h := newHarness(t, false, 4096)
	h.srv.Sync(context.Background(), []Model{
		h.active("fashion", "fashion-mlp", "1.0.0", "1", ""),
		h.active("unsupported", "exotic", "1.0.0", "unsupported", ""),
	})
	h.waitVersion("fashion", "1.0.0")
	h.waitStatus("unsupported", func(st ModelStatus) bool { return st.State == StateFailed })
	tests := []struct {
		name, path, body string
		binary           bool // send Inference-Header-Content-Length
		code             int
		want             string
	}{
		{name: "wrong shape", body: `{"inputs":[{"name":"x","shape":[1,5],"datatype":"FP32","data":[1,2,3,4,5]}]}`,
			code: 400, want: `input "x": shape [1,5] does not match the model's [-1,4]`},
		{name: "wrong rank", body: `{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[1,2,3,4]}]}`,
			code: 400, want: `input "x": shape [4] does not match the model's [-1,4]`},
		{name: "wrong dtype", body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"INT64","data":[1,2,3,4]}]}`,
			code: 400, want: `input "x": datatype INT64 does not match the model's FP32`},
		{name: "unsupported dtype", body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP16","data":[1,2,3,4]}]}`,
			code: 400, want: `input "x": unsupported datatype "FP16"`},
		{name: "too few elements", body: `{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP32","data":[1,2,3,4]}]}`,
			code: 400, want: `input "x": shape [2,4] has 8 elements but data has 4`},
		{name: "too many elements", body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4,5]}]}`,
			code: 400, want: `input "x": shape [1,4] has 4 elements but data has more`},
		{name: "string element", body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,"3",4]}]}`,
			code: 400, want: `input "x": element 2 is a string, want a FP32`},
		{name: "unknown input", body: `{"inputs":[{"name":"image","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`,
			code: 400, want: `unknown input "image": the model's inputs are "x"`},
		{name: "unknown output", body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"z"}]}`,
			code: 400, want: `unknown output "z"`},
		{name: "malformed JSON", body: `{"inputs":[{"name":"x",`, code: 400, want: "malformed request JSON"},
		{name: "unknown field", body: `{"inputz":[]}`, code: 400, want: "malformed request JSON"},
		{name: "binary size mismatch", body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":12}}]}`,
			binary: true, code: 400, want: `input "x": binary_data_size 12, but shape [1,4] of FP32 needs 16 bytes`},
		{name: "unknown model", path: "/v2/models/nope/infer", body: goodRequest, code: 404, want: `unknown model "nope"`},
		{name: "unknown version", path: "/v2/models/fashion/versions/9.9.9/infer", body: goodRequest, code: 404,
			want: `model "fashion" has no version "9.9.9": it serves version 1.0.0`},
		{name: "model that failed to load", path: "/v2/models/unsupported/infer", body: goodRequest, code: 503,
			want: `model "unsupported" is not ready: load exotic@1.0.0: unsupported operators: Foo (node n1)`},
		{name: "too large body", body: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"id":"` + strings.Repeat("a", 5000) + `"}`,
			code: 413, want: "exceeds the limit of 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = "/v2/models/fashion/infer"
			}
			var hdr http.Header
			if tt.binary {
				hdr = http.Header{HeaderInferenceContentLength: {strconv.Itoa(len(tt.body))}}
			}
			code, rh, b := h.do("POST", path, []byte(tt.body), hdr)
			var e ErrorResponse
			if code != tt.code || rh.Get("Content-Type") != "application/json" || json.Unmarshal(b, &e) != nil || !strings.Contains(e.Error, tt.want) {
				t.Errorf("POST %s = %d %s, want %d and an error containing %q", path, code, b, tt.code, tt.want)
			}
			h.inferOK("/v2/models/fashion/infer", 1)
		})
	}
	t.Run("too large chunked body", func(t *testing.T) {
		// No Content-Length: the limit applies while reading.
		big := `{"id":"` + strings.Repeat("a", 5000) + `"}`
		req, _ := http.NewRequest("POST", h.http.URL+"/v2/models/fashion/infer", io.MultiReader(strings.NewReader(big)))
		req.ContentLength = -1
		resp, err := h.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 413 || !strings.Contains(string(b), `"error"`) {
			t.Errorf("chunked too large: %d %s", resp.StatusCode, b)
		}
		h.inferOK("/v2/models/fashion/infer", 1)
	})
}

func TestRuntimeChoice(t *testing.T) {
	tests := []struct {
		name    string
		content string
		runtime v1alpha1.ServingRuntime
		ort     bool
		want    string // runtime chosen, or an error substring
		wantErr bool
	}{
		{name: "auto uses go", content: "1", runtime: v1alpha1.RuntimeAuto, ort: true, want: engine.RuntimeGo},
		{name: "empty means auto", content: "1", runtime: "", ort: false, want: engine.RuntimeGo},
		{name: "auto falls back for unsupported ops", content: "unsupported", runtime: v1alpha1.RuntimeAuto, ort: true, want: engine.RuntimeONNXRuntime},
		{name: "auto without onnxruntime", content: "unsupported", runtime: v1alpha1.RuntimeAuto, want: "ONNX Runtime is not available", wantErr: true},
		{name: "auto does not hide a broken model", content: "broken", runtime: v1alpha1.RuntimeAuto, ort: true, want: "malformed model", wantErr: true},
		{name: "go only", content: "unsupported", runtime: v1alpha1.RuntimeGo, ort: true, want: "unsupported operators: Foo", wantErr: true},
		{name: "onnxruntime", content: "1", runtime: v1alpha1.RuntimeONNXRuntime, ort: true, want: engine.RuntimeONNXRuntime},
		{name: "onnxruntime missing", content: "1", runtime: v1alpha1.RuntimeONNXRuntime, want: "--onnxruntime-lib", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.ort, 0)
			h.srv.Sync(context.Background(), []Model{h.active("d", "m", "1.0.0", tt.content, tt.runtime)})
			st := h.waitStatus("d", func(st ModelStatus) bool { return st.State != StateLoading })
			if tt.wantErr {
				if st.State != StateFailed || !strings.Contains(st.Error, tt.want) {
					t.Errorf("status %+v, want Failed with %q", st, tt.want)
				}
				return
			}
			if st.State != StateReady || st.Runtime != tt.want || st.Error != "" {
				t.Errorf("status %+v, want Ready on %s", st, tt.want)
			}
		})
	}
}

// TestSwapWaitsForInFlight holds a request on v1 while v2 swaps in: new
// requests go to v2 at once, and v1 is closed exactly once, only after the
// held request finished.
func TestSwapWaitsForInFlight(t *testing.T) {
	h := newHarness(t, false, 0)
	ctx := context.Background()
	h.srv.Sync(ctx, []Model{h.active("fashion", "fashion-mlp", "1.0.0", "1", "")})
	h.waitVersion("fashion", "1.0.0")
	v1 := h.goRT.all()[0]
	v1.block = make(chan struct{})
	unblock := sync.OnceFunc(func() { close(v1.block) })
	t.Cleanup(unblock) // before the server's cleanup, which waits for the request
	done := make(chan InferResponse)
	go func() {
		code, _, b := h.do("POST", "/v2/models/fashion/infer", []byte(goodRequest), nil)
		var r InferResponse
		if code != http.StatusOK || json.Unmarshal(b, &r) != nil {
			t.Errorf("held request: %d %s", code, b)
		}
		done <- r
	}()
	testenv.WaitFor(t, 10*time.Second, "the request to reach the session", func() bool { return v1.running.Load() > 0 })
	h.srv.Sync(ctx, []Model{h.active("fashion", "fashion-mlp", "2.0.0", "2", "")})
	h.waitVersion("fashion", "2.0.0")
	if r := h.inferOK("/v2/models/fashion/infer", 2); r.ModelVersion != "2.0.0" {
		t.Errorf("after the swap: version %s", r.ModelVersion)
	}
	if v1.closes.Load() != 0 {
		t.Fatal("v1 closed while a request ran on it")
	}
	unblock()
	if r := <-done; r.ModelVersion != "1.0.0" {
		t.Errorf("held request answered by %s", r.ModelVersion)
	}
	// The handler releases the session just after writing the response.
	testenv.WaitFor(t, 5*time.Second, "v1 closed", func() bool { return v1.closes.Load() > 0 })
	if c, m := v1.closes.Load(), v1.misuse.Load(); c != 1 || m != 0 {
		t.Errorf("v1 closed %d times, misused %d times", c, m)
	}
}

// TestSwapUnderLoad hammers a model from many clients while new versions
// swap in again and again: no request fails, each client sees versions
// only go forward, and every replaced session is closed exactly once,
// never while in use.
func TestSwapUnderLoad(t *testing.T) {
	h := newHarness(t, false, 0)
	sessions := swapUnderLoad(t, h, func(int) (int, float32, error) {
		resp, err := h.http.Client().Post(h.http.URL+"/v2/models/fashion/infer", "application/json", strings.NewReader(goodRequest))
		if err != nil {
			return 0, 0, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var r InferResponse
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &r) != nil {
			return 0, 0, fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		v, _ := strconv.Atoi(r.ModelVersion)
		var y []float32
		if err := json.Unmarshal(r.Outputs[0].Data, &y); err != nil || len(y) < 2 {
			return 0, 0, fmt.Errorf("outputs %s", r.Outputs[0].Data)
		}
		return v, y[1], nil
	})
	h.srv.Close()
	if c := sessions[len(sessions)-1].closes.Load(); c != 1 {
		t.Errorf("current session closed %d times by Close, want 1", c)
	}
}

// swapUnderLoad serves version 1 of the harness's deployment "fashion",
// has clients call it in a loop while versions 2 to 21 swap in, and checks
// that no call failed, that no client saw a version go back, and that
// every replaced session was closed once and never while in use. call
// makes one call for client i and returns the version that answered and
// the model's second output, which the fake runtime sets to the version.
// It returns the sessions, oldest first.
func swapUnderLoad(t *testing.T, h *harness, call func(i int) (version int, scale float32, err error)) []*fakeSession {
	t.Helper()
	ctx := context.Background()
	h.srv.Sync(ctx, []Model{h.active("fashion", "fashion-mlp", "1", "1", "")})
	h.waitVersion("fashion", "1")
	const clients, swaps = 8, 20
	var failed, served atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			last := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				v, y, err := call(i)
				if err != nil {
					failed.Add(1)
					t.Errorf("call failed during swaps: %v", err)
					continue
				}
				if y != float32(v) || v < last {
					t.Errorf("version %d after %d, scale output %g", v, last, y)
				}
				last = v
				served.Add(1)
			}
		})
	}
	for v := 2; v <= swaps+1; v++ {
		ver := strconv.Itoa(v)
		before := served.Load()
		h.srv.Sync(ctx, []Model{h.active("fashion", "fashion-mlp", ver, ver, "")})
		h.waitVersion("fashion", ver)
		// Let calls run on each version (or fail, which ends the test).
		for deadline := time.Now().Add(10 * time.Second); served.Load() < before+clients && time.Now().Before(deadline); {
			time.Sleep(100 * time.Microsecond)
		}
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d calls failed", failed.Load(), served.Load()+failed.Load())
	}
	sessions := h.goRT.all()
	if len(sessions) != swaps+1 {
		t.Fatalf("%d sessions loaded, want %d", len(sessions), swaps+1)
	}
	for i, s := range sessions {
		want := int64(1)
		if i == len(sessions)-1 {
			want = 0 // the current version stays open
		}
		if s.closes.Load() != want || s.misuse.Load() != 0 {
			t.Errorf("session %d: closed %d times (want %d), misused %d times", i+1, s.closes.Load(), want, s.misuse.Load())
		}
	}
	t.Logf("%d calls served across %d swaps, none failed", served.Load(), swaps)
	return sessions
}

func TestFailedUpdateKeepsServing(t *testing.T) {
	h := newHarness(t, false, 0)
	ctx := context.Background()
	h.srv.Sync(ctx, []Model{h.active("fashion", "fashion-mlp", "1.0.0", "1", "")})
	h.waitVersion("fashion", "1.0.0")
	h.srv.Sync(ctx, []Model{h.active("fashion", "fashion-mlp", "2.0.0", "broken", "")})
	st := h.waitStatus("fashion", func(st ModelStatus) bool { return st.Error != "" })
	if st.Version != "1.0.0" || st.State != StateReady || !strings.Contains(st.Error, "load fashion-mlp@2.0.0: malformed model (still serving 1.0.0)") {
		t.Errorf("status %+v", st)
	}
	h.inferOK("/v2/models/fashion/infer", 1)
}

func TestRemovedDeploymentStopsServing(t *testing.T) {
	h := newHarness(t, false, 0)
	ctx := context.Background()
	h.srv.Sync(ctx, []Model{h.active("a", "m", "1.0.0", "1", ""), h.active("b", "m", "1.0.0", "3", "")})
	h.waitVersion("a", "1.0.0")
	h.waitVersion("b", "1.0.0")
	// Two deployments serve m: its name is ambiguous.
	if code, _, b := h.do("POST", "/v2/models/m/infer", []byte(goodRequest), nil); code != 404 || !strings.Contains(string(b), "several deployments (a, b)") {
		t.Errorf("ambiguous model name: %d %s", code, b)
	}
	h.srv.Sync(ctx, []Model{h.active("b", "m", "1.0.0", "3", "")})
	if code, _, _ := h.do("POST", "/v2/models/a/infer", []byte(goodRequest), nil); code != 404 {
		t.Errorf("removed deployment answers %d", code)
	}
	h.inferOK("/v2/models/m/infer", 3)
	var closedA int64
	for _, s := range h.goRT.all() {
		if s.scale == 1 {
			closedA = s.closes.Load()
		}
	}
	if closedA != 1 {
		t.Errorf("removed deployment's session closed %d times", closedA)
	}
}

func TestLoadingModelIsNotReady(t *testing.T) {
	h := newHarness(t, false, 0)
	h.goRT.gate = make(chan struct{})
	h.srv.Sync(context.Background(), []Model{h.active("fashion", "fashion-mlp", "1.0.0", "1", "")})
	if code, _, b := h.do("POST", "/v2/models/fashion/infer", []byte(goodRequest), nil); code != 503 || !strings.Contains(string(b), "loading 1.0.0") {
		t.Errorf("infer while loading: %d %s", code, b)
	}
	if code, _, _ := h.do("GET", "/v2/health/ready", nil, nil); code != 503 {
		t.Errorf("server ready while its model loads: %d", code)
	}
	close(h.goRT.gate)
	h.waitVersion("fashion", "1.0.0")
	h.inferOK("/v2/models/fashion/infer", 1)
}

func TestWatchFollowsActive(t *testing.T) {
	h := newHarness(t, false, 0)
	var mu sync.Mutex
	active := []Model{h.active("fashion", "fashion-mlp", "1.0.0", "1", "")}
	changed := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.srv.Watch(ctx, func() []Model { mu.Lock(); defer mu.Unlock(); return active }, changed)
	h.waitVersion("fashion", "1.0.0")
	mu.Lock()
	active = []Model{h.active("fashion", "fashion-mlp", "1.1.0", "5", "")}
	mu.Unlock()
	changed <- struct{}{}
	h.waitVersion("fashion", "1.1.0")
	h.inferOK("/v2/models/fashion/infer", 5)
}

func TestModelFile(t *testing.T) {
	tests := []struct {
		files   map[string]string
		want    string
		wantErr string
	}{
		{files: map[string]string{"m.onnx": "/b/1", "README.md": "/b/2"}, want: "/b/1"},
		{files: map[string]string{"a.onnx": "/b/1", "sub/model.onnx": "/b/2"}, want: "/b/2"},
		{files: map[string]string{"a.onnx": "/b/1", "b.onnx": "/b/2"}, wantErr: "several .onnx files (a.onnx, b.onnx)"},
		{files: map[string]string{"weights.bin": "/b/1"}, wantErr: "no .onnx file"},
	}
	for _, tt := range tests {
		got, err := modelFile(tt.files)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("modelFile(%v) = %q, %v, want error %q", tt.files, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("modelFile(%v) = %q, %v, want %q", tt.files, got, err, tt.want)
		}
	}
}
