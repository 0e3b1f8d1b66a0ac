package serving

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"outpost.dev/outpost/internal/serving/oippb"
	"outpost.dev/outpost/internal/testenv"
)

// The tests here check the budget of bytes that requests hold at once,
// shared by the REST API and the gRPC service.

// budgetHarness serves deployment "held", whose runs wait until release is
// called, "free", and "panicky", whose runs panic, under a budget of bytes
// in flight, over REST and gRPC.
type budgetHarness struct {
	*harness
	grpc    oippb.GRPCInferenceServiceClient
	held    *fakeSession
	release func()
}

func newBudgetHarness(t *testing.T, maxRequest, budget int64) *budgetHarness {
	t.Helper()
	h := newHarness(t, false, maxRequest, func(c *Config) { c.MaxInflightBytes = budget })
	bh := &budgetHarness{harness: h, grpc: startGRPC(t, h.srv)}
	h.srv.Sync(context.Background(), []Model{
		h.active("free", "m", "1", "1", ""),
		h.active("held", "m", "1", "2", ""),
		h.active("panicky", "m", "1", "panic", ""),
	})
	h.waitVersion("free", "1")
	h.waitVersion("held", "1")
	h.waitVersion("panicky", "1")
	for _, s := range h.goRT.all() {
		if s.scale == 2 {
			bh.held = s
		}
	}
	bh.held.block = make(chan struct{})
	bh.release = sync.OnceFunc(func() { close(bh.held.block) })
	t.Cleanup(bh.release) // before the servers' cleanups, which wait for requests
	return bh
}

// waitIdle waits until no request holds any of the budget.
func (bh *budgetHarness) waitIdle() {
	bh.t.Helper()
	testenv.WaitFor(bh.t, 10*time.Second, "the budget in use to return to zero", func() bool { return bh.srv.inflight() == 0 })
}

// binaryRequest is a request of rows rows of x for the fake model, as
// binary tensor data: the body and its headers.
func binaryRequest(rows int) ([]byte, http.Header) {
	head := fmt.Sprintf(`{"inputs":[{"name":"x","shape":[%d,4],"datatype":"FP32","parameters":{"binary_data_size":%d}}]}`, rows, 16*rows)
	body := append([]byte(head), make([]byte, 16*rows)...)
	return body, http.Header{HeaderInferenceContentLength: {strconv.Itoa(len(head))}, "Content-Type": {"application/octet-stream"}}
}

// jsonRequest is a request of rows rows of x for the fake model, as JSON.
func jsonRequest(rows int) []byte {
	data := strings.TrimSuffix(strings.Repeat("1,2,3,4,", rows), ",")
	return fmt.Appendf(nil, `{"inputs":[{"name":"x","shape":[%d,4],"datatype":"FP32","data":[%s]}]}`, rows, data)
}

// grpcRequest is a request of rows rows of x for the fake model, in
// raw_input_contents.
func grpcRequest(model string, rows int) *oippb.ModelInferRequest {
	raw := make([]byte, 0, 16*rows)
	for range 4 * rows {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(1))
	}
	return &oippb.ModelInferRequest{ModelName: model, Inputs: []*oippb.ModelInferRequest_InferInputTensor{{
		Name: "x", Datatype: "FP32", Shape: []int64{int64(rows), 4},
	}}, RawInputContents: [][]byte{raw}}
}

