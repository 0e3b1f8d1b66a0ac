package serving

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"outpost.dev/outpost/internal/serving/oippb"
	"outpost.dev/outpost/internal/testenv"
)

// The gRPC tests run the server on a real loopback listener and call it
// through a real gRPC client connection. Like serving_test.go they use the
// fake runtime; grpc_real_test.go serves a real model.

// startGRPC serves srv over gRPC on a loopback port for the test's
// duration and returns a client connected to it.
func startGRPC(t *testing.T, srv *Server) oippb.GRPCInferenceServiceClient {
	t.Helper()
	c, _ := serveGRPC(t, srv)
	return c
}

// serveGRPC is startGRPC that also returns the address served.
func serveGRPC(t *testing.T, srv *Server) (oippb.GRPCInferenceServiceClient, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.ServeGRPC(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeGRPC: %v", err)
		}
	})
	return dialGRPC(t, ln.Addr().String()), ln.Addr().String()
}

// dialGRPC returns a client of the server at addr, closed when the test
// ends.
func dialGRPC(t *testing.T, addr string) oippb.GRPCInferenceServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return oippb.NewGRPCInferenceServiceClient(conn)
}

// callCtx bounds one call of a test.
func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// goodGRPCRequest is goodRequest in gRPC form: x [2,4] as fp32_contents.
func goodGRPCRequest(model string) *oippb.ModelInferRequest {
	return &oippb.ModelInferRequest{ModelName: model, Id: "r1", Inputs: []*oippb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{2, 4},
		Contents: &oippb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4, 4, 3, 2, 1}},
	}}}
}

