package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"outpost.dev/outpost/api/v1alpha1"
	"outpost.dev/outpost/internal/onnx/engine"
	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/serving"
	"outpost.dev/outpost/internal/zoo"
)

// httpServer is a serving.Server on loopback with one deployment per zoo
// model and runtime, named MODEL-RUNTIME.
type httpServer struct {
	base   string
	client *http.Client
	stop   func()
}

func deployment(model, runtime string) string { return model + "-" + runtime }

func startServer(ctx context.Context, runtimes []engine.Runtime, paths map[string]string, clients int) (*httpServer, error) {
	cfg := serving.Config{Version: "bench", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var active []serving.Model
	for _, r := range runtimes {
		kind := v1alpha1.RuntimeGo
		if r.Name() == engine.RuntimeONNXRuntime {
			kind = v1alpha1.RuntimeONNXRuntime
			cfg.ONNXRuntime = r
		}
		for model, path := range paths {
			active = append(active, serving.Model{
				Deployment: deployment(model, r.Name()), Model: model, Version: "1",
				Digest: "sha256:" + model, Files: map[string]string{"model.onnx": path},
				Serving: v1alpha1.Serving{Runtime: kind},
			})
		}
	}
	srv := serving.New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, ln)
	}()
	srv.Sync(ctx, active)
	h := &httpServer{
		base:   "http://" + ln.Addr().String(),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients + 1}},
		stop:   func() { cancel(); <-done },
	}
	// Wait until every deployment answers ready.
	deadline := time.Now().Add(30 * time.Second)
	for _, am := range active {
		for {
			resp, err := h.client.Get(h.base + "/v2/models/" + am.Deployment + "/ready")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				h.stop()
				return nil, fmt.Errorf("deployment %s not ready after 30s", am.Deployment)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return h, nil
}

// inferBody is an Open Inference Protocol v2 JSON request for one tensor.
func inferBody(t *interp.Tensor) ([]byte, error) {
	type input struct {
		Name     string    `json:"name"`
		Shape    []int     `json:"shape"`
		Datatype string    `json:"datatype"`
		Data     []float32 `json:"data"`
	}
	return json.Marshal(map[string][]input{"inputs": {{Name: zoo.InputName, Shape: t.Shape, Datatype: "FP32", Data: t.F32}}})
}

// inferCall posts the bodies in turn to deployment dep's infer endpoint.
func (h *httpServer) inferCall(dep string, bodies [][]byte) call {
	url := h.base + "/v2/models/" + dep + "/infer"
	return func(ctx context.Context, i int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(bodies[i%len(bodies)]))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := h.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST %s: %s: %s", url, resp.Status, body)
		}
		return nil
	}
}
