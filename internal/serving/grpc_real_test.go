package serving

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/serving/oippb"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/zoo"
)

// zooServer serves the zoo's MLP with the Go runtime, over REST (the
// returned URL) and gRPC (the returned client), and returns a batch of
// test images and the model's answer to it from a session of its own.
func zooServer(t *testing.T) (c oippb.GRPCInferenceServiceClient, restURL, addr string, x *interp.Tensor, want *interp.Tensor) {
	t.Helper()
	m, onnxBytes, err := zoo.Get("mlp")
	if err != nil {
		t.Fatal(err)
	}
	_, testSet, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, onnxBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := New(Config{Logger: slog.New(slog.DiscardHandler), Version: "test"}) // the real Go runtime
	t.Cleanup(srv.Close)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	c, addr = serveGRPC(t, srv)
	srv.Sync(context.Background(), []Model{{Deployment: "fashion", Model: "fashion-mlp", Version: "1.0.0",
		Digest: "sha256:1", Files: map[string]string{"mlp.onnx": path}}})
	testenv.WaitFor(t, 30*time.Second, "the model loaded", srv.Ready)
	if st := srv.Status(); len(st) != 1 || st[0].State != StateReady || st[0].Runtime != engine.RuntimeGo {
		t.Fatalf("status %+v", st)
	}

	x = m.Batch(testSet, 0, 4)
	sess, err := engine.Go{}.Load(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	out, err := sess.Run(context.Background(), map[string]*interp.Tensor{zoo.InputName: x})
	if err != nil {
		t.Fatal(err)
	}
	return c, ts.URL, addr, x, out[zoo.OutputName]
}

// sameFloats reports whether got holds exactly the elements of want.
func sameFloats(got []float32, want *interp.Tensor) error {
	if len(got) != len(want.F32) {
		return fmt.Errorf("%d elements, want %d", len(got), len(want.F32))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want.F32[i]) {
			return fmt.Errorf("element %d = %g, want %g", i, got[i], want.F32[i])
		}
	}
	return nil
}