// rawFloat32 lays out v little-endian.
func rawFloat32(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

// decodeRaw decodes the raw output contents of resp by name: []float32 for
// FP32, []int64 for INT64.
func decodeRaw(t *testing.T, resp *oippb.ModelInferResponse) map[string]any {
	t.Helper()
	if len(resp.GetRawOutputContents()) != len(resp.GetOutputs()) {
		t.Fatalf("%d raw_output_contents for %d outputs", len(resp.GetRawOutputContents()), len(resp.GetOutputs()))
	}
	out := map[string]any{}
	for i, o := range resp.GetOutputs() {
		if o.GetContents() != nil {
			t.Errorf("output %s has typed contents besides raw_output_contents", o.GetName())
		}
		raw := resp.GetRawOutputContents()[i]
		n := 1
		for _, d := range o.GetShape() {
			n *= int(d)
		}
		switch o.GetDatatype() {
		case "FP32":
			if len(raw) != 4*n {
				t.Fatalf("output %s: %d bytes for shape %v", o.GetName(), len(raw), o.GetShape())
			}
			v := make([]float32, n)
			for j := range v {
				v[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
			}
			out[o.GetName()] = v
		case "INT64":
			if len(raw) != 8*n {
				t.Fatalf("output %s: %d bytes for shape %v", o.GetName(), len(raw), o.GetShape())
			}
			v := make([]int64, n)
			for j := range v {
				v[j] = int64(binary.LittleEndian.Uint64(raw[8*j:]))
			}
			out[o.GetName()] = v
		default:
			t.Fatalf("output %s: datatype %s", o.GetName(), o.GetDatatype())
		}
	}
	return out
}

// grpcInferOK sends goodGRPCRequest and checks the answer as inferOK does.
func grpcInferOK(t *testing.T, c oippb.GRPCInferenceServiceClient, model string, wantScale float32) *oippb.ModelInferResponse {
	t.Helper()
	resp, err := c.ModelInfer(callCtx(t), goodGRPCRequest(model))
	if err != nil {
		t.Fatalf("ModelInfer(%s): %v", model, err)
	}
	got := decodeRaw(t, resp)
	if want := []float32{10 * wantScale, wantScale, 10 * wantScale, wantScale}; fmt.Sprint(got["y"]) != fmt.Sprint(want) {
		t.Errorf("y = %v, want %v", got["y"], want)
	}
	if fmt.Sprint(got["class"]) != "[3 0]" {
		t.Errorf("class = %v, want [3 0]", got["class"])
	}
	return resp
}

func TestGRPCHealthAndMetadata(t *testing.T) {
	h := newHarness(t, false, 0)
	c := startGRPC(t, h.srv)
	ctx := callCtx(t)
	if r, err := c.ServerLive(ctx, &oippb.ServerLiveRequest{}); err != nil || !r.GetLive() {
		t.Errorf("ServerLive = %v, %v", r, err)
	}
	if r, err := c.ServerReady(ctx, &oippb.ServerReadyRequest{}); err != nil || r.GetReady() {
		t.Errorf("ServerReady before the first sync = %v, %v, want not ready", r, err)
	}
	h.goRT.gate = make(chan struct{})
	h.srv.Sync(context.Background(), []Model{
		h.active("fashion", "fashion-mlp", "1.0.0", "1", ""),
		h.active("unsupported", "exotic", "1.0.0", "unsupported", ""),
	})
	if r, err := c.ModelReady(ctx, &oippb.ModelReadyRequest{Name: "fashion"}); err != nil || r.GetReady() {
		t.Errorf("ModelReady while loading = %v, %v, want not ready", r, err)
	}
	close(h.goRT.gate)
	h.waitVersion("fashion", "1.0.0")
	h.waitStatus("unsupported", func(st ModelStatus) bool { return st.State == StateFailed })
	if r, err := c.ServerReady(ctx, &oippb.ServerReadyRequest{}); err != nil || !r.GetReady() {
		t.Errorf("ServerReady after loading = %v, %v", r, err)
	}
	sm, err := c.ServerMetadata(ctx, &oippb.ServerMetadataRequest{})
	if err != nil || sm.GetName() != "outpost" || sm.GetVersion() != "test" {
		t.Errorf("ServerMetadata = %v, %v", sm, err)
	}

	want := &oippb.ModelMetadataResponse{Name: "fashion", Versions: []string{"1.0.0"}, Platform: "onnx",
		Inputs: []*oippb.ModelMetadataResponse_TensorMetadata{{Name: "x", Datatype: "FP32", Shape: []int64{-1, 4}}},
		Outputs: []*oippb.ModelMetadataResponse_TensorMetadata{
			{Name: "y", Datatype: "FP32", Shape: []int64{-1, 2}},
			{Name: "class", Datatype: "INT64", Shape: []int64{-1}},
		}}
	for _, req := range []*oippb.ModelMetadataRequest{{Name: "fashion"}, {Name: "fashion-mlp"}, {Name: "fashion", Version: "1.0.0"}} {
		got, err := c.ModelMetadata(ctx, req)
		if err != nil || !proto.Equal(got, want) {
			t.Errorf("ModelMetadata(%v) = %v, %v\nwant %v", req, got, err, want)
		}
		// The REST API describes the model the same way.
		code, _, b := h.do("GET", "/v2/models/"+req.GetName(), nil, nil)
		var mm ModelMetadata
		if code != http.StatusOK || json.Unmarshal(b, &mm) != nil || mm.Name != got.GetName() ||
			fmt.Sprint(mm.Inputs, mm.Outputs) != fmt.Sprint(tensorMetadataOf(got.GetInputs()), tensorMetadataOf(got.GetOutputs())) {
			t.Errorf("REST metadata %d %s differs from gRPC %v", code, b, got)
		}
	}

	tests := []struct {
		name, version string
		ready         bool
		code          codes.Code
		msg           string
	}{
		{name: "fashion", ready: true},
		{name: "fashion", version: "1.0.0", ready: true},
		{name: "fashion-mlp", version: "1.0.0", ready: true},
		{name: "unsupported", ready: false},
		{name: "fashion", version: "0.9.0", code: codes.NotFound, msg: `model "fashion" has no version "0.9.0": it serves version 1.0.0`},
		{name: "nope", code: codes.NotFound, msg: `unknown model "nope"`},
		{name: "", code: codes.InvalidArgument, msg: "the request names no model"},
	}
	for _, tt := range tests {
		r, err := c.ModelReady(ctx, &oippb.ModelReadyRequest{Name: tt.name, Version: tt.version})
		if st := status.Convert(err); st.Code() != tt.code || st.Message() != tt.msg || r.GetReady() != tt.ready {
			t.Errorf("ModelReady(%q, %q) = %v, %v; want ready %v, code %v %q", tt.name, tt.version, r, err, tt.ready, tt.code, tt.msg)
		}
	}
	for _, req := range []*oippb.ModelMetadataRequest{{Name: "nope"}, {Name: "fashion", Version: "2.0.0"}} {
		if _, err := c.ModelMetadata(ctx, req); status.Code(err) != codes.NotFound {
			t.Errorf("ModelMetadata(%v) = %v, want NotFound", req, err)
		}
	}
	if _, err := c.ModelMetadata(ctx, &oippb.ModelMetadataRequest{Name: "unsupported"}); status.Code(err) != codes.Unavailable {
		t.Errorf("ModelMetadata of a model that failed to load = %v, want Unavailable", err)
	}
}

func tensorMetadataOf(ts []*oippb.ModelMetadataResponse_TensorMetadata) []TensorMetadata {
	out := make([]TensorMetadata, len(ts))
	for i, t := range ts {
		out[i] = TensorMetadata{Name: t.GetName(), Datatype: t.GetDatatype()}
		for _, d := range t.GetShape() {
			out[i].Shape = append(out[i].Shape, int(d))
		}
	}
	return out
}

func TestGRPCInfer(t *testing.T) {
	h := newHarness(t, false, 0)
	c := startGRPC(t, h.srv)
	h.srv.Sync(context.Background(), []Model{h.active("fashion", "fashion-mlp", "1.0.0", "2", "")})
	h.waitVersion("fashion", "1.0.0")
	x := []float32{1, 2, 3, 4.5, 0.5, 0, 0, 0}
	input := func(contents *oippb.InferTensorContents) []*oippb.ModelInferRequest_InferInputTensor {
		return []*oippb.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{2, 4}, Contents: contents}}
	}
	outputs := func(names ...string) []*oippb.ModelInferRequest_InferRequestedOutputTensor {
		var o []*oippb.ModelInferRequest_InferRequestedOutputTensor
		for _, n := range names {
			o = append(o, &oippb.ModelInferRequest_InferRequestedOutputTensor{Name: n})
		}
		return o
	}
	tests := []struct {
		name string
		req  *oippb.ModelInferRequest
		want string // the outputs, in order
	}{
		{name: "fp32_contents",
			req:  &oippb.ModelInferRequest{ModelName: "fashion", Id: "a", Inputs: input(&oippb.InferTensorContents{Fp32Contents: x})},
			want: "y FP32 [2 2] [21 2 1 2]; class INT64 [2] [3 0]"},
		{name: "raw_input_contents",
			req:  &oippb.ModelInferRequest{ModelName: "fashion", Id: "a", Inputs: input(nil), RawInputContents: [][]byte{rawFloat32(x...)}},
			want: "y FP32 [2 2] [21 2 1 2]; class INT64 [2] [3 0]"},
		{name: "model name and version",
			req: &oippb.ModelInferRequest{ModelName: "fashion-mlp", ModelVersion: "1.0.0", Id: "a",
				Inputs: input(nil), RawInputContents: [][]byte{rawFloat32(x...)}},
			want: "y FP32 [2 2] [21 2 1 2]; class INT64 [2] [3 0]"},
		{name: "one requested output",
			req:  &oippb.ModelInferRequest{ModelName: "fashion", Id: "a", Inputs: input(&oippb.InferTensorContents{Fp32Contents: x}), Outputs: outputs("class")},
			want: "class INT64 [2] [3 0]"},
		{name: "requested outputs in the order asked",
			req:  &oippb.ModelInferRequest{ModelName: "fashion", Id: "a", Inputs: input(&oippb.InferTensorContents{Fp32Contents: x}), Outputs: outputs("class", "y")},
			want: "class INT64 [2] [3 0]; y FP32 [2 2] [21 2 1 2]"},
		{name: "parameters are accepted",
			req: &oippb.ModelInferRequest{ModelName: "fashion", Id: "a", Inputs: input(&oippb.InferTensorContents{Fp32Contents: x}),
				Parameters: map[string]*oippb.InferParameter{"priority": {ParameterChoice: &oippb.InferParameter_Int64Param{Int64Param: 1}}}},
			want: "y FP32 [2 2] [21 2 1 2]; class INT64 [2] [3 0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.ModelInfer(callCtx(t), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetModelName() != "fashion" || resp.GetModelVersion() != "1.0.0" || resp.GetId() != "a" {
				t.Errorf("response names %q %q %q", resp.GetModelName(), resp.GetModelVersion(), resp.GetId())
			}
			vals := decodeRaw(t, resp)
			var got []string
			for _, o := range resp.GetOutputs() {
				got = append(got, fmt.Sprint(o.GetName(), " ", o.GetDatatype(), " ", o.GetShape(), " ", vals[o.GetName()]))
			}
			if s := strings.Join(got, "; "); s != tt.want {
				t.Errorf("outputs %s\nwant    %s", s, tt.want)
			}
		})
	}
}

