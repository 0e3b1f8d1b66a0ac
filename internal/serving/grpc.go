package serving

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"outpost.dev/outpost/internal/onnx/interp"
	"outpost.dev/outpost/internal/serving/oippb"
)

// GRPCServer returns a gRPC server that answers the Open Inference
// Protocol's inference.GRPCInferenceService for s, the same models, checks
// and messages as Handler. It refuses a message larger than
// Config.MaxRequestBytes with ResourceExhausted. opts are added to the
// server's options.
func (s *Server) GRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	all := append([]grpc.ServerOption{grpc.MaxRecvMsgSize(s.maxRecvMsgSize())}, opts...)
	gs := grpc.NewServer(all...)
	oippb.RegisterGRPCInferenceServiceServer(gs, &grpcService{s: s})
	return gs
}

// ServeGRPC answers gRPC requests on ln until ctx ends, then stops
// gracefully: requests in flight finish, for at most 10 seconds.
func (s *Server) ServeGRPC(ctx context.Context, ln net.Listener) error {
	gs := s.GRPCServer()
	errc := make(chan error, 1)
	go func() { errc <- gs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(shutdownTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		gs.Stop()
		<-stopped
	}
	return <-errc
}

// maxRecvMsgSize is the largest gRPC message the server accepts: the
// request limit, within what a gRPC message length can say.
func (s *Server) maxRecvMsgSize() int {
	return int(min(s.cfg.MaxRequestBytes, math.MaxInt32))
}

// grpcService implements oippb.GRPCInferenceServiceServer on a Server.
type grpcService struct {
	oippb.UnimplementedGRPCInferenceServiceServer
	s *Server
}

// ServerLive answers true while the server runs.
func (g *grpcService) ServerLive(context.Context, *oippb.ServerLiveRequest) (*oippb.ServerLiveResponse, error) {
	return &oippb.ServerLiveResponse{Live: true}, nil
}

// ServerReady answers whether the server synced with the agent and no
// model is still loading its first version (see Server.Ready).
func (g *grpcService) ServerReady(context.Context, *oippb.ServerReadyRequest) (*oippb.ServerReadyResponse, error) {
	return &oippb.ServerReadyResponse{Ready: g.s.Ready()}, nil
}

// ServerMetadata names the server and its version.
func (g *grpcService) ServerMetadata(context.Context, *oippb.ServerMetadataRequest) (*oippb.ServerMetadataResponse, error) {
	return &oippb.ServerMetadataResponse{Name: serverName, Version: g.s.version, Extensions: []string{}}, nil
}

// ModelReady answers whether a model serves (at a version): NotFound when
// the model or version is unknown, ready false while it loads or when it
// failed to load.
func (g *grpcService) ModelReady(ctx context.Context, req *oippb.ModelReadyRequest) (*oippb.ModelReadyResponse, error) {
	if req.GetName() == "" {
		return nil, errNoModelName
	}
	err := g.s.modelReady(req.GetName(), req.GetVersion())
	if err != nil && errorStatus(err) != http.StatusServiceUnavailable {
		return nil, grpcError(err)
	}
	return &oippb.ModelReadyResponse{Ready: err == nil}, nil
}

// ModelMetadata describes a model, as the REST API's model metadata does.
func (g *grpcService) ModelMetadata(ctx context.Context, req *oippb.ModelMetadataRequest) (*oippb.ModelMetadataResponse, error) {
	if req.GetName() == "" {
		return nil, errNoModelName
	}
	md, err := g.s.modelMetadata(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, grpcError(err)
	}
	return &oippb.ModelMetadataResponse{
		Name: md.Name, Versions: md.Versions, Platform: md.Platform,
		Inputs: grpcTensorMetadata(md.Inputs), Outputs: grpcTensorMetadata(md.Outputs),
	}, nil
}

// ModelInfer runs a model. Inputs come as typed contents or as
// raw_input_contents; outputs go back in raw_output_contents, as Triton's
// clients expect.
func (g *grpcService) ModelInfer(ctx context.Context, req *oippb.ModelInferRequest) (resp *oippb.ModelInferResponse, err error) {
	start := g.s.clock.Now()
	var lbl requestLabels
	defer func() {
		g.s.metrics.observe(lbl, protocolGRPC, grpcCode(status.Code(err)), g.s.clock.Now().Sub(start))
	}()
	if req.GetModelName() == "" {
		return nil, errNoModelName
	}
	ch := g.s.budget.charge()
	defer ch.close()
	// grpc received and unmarshalled the whole message before this call.
	// Its inputs decode into about as many bytes as it has.
	size := int64(proto.Size(req))
	if err := ch.take(2*size, size); err != nil {
		return nil, grpcCallError(ctx, err)
	}
	res, err := g.s.infer(ctx, ch, &lbl, req.GetModelName(), req.GetModelVersion(), func(inputs, outputs []interp.ValueInfo) (*InferRequest, error) {
		return decodeGRPCRequest(req, inputs, outputs, g.s.lim)
	})
	if err != nil {
		return nil, grpcCallError(ctx, err)
	}
	defer res.release()
	resp = &oippb.ModelInferResponse{
		ModelName: res.deployment, ModelVersion: res.version, Id: res.id,
		Outputs:           make([]*oippb.ModelInferResponse_InferOutputTensor, 0, len(res.outputs)),
		RawOutputContents: make([][]byte, 0, len(res.outputs)),
	}
	for _, o := range res.outputs {
		resp.Outputs = append(resp.Outputs, &oippb.ModelInferResponse_InferOutputTensor{
			Name: o.name, Datatype: DatatypeName(o.t.DType), Shape: int64Shape(o.t.Shape),
		})
		raw := appendBinary(make([]byte, 0, tensorBytes(o.t)), o.t)
		resp.RawOutputContents = append(resp.RawOutputContents, raw)
		ch.add(int64(len(raw)))
	}
	return resp, nil
}

// grpcCallError is grpcError for the error of a call; when the call was
// refused for want of room in the budget of bytes in flight, it also asks
// the client, in the trailer grpc-retry-pushback-ms that gRPC's retry
// policies read, to wait before trying again.
func grpcCallError(ctx context.Context, err error) error {
	if d := retryAfterOf(err); d > 0 {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(retryPushbackTrailer, strconv.FormatInt(d.Milliseconds(), 10)))
	}
	return grpcError(err)
}

