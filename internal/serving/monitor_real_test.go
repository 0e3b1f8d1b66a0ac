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
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/drift"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/serving/oippb"
	"outpost.dev/outpost/internal/testenv"
	"outpost.dev/outpost/internal/zoo"
)

// fashionReference writes the zoo MLP's reference profile: n training
// images of the embedded Fashion-MNIST subset and the model's answers to
// them (through sess), and returns its path.
func fashionReference(t *testing.T, sess engine.Session, train *dataset.Set, n int, dir string) string {
	t.Helper()
	f, err := drift.NewFeaturizer(drift.FeaturizerConfig{InputShape: []int{784}, OutputShape: []int{10}, ProjectionSeed: 1})
	if err != nil {
		t.Fatal(err)
	}
	x := images(train, 0, n, 1)
	out, err := sess.Run(context.Background(), map[string]*interp.Tensor{zoo.InputName: interp.FromFloat32(x, n, 784)})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "reference.json")
	b := drift.Batch{Input: x, InputShape: []int{n, 784}, Output: out[zoo.OutputName].F32, OutputShape: []int{n, 10}}
	if err := os.WriteFile(path, encodeReference(t, f, b), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// images returns images [from, from+n) of set, each pixel times scale.
func images(set *dataset.Set, from, n int, scale float32) []float32 {
	x := make([]float32, n*784)
	for i := range n {
		set.Sample(from+i, x[i*784:(i+1)*784])
	}
	for i := range x {
		x[i] *= scale
	}
	return x
}

// TestMonitorFashionMNIST serves the zoo MLP with drift monitoring against
// a reference profile of training images: test images, sent over REST
// JSON, REST binary and gRPC, drift in no window, and answers are those of
// the model; darker images (pixels times 0.5) drift in the first window
// that holds them, and raise the alarm.
func TestMonitorFashionMNIST(t *testing.T) {
	train, test, err := dataset.FashionSubset()
	if err != nil {
		t.Fatal(err)
	}
	_, onnxBytes, err := zoo.Get("mlp")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	modelPath := filepath.Join(dir, "mlp.onnx")
	if err := os.WriteFile(modelPath, onnxBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	sess, err := engine.Go{}.Load(context.Background(), modelPath)
	if err != nil {
		t.Fatal(err)
	}
	ref := fashionReference(t, sess, train, 4000, dir)

	sink := &reportSink{}
	srv := New(Config{Windows: sink, Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	grpcClient := startGRPC(t, srv)
	const window = 250
	srv.Sync(context.Background(), []Model{{Deployment: "fashion", Model: "fashion-mlp", Version: "1.0.0", Digest: "sha256:1",
		Files: map[string]string{"model.onnx": modelPath}, Monitoring: &v1alpha1.Monitoring{WindowSamples: window}, Reference: ref}})
	testenv.WaitFor(t, 30*time.Second, "the model loaded", srv.Ready)
	if st := srv.Status(); len(st) != 1 || st[0].Drift == nil || st[0].Error != "" {
		t.Fatalf("status %+v, want monitoring on", st)
	}

	// infer sends images [from, from+n) of set, scaled, over transport
	// 0 (REST JSON), 1 (REST binary) or 2 (gRPC), and checks the answer
	// against the model's own.
	infer := func(set *dataset.Set, from, n int, scale float32, transport int) {
		t.Helper()
		x := images(set, from, n, scale)
		want, err := sess.Run(context.Background(), map[string]*interp.Tensor{zoo.InputName: interp.FromFloat32(x, n, 784)})
		if err != nil {
			t.Fatal(err)
		}
		var got []float32
		switch transport {
		case 0:
			js, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{"name": zoo.InputName, "shape": []int{n, 784}, "datatype": "FP32", "data": x}}})
			code, _, body := post(t, ts.URL+"/v2/models/fashion/infer", js, nil)
			var r InferResponse
			if code != http.StatusOK || json.Unmarshal(body, &r) != nil || json.Unmarshal(r.Outputs[0].Data, &got) != nil {
				t.Fatalf("JSON infer: %d %.300s", code, body)
			}
		case 1:
			head := fmt.Sprintf(`{"inputs":[{"name":%q,"shape":[%d,784],"datatype":"FP32","parameters":{"binary_data_size":%d}}],"parameters":{"binary_data_output":true}}`, zoo.InputName, n, 4*len(x))
			bin := []byte(head)
			for _, v := range x {
				bin = binary.LittleEndian.AppendUint32(bin, math.Float32bits(v))
			}
			code, hdr, body := post(t, ts.URL+"/v2/models/fashion/infer", bin, http.Header{HeaderInferenceContentLength: {strconv.Itoa(len(head))}})
			k, _ := strconv.Atoi(hdr.Get(HeaderInferenceContentLength))
			if code != http.StatusOK || k <= 0 || k > len(body) {
				t.Fatalf("binary infer: %d %.300s", code, body)
			}
			for i := k; i+4 <= len(body); i += 4 {
				got = append(got, math.Float32frombits(binary.LittleEndian.Uint32(body[i:])))
			}
		case 2:
			raw := make([]byte, 0, 4*len(x))
			for _, v := range x {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
			}
			resp, err := grpcClient.ModelInfer(callCtx(t), &oippb.ModelInferRequest{ModelName: "fashion",
				Inputs:           []*oippb.ModelInferRequest_InferInputTensor{{Name: zoo.InputName, Datatype: "FP32", Shape: []int64{int64(n), 784}}},
				RawInputContents: [][]byte{raw}})
			if err != nil {
				t.Fatalf("gRPC infer: %v", err)
			}
			for i := 0; i+4 <= len(resp.RawOutputContents[0]); i += 4 {
				got = append(got, math.Float32frombits(binary.LittleEndian.Uint32(resp.RawOutputContents[0][i:])))
			}
		}
		if w := want[zoo.OutputName].F32; fmt.Sprint(got) != fmt.Sprint(w) {
			t.Fatalf("transport %d: answer %v, the model's %v", transport, got[:10], w[:10])
		}
	}

	// The 1000 test images, in batches of 5, over the three transports in
	// turn: four windows, none drifted.
	for i := 0; i < test.Len(); i += 5 {
		infer(test, i, 5, 1, (i/5)%3)
	}
	reps := sink.wait(t, 4)
	for i, rep := range reps {
		if rep.Samples != window || rep.Verdict != drift.VerdictNoDrift || rep.Alarm {
			t.Errorf("test images, window %d: %d samples, %s (%s), alarm %v", i, rep.Samples, rep.Verdict, rep.Reason, rep.Alarm)
		}
	}
	// Darker images: the next window drifts, on the images' mean among
	// others, and raises the alarm.
	for i := 0; i < window; i += 10 {
		infer(test, i, 10, 0.5, (i/10)%3)
	}
	rep := sink.wait(t, 5)[4]
	mean := rep.Features[0]
	if rep.Verdict != drift.VerdictDrift || !rep.Alarm || mean.Name != "in.mean" || !mean.Drifted {
		t.Errorf("darker images: %s (%s), alarm %v, %s drifted %v", rep.Verdict, rep.Reason, rep.Alarm, mean.Name, mean.Drifted)
	}
	st := srv.Status()[0].Drift
	if st.Windows != 5 || !st.Alarm || st.Samples != 1250 || st.Dropped != 0 || st.Skipped != 0 {
		t.Errorf("drift status %+v", st)
	}
}