// TestGRPCInferErrors sends each kind of bad request and checks the code
// and message; where the REST API can be sent the same mistake, the
// message must be the one it gives. A good request still succeeds after
// each.
func TestGRPCInferErrors(t *testing.T) {
	h := newHarness(t, false, 4096)
	c := startGRPC(t, h.srv)
	h.srv.Sync(context.Background(), []Model{
		h.active("fashion", "fashion-mlp", "1.0.0", "1", ""),
		h.active("unsupported", "exotic", "1.0.0", "unsupported", ""),
	})
	h.waitVersion("fashion", "1.0.0")
	h.waitStatus("unsupported", func(st ModelStatus) bool { return st.State == StateFailed })
	in := func(name, dt string, shape []int64, contents *oippb.InferTensorContents) *oippb.ModelInferRequest_InferInputTensor {
		return &oippb.ModelInferRequest_InferInputTensor{Name: name, Datatype: dt, Shape: shape, Contents: contents}
	}
	req := func(inputs ...*oippb.ModelInferRequest_InferInputTensor) *oippb.ModelInferRequest {
		return &oippb.ModelInferRequest{ModelName: "fashion", Inputs: inputs}
	}
	withRaw := func(r *oippb.ModelInferRequest, raw ...[]byte) *oippb.ModelInferRequest {
		r.RawInputContents = raw
		return r
	}
	withOutputs := func(r *oippb.ModelInferRequest, names ...string) *oippb.ModelInferRequest {
		for _, n := range names {
			r.Outputs = append(r.Outputs, &oippb.ModelInferRequest_InferRequestedOutputTensor{Name: n})
		}
		return r
	}
	withModel := func(r *oippb.ModelInferRequest, name, version string) *oippb.ModelInferRequest {
		r.ModelName, r.ModelVersion = name, version
		return r
	}
	f32 := func(v ...float32) *oippb.InferTensorContents { return &oippb.InferTensorContents{Fp32Contents: v} }
	tests := []struct {
		name string
		req  *oippb.ModelInferRequest
		code codes.Code
		want string // the message, or a part of it
		rest string // the same mistake as a REST request, whose error must be the message
		path string // of the REST request, when not /v2/models/fashion/infer
	}{
		{name: "wrong shape", req: req(in("x", "FP32", []int64{1, 5}, f32(1, 2, 3, 4, 5))), code: codes.InvalidArgument,
			want: `input "x": shape [1,5] does not match the model's [-1,4]`,
			rest: `{"inputs":[{"name":"x","shape":[1,5],"datatype":"FP32","data":[1,2,3,4,5]}]}`},
		{name: "wrong rank", req: req(in("x", "FP32", []int64{4}, f32(1, 2, 3, 4))), code: codes.InvalidArgument,
			want: `input "x": shape [4] does not match the model's [-1,4]`,
			rest: `{"inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[1,2,3,4]}]}`},
		{name: "scalar for a matrix", req: req(in("x", "FP32", nil, f32(1))), code: codes.InvalidArgument,
			want: `input "x": shape [] does not match the model's [-1,4]`,
			rest: `{"inputs":[{"name":"x","shape":[],"datatype":"FP32","data":1}]}`},
		{name: "wrong dtype", req: req(in("x", "INT64", []int64{1, 4}, &oippb.InferTensorContents{Int64Contents: []int64{1, 2, 3, 4}})),
			code: codes.InvalidArgument, want: `input "x": datatype INT64 does not match the model's FP32`,
			rest: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"INT64","data":[1,2,3,4]}]}`},
		{name: "unsupported dtype", req: req(in("x", "BYTES", []int64{1, 4}, &oippb.InferTensorContents{BytesContents: [][]byte{{1}, {2}, {3}, {4}}})),
			code: codes.InvalidArgument, want: `input "x": unsupported datatype "BYTES" (want one of FP32, INT64, INT32, INT8, UINT8, BOOL)`,
			rest: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"BYTES","data":[1,2,3,4]}]}`},
		{name: "too few elements", req: req(in("x", "FP32", []int64{2, 4}, f32(1, 2, 3, 4))), code: codes.InvalidArgument,
			want: `input "x": shape [2,4] has 8 elements but data has 4`,
			rest: `{"inputs":[{"name":"x","shape":[2,4],"datatype":"FP32","data":[1,2,3,4]}]}`},
		{name: "unknown input", req: req(in("image", "FP32", []int64{1, 4}, f32(1, 2, 3, 4))), code: codes.InvalidArgument,
			want: `unknown input "image": the model's inputs are "x"`,
			rest: `{"inputs":[{"name":"image","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`},
		{name: "duplicate input", req: req(in("x", "FP32", []int64{1, 4}, f32(1, 2, 3, 4)), in("x", "FP32", []int64{1, 4}, f32(1, 2, 3, 4))),
			code: codes.InvalidArgument, want: `input "x" appears twice`,
			rest: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]},{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}`},
		{name: "no inputs", req: req(), code: codes.InvalidArgument, want: "the request has no inputs", rest: `{"inputs":[]}`},
		{name: "unknown output", req: withOutputs(req(in("x", "FP32", []int64{1, 4}, f32(1, 2, 3, 4))), "z"), code: codes.InvalidArgument,
			want: `unknown output "z": the model's outputs are "y", "class"`,
			rest: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"z"}]}`},
		{name: "output twice", req: withOutputs(req(in("x", "FP32", []int64{1, 4}, f32(1, 2, 3, 4))), "y", "y"), code: codes.InvalidArgument,
			want: `output "y" requested twice`,
			rest: `{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"outputs":[{"name":"y"},{"name":"y"}]}`},
		{name: "negative dimension", req: req(in("x", "FP32", []int64{-1, 4}, f32(1, 2, 3, 4))), code: codes.InvalidArgument,
			want: `input "x": negative dimension in shape [-1 4]`,
			rest: `{"inputs":[{"name":"x","shape":[-1,4],"datatype":"FP32","data":[1,2,3,4]}]}`},
		{name: "huge shape", req: req(in("x", "FP32", []int64{1 << 62, 4}, f32(1, 2, 3, 4))), code: codes.InvalidArgument,
			want: "has more than 268435456 elements",
			rest: `{"inputs":[{"name":"x","shape":[4611686018427387904,4],"datatype":"FP32","data":[1,2,3,4]}]}`},
		{name: "no contents", req: req(in("x", "FP32", []int64{1, 4}, nil)), code: codes.InvalidArgument,
			want: `input "x": no contents and no raw_input_contents`},
		{name: "contents in the wrong field", req: req(in("x", "FP32", []int64{1, 4}, &oippb.InferTensorContents{IntContents: []int32{1, 2, 3, 4}})),
			code: codes.InvalidArgument, want: `input "x": FP32 elements go in contents.fp32_contents, but the request sets contents.int_contents`},
		{name: "raw of the wrong size", req: withRaw(req(in("x", "FP32", []int64{1, 4}, nil)), rawFloat32(1, 2, 3)), code: codes.InvalidArgument,
			want: `input "x": raw_input_contents[0] has 12 bytes, but shape [1,4] of FP32 needs 16 bytes`},
		{name: "raw for fewer inputs", req: withRaw(req(in("x", "FP32", []int64{1, 4}, nil)), rawFloat32(1, 2, 3, 4), rawFloat32(1)), code: codes.InvalidArgument,
			want: "raw_input_contents has 2 entries for 1 inputs: give one per input, in the order of inputs"},
		{name: "raw and contents", req: withRaw(req(in("x", "FP32", []int64{1, 4}, f32(1, 2, 3, 4))), rawFloat32(1, 2, 3, 4)), code: codes.InvalidArgument,
			want: `input "x": both contents (fp32_contents) and raw_input_contents`},
		{name: "unknown model", req: withModel(goodGRPCRequest("fashion"), "nope", ""), code: codes.NotFound,
			want: `unknown model "nope"`, rest: goodRequest, path: "/v2/models/nope/infer"},
		{name: "unknown version", req: withModel(goodGRPCRequest("fashion"), "fashion", "9.9.9"), code: codes.NotFound,
			want: `model "fashion" has no version "9.9.9": it serves version 1.0.0`, rest: goodRequest, path: "/v2/models/fashion/versions/9.9.9/infer"},
		{name: "model that failed to load", req: withModel(goodGRPCRequest("fashion"), "unsupported", ""), code: codes.Unavailable,
			want: `model "unsupported" is not ready: load exotic@1.0.0: unsupported operators: Foo (node n1)`, rest: goodRequest, path: "/v2/models/unsupported/infer"},
		{name: "no model name", req: withModel(goodGRPCRequest("fashion"), "", ""), code: codes.InvalidArgument, want: "the request names no model"},
		{name: "too large", req: func() *oippb.ModelInferRequest {
			r := goodGRPCRequest("fashion")
			r.Id = strings.Repeat("a", 5000)
			return r
		}(),
			code: codes.ResourceExhausted, want: "larger than max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.ModelInfer(callCtx(t), tt.req)
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.want) {
				t.Errorf("ModelInfer = %v, want %v with %q", err, tt.code, tt.want)
			}
			if tt.rest != "" {
				path := tt.path
				if path == "" {
					path = "/v2/models/fashion/infer"
				}
				code, _, b := h.do("POST", path, []byte(tt.rest), nil)
				var e ErrorResponse
				if json.Unmarshal(b, &e) != nil || e.Error != st.Message() {
					t.Errorf("REST answers %d %s, gRPC %q", code, b, st.Message())
				}
			}
			grpcInferOK(t, c, "fashion", 1)
		})
	}
}

// TestDecodeGRPCRequest decodes every datatype from typed contents and
// from raw contents, and refuses elements out of their datatype's range.
func TestDecodeGRPCRequest(t *testing.T) {
	typed := []*oippb.ModelInferRequest_InferInputTensor{
		{Name: "f", Datatype: "FP32", Shape: []int64{2, 2}, Contents: &oippb.InferTensorContents{Fp32Contents: []float32{1.5, -2e-3, 3, 4}}},
		{Name: "i64", Datatype: "INT64", Shape: []int64{2}, Contents: &oippb.InferTensorContents{Int64Contents: []int64{-9007199254740993, 7}}},
		{Name: "i32", Datatype: "INT32", Shape: []int64{3}, Contents: &oippb.InferTensorContents{IntContents: []int32{1, -2, 2147483647}}},
		{Name: "i8", Datatype: "INT8", Shape: []int64{1}, Contents: &oippb.InferTensorContents{IntContents: []int32{-128}}},
		{Name: "u8", Datatype: "UINT8", Shape: []int64{2, 1}, Contents: &oippb.InferTensorContents{UintContents: []uint32{0, 255}}},
		{Name: "b", Datatype: "BOOL", Contents: &oippb.InferTensorContents{BoolContents: []bool{true}}},
	}
	const want = "x[1.5 -0.002 3 4] [2 2] [-9007199254740993 7] [1 -2 2147483647] [-128] [0 255] [2 1] [true] []"
	show := func(r *InferRequest) string {
		return fmt.Sprint(r.ID, r.Inputs["f"].F32, r.Inputs["f"].Shape, r.Inputs["i64"].I64, r.Inputs["i32"].I32, r.Inputs["i8"].I8,
			r.Inputs["u8"].U8, r.Inputs["u8"].Shape, r.Inputs["b"].B, r.Inputs["b"].Shape)
	}
	r, err := decodeGRPCRequest(&oippb.ModelInferRequest{Id: "x", Inputs: typed}, decodeInputs, decodeOutputs, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got := show(r); got != want {
		t.Errorf("typed contents decoded %s\nwant                   %s", got, want)
	}

	le := binary.LittleEndian
	i64, i32 := int64(-9007199254740993), int32(-2)
	raw := [][]byte{
		rawFloat32(1.5, -2e-3, 3, 4),
		le.AppendUint64(le.AppendUint64(nil, uint64(i64)), 7),
		le.AppendUint32(le.AppendUint32(le.AppendUint32(nil, 1), uint32(i32)), 2147483647),
		{0x80},
		{0, 255},
		{1},
	}
	var rawInputs []*oippb.ModelInferRequest_InferInputTensor
	for _, x := range typed {
		rawInputs = append(rawInputs, &oippb.ModelInferRequest_InferInputTensor{Name: x.Name, Datatype: x.Datatype, Shape: x.Shape})
	}
	r, err = decodeGRPCRequest(&oippb.ModelInferRequest{Id: "x", Inputs: rawInputs, RawInputContents: raw}, decodeInputs, decodeOutputs, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got := show(r); got != want {
		t.Errorf("raw contents decoded %s\nwant                 %s", got, want)
	}
	for name, x := range r.Inputs {
		if err := x.Validate(); err != nil {
			t.Errorf("input %s: %v", name, err)
		}
	}

	tests := []struct {
		name   string
		inputs []*oippb.ModelInferRequest_InferInputTensor
		want   string
	}{
		{"int8 out of range", []*oippb.ModelInferRequest_InferInputTensor{{Name: "i8", Datatype: "INT8", Shape: []int64{1},
			Contents: &oippb.InferTensorContents{IntContents: []int32{128}}}}, `input "i8": element 0: 128 is not an INT8 (an integer from -128 to 127)`},
		{"uint8 out of range", []*oippb.ModelInferRequest_InferInputTensor{{Name: "u8", Datatype: "UINT8", Shape: []int64{2, 1},
			Contents: &oippb.InferTensorContents{UintContents: []uint32{1, 256}}}}, `input "u8": element 1: 256 is not a UINT8 (an integer from 0 to 255)`},
		{"missing input", typed[:1], `missing input "i64" (INT64 [2])`},
		{"too many elements", []*oippb.ModelInferRequest_InferInputTensor{{Name: "b", Datatype: "BOOL",
			Contents: &oippb.InferTensorContents{BoolContents: []bool{true, false}}}}, `input "b": shape [] has 1 elements but data has 2`},
		{"nil input", []*oippb.ModelInferRequest_InferInputTensor{nil}, `unknown input "": the model's inputs are`},
	}
	for _, tt := range tests {
		_, err := decodeGRPCRequest(&oippb.ModelInferRequest{Inputs: tt.inputs}, decodeInputs, decodeOutputs, Limits{})
		if _, ok := err.(*RequestError); !ok || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want a RequestError containing %q", tt.name, err, tt.want)
		}
	}
	// An empty tensor needs no contents.
	empty := []*oippb.ModelInferRequest_InferInputTensor{{Name: "f", Datatype: "FP32", Shape: []int64{0, 2}}}
	if _, err := decodeGRPCRequest(&oippb.ModelInferRequest{Inputs: append(empty, typed[1:]...)}, decodeInputs, decodeOutputs, Limits{}); err != nil {
		t.Errorf("empty input: %v", err)
	}
	if _, err := decodeGRPCRequest(&oippb.ModelInferRequest{Inputs: typed}, decodeInputs, decodeOutputs, Limits{MaxInputs: 2}); err == nil ||
		!strings.Contains(err.Error(), "at most 2 each") {
		t.Errorf("MaxInputs: %v", err)
	}
}

