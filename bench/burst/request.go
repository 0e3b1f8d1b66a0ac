package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"outpost.dev/outpost/internal/dataset"
	"outpost.dev/outpost/internal/serving"
	"outpost.dev/outpost/internal/serving/oippb"
	"outpost.dev/outpost/internal/zoo"
)

// sendFunc sends one request; retry > 0 when it was refused for want of
// room and should be sent again after retry.
type sendFunc func(ctx context.Context) (retry time.Duration, err error)

// request is the request every client of a burst sends: Fashion-MNIST test
// images for the zoo's MLP, as many as fill about the requested size.
type request struct {
	kind    string
	body    []byte // REST body, or gRPC raw_input_contents
	jsonLen int    // binary: the JSON header's length
	rows    int
}

func newRequest(kind string, size int64) (*request, error) {
	_, test, err := dataset.FashionSubset()
	if err != nil {
		return nil, err
	}
	m, _, err := zoo.Get("mlp")
	if err != nil {
		return nil, err
	}
	img := m.Batch(test, 0, test.Len()).F32
	d := test.Dim()
	r := &request{kind: kind}
	switch kind {
	case "json":
		var data []byte
		for i := 0; int64(len(data)) < size-200; i++ {
			for _, v := range img[(i%test.Len())*d : (i%test.Len()+1)*d] {
				data = strconv.AppendFloat(data, float64(v), 'g', -1, 32)
				data = append(data, ',')
			}
			r.rows++
		}
		data[len(data)-1] = ']'
		r.body = fmt.Appendf(nil, `{"inputs":[{"name":%q,"shape":[%d,%d],"datatype":"FP32","data":[`, zoo.InputName, r.rows, d)
		r.body = append(append(r.body, data...), "}]}"...)
	case "binary", "grpc":
		r.rows = int(size / int64(4*d))
		var raw []byte
		for i := range r.rows {
			for _, v := range img[(i%test.Len())*d : (i%test.Len()+1)*d] {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
			}
		}
		if kind == "grpc" {
			r.body = raw
			break
		}
		head := fmt.Appendf(nil, `{"inputs":[{"name":%q,"shape":[%d,%d],"datatype":"FP32","parameters":{"binary_data_size":%d}}],"parameters":{"binary_data_output":true}}`,
			zoo.InputName, r.rows, d, len(raw))
		r.jsonLen = len(head)
		r.body = append(head, raw...)
	default:
		return nil, fmt.Errorf("-body %q: want json, binary or grpc", kind)
	}
	return r, nil
}

// client returns the function that sends r to the server, and what closes
// its connections.
func (r *request) client(restAddr, grpcAddr string) (sendFunc, func(), error) {
	if r.kind == "grpc" {
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(math.MaxInt32), grpc.MaxCallRecvMsgSize(math.MaxInt32)))
		if err != nil {
			return nil, nil, err
		}
		c := oippb.NewGRPCInferenceServiceClient(conn)
		req := &oippb.ModelInferRequest{ModelName: "mlp",
			Inputs:           []*oippb.ModelInferRequest_InferInputTensor{{Name: zoo.InputName, Datatype: "FP32", Shape: []int64{int64(r.rows), 784}}},
			RawInputContents: [][]byte{r.body}}
		send := func(ctx context.Context) (time.Duration, error) {
			var trailer metadata.MD
			_, err := c.ModelInfer(ctx, req, grpc.Trailer(&trailer))
			if status.Code(err) == codes.ResourceExhausted {
				return pushback(trailer), nil
			}
			return 0, err
		}
		return send, func() { conn.Close() }, nil
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64, ExpectContinueTimeout: 5 * time.Second}
	hc := &http.Client{Transport: tr}
	url := "http://" + restAddr + "/v2/models/mlp/infer"
	send := func(ctx context.Context) (time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(r.body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Expect", "100-continue") // as curl sends with large bodies
		if r.kind == "binary" {
			req.Header.Set("Content-Type", "application/octet-stream")
			req.Header.Set(serving.HeaderInferenceContentLength, strconv.Itoa(r.jsonLen))
		} else {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, err
		}
		switch resp.StatusCode {
		case http.StatusOK:
			return 0, nil
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
				return time.Duration(s) * time.Second, nil
			}
		}
		return 0, fmt.Errorf("POST %s: %s: %.200s", url, resp.Status, b)
	}
	return send, tr.CloseIdleConnections, nil
}

// pushback is the wait a gRPC server asks for in its grpc-retry-pushback-ms
// trailer, or a second.
func pushback(md metadata.MD) time.Duration {
	if v := md.Get("grpc-retry-pushback-ms"); len(v) > 0 {
		if ms, err := strconv.Atoi(v[0]); err == nil && ms > 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	return time.Second
}
