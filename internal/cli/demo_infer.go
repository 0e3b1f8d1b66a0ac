package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"outpost.dev/outpost/internal/dataset"
)

// demoInfer sends one Open Inference Protocol request for images first..first+n
// of set to the agent serving at addr and returns the predicted classes and
// the version that answered.
func demoInfer(ctx context.Context, client *http.Client, addr string, set *dataset.Set, first, n int) ([]int, string, error) {
	return demoInferID(ctx, client, addr, set, first, n, "")
}

// demoInferID is demoInfer with the request id id ("" sends none).
func demoInferID(ctx context.Context, client *http.Client, addr string, set *dataset.Set, first, n int, id string) ([]int, string, error) {
	data := make([]float32, n*set.Dim())
	for i := 0; i < n; i++ {
		set.Sample(first+i, data[i*set.Dim():(i+1)*set.Dim()])
	}
	req := map[string]any{"inputs": []map[string]any{{
		"name": "input", "datatype": "FP32", "shape": []int{n, set.Dim()}, "data": data,
	}}}
	if id != "" {
		req["id"] = id
	}
	b, err := demoPost(ctx, client, "http://"+addr+"/v2/models/fashion/infer", req)
	if err != nil {
		return nil, "", fmt.Errorf("infer: %w", err)
	}
	var out struct {
		ModelVersion string `json:"model_version"`
		Outputs      []struct {
			Shape []int     `json:"shape"`
			Data  []float32 `json:"data"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, "", fmt.Errorf("infer: %w", err)
	}
	if len(out.Outputs) != 1 || len(out.Outputs[0].Shape) != 2 || out.Outputs[0].Shape[0] != n {
		return nil, "", fmt.Errorf("infer: unexpected outputs %s", b)
	}
	classes := out.Outputs[0].Shape[1]
	preds := make([]int, n)
	for i := range preds {
		row := out.Outputs[0].Data[i*classes : (i+1)*classes]
		for c := range row {
			if row[c] > row[preds[i]] {
				preds[i] = c
			}
		}
	}
	return preds, out.ModelVersion, nil
}

// demoPost posts v as JSON to url and returns the body of a 200 answer.
func demoPost(ctx context.Context, client *http.Client, url string, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// demoLoad sends inference requests to addr from a few goroutines until stop
// is closed, and counts them, the failures, and the versions that answered.
type demoLoad struct {
	requests, failures atomic.Int64
	mu                 sync.Mutex
	versions           map[string]int64
	firstErr           error
}

func (l *demoLoad) run(ctx context.Context, client *http.Client, addr string, set *dataset.Set, stop <-chan struct{}) {
	l.versions = map[string]int64{}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, v, err := demoInfer(ctx, client, addr, set, (w*97+i)%set.Len(), 1)
				l.requests.Add(1)
				l.mu.Lock()
				if err != nil {
					l.failures.Add(1)
					if l.firstErr == nil {
						l.firstErr = err
					}
				} else {
					l.versions[v]++
				}
				l.mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}(w)
	}
	wg.Wait()
}