// TestGRPCSwapUnderLoad is TestSwapUnderLoad over gRPC: clients call
// ModelInfer in a loop while new versions swap in again and again, and no
// call fails.
func TestGRPCSwapUnderLoad(t *testing.T) {
	h := newHarness(t, false, 0)
	c := startGRPC(t, h.srv)
	swapUnderLoad(t, h, func(i int) (int, float32, error) {
		req := goodGRPCRequest("fashion")
		if i%2 == 1 { // half the clients send raw contents
			req.RawInputContents = [][]byte{rawFloat32(req.Inputs[0].Contents.Fp32Contents...)}
			req.Inputs[0].Contents = nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := c.ModelInfer(ctx, req)
		if err != nil {
			return 0, 0, err
		}
		v, _ := strconv.Atoi(resp.GetModelVersion())
		return v, math.Float32frombits(binary.LittleEndian.Uint32(resp.GetRawOutputContents()[0][4:])), nil
	})
}

// TestGRPCServeStopsGracefully ends ServeGRPC while a call runs: the call
// completes, and ServeGRPC returns nil.
func TestGRPCServeStopsGracefully(t *testing.T) {
	h := newHarness(t, false, 0)
	h.srv.Sync(context.Background(), []Model{h.active("fashion", "fashion-mlp", "1.0.0", "1", "")})
	h.waitVersion("fashion", "1.0.0")
	v1 := h.goRT.all()[0]
	v1.block = make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- h.srv.ServeGRPC(ctx, ln) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := oippb.NewGRPCInferenceServiceClient(conn)
	done := make(chan error, 1)
	go func() {
		_, err := c.ModelInfer(callCtx(t), goodGRPCRequest("fashion"))
		done <- err
	}()
	testenv.WaitFor(t, 10*time.Second, "the call to reach the session", func() bool { return v1.running.Load() > 0 })
	cancel()
	testenv.WaitFor(t, 10*time.Second, "the server to stop accepting connections", func() bool {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if v1.running.Load() != 1 {
		t.Fatal("the call in flight ended before it was let go")
	}
	close(v1.block)
	if err := <-done; err != nil {
		t.Errorf("call in flight when the server stopped: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("ServeGRPC = %v", err)
	}
}

// The checked-in oippb code must come from the protoc-gen-go of the
// google.golang.org/protobuf version in go.mod and the protoc-gen-go-grpc
// the Makefile pins (make generate-oip does that).
func TestGeneratedOIPCodeMatchesPins(t *testing.T) {
	gomod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Skip("go.mod not found:", err)
	}
	makefile, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Skip("Makefile not found:", err)
	}
	pb, err := os.ReadFile("oippb/grpc_predict_v2.pb.go")
	if err != nil {
		t.Fatal(err)
	}
	grpcPB, err := os.ReadFile("oippb/grpc_predict_v2_grpc.pb.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what, wantRE, gotRE string
		want, got           []byte
	}{
		{what: "protoc-gen-go", wantRE: `google\.golang\.org/protobuf (v\S+)`, gotRE: `protoc-gen-go (v\S+)`, want: gomod, got: pb},
		{what: "protoc-gen-go-grpc", wantRE: `PROTOC_GEN_GO_GRPC_VERSION := (v\S+)`, gotRE: `protoc-gen-go-grpc (v\S+)`, want: makefile, got: grpcPB},
	} {
		want := regexp.MustCompile(c.wantRE).FindSubmatch(c.want)
		got := regexp.MustCompile(c.gotRE).FindSubmatch(c.got)
		if want == nil || got == nil {
			t.Fatalf("%s: versions not found (pinned %q, generated %q)", c.what, want, got)
		}
		if !bytes.Equal(want[1], got[1]) {
			t.Errorf("oippb generated by %s %s, pinned %s: run make generate-oip", c.what, got[1], want[1])
		}
	}
}

// TestOIPWireNumbers checks the schema against the public definition of
// the protocol (KServe's grpc_predict_v2.proto, and Triton's additions to
// InferParameter): every message field's name, number, kind and
// cardinality, and the service's methods. Clients depend on them.
func TestOIPWireNumbers(t *testing.T) {
	type field struct {
		num      protoreflect.FieldNumber
		kind     string // kind, with "repeated " or "map " before it where so
		typeName string // message type of a message field
	}
	want := map[string]map[string]field{
		"ServerLiveRequest":     {},
		"ServerLiveResponse":    {"live": {1, "bool", ""}},
		"ServerReadyRequest":    {},
		"ServerReadyResponse":   {"ready": {1, "bool", ""}},
		"ModelReadyRequest":     {"name": {1, "string", ""}, "version": {2, "string", ""}},
		"ModelReadyResponse":    {"ready": {1, "bool", ""}},
		"ServerMetadataRequest": {},
		"ServerMetadataResponse": {"name": {1, "string", ""}, "version": {2, "string", ""},
			"extensions": {3, "repeated string", ""}},
		"ModelMetadataRequest": {"name": {1, "string", ""}, "version": {2, "string", ""}},
		"ModelMetadataResponse": {"name": {1, "string", ""}, "versions": {2, "repeated string", ""}, "platform": {3, "string", ""},
			"inputs":  {4, "repeated message", "inference.ModelMetadataResponse.TensorMetadata"},
			"outputs": {5, "repeated message", "inference.ModelMetadataResponse.TensorMetadata"}},
		"ModelMetadataResponse.TensorMetadata": {"name": {1, "string", ""}, "datatype": {2, "string", ""}, "shape": {3, "repeated int64", ""}},
		"ModelInferRequest": {"model_name": {1, "string", ""}, "model_version": {2, "string", ""}, "id": {3, "string", ""},
			"parameters":         {4, "map message", "inference.InferParameter"},
			"inputs":             {5, "repeated message", "inference.ModelInferRequest.InferInputTensor"},
			"outputs":            {6, "repeated message", "inference.ModelInferRequest.InferRequestedOutputTensor"},
			"raw_input_contents": {7, "repeated bytes", ""}},
		"ModelInferRequest.InferInputTensor": {"name": {1, "string", ""}, "datatype": {2, "string", ""}, "shape": {3, "repeated int64", ""},
			"parameters": {4, "map message", "inference.InferParameter"}, "contents": {5, "message", "inference.InferTensorContents"}},
		"ModelInferRequest.InferRequestedOutputTensor": {"name": {1, "string", ""}, "parameters": {2, "map message", "inference.InferParameter"}},
		"ModelInferResponse": {"model_name": {1, "string", ""}, "model_version": {2, "string", ""}, "id": {3, "string", ""},
			"parameters":          {4, "map message", "inference.InferParameter"},
			"outputs":             {5, "repeated message", "inference.ModelInferResponse.InferOutputTensor"},
			"raw_output_contents": {6, "repeated bytes", ""}},
		"ModelInferResponse.InferOutputTensor": {"name": {1, "string", ""}, "datatype": {2, "string", ""}, "shape": {3, "repeated int64", ""},
			"parameters": {4, "map message", "inference.InferParameter"}, "contents": {5, "message", "inference.InferTensorContents"}},
		"InferParameter": {"bool_param": {1, "bool", ""}, "int64_param": {2, "int64", ""}, "string_param": {3, "string", ""},
			"double_param": {4, "double", ""}, "uint64_param": {5, "uint64", ""}},
		"InferTensorContents": {"bool_contents": {1, "repeated bool", ""}, "int_contents": {2, "repeated int32", ""},
			"int64_contents": {3, "repeated int64", ""}, "uint_contents": {4, "repeated uint32", ""}, "uint64_contents": {5, "repeated uint64", ""},
			"fp32_contents": {6, "repeated float", ""}, "fp64_contents": {7, "repeated double", ""}, "bytes_contents": {8, "repeated bytes", ""}},
	}
	file := oippb.File_grpc_predict_v2_proto
	if file.Package() != "inference" {
		t.Fatalf("package %s, want inference", file.Package())
	}
	seen := 0
	var walk func(protoreflect.MessageDescriptors)
	walk = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			m := ms.Get(i)
			if m.IsMapEntry() {
				continue
			}
			name := strings.TrimPrefix(string(m.FullName()), "inference.")
			fields, ok := want[name]
			if !ok {
				t.Errorf("message %s is not in the protocol", name)
			}
			seen++
			if m.Fields().Len() != len(fields) {
				t.Errorf("%s has %d fields, want %d", name, m.Fields().Len(), len(fields))
			}
			for j := range m.Fields().Len() {
				f := m.Fields().Get(j)
				w, ok := fields[string(f.Name())]
				kind := f.Kind().String()
				typeName := ""
				switch {
				case f.IsMap():
					kind = "map " + f.MapValue().Kind().String()
					if f.MapKey().Kind() != protoreflect.StringKind {
						t.Errorf("%s.%s: map key %s, want string", name, f.Name(), f.MapKey().Kind())
					}
					if f.MapValue().Message() != nil {
						typeName = string(f.MapValue().Message().FullName())
					}
				case f.IsList():
					kind = "repeated " + kind
					fallthrough
				default:
					if f.Message() != nil {
						typeName = string(f.Message().FullName())
					}
				}
				if got := (field{f.Number(), kind, typeName}); !ok || got != w {
					t.Errorf("%s.%s = %+v, want %+v", name, f.Name(), got, w)
				}
				if name == "InferParameter" && (f.ContainingOneof() == nil || f.ContainingOneof().Name() != "parameter_choice") {
					t.Errorf("InferParameter.%s is not in oneof parameter_choice", f.Name())
				}
			}
			walk(m.Messages())
		}
	}
	walk(file.Messages())
	if seen != len(want) {
		t.Errorf("%d messages, want %d", seen, len(want))
	}
	svc := file.Services().ByName("GRPCInferenceService")
	if svc == nil {
		t.Fatal("no service GRPCInferenceService")
	}
	methods := map[string][2]string{
		"ServerLive":     {"ServerLiveRequest", "ServerLiveResponse"},
		"ServerReady":    {"ServerReadyRequest", "ServerReadyResponse"},
		"ModelReady":     {"ModelReadyRequest", "ModelReadyResponse"},
		"ServerMetadata": {"ServerMetadataRequest", "ServerMetadataResponse"},
		"ModelMetadata":  {"ModelMetadataRequest", "ModelMetadataResponse"},
		"ModelInfer":     {"ModelInferRequest", "ModelInferResponse"},
	}
	if svc.Methods().Len() != len(methods) {
		t.Errorf("%d methods, want %d", svc.Methods().Len(), len(methods))
	}
	for name, io := range methods {
		m := svc.Methods().ByName(protoreflect.Name(name))
		if m == nil || string(m.Input().Name()) != io[0] || string(m.Output().Name()) != io[1] || m.IsStreamingClient() || m.IsStreamingServer() {
			t.Errorf("method %s = %v, want unary %s -> %s", name, m, io[0], io[1])
		}
	}
}