// post sends a request with a body of known length (or, with chunked, of
// unknown length) and returns the status, headers and body of the answer.
func (bh *budgetHarness) post(ctx context.Context, model string, body []byte, hdr http.Header, chunked bool) (int, http.Header, []byte, error) {
	var rd io.Reader = bytes.NewReader(body)
	if chunked {
		rd = io.MultiReader(rd) // hides the length
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, bh.http.URL+"/v2/models/"+model+"/infer", rd)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := bh.http.Client().Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// hold starts a request of rows rows on "held" and returns once it runs.
func (bh *budgetHarness) hold(rows int) <-chan int {
	bh.t.Helper()
	body, hdr := binaryRequest(rows)
	done := make(chan int, 1)
	before := bh.held.running.Load()
	go func() {
		code, _, b, err := bh.post(context.Background(), "held", body, hdr, false)
		if err != nil || code != http.StatusOK {
			bh.t.Errorf("held request: %d %.200s %v", code, b, err)
		}
		done <- code
	}()
	testenv.WaitFor(bh.t, 10*time.Second, "the held request to run", func() bool { return bh.held.running.Load() > before })
	return done
}

// TestInflightBudgetRefuses holds a request on the budget and checks that
// requests over what is left are refused at once on both transports (REST
// 429 with Retry-After, gRPC RESOURCE_EXHAUSTED with a retry pushback),
// that requests under it succeed meanwhile, that a request larger than the
// whole budget gets 413, and that all of it is free again afterwards.
func TestInflightBudgetRefuses(t *testing.T) {
	const budget = 40000
	bh := newBudgetHarness(t, 1<<20, budget)
	held := bh.hold(750) // 12,000 bytes of tensor data, held twice: as the body and decoded
	if got := bh.srv.inflight(); got < 24000 || got > budget {
		t.Fatalf("a request of 12,000 bytes of binary data holds %d bytes of the budget, want about 24,000", got)
	}
	rest := []struct {
		name    string
		body    []byte
		hdr     http.Header
		chunked bool
		code    int
		want    string
	}{
		{name: "small JSON fits", body: []byte(goodRequest), code: http.StatusOK},
		{name: "binary over what is left", body: first(binaryRequest(1000)), hdr: second(binaryRequest(1000)), code: http.StatusTooManyRequests,
			want: "in-flight budget"},
		{name: "binary as large as the one held", body: first(binaryRequest(750)), hdr: second(binaryRequest(750)), code: http.StatusTooManyRequests,
			want: "in-flight budget"},
		{name: "JSON over what is left", body: jsonRequest(800), code: http.StatusTooManyRequests, want: "in-flight budget"},
		{name: "chunked body over what is left", body: jsonRequest(2500), chunked: true, code: http.StatusTooManyRequests, want: "in-flight budget"},
		{name: "larger than the whole budget", body: first(binaryRequest(3000)), hdr: second(binaryRequest(3000)), code: http.StatusRequestEntityTooLarge,
			want: "more than the whole in-flight budget of 40000 bytes"},
	}
	for _, tt := range rest {
		t.Run("REST "+tt.name, func(t *testing.T) {
			code, hdr, b, err := bh.post(context.Background(), "free", tt.body, tt.hdr, tt.chunked)
			if err != nil {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Fatalf("status %d %.200s, want %d", code, b, tt.code)
			}
			if code == http.StatusOK {
				return
			}
			var e ErrorResponse
			if json.Unmarshal(b, &e) != nil || !strings.Contains(e.Error, tt.want) || hdr.Get("Content-Type") != "application/json" {
				t.Errorf("body %s, want the protocol's error JSON containing %q", b, tt.want)
			}
			if retry := hdr.Get("Retry-After"); (code == http.StatusTooManyRequests) != (retry == "1") {
				t.Errorf("%d with Retry-After %q", code, retry)
			}
		})
	}
	t.Run("REST refused before the body is sent", func(t *testing.T) {
		// A client that sends Expect: 100-continue, as curl does for large
		// bodies, is answered before it sends a byte of the body.
		body := &countingReader{r: bytes.NewReader(first(binaryRequest(1000)))}
		req, err := http.NewRequest(http.MethodPost, bh.http.URL+"/v2/models/free/infer", body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(body.r.Len())
		req.Header = second(binaryRequest(1000))
		req.Header.Set("Expect", "100-continue")
		tr := &http.Transport{ExpectContinueTimeout: time.Minute}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || body.n.Load() != 0 {
			t.Errorf("status %d after %d bytes of the body were sent, want 429 before any", resp.StatusCode, body.n.Load())
		}
	})
	grpcCases := []struct {
		name     string
		req      *oippb.ModelInferRequest
		code     codes.Code
		want     string
		pushback string
	}{
		{name: "small fits", req: goodGRPCRequest("free"), code: codes.OK},
		{name: "over what is left", req: grpcRequest("free", 1000), code: codes.ResourceExhausted, want: "in-flight budget", pushback: "1000"},
		{name: "as large as the one held", req: grpcRequest("free", 750), code: codes.ResourceExhausted, want: "in-flight budget", pushback: "1000"},
		{name: "larger than the whole budget", req: grpcRequest("free", 3000), code: codes.ResourceExhausted, want: "more than the whole in-flight budget of 40000 bytes"},
	}
	for _, tt := range grpcCases {
		t.Run("gRPC "+tt.name, func(t *testing.T) {
			var trailer metadata.MD
			_, err := bh.grpc.ModelInfer(callCtx(t), tt.req, grpc.Trailer(&trailer))
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.want) {
				t.Fatalf("ModelInfer = %v, want %v with %q", err, tt.code, tt.want)
			}
			if got := strings.Join(trailer.Get("grpc-retry-pushback-ms"), ","); got != tt.pushback {
				t.Errorf("grpc-retry-pushback-ms %q, want %q", got, tt.pushback)
			}
		})
	}
	bh.release()
	if code := <-held; code != http.StatusOK {
		t.Fatalf("held request answered %d", code)
	}
	bh.waitIdle()
	// What was refused fits now.
	if code, _, b, err := bh.post(context.Background(), "free", first(binaryRequest(1000)), second(binaryRequest(1000)), false); err != nil || code != http.StatusOK {
		t.Errorf("after the release: %d %.200s %v", code, b, err)
	}
	bh.waitIdle()
	if _, err := bh.grpc.ModelInfer(callCtx(t), grpcRequest("free", 1000)); err != nil {
		t.Errorf("gRPC after the release: %v", err)
	}
	bh.waitIdle()
}

// TestInflightBudgetReleased sends good, bad, refused, cancelled and
// panicking requests at once on both transports, and checks that every
// one of them gave back what it took of the budget: it returns to zero,
// and a request needing nearly all of it succeeds.
func TestInflightBudgetReleased(t *testing.T) {
	const budget = 60000
	bh := newBudgetHarness(t, 30000, budget)
	ctx, cancelHeld := context.WithCancel(context.Background())
	defer cancelHeld()
	var held sync.WaitGroup
	for range 3 {
		held.Go(func() {
			if _, _, _, err := bh.post(ctx, "held", []byte(goodRequest), nil, false); err == nil {
				t.Error("REST request cancelled by its client did not fail")
			}
		})
		held.Go(func() {
			if _, err := bh.grpc.ModelInfer(ctx, goodGRPCRequest("held")); status.Code(err) != codes.Canceled {
				t.Errorf("gRPC call cancelled by its client: %v", err)
			}
		})
	}
	testenv.WaitFor(t, 10*time.Second, "six requests running on held", func() bool { return bh.held.running.Load() == 6 })

	bin, binHdr := binaryRequest(1000)
	kinds := []struct {
		name string
		do   func() error // nil when the answer is one of those expected
	}{
		{"good JSON", restWant(bh, "free", []byte(goodRequest), nil, false, 200, 429)},
		{"good binary", restWant(bh, "free", bin, binHdr, false, 200, 429)},
		{"malformed JSON", restWant(bh, "free", []byte(`{"inputs":[`), nil, false, 400, 429)},
		{"wrong shape", restWant(bh, "free", []byte(`{"inputs":[{"name":"x","shape":[1,5],"datatype":"FP32","data":[1,2,3,4,5]}]}`), nil, false, 400, 429)},
		{"unknown model", restWant(bh, "nope", []byte(goodRequest), nil, false, 404, 429)},
		{"over the request limit", restWant(bh, "free", jsonRequest(5000), nil, false, 413)},
		{"chunked over the request limit", restWant(bh, "free", jsonRequest(5000), nil, true, 413, 429)},
		{"panicking run", func() error {
			if code, _, b, err := bh.post(context.Background(), "panicky", []byte(goodRequest), nil, false); err == nil && code != 429 {
				return fmt.Errorf("answered %d %.200s, want the connection closed", code, b)
			}
			return nil
		}},
		{"client gone mid-body", func() error {
			pr, pw := io.Pipe()
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, bh.http.URL+"/v2/models/free/infer", pr)
			req.ContentLength = 20000
			go func() {
				pw.Write(make([]byte, 5000))
				cancel()
				pw.CloseWithError(context.Canceled)
			}()
			if resp, err := bh.http.Client().Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode != 429 {
					return fmt.Errorf("answered %d", resp.StatusCode)
				}
			}
			return nil
		}},
		{"gRPC good", grpcWant(bh, goodGRPCRequest("free"), codes.OK, codes.ResourceExhausted)},
		{"gRPC raw", grpcWant(bh, grpcRequest("free", 1000), codes.OK, codes.ResourceExhausted)},
		{"gRPC wrong shape", grpcWant(bh, func() *oippb.ModelInferRequest {
			r := goodGRPCRequest("free")
			r.Inputs[0].Shape = []int64{1, 8}
			return r
		}(), codes.InvalidArgument, codes.ResourceExhausted)},
		{"gRPC unknown model", grpcWant(bh, goodGRPCRequest("nope"), codes.NotFound, codes.ResourceExhausted)},
	}
	var wg sync.WaitGroup
	for _, k := range kinds {
		for range 3 {
			wg.Go(func() {
				if err := k.do(); err != nil {
					t.Errorf("%s: %v", k.name, err)
				}
			})
		}
	}
	wg.Wait()
	cancelHeld()
	held.Wait()
	bh.release()
	bh.waitIdle()

	// All of it is free: a request needing nearly the whole budget fits.
	big, bigHdr := binaryRequest(1800) // 28,800 bytes of data, held twice
	if code, _, b, err := bh.post(context.Background(), "free", big, bigHdr, false); err != nil || code != http.StatusOK {
		t.Errorf("request of most of the budget: %d %.200s %v", code, b, err)
	}
	bh.waitIdle() // the handler lets go of its charge just after its answer
	if _, err := bh.grpc.ModelInfer(callCtx(t), grpcRequest("free", 1800)); err != nil {
		t.Errorf("gRPC request of most of the budget: %v", err)
	}
	bh.waitIdle()
}

// restWant returns a request whose answer must be one of codes.
func restWant(bh *budgetHarness, model string, body []byte, hdr http.Header, chunked bool, codes ...int) func() error {
	return func() error {
		code, _, b, err := bh.post(context.Background(), model, body, hdr, chunked)
		if err != nil {
			return err
		}
		for _, c := range codes {
			if code == c {
				return nil
			}
		}
		return fmt.Errorf("answered %d %.200s, want one of %v", code, b, codes)
	}
}

// grpcWant returns a call whose status must have one of cs.
func grpcWant(bh *budgetHarness, req *oippb.ModelInferRequest, cs ...codes.Code) func() error {
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_, err := bh.grpc.ModelInfer(ctx, req)
		for _, c := range cs {
			if status.Code(err) == c {
				return nil
			}
		}
		return fmt.Errorf("ModelInfer = %v, want one of %v", err, cs)
	}
}

// countingReader counts the bytes read from r.
type countingReader struct {
	r *bytes.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func first[A, B any](a A, _ B) A  { return a }
func second[A, B any](_ A, b B) B { return b }
