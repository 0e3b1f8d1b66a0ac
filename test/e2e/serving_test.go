package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/serving/oippb"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/train"
)

// defaultServe is the agent's default inference address.
const defaultServe = "127.0.0.1:8080"

// holdDefaultServe makes sure that the default inference address is taken
// while the test runs: by the test, unless another process holds it.
func holdDefaultServe(t *testing.T) {
	t.Helper()
	testenv.TakeFixedPorts(t)
	ln, err := net.Listen("tcp", defaultServe)
	switch {
	case err == nil:
		t.Cleanup(func() { ln.Close() })
	case !errors.Is(err, syscall.EADDRINUSE):
		t.Fatalf("hold %s: %v", defaultServe, err)
	}
}

// runSplit runs the outpost CLI against the hub and returns its standard
// output and error apart.
func (h *hub) runSplit(args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, outpostBin, append([]string{"--config", h.config}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// inferOutputs returns the outputs of an 'outpost infer -o json' answer.
func inferOutputs(t *testing.T, answer string) string {
	t.Helper()
	var r struct {
		Outputs json.RawMessage `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(answer), &r); err != nil || len(r.Outputs) == 0 {
		t.Fatalf("infer answered %q: %v", answer, err)
	}
	return string(r.Outputs)
}

// grpcInfer sends x to model over gRPC at addr and returns the raw bytes
// of its first output.
func grpcInfer(t *testing.T, addr, model string, x []float32) []byte {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	raw := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	resp, err := oippb.NewGRPCInferenceServiceClient(conn).ModelInfer(ctx, &oippb.ModelInferRequest{ModelName: model,
		Inputs:           []*oippb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, int64(len(x))}}},
		RawInputContents: [][]byte{raw}})
	if err != nil {
		t.Fatalf("gRPC ModelInfer %s at %s: %v", model, addr, err)
	}
	if len(resp.GetRawOutputContents()) != 1 {
		t.Fatalf("gRPC answer %v", resp)
	}
	return resp.GetRawOutputContents()[0]
}

// TestServingEndpoints runs two agents while the default inference address
// is taken, so that each serves on a free port, and checks that the ports
// they really serve on show in 'outpost agent status', in their Clusters'
// status and in 'outpost get clusters -o wide'; that 'outpost infer
// --cluster' reaches the right agent; and that 'outpost serve' of the same
// ONNX file answers as the agent does, over REST and gRPC.
func TestServingEndpoints(t *testing.T) {
	holdDefaultServe(t)
	h := startHub(t)
	tok := joinToken(t, h, "1h")
	edgeA := newAgent(t, h, "edge-a", "site=a", tok, "--grpc", "127.0.0.1:0")
	edgeB := newAgent(t, h, "edge-b", "site=b", tok)
	edgeA.defaultServe, edgeB.defaultServe = true, true
	edgeA.start()
	edgeB.start()

	src := filepath.Join(t.TempDir(), "tiny")
	b, err := train.NewMLP([]int{4, 8, 3}, 3).MarshalONNX("tiny")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(src, 0o755)
	if err := os.WriteFile(filepath.Join(src, "model.onnx"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	h.mustRun("model", "push", src, "--name", "tiny", "--version", "1.0.0")
	applyYAML(t, h, deployment("tiny", "tiny", "^1.0", "site: a", ""))
	testenv.WaitFor(t, 60*time.Second, "edge-a active at 1.0.0", func() bool { return edgeA.status().active("tiny") == "1.0.0" })

	endpoints := func(a *agentProc) v1alpha1.ServingEndpoints {
		out, err := exec.Command(outpostBin, "agent", "status", "--data", a.dir, "-o", "json").Output()
		var st struct {
			Endpoints *v1alpha1.ServingEndpoints `json:"endpoints"`
		}
		if err != nil || json.Unmarshal(out, &st) != nil || st.Endpoints == nil {
			t.Fatalf("agent status %s: %v\n%s", a.name, err, out)
		}
		return *st.Endpoints
	}
	epA, epB := endpoints(edgeA), endpoints(edgeB)
	for _, ep := range []v1alpha1.ServingEndpoints{epA, epB} {
		if ep.REST == "" || ep.REST == "http://"+defaultServe {
			t.Fatalf("agent endpoints %+v: want a free port's, the default being taken", ep)
		}
	}
	if epA.REST == epB.REST || epA.GRPC == "" || epB.GRPC != "" {
		t.Fatalf("endpoints edge-a %+v, edge-b %+v", epA, epB)
	}
	if out := h.mustRun("agent", "status", "--data", edgeA.dir); !strings.Contains(out, "Serving:          "+epA.REST+" (REST), "+epA.GRPC+" (gRPC)") {
		t.Errorf("agent status lacks edge-a's endpoints:\n%s", out)
	}
	for _, a := range []struct {
		name string
		ep   v1alpha1.ServingEndpoints
	}{{"edge-a", epA}, {"edge-b", epB}} {
		testenv.WaitFor(t, 30*time.Second, "the hub to hold "+a.name+"'s endpoints", func() bool {
			var c v1alpha1.Cluster
			out, _, err := h.runSplit("get", "cluster", a.name, "-o", "json")
			return err == nil && json.Unmarshal([]byte(out), &c) == nil && c.Status.Endpoints != nil && *c.Status.Endpoints == a.ep
		})
	}
	wide := h.mustRun("get", "clusters", "-o", "wide")
	if rest := column(t, wide, "REST"); strings.Join(rest, " ") != epA.REST+" "+epB.REST {
		t.Errorf("get clusters -o wide REST column %v, want %s %s:\n%s", rest, epA.REST, epB.REST, wide)
	}

	in := filepath.Join(t.TempDir(), "x.json")
	os.WriteFile(in, []byte(`[0.1, 0.9, 0.3, 0.5]`), 0o644)
	var agentOut string
	testenv.WaitFor(t, 30*time.Second, "edge-a to answer through --cluster", func() bool {
		out, errOut, err := h.runSplit("infer", "tiny", "--input", in, "--cluster", "edge-a", "-o", "json")
		if err != nil {
			return false
		}
		if !strings.Contains(errOut, "Server: "+epA.REST+" (cluster edge-a)") {
			t.Fatalf("infer does not name the server it asked: %q", errOut)
		}
		agentOut = inferOutputs(t, out)
		return true
	})
	// edge-b does not serve tiny: its own 404 shows the request went there.
	if _, errOut, err := h.runSplit("infer", "tiny", "--input", in, "--cluster", "edge-b"); err == nil ||
		!strings.Contains(errOut, epB.REST+` (cluster edge-b): 404 Not Found: unknown model "tiny"`) {
		t.Errorf("infer --cluster edge-b = %v %q", err, errOut)
	}
	if _, errOut, err := h.runSplit("infer", "tiny", "--input", in, "--cluster", "edge-c"); err == nil ||
		!strings.Contains(errOut, "no such cluster on "+h.url()+"; it has edge-a, edge-b") {
		t.Errorf("infer --cluster edge-c = %v %q", err, errOut)
	}
	x := []float32{0.1, 0.9, 0.3, 0.5}
	agentGRPC := grpcInfer(t, epA.GRPC, "tiny", x)

	// The same file served with no hub answers the same.
	stdout, stderr := &testenv.Buffer{}, &testenv.Buffer{}
	serve := exec.Command(outpostBin, "serve", filepath.Join(src, "model.onnx"), "--model", "folder="+src, "--grpc", "127.0.0.1:0")
	serve.Stdout, serve.Stderr = stdout, stderr
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop(serve)
		if t.Failed() {
			t.Logf("outpost serve:\n%s\n%s", stdout, stderr)
		}
	})
	testenv.WaitFor(t, 60*time.Second, "outpost serve ready", func() bool { return strings.Contains(stdout.String(), "Ready") })
	rest := regexp.MustCompile(`(?m)^  REST  (\S+)$`).FindStringSubmatch(stdout.String())
	grpcAddr := regexp.MustCompile(`(?m)^  gRPC  (\S+)$`).FindStringSubmatch(stdout.String())
	if rest == nil || grpcAddr == nil || rest[1] == "http://"+defaultServe {
		t.Fatalf("outpost serve endpoints %v %v, want a free port's", rest, grpcAddr)
	}
	for _, model := range []string{"model", "folder"} {
		out, errOut, err := h.runSplit("infer", model, "--input", in, "--server", rest[1], "-o", "json")
		if err != nil {
			t.Fatalf("infer %s at outpost serve: %v %s", model, err, errOut)
		}
		if got := inferOutputs(t, out); got != agentOut {
			t.Errorf("outpost serve %s answers %s over REST, the agent %s", model, got, agentOut)
		}
		if got := grpcInfer(t, grpcAddr[1], model, x); !bytes.Equal(got, agentGRPC) {
			t.Errorf("outpost serve %s answers %x over gRPC, the agent %x", model, got, agentGRPC)
		}
	}
}
