package cli

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"outpost.dev/outpost/internal/serving"
	"outpost.dev/outpost/internal/serving/oippb"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/train"
)

// writeMLP writes a small MLP exported by internal/train as an ONNX file
// and returns the network, for its predictions.
func writeMLP(t *testing.T, path string) *train.MLP {
	t.Helper()
	m := train.NewMLP([]int{4, 8, 3}, 3)
	b, err := m.MarshalONNX("tiny")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return m
}

var (
	restLine = regexp.MustCompile(`(?m)^  REST  (\S+)$`)
	grpcLine = regexp.MustCompile(`(?m)^  gRPC  (\S+)$`)
)

// TestServeCommand serves an ONNX file and a model folder with 'outpost
// serve', with no hub, and asks both over REST and gRPC: the answers are
// the network's predictions.
func TestServeCommand(t *testing.T) {
	dir := t.TempDir()
	m := writeMLP(t, filepath.Join(dir, "tiny.onnx"))
	folder := filepath.Join(dir, "my-model")
	writeMLP(t, filepath.Join(folder, "onnx", "model.onnx"))
	if err := os.WriteFile(filepath.Join(folder, "config.json"), []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}

	p := startCLI(t, "serve", filepath.Join(dir, "tiny.onnx"), "--model", "folder@1.2.0="+folder,
		"--serve", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--runtime", "go")
	testenv.WaitFor(t, 60*time.Second, "outpost serve ready", func() bool { return strings.Contains(p.stdout.String(), "Ready") })
	out := p.stdout.String()
	rest, grpcAddr := restLine.FindStringSubmatch(out), grpcLine.FindStringSubmatch(out)
	if rest == nil || grpcAddr == nil {
		t.Fatalf("serve prints no endpoints:\n%s\n%s", out, p.stderr)
	}
	for _, want := range []string{
		"tiny    local    go", "folder  1.2.0    go", rest[1] + "/v2/models/tiny/infer", rest[1] + "/v2/models/folder/infer",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("serve output lacks %q:\n%s", want, out)
		}
	}

	x := []float32{0.1, 0.9, 0.3, 0.5}
	want := m.Predict(x)
	in := filepath.Join(dir, "x.json")
	if err := os.WriteFile(in, []byte(`[0.1, 0.9, 0.3, 0.5]`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, model := range []string{"tiny", "folder"} {
		got, errOut, code := runCLI(t, "infer", model, "--input", in, "--server", rest[1], "-o", "json")
		var r serving.InferResponse
		var probs []float32
		if code != 0 || json.Unmarshal([]byte(got), &r) != nil || len(r.Outputs) != 1 || json.Unmarshal(r.Outputs[0].Data, &probs) != nil {
			t.Fatalf("infer %s = %d: %s %s", model, code, got, errOut)
		}
		if !close32(probs, want) {
			t.Errorf("REST %s: %v, want %v", model, probs, want)
		}
		if !strings.Contains(errOut, "Server: "+rest[1]) {
			t.Errorf("infer does not name the server it asked: %q", errOut)
		}
	}

	conn, err := grpc.NewClient(grpcAddr[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := oippb.NewGRPCInferenceServiceClient(conn)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	raw := make([]byte, 4*len(x))
	for i, v := range x {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	resp, err := c.ModelInfer(ctx, &oippb.ModelInferRequest{ModelName: "tiny",
		Inputs:           []*oippb.ModelInferRequest_InferInputTensor{{Name: "input", Datatype: "FP32", Shape: []int64{1, 4}}},
		RawInputContents: [][]byte{raw}})
	if err != nil {
		t.Fatalf("gRPC ModelInfer: %v", err)
	}
	if resp.GetModelVersion() != "local" || len(resp.GetRawOutputContents()) != 1 {
		t.Fatalf("gRPC answer %v", resp)
	}
	got := make([]float32, len(resp.GetRawOutputContents()[0])/4)
	for i := range got {
		got[i] = math.Float32frombits(binary.LittleEndian.Uint32(resp.GetRawOutputContents()[0][4*i:]))
	}
	if !close32(got, want) {
		t.Errorf("gRPC: %v, want %v", got, want)
	}
}

// close32 reports whether a and b are equal to within float32 rounding.
func close32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(float64(a[i]-b[i])) > 1e-5 {
			return false
		}
	}
	return true
}

// TestServeRefuses checks what 'outpost serve' refuses before it serves.
func TestServeRefuses(t *testing.T) {
	dir := t.TempDir()
	writeMLP(t, filepath.Join(dir, "a", "tiny.onnx"))
	writeMLP(t, filepath.Join(dir, "b", "tiny.onnx"))
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), []byte{1, 2, 3}, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"nothing", nil, "no model to serve: give an ONNX file or model folder, or --model NAME=PATH"},
		{"missing file", []string{filepath.Join(dir, "nope.onnx")}, "model nope: stat " + filepath.Join(dir, "nope.onnx")},
		{"no ONNX model", []string{filepath.Join(dir, "weights.bin")}, "the model has no .onnx file"},
		{"same names", []string{filepath.Join(dir, "a", "tiny.onnx"), filepath.Join(dir, "b", "tiny.onnx")}, `are both named "tiny": name one with --model NAME=PATH`},
		{"bad spec", []string{"--model", "tiny"}, `--model "tiny": want NAME=PATH or NAME@VERSION=PATH`},
		{"bad runtime", []string{filepath.Join(dir, "a", "tiny.onnx"), "--runtime", "cuda"}, `--runtime "cuda": want auto, go or onnxruntime`},
		{"no endpoint", []string{filepath.Join(dir, "a", "tiny.onnx"), "--serve", ""}, `--serve "" needs --grpc ADDR`},
		{"limits", []string{filepath.Join(dir, "a", "tiny.onnx"), "--max-inflight-bytes", "1MiB"}, "--max-inflight-bytes 1MiB is less than --max-request-bytes 64MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := runCLI(t, append([]string{"serve"}, tt.args...)...)
			if code == 0 || !strings.Contains(errOut, tt.want) {
				t.Errorf("serve %v = %d, stderr %q, want an error with %q", tt.args, code, errOut, tt.want)
			}
		})
	}
}

// TestServeFallsBackFromBusyDefault checks that 'outpost serve' on the
// default address, held by another process, serves on a free port and
// says where.
func TestServeFallsBackFromBusyDefault(t *testing.T) {
	holdDefault(t)
	dir := t.TempDir()
	writeMLP(t, filepath.Join(dir, "tiny.onnx"))
	p := startCLI(t, "serve", filepath.Join(dir, "tiny.onnx"))
	testenv.WaitFor(t, 60*time.Second, "outpost serve ready", func() bool { return strings.Contains(p.stdout.String(), "Ready") })
	rest := restLine.FindStringSubmatch(p.stdout.String())
	if rest == nil || rest[1] == "http://"+DefaultServeAddr {
		t.Fatalf("serve on a busy default says it serves at %v:\n%s", rest, p.stdout)
	}
	if _, errOut, code := runCLI(t, "infer", "nope", "--input", writeFile(t, `[1,2,3,4]`), "--server", rest[1]); code == 0 ||
		!strings.Contains(errOut, rest[1]+`: 404 Not Found: unknown model "nope"`) {
		t.Errorf("infer of an unknown model = %d %q, want the server named", code, errOut)
	}
}