// retryPushbackTrailer is the trailer in which a gRPC server tells a client
// how many milliseconds to wait before trying a call again.
const retryPushbackTrailer = "grpc-retry-pushback-ms"

// errNoModelName answers a request that names no model.
var errNoModelName = status.Error(codes.InvalidArgument, "the request names no model")

// grpcError is the gRPC status error of an error of the protocol's
// operations, with the same message the REST API gives.
func grpcError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	code := codes.Internal
	switch errorStatus(err) {
	case http.StatusBadRequest:
		code = codes.InvalidArgument
	case http.StatusNotFound:
		code = codes.NotFound
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		code = codes.ResourceExhausted
	case http.StatusServiceUnavailable:
		code = codes.Unavailable
	}
	return status.Error(code, err.Error())
}

// decodeGRPCRequest decodes a ModelInferRequest for a model with the given
// inputs and outputs, with the checks and messages of DecodeRequest. Each
// input's elements come from its typed contents or, for every input at
// once, from raw_input_contents. Errors are *RequestError.
func decodeGRPCRequest(req *oippb.ModelInferRequest, inputs, outputs []interp.ValueInfo, lim Limits) (*InferRequest, error) {
	in, raw := req.GetInputs(), req.GetRawInputContents()
	b, err := newRequestBuilder(req.GetId(), len(in), len(req.GetOutputs()), inputs, outputs, lim)
	if err != nil {
		return nil, err
	}
	if len(raw) > 0 && len(raw) != len(in) {
		return nil, badRequest("raw_input_contents has %d entries for %d inputs: give one per input, in the order of inputs", len(raw), len(in))
	}
	for i, x := range in {
		shape := x.GetShape()
		if shape == nil {
			shape = []int64{} // proto3 cannot tell an empty shape (a scalar) from none
		}
		t, n, err := b.input(x.GetName(), x.GetDatatype(), shape)
		if err != nil {
			return nil, err
		}
		if len(raw) == 0 {
			if err := fillContents(t, n, x.GetContents()); err != nil {
				return nil, badRequest("input %q: %v", x.GetName(), err)
			}
			continue
		}
		if f := contentsFields(x.GetContents()); len(f) > 0 {
			return nil, badRequest("input %q: both contents (%s) and raw_input_contents", x.GetName(), f[0])
		}
		if want := rawSize(t.DType, n); int64(len(raw[i])) != want {
			return nil, badRequest("input %q: raw_input_contents[%d] has %d bytes, but shape %s of %s needs %d bytes",
				x.GetName(), i, len(raw[i]), shapeString(t.Shape), x.GetDatatype(), want)
		}
		fromBinary(t, raw[i], n)
	}
	for _, o := range req.GetOutputs() {
		if err := b.output(o.GetName()); err != nil {
			return nil, err
		}
	}
	return b.finish()
}

