package serving

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/train"
)

// TestServeTrainedMLP serves a multilayer perceptron trained on
// Fashion-MNIST by internal/train and exported as ONNX, with the Go
// runtime, and checks its answers on real test images against the
// trainer's own forward pass, in JSON and in binary.
func TestServeTrainedMLP(t *testing.T) {
	trainSet, testSet, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	m := train.NewMLP([]int{784, 32, 10}, 7)
	if _, err := m.Train(context.Background(), trainSet.Slice(0, 2000), train.TrainOptions{Epochs: 1}); err != nil {
		t.Fatal(err)
	}
	onnxBytes, err := m.MarshalONNX("fashion-mlp")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, onnxBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := New(Config{Logger: slog.New(slog.DiscardHandler)}) // the real Go runtime
	defer srv.Close()
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	srv.Sync(context.Background(), []Model{{Deployment: "fashion", Model: "fashion-mlp", Version: "1.0.0",
		Digest: "sha256:1", Files: map[string]string{"fashion-mlp.onnx": path}}})
	testenv.WaitFor(t, 30*time.Second, "the model loaded", srv.Ready)
	if st := srv.Status(); len(st) != 1 || st[0].State != StateReady || st[0].Runtime != engine.RuntimeGo {
		t.Fatalf("status %+v", st)
	}

	resp, err := http.Get(ts.URL + "/v2/models/fashion")
	if err != nil {
		t.Fatal(err)
	}
	meta, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `{"name":"fashion","versions":["1.0.0"],"platform":"onnx","inputs":[{"name":"input","datatype":"FP32","shape":[-1,784]}],` +
		`"outputs":[{"name":"probabilities","datatype":"FP32","shape":[-1,10]}]}` + "\n"
	if string(meta) != want {
		t.Errorf("metadata %s, want %s", meta, want)
	}

	const batch = 4
	x := make([]float32, batch*784)
	for i := range batch {
		testSet.Sample(i, x[i*784:(i+1)*784])
	}
	expect := m.Predict(x)
	check := func(name string, got []float32) {
		t.Helper()
		if len(got) != len(expect) {
			t.Fatalf("%s: %d outputs, want %d", name, len(got), len(expect))
		}
		for i := range got {
			if math.Abs(float64(got[i]-expect[i])) > 1e-5 {
				t.Fatalf("%s: output %d = %g, want %g", name, i, got[i], expect[i])
			}
		}
	}

	// JSON, nested rows.
	rows := make([][]float32, batch)
	for i := range rows {
		rows[i] = x[i*784 : (i+1)*784]
	}
	js, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{"name": "input", "shape": []int{batch, 784}, "datatype": "FP32", "data": rows}}})
	code, _, body := post(t, ts.URL+"/v2/models/fashion/infer", js, nil)
	var r InferResponse
	var probs []float32
	if code != 200 || json.Unmarshal(body, &r) != nil || json.Unmarshal(r.Outputs[0].Data, &probs) != nil {
		t.Fatalf("JSON infer: %d %.300s", code, body)
	}
	if fmt.Sprint(r.Outputs[0].Shape) != "[4 10]" {
		t.Errorf("output shape %v", r.Outputs[0].Shape)
	}
	check("JSON", probs)

	// Binary in and out.
	head := fmt.Sprintf(`{"inputs":[{"name":"input","shape":[%d,784],"datatype":"FP32","parameters":{"binary_data_size":%d}}],"parameters":{"binary_data_output":true}}`, batch, 4*len(x))
	bin := []byte(head)
	for _, v := range x {
		bin = binary.LittleEndian.AppendUint32(bin, math.Float32bits(v))
	}
	code, hdr, body := post(t, ts.URL+"/v2/models/fashion/infer", bin, http.Header{HeaderInferenceContentLength: {strconv.Itoa(len(head))}})
	n, _ := strconv.Atoi(hdr.Get(HeaderInferenceContentLength))
	if code != 200 || n <= 0 || n > len(body) || len(body)-n != 4*batch*10 {
		t.Fatalf("binary infer: %d, header %d, %d bytes", code, n, len(body))
	}
	probs = probs[:0]
	for i := n; i < len(body); i += 4 {
		probs = append(probs, math.Float32frombits(binary.LittleEndian.Uint32(body[i:])))
	}
	check("binary", probs)

	// A wrong shape is refused by name, and the model keeps serving.
	code, _, body = post(t, ts.URL+"/v2/models/fashion/infer", []byte(`{"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}`), nil)
	if code != 400 || !strings.Contains(string(body), `input \"input\": shape [1,3] does not match the model's [-1,784]`) {
		t.Errorf("wrong shape: %d %s", code, body)
	}
	if code, _, _ := post(t, ts.URL+"/v2/models/fashion/infer", js, nil); code != 200 {
		t.Errorf("after an error: %d", code)
	}
}

func post(t *testing.T, url string, body []byte, hdr http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}