// TestGRPCServeZooMLP serves the zoo's MLP and checks that gRPC, with
// typed and with raw inputs, answers exactly what the REST API and a
// session of the model's own answer.
func TestGRPCServeZooMLP(t *testing.T) {
	c, restURL, _, x, want := zooServer(t)
	ctx := callCtx(t)
	md, err := c.ModelMetadata(ctx, &oippb.ModelMetadataRequest{Name: "fashion"})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("%s %v %s %v %v", md.GetName(), md.GetVersions(), md.GetPlatform(), tensorMetadataOf(md.GetInputs()), tensorMetadataOf(md.GetOutputs())); got !=
		"fashion [1.0.0] onnx [{input FP32 [-1 784]}] [{probabilities FP32 [-1 10]}]" {
		t.Errorf("metadata %s", got)
	}
	shape := int64Shape(x.Shape)
	typed := &oippb.ModelInferRequest{ModelName: "fashion", Inputs: []*oippb.ModelInferRequest_InferInputTensor{{
		Name: zoo.InputName, Datatype: "FP32", Shape: shape, Contents: &oippb.InferTensorContents{Fp32Contents: x.F32}}}}
	raw := &oippb.ModelInferRequest{ModelName: "fashion", Inputs: []*oippb.ModelInferRequest_InferInputTensor{{
		Name: zoo.InputName, Datatype: "FP32", Shape: shape}}, RawInputContents: [][]byte{rawFloat32(x.F32...)}}
	for name, req := range map[string]*oippb.ModelInferRequest{"fp32_contents": typed, "raw_input_contents": raw} {
		resp, err := c.ModelInfer(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		o := resp.GetOutputs()
		if len(o) != 1 || o[0].GetName() != zoo.OutputName || o[0].GetDatatype() != "FP32" || fmt.Sprint(o[0].GetShape()) != "[4 10]" {
			t.Fatalf("%s: outputs %v", name, o)
		}
		if err := sameFloats(decodeRaw(t, resp)[zoo.OutputName].([]float32), want); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// The REST API, binary in and out, answers the same.
	head := fmt.Sprintf(`{"inputs":[{"name":"input","shape":[4,784],"datatype":"FP32","parameters":{"binary_data_size":%d}}],"parameters":{"binary_data_output":true}}`, 4*len(x.F32))
	code, hdr, body := post(t, restURL+"/v2/models/fashion/infer", append([]byte(head), rawFloat32(x.F32...)...),
		http.Header{HeaderInferenceContentLength: {strconv.Itoa(len(head))}})
	n, _ := strconv.Atoi(hdr.Get(HeaderInferenceContentLength))
	if code != 200 || n <= 0 || n > len(body) {
		t.Fatalf("REST infer: %d %.300s", code, body)
	}
	var rest []float32
	for i := n; i+4 <= len(body); i += 4 {
		rest = append(rest, math.Float32frombits(binary.LittleEndian.Uint32(body[i:])))
	}
	if err := sameFloats(rest, want); err != nil {
		t.Errorf("REST: %v", err)
	}

	// A wrong shape is refused by name, and the model keeps serving.
	bad := &oippb.ModelInferRequest{ModelName: "fashion", Inputs: []*oippb.ModelInferRequest_InferInputTensor{{
		Name: zoo.InputName, Datatype: "FP32", Shape: []int64{1, 3}, Contents: &oippb.InferTensorContents{Fp32Contents: []float32{1, 2, 3}}}}}
	if _, err := c.ModelInfer(ctx, bad); status.Code(err) != codes.InvalidArgument ||
		status.Convert(err).Message() != `input "input": shape [1,3] does not match the model's [-1,784]` {
		t.Errorf("wrong shape: %v", err)
	}
	if _, err := c.ModelInfer(ctx, raw); err != nil {
		t.Errorf("after an error: %v", err)
	}
}

// pythonGRPCClient is a gRPC client of the protocol in Python (grpcio and
// protobuf: a second implementation of both on the wire), with stubs that
// grpc_tools.protoc generated into argv[1]. It reads the input as raw
// little-endian float32 from argv[4] and prints what the server answered
// as JSON.
const pythonGRPCClient = `
import json, struct, sys
sys.path.insert(0, sys.argv[1])
import grpc
import grpc_predict_v2_pb2 as pb
import grpc_predict_v2_pb2_grpc as pbg

addr, model, xfile, shape = sys.argv[2], sys.argv[3], sys.argv[4], [int(d) for d in sys.argv[5].split(",")]
xb = open(xfile, "rb").read()
x = struct.unpack("<%df" % (len(xb) // 4), xb)

def outputs(resp):
    res = {}
    for i, o in enumerate(resp.outputs):
        raw = resp.raw_output_contents[i]
        res[o.name] = {"datatype": o.datatype, "shape": list(o.shape), "data": list(struct.unpack("<%df" % (len(raw) // 4), raw))}
    return res

out = {}
with grpc.insecure_channel(addr) as ch:
    stub = pbg.GRPCInferenceServiceStub(ch)
    out["live"] = stub.ServerLive(pb.ServerLiveRequest(), timeout=20).live
    out["ready"] = stub.ServerReady(pb.ServerReadyRequest(), timeout=20).ready
    out["model_ready"] = stub.ModelReady(pb.ModelReadyRequest(name=model, version="1.0.0"), timeout=20).ready
    sm = stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=20)
    out["server"] = [sm.name, sm.version]
    md = stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=20)
    out["metadata"] = {"name": md.name, "versions": list(md.versions), "platform": md.platform,
        "inputs": [[t.name, t.datatype, list(t.shape)] for t in md.inputs],
        "outputs": [[t.name, t.datatype, list(t.shape)] for t in md.outputs]}
    name = md.inputs[0].name

    req = pb.ModelInferRequest(model_name=model, id="py-raw")
    t = req.inputs.add(name=name, datatype="FP32", shape=shape)
    t.parameters["note"].string_param = "ignored"
    req.outputs.add(name=md.outputs[0].name)
    req.raw_input_contents.append(xb)
    resp = stub.ModelInfer(req, timeout=20)
    out["raw"] = {"id": resp.id, "model": resp.model_name, "version": resp.model_version, "outputs": outputs(resp)}

    req = pb.ModelInferRequest(model_name=model, model_version="1.0.0", id="py-typed")
    t = req.inputs.add(name=name, datatype="FP32", shape=shape)
    t.contents.fp32_contents.extend(x)
    resp = stub.ModelInfer(req, timeout=20)
    out["typed"] = {"id": resp.id, "model": resp.model_name, "version": resp.model_version, "outputs": outputs(resp)}

    errs = {}
    for key, r in {
        "unknown model": pb.ModelInferRequest(model_name="nope", inputs=[pb.ModelInferRequest.InferInputTensor(name=name, datatype="FP32", shape=shape)], raw_input_contents=[xb]),
        "wrong shape": pb.ModelInferRequest(model_name=model, inputs=[pb.ModelInferRequest.InferInputTensor(name=name, datatype="FP32", shape=[1, 3])], raw_input_contents=[xb[:12]]),
        "wrong datatype": pb.ModelInferRequest(model_name=model, inputs=[pb.ModelInferRequest.InferInputTensor(name=name, datatype="INT32", shape=shape)], raw_input_contents=[xb]),
    }.items():
        try:
            stub.ModelInfer(r, timeout=20)
            errs[key] = ["OK", ""]
        except grpc.RpcError as e:
            errs[key] = [e.code().name, e.details()]
    out["errors"] = errs
print(json.dumps(out))
`

// TestGRPCPythonClient calls the server from Python's grpcio with stubs
// generated from grpc_predict_v2.proto, and checks every answer.
func TestGRPCPythonClient(t *testing.T) {
	py := testenv.Python(t, "grpc, grpc_tools.protoc",
		"python3 with the grpc and grpc_tools modules not found (Debian python3-grpcio and python3-grpc-tools; scripts/debian-deps.sh installs them)")
	stubs := t.TempDir()
	gen := exec.Command(py, "-m", "grpc_tools.protoc", "-I", "oippb", "--python_out="+stubs, "--grpc_python_out="+stubs, "grpc_predict_v2.proto")
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("grpc_tools.protoc: %v\n%s", err, out)
	}
	_, _, addr, x, want := zooServer(t)
	xfile := filepath.Join(t.TempDir(), "x.f32")
	if err := os.WriteFile(xfile, rawFloat32(x.F32...), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", pythonGRPCClient, stubs, addr, "fashion", xfile, "4,784")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python client: %v\n%s", err, stderr.String())
	}
	type outputJSON struct {
		Datatype string    `json:"datatype"`
		Shape    []int     `json:"shape"`
		Data     []float64 `json:"data"`
	}
	type inferJSON struct {
		ID      string                `json:"id"`
		Model   string                `json:"model"`
		Version string                `json:"version"`
		Outputs map[string]outputJSON `json:"outputs"`
	}
	var got struct {
		Live       bool                 `json:"live"`
		Ready      bool                 `json:"ready"`
		ModelReady bool                 `json:"model_ready"`
		Server     []string             `json:"server"`
		Metadata   json.RawMessage      `json:"metadata"`
		Raw        inferJSON            `json:"raw"`
		Typed      inferJSON            `json:"typed"`
		Errors     map[string][2]string `json:"errors"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python client printed %s: %v", out, err)
	}
	if !got.Live || !got.Ready || !got.ModelReady || fmt.Sprint(got.Server) != "[outpost test]" {
		t.Errorf("health and server metadata: %s", out)
	}
	if wantMD := `{"name": "fashion", "versions": ["1.0.0"], "platform": "onnx", "inputs": [["input", "FP32", [-1, 784]]], "outputs": [["probabilities", "FP32", [-1, 10]]]}`; string(got.Metadata) != wantMD {
		t.Errorf("model metadata %s\nwant %s", got.Metadata, wantMD)
	}
	for _, r := range []struct {
		id string
		r  inferJSON
	}{{"py-raw", got.Raw}, {"py-typed", got.Typed}} {
		o, ok := r.r.Outputs[zoo.OutputName]
		if r.r.ID != r.id || r.r.Model != "fashion" || r.r.Version != "1.0.0" || len(r.r.Outputs) != 1 || !ok ||
			o.Datatype != "FP32" || fmt.Sprint(o.Shape) != "[4 10]" {
			t.Errorf("%s: answer %+v", r.id, r.r)
			continue
		}
		f := make([]float32, len(o.Data))
		for i, v := range o.Data {
			f[i] = float32(v)
		}
		if err := sameFloats(f, want); err != nil {
			t.Errorf("%s: %v", r.id, err)
		}
	}
	for key, w := range map[string][2]string{
		"unknown model":  {"NOT_FOUND", `unknown model "nope"`},
		"wrong shape":    {"INVALID_ARGUMENT", `input "input": shape [1,3] does not match the model's [-1,784]`},
		"wrong datatype": {"INVALID_ARGUMENT", `input "input": datatype INT32 does not match the model's FP32`},
	} {
		if got.Errors[key] != w {
			t.Errorf("%s: python client got %q, want %q", key, got.Errors[key], w)
		}
	}
}