// contentsField names the field of InferTensorContents that holds the
// elements of dt.
func contentsField(dt interp.DType) string {
	switch dt {
	case interp.Float32:
		return "fp32_contents"
	case interp.Int64:
		return "int64_contents"
	case interp.Int32, interp.Int8:
		return "int_contents"
	case interp.Uint8:
		return "uint_contents"
	case interp.Bool:
		return "bool_contents"
	}
	return ""
}

// contentsFields names the fields of c that hold elements.
func contentsFields(c *oippb.InferTensorContents) []string {
	var f []string
	for _, x := range []struct {
		name string
		n    int
	}{
		{"bool_contents", len(c.GetBoolContents())},
		{"int_contents", len(c.GetIntContents())},
		{"int64_contents", len(c.GetInt64Contents())},
		{"uint_contents", len(c.GetUintContents())},
		{"uint64_contents", len(c.GetUint64Contents())},
		{"fp32_contents", len(c.GetFp32Contents())},
		{"fp64_contents", len(c.GetFp64Contents())},
		{"bytes_contents", len(c.GetBytesContents())},
	} {
		if x.n > 0 {
			f = append(f, x.name)
		}
	}
	return f
}

// fillContents fills t, of n elements, from the field of c that its
// datatype uses; elements in any other field are an error.
func fillContents(t *interp.Tensor, n int, c *oippb.InferTensorContents) error {
	want := contentsField(t.DType)
	fields := contentsFields(c)
	for _, f := range fields {
		if f != want {
			return fmt.Errorf("%s elements go in contents.%s, but the request sets contents.%s", DatatypeName(t.DType), want, f)
		}
	}
	if len(fields) == 0 && n > 0 {
		return errors.New("no contents and no raw_input_contents")
	}
	var got int
	switch t.DType {
	case interp.Float32:
		got = len(c.GetFp32Contents())
	case interp.Int64:
		got = len(c.GetInt64Contents())
	case interp.Int32, interp.Int8:
		got = len(c.GetIntContents())
	case interp.Uint8:
		got = len(c.GetUintContents())
	case interp.Bool:
		got = len(c.GetBoolContents())
	}
	if got != n {
		return countError(t.Shape, n, got)
	}
	switch t.DType {
	case interp.Float32:
		t.F32 = slices.Clone(c.GetFp32Contents())
	case interp.Int64:
		t.I64 = slices.Clone(c.GetInt64Contents())
	case interp.Int32:
		t.I32 = slices.Clone(c.GetIntContents())
	case interp.Int8:
		t.I8 = make([]int8, n)
		for i, v := range c.GetIntContents() {
			if v < math.MinInt8 || v > math.MaxInt8 {
				return fmt.Errorf("element %d: %d is not an INT8 (an integer from -128 to 127)", i, v)
			}
			t.I8[i] = int8(v)
		}
	case interp.Uint8:
		t.U8 = make([]uint8, n)
		for i, v := range c.GetUintContents() {
			if v > math.MaxUint8 {
				return fmt.Errorf("element %d: %d is not a UINT8 (an integer from 0 to 255)", i, v)
			}
			t.U8[i] = uint8(v)
		}
	case interp.Bool:
		t.B = slices.Clone(c.GetBoolContents())
	}
	return nil
}

// grpcTensorMetadata converts tensor metadata to its gRPC form.
func grpcTensorMetadata(ts []TensorMetadata) []*oippb.ModelMetadataResponse_TensorMetadata {
	out := make([]*oippb.ModelMetadataResponse_TensorMetadata, len(ts))
	for i, t := range ts {
		out[i] = &oippb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: int64Shape(t.Shape)}
	}
	return out
}

// int64Shape converts a shape to the protocol's int64 dimensions.
func int64Shape(shape []int) []int64 {
	out := make([]int64, len(shape))
	for i, d := range shape {
		out[i] = int64(d)
	}
	return out
}