// FuzzDecodeGRPCRequest feeds arbitrary bytes, as a client could send them,
// through the protobuf decoder and decodeGRPCRequest: a request is refused
// with a RequestError or accepted with inputs that fit the model, and
// nothing panics.
func FuzzDecodeGRPCRequest(f *testing.F) {
	// Two valid seeds: one with typed contents, one with raw ones.
	seeds := []*oippb.ModelInferRequest{
		{ModelName: "m", Inputs: []*oippb.ModelInferRequest_InferInputTensor{
			{Name: "f", Datatype: "FP32", Shape: []int64{2, 2}, Contents: &oippb.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}},
			{Name: "i64", Datatype: "INT64", Shape: []int64{2}, Contents: &oippb.InferTensorContents{Int64Contents: []int64{-9, 7}}},
			{Name: "i32", Datatype: "INT32", Shape: []int64{3}, Contents: &oippb.InferTensorContents{IntContents: []int32{1, -2, 3}}},
			{Name: "i8", Datatype: "INT8", Shape: []int64{1}, Contents: &oippb.InferTensorContents{IntContents: []int32{-128}}},
			{Name: "u8", Datatype: "UINT8", Shape: []int64{2, 1}, Contents: &oippb.InferTensorContents{UintContents: []uint32{0, 255}}},
			{Name: "b", Datatype: "BOOL", Shape: []int64{}, Contents: &oippb.InferTensorContents{BoolContents: []bool{true}}},
		}, Outputs: []*oippb.ModelInferRequest_InferRequestedOutputTensor{{Name: "out"}}},
		{ModelName: "m", Inputs: []*oippb.ModelInferRequest_InferInputTensor{
			{Name: "f", Datatype: "FP32", Shape: []int64{1, 2}},
			{Name: "i64", Datatype: "INT64", Shape: []int64{2}},
			{Name: "i32", Datatype: "INT32", Shape: []int64{1}},
			{Name: "i8", Datatype: "INT8", Shape: []int64{1}},
			{Name: "u8", Datatype: "UINT8", Shape: []int64{2, 1}},
			{Name: "b", Datatype: "BOOL", Shape: []int64{}},
		}, RawInputContents: [][]byte{rawFloat32(1, -2), make([]byte, 16), make([]byte, 4), {0x80}, {1, 2}, {1}}},
	}
	// And copies of the first with a shape of f that the model does not take.
	var refused []*oippb.ModelInferRequest
	for _, shape := range [][]int64{{1, 4}, {4}, {2, 2, 1}} {
		r := proto.Clone(seeds[0]).(*oippb.ModelInferRequest)
		r.Inputs[0].Shape = shape
		refused = append(refused, r)
	}
	for i, s := range append(seeds, refused...) {
		if _, err := decodeGRPCRequest(s, decodeInputs, decodeOutputs, Limits{}); (err == nil) != (i < len(seeds)) {
			f.Fatalf("seed %d (valid %v): %v", i, i < len(seeds), err)
		}
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req oippb.ModelInferRequest
		if proto.Unmarshal(body, &req) != nil {
			return // the gRPC server refuses it before any of our code runs
		}
		r, err := decodeGRPCRequest(&req, decodeInputs, decodeOutputs, Limits{MaxElements: 1 << 16})
		if err != nil {
			if _, ok := err.(*RequestError); !ok {
				t.Fatalf("error %v is not a RequestError", err)
			}
			return
		}
		checkAccepted(t, r)
	})
}
